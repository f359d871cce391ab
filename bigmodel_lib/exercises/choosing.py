"""Checkers for chapter 7's exercises: a Vision Transformer's patch embedding, a causal dilated convolution
and a dynamically quantized linear layer.

Each checker runs the learner's function on fixed and seeded cases against
PyTorch's own function (or the book's reference, itself checked against PyTorch) and, when it fails, names the modelled mistake its output
matches. See ``bigmodel_lib.exercises`` for the result they return.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F

from bigmodel_lib.exercises.checking import Case, CheckResult, Mutant, run_check

# ---------------------------------------------------------------------------
# Patch embedding


def _patch_embedding_cases() -> list[Case]:
    gen = torch.Generator().manual_seed(70)

    def case(label, B, C, H, W, p, d):
        return Case(label, {"x": torch.randn(B, C, H, W, generator=gen),
                            "weight": torch.randn(d, C * p * p, generator=gen),
                            "bias": torch.randn(d, generator=gen), "p": p})

    return [
        case("a digit: 1 channel, 28 x 28, 7 x 7 patches", 2, 1, 28, 28, 7, 8),
        case("3 channels, 8 x 8, 4 x 4 patches", 2, 3, 8, 8, 4, 5),
        case("2 channels, not square: 6 x 9, 3 x 3 patches", 1, 2, 6, 9, 3, 4),
        case("1 x 1 patches: every pixel a token", 2, 2, 3, 4, 1, 3),
        case("one patch: the whole image", 3, 2, 4, 4, 4, 6),
    ]


def _patch_embedding_reference(x, weight, bias, p):
    d, C = weight.shape[0], x.shape[1]
    y = F.conv2d(x, weight.view(d, C, p, p), bias, stride=p)  # (B, d, H/p, W/p)
    return y.flatten(2).transpose(1, 2)  # (B, N, d): patches row by row


def _patches_then_project(order):
    """A patch embedding whose patches are cut and laid out by ``order(x, p)`` -> (B, N, C p p)."""
    def patch_embedding(x, weight, bias, p):
        return order(x, p) @ weight.T + bias
    return patch_embedding


def _patches_by_columns(x, p):
    B, C, H, W = x.shape
    patches = x.reshape(B, C, H // p, p, W // p, p).permute(0, 4, 2, 1, 3, 5)  # (B, W/p, H/p, C, p, p)
    return patches.reshape(B, -1, C * p * p)


def _pixels_in_memory_order(x, p):
    B, C, H, W = x.shape
    return x.reshape(B, (H // p) * (W // p), C * p * p)  # consecutive pixels, not p x p squares


def _channels_last_in_patch(x, p):
    B, C, H, W = x.shape
    patches = x.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 3, 5, 1)  # (B, H/p, W/p, p, p, C)
    return patches.reshape(B, -1, C * p * p)


def _patch_transposed(x, p):
    B, C, H, W = x.shape
    patches = x.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 5, 3)  # (B, H/p, W/p, C, p_w, p_h)
    return patches.reshape(B, -1, C * p * p)


def _no_bias(x, weight, bias, p):
    return _patch_embedding_reference(x, weight, None, p)


def _overlapping(x, weight, bias, p):
    d, C = weight.shape[0], x.shape[1]
    return F.conv2d(x, weight.view(d, C, p, p), bias, stride=1).flatten(2).transpose(1, 2)


PATCH_EMBEDDING_MUTANTS = [
    Mutant("patches in column order", _patches_then_project(_patches_by_columns),
           "the patches are in column order: a ViT reads them row by row, like text, so patch (i, j) is token "
           "i * (W / p) + j. Permute the patch grid as (B, H/p, W/p, ...), rows before columns."),
    Mutant("pixels, not squares", _patches_then_project(_pixels_in_memory_order),
           "each token holds C p p consecutive pixels of the image in memory order (pieces of rows), not a p x p "
           "square: reshape to (B, C, H/p, p, W/p, p) and permute before flattening."),
    Mutant("channels last inside a patch", _patches_then_project(_channels_last_in_patch),
           "inside a patch the channels come last: the weight's columns are ordered (C, p, p), as in "
           "nn.Conv2d's kernel (d, C, p, p), so flatten each patch channel by channel."),
    Mutant("patch transposed", _patches_then_project(_patch_transposed),
           "each patch is transposed: within a patch, rows come before columns, (C, p_h, p_w), as in the kernel "
           "of nn.Conv2d; the permute has the two in-patch axes swapped."),
    Mutant("bias missing", _no_bias,
           "the bias is missing: add it to every token, patches @ weight.T + bias."),
    Mutant("overlapping windows", _overlapping,
           "the windows overlap (stride 1): patches do not overlap, the window moves p pixels at a time, so "
           "there are (H / p) * (W / p) of them."),
]


def check_patch_embedding(fn, strict: bool = False) -> CheckResult:
    """Check ``fn(x, weight, bias, p)``, a Vision Transformer's patch embedding, called positionally.

    ``x`` (B, C, H, W) float32 with ``H`` and ``W`` divisible by ``p``; ``weight``
    (d, C p p) and ``bias`` (d,) a linear layer's; the result is (B, N, d) with
    ``N = (H / p) (W / p)`` tokens, patches in reading order (row by row), each
    flattened as (C, p, p) and multiplied by ``weight.T`` plus ``bias``. Compared
    with ``F.conv2d`` of kernel and stride ``p`` (the kernel is ``weight`` viewed as
    (d, C, p, p)). Known mistakes: patches in column order, consecutive pixels
    instead of squares, channels last inside a patch, a transposed patch, the
    bias missing, overlapping windows. ``strict=True`` raises ``AssertionError``
    on failure.

    Introduced in §7.3.
    """
    return run_check("patch_embedding", fn, _patch_embedding_cases(), _patch_embedding_reference,
                     PATCH_EMBEDDING_MUTANTS, strict=strict, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------
# A dynamically quantized linear layer (section 7.6)


def _int8_cases() -> list[Case]:
    gen = torch.Generator().manual_seed(78)  # no case with a rounding tie (see tests)

    def case(label, B, n_in, n_out, shift=0.0, scale=1.0, bias=True, positive=False):
        x = torch.rand(B, n_in, generator=gen) * scale if positive else scale * torch.randn(B, n_in, generator=gen) + shift
        w = 0.1 * torch.randn(n_out, n_in, generator=gen)
        b = torch.randn(n_out, generator=gen) if bias else None
        return Case(label, {"x": x, "weight": w, "bias": b})

    return [
        case("a small batch", 4, 16, 8),
        case("activations centred away from 0", 5, 32, 12, shift=1.5, scale=3.0),
        case("all-positive activations (after a ReLU)", 6, 24, 10, positive=True, scale=2.0),
        case("no bias", 3, 20, 7, bias=False),
        case("a wider layer", 8, 128, 64, scale=0.5),
    ]


def _int8_weights(weight):
    """Symmetric per-tensor int8 weights: (q_W, s_W)."""
    s_w = weight.abs().max() / 127.5
    return torch.clamp(torch.round(weight / s_w), -128, 127), s_w


def _int8_linear(x, weight, bias, levels=127, widen=True, subtract_zero=True):
    """The reference with its defaults; each keyword switched off or changed is one modelled mistake."""
    q_w, s_w = _int8_weights(weight)
    lo, hi = (x.min().clamp(max=0), x.max().clamp(min=0)) if widen else (x.min(), x.max())
    s_x = (hi - lo) / levels
    z = torch.round(-lo / s_x)
    q_x = torch.clamp(torch.round(x / s_x) + z, 0, levels)
    y = s_x * s_w * (((q_x - z) if subtract_zero else q_x) @ q_w.T)
    return y if bias is None else y + bias


def _int8_reference(x, weight, bias):
    return _int8_linear(x, weight, bias)


def _int8_symmetric_activations(x, weight, bias):
    q_w, s_w = _int8_weights(weight)
    s_x = x.abs().max() / 127
    y = s_x * s_w * (torch.clamp(torch.round(x / s_x), -128, 127) @ q_w.T)
    return y if bias is None else y + bias


_int8_not_widened = partial(_int8_linear, widen=False)
_int8_zero_point_kept = partial(_int8_linear, subtract_zero=False)
_int8_255_levels = partial(_int8_linear, levels=255)


def _int8_bias_quantized(x, weight, bias):
    y = _int8_reference(x, weight, None)
    if bias is None:
        return y
    s_w = weight.abs().max() / 127.5
    return y + s_w * torch.clamp(torch.round(bias / s_w), -128, 127)


INT8_LINEAR_MUTANTS = [
    Mutant("float product", lambda x, weight, bias: F.linear(x, weight, bias),
           "this is the float32 layer, x @ weight.T + bias: round the weights to integers q_W = round(W / s_W) "
           "and the activations to q_x = round(x / s_x) + z first, multiply the integers, then scale back."),
    Mutant("symmetric activations", _int8_symmetric_activations,
           "the activations were quantized symmetrically (scale max|x| / 127, no zero point): dynamic "
           "quantization maps [min(x, 0), max(x, 0)] onto the unsigned integers 0..127 with a zero point "
           "z = round(-min(x, 0) / s_x)."),
    Mutant("range not widened to 0", _int8_not_widened,
           "the activations' range was [min(x), max(x)]: widen it to include 0, lo = min(x).clamp(max=0) and "
           "hi = max(x).clamp(min=0), so that 0 (a ReLU's output, padding) is represented exactly."),
    Mutant("zero point not subtracted", _int8_zero_point_kept,
           "q_x still holds the zero point: multiply (q_x - z) by q_W.T, since x ~ s_x (q_x - z)."),
    Mutant("255 levels", _int8_255_levels,
           "the activations used 255 levels: the exercise asks for PyTorch's x86 kernel, which uses 7 bits, "
           "q_max = 127 (s_x = (hi - lo) / 127, q_x clamped to 0..127)."),
    Mutant("bias quantized", _int8_bias_quantized,
           "the bias was rounded to the weights' integer grid: it stays in floating point and is added after "
           "scaling back."),
]


def check_int8_linear(fn, strict: bool = False) -> CheckResult:
    """Check ``fn(x, weight, bias)``, ``x W^T + b`` computed as PyTorch's x86 dynamic int8 kernel computes it.

    ``x`` (B, in) float32, ``weight`` (out, in), ``bias`` (out,) or None -> (B, out):
    weights quantized symmetrically per tensor (``s_W = max|W| / 127.5``, integers
    in [-128, 127]), activations asymmetrically over the batch's range widened to
    include 0 with 7 bits (``s_x = (max(x, 0) - min(x, 0)) / 127``, zero point
    ``z = round(-min(x, 0) / s_x)``, integers in [0, 127]), then
    ``s_x s_W (q_x - z) q_W^T + b``; the reference equals
    ``torch.ao.quantization.quantize_dynamic`` on x86 (``tests/test_quantization.py``).
    Known mistakes: the float product, symmetric activations, the range not widened
    to 0, the zero point not subtracted, 255 levels, the bias quantized.
    ``strict=True`` raises ``AssertionError`` on failure.

    Introduced in §7.6.
    """
    return run_check("int8_linear", fn, _int8_cases(), _int8_reference, INT8_LINEAR_MUTANTS, strict=strict,
                     rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------
# A causal dilated convolution (section 7.5)


def _causal_conv_cases() -> list[Case]:
    gen = torch.Generator().manual_seed(75)

    def case(label, B, c_in, c_out, T, k, d, bias=True):
        return Case(label, {"x": torch.randn(B, c_in, T, generator=gen),
                            "weight": torch.randn(c_out, c_in, k, generator=gen),
                            "bias": torch.randn(c_out, generator=gen) if bias else None, "dilation": d})

    return [
        case("kernel 2, dilation 1", 2, 3, 4, 10, 2, 1),
        case("kernel 3, dilation 2", 2, 3, 5, 12, 3, 2),
        case("kernel 2, dilation 4: taps 4 apart", 1, 2, 3, 9, 2, 4),
        case("no bias, kernel 4", 3, 1, 2, 7, 4, 1, bias=False),
        case("a reach longer than the sequence: (k - 1) d = 6 > T = 5", 2, 2, 2, 5, 3, 3),
    ]


def _causal_conv_reference(x, weight, bias, dilation):
    reach = (weight.shape[-1] - 1) * dilation
    return F.conv1d(F.pad(x, (reach, 0)), weight, bias, dilation=dilation)  # (B, C_out, T)


def _causal_conv_same_padding(x, weight, bias, dilation):  # padding="same": half the zeros on each side
    reach = (weight.shape[-1] - 1) * dilation
    return F.conv1d(F.pad(x, (reach // 2, reach - reach // 2)), weight, bias, dilation=dilation)


def _causal_conv_last_outputs(x, weight, bias, dilation):
    reach = (weight.shape[-1] - 1) * dilation
    return F.conv1d(x, weight, bias, padding=reach, dilation=dilation)[:, :, -x.shape[-1]:]


def _causal_conv_no_dilation(x, weight, bias, dilation):
    return F.conv1d(F.pad(x, (weight.shape[-1] - 1, 0)), weight, bias)


def _causal_conv_flipped(x, weight, bias, dilation):
    return _causal_conv_reference(x, weight.flip(-1), bias, dilation)


def _causal_conv_no_bias(x, weight, bias, dilation):
    return _causal_conv_reference(x, weight, None, dilation)


CAUSAL_CONV_MUTANTS = [
    Mutant("padded on both sides", _causal_conv_same_padding,
           "the output at t reads positions after t: 'same' padding splits the (k - 1) d zeros between both "
           "ends. Pad (k - 1) d zeros on the left only, F.pad(x, ((k - 1) * d, 0))."),
    Mutant("the last T outputs kept", _causal_conv_last_outputs,
           "with (k - 1) d zeros on both sides the first T outputs are the causal ones; keeping the last T makes "
           "output t read t, t + d, ..., t + (k - 1) d, the future. Keep [:, :, :T], or pad the left only."),
    Mutant("dilation ignored", _causal_conv_no_dilation,
           "the taps are 1 apart: with dilation d output t reads t - (k - 1) d, ..., t - d, t; pass "
           "dilation=d and pad (k - 1) d zeros, not k - 1."),
    Mutant("kernel flipped", _causal_conv_flipped,
           "the kernel is reversed: W_j multiplies x_{t - (k - 1 - j) d}, so the last tap, W_{k-1}, meets the "
           "present x_t (PyTorch's convolution is a cross-correlation: it does not flip the kernel)."),
    Mutant("bias missing", _causal_conv_no_bias,
           "the bias is missing: add b to every output position."),
]


def check_causal_conv1d(fn, strict: bool = False) -> CheckResult:
    """Check ``fn(x, weight, bias, dilation)``, a causal dilated 1-D convolution, called positionally.

    ``x`` (B, C_in, T) float32, ``weight`` (C_out, C_in, k), ``bias`` (C_out,) or
    None, ``dilation`` d >= 1 -> (B, C_out, T) with
    ``y_t = b + sum_j W_j x_{t - (k - 1 - j) d}`` and ``x_s = 0`` for ``s < 0``:
    the output at ``t`` reads only positions ``t`` and before. Compared with
    ``F.conv1d`` on the input padded with ``(k - 1) d`` zeros on the left (the
    library's ``CausalConv1d``). Known mistakes: padding on both sides, keeping the
    last ``T`` outputs, the dilation ignored, the kernel flipped, the bias
    missing. ``strict=True`` raises ``AssertionError`` on failure.

    Introduced in §7.5.
    """
    return run_check("causal_conv1d", fn, _causal_conv_cases(), _causal_conv_reference, CAUSAL_CONV_MUTANTS,
                     strict=strict, rtol=1e-5, atol=1e-5)
