"""Metrics and counting: how good a model is, how big it is, and how much it computes.

* Quality: :func:`accuracy`, :func:`perplexity`, :func:`confusion_matrix`, the
  95% interval of an accuracy measured on a test set (:func:`wilson_interval`), and the
  edit-distance error rates for sequence outputs (:func:`token_error_rate`,
  :func:`sequence_error_rate`).
* Size: :func:`count_parameters` and :func:`count_parameters_by_module`.
* Compute: FLOP formulas for linear, convolution and attention layers, and
  :func:`estimate_flops`, which adds them up over a model's forward pass.

FLOP convention used throughout: one multiply-add counts as 2 FLOPs; biases,
activations, normalisation and softmax are left out (each is O(outputs), while
the matrix products are O(outputs x fan-in)). This is the convention of
``torch.utils.flop_counter``, and of the "6N FLOPs per token" rule of chapter 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "IGNORE_INDEX",
    "accuracy",
    "perplexity",
    "wilson_interval",
    "edit_distance",
    "token_error_rate",
    "sequence_error_rate",
    "count_parameters",
    "linear_flops",
    "attention_flops",
    "estimate_flops",
]

# ---------------------------------------------------------------------------
# Classification and language-model metrics

IGNORE_INDEX = -100
"""The one target value every loss and metric of the library skips: padding, or a
position with nothing to predict. PyTorch's own default for ``F.cross_entropy``.

