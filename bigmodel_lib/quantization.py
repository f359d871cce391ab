"""8-bit dynamic quantization: the arithmetic written out, and PyTorch's implementation wrapped.

*Dynamic* quantization stores a layer's weights as 8-bit integers once, ahead of
time, and quantizes each batch of activations on the fly, with a scale taken
from that batch's own range; the matrix product runs on integers and its result
is scaled back to floating point. Nothing is trained or calibrated, so it
applies to any trained model in one call, and it pays where the time goes into
``nn.Linear`` and recurrent layers on a CPU (convolutions need *static*
quantization, with calibration data).

* :func:`quantize_weight_int8` -- symmetric per-tensor int8 weights, as
  PyTorch's default dynamic weight observer computes them;
* :func:`dynamic_int8_linear` -- ``x W^T + b`` through 8-bit integers, the
  formula of PyTorch's x86 (fbgemm) kernel, equal to it to float rounding
  (``tests/test_quantization.py``);
* :func:`quantize_dynamic_int8` -- a quantized copy of a model through PyTorch's
  ``torch.ao.quantization.quantize_dynamic``, the well-kept implementation;
* :func:`serialized_bytes` -- the bytes a model's ``state_dict`` takes on disk.

``torch.ao.quantization`` is deprecated in favour of the separate ``torchao``
package, but in PyTorch 2.14 it is still shipped and, on a CPU without
``torch.compile``, it is the faster of the two (chapter 7, §7.6, measures both);
:func:`quantize_dynamic_int8` silences its deprecation warnings and raises a
clear error if a future PyTorch no longer has it.
"""

from __future__ import annotations

import copy
import io
import warnings

import torch
import torch.nn as nn

DEFAULT_LAYERS = (nn.Linear, nn.LSTM, nn.GRU)


def quantize_weight_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-tensor int8 quantization of a weight matrix.

    ``scale = max|W| / 127.5`` (the range ``[-max|W|, max|W|]`` spread over the 255
    steps of int8), ``q = clamp(round(W / scale), -128, 127)``, zero point 0, so
    ``W ~ scale * q`` with an error of at most ``scale / 2`` per entry. The division
    is computed as PyTorch's kernels compute it, as a product with the float32
    ``1 / scale``: the entry with the largest magnitude sits at +-127.5, exactly on a
    rounding tie, where the two ways can round differently.

    Args:
        weight: a floating-point tensor of any shape, e.g. ``(out_features, in_features)``.

    Returns:
        ``(q, scale)``: ``q`` int8 of ``weight``'s shape, ``scale`` a 0-d float tensor.

    Raises:
        TypeError: if ``weight`` is not a floating-point tensor.

    Introduced in §7.6.
    """
    if not isinstance(weight, torch.Tensor) or not weight.is_floating_point():
        raise TypeError(f"expected a floating-point weight tensor, got {type(weight).__name__}"
                        + (f" of dtype {weight.dtype}" if isinstance(weight, torch.Tensor) else ""))
    scale = weight.detach().abs().max().clamp(min=torch.finfo(torch.float32).tiny) / 127.5
    q = torch.clamp(torch.round(weight.detach() * (1 / scale)), -128, 127).to(torch.int8)
    return q, scale


def dynamic_int8_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                        reduce_range: bool = True) -> torch.Tensor:
    """``x W^T + b`` computed the way a dynamically quantized linear layer computes it.

    The weights are quantized symmetrically (:func:`quantize_weight_int8`). The
    activations are quantized *asymmetrically* to unsigned integers over the
    batch's own range, widened to include 0:
    ``s_x = (max(x, 0) - min(x, 0)) / q_max``, ``z = round(-min(x, 0) / s_x)``,
    ``q_x = clamp(round(x / s_x) + z, 0, q_max)``. Then
    ``y = s_x s_W (q_x - z) q_W^T + b``: an integer matrix product and one
    multiplication to return to floating point. ``q_max`` is 127 with
    ``reduce_range`` (PyTorch's x86 and fbgemm engines use 7 of the 8 bits, so
    that sums of products cannot overflow their 16-bit intermediates) and 255
    without it (the qnnpack engine of ARM machines).

    Args:
        x: ``(..., in_features)`` float activations.
        weight: ``(out_features, in_features)``; bias: ``(out_features,)`` or None.
        reduce_range: use 7-bit activations, as PyTorch does on x86.

    Returns:
        ``(..., out_features)`` float32.

    Raises:
        ValueError: if the last dimension of ``x`` is not ``in_features``.

    Introduced in §7.6.
    """
    if weight.ndim != 2 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"expected x of shape (..., {weight.shape[-1]}) and a 2-D weight, "
                         f"got x {tuple(x.shape)} and weight {tuple(weight.shape)}")
    q_w, s_w = quantize_weight_int8(weight)
    q_max = 127 if reduce_range else 255
    lo, hi = x.detach().min().clamp(max=0.0), x.detach().max().clamp(min=0.0)
    s_x = ((hi - lo) / q_max).clamp(min=torch.finfo(torch.float32).tiny)
    z = torch.clamp(torch.round(-lo / s_x), 0, q_max)
    q_x = torch.clamp(torch.round(x.detach() * (1 / s_x)) + z, 0, q_max)
    # integers held exactly in float32 (|products| < 2^24 for these sizes); int matmul is not on every device
    y = (s_x * s_w) * ((q_x - z) @ q_w.to(torch.float32).T)
    return y if bias is None else y + bias.detach()


def quantize_dynamic_int8(
    model: nn.Module, layers: tuple[type[nn.Module] | str, ...] | set = DEFAULT_LAYERS
) -> nn.Module:
    """A copy of ``model`` with its ``layers`` (by default Linear, LSTM, GRU) dynamically quantized to int8.

    ``layers`` holds module classes (every module of that class is converted)
    or qualified module names as ``model.named_modules()`` gives them, e.g.
    ``"layers.0.linear1"`` (just that module; section 8.2 keeps some linear
    layers in float32 this way).

    The original is left untouched. The copy is in evaluation mode and runs on
    the CPU only (PyTorch's dynamic int8 kernels are CPU kernels). Uses
    ``torch.ao.quantization.quantize_dynamic`` with ``dtype=torch.qint8``; its
    deprecation warnings are silenced here (see the module docstring).

    Raises:
        ValueError: if a parameter of ``model`` is not on the CPU.
        RuntimeError: if this PyTorch has no ``torch.ao.quantization.quantize_dynamic``.

    Introduced in §7.6.
    """
    devices = {p.device.type for p in model.parameters()}
    if devices - {"cpu"}:
        raise ValueError(f"expected a model on the CPU (dynamic int8 kernels are CPU-only), got parameters on "
                         f"{sorted(devices)}: call model.cpu() first")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize.*deprecated.*")
        try:
            from torch.ao.quantization import quantize_dynamic
        except ImportError as error:  # pragma: no cover - depends on the PyTorch release
            raise RuntimeError(
                f"torch {torch.__version__} has no torch.ao.quantization.quantize_dynamic; install the torchao "
                "package and use torchao.quantization.quantize_(model, Int8DynamicActivationInt8WeightConfig())"
            ) from error
        return quantize_dynamic(copy.deepcopy(model).eval(), set(layers), dtype=torch.qint8)


def serialized_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``: the model's size on disk, quantized or not.

    Introduced in §7.6.
    """
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes
