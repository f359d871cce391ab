"""Chapter 7's exercise checker (the patch embedding): correct answers written three ways pass, every modelled
mistake fails with its own hint (also when a learner writes it their own way), an unfinished answer is reported
as such, and strict mode raises; the same for the int8 linear layer of §7.6."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.testing import assert_close

from bigmodel_lib.exercises.checking import CheckResult
from bigmodel_lib.exercises.choosing import (
    CAUSAL_CONV_MUTANTS,
    INT8_LINEAR_MUTANTS,
    PATCH_EMBEDDING_MUTANTS,
    check_causal_conv1d,
    check_int8_linear,
    check_patch_embedding,
)
from bigmodel_lib.models.conv_lm import CausalConv1d
from bigmodel_lib.models.image_classifiers import PatchEmbedding
from bigmodel_lib.quantization import dynamic_int8_linear, quantize_dynamic_int8


def patch_embedding_reshape(x, weight, bias, p):  # the notebook's solution
    B, C, H, W = x.shape
    patches = x.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5)  # (B, H/p, W/p, C, p, p)
    return patches.reshape(B, -1, C * p * p) @ weight.T + bias


def patch_embedding_unfold(x, weight, bias, p):
    return F.unfold(x, kernel_size=p, stride=p).transpose(1, 2) @ weight.T + bias


def patch_embedding_loops(x, weight, bias, p):
    B, C, H, W = x.shape
    tokens = [x[:, :, i: i + p, j: j + p].reshape(B, -1) for i in range(0, H, p) for j in range(0, W, p)]
    return torch.stack(tokens, dim=1) @ weight.T + bias


def patch_embedding_library(x, weight, bias, p):
    embed = PatchEmbedding(p, weight.shape[0], channels=x.shape[1])
    with torch.no_grad():
        embed.proj.weight.copy_(weight)
        embed.proj.bias.copy_(bias)
        return embed(x)


@pytest.mark.parametrize("answer", [patch_embedding_reshape, patch_embedding_unfold, patch_embedding_loops,
                                    patch_embedding_library])
def test_correct_answers_pass(answer):
    result = check_patch_embedding(answer)
    assert isinstance(result, CheckResult) and result.passed, str(result)
    assert result.hint is None and result.mistake is None
    assert check_patch_embedding(answer, strict=True).passed


def test_the_mistakes_are_several_with_distinct_hints():
    assert len(PATCH_EMBEDDING_MUTANTS) >= 3
    assert len({m.hint for m in PATCH_EMBEDDING_MUTANTS}) == len({m.name for m in PATCH_EMBEDDING_MUTANTS}) == len(
        PATCH_EMBEDDING_MUTANTS)


@pytest.mark.parametrize("mutant", PATCH_EMBEDDING_MUTANTS, ids=lambda m: m.name)
def test_each_modelled_mistake_gets_its_own_hint(mutant):
    result = check_patch_embedding(mutant.fn)
    assert not result.passed
    assert (result.mistake, result.hint) == (mutant.name, mutant.hint), str(result)
    assert "Hint: " + mutant.hint in str(result)
    with pytest.raises(AssertionError, match="FAILED patch_embedding"):
        check_patch_embedding(mutant.fn, strict=True)


# The same mistakes written the way a learner would, not by the checker's own mutants

def learner_by_columns(x, weight, bias, p):
    B, C, H, W = x.shape
    tokens = [x[:, :, i: i + p, j: j + p].reshape(B, -1) for j in range(0, W, p) for i in range(0, H, p)]
    return torch.stack(tokens, dim=1) @ weight.T + bias


def learner_view_only(x, weight, bias, p):
    B, C, H, W = x.shape
    return x.view(B, -1, C * p * p) @ weight.T + bias


def learner_channels_last(x, weight, bias, p):
    B, C, H, W = x.shape
    tokens = [x[:, :, i: i + p, j: j + p].permute(0, 2, 3, 1).reshape(B, -1)
              for i in range(0, H, p) for j in range(0, W, p)]
    return torch.stack(tokens, dim=1) @ weight.T + bias


def learner_no_bias(x, weight, bias, p):
    return F.unfold(x, kernel_size=p, stride=p).transpose(1, 2) @ weight.T


@pytest.mark.parametrize(("answer", "mistake"), [
    (learner_by_columns, "patches in column order"),
    (learner_view_only, "pixels, not squares"),
    (learner_channels_last, "channels last inside a patch"),
    (learner_no_bias, "bias missing"),
])
def test_mistakes_written_by_a_learner_get_the_right_hint(answer, mistake):
    result = check_patch_embedding(answer)
    assert not result.passed and result.mistake == mistake, str(result)


def test_an_unfinished_answer_is_not_finished_yet():
    def patch_embedding(x, weight, bias, p):
        raise NotImplementedError

    result = check_patch_embedding(patch_embedding)
    assert not result.passed and result.unfinished and "not finished yet" in str(result)
    assert check_patch_embedding(None).unfinished


def test_a_wrong_shape_is_named():
    result = check_patch_embedding(lambda x, weight, bias, p: patch_embedding_unfold(x, weight, bias, p)[:, 1:])
    assert not result.passed and "expected shape (2, 16, 8), got (2, 15, 8)" in result.message, str(result)


# ---------------------------------------------------------------------------
# The dynamically quantized linear layer (section 7.6)


def int8_linear_chapter(x, weight, bias):  # the notebook's lines
    s_w = weight.abs().max() / 127.5
    q_w = torch.clamp(torch.round(weight / s_w), -128, 127)
    lo, hi = x.min().clamp(max=0), x.max().clamp(min=0)
    s_x = (hi - lo) / 127
    z = torch.round(-lo / s_x)
    q_x = torch.clamp(torch.round(x / s_x) + z, 0, 127)
    y = s_x * s_w * ((q_x - z) @ q_w.T)
    return y if bias is None else y + bias


def int8_linear_integers(x, weight, bias):  # the product in int64, as the kernel does it in integers
    s_w = weight.abs().max() / 127.5
    q_w = torch.clamp(torch.round(weight / s_w), -128, 127).to(torch.int64)
    lo, hi = torch.clamp(x.min(), max=0.0), torch.clamp(x.max(), min=0.0)
    s_x = (hi - lo) / 127
    z = int(torch.round(-lo / s_x))
    q_x = torch.clamp(torch.round(x / s_x) + z, 0, 127).to(torch.int64)
    y = (s_x * s_w) * ((q_x - z) @ q_w.T).to(torch.float32)
    return y if bias is None else y + bias


def int8_linear_library(x, weight, bias):
    return dynamic_int8_linear(x, weight, bias, reduce_range=True)


INT8_ANSWERS = [int8_linear_chapter, int8_linear_integers, int8_linear_library]


@pytest.mark.parametrize("answer", INT8_ANSWERS)
def test_int8_correct_answers_pass(answer):
    result = check_int8_linear(answer)
    assert result.passed and result.hint is None, str(result)
    assert check_int8_linear(answer, strict=True).passed


@pytest.mark.skipif(torch.backends.quantized.engine not in ("x86", "fbgemm"),
                    reason="PyTorch's kernel uses 7-bit activations only on x86")
def test_int8_reference_is_pytorchs_kernel():
    def pytorch(x, weight, bias):
        linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        with torch.no_grad():
            linear.weight.copy_(weight)
            if bias is not None:
                linear.bias.copy_(bias)
            return quantize_dynamic_int8(nn.Sequential(linear))[0](x)

    assert check_int8_linear(pytorch).passed


@pytest.mark.parametrize("mutant", INT8_LINEAR_MUTANTS, ids=lambda m: m.name)
def test_int8_each_modelled_mistake_gets_its_own_hint(mutant):
    result = check_int8_linear(mutant.fn)
    assert not result.passed and not result.unfinished
    assert (result.mistake, result.hint) == (mutant.name, mutant.hint), str(result)
    with pytest.raises(AssertionError, match="FAILED"):
        check_int8_linear(mutant.fn, strict=True)


def test_int8_mistakes_have_distinct_hints():
    assert len(INT8_LINEAR_MUTANTS) >= 3
    assert len({m.hint for m in INT8_LINEAR_MUTANTS}) == len({m.name for m in INT8_LINEAR_MUTANTS}) == len(
        INT8_LINEAR_MUTANTS)


def learner_forgot_zero_point(x, weight, bias):
    s_w = weight.abs().max() / 127.5
    q_w = (weight / s_w).round().clamp(-128, 127)
    x_lo, x_hi = min(x.min().item(), 0.0), max(x.max().item(), 0.0)
    s_x = (x_hi - x_lo) / 127
    q_x = ((x / s_x).round() + round(-x_lo / s_x)).clamp(0, 127)
    out = (q_x @ q_w.t()) * (s_x * s_w)
    return out if bias is None else out + bias


def test_int8_learner_mistake_gets_the_right_hint():
    result = check_int8_linear(learner_forgot_zero_point)
    assert result.mistake == "zero point not subtracted", str(result)


def test_int8_unfinished():
    def unfinished(x, weight, bias):
        raise NotImplementedError

    assert check_int8_linear(unfinished).unfinished


def test_int8_cases_avoid_the_rounding_tie():
    # W / s_W (the formula, as a learner writes it) and W * (1 / s_W) (PyTorch's kernels) round the largest
    # weight, at exactly +-127.5, differently in some matrices; the checker's cases are chosen where they agree,
    # so that both pass
    from bigmodel_lib.exercises.choosing import _int8_cases

    for case in _int8_cases():
        x, weight, bias = case.args["x"], case.args["weight"], case.args["bias"]
        assert_close(int8_linear_chapter(x, weight, bias), dynamic_int8_linear(x, weight, bias), rtol=1e-6, atol=1e-6)


def learner_no_rounding(x, weight, bias):  # scales computed, but nothing rounded: the float layer again
    s_w = weight.abs().max() / 127.5
    lo, hi = min(x.min().item(), 0.0), max(x.max().item(), 0.0)
    s_x = (hi - lo) / 127
    z = -lo / s_x
    out = s_x * s_w * ((x / s_x + z - z) @ (weight / s_w).t())
    return out if bias is None else out + bias


def learner_uint8_range(x, weight, bias):  # all 8 bits for the activations
    q_w = (weight * 127.5 / weight.abs().max()).round().clamp(-128, 127)
    lo, hi = min(x.min().item(), 0.0), max(x.max().item(), 0.0)
    s_x = (hi - lo) / 255
    z = round(-lo / s_x)
    q_x = ((x / s_x).round() + z).clamp(0, 255)
    out = (q_x - z) @ q_w.t() * (s_x * weight.abs().max() / 127.5)
    return out if bias is None else out + bias


# ---------------------------------------------------------------------------
# The causal dilated convolution (section 7.5)


def causal_conv_chapter(x, weight, bias, dilation):  # the notebook's solution: the formula, one position at a time
    k, T = weight.shape[-1], x.shape[-1]
    x_padded = F.pad(x, ((k - 1) * dilation, 0))
    y = torch.stack([sum(x_padded[:, :, t + j * dilation] @ weight[:, :, j].T for j in range(k)) for t in range(T)], 2)
    return y if bias is None else y + bias[:, None]


def causal_conv_cut(x, weight, bias, dilation):  # both sides padded, the future cut off
    reach = (weight.shape[-1] - 1) * dilation
    return F.conv1d(x, weight, bias, padding=reach, dilation=dilation)[:, :, : x.shape[-1]]


def causal_conv_einsum(x, weight, bias, dilation):  # every tap as a shifted copy of the input
    k, T = weight.shape[-1], x.shape[-1]
    x_padded = F.pad(x, ((k - 1) * dilation, 0))
    taps = torch.stack([x_padded[:, :, j * dilation: j * dilation + T] for j in range(k)], -1)  # (B, C_in, T, k)
    y = torch.einsum("bctk,ock->bot", taps, weight)
    return y if bias is None else y + bias[:, None]


def causal_conv_library(x, weight, bias, dilation):
    conv = CausalConv1d(weight.shape[1], weight.shape[0], weight.shape[-1], dilation=dilation, bias=bias is not None)
    with torch.no_grad():
        conv.weight.copy_(weight)
        if bias is not None:
            conv.bias.copy_(bias)
        return conv(x)


CAUSAL_CONV_ANSWERS = [causal_conv_chapter, causal_conv_cut, causal_conv_einsum, causal_conv_library]


@pytest.mark.parametrize("answer", CAUSAL_CONV_ANSWERS)
def test_causal_conv_correct_answers_pass(answer):
    result = check_causal_conv1d(answer)
    assert result.passed and result.hint is None, str(result)
    assert check_causal_conv1d(answer, strict=True).passed


def test_causal_conv_reference_reads_no_future_position():
    x = torch.randn(1, 2, 12, requires_grad=True)
    weight, t = torch.randn(3, 2, 3), 6
    CAUSAL_CONV_ANSWERS[1](x, weight, None, 2)[0, :, t].sum().backward()
    read = (x.grad[0].abs().sum(0) > 0).nonzero().flatten().tolist()
    assert read == [t - 4, t - 2, t]  # (k - 1) d = 4 back, taps 2 apart, nothing after t


@pytest.mark.parametrize("mutant", CAUSAL_CONV_MUTANTS, ids=lambda m: m.name)
def test_causal_conv_each_modelled_mistake_gets_its_own_hint(mutant):
    result = check_causal_conv1d(mutant.fn)
    assert not result.passed and not result.unfinished
    assert (result.mistake, result.hint) == (mutant.name, mutant.hint), str(result)
    with pytest.raises(AssertionError, match="FAILED"):
        check_causal_conv1d(mutant.fn, strict=True)


def test_causal_conv_mistakes_have_distinct_hints():
    assert len(CAUSAL_CONV_MUTANTS) >= 3
    assert len({m.hint for m in CAUSAL_CONV_MUTANTS}) == len({m.name for m in CAUSAL_CONV_MUTANTS}) == len(
        CAUSAL_CONV_MUTANTS)


def learner_symmetric_padding(x, weight, bias, dilation):
    half = (weight.shape[-1] - 1) * dilation // 2
    x = F.pad(x, (half, (weight.shape[-1] - 1) * dilation - half))
    return F.conv1d(x, weight, bias, dilation=dilation)


def learner_right_padding(x, weight, bias, dilation):
    x = F.pad(x, (0, (weight.shape[-1] - 1) * dilation))
    return F.conv1d(x, weight, bias, dilation=dilation)


def learner_taps_adjacent(x, weight, bias, dilation):
    k, T = weight.shape[-1], x.shape[-1]
    x = F.pad(x, ((k - 1) * dilation, 0))[:, :, (k - 1) * (dilation - 1):]  # the padding right, the taps 1 apart
    y = sum(torch.einsum("bct,oc->bot", x[:, :, j: j + T], weight[:, :, j]) for j in range(k))
    return y if bias is None else y + bias[:, None]


def learner_reversed_taps(x, weight, bias, dilation):
    k, T = weight.shape[-1], x.shape[-1]
    x_padded = F.pad(x, ((k - 1) * dilation, 0))
    y = sum(torch.einsum("bct,oc->bot", x_padded[:, :, (k - 1 - j) * dilation: (k - 1 - j) * dilation + T],
                         weight[:, :, j]) for j in range(k))  # W_0 meets the present
    return y if bias is None else y + bias[:, None]


@pytest.mark.parametrize(("answer", "mistake"), [
    (learner_symmetric_padding, "padded on both sides"),
    (learner_right_padding, "the last T outputs kept"),
    (learner_taps_adjacent, "dilation ignored"),
    (learner_reversed_taps, "kernel flipped"),
])
def test_causal_conv_mistakes_written_by_a_learner_get_the_right_hint(answer, mistake):
    result = check_causal_conv1d(answer)
    assert not result.passed and result.mistake == mistake, str(result)