Introduced in §4.5.
"""


def check_class_indices(
    indices: torch.Tensor, num_classes: int, what: str, name: str = "targets", ignore_index: int | None = None
) -> None:
    """Raise ``ValueError`` unless every value of ``indices`` is in ``[0, num_classes)`` or is ``ignore_index``.

    Class labels, token ids and vocabulary ids outside their range would
    otherwise be counted in another class's cell, read from another row of a
    table, or stop PyTorch with a bare ``IndexError`` (on a GPU, a device-side
    assert that ends the session). The message names the first bad value and the
    valid range. ``what`` names the calling function, ``name`` the argument.
    """
    if indices.numel() == 0 or indices.is_meta:  # meta tensors (shape-only, for counting) have no values
        return
    bad = (indices < 0) | (indices >= num_classes)
    if ignore_index is not None:
        bad &= indices != ignore_index
    if bad.any():
        first = indices[bad].flatten()[0].item()
        allowed = f" or {ignore_index} (ignored)" if ignore_index is not None else ""
        raise ValueError(
            f"{what}: expected {name} in [0, {num_classes}){allowed}, got {first} "
            f"({int(bad.sum())} value(s) out of range)"
        )


def _check_score_shape(outputs: torch.Tensor, targets: torch.Tensor, what: str) -> None:
    """Scores (..., C) for targets (...): one more dimension, the classes, at the end."""
    if outputs.shape[:-1] != targets.shape or outputs.ndim != targets.ndim + 1:
        raise ValueError(
            f"{what}: expected outputs of shape (*targets.shape, num_classes) = "
            f"({', '.join(map(str, targets.shape))}, C) for targets of shape {tuple(targets.shape)}, "
            f"got outputs of shape {tuple(outputs.shape)}"
        )


def _check_outputs_and_targets(
    outputs: torch.Tensor, targets: torch.Tensor, what: str, ignore_index: int | None = IGNORE_INDEX
) -> None:
    """Outputs are scores (..., C) for integer targets (...) in [0, C) or ``ignore_index``; say what is wrong if not."""
    if not isinstance(outputs, torch.Tensor) or not isinstance(targets, torch.Tensor):
        raise ValueError(
            f"{what}: expected torch tensors, got {type(outputs).__name__} and {type(targets).__name__}"
        )
    if outputs.device != targets.device:
        raise ValueError(
            f"{what}: expected outputs and targets on the same device, got outputs on {outputs.device} "
            f"and targets on {targets.device}"
        )
    if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
        raise ValueError(
            f"{what}: expected integer class labels (torch.int64), got targets of dtype {targets.dtype}; "
            "convert with targets.long()"
        )
    _check_score_shape(outputs, targets, what)
    check_class_indices(targets, outputs.shape[-1], what, ignore_index=ignore_index)


def accuracy(outputs: torch.Tensor, targets: torch.Tensor, ignore_index: int | None = IGNORE_INDEX) -> float:
    """Fraction of positions where the highest-scoring class is the target.

    ``outputs`` are scores (logits or probabilities) of shape ``(..., C)`` for
    ``targets`` of shape ``(...)``, so the same function serves image
    classification ``(B, C)`` and next-token prediction ``(B, T, V)``. Positions
    whose target is ``ignore_index`` (padding, :data:`IGNORE_INDEX`) are not
    counted; any other target outside ``[0, C)`` raises ``ValueError``.

    Introduced in §2.4.
    """
    _check_outputs_and_targets(outputs, targets, "accuracy", ignore_index)
    correct = outputs.argmax(dim=-1) == targets
    if ignore_index is not None:
        keep = targets != ignore_index
        correct = correct[keep]
    if correct.numel() == 0:
        raise ValueError("accuracy: expected at least one target to score, got none")
    return correct.float().mean().item()


def perplexity(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> float:
    r"""Perplexity: the exponential of the mean per-token cross-entropy.

    .. math:: \mathrm{PPL} = \exp\Big(-\tfrac{1}{N}\sum_{i=1}^{N} \log p(x_i \mid x_{<i})\Big)

    A model that guesses uniformly among ``V`` tokens has perplexity ``V``; a
    perfect one has 1. ``logits`` have shape ``(B, T, V)`` (or ``(N, V)``) for
    targets ``(B, T)`` (or ``(N,)``); the ``N`` tokens are those whose target is
    not ``ignore_index``. Computed in float32 whatever the logits' dtype.

    Introduced in §3.4.
    """
    _check_outputs_and_targets(logits, targets, "perplexity", ignore_index)
    if ignore_index is not None and not (targets != ignore_index).any():
        raise ValueError("perplexity: expected at least one target to score, got only ignored ones")
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=ignore_index)
    return math.exp(nll.item())


def confusion_matrix(predictions: torch.Tensor, targets: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """Count matrix ``M`` with ``M[true, predicted]``: rows are targets, columns predictions.

    ``predictions`` are class indices of the same shape as ``targets`` (take
    ``outputs.argmax(-1)`` first), each in ``[0, num_classes)``: a value outside
    raises ``ValueError`` rather than being counted in another cell.
    """
    predictions, targets = torch.as_tensor(predictions), torch.as_tensor(targets)
    if predictions.shape != targets.shape:
        raise ValueError(
            f"confusion_matrix: expected predictions of the targets' shape {tuple(targets.shape)}, "
            f"got {tuple(predictions.shape)}; pass class indices (outputs.argmax(-1)), not scores"
        )
    if predictions.is_floating_point() or targets.is_floating_point():
        raise ValueError(
            f"confusion_matrix: expected integer class indices, got dtypes {predictions.dtype} and {targets.dtype}"
        )
    predictions, targets = predictions.reshape(-1).long().cpu(), targets.reshape(-1).long().cpu()
    if num_classes is None:
        num_classes = int(max(predictions.max(), targets.max()).item()) + 1 if targets.numel() else 0
    # A value outside [0, num_classes) would land in another class's cell of the flat count.
    check_class_indices(targets, num_classes, "confusion_matrix", "targets")
    check_class_indices(predictions, num_classes, "confusion_matrix", "predictions")
    counts = torch.bincount(targets * num_classes + predictions, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (low, high) of a proportion ``correct / n``; 95% for ``z = 1.96``.

    What the test set's sampling alone leaves uncertain about an accuracy (Wilson, 1927):
    unlike ``p +- z sqrt(p(1-p)/n)`` it stays inside [0, 1] and is not empty at
    ``p = 0`` or 1. Seeds, data order and tuning add their own spread on top. The same
    formula chapter 5 computes by hand. Raises ValueError unless ``n > 0`` and ``0 <=
    correct <= n``.

    Introduced in §7.4.
    """
    if not n > 0 or not 0 <= correct <= n:
        raise ValueError(f"wilson_interval: expected n > 0 and 0 <= correct <= n, got correct={correct}, n={n}")
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


