"""Probes: measurements that look inside a network rather than train it.

* ``shift_image`` and ``pooling_shift_sensitivity`` -- how much pooling cares
  about small shifts of the input (section 2.2).
* ``receptive_field_table`` and ``format_receptive_field_table`` -- output
  size, parameters and receptive field of every layer of a CNN (section 2.3).
* ``input_gradient_norms`` -- how strongly a recurrent network's last output
  depends on each earlier input: vanishing and exploding gradients (section 3.1).
* ``record_attention`` -- the attention weights of chosen attention layers
  while a model runs, to plot them (sections 4.5 and 4.6).
* ``attention_cost`` -- time and memory of from-scratch against fused
  attention as the sequence grows (section 4.1).

Shapes: ``B`` batch, ``C`` channels, ``H, W`` height and width, ``T`` time
steps, ``I`` input features.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn as nn
import torch.nn.functional as F

from bigmodel_lib.devices import evaluation_mode, get_device
from bigmodel_lib.memory import measure_peak_memory
from bigmodel_lib.models.attention import scaled_dot_product_attention
from bigmodel_lib.models.cnn import _check_images, _pair, max_pool2d
from bigmodel_lib.timing import time_call

__all__ = [
    "shift_image",
    "pooling_shift_sensitivity",
    "receptive_field_table",
    "format_receptive_field_table",
    "input_gradient_norms",
    "record_attention",
    "attention_cost",
]


# ---------------------------------------------------------------------------
# Pooling and small shifts


def shift_image(x: torch.Tensor, dx: int = 0, dy: int = 0) -> torch.Tensor:
    """Move images ``dx`` pixels right and ``dy`` pixels down, filling with zeros.

    Unlike ``torch.roll`` nothing wraps around: pixels pushed off one edge are
    lost and zeros come in from the other. ``x`` (..., H, W) -> same shape.

    Introduced in §2.2.
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

    For each horizontal shift ``s = 0, 1, ..., max_shift`` pixels this compares
    the shifted image with the original, before and after ``pool`` (default:
    2x2 max pooling with stride 2), as relative changes
    ``||f(shift(x)) - f(x)|| / ||f(x)||``. One row per shift::

        {"shift": s, "input_change": ..., "pooled_change": ...}

    A pooled change below the input change means pooling absorbed part of the
    shift; the notebook plots both against ``s``.

    Introduced in §2.2.
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


def receptive_field_table(
    model: nn.Module | Sequence[nn.Module], input_size: Sequence[int]
) -> list[dict]:
    """Per-layer output shape, parameter count and receptive field of a CNN.

    ``model`` is a module or a list of layers (run in order as an
    ``nn.Sequential``); ``input_size`` is ``(C, H, W)`` of one image. The model
    is run once on a zero image with forward hooks, so the rows follow the
    order in which layers are *called*: a pooling layer used twice (as in
    :class:`bigmodel_lib.articles.CorrectedCNN`) gets two rows, and a functional call such as ``F.relu``
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

    Introduced in §2.3.
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

    Introduced in §2.3.
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
# Vanishing and exploding gradients


def input_gradient_norms(model: nn.Module, x: torch.Tensor, batch_first: bool = True) -> torch.Tensor:
    """``||d y_T / d x_t||`` for every step ``t``: how much the last output feels each input.

    ``model(x)`` may return a tensor or a tuple whose first element is the
    output (as ``nn.RNN``, ``nn.LSTM`` and this module's classes do). A 3-D
    output is a sequence and its last step is ``y_T``; a 2-D output (B, O), as
    from a classifier, is ``y_T`` already. For each step ``t`` this returns the
    Frobenius norm of the Jacobian ``d y_T / d x_t`` (O x I), averaged over the
    batch: a tensor of shape (T,). Index ``t`` is at distance ``T - 1 - t``
    from the output, so ``norms.flip(0)`` is ordered by distance.

    Costs one backward pass per output component; meant for small models.
    The model's train/eval mode is left as it is (on a GPU, cuDNN computes
    gradients of ``nn.RNN``/``nn.LSTM`` only in train mode).

    Introduced in §3.1.
    """
    if x.dim() != 3:
        raise ValueError(
            f"x must be a batch of sequences, {'(B, T, I)' if batch_first else '(T, B, I)'}, "
            f"got shape {tuple(x.shape)}"
        )
    x = x.detach().clone().requires_grad_(True)
    y = model(x)
    if isinstance(y, tuple):
        y = y[0]
    if y.dim() == 3:
        y = y[:, -1] if batch_first else y[-1]  # (B, O): the last step
    if y.dim() != 2:
        raise ValueError(f"expected the model's output to be (B, O) or a sequence of them, got {tuple(y.shape)}")

    squared = torch.zeros_like(x)  # accumulates (d y_T[k] / d x)^2 over output components k
    for k in range(y.shape[1]):
        # Sequences in a batch are independent, so the gradient of the batch sum
        # of y_T[:, k] holds every sequence's own gradient.
        (grad,) = torch.autograd.grad(y[:, k].sum(), x, retain_graph=k < y.shape[1] - 1)
        squared += grad**2
    per_step = squared.sum(dim=-1).sqrt()  # (B, T) or (T, B): Frobenius norm over (O, I)
    return per_step.mean(dim=0 if batch_first else 1).detach()  # (T,)


# ---------------------------------------------------------------------------
# Attention maps


@contextmanager
def record_attention(*modules: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Record the attention weights of ``modules`` on every call while a model runs.

    ``with record_attention(layer_a, layer_b) as maps: model(x)`` leaves in
    ``maps`` one detached (B, nh, Tq, Tk) tensor per call, in call order. Each
    module must have a method ``attention_weights`` that takes its forward's
    arguments, as :class:`~bigmodel_lib.models.attention.MultiHeadAttention`
    and the GPT's ``CausalSelfAttention`` do; the weights are recomputed from
    the call's inputs, so a fused kernel that never stores them still works.
    The hooks are removed on exit, also after an error. Raises ValueError for
    a module without ``attention_weights``.

    Introduced in §4.5.
    """
    for module in modules:
        if not callable(getattr(module, "attention_weights", None)):
            raise ValueError(
                f"expected attention modules with an attention_weights method (MultiHeadAttention, "
                f"CausalSelfAttention), got {type(module).__name__}"
            )
    maps: list[torch.Tensor] = []

    def hook(module, args, kwargs, output):
        with torch.no_grad():
            maps.append(module.attention_weights(*args, **kwargs).detach())

    handles = [module.register_forward_hook(hook, with_kwargs=True) for module in modules]
    try:
        yield maps
    finally:
        for handle in handles:
            handle.remove()


