"""Cheaper models after training: knowledge distillation and magnitude pruning, written out.

Chapter 8, §8.2, makes trained models smaller or cheaper in three ways; 8-bit
weights are :mod:`bigmodel_lib.quantization`'s (§7.6). This module holds the
other two:

* :func:`distillation_loss` -- Hinton et al.'s (2015) loss for a small *student*
  trained on a large *teacher*'s softened outputs and on the true labels,
  ``alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T)) + (1 - alpha) * CE(z_s, y)``;
* :func:`magnitude_mask` and :func:`global_magnitude_masks` -- unstructured
  magnitude pruning: keep the weights of largest ``|w|`` in one tensor, or across
  several tensors at once, equal to ``torch.nn.utils.prune.l1_unstructured`` and
  ``global_unstructured`` when no two magnitudes tie (``tests/test_compression.py``);
* :func:`sparse_bytes` -- what a weight matrix takes stored as compressed sparse
  rows (CSR): the saving that unstructured zeros need before they are worth
  anything, since a dense matrix product does not skip them;
* :func:`shrink_linear_pair` -- structured pruning made physical: two linear
  layers around a nonlinearity rebuilt without the hidden units that were
  pruned, a smaller dense model that is faster as well as smaller.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

IGNORE_INDEX = -100  # the book's one ignore index: an example without a label

__all__ = ["distillation_loss", "magnitude_mask", "global_magnitude_masks", "sparse_bytes", "shrink_linear_pair"]


def _check_amount(amount: float, who: str) -> None:
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not 0 <= amount <= 1:
        raise ValueError(f"{who}: expected amount as the fraction of weights to prune, a number in [0, 1], "
                         f"got {amount!r}")


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
                      temperature: float = 4.0, alpha: float = 0.9) -> torch.Tensor:
    """Knowledge-distillation loss: softened teacher-student KL divergence plus cross-entropy on the labels.

    ``L = alpha * T^2 * KL(p_t || p_s) + (1 - alpha) * CE(z_s, y)`` with
    ``p_t = softmax(z_t / T)`` and ``p_s = softmax(z_s / T)``, the KL divergence
    summed over classes and averaged over the batch (``F.kl_div(...,
    reduction="batchmean")``). The factor ``T^2`` keeps the soft term's gradients
    the same size as ``T`` changes (Hinton et al., 2015). The teacher's logits
    are detached: no gradient flows into the teacher.

    Args:
        student_logits: ``(B, K)`` float scores of the student.
        teacher_logits: ``(B, K)`` float scores of the teacher for the same inputs.
        targets: ``(B,)`` int64 class indices in ``0 .. K - 1``, or -100 (the book's ignore index) for an
            unlabelled example, which then counts in the soft term only; a batch with no label at all has no
            cross-entropy term.
        temperature: ``T > 0``; 1 leaves the softmax as it is, larger flattens it.
        alpha: weight of the soft term, in ``[0, 1]``; 0 is plain cross-entropy.

    Returns:
        A 0-d tensor (nats).

    Raises:
        ValueError: for logits that are not the same ``(B, K)`` shape, targets not ``(B,)`` integers,
            ``temperature <= 0`` or ``alpha`` outside ``[0, 1]``.

    Introduced in §8.2.
    """
    if (not isinstance(student_logits, torch.Tensor) or not isinstance(teacher_logits, torch.Tensor)
            or student_logits.dim() != 2 or student_logits.shape != teacher_logits.shape):
        got = [tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
               for t in (student_logits, teacher_logits)]
        raise ValueError(f"distillation_loss: expected student and teacher logits of one shape (B, K), got {got}")
    if (not isinstance(targets, torch.Tensor) or targets.shape != student_logits.shape[:1]
            or targets.is_floating_point()):
        got = f"{tuple(targets.shape)} {targets.dtype}" if isinstance(targets, torch.Tensor) else type(targets).__name__
        raise ValueError(f"distillation_loss: expected targets as ({student_logits.size(0)},) integer class "
                         f"indices, got {got}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature <= 0:
        raise ValueError(f"distillation_loss: expected temperature > 0, got {temperature!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ValueError(f"distillation_loss: expected alpha in [0, 1], got {alpha!r}")
    T = temperature
    log_p_student = F.log_softmax(student_logits / T, dim=-1)  # (B, K)
    log_p_teacher = F.log_softmax(teacher_logits.detach() / T, dim=-1)  # (B, K)
    soft = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    labelled = targets != IGNORE_INDEX
    hard = F.cross_entropy(student_logits, targets) if bool(labelled.any()) else student_logits.sum() * 0.0
    return alpha * T * T * soft + (1 - alpha) * hard


def magnitude_mask(weight: torch.Tensor, amount: float) -> torch.Tensor:
    """A 0/1 mask of ``weight``'s shape that zeroes the ``round(amount * n)`` entries of smallest ``|w|``.

    ``weight``: a float tensor of any shape with ``n`` entries. The mask has
    ``weight``'s dtype, like the ``weight_mask`` that
    ``torch.nn.utils.prune.l1_unstructured(module, "weight", amount)`` registers;
    the two are equal when no two magnitudes tie (at a tie either may be kept).

    Raises:
        TypeError: if ``weight`` is not a floating-point tensor.
        ValueError: if ``amount`` is not in ``[0, 1]``.

    Introduced in §8.2.
    """
    if not isinstance(weight, torch.Tensor) or not weight.is_floating_point():
        raise TypeError(f"magnitude_mask: expected a floating-point weight tensor, got "
                        f"{weight.dtype if isinstance(weight, torch.Tensor) else type(weight).__name__}")
    _check_amount(amount, "magnitude_mask")
    return global_magnitude_masks([weight], amount)[0]


def global_magnitude_masks(weights: Sequence[torch.Tensor], amount: float) -> list[torch.Tensor]:
    """Masks for several tensors pruned together: the ``round(amount * n)`` smallest ``|w|`` of all ``n`` entries.

    One threshold for all tensors, so a layer with many small weights loses more
    of them than a layer with large ones. Returns one 0/1 mask per tensor, of its
    shape and dtype; equal to the masks of
    ``torch.nn.utils.prune.global_unstructured(..., pruning_method=prune.L1Unstructured, amount=amount)``
    when no two magnitudes tie.

    Raises:
        TypeError: if ``weights`` is empty or holds something other than floating-point tensors.
        ValueError: if ``amount`` is not in ``[0, 1]``.

    Introduced in §8.2.
    """
    if (isinstance(weights, torch.Tensor) or len(weights) == 0
            or not all(isinstance(w, torch.Tensor) and w.is_floating_point() for w in weights)):
        raise TypeError("global_magnitude_masks: expected a non-empty list of floating-point tensors, got "
                        f"{type(weights).__name__}")
    _check_amount(amount, "global_magnitude_masks")
    magnitudes = torch.cat([w.detach().abs().flatten() for w in weights])  # (n,)
    k = round(amount * magnitudes.numel())  # how many to prune
    if k == 0:
        return [torch.ones_like(w) for w in weights]
    threshold = magnitudes.kthvalue(k).values  # the k-th smallest |w|
    return [(w.detach().abs() > threshold).to(w.dtype) for w in weights]  # keep what is strictly larger


def sparse_bytes(weight: torch.Tensor, index_dtype: torch.dtype = torch.int64) -> int:
    """Bytes of a 2-D ``weight`` stored in compressed sparse row (CSR) form: values, column indices, row pointers.

    ``nnz * (value bytes + index bytes) + (rows + 1) * index bytes``, the sizes of
    the three tensors of ``weight.to_sparse_csr()`` with the indices in
    ``index_dtype`` (PyTorch's default int64, or int32). With float32 values and
    int64 indices each kept weight costs 12 bytes against 4 dense, so CSR is
    smaller only below a third of the entries; with int32 indices, below half.

    Raises:
        ValueError: if ``weight`` is not a 2-D tensor or ``index_dtype`` is not int32 or int64.

    Introduced in §8.2.
    """
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        got = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(f"sparse_bytes: expected a 2-D weight matrix, got {got}")
    if index_dtype not in (torch.int32, torch.int64):
        raise ValueError(f"sparse_bytes: expected index_dtype torch.int32 or torch.int64, got {index_dtype}")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse CSR tensor support is in beta.*")
        csr = weight.detach().to_sparse_csr()
    index_size = torch.empty(0, dtype=index_dtype).element_size()
    values = csr.values()
    return (values.numel() * values.element_size() + csr.col_indices().numel() * index_size
            + csr.crow_indices().numel() * index_size)


def _current_weight(layer: nn.Linear) -> torch.Tensor:
    """The weight a forward pass would use now: ``weight_orig * weight_mask`` under a pruning mask.

    ``torch.nn.utils.prune`` recomputes the ``weight`` attribute only at each forward pass, so after an optimizer
    step it is stale until the next one.
    """
    if hasattr(layer, "weight_orig") and hasattr(layer, "weight_mask"):
        return layer.weight_orig * layer.weight_mask
    return layer.weight


def shrink_linear_pair(first: nn.Linear, second: nn.Linear, keep: torch.Tensor,
                       activation=torch.relu) -> tuple[nn.Linear, nn.Linear]:
    """Two new, smaller linear layers that keep only the hidden units ``keep`` between ``first`` and ``second``.

    ``first`` maps ``in -> h`` and ``second`` maps ``h -> out``, with the
    elementwise ``activation`` (ReLU by default) between them. The result maps
    ``in -> len(keep) -> out``: rows ``keep`` of ``first``'s weight and bias,
    columns ``keep`` of ``second``'s weight. A dropped unit whose row of
    ``first.weight`` is zero (pruned with
    ``prune.ln_structured(first, "weight", amount, n, dim=0)``, which leaves the
    bias) outputs the constant ``activation(bias)``; that constant times its
    column of ``second.weight`` is folded into ``second``'s bias, so the new pair
    computes exactly what the pruned one did. Weights are copied; for a layer
    that carries a pruning mask, ``weight_orig * weight_mask`` (the ``weight``
    attribute is refreshed only by a forward pass, so it is stale right after an
    optimizer step). The originals are not changed.

    Raises:
        TypeError: if ``first`` or ``second`` is not an ``nn.Linear``.
        ValueError: if ``second.in_features != first.out_features``, ``keep`` is not a 1-D integer tensor of
            distinct units in ``0 .. h - 1``, or the dropped units output a nonzero constant and ``second`` has no
            bias to fold it into.

    Introduced in §8.2.
    """
    if not isinstance(first, nn.Linear) or not isinstance(second, nn.Linear):
        raise TypeError(f"shrink_linear_pair: expected two nn.Linear layers, got {type(first).__name__} and "
                        f"{type(second).__name__}")
    h = first.out_features
    if second.in_features != h:
        raise ValueError(f"shrink_linear_pair: expected second.in_features == first.out_features ({h}), got "
                         f"{second.in_features}")
    if (not isinstance(keep, torch.Tensor) or keep.dim() != 1 or keep.is_floating_point() or keep.numel() == 0
            or keep.unique().numel() != keep.numel() or keep.min() < 0 or keep.max() >= h):
        raise ValueError(f"shrink_linear_pair: expected keep as a non-empty 1-D tensor of distinct unit indices "
                         f"in 0..{h - 1}, got {keep!r}")
    w_first, w_second = _current_weight(first), _current_weight(second)
    small_first = nn.Linear(first.in_features, keep.numel(), bias=first.bias is not None)
    small_second = nn.Linear(keep.numel(), second.out_features, bias=second.bias is not None)
    with torch.no_grad():
        small_first.weight.copy_(w_first[keep])  # (h', in)
        if first.bias is not None:
            small_first.bias.copy_(first.bias[keep])
        small_second.weight.copy_(w_second[:, keep])  # (out, h')
        constant = torch.zeros(second.out_features)
        if first.bias is not None:
            dropped = torch.ones(h, dtype=torch.bool)
            dropped[keep] = False
            constant = w_second[:, dropped] @ activation(first.bias[dropped])  # (out,)
        if second.bias is not None:
            small_second.bias.copy_(second.bias + constant)
        elif bool(constant.ne(0).any()):
            raise ValueError("shrink_linear_pair: the dropped units output a nonzero constant and second has no "
                             "bias to fold it into")
    return small_first, small_second
