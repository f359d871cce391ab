"""Checkers for chapter 2's exercises: a convolution, max pooling and the output-size formula.

Each checker runs the learner's function on fixed and seeded cases against
PyTorch's own function and, when it fails, names the modelled mistake its output
matches. See ``bigmodel_lib.exercises`` for the result they return.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from bigmodel_lib.exercises.checking import Case, CheckResult, Mutant, run_check

# ---------------------------------------------------------------------------
# Convolution


def _conv2d_cases() -> list[Case]:
    gen = torch.Generator().manual_seed(10)

    def case(label, x_shape, c_out, k, bias, stride, padding):
        x = torch.randn(*x_shape, generator=gen)
        weight = torch.randn(c_out, x_shape[1], k, k, generator=gen)
        b = torch.randn(c_out, generator=gen) if bias else None
        return Case(label, {"x": x, "weight": weight, "bias": b, "stride": stride, "padding": padding})

    return [
        case("one channel, no bias", (1, 1, 5, 5), 1, 3, False, 1, 0),
        case("with a bias", (2, 3, 6, 6), 4, 3, True, 1, 0),
        case("stride 2", (2, 3, 7, 7), 4, 3, True, 2, 0),
        case("padding 1", (2, 2, 5, 5), 3, 3, True, 1, 1),
        case("stride 2 and padding 1, not square", (1, 2, 8, 9), 3, 3, True, 2, 1),
        case("a 1 x 1 kernel", (2, 3, 4, 4), 2, 1, True, 1, 0),
    ]


def _conv2d_reference(x, weight, bias, stride, padding):
    return F.conv2d(x, weight, bias, stride=stride, padding=padding)


CONV2D_MUTANTS = [
    Mutant("flipped kernel", lambda x, w, b, s, p: F.conv2d(x, w.flip(-1, -2), b, stride=s, padding=p),
           "the kernel is flipped: that is convolution in the signal-processing sense. Deep learning's "
           "'convolution' is cross-correlation: y[i, j] = sum of x[i + u, j + v] * w[u, v], no flip."),
    Mutant("stride ignored", lambda x, w, b, s, p: F.conv2d(x, w, b, stride=1, padding=p),
           "the stride is ignored: the window moves s pixels at a time, so output position i starts at input "
           "row i * s, and the output has floor((n + 2p - k) / s) + 1 positions per axis."),
    Mutant("padding ignored", lambda x, w, b, s, p: F.conv2d(x, w, b, stride=s, padding=0),
           "the padding is ignored: add p zeros on every side first, for example F.pad(x, (p, p, p, p))."),
    Mutant("bias missing", lambda x, w, b, s, p: F.conv2d(x, w, None, stride=s, padding=p),
           "the bias is missing: add bias[c] to every position of output channel c, bias.view(1, C_out, 1, 1)."),
    Mutant("kernel transposed", lambda x, w, b, s, p: F.conv2d(x, w.transpose(-1, -2), b, stride=s, padding=p),
           "the kernel is transposed: weight[c_out, c_in, u, v] multiplies x[..., i + u, j + v], with u the row "
           "(height) offset and v the column (width) offset."),
]


def check_conv2d(fn, strict: bool = False) -> CheckResult:
    """Check ``fn(x, weight, bias, stride, padding)``, a 2-D convolution (cross-correlation), called positionally.

    ``x`` (B, C_in, H, W) float32, ``weight`` (C_out, C_in, k, k), ``bias`` (C_out,)
    or None, ``stride`` and ``padding`` ints -> (B, C_out, H_out, W_out) with
    ``H_out = floor((H + 2 padding - k) / stride) + 1``; compared with
    ``F.conv2d``. Known mistakes: a flipped kernel, the stride or the padding
    ignored, the bias missing, a transposed kernel. ``strict=True`` raises
    ``AssertionError`` on failure.

    Introduced in §2.1.
    """
    return run_check("conv2d", fn, _conv2d_cases(), _conv2d_reference, CONV2D_MUTANTS, strict=strict,
                     rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------
# Max pooling


def _max_pool2d_cases() -> list[Case]:
    gen = torch.Generator().manual_seed(11)
    return [
        Case("2 x 2 windows", {"x": torch.randn(2, 3, 6, 6, generator=gen), "k": 2, "stride": 2}),
        Case("stride None means stride k", {"x": torch.randn(1, 2, 6, 4, generator=gen), "k": 2, "stride": None}),
        Case("overlapping windows, stride 1", {"x": torch.randn(2, 2, 5, 5, generator=gen), "k": 2, "stride": 1}),
        Case("3 x 3 windows, stride 2, not square", {"x": torch.randn(1, 2, 8, 9, generator=gen), "k": 3, "stride": 2}),
        Case("all negative", {"x": -1 - torch.rand(1, 3, 4, 4, generator=gen), "k": 2, "stride": 2}),
    ]


def _max_pool2d_reference(x, k, stride):
    return F.max_pool2d(x, k, stride)


def _channels_mixed(x, k, stride):
    pooled = F.max_pool2d(x, k, stride)
    return pooled.amax(dim=1, keepdim=True).expand_as(pooled)


MAX_POOL2D_MUTANTS = [
    Mutant("average", lambda x, k, s: F.avg_pool2d(x, k, s),
           "that is average pooling: max pooling keeps the largest value of each window (amax), not the mean."),
    Mutant("stride ignored", lambda x, k, s: F.max_pool2d(x, k, 1),
           "the stride is ignored: the window moves stride pixels at a time (k when stride is None), so the "
           "output has floor((n - k) / stride) + 1 positions per axis."),
    Mutant("stride None means 1", lambda x, k, s: F.max_pool2d(x, k, 1 if s is None else s),
           "stride=None must mean stride = k (non-overlapping windows, PyTorch's default), not 1."),
    Mutant("partial windows kept", lambda x, k, s: F.max_pool2d(x, k, s, ceil_mode=True),
           "windows that run past the edge are kept: the output size rounds down, floor((n - k) / stride) + 1, "
           "so a window must fit inside the input."),
    Mutant("channels mixed", _channels_mixed,
           "the channels are pooled together: each channel is pooled on its own, the maximum over a k x k window "
           "of that channel only (reshape to (B * C, 1, H, W) before unfolding, for example)."),
    Mutant("minimum", lambda x, k, s: -F.max_pool2d(-x, k, s),
           "that is the minimum of each window: max pooling keeps the largest value."),
]


def check_max_pool2d(fn, strict: bool = False) -> CheckResult:
    """Check ``fn(x, k, stride)``, 2-D max pooling over k x k windows, called positionally.

    ``x`` (B, C, H, W) float32, ``k`` an int, ``stride`` an int or None (None
    means ``k``) -> (B, C, H_out, W_out) with ``H_out = floor((H - k) / stride) + 1``;
    each channel pooled on its own. Compared with ``F.max_pool2d``. Known
    mistakes: average instead of max, the stride ignored, ``None`` taken as 1,
    partial windows kept (ceil), channels pooled together, the minimum.
    ``strict=True`` raises ``AssertionError`` on failure.

    Introduced in §2.2.
    """
    return run_check("max_pool2d", fn, _max_pool2d_cases(), _max_pool2d_reference, MAX_POOL2D_MUTANTS,
                     strict=strict)


# ---------------------------------------------------------------------------
# The output size

_SIZES = [(28, 3, 1, 0), (28, 3, 1, 1), (7, 3, 2, 0), (8, 3, 2, 0), (224, 7, 2, 3), (5, 5, 1, 0), (32, 4, 3, 1),
          (10, 2, 2, 0), (1, 1, 1, 0), (9, 3, 2, 1), (6, 5, 4, 2)]


def _conv_output_size_cases() -> list[Case]:
    return [Case(f"n={n}, k={k}, stride={s}, padding={p}", {"n": n, "k": k, "stride": s, "padding": p})
            for n, k, s, p in _SIZES]


def _conv_output_size_reference(n, k, stride, padding):
    """The length F.conv1d really returns."""
    return F.conv1d(torch.zeros(1, 1, n), torch.zeros(1, 1, k), stride=stride, padding=padding).shape[-1]


CONV_OUTPUT_SIZE_MUTANTS = [
    Mutant("no floor", lambda n, k, s, p: (n + 2 * p - k) / s + 1,
           "the division is not rounded down: a window that would run past the edge does not count, so use "
           "floor((n + 2p - k) / s) + 1, in Python (n + 2 * p - k) // s + 1."),
    Mutant("ceil", lambda n, k, s, p: math.ceil((n + 2 * p - k) / s) + 1,
           "the division rounds up: round down instead, floor((n + 2p - k) / s) + 1, since the last window must "
           "fit inside the padded input."),
    Mutant("missing + 1", lambda n, k, s, p: (n + 2 * p - k) // s,
           "the + 1 is missing: the first window sits at position 0, so count it too, (n + 2p - k) // s + 1."),
    Mutant("padding once", lambda n, k, s, p: (n + p - k) // s + 1,
           "the padding is counted once: it is added on both sides, so the padded length is n + 2p."),
    Mutant("+ 1 inside the division", lambda n, k, s, p: (n + 2 * p - k + 1) // s,
           "the + 1 is inside the division: (n + 2p - k) // s + 1 counts the start positions 0, s, 2s, ... "
           "that leave room for the kernel."),
]


def check_conv_output_size(fn, strict: bool = False) -> CheckResult:
    """Check ``fn(n, k, stride, padding)``, a convolution's output length along one axis, called positionally.

    ``n``, ``k``, ``stride`` and ``padding`` are ints; the result is the int
    ``floor((n + 2 padding - k) / stride) + 1``, compared with the length
    ``F.conv1d`` returns. Known mistakes: no floor, ceil, a missing + 1, the
    padding counted once, the + 1 inside the division. ``strict=True`` raises
    ``AssertionError`` on failure.

    Introduced in §2.1.
    """
    return run_check("conv_output_size", fn, _conv_output_size_cases(), _conv_output_size_reference,
                     CONV_OUTPUT_SIZE_MUTANTS, strict=strict)
