"""Bad input gets an error that names what was expected and what was received.

A learner's most common mistakes: wrong shapes, dtypes or devices, empty
datasets, misspelt names, and a checkpoint from another model. Each case
checks both halves of the message, so that the error says how to fix it.
"""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from bigmodel_lib import TrainConfig, Trainer, get_device, load_dataset, plot_history, seed_everything
from bigmodel_lib.checkpoint import load_checkpoint, load_weights, save_checkpoint, save_weights
from bigmodel_lib.devices import move_to_device, resolve_precision
from bigmodel_lib.metrics import accuracy, confusion_matrix, count_parameters_by_module, perplexity, token_error_rate
from bigmodel_lib.plotting import plot_attention, plot_filters, plot_images


def quiet(**kwargs) -> TrainConfig:
    return TrainConfig(progress=False, device="cpu", **kwargs)


def digits_like(n: int = 16) -> TensorDataset:
    return TensorDataset(torch.rand(n, 1, 8, 8), torch.randint(0, 10, (n,)))


# ---------------------------------------------------------------------------
# Devices and precision


def test_unknown_device_name():
    with pytest.raises(ValueError, match=r"expected a device such as 'cpu'.*got 'tpu'"):
        get_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_cuda_requested_on_a_machine_without_it():
    with pytest.raises(ValueError, match=r"device 'cuda' was requested but this machine has no CUDA GPU"):
        get_device("cuda")


def test_unknown_precision():
    with pytest.raises(ValueError, match=r"expected precision to be one of \('auto', 'fp32', 'bf16', 'fp16'\), got 'fp8'"):
        resolve_precision("cpu", "fp8")


def test_fp16_off_cuda():
    with pytest.raises(ValueError, match=r"expected a CUDA device for precision 'fp16'.*got cpu"):
        resolve_precision("cpu", "fp16")


def test_seed_that_is_not_an_integer():
    with pytest.raises(ValueError, match=r"expected seed to be an integer in \[0, 2\*\*32\), got 'abc'"):
        seed_everything("abc")
    with pytest.raises(ValueError, match=r"got -1"):
        seed_everything(-1)


def test_batch_that_is_not_made_of_tensors():
    with pytest.raises(ValueError, match=r"expected a tensor or a tuple, list or dict of tensors, got str"):
        move_to_device("pixels", "cpu")


# ---------------------------------------------------------------------------
# Configuration


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(epochs=0), r"expected epochs to be an integer >= 1, got 0"),
        (dict(batch_size=2.5), r"expected batch_size to be an integer >= 1, got 2.5"),
        (dict(lr=-0.1), r"expected lr > 0, got -0.1"),
        (dict(warmup_fraction=1.5), r"expected warmup_fraction in \[0, 1\], got 1.5"),
        (dict(grad_clip=0), r"expected grad_clip > 0 or None, got 0"),
        (dict(precision="half"), r"expected precision to be one of .*, got 'half'"),
        (dict(patience=0), r"expected patience to be an integer >= 1 or None, got 0"),
    ],
)
def test_invalid_train_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)


def test_unknown_metric_name():
    with pytest.raises(ValueError, match=r"expected metric 'accuracy', 'perplexity', None or a function, got 'f1'"):
        Trainer(nn.Linear(2, 2), quiet(), metric="f1")


def test_trainer_given_something_that_is_not_a_model():
    with pytest.raises(ValueError, match=r"expected an nn.Module, got function"):
        Trainer(lambda x: x, quiet())


# ---------------------------------------------------------------------------
# Datasets


def test_unknown_dataset_name_suggests_the_closest():
    with pytest.raises(ValueError, match=r"unknown dataset 'mnsit': expected one of \[.*'mnist'.*\]; did you mean 'mnist'\?"):
        load_dataset("mnsit")


def test_validation_fraction_out_of_range():
    with pytest.raises(ValueError, match=r"expected val_fraction in \[0, 1\), got 1.0"):
        load_dataset("digits", val_fraction=1.0)