# ---------------------------------------------------------------------------
# Sequence outputs: edit distance


def _as_list(sequence) -> list:
    if isinstance(sequence, torch.Tensor):
        return sequence.tolist()
    if isinstance(sequence, (str, Sequence)):
        return list(sequence)
    raise ValueError(f"expected a sequence (str, list, tuple or 1-D tensor), got {type(sequence).__name__}")


def edit_distance(prediction, reference) -> int:
    """Levenshtein distance: the fewest insertions, deletions and substitutions turning one into the other.

    Works on any sequences of comparable items: strings (characters), lists of
    words or phonemes, or 1-D tensors of token ids. Dynamic programming over a
    ``(len(prediction)+1) x (len(reference)+1)`` table, kept one row at a time.
    Raises ``ValueError`` for anything that is not a sequence.

    Introduced in §4.5.
    """
    a, b = _as_list(prediction), _as_list(reference)
    previous = list(range(len(b) + 1))  # distance from a[:0] to b[:j]
    for i, item in enumerate(a, start=1):
        current = [i]
        for j, other in enumerate(b, start=1):
            current.append(
                min(
                    previous[j] + 1,  # delete a[i-1]
                    current[j - 1] + 1,  # insert b[j-1]
                    previous[j - 1] + (item != other),  # substitute (free if equal)
                )
            )
        previous = current
    return previous[-1]


def _check_pairs(predictions, references, what: str) -> tuple[list, list]:
    predictions, references = list(predictions), list(references)
    if len(predictions) != len(references):
        raise ValueError(
            f"{what}: expected one prediction per reference ({len(references)}), got {len(predictions)} predictions"
        )
    if not references:
        raise ValueError(f"{what}: expected at least one reference sequence, got none")
    return predictions, references


def token_error_rate(predictions, references) -> float:
    """Total edit distance divided by total reference length (per-token error rate).

    With words as tokens this is the word error rate (WER) of speech recognition;
    with phonemes, the phoneme error rate. It can exceed 1 when predictions are
    much longer than references. Strip padding and end tokens first.

    Introduced in §4.5.
    """
    predictions, references = _check_pairs(predictions, references, "token_error_rate")
    total = sum(len(_as_list(r)) for r in references)
    if total == 0:
        raise ValueError("token_error_rate: expected references with at least one token, got only empty ones")
    return sum(edit_distance(p, r) for p, r in zip(predictions, references)) / total


def sequence_error_rate(predictions, references) -> float:
    """Fraction of sequences with at least one error (per-sequence error rate).

    A prediction counts as correct only if it equals its reference exactly; for
    words spelled as phonemes this is the "word error rate" of G2P papers.

    Introduced in §4.5.
    """
    predictions, references = _check_pairs(predictions, references, "sequence_error_rate")
    wrong = sum(_as_list(p) != _as_list(r) for p, r in zip(predictions, references))
    return wrong / len(references)


