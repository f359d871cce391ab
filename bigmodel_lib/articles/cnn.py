"""The source articles' CNNs, corrected: the flatten size computed, not hard-coded.

The published listings and their defects are in :mod:`bigmodel_lib.articles`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from bigmodel_lib.models.cnn import _pair

__all__ = ["CorrectedCNN", "CorrectedDCNN", "published_view_rows"]


class CorrectedCNN(nn.Module):
    """Article 000's ``CNN`` with the flatten size computed instead of hard-coded.

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

    :func:`published_view_rows` computes which case a size and batch land in.

    **The fix.** ``input_size`` is a constructor argument, the flatten size is
    ``64 * (H // 4) * (W // 4)``, ``flatten(1)`` keeps the batch dimension no
    matter what, and an image of another size raises a ``ValueError`` naming
    the size the network was built for.

    Introduced in §2.4.
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


class CorrectedDCNN(CorrectedCNN):
    """Article 001's ``DCNN`` for 1x28x28 images (MNIST), flatten size computed.

    The article's ``DCNN`` is the same network as article 000's ``CNN`` (conv 32,
    conv 64, a 2x2 max pool after each, fc 128, fc 10) for one input channel;
    it writes ``64 * 7 * 7``, which is right for 28x28 images (28 -> 14 -> 7;
    28 to 31 px give 7 after rounding down) and wrong for any other size, with
    the same ``view(-1, ...)`` failure as :class:`CorrectedCNN` (for 32x32: a
    ``RuntimeError`` unless the batch is a multiple of 49). The article also
    keeps its ReLU as a module, ``self.relu``; so does this class, so the
    article's ``state_dict`` loads as is. Its training loop uses a
    ``train_loader`` it never defines (see :func:`bigmodel_lib.articles.source`).

    Introduced in §2.4.
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



def published_view_rows(input_size: int, batch_size: int, article: str = "000") -> int | None:
    """Rows the published ``x.view(-1, 64 * s * s)`` makes of a batch, or None if it raises.

    After the two poolings each image of side ``n`` has ``64 * (n // 4) ** 2``
    numbers; ``view(-1, 64 * s * s)`` (``s = 6`` in article 000, ``7`` in article 001)
    works whenever the batch's total is a multiple of ``64 * s * s`` and then
    makes ``total / (64 * s * s)`` rows -- equal to ``batch_size`` only when
    ``n // 4 == s``. Otherwise PyTorch raises
    ``RuntimeError: shape '[-1, 64*s*s]' is invalid for input of size total``.

    >>> published_view_rows(24, 9), published_view_rows(32, 9), published_view_rows(32, 8)
    (9, 16, None)

    Introduced in §2.4.
    """
    side = {"000": 6, "001": 7}.get(article)
    if side is None:
        raise ValueError(f"expected article '000' (CNN) or '001' (DCNN), got {article!r}")
    total = batch_size * 64 * (input_size // 4) ** 2
    width = 64 * side * side
    if total == 0 or total % width != 0:
        return None
    return total // width