def test_image_size_that_is_not_a_positive_integer():
    with pytest.raises(ValueError, match=r"expected image_size to be a positive integer or None, got 0"):
        load_dataset("digits", image_size=0)


def test_empty_training_set():
    empty = TensorDataset(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match=r"expected a non-empty training set, got a dataset of length 0"):
        Trainer(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), quiet()).fit(empty)


def test_model_without_parameters():
    with pytest.raises(ValueError, match=r"expected a model with trainable parameters, got a Flatten with none"):
        Trainer(nn.Flatten(), quiet())


def test_empty_validation_set():
    empty = TensorDataset(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long))
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with pytest.raises(ValueError, match=r"expected a non-empty evaluation set, got a dataset of length 0"):
        Trainer(model, quiet(epochs=1)).fit(digits_like(), empty)


# ---------------------------------------------------------------------------
# Shapes, dtypes and devices inside training


def test_input_of_the_wrong_shape_for_the_model():
    model = nn.Linear(64, 10)  # forgot nn.Flatten(): the batch is (16, 1, 8, 8)
    with pytest.raises(ValueError, match=r"inputs with shape and dtype \[\(16, 1, 8, 8\) float32\].*mat1 and mat2 shapes"):
        Trainer(model, quiet(batch_size=16)).fit(digits_like())


def test_float64_inputs_for_a_float32_model():
    data = TensorDataset(torch.rand(8, 64, dtype=torch.float64), torch.randint(0, 10, (8,)))
    with pytest.raises(ValueError, match=r"\(8, 64\) float64.*inputs are float64 but the model is torch.float32"):
        Trainer(nn.Linear(64, 10), quiet(batch_size=8)).fit(data)


def test_float_targets_for_a_classifier():
    data = TensorDataset(torch.rand(8, 64), torch.rand(8))
    with pytest.raises(ValueError, match=r"expected integer class labels \(torch.int64\), got targets of dtype torch.float32"):
        Trainer(nn.Linear(64, 10), quiet(batch_size=8)).fit(data)


def test_outputs_that_do_not_match_the_targets():
    data = TensorDataset(torch.rand(8, 64), torch.randint(0, 2, (8, 3)))  # 3 labels per sample, 1 output row
    with pytest.raises(ValueError, match=r"expected outputs of shape .*\(8, 3, C\) for targets of shape \(8, 3\), got outputs of shape \(8, 10\)"):
        Trainer(nn.Linear(64, 10), quiet(batch_size=8)).fit(data)


def test_batch_without_targets():
    class OnlyImages(Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.rand(64)

    with pytest.raises(ValueError, match=r"expected each batch to be a tuple \(inputs..., targets\), got a Tensor"):
        Trainer(nn.Linear(64, 10), quiet(batch_size=4)).fit(OnlyImages())


def test_loss_function_that_does_not_reduce_to_a_scalar():
    loss_fn = nn.CrossEntropyLoss(reduction="none")
    with pytest.raises(ValueError, match=r"expected loss_fn to return a scalar tensor \(shape \(\)\), got \(8,\)"):
        Trainer(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), quiet(batch_size=8), loss_fn=loss_fn).fit(digits_like(8))


def test_metric_inputs_on_different_devices():
    outputs, targets = torch.zeros(4, 10, device="meta"), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"expected outputs and targets on the same device, got outputs on meta and targets on cpu"):
        accuracy(outputs, targets)


def test_perplexity_with_targets_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"expected outputs of shape .* for targets of shape \(2, 5\), got outputs of shape \(2, 4, 50\)"):
        perplexity(torch.zeros(2, 4, 50), torch.zeros(2, 5, dtype=torch.long))


def test_confusion_matrix_given_scores_instead_of_classes():
    with pytest.raises(ValueError, match=r"expected predictions of the targets' shape \(4,\), got \(4, 3\)"):
        confusion_matrix(torch.rand(4, 3), torch.tensor([0, 1, 2, 0]))


def test_error_rates_with_unequal_numbers_of_sequences():
    with pytest.raises(ValueError, match=r"expected one prediction per reference \(3\), got 2 predictions"):
        token_error_rate(["ab", "c"], ["ab", "c", "d"])


