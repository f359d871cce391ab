"""Four ways to read an image and classify it: a CNN, a row-by-row recurrent reader, a Vision Transformer, an MLP.

Chapter 7 compares the families of layers on handwritten digits at matched
parameter counts (``benchmarks/image_families.py``). Every model here takes the
same images ``(B, C, H, W)`` and returns class scores ``(B, num_classes)``:

* :class:`ConvClassifier` -- chapter 2's two convolution blocks (3x3 convolution,
  ReLU, 2x2 max pool; ``width`` then ``2 * width`` channels) and a linear layer on
  7 x 7 feature maps; an adaptive average pool to 7 x 7 before it is the identity
  on 28 x 28 images and lets larger images reuse the same weights;
* :class:`RowRecurrentClassifier` -- reads the image row by row as chapter 3
  reads a sequence (``H`` steps of ``C * W`` pixels) with one fused recurrent
  layer, and classifies from the last hidden state;
* :class:`VisionTransformer` -- :class:`PatchEmbedding` cuts the image into
  non-overlapping ``p x p`` patches and embeds each with one linear layer (the
  same computation as a convolution of kernel and stride ``p``); a learned class
  token is put in front, learned positions are added, pre-norm encoder layers of
  §4.4 follow, then a final layer norm and a linear layer on the class token
  (Dosovitskiy et al., 2021);
* :class:`PixelMLP` -- every pixel into one hidden ReLU layer: no notion of space
  or order, the baseline.

Shapes use one notation: ``B`` batch, ``C`` channels, ``H, W`` height and width,
``p`` patch size, ``N`` patches, ``d`` model width.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from bigmodel_lib.models.transformer import EncoderLayer

__all__ = ["PatchEmbedding", "VisionTransformer", "ConvClassifier", "RowRecurrentClassifier", "PixelMLP"]

_CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def _check_images(x: torch.Tensor, channels: int, who: str, side: int | None = None) -> None:
    """Raise ValueError unless ``x`` is a float batch (B, channels, H, W), of ``side`` x ``side`` pixels if given."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        got = f"{tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
        hint = " (a single image? add a batch dimension with x.unsqueeze(0))" if (
            isinstance(x, torch.Tensor) and x.dim() == 3) else ""
        raise ValueError(f"{who} expects a float batch of images of shape (B, {channels}, H, W), got {got}{hint}")
    if x.size(1) != channels:
        raise ValueError(f"{who} expects {channels} channel(s), got {x.size(1)} (shape {tuple(x.shape)})")
    if side is not None and x.shape[2:] != (side, side):
        raise ValueError(f"{who} was built for {side} x {side} images, got {x.size(2)} x {x.size(3)} "
                         f"(shape {tuple(x.shape)})")


class PatchEmbedding(nn.Module):
    """Cut images into non-overlapping ``p x p`` patches and embed each with one linear layer.

    ``(B, C, H, W)`` -> ``(B, N, d)`` with ``N = (H / p) * (W / p)`` patches in
    reading order (row by row). The same computation as
    ``nn.Conv2d(C, d, p, stride=p)`` whose kernel is ``proj.weight`` reshaped to
    ``(d, C, p, p)``, flattened and transposed. Raises ValueError for a tensor
    that is not ``(B, channels, H, W)`` or a side not divisible by ``p``.

    Introduced in §7.3.
    """

    def __init__(self, patch_size: int, d_model: int, channels: int = 1):
        super().__init__()
        if patch_size < 1 or d_model < 1 or channels < 1:
            raise ValueError(f"expected patch_size, d_model and channels >= 1, got patch_size={patch_size}, "
                             f"d_model={d_model}, channels={channels}")
        self.patch_size, self.channels = patch_size, channels
        self.proj = nn.Linear(channels * patch_size * patch_size, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x, self.channels, "PatchEmbedding")
        B, C, H, W = x.shape
        p = self.patch_size
        if H % p or W % p:
            raise ValueError(f"expected an image side divisible by the patch size {p}, got shape {tuple(x.shape)}")
        patches = x.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5)  # (B, H/p, W/p, C, p, p)
        return self.proj(patches.reshape(B, (H // p) * (W // p), C * p * p))  # (B, N, C p p) -> (B, N, d)


class VisionTransformer(nn.Module):
    """Patches as tokens, a class token, learned positions, pre-norm encoder layers, a final norm, a linear head.

    ``(B, channels, image_size, image_size)`` -> ``(B, num_classes)``. The
    sequence has ``(image_size / patch_size)**2 + 1`` tokens (the class token
    first); the position table is learned for that length, so the model reads
    only images of the size it was built for. ``d_ff`` defaults to
    ``4 * d_model``; ``fused_attention`` as in
    :class:`bigmodel_lib.models.transformer.EncoderLayer`. Raises ValueError for
    sizes that do not fit (``image_size`` not divisible by ``patch_size``,
    ``d_model`` not divisible by ``num_heads``) and for images of the wrong
    shape.

    Introduced in §7.3.
    """

    def __init__(self, d_model: int, patch_size: int = 7, image_size: int = 28, d_ff: int | None = None, *,
                 channels: int = 1, num_classes: int = 10, num_layers: int = 2, num_heads: int = 4,
                 fused_attention: bool = True):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"expected image_size divisible by patch_size, got image_size={image_size}, "
                             f"patch_size={patch_size}")
        if d_model % num_heads:
            raise ValueError(f"expected d_model divisible by num_heads, got d_model={d_model}, num_heads={num_heads}")
        self.image_size, self.channels = image_size, channels
        self.num_patches = (image_size // patch_size) ** 2
        self.patch_embed = PatchEmbedding(patch_size, d_model, channels)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d_model))
        self.pos_embed = nn.Parameter(0.02 * torch.randn(1, self.num_patches + 1, d_model))
        self.layers = nn.ModuleList(
            EncoderLayer(d_model, num_heads, d_ff or 4 * d_model, dropout=0.0, norm_first=True,
                         fused_attention=fused_attention) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x, self.channels, "VisionTransformer", self.image_size)
        h = self.patch_embed(x)  # (B, N, d)
        h = torch.cat([self.cls_token.expand(len(h), -1, -1), h], dim=1) + self.pos_embed  # (B, N + 1, d)
        for layer in self.layers:
            h = layer(h)
        return self.head(self.norm(h[:, 0]))  # the class token's final state -> (B, classes)


class ConvClassifier(nn.Module):
    """Chapter 2's DCNN without its hidden fully connected layer: two conv-ReLU-pool blocks and a linear layer.

    ``conv1``: 3x3, ``width`` channels; ``conv2``: 3x3, ``2 * width`` channels;
    each followed by ReLU and a 2x2 max pool; then an adaptive average pool to
    7 x 7 (the identity on 28 x 28 images) and ``fc`` on the ``2 * width * 49``
    features. ``(B, channels, H, W)`` -> ``(B, num_classes)`` for any ``H, W >= 28``
    (the weights do not depend on the size). Raises ValueError for images of the
    wrong shape or channel count.

    Introduced in §7.3.
    """

    def __init__(self, width: int, channels: int = 1, num_classes: int = 10):
        super().__init__()
        self.channels = channels
        self.conv1 = nn.Conv2d(channels, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fit = nn.AdaptiveAvgPool2d(7)  # the identity on 28 x 28 images; averages larger ones down to 7 x 7
        self.fc = nn.Linear(2 * width * 7 * 7, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x, self.channels, "ConvClassifier")
        x = self.pool(F.relu(self.conv1(x)))  # (B, c, H/2, W/2)
        x = self.pool(F.relu(self.conv2(x)))  # (B, 2c, H/4, W/4)
        return self.fc(self.fit(x).flatten(1))  # (B, 2c * 49) -> (B, classes)


class RowRecurrentClassifier(nn.Module):
    """Reads an image row by row (chapter 3): ``H`` steps of ``C * W`` pixels, a linear layer on the last state.

    ``cell`` is ``"rnn"``, ``"lstm"`` or ``"gru"`` (PyTorch's fused layers,
    checked against the book's cells in chapter 3). An LSTM's forget gate starts
    with bias ``forget_bias`` (§3.2). ``(B, channels, H, image_size)`` ->
    ``(B, num_classes)``: any number of rows, rows of ``image_size`` pixels.
    Raises ValueError for an unknown ``cell`` or images of the wrong shape.

    Introduced in §7.3.
    """

    def __init__(self, cell: str, hidden_size: int, image_size: int = 28, channels: int = 1, num_classes: int = 10,
                 forget_bias: float = 1.0):
        super().__init__()
        if cell not in _CELLS:
            raise ValueError(f"expected cell to be one of {sorted(_CELLS)}, got {cell!r}")
        self.cell, self.image_size, self.channels = cell, image_size, channels
        self.rnn = _CELLS[cell](channels * image_size, hidden_size, batch_first=True)
        if cell == "lstm":  # PyTorch orders the gates i, f, g, o
            with torch.no_grad():
                self.rnn.bias_ih_l0[hidden_size: 2 * hidden_size] = forget_bias
                self.rnn.bias_hh_l0[hidden_size: 2 * hidden_size] = 0.0
        self.fc = nn.Linear(hidden_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x, self.channels, f"RowRecurrentClassifier({self.cell!r})")
        B, C, H, W = x.shape
        if W != self.image_size:
            raise ValueError(f"RowRecurrentClassifier reads rows of {self.image_size} pixels, got {W} "
                             f"(shape {tuple(x.shape)})")
        rows = x.permute(0, 2, 1, 3).reshape(B, H, C * W)  # rows as steps: (B, T=H, I=C W)
        out, _ = self.rnn(rows)  # (B, T, hidden)
        return self.fc(out[:, -1])  # (B, classes)


class PixelMLP(nn.Module):
    """All ``C * H * W`` pixels into one hidden ReLU layer, then ``num_classes`` outputs: no notion of space or order.

    ``(B, channels, image_size, image_size)`` -> ``(B, num_classes)``. Raises
    ValueError for images of the wrong shape.

    Introduced in §7.3.
    """

    def __init__(self, hidden: int, image_size: int = 28, channels: int = 1, num_classes: int = 10):
        super().__init__()
        self.image_size, self.channels = image_size, channels
        self.hidden = nn.Linear(channels * image_size * image_size, hidden)
        self.out = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x, self.channels, "PixelMLP", self.image_size)
        return self.out(F.relu(self.hidden(x.flatten(1))))  # (B, C H W) -> (B, hidden) -> (B, classes)
