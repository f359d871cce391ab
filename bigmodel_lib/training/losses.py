"""The engine's loss and its bookkeeping: ``cross_entropy_loss``, ``scored_count``, and
the tally that weights each batch by the targets it scores.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from bigmodel_lib.metrics import IGNORE_INDEX, _check_outputs_and_targets

__all__ = ["cross_entropy_loss"]


def cross_entropy_loss(
    outputs: torch.Tensor, targets: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Mean cross-entropy of scores ``(..., C)`` against integer targets ``(...)``, in float32.

    The same loss for image classes ``(B, C)`` and next tokens ``(B, T, V)``;
    targets equal to ``ignore_index`` (padding, :data:`~bigmodel_lib.metrics.IGNORE_INDEX`)
    are skipped, so the mean is over the scored targets. Any other target outside
    ``[0, C)`` raises ``ValueError``. bf16 and fp16 scores are converted to
    float32 first: a softmax over many classes summed in 8 bits of mantissa is
    off in the second decimal. Returns a float32 scalar (float64 for float64
    scores). The engine's default loss.

    Introduced in §3.6.
    """
    _check_outputs_and_targets(outputs, targets, "cross_entropy_loss", ignore_index)
    outputs = _at_least_float32(outputs)
    if outputs.ndim > 2:  # (B, T, V) -> (B*T, V): every position is one classification
        outputs, targets = outputs.reshape(-1, outputs.shape[-1]), targets.reshape(-1)
    return F.cross_entropy(outputs, targets, ignore_index=ignore_index)


def _at_least_float32(x):
    """bf16/fp16 tensors (alone or in a tuple or list) as float32; everything else unchanged."""
    if isinstance(x, torch.Tensor):
        return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    if isinstance(x, (tuple, list)):
        return type(x)(_at_least_float32(v) for v in x)
    return x


def scored_count(targets: torch.Tensor) -> torch.Tensor:
    """How many target values a mean loss averages over: those not equal to ``IGNORE_INDEX``.

    Integer targets (classes, tokens) count every position except padding;
    floating targets (regression) count every element, as ``F.mse_loss`` does.
    The engine weights each batch's loss and metric by this count, so that an
    average over a dataset does not depend on how it was cut into batches.
    Returns a 0-d tensor on the targets' device.
    """
    if targets.is_floating_point() or targets.is_complex():
        return torch.tensor(targets.numel(), device=targets.device)
    return (targets != IGNORE_INDEX).sum()


def _default_loss(outputs, targets: torch.Tensor) -> torch.Tensor:
    """:func:`cross_entropy_loss` of the outputs, or of the first element of a tuple ``(logits, ...)``."""
    return cross_entropy_loss(_main_output(outputs, "loss_fn"), targets)


def _floats(values: list) -> list[float]:
    """Python floats from numbers or tensors; tensors come over in one device-to-host copy."""
    if values and all(isinstance(v, torch.Tensor) for v in values):
        return torch.stack(values).double().tolist()
    return [float(v) for v in values]


class _Tally:
    """Per-batch results, kept on the device and summed on the CPU a few batches at a time.

    Each batch's mean loss is weighted by the number of targets it averages over
    (:func:`scored_count`), so the mean over everything seen is
    sum(loss_b * n_b) / sum(n_b): the same for any batch size, with padding
    never counted. ``reduce_metric(parts, weights) -> (sum, count)`` turns the
    batches' metric parts into numbers; the metric is the sum of sums over the
    sum of counts.
    """

    def __init__(self, reduce_metric: Callable):
        self.reduce_metric = reduce_metric
        self.pending: list[tuple] = []  # (loss, metric part, scored targets, rows)
        self.loss_sum = self.metric_sum = 0.0
        self.metric_count = self.scored = self.samples = 0

    def add(self, loss: torch.Tensor, metric_part, scored: torch.Tensor, rows: int) -> None:
        self.pending.append((loss.detach(), metric_part, scored, rows))

    def flush(self) -> list[float]:
        """Add the pending batches to the sums; return their losses."""
        if not self.pending:
            return []
        losses, parts, scored, rows = zip(*self.pending)
        losses = _floats(list(losses))
        weights = [int(n) for n in _floats(list(scored))]
        metric_sum, metric_count = self.reduce_metric(parts, weights)
        self.pending.clear()
        # A batch with nothing to score (all padding) has a NaN mean and no weight: skip it.
        self.loss_sum += sum(loss * n for loss, n in zip(losses, weights) if n)
        self.metric_sum += metric_sum
        self.metric_count += metric_count
        self.scored += sum(weights)
        self.samples += sum(rows)
        return losses

    @property
    def mean_loss(self) -> float:
        return self.loss_sum / self.scored if self.scored else math.nan


def _main_output(outputs, what: str) -> torch.Tensor:
    """The tensor a metric or ``predict`` reads: the outputs, or the first element of a tuple ``(logits, ...)``."""
    if isinstance(outputs, (tuple, list)) and outputs and isinstance(outputs[0], torch.Tensor):
        return outputs[0]  # e.g. (logits, loss) from the GPT and encoder-decoder models of chapter 4
    if not isinstance(outputs, torch.Tensor):
        raise ValueError(
            f"{what}: expected the model to return a tensor or a tuple whose first element is a tensor, "
            f"got {type(outputs).__name__}"
        )
    return outputs
