"""Tests for bigmodel_lib.metrics (chapters 1-4): quality metrics, parameter counts and FLOP estimates."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from bigmodel_lib import attention_flops, count_parameters, estimate_flops, linear_flops
from bigmodel_lib.metrics import (
    accuracy,
    confusion_matrix,
    conv2d_flops,
    count_parameters_by_module,
    edit_distance,
    perplexity,
    sequence_error_rate,
    token_error_rate,
)

# ---------------------------------------------------------------------------
# Accuracy, perplexity, confusion matrix


def test_accuracy_for_classes_and_tokens():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0], [0.0, 1.0]])
    assert accuracy(logits, torch.tensor([0, 1, 1, 1])) == 0.75
    tokens = logits.reshape(2, 2, 2)  # (B, T, V)
    assert accuracy(tokens, torch.tensor([[0, 1], [1, 1]])) == 0.75
    assert accuracy(tokens, torch.tensor([[0, 1], [-100, 1]]), ignore_index=-100) == 1.0


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size():
    logits = torch.zeros(2, 5, 50)  # every token equally likely
    targets = torch.randint(0, 50, (2, 5))
    assert perplexity(logits, targets) == pytest.approx(50.0)
    logits = torch.randn(3, 4, 7)
    targets = torch.randint(0, 7, (3, 4))
    assert perplexity(logits, targets) == pytest.approx(math.exp(F.cross_entropy(logits.reshape(-1, 7), targets.reshape(-1))))


def test_confusion_matrix_hand_example():
    targets = torch.tensor([0, 0, 1, 2, 2, 2])
    predictions = torch.tensor([0, 1, 1, 2, 0, 2])
    expected = torch.tensor([[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    assert torch.equal(confusion_matrix(predictions, targets), expected)
    assert confusion_matrix(predictions, targets, num_classes=4).shape == (4, 4)


# ---------------------------------------------------------------------------
# Edit distance and sequence error rates


@pytest.mark.parametrize(
    "a, b, d",
    [("kitten", "sitting", 3), ("", "abc", 3), ("abc", "", 3), ("same", "same", 0), ("flaw", "lawn", 2),
     (["K", "AE1", "T"], ["K", "AE1", "T", "S"], 1)],
)
def test_edit_distance_hand_values(a, b, d):
    assert edit_distance(a, b) == d
    assert edit_distance(b, a) == d  # symmetric


def test_edit_distance_on_token_tensors():
    assert edit_distance(torch.tensor([1, 2, 3, 4]), torch.tensor([1, 3, 4])) == 1


def test_token_and_sequence_error_rates():
    references = [["a", "b", "c"], ["d", "e"], ["f"]]
    predictions = [["a", "x", "c"], ["d", "e"], ["f", "g"]]
    # Per token: (1 substitution + 0 + 1 insertion) / (3 + 2 + 1) reference tokens.
    assert token_error_rate(predictions, references) == pytest.approx(2 / 6)
    # Per sequence: two of three sequences have an error.
    assert sequence_error_rate(predictions, references) == pytest.approx(2 / 3)
    assert token_error_rate(["hello"], ["hallo"]) == pytest.approx(1 / 5)  # characters as tokens


# ---------------------------------------------------------------------------
# Parameter counts


def test_count_parameters_by_hand():
    model = nn.Sequential(nn.Linear(10, 5), nn.ReLU(), nn.Linear(5, 2))
    assert count_parameters(model) == (10 * 5 + 5) + (5 * 2 + 2)
    model[0].weight.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == 5 + 12


def test_tied_weights_count_once_and_groups_sum_to_the_total():
    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(1))
            self.emb = nn.Embedding(100, 8)
            self.block = nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8))
            self.head = nn.Linear(8, 100, bias=False)
            self.head.weight = self.emb.weight

    model = Tiny()
    assert count_parameters(model) == 1 + 800 + (64 + 8) + 16
    groups = count_parameters_by_module(model)
    assert groups == {"(own)": 1, "emb": 800, "block": 88}
    assert sum(groups.values()) == count_parameters(model)
    assert count_parameters_by_module(model, depth=2) == {"(own)": 1, "emb": 800, "block.0": 72, "block.1": 16}


# ---------------------------------------------------------------------------
# FLOPs: formulas against hand calculations, estimate_flops against both


def torch_flops(model, *inputs) -> int:
    with FlopCounterMode(display=False) as counter:
        with torch.no_grad():
            model(*inputs)
    return counter.get_total_flops()


def test_flop_formulas_hand_values():
    # nn.Linear(784, 256) on a batch of 32: 32 * 256 dot products of length 784, 2 FLOPs per multiply-add.
    assert linear_flops(784, 256, tokens=32) == 2 * 32 * 784 * 256 == 12_845_056
    # LeNet's first conv: 1 -> 6 channels, 5x5 kernel, 28x28 output: 6*28*28 outputs of 25 multiply-adds.
    assert conv2d_flops(1, 6, 5, 28) == 2 * 6 * 28 * 28 * 25 == 235_200
    # Depthwise 3x3 conv on 32 channels (groups=32) at 16x16: each output sees one channel.
    assert conv2d_flops(32, 32, 3, 16, groups=32) == 2 * 32 * 16 * 16 * 9
    # Attention core, T=128, d=768 (12 heads of 64): QK^T and AV, 2*T*T*d each.
    assert attention_flops(128, 768) == 2 * (2 * 128 * 128 * 768) == 50_331_648
    assert attention_flops(10, 64, kv_len=20, batch=3) == 4 * 3 * 10 * 20 * 64


def test_estimate_flops_of_an_mlp():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    x = torch.randn(5, 1, 8, 8)
    flops = estimate_flops(model, x)
    hand = 2 * 5 * (64 * 128 + 128 * 10)
    assert flops == {"linear": hand, "conv": 0, "attention": 0, "total": hand}
    assert flops["total"] == torch_flops(model, x)


def test_estimate_flops_of_a_cnn_with_strides_and_groups():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 32x32 -> 32x32
        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=4),  # -> 16x16
        nn.Flatten(),
        nn.Linear(8 * 16 * 16, 10),
    )
    x = torch.randn(2, 3, 32, 32)
    hand_conv = conv2d_flops(3, 8, 3, 32, batch=2) + conv2d_flops(8, 8, 3, 16, groups=4, batch=2)
    hand_linear = linear_flops(8 * 16 * 16, 10, tokens=2)
    flops = estimate_flops(model, x)
    assert flops["conv"] == hand_conv and flops["linear"] == hand_linear
    assert flops["total"] == torch_flops(model, x)


def test_estimate_flops_of_conv1d_matches_torch():
    model = nn.Conv1d(4, 6, kernel_size=3)
    x = torch.randn(2, 4, 10)  # output length 8
    assert estimate_flops(model, x)["conv"] == 2 * 2 * 6 * 8 * 4 * 3 == torch_flops(model, x)


@pytest.mark.parametrize("batch_first", [True, False])
def test_estimate_flops_of_multi_head_attention(batch_first):
    B, T, d, h = 2, 10, 32, 4
    mha = nn.MultiheadAttention(d, h, batch_first=batch_first).train()  # train mode: the plain (non-fused) path
    x = torch.randn(B, T, d) if batch_first else torch.randn(T, B, d)
    flops = estimate_flops(mha, x, x, x)
    projections = 4 * linear_flops(d, d, tokens=B * T)  # W_Q, W_K, W_V, W_O
    assert flops["linear"] == projections
    assert flops["attention"] == attention_flops(T, d, batch=B)
    assert flops["total"] == torch_flops(mha, x, x, x)


def test_cross_attention_uses_both_lengths():
    mha = nn.MultiheadAttention(16, 2, batch_first=True)
    q, kv = torch.randn(1, 3, 16), torch.randn(1, 7, 16)
    flops = estimate_flops(mha, q, kv, kv)
    assert flops["attention"] == 4 * 3 * 7 * 16
    assert flops["linear"] == 2 * 16 * 16 * (3 + 7 + 7 + 3)
    assert flops["total"] == torch_flops(mha, q, kv, kv)


def test_hooks_are_removed_after_estimating():
    model = nn.Linear(3, 3)
    estimate_flops(model, torch.randn(1, 3))
    assert not model._forward_hooks
