"""Convolutional networks from their definitions (chapter 2).

What is here, in the order the chapter builds it:

* ``conv_output_size`` -- the output-size formula of a convolution or pooling.
* ``conv2d_loops`` and ``conv2d`` -- a 2-D convolution written from its
  definition, first as plain loops (to read), then with ``unfold`` (to use).
* ``max_pool2d``, ``avg_pool2d``, ``shift_image`` and
  ``pooling_shift_sensitivity`` -- pooling from scratch and how much it cares
  about small shifts of the input.
* ``receptive_field_table`` -- output size, parameters and receptive field of
  every layer of a network.
* ``SeedCNN`` and ``DCNN`` -- the two networks of the source articles, with
  their hard-coded flatten size fixed; ``seed_cnn_source``, ``seed_cnn_class``
  and ``seed_cnn_view_rows`` show what the published code does.

Shapes use one notation: ``B`` batch, ``C`` channels, ``H, W`` height and width,
``k`` kernel size, ``L`` number of sliding-window positions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from bigmodel_lib.devices import evaluation_mode

__all__ = [
    "conv_output_size",
    "conv2d_loops",
    "conv2d",
    "max_pool2d",
    "avg_pool2d",
    "shift_image",
    "pooling_shift_sensitivity",
    "receptive_field_table",
    "format_receptive_field_table",
    "SeedCNN",
    "DCNN",
    "seed_cnn_source",
    "seed_cnn_class",
    "seed_cnn_view_rows",
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

    Chapter 2, section 2.1 (the convolution layer).

    ``floor((n + 2p - d(k - 1) - 1) / s) + 1``: the padded input has ``n + 2p``
    positions, a dilated kernel spans ``d(k - 1) + 1`` of them, and the window
    moves ``s`` positions at a time.

    >>> conv_output_size(32, kernel=3, padding=1)
    32
    >>> conv_output_size(32, kernel=2, stride=2)
    16
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

    Chapter 2, section 2.1 (the convolution layer).

    ``y[b, o, i, j] = bias[o] + sum_{c, u, v} weight[o, c, u, v] *
    x_pad[b, c, i*s + u*d, j*s + v*d]``

    Like every deep-learning library this computes a cross-correlation (the
    kernel is not flipped). Shapes: ``x`` (B, C_in, H, W), ``weight``
    (C_out, C_in, kH, kW), ``bias`` (C_out,), result (B, C_out, H_out, W_out).
    Use small inputs: this runs ``H_out * W_out`` Python iterations.
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

    Chapter 2, section 2.1 (the convolution layer).

    Same result as :func:`conv2d_loops`: ``F.unfold`` cuts every window out of
    the padded input and lays it flat as a column of length ``C_in * kH * kW``;
    the convolution is then one matrix product of the flattened filters with
    those columns ("im2col"). Same arguments as ``torch.nn.functional.conv2d``
    (without ``groups``).
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

    Chapter 2, section 2.2 (the pooling layer).

    ``x`` (B, C, H, W) -> (B, C, H_out, W_out), sizes from
    :func:`conv_output_size`. ``stride`` defaults to ``kernel_size``
    (non-overlapping windows), as in ``torch.nn.functional.max_pool2d``.
    """
    return _pool2d(x, kernel_size, stride, padding, reduce="max")


def avg_pool2d(
    x: torch.Tensor,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
) -> torch.Tensor:
    """Average pooling from scratch: the mean of each window.

    Chapter 2, section 2.2 (the pooling layer).

    Zero padding counts in the mean, as in ``torch.nn.functional.avg_pool2d``
    with its default ``count_include_pad=True``.
    """
    return _pool2d(x, kernel_size, stride, padding, reduce="mean")