# ---------------------------------------------------------------------------
# Counting parameters


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters in ``model``; shared (tied) tensors count once.

    Introduced in §1.2.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_parameters_by_module(model: nn.Module, depth: int = 1) -> dict[str, int]:
    """Parameter counts grouped by submodule name, cut at ``depth`` levels.

    ``depth=1`` gives e.g. ``{"features": 2_320, "classifier": 650}``; parameters
    held by ``model`` itself are listed under ``"(own)"``. A tied tensor counts
    under the first module that owns it, so the values sum to
    :func:`count_parameters`.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"count_parameters_by_module: expected depth to be an integer >= 1, got {depth!r}")
    counts: dict[str, int] = {}
    for name, p in model.named_parameters():
        parts = name.split(".")[:-1]  # drop the parameter's own name ("weight")
        key = ".".join(parts[:depth]) if parts else "(own)"
        counts[key] = counts.get(key, 0) + p.numel()
    return counts


# ---------------------------------------------------------------------------
# Counting FLOPs


def linear_flops(in_features: int, out_features: int, tokens: int = 1) -> int:
    """FLOPs of ``nn.Linear(in_features, out_features)`` applied to ``tokens`` input vectors.

    Each output is a dot product of length ``in_features``: ``2 * tokens * in * out``.

    Introduced in §1.3.
    """
    return 2 * tokens * in_features * out_features


def conv2d_flops(
    in_channels: int,
    out_channels: int,
    kernel_size: int | tuple[int, int],
    output_size: int | tuple[int, int],
    groups: int = 1,
    batch: int = 1,
) -> int:
    """FLOPs of a 2-D convolution producing ``output_size`` (H_out, W_out) maps.

    Each output value is a dot product over ``in_channels / groups`` channels of a
    ``kH x kW`` window: ``2 * batch * out_channels * H_out * W_out * (in_channels/groups) * kH * kW``.
    """
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    ho, wo = (output_size, output_size) if isinstance(output_size, int) else output_size
    if in_channels % groups:
        raise ValueError(f"conv2d_flops: expected in_channels divisible by groups={groups}, got {in_channels}")
    return 2 * batch * out_channels * ho * wo * (in_channels // groups) * kh * kw


def attention_flops(seq_len: int, d_model: int, kv_len: int | None = None, batch: int = 1) -> int:
    """FLOPs of the attention core ``softmax(Q K^T / sqrt(d)) V``, without the projections.

    ``Q K^T`` costs ``2 * T_q * T_k * d`` and multiplying the weights by ``V``
    another ``2 * T_q * T_k * d``, summed over heads (``d = n_heads * head_dim``):
    ``4 * batch * T_q * T_k * d``. The Q, K, V and output projections are linear
    layers; count them with :func:`linear_flops`.

    Introduced in §4.1.
    """
    kv_len = seq_len if kv_len is None else kv_len
    return 4 * batch * seq_len * kv_len * d_model


def _mha_flops(module: nn.MultiheadAttention, args: tuple, kwargs: dict) -> tuple[int, int]:
    """(projection FLOPs, attention FLOPs) of one ``nn.MultiheadAttention`` call."""
    names = ("query", "key", "value")
    q, k, v = (kwargs[n] if n in kwargs else args[i] for i, n in enumerate(names))
    if q.dim() == 2:  # unbatched (T, E)
        q, k, v = q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1)
    elif module.batch_first:  # (B, T, E) -> (T, B, E)
        q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
    tq, b, e = q.shape
    tk = k.shape[0]
    projections = (
        linear_flops(e, e, b * tq)  # W_Q
        + linear_flops(module.kdim, e, b * tk)  # W_K
        + linear_flops(module.vdim, e, b * tk)  # W_V
        + linear_flops(e, e, b * tq)  # W_O
    )
    return projections, attention_flops(tq, e, kv_len=tk, batch=b)


def estimate_flops(model: nn.Module, *inputs, **kwargs) -> dict[str, int]:
    """Forward-pass FLOPs of ``model(*inputs, **kwargs)``, by layer kind.

    Runs the model once under ``torch.no_grad`` with forward hooks on every
    ``nn.Linear``, ``nn.Conv1d/2d/3d`` and ``nn.MultiheadAttention``, and applies
    the formulas above to the shapes that actually flow through them. Returns
    ``{"linear": ..., "conv": ..., "attention": ..., "total": ...}``. Attention
    written by hand (matmuls inside a custom module) is not seen by the hooks:
    add :func:`attention_flops` for it. A training step costs about 3x the
    forward pass (backward is twice the forward).

    Introduced in §1.7.
    """
    totals = {"linear": 0, "conv": 0, "attention": 0}

    def on_linear(module, args, output):
        totals["linear"] += linear_flops(module.in_features, module.out_features, output.numel() // module.out_features)

    def on_conv(module, args, output):
        kernel = math.prod(module.kernel_size)
        totals["conv"] += 2 * output.numel() * (module.in_channels // module.groups) * kernel

    def on_attention(module, args, kwargs, output):
        projections, core = _mha_flops(module, args, kwargs)
        totals["linear"] += projections
        totals["attention"] += core

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(on_linear))
        elif isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            handles.append(module.register_forward_hook(on_conv))
        elif isinstance(module, nn.MultiheadAttention):
            handles.append(module.register_forward_hook(on_attention, with_kwargs=True))
    try:
        with torch.no_grad():
            model(*inputs, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
    totals["total"] = sum(totals.values())
    return totals