def test_parameter_groups_at_depth_zero():
    with pytest.raises(ValueError, match=r"expected depth to be an integer >= 1, got 0"):
        count_parameters_by_module(nn.Linear(2, 2), depth=0)


# ---------------------------------------------------------------------------
# Checkpoints


class Net(nn.Module):
    def __init__(self, hidden: int = 32, extra: bool = False):
        super().__init__()
        self.fc = nn.Linear(64, hidden)
        self.out = nn.Linear(hidden, 10)
        if extra:
            self.norm = nn.LayerNorm(hidden)


@pytest.fixture
def wide_checkpoint(tmp_path):
    return save_checkpoint(tmp_path / "wide.pt", Net(hidden=64), epoch=1)


def test_checkpoint_with_other_shapes_names_every_mismatch(wide_checkpoint):
    with pytest.raises(ValueError) as info:
        load_checkpoint(wide_checkpoint, Net(hidden=32))
    message = str(info.value)
    assert "fc.weight: checkpoint wide.pt has shape (64, 64), model expects (32, 64)" in message
    assert "fc.bias: checkpoint wide.pt has shape (64,), model expects (32,)" in message
    assert "out.weight: checkpoint wide.pt has shape (10, 64), model expects (10, 32)" in message


def test_checkpoint_with_missing_and_unexpected_keys(tmp_path):
    path = save_checkpoint(tmp_path / "plain.pt", Net(extra=False))
    with pytest.raises(ValueError, match=r"missing from checkpoint plain.pt: norm.weight, norm.bias"):
        load_checkpoint(path, Net(extra=True))
    path = save_checkpoint(tmp_path / "extra.pt", Net(extra=True))
    with pytest.raises(ValueError, match=r"in checkpoint extra.pt but not in the model: norm.weight, norm.bias"):
        load_checkpoint(path, Net(extra=False))


def test_file_that_is_not_a_training_checkpoint(tmp_path):
    torch.save(Net().state_dict(), tmp_path / "bare.pt")
    with pytest.raises(ValueError, match=re.escape("expected a checkpoint in format 'bigmodel_lib.checkpoint/1'") + r".*got \['fc.bias'"):
        load_checkpoint(tmp_path / "bare.pt", Net())


def test_checkpoint_file_that_does_not_exist(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"expected a checkpoint file at .*nowhere.pt, got no such file"):
        load_checkpoint(tmp_path / "nowhere.pt", Net())


def test_safetensors_weights_of_a_wider_model(tmp_path):
    path = save_weights(Net(hidden=64), tmp_path / "wide.safetensors")
    with pytest.raises(ValueError, match=r"out.weight: weights file wide.safetensors has shape \(10, 64\), model expects \(10, 32\)"):
        load_weights(Net(hidden=32), path)


# ---------------------------------------------------------------------------
# Plots


def test_attention_weights_and_token_labels_disagree():
    with pytest.raises(ValueError, match=r"expected 3 query_tokens for weights of shape \(1, 3, 3\), got 2"):
        plot_attention(torch.rand(3, 3), ["the", "cat"])


def test_images_with_two_channels():
    with pytest.raises(ValueError, match=r"expected images of shape \(N, H, W\), \(N, 1, H, W\) or \(N, 3, H, W\), got \(4, 2, 8, 8\)"):
        plot_images(torch.rand(4, 2, 8, 8))


def test_images_and_labels_of_different_lengths():
    with pytest.raises(ValueError, match=r"expected one of the labels per image \(4\), got 3"):
        plot_images(torch.rand(4, 8, 8), labels=[1, 2, 3])


def test_filters_that_are_not_a_conv_weight():
    with pytest.raises(ValueError, match=r"expected a weight of shape \(C_out, C_in, kH, kW\), got \(16, 5, 5\)"):
        plot_filters(torch.rand(16, 5, 5))


def test_history_with_no_epochs():
    with pytest.raises(ValueError, match=r"expected a History with at least one epoch, got an empty history"):
        plot_history({"train_loss": []})