# ---------------------------------------------------------------------------
# The cost of attention


def attention_cost(
    seq_lens=(128, 256, 512, 1024),
    batch_size: int = 1,
    num_heads: int = 4,
    head_size: int = 64,
    device=None,
    dtype: torch.dtype = torch.float32,
    repeats: int = 3,
) -> list[dict]:
    """Time and peak memory of from-scratch vs fused attention against sequence length.

    For each T in ``seq_lens`` runs causal attention on random (B, nh, T, hs)
    tensors with :func:`scaled_dot_product_attention` (which builds the full
    (B, nh, T, T) weight matrix) and with ``F.scaled_dot_product_attention``
    (which can use a fused kernel that never stores it). Returns one dict per
    (T, implementation) with keys ``seq_len``, ``impl`` ("from scratch" or
    "fused"), ``ms`` (best of ``repeats``), ``peak_mib`` (the most memory the
    call allocates on top of its inputs, in MiB: from PyTorch's allocator on
    CUDA, from a :class:`~bigmodel_lib.memory.TensorMemoryTracker` elsewhere,
    measured in a separate untimed call) and ``weights_mib`` (for the
    from-scratch rows, the size of the (B, nh, T, T) weight matrix it
    materialises; None for the fused rows).
    On a CPU shared with other work, ``torch.set_num_threads(1)`` first gives
    steadier times.

    Introduced in §4.1.
    """
    dev = get_device(device)
    element_size = torch.empty((), dtype=dtype).element_size()
    implementations = {
        "from scratch": lambda q, k, v: scaled_dot_product_attention(q, k, v, is_causal=True),
        "fused": lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
    }
    rows = []
    for T in seq_lens:
        gen = torch.Generator(device="cpu").manual_seed(0)
        q, k, v = (torch.randn(batch_size, num_heads, T, head_size, generator=gen).to(dev, dtype) for _ in range(3))
        for impl, attention in implementations.items():
            with torch.no_grad():
                call = functools.partial(attention, q, k, v)
                memory = measure_peak_memory(call, held=(q, k, v), device=dev)  # also the warm-up
                best = time_call(attention, q, k, v, repeats=repeats, warmup=0, device=dev).best_s
            peak = (memory.peak_bytes - memory.held_bytes) / 2**20
            weights_mib = batch_size * num_heads * T * T * element_size / 2**20  # the (B, nh, T, T) matrix
            rows.append(
                {
                    "seq_len": T,
                    "impl": impl,
                    "ms": best * 1e3,
                    "peak_mib": peak,
                    "weights_mib": weights_mib if impl == "from scratch" else None,
                }
            )
    return rows