def shift_image(x: torch.Tensor, dx: int = 0, dy: int = 0) -> torch.Tensor:
    """Move images ``dx`` pixels right and ``dy`` pixels down, filling with zeros.

    Chapter 2, section 2.2 (the pooling layer: invariance to small shifts).

    Unlike ``torch.roll`` nothing wraps around: pixels pushed off one edge are
    lost and zeros come in from the other. ``x`` (..., H, W) -> same shape.
    """
    if x.dim() < 2:
        raise ValueError(f"expected an image (..., H, W), got shape {tuple(x.shape)}")
    H, W = x.shape[-2:]
    if abs(dx) >= W or abs(dy) >= H:
        raise ValueError(f"shift (dx={dx}, dy={dy}) must be smaller than the image (H={H}, W={W})")
    out = torch.zeros_like(x)
    src_rows = slice(max(0, -dy), H - max(0, dy))
    dst_rows = slice(max(0, dy), H - max(0, -dy))
    src_cols = slice(max(0, -dx), W - max(0, dx))
    dst_cols = slice(max(0, dx), W - max(0, -dx))
    out[..., dst_rows, dst_cols] = x[..., src_rows, src_cols]
    return out


def pooling_shift_sensitivity(
    x: torch.Tensor,
    pool: Callable[[torch.Tensor], torch.Tensor] | None = None,
    max_shift: int = 4,
) -> list[dict[str, float]]:
    """How much an image and its pooled version change when the image moves.

    Chapter 2, section 2.2 (the pooling layer: invariance to small shifts).

    For each horizontal shift ``s = 0, 1, ..., max_shift`` pixels this compares
    the shifted image with the original, before and after ``pool`` (default:
    2x2 max pooling with stride 2), as relative changes
    ``||f(shift(x)) - f(x)|| / ||f(x)||``. One row per shift::

        {"shift": s, "input_change": ..., "pooled_change": ...}

    A pooled change below the input change means pooling absorbed part of the
    shift; the notebook plots both against ``s``.
    """
    _check_images(x)
    if pool is None:
        pool = lambda t: max_pool2d(t, kernel_size=2, stride=2)  # noqa: E731
    if not 0 <= max_shift < x.shape[-1]:
        raise ValueError(f"max_shift must be in [0, W={x.shape[-1]}), got {max_shift}")
    pooled = pool(x)
    x_norm, pooled_norm = x.norm().item(), pooled.norm().item()
    if x_norm == 0 or pooled_norm == 0:
        raise ValueError("x (and its pooled version) must not be all zeros: relative change is undefined")
    rows = []
    for s in range(max_shift + 1):
        shifted = shift_image(x, dx=s)
        rows.append(
            {
                "shift": s,
                "input_change": (shifted - x).norm().item() / x_norm,
                "pooled_change": (pool(shifted) - pooled).norm().item() / pooled_norm,
            }
        )
    return rows


# ---------------------------------------------------------------------------
# Receptive fields
# ---------------------------------------------------------------------------


