"""Data quality: wrong labels, a remedy for them, and test items whose near-duplicates are in training.

* :func:`flip_labels` corrupts an exact fraction of the labels, each to a different class drawn uniformly,
  from a seeded ``torch.Generator``: the *symmetric* label noise of the noisy-label literature.
* :func:`loss_filter` keeps the examples with the lowest loss and drops a given fraction with the highest: the
  simplest remedy, which relies on a network fitting clean examples before it memorises wrong ones.
* :func:`near_duplicates_in_training` says which test tweets have a near-duplicate among the training tweets,
  by the grouping that :func:`bigmodel_lib.sentiment.load_tweets` already uses to de-duplicate.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from bigmodel_lib.sentiment import _near_duplicate_groups

__all__ = ["flip_labels", "loss_filter", "near_duplicates_in_training"]


def _check_fraction(fraction: float, who: str) -> None:
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
        raise ValueError(f"{who}: expected fraction as a number in [0, 1], got {fraction!r}")


def flip_labels(labels: torch.Tensor, fraction: float, num_classes: int,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Give exactly ``round(fraction * N)`` of ``labels`` a wrong class, drawn uniformly from the other classes.

    ``labels``: ``(N,)`` integer class indices in ``0 .. num_classes - 1``. Returns ``(noisy, flipped)``: a new
    ``(N,)`` int64 tensor and an ``(N,)`` bool mask of the changed positions; ``labels`` itself is not changed.
    Which positions change is a uniformly random subset (``torch.randperm``); each changed label becomes
    ``(y + k) % num_classes`` with ``k`` uniform in ``1 .. num_classes - 1``, so it never keeps its class.
    Everything is drawn from ``generator`` (a ``torch.Generator`` on the CPU; the global generator when None),
    so the same seed gives the same labels on every machine.

    Raises ValueError when ``labels`` is not a 1-D integer tensor of classes, ``fraction`` is not in [0, 1] or
    ``num_classes`` is below 2.

    Introduced in §8.5.
    """
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.is_floating_point() or labels.is_complex():
        got = f"a tensor of shape {tuple(labels.shape)} and dtype {labels.dtype}" if isinstance(labels, torch.Tensor) \
            else type(labels).__name__
        raise ValueError(f"flip_labels: expected labels as a 1-D integer tensor, got {got}")
    _check_fraction(fraction, "flip_labels")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"flip_labels: expected num_classes as an integer of at least 2, got {num_classes!r}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"flip_labels: expected labels in 0..{num_classes - 1}, got values from "
                         f"{int(labels.min())} to {int(labels.max())}")
    labels = labels.long().cpu()
    count = round(fraction * len(labels))
    chosen = torch.randperm(len(labels), generator=generator)[:count]
    shift = torch.randint(1, num_classes, (count,), generator=generator)
    noisy = labels.clone()
    noisy[chosen] = (labels[chosen] + shift) % num_classes
    flipped = torch.zeros(len(labels), dtype=torch.bool)
    flipped[chosen] = True
    return noisy, flipped


def loss_filter(losses: torch.Tensor, fraction: float) -> torch.Tensor:
    """Keep the examples with the lowest loss: an ``(N,)`` bool mask, False for the ``round(fraction * N)`` highest.

    ``losses``: ``(N,)`` floats, one per training example (for instance the cross-entropy of a model trained on
    the noisy labels, ``reduction="none"``). Ties are broken by position, the earlier example kept, so the mask
    is the same on every machine for the same losses. With ``fraction`` the expected share of wrong labels this
    is the small-loss remedy: retrain on the examples the mask keeps.

    Raises ValueError when ``losses`` is not a 1-D floating-point tensor without NaN or ``fraction`` is not in
    [0, 1].

    Introduced in §8.5.
    """
    if not isinstance(losses, torch.Tensor) or losses.dim() != 1 or not losses.is_floating_point():
        got = f"a tensor of shape {tuple(losses.shape)} and dtype {losses.dtype}" if isinstance(losses, torch.Tensor) \
            else type(losses).__name__
        raise ValueError(f"loss_filter: expected losses as a 1-D floating-point tensor, got {got}")
    if losses.isnan().any():
        raise ValueError(f"loss_filter: expected losses without NaN, got {int(losses.isnan().sum())} NaN values")
    _check_fraction(fraction, "loss_filter")
    drop = round(fraction * len(losses))
    order = torch.sort(losses.detach().cpu(), stable=True).indices  # ascending; equal losses keep their order
    keep = torch.zeros(len(losses), dtype=torch.bool)
    keep[order[:len(losses) - drop]] = True
    return keep


def near_duplicates_in_training(train_texts: Sequence[str], test_texts: Sequence[str]) -> torch.Tensor:
    """Which test tweets have a near-duplicate among the training tweets: a ``(len(test_texts),)`` bool tensor.

    Two tweets are near-duplicates when :func:`bigmodel_lib.sentiment.load_tweets` would put them in one group:
    the same text after repairing, lower-casing, straightening quotes, dropping links, writing every @mention as
    ``@user``, collapsing white space and removing a leading ``RT @user:``, or a retweet cut short with "…" that
    begins a longer tweet. An exact copy counts too.

    Raises ValueError when either argument is not a sequence of strings.

    Introduced in §8.5.
    """
    for name, texts in (("train_texts", train_texts), ("test_texts", test_texts)):
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise ValueError(f"near_duplicates_in_training: expected {name} as a sequence of strings, "
                             f"got {type(texts).__name__}")
    n_train = len(train_texts)
    seen = torch.zeros(len(test_texts), dtype=torch.bool)
    for rows in _near_duplicate_groups(list(train_texts) + list(test_texts)):
        if rows[0] < n_train:  # the group has a training tweet (rows are sorted)
            test_rows = [i - n_train for i in rows if i >= n_train]
            seen[test_rows] = True
    return seen
