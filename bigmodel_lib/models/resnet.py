"""Residual blocks and a small ResNet, with their "plain" counterparts (chapter 2, section 2.7).

* ``ResidualBlock`` -- ResNet's basic block, ``relu(x + bn2(conv2(relu(bn1(conv1(x))))))``,
  with the layer names of ``torchvision.models.resnet.BasicBlock`` so that its
  weights load unchanged; ``residual=False`` drops the ``x +`` and
  ``batch_norm=False`` the two batch normalisations.
* ``ResNet`` -- a stem convolution, ``num_blocks`` such blocks at one width, a
  global average pooling and a linear classifier: with ``residual=False`` it is
  the same network without shortcuts, the "plain" network He et al. compare it
  with, with exactly the same parameters.

Batch normalisation is PyTorch's ``nn.BatchNorm2d``; the notebook writes it from
its formula and checks it against that module. Shapes: ``B`` batch, ``C``
channels, ``H, W`` height and width.
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["ResidualBlock", "ResNet"]


def _check_channels(x: torch.Tensor, channels: int, who: str) -> None:
    if x.dim() != 4 or x.shape[1] != channels:
        hint = " (a single image? add a batch dimension with x.unsqueeze(0))" if x.dim() == 3 else ""
        raise ValueError(
            f"{who} expects a batch of images of shape (B, {channels}, H, W), "
            f"got shape {tuple(x.shape)}{hint}"
        )


class ResidualBlock(nn.Module):
    """ResNet's basic block: two 3x3 convolutions and a shortcut, ``relu(x + F(x))``.

    ``F(x) = bn2(conv2(relu(bn1(conv1(x)))))`` with ``channels`` in and out,
    stride 1 and padding 1, so ``x`` (B, C, H, W) -> (B, C, H, W) and the
    identity shortcut needs no projection. The names ``conv1, bn1, relu, conv2,
    bn2`` are those of ``torchvision.models.resnet.BasicBlock(channels,
    channels)``, whose state dict loads into this block unchanged.

    ``residual=False`` computes ``relu(F(x))`` (a "plain" block, same
    parameters); ``batch_norm=False`` replaces both normalisations by the
    identity and gives the convolutions a bias instead. Raises ``ValueError``
    for ``channels < 1`` or an input that is not (B, channels, H, W).

    Introduced in §2.7.
    """

    def __init__(self, channels: int, batch_norm: bool = True, residual: bool = True):
        super().__init__()
        if channels < 1:
            raise ValueError(f"ResidualBlock: expected channels >= 1, got {channels}")
        self.channels, self.residual = channels, residual
        # Batch normalisation subtracts the mean, so a bias before it would be cancelled.
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=not batch_norm)
        self.bn1 = nn.BatchNorm2d(channels) if batch_norm else nn.Identity()
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=not batch_norm)
        self.bn2 = nn.BatchNorm2d(channels) if batch_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_channels(x, self.channels, "ResidualBlock")
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))  # F(x): (B, C, H, W)
        return self.relu(x + out if self.residual else out)


class ResNet(nn.Module):
    """A small ResNet for images: stem, ``num_blocks`` residual blocks, average pooling, classifier.

    ``x`` (B, in_channels, H, W) -> stem ``relu(bn(conv3x3(x)))`` (B, width, H, W)
    -> ``num_blocks`` :class:`ResidualBlock` of ``width`` channels -> mean over
    H and W (B, width) -> ``fc`` (B, num_classes) scores. Every convolution
    keeps the size, so any H and W work. Its depth in weight layers is
    ``2 * num_blocks + 2``.

    ``residual=False`` removes every shortcut: the plain network of the same
    depth, with the same parameters (the shortcuts have none).
    ``batch_norm=False`` removes every batch normalisation. Raises
    ``ValueError`` for sizes below 1 or an input with the wrong number of
    channels.

    Introduced in §2.7.
    """

    def __init__(
        self,
        num_blocks: int,
        width: int = 16,
        in_channels: int = 1,
        num_classes: int = 10,
        batch_norm: bool = True,
        residual: bool = True,
    ):
        super().__init__()
        if min(num_blocks, width, in_channels, num_classes) < 1:
            raise ValueError(
                "ResNet: expected num_blocks, width, in_channels and num_classes >= 1, got "
                f"{num_blocks}, {width}, {in_channels} and {num_classes}"
            )
        self.in_channels = in_channels
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=not batch_norm),
            nn.BatchNorm2d(width) if batch_norm else nn.Identity(),
            nn.ReLU(),
        )
        self.blocks = nn.Sequential(*(ResidualBlock(width, batch_norm, residual) for _ in range(num_blocks)))
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_channels(x, self.in_channels, "ResNet")
        features = self.blocks(self.stem(x))  # (B, width, H, W)
        return self.fc(features.mean(dim=(2, 3)))  # (B, num_classes)
