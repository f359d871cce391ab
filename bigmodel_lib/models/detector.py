"""A one-stage, single-anchor grid detector: every cell of a coarse grid predicts one box (chapter 6).

The idea of YOLO (Redmon et al., 2016) and CenterNet (Zhou et al., 2019) at its smallest. A
convolutional backbone (chapter 2's 3x3 convolution, batch normalisation, ReLU and 2x2 max pool, three
times, then one more such convolution block) turns an image ``(B, C, H, W)`` into a grid of ``S_h x S_w = H/8 x W/8`` cells, each of which
sees about 38 x 38 pixels. A 1x1 convolution gives every cell ``5 + K`` numbers:

* ``o``: objectness, the logit of "the centre of an object lies in this cell";
* ``t_x, t_y``: the centre's place inside the cell, ``c_x = (j + sigmoid(t_x)) * stride`` (likewise y, row ``i``);
* ``t_w, t_h``: the size relative to a reference size ``r``, ``w = r * exp(t_w)`` (likewise h);
* ``K`` class logits.

:meth:`GridDetector.encode_targets` gives the cell that holds a true box's centre the targets
``(1, class, x offset in the cell, y offset, log(w / r), log(h / r))`` and every other cell objectness 0.
:func:`detection_loss` is the sum of three terms, each summed over cells and averaged over images:
binary cross-entropy of the objectness at every cell, cross-entropy of the class and the L1 distance of
``(sigmoid(t_x), sigmoid(t_y), t_w, t_h)`` to its targets at the cells that hold an object.
:meth:`GridDetector.decode` scores each cell ``sigmoid(o) * max_k softmax(class)_k``, keeps the cells above
a threshold and removes duplicates per class with ``torchvision.ops.batched_nms``.

Shapes: ``B`` batch, ``C`` channels, ``H, W`` image height and width, ``S_h, S_w`` grid rows and columns,
``K`` classes, ``D`` detections.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["GridDetector", "detection_loss"]

_TARGET_FIELDS = 6  # objectness, class, x offset, y offset, log(w / r), log(h / r)


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    """3x3 convolution, batch normalisation (§2.7), ReLU: (B, c_in, H, W) -> (B, c_out, H, W)."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class GridDetector(nn.Module):
    """Backbone to a grid of cells; each cell predicts objectness, ``num_classes`` class logits and one box.

    ``forward``: ``(B, channels, H, W)`` with ``H`` and ``W`` multiples of 8 -> ``(B, H/8, W/8, 5 + K)``, the
    last axis ``(o, t_x, t_y, t_w, t_h, class logits...)``. ``width``: channels of the first convolution
    (then ``2 * width`` and twice ``4 * width``). ``reference_size``: ``r`` in pixels. :meth:`boxes`,
    :meth:`encode_targets` and :meth:`decode` convert between boxes in pixels and the grid; the module
    docstring gives the formulas. Raises ValueError for images of the wrong shape.

    Introduced in §6.1.
    """

    stride = 8  # three 2x2 poolings

    def __init__(self, width: int = 16, num_classes: int = 10, reference_size: float = 20.0, channels: int = 1):
        super().__init__()
        if width < 1 or num_classes < 1 or reference_size <= 0 or channels < 1:
            raise ValueError(f"expected width, num_classes, channels >= 1 and reference_size > 0, got width={width}, "
                             f"num_classes={num_classes}, reference_size={reference_size}, channels={channels}")
        self.num_classes, self.reference_size, self.channels = num_classes, float(reference_size), channels
        widths = [channels, width, 2 * width, 4 * width]
        self.blocks = nn.ModuleList(_conv_block(a, b) for a, b in zip(widths, widths[1:]))
        self.last = _conv_block(4 * width, 4 * width)
        self.head = nn.Conv2d(4 * width, 5 + num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point() or x.size(1) != self.channels:
            got = f"{tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
            hint = " (a single image? add a batch dimension with x.unsqueeze(0))" if (
                isinstance(x, torch.Tensor) and x.dim() == 3) else ""
            raise ValueError(f"GridDetector expects a float batch of images (B, {self.channels}, H, W), got {got}{hint}")
        if x.size(2) % self.stride or x.size(3) % self.stride:
            raise ValueError(f"GridDetector expects a height and width divisible by {self.stride}, "
                             f"got {x.size(2)} x {x.size(3)}")
        for block in self.blocks:
            x = F.max_pool2d(block(x), 2)  # (B, c, H/2, W/2), then /4, then /8
        x = self.last(x)  # (B, 4w, S_h, S_w)
        return self.head(x).permute(0, 2, 3, 1)  # (B, S_h, S_w, 5 + K)

    def _check_outputs(self, outputs: torch.Tensor, who: str) -> None:
        if outputs.dim() != 4 or outputs.size(-1) != 5 + self.num_classes:
            raise ValueError(f"GridDetector.{who}: expected outputs (B, S_h, S_w, {5 + self.num_classes}) from "
                             f"forward, got {tuple(outputs.shape)}")

    def _cell_origins(self, outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows, cols = outputs.shape[1:3]
        i = torch.arange(rows, device=outputs.device, dtype=outputs.dtype)[:, None]  # (S_h, 1)
        j = torch.arange(cols, device=outputs.device, dtype=outputs.dtype)[None, :]  # (1, S_w)
        return i, j

    def boxes(self, outputs: torch.Tensor) -> torch.Tensor:
        """Every cell's box ``(B, S_h, S_w, 4)``, ``(x1, y1, x2, y2)`` in pixels, from ``forward``'s outputs."""
        self._check_outputs(outputs, "boxes")
        i, j = self._cell_origins(outputs)
        cx = (j + torch.sigmoid(outputs[..., 1])) * self.stride  # (B, S_h, S_w)
        cy = (i + torch.sigmoid(outputs[..., 2])) * self.stride
        w = self.reference_size * torch.exp(outputs[..., 3].clamp(-6, 6))  # clamped: no overflow early in training
        h = self.reference_size * torch.exp(outputs[..., 4].clamp(-6, 6))
        return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)

    def encode_targets(self, boxes: list, labels: list, image_size: tuple[int, int]) -> torch.Tensor:
        """Dense targets ``(B, H/8, W/8, 6)``: ``(1, class, x offset, y offset, log(w/r), log(h/r))`` at the cell
        holding each box's centre, objectness 0 elsewhere.

        ``boxes``: B tensors ``(k_i, 4)`` xyxy pixels; ``labels``: B tensors ``(k_i,)``. When two centres
        fall into one cell the larger box keeps it (the grid can hold one object per cell; the other is
        lost to training). Raises ValueError for boxes of the wrong shape, centres off the image or labels
        outside ``[0, num_classes)``.
        """
        H, W = image_size
        if len(boxes) != len(labels):
            raise ValueError(f"encode_targets: expected one labels tensor per boxes tensor, got {len(boxes)} and "
                             f"{len(labels)}")
        targets = torch.zeros(len(boxes), H // self.stride, W // self.stride, _TARGET_FIELDS)
        for n, (b, c) in enumerate(zip(boxes, labels)):
            if b.dim() != 2 or b.size(1) != 4 or len(c) != len(b):
                raise ValueError(f"encode_targets: expected boxes (k, 4) and labels (k,) for image {n}, got "
                                 f"{tuple(b.shape)} and {tuple(c.shape)}")
            if len(c) and (c.min() < 0 or c.max() >= self.num_classes):
                raise ValueError(f"encode_targets: expected labels in [0, {self.num_classes}), got {c.tolist()}")
            centre, size = (b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]  # (k, 2) each, x then y
            if len(b) and ((centre < 0).any() or (centre[:, 0] >= W).any() or (centre[:, 1] >= H).any()):
                raise ValueError(f"encode_targets: a box centre of image {n} lies off the {W} x {H} image: "
                                 f"{centre.tolist()}")
            for k in torch.argsort(size.prod(1), stable=True).tolist():  # smallest first: larger boxes overwrite
                col, row = (centre[k] // self.stride).long().tolist()
                offset = centre[k] / self.stride - torch.tensor([col, row])
                targets[n, row, col] = torch.cat([torch.tensor([1.0, float(c[k])]), offset,
                                                  torch.log(size[k] / self.reference_size)])
        return targets

    @torch.no_grad()
    def decode(self, outputs: torch.Tensor, score_threshold: float = 0.05, iou_threshold: float = 0.5,
               max_detections: int = 100, box_size: tuple[float, float] | None = None) -> list[dict]:
        """Per image ``{"boxes": (D, 4), "scores": (D,), "labels": (D,)}``, highest score first.

        A cell's score is ``sigmoid(o)`` times its largest class probability, its label that class;
        cells scoring below ``score_threshold`` are dropped, then ``torchvision.ops.batched_nms`` removes,
        within each class, a box overlapping a higher-scoring one with IoU above ``iou_threshold``;
        at most ``max_detections`` remain. ``box_size=(w, h)`` replaces the predicted boxes by boxes of
        that size centred on their cells (the baseline without box regression).
        """
        from torchvision.ops import batched_nms

        self._check_outputs(outputs, "decode")
        probabilities, labels = outputs[..., 5:].softmax(-1).max(-1)  # (B, S_h, S_w) each
        scores = torch.sigmoid(outputs[..., 0]) * probabilities
        if box_size is None:
            boxes = self.boxes(outputs)
        else:
            i, j = self._cell_origins(outputs)
            cx, cy = ((j + 0.5) * self.stride).expand_as(scores), ((i + 0.5) * self.stride).expand_as(scores)
            w, h = box_size
            boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)
        found = []
        for s, b, c in zip(scores.flatten(1), boxes.flatten(1, 2), labels.flatten(1)):  # one image: (S_h S_w, ...)
            keep = s >= score_threshold
            s, b, c = s[keep], b[keep], c[keep]
            kept = batched_nms(b.float(), s.float(), c, iou_threshold)[:max_detections]  # sorted by score
            found.append(dict(boxes=b[kept], scores=s[kept], labels=c[kept]))
        return found


def detection_loss(outputs: torch.Tensor, targets: torch.Tensor, box_weight: float = 1.0,
                   terms: bool = False) -> torch.Tensor | dict:
    """Objectness BCE at every cell + class cross-entropy + ``box_weight`` * box L1 at the object cells.

    ``outputs``: ``(B, S_h, S_w, 5 + K)`` from :class:`GridDetector`; ``targets``: ``(B, S_h, S_w, 6)`` from
    :meth:`GridDetector.encode_targets`. Each term is summed over cells and divided by ``B`` (the loss per
    image). Returns the total, a scalar tensor, or with ``terms=True`` a dict of the three terms and
    ``"total"``. Raises ValueError when the shapes do not fit.

    Introduced in §6.1.
    """
    if outputs.dim() != 4 or targets.shape != (*outputs.shape[:3], _TARGET_FIELDS) or outputs.size(-1) < 6:
        raise ValueError(f"detection_loss: expected outputs (B, S_h, S_w, 5 + K) and targets (B, S_h, S_w, "
                         f"{_TARGET_FIELDS}) on the same grid, got {tuple(outputs.shape)} and {tuple(targets.shape)}")
    B = outputs.size(0)
    outputs, targets = outputs.float(), targets.float()
    objectness = F.binary_cross_entropy_with_logits(outputs[..., 0], targets[..., 0], reduction="sum") / B
    positive = targets[..., 0] > 0.5
    mine, theirs = outputs[positive], targets[positive]  # (P, 5 + K), (P, 6)
    classification = F.cross_entropy(mine[:, 5:], theirs[:, 1].long(), reduction="sum") / B
    predicted = torch.cat([torch.sigmoid(mine[:, 1:3]), mine[:, 3:5]], dim=1)  # (P, 4)
    box = F.l1_loss(predicted, theirs[:, 2:6], reduction="sum") / B
    total = objectness + classification + box_weight * box
    if terms:
        return dict(objectness=objectness, classification=classification, box=box, total=total)
    return total
