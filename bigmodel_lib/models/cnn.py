"""Convolutional networks from their definitions (chapter 2).

What is here, in the order the chapter builds it:

* ``conv_output_size`` -- the output-size formula of a convolution or pooling.
* ``conv2d_loops`` and ``conv2d`` -- a 2-D convolution written from its
  definition, first as plain loops (to read), then with ``unfold`` (to use).
* ``max_pool2d`` and ``avg_pool2d`` -- pooling from scratch.

How much pooling cares about shifts, and receptive fields, are measured in
:mod:`bigmodel_lib.probes`; the source articles' CNNs are in
:mod:`bigmodel_lib.articles`.

Shapes use one notation: ``B`` batch, ``C`` channels, ``H, W`` height and width,
``k`` kernel size, ``L`` number of sliding-window positions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "conv_output_size",
    "conv2d_loops",
    "conv2d",
    "max_pool2d",
    "avg_pool2d",
]


# ---------------------------------------------------------------------------
# Helpers shared by convolution and pooling
# ---------------------------------------------------------------------------


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    """Turn ``3`` into ``(3, 3)`` and check a given ``(h, w)`` pair."""
    if isinstance(value, int):
        return (value, value)
    value = tuple(value)
    if len(value) != 2 or not all(isinstance(v, int) for v in value):
        raise ValueError(f"{name} must be an int or a pair of ints (h, w), got {value!r}")
    return value  # type: ignore[return-value]


def _check_images(x: torch.Tensor, name: str = "x") -> None:
    if x.dim() != 4:
        hint = " (a single image? add a batch dimension with x.unsqueeze(0))" if x.dim() == 3 else ""
        raise ValueError(
            f"{name} must be a batch of images of shape (B, C, H, W), "
            f"got a {x.dim()}-D tensor of shape {tuple(x.shape)}{hint}"
        )


def conv_output_size(
    size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1
) -> int:
    """Output length of a convolution or pooling along one spatial axis.

    ``floor((n + 2p - d(k - 1) - 1) / s) + 1``: the padded input has ``n + 2p``
    positions, a dilated kernel spans ``d(k - 1) + 1`` of them, and the window
    moves ``s`` positions at a time.

    >>> conv_output_size(32, kernel=3, padding=1)
    32
    >>> conv_output_size(32, kernel=2, stride=2)
    16

    Introduced in §2.1.
    """
    if size < 1 or kernel < 1 or stride < 1 or dilation < 1 or padding < 0:
        raise ValueError(
            "expected size, kernel, stride, dilation >= 1 and padding >= 0, got "
            f"size={size}, kernel={kernel}, stride={stride}, padding={padding}, dilation={dilation}"
        )
    span = dilation * (kernel - 1) + 1
    if size + 2 * padding < span:
        raise ValueError(
            f"the kernel spans {span} positions (kernel={kernel}, dilation={dilation}) but the "
            f"padded input has only {size + 2 * padding} (size={size}, padding={padding}); "
            "the output would be empty"
        )
    return (size + 2 * padding - span) // stride + 1


def _check_conv_args(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    _check_images(x)
    if weight.dim() != 4:
        raise ValueError(
            "weight must have shape (C_out, C_in, kH, kW), "
            f"got a {weight.dim()}-D tensor of shape {tuple(weight.shape)}"
        )
    if x.shape[1] != weight.shape[1]:
        raise ValueError(
            f"the weight expects {weight.shape[1]} input channels (weight shape "
            f"{tuple(weight.shape)}) but x has {x.shape[1]} (x shape {tuple(x.shape)})"
        )
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(
            f"bias must have shape ({weight.shape[0]},), one value per output channel, "
            f"got {tuple(bias.shape)}"
        )


# ---------------------------------------------------------------------------
# Convolution
# ---------------------------------------------------------------------------


def conv2d_loops(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
) -> torch.Tensor:
    """2-D convolution written as the loops of its definition (slow; for reading).

    ``y[b, o, i, j] = bias[o] + sum_{c, u, v} weight[o, c, u, v] *
    x_pad[b, c, i*s + u*d, j*s + v*d]``

    Like every deep-learning library this computes a cross-correlation (the
    kernel is not flipped). Shapes: ``x`` (B, C_in, H, W), ``weight``
    (C_out, C_in, kH, kW), ``bias`` (C_out,), result (B, C_out, H_out, W_out).
    Use small inputs: this runs ``H_out * W_out`` Python iterations.

    Introduced in §2.1.
    """
    _check_conv_args(x, weight, bias)
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
    B, C_in, H, W = x.shape
    C_out, _, kH, kW = weight.shape
    H_out = conv_output_size(H, kH, sh, ph, dh)
    W_out = conv_output_size(W, kW, sw, pw, dw)

    x_pad = F.pad(x, (pw, pw, ph, ph))  # (B, C_in, H + 2ph, W + 2pw)
    y = x.new_zeros(B, C_out, H_out, W_out)
    for i in range(H_out):
        for j in range(W_out):
            # the window this output position sees, with dilation gaps skipped
            rows = slice(i * sh, i * sh + dh * (kH - 1) + 1, dh)
            cols = slice(j * sw, j * sw + dw * (kW - 1) + 1, dw)
            window = x_pad[:, :, rows, cols]  # (B, C_in, kH, kW)
            # multiply by every filter and sum over (C_in, kH, kW)
            y[:, :, i, j] = torch.einsum("bcuv,ocuv->bo", window, weight)  # (B, C_out)
    if bias is not None:
        y = y + bias.view(1, C_out, 1, 1)
    return y


def conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
) -> torch.Tensor:
    """2-D convolution as one matrix product over unfolded windows (fast).

    Same result as :func:`conv2d_loops`: ``F.unfold`` cuts every window out of
    the padded input and lays it flat as a column of length ``C_in * kH * kW``;
    the convolution is then one matrix product of the flattened filters with
    those columns ("im2col"). Same arguments as ``torch.nn.functional.conv2d``
    (without ``groups``).

    Introduced in §2.1.
    """
    _check_conv_args(x, weight, bias)
    stride, padding, dilation = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
    B, C_in, H, W = x.shape
    C_out, _, kH, kW = weight.shape
    H_out = conv_output_size(H, kH, stride[0], padding[0], dilation[0])
    W_out = conv_output_size(W, kW, stride[1], padding[1], dilation[1])

    cols = F.unfold(x, (kH, kW), dilation=dilation, padding=padding, stride=stride)  # (B, C_in*kH*kW, L)
    filters = weight.reshape(C_out, C_in * kH * kW)  # (C_out, C_in*kH*kW)
    y = filters @ cols  # (B, C_out, L), with L = H_out * W_out
    if bias is not None:
        y = y + bias.view(1, C_out, 1)
    return y.view(B, C_out, H_out, W_out)  # (B, C_out, H_out, W_out)


# ---------------------------------------------------------------------------
# Pooling
# ---------------------------------------------------------------------------


def _pool2d(
    x: torch.Tensor,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None,
    padding: int | Sequence[int],
    reduce: str,
) -> torch.Tensor:
    _check_images(x)
    kH, kW = _pair(kernel_size, "kernel_size")
    sH, sW = _pair(stride if stride is not None else kernel_size, "stride")
    pH, pW = _pair(padding, "padding")
    if 2 * pH > kH or 2 * pW > kW:
        raise ValueError(
            f"padding must be at most half the kernel size, got padding=({pH}, {pW}) "
            f"for kernel_size=({kH}, {kW})"
        )
    H_out = conv_output_size(x.shape[2], kH, sH, pH)
    W_out = conv_output_size(x.shape[3], kW, sW, pW)

    # Max pooling pads with -inf so padding never wins; average pooling pads
    # with zeros that count in the average (PyTorch's count_include_pad=True).
    fill = float("-inf") if reduce == "max" else 0.0
    x_pad = F.pad(x, (pW, pW, pH, pH), value=fill)  # (B, C, H + 2pH, W + 2pW)

    # One strided slice per position (u, v) inside the window: slice (u, v)
    # holds, for every output position, the input value at that window offset.
    slices = [
        x_pad[:, :, u : u + sH * (H_out - 1) + 1 : sH, v : v + sW * (W_out - 1) + 1 : sW]
        for u in range(kH)
        for v in range(kW)
    ]  # kH*kW tensors of shape (B, C, H_out, W_out)
    windows = torch.stack(slices, dim=-1)  # (B, C, H_out, W_out, kH*kW)
    if reduce == "max":
        return windows.amax(dim=-1)
    return windows.mean(dim=-1)


def max_pool2d(
    x: torch.Tensor,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
) -> torch.Tensor:
    """Max pooling from scratch: the largest value in each window.

    ``x`` (B, C, H, W) -> (B, C, H_out, W_out), sizes from
    :func:`conv_output_size`. ``stride`` defaults to ``kernel_size``
    (non-overlapping windows), as in ``torch.nn.functional.max_pool2d``.

    Introduced in §2.2.
    """
    return _pool2d(x, kernel_size, stride, padding, reduce="max")


def avg_pool2d(
    x: torch.Tensor,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
) -> torch.Tensor:
    """Average pooling from scratch: the mean of each window.

    Zero padding counts in the mean, as in ``torch.nn.functional.avg_pool2d``
    with its default ``count_include_pad=True``.

    Introduced in §2.2.
    """
    return _pool2d(x, kernel_size, stride, padding, reduce="mean")