def receptive_field_table(
    model: nn.Module | Sequence[nn.Module], input_size: Sequence[int]
) -> list[dict]:
    """Per-layer output shape, parameter count and receptive field of a CNN.

    Chapter 2, section 2.3 (receptive fields and the size of a network).

    ``model`` is a module or a list of layers (run in order as an
    ``nn.Sequential``); ``input_size`` is ``(C, H, W)`` of one image. The model
    is run once on a zero image with forward hooks, so the rows follow the
    order in which layers are *called*: a pooling layer used twice (as in
    :class:`SeedCNN`) gets two rows, and a functional call such as ``F.relu``
    gets none (it changes neither sizes nor receptive fields).

    Receptive field ``r`` (input pixels one output value depends on, per axis)
    and jump ``j`` (input pixels between neighbouring outputs) start at
    ``r = j = 1`` and follow, for a convolution or pooling with kernel ``k``,
    stride ``s`` and dilation ``d``::

        r_out = r_in + d (k - 1) j_in        j_out = j_in s

    Layers that keep the spatial size (ReLU, BatchNorm, Dropout) leave both
    unchanged. After ``Flatten``/``Linear`` (or global pooling) every value
    depends on the whole image, so the receptive field is reported as the input
    size ``(H, W)``.

    Returns a list of dicts, one per call, starting with the input::

        {"layer": "conv1", "type": "Conv2d", "output_shape": (32, 32, 32),
         "params": 896, "receptive_field": (3, 3)}
    """
    if isinstance(model, nn.Module):
        net = model
    else:
        net = nn.Sequential(*model)
    input_size = tuple(input_size)
    if len(input_size) != 3 or not all(isinstance(v, int) and v > 0 for v in input_size):
        raise ValueError(f"input_size must be (C, H, W) of one image, e.g. (3, 32, 32), got {input_size}")

    calls: list[tuple[str, nn.Module, torch.Size, torch.Size]] = []
    names = {module: name for name, module in net.named_modules()}
    hooks = []
    for module in net.modules():
        if len(list(module.children())) == 0:  # leaf layers only

            def hook(mod, inputs, output):
                calls.append((names[mod] or type(mod).__name__, mod, inputs[0].shape, output.shape))

            hooks.append(module.register_forward_hook(hook))
    try:
        param = next(net.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        # Eval mode: a batch of one image, and BatchNorm after a Linear would refuse it in train mode.
        with evaluation_mode(net), torch.no_grad():
            net(torch.zeros(1, *input_size, device=device))
    finally:
        for h in hooks:
            h.remove()

    C, H, W = input_size
    rf, jump = [1, 1], [1, 1]
    whole_image = False
    rows = [{"layer": "input", "type": "-", "output_shape": (C, H, W), "params": 0, "receptive_field": (1, 1)}]
    for name, mod, in_shape, out_shape in calls:
        if isinstance(mod, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)) and not whole_image:
            k = _pair(mod.kernel_size, "kernel_size")
            s = _pair(mod.stride if mod.stride is not None else mod.kernel_size, "stride")
            d = _pair(getattr(mod, "dilation", 1), "dilation")
            for axis in range(2):
                rf[axis] += d[axis] * (k[axis] - 1) * jump[axis]
                jump[axis] *= s[axis]
        elif len(out_shape) != 4 or isinstance(mod, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            whole_image = True  # flattened or globally pooled: sees the whole image
        elif tuple(out_shape[2:]) != tuple(in_shape[2:]) and not whole_image:
            raise ValueError(
                f"layer {name!r} ({type(mod).__name__}) changes the spatial size from "
                f"{tuple(in_shape[2:])} to {tuple(out_shape[2:])}, and receptive_field_table "
                "does not know its kernel and stride"
            )
        rows.append(
            {
                "layer": name,
                "type": type(mod).__name__,
                "output_shape": tuple(out_shape[1:]),
                "params": sum(p.numel() for p in mod.parameters(recurse=False)),
                "receptive_field": (H, W) if whole_image else (rf[0], rf[1]),
            }
        )
    return rows


def format_receptive_field_table(rows: list[dict]) -> str:
    """Render :func:`receptive_field_table` rows as an aligned text table.

    Chapter 2, section 2.3 (receptive fields and the size of a network).
    """
    header = ("layer", "type", "output shape", "params", "receptive field")
    lines = [
        (
            r["layer"],
            r["type"],
            " x ".join(str(v) for v in r["output_shape"]),
            f"{r['params']:,}",
            f"{r['receptive_field'][0]} x {r['receptive_field'][1]}",
        )
        for r in rows
    ]
    total = ("total", "", "", f"{sum(r['params'] for r in rows):,}", "")
    widths = [max(len(str(line[i])) for line in [header, *lines, total]) for i in range(5)]
    fmt = "  ".join(f"{{:<{w}}}" if i < 3 else f"{{:>{w}}}" for i, w in enumerate(widths))
    rule = "-" * (sum(widths) + 2 * 4)
    return "\n".join([fmt.format(*header), rule, *(fmt.format(*line) for line in lines), rule, fmt.format(*total)])


# ---------------------------------------------------------------------------
# The source articles' networks, fixed
# ---------------------------------------------------------------------------


class SeedCNN(nn.Module):
    """Seed 000's ``CNN`` with the flatten size computed instead of hard-coded.

    Chapter 2, section 2.4 (a first CNN, and the bug in the published one).

    Architecture (unchanged from the article; names match its ``CNN`` so its
    ``state_dict`` loads as is)::

        conv1  3x3, in_channels -> 32, padding 1   (B, 32, H, W)
        ReLU, 2x2 max pool, stride 2              (B, 32, H/2, W/2)
        conv2  3x3, 32 -> 64, padding 1            (B, 64, H/2, W/2)
        ReLU, 2x2 max pool, stride 2              (B, 64, H/4, W/4)
        flatten                                   (B, 64 * H/4 * W/4)
        fc1    -> 128, ReLU; fc2 -> num_classes   (B, num_classes)

    **The published defect.** The article writes ``nn.Linear(64 * 6 * 6, 128)``
    and ``x.view(-1, 64 * 6 * 6)``. A 3x3 convolution with padding 1 keeps the
    size, and each 2x2 pooling halves it (rounding down), so the side after the
    two poolings is ``floor(floor(n / 2) / 2) = floor(n / 4)``. ``6`` therefore
    means a 24x24 input: 24 -> 12 -> 6 (and, by rounding, 25, 26 and 27 px too).
    On a CIFAR-sized 32x32 image the features are 32 -> 16 -> 8, i.e.
    ``64 * 8 * 8 = 4096`` per image, and ``view(-1, 2304)`` (torch 2.14):

    * raises ``RuntimeError: shape '[-1, 2304]' is invalid for input of size
      4096`` for a batch of 1 (``16384`` for a batch of 4, and so on), whenever
      ``4096 * B`` is not a multiple of 2304, i.e. ``B`` is not a multiple of 9;
    * silently returns the **wrong batch size** when ``B`` is a multiple of 9:
      a batch of 9 becomes 16 rows of 2304 numbers that mix images, the output
      is (16, 10), and the error only surfaces later, if at all, when the loss
      compares 16 predictions with 9 labels;
    * and for 48x48 images (side 12 after pooling, four times 6 * 6) every
      batch size "works": ``B`` images come out as ``4 * B`` rows.

    :func:`seed_cnn_view_rows` computes which case a size and batch land in.

    **The fix.** ``input_size`` is a constructor argument, the flatten size is
    ``64 * (H // 4) * (W // 4)``, ``flatten(1)`` keeps the batch dimension no
    matter what, and an image of another size raises a ``ValueError`` naming
    the size the network was built for.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, input_size: int | Sequence[int] = 32):
        super().__init__()
        self.in_channels = in_channels
        self.input_size = _pair(input_size, "input_size")
        H, W = self.input_size
        if H < 4 or W < 4:
            raise ValueError(f"input_size must be at least 4x4 (two 2x2 poolings), got {H}x{W}")
        self.conv1 = nn.Conv2d(in_channels, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        # Two 2x2 poolings, each rounding down: H -> H // 2 -> H // 4.
        self.flatten_size = 64 * (H // 4) * (W // 4)
        self.fc1 = nn.Linear(self.flatten_size, 128)
        self.fc2 = nn.Linear(128, num_classes)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a ValueError unless ``x`` is (B, in_channels, H, W) of the built size."""
        C, (H, W) = self.in_channels, self.input_size
        expected = f"(B, {C}, {H}, {W})"
        if x.dim() != 4:
            hint = " (a single image? add a batch dimension with x.unsqueeze(0))" if x.dim() == 3 else ""
            raise ValueError(
                f"{type(self).__name__} expects a batch of images {expected}, "
                f"got a {x.dim()}-D tensor of shape {tuple(x.shape)}{hint}"
            )
        if x.shape[1] != C:
            raise ValueError(
                f"{type(self).__name__} was built for {C}-channel images {expected}, got {x.shape[1]} "
                f"channels in shape {tuple(x.shape)}"
            )
        if tuple(x.shape[2:]) != (H, W):
            raise ValueError(
                f"{type(self).__name__} was built for {H}x{W} images {expected}, got "
                f"{x.shape[2]}x{x.shape[3]} in shape {tuple(x.shape)}; build it with "
                f"input_size=({x.shape[2]}, {x.shape[3]}) or resize the images"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.pool(F.relu(self.conv1(x)))  # (B, 32, H/2, W/2)
        x = self.pool(F.relu(self.conv2(x)))  # (B, 64, H/4, W/4)
        x = x.flatten(1)  # (B, 64 * H/4 * W/4): the batch dimension is never touched
        x = F.relu(self.fc1(x))  # (B, 128)
        return self.fc2(x)  # (B, num_classes)


class DCNN(SeedCNN):
    """Seed 001's ``DCNN`` for 1x28x28 images (MNIST), flatten size computed.

    Chapter 2, section 2.4 (a first CNN, and the bug in the published one).

    The article's ``DCNN`` is the same network as seed 000's ``CNN`` (conv 32,
    conv 64, a 2x2 max pool after each, fc 128, fc 10) for one input channel;
    it writes ``64 * 7 * 7``, which is right for 28x28 images (28 -> 14 -> 7;
    28 to 31 px give 7 after rounding down) and wrong for any other size, with
    the same ``view(-1, ...)`` failure as :class:`SeedCNN` (for 32x32: a
    ``RuntimeError`` unless the batch is a multiple of 49). The article also
    keeps its ReLU as a module, ``self.relu``; so does this class, so the
    article's ``state_dict`` loads as is. Its training loop uses a
    ``train_loader`` it never defines (see :func:`seed_cnn_source`).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: int | Sequence[int] = 28):
        super().__init__(in_channels, num_classes, input_size)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.pool(self.relu(self.conv1(x)))  # (B, 32, H/2, W/2)
        x = self.pool(self.relu(self.conv2(x)))  # (B, 64, H/4, W/4)
        x = x.flatten(1)  # (B, 64 * H/4 * W/4)
        x = self.relu(self.fc1(x))  # (B, 128)
        return self.fc2(x)  # (B, num_classes)


# ---------------------------------------------------------------------------
# The published code, token for token
# ---------------------------------------------------------------------------

# Seed 000, section 4.1, exactly as the web page shows it: the page lost every
# line break and indent, so the whole program is one line.
_PUBLISHED_000 = (
    "import torchimport torch.nn as nnimport torch.nn.functional as Fclass CNN(nn.Module):"
    "def __init__(self):super(CNN, self).__init__()self.conv1 = nn.Conv2d(3, 32, 3, padding=1)"
    "self.conv2 = nn.Conv2d(32, 64, 3, padding=1)self.pool = nn.MaxPool2d(2, 2)"
    "self.fc1 = nn.Linear(64 * 6 * 6, 128)self.fc2 = nn.Linear(128, 10)def forward(self, x):"
    "x = self.pool(F.relu(self.conv1(x)))x = self.pool(F.relu(self.conv2(x)))"
    "x = x.view(-1, 64 * 6 * 6)x = F.relu(self.fc1(x))x = self.fc2(x)return xnet = CNN()"
)

_SOURCE_000 = """\
import torch
import torch.nn as nn
import torch.nn.functional as F

class CNN(nn.Module):
    def __init__(self):
        super(CNN, self).__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(64 * 6 * 6, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.view(-1, 64 * 6 * 6)
        x = F.relu(self.fc1(x))
        x = self.fc2(x)
        return x

net = CNN()
"""

# Seed 001, section 1.5.1: line breaks survived, indentation did not.
_SOURCE_001_MODEL = """\
import torch
import torch.nn as nn
import torch.optim as optim

class DCNN(nn.Module):
    def __init__(self):
        super(DCNN, self).__init__()
        self.conv1 = nn.Conv2d(in_channels=1, out_channels=32, kernel_size=3, stride=1, padding=1)
        self.conv2 = nn.Conv2d(in_channels=32, out_channels=64, kernel_size=3, stride=1, padding=1)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.fc1 = nn.Linear(in_features=64 * 7 * 7, out_features=128)
        self.fc2 = nn.Linear(in_features=128, out_features=10)
        self.relu = nn.ReLU()

    def forward(self, x):
        x = self.pool(self.relu(self.conv1(x)))
        x = self.pool(self.relu(self.conv2(x)))
        x = x.view(-1, 64 * 7 * 7)
        x = self.relu(self.fc1(x))
        x = self.fc2(x)
        return x

model = DCNN()
criterion = nn.CrossEntropyLoss()
optimizer = optim.SGD(model.parameters(), lr=0.01)
"""

_SOURCE_001_LOOP = """\

# 训练模型
for epoch in range(10):
    for data, target in train_loader:
        optimizer.zero_grad()
        output = model(data)
        loss = criterion(output, target)
        loss.backward()
        optimizer.step()
"""

# Seed 001, section 1.5.1, exactly as the web page shows it (no indentation).
_PUBLISHED_001 = """\
import torch
import torch.nn as nn
import torch.optim as optim
class DCNN(nn.Module):
def __init__(self):
super(DCNN, self).__init__()
self.conv1 = nn.Conv2d(in_channels=1, out_channels=32, kernel_size=3, stride=1, padding=1)
self.conv2 = nn.Conv2d(in_channels=32, out_channels=64, kernel_size=3, stride=1, padding=1)
self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
self.fc1 = nn.Linear(in_features=64 * 7 * 7, out_features=128)
self.fc2 = nn.Linear(in_features=128, out_features=10)
self.relu = nn.ReLU()
def forward(self, x):
x = self.pool(self.relu(self.conv1(x)))
x = self.pool(self.relu(self.conv2(x)))
x = x.view(-1, 64 * 7 * 7)
x = self.relu(self.fc1(x))
x = self.fc2(x)
return x
model = DCNN()
criterion = nn.CrossEntropyLoss()
optimizer = optim.SGD(model.parameters(), lr=0.01)
# 训练模型
for epoch in range(10):
for data, target in train_loader:
optimizer.zero_grad()
output = model(data)
loss = criterion(output, target)
loss.backward()
optimizer.step()
"""


def seed_cnn_source(seed: str, include_training_loop: bool = True) -> str:
    """The source article's CNN code, every token as published, re-indented.

    Chapter 2, section 2.4 (a first CNN, and the bug in the published one).

    ``seed="000"``: the ``CNN`` of seed 000 (section 4.1), ending in
    ``net = CNN()``. The page lost its line breaks and indentation; the layout
    is reconstructed, the tokens are not changed.

    ``seed="001"``: the ``DCNN`` of seed 001 (section 1.5.1) with its loss,
    optimizer and training loop. The loop iterates over ``train_loader``, which
    the article never defines, so executing the full source raises
    ``NameError: name 'train_loader' is not defined`` after the model is built.
    ``include_training_loop=False`` leaves the loop out (seed 000 has none).

    The returned string can be given to ``exec`` in a notebook.
    """
    if seed == "000":
        return _SOURCE_000
    if seed == "001":
        return _SOURCE_001_MODEL + (_SOURCE_001_LOOP if include_training_loop else "")
    raise ValueError(f"seed must be '000' (CNN) or '001' (DCNN), got {seed!r}")


def seed_cnn_class(seed: str) -> type[nn.Module]:
    """Execute the published code (without training loop) and return its class.

    Chapter 2, section 2.4 (a first CNN, and the bug in the published one).

    ``seed_cnn_class("000")`` is the article's ``CNN``, ``seed_cnn_class("001")``
    its ``DCNN``, unchanged, hard-coded flatten size included.
    """
    namespace: dict = {}
    exec(compile(seed_cnn_source(seed, include_training_loop=False), f"<seed {seed}>", "exec"), namespace)
    return namespace["CNN" if seed == "000" else "DCNN"]


def seed_cnn_view_rows(input_size: int, batch_size: int, seed: str = "000") -> int | None:
    """Rows the published ``x.view(-1, 64 * s * s)`` makes of a batch, or None if it raises.

    Chapter 2, section 2.4 (a first CNN, and the bug in the published one).

    After the two poolings each image of side ``n`` has ``64 * (n // 4) ** 2``
    numbers; ``view(-1, 64 * s * s)`` (``s = 6`` in seed 000, ``7`` in seed 001)
    works whenever the batch's total is a multiple of ``64 * s * s`` and then
    makes ``total / (64 * s * s)`` rows -- equal to ``batch_size`` only when
    ``n // 4 == s``. Otherwise PyTorch raises
    ``RuntimeError: shape '[-1, 64*s*s]' is invalid for input of size total``.

    >>> seed_cnn_view_rows(24, 9), seed_cnn_view_rows(32, 9), seed_cnn_view_rows(32, 8)
    (9, 16, None)
    """
    side = {"000": 6, "001": 7}.get(seed)
    if side is None:
        raise ValueError(f"seed must be '000' or '001', got {seed!r}")
    total = batch_size * 64 * (input_size // 4) ** 2
    width = 64 * side * side
    if total == 0 or total % width != 0:
        return None
    return total // width
