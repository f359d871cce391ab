"""A causal dilated convolutional language model (WaveNet / ByteNet style), for chapter 7's comparison.

Shapes: ``B`` batch, ``T`` positions, ``C`` channels, ``V`` vocabulary size.
A causal convolution pads only on the left, so the output at position ``t``
reads positions ``t - (k - 1) d, ..., t`` and never a later one; stacking
dilations 1, 2, 4, ... doubles how far back the stack sees at every layer
(van den Oord et al., 2016, WaveNet; Kalchbrenner et al., 2016, ByteNet).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["CausalConv1d", "CausalConvLM"]


class CausalConv1d(nn.Conv1d):
    """A 1-D convolution that sees only the present and the past: ``(B, C_in, T) -> (B, C_out, T)``.

    Output ``t`` is ``bias + sum_j W[:, :, j] x[:, :, t - (k - 1 - j) d]`` with
    zeros before the start (``k`` the kernel size, ``d`` the dilation): the
    input is padded with ``(k - 1) d`` zeros on the left only, so the length is
    kept and nothing after ``t`` is read. Raises ValueError for an input that
    is not ``(B, C_in, T)``.

    Introduced in §7.5.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation, bias=bias)

    @property
    def reach(self) -> int:
        """How many positions back the convolution reads: ``(k - 1) d``."""
        return (self.kernel_size[0] - 1) * self.dilation[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.size(1) != self.in_channels:
            raise ValueError(f"CausalConv1d expects an input of shape (B, {self.in_channels}, T), "
                             f"got {tuple(x.shape)}")
        return super().forward(F.pad(x, (self.reach, 0)))  # zeros on the left only: (B, C_out, T)


class _ResidualBlock(nn.Module):
    """``x + W_1x1 gelu(causal_conv(layer_norm(x)))``: a pre-norm residual block. (B, C, T) -> (B, C, T)."""

    def __init__(self, channels: int, kernel_size: int, dilation: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.conv = CausalConv1d(channels, channels, kernel_size, dilation)
        self.mix = nn.Conv1d(channels, channels, 1)  # the position-wise (1x1) layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x.transpose(1, 2)).transpose(1, 2)  # normalise the channels of every position
        return x + self.mix(F.gelu(self.conv(h)))  # (B, C, T)


class CausalConvLM(nn.Module):
    """A character (or token) language model built of causal dilated convolutions.

    Embedding (V -> C), one pre-norm residual block per entry of ``dilations``
    (layer norm, a :class:`CausalConv1d` of ``kernel_size`` with that dilation,
    GELU, a 1x1 convolution, the residual), a final layer norm and a linear
    output layer (C -> V). ``forward(idx)`` maps ids ``(B, T)`` to next-token
    logits ``(B, T, V)``: the logits at ``t`` depend on ``idx[:, t - R + 1 : t + 1]``
    only, ``R`` = :meth:`receptive_field` ``= 1 + (k - 1) sum(dilations)``
    (dilations 1, 2, ..., 32 with kernel 2 see 64 positions). Any ``T`` runs:
    there is no position table; positions farther back than ``R`` are not seen.
    Returns ``(logits, None)``, the ``(logits, ...)`` shape the book's ``Trainer``
    reads and :class:`~bigmodel_lib.models.gpt.GPT` returns too.

    Raises ValueError for ``kernel_size < 2``, an empty or non-positive
    ``dilations``, or ids that are not an integer ``(B, T)`` tensor in ``[0, V)``.

    Introduced in §7.5.
    """

    def __init__(self, vocab_size: int, channels: int = 128, dilations: Sequence[int] = (1, 2, 4, 8, 16, 32),
                 kernel_size: int = 2):
        super().__init__()
        dilations = tuple(dilations)
        if kernel_size < 2:
            raise ValueError(f"CausalConvLM expects kernel_size >= 2 (1 would see no past), got {kernel_size}")
        if not dilations or any(not isinstance(d, int) or d < 1 for d in dilations):
            raise ValueError(f"CausalConvLM expects a non-empty sequence of dilations >= 1, got {dilations}")
        self.vocab_size, self.channels, self.kernel_size, self.dilations = vocab_size, channels, kernel_size, dilations
        self.embedding = nn.Embedding(vocab_size, channels)
        self.blocks = nn.ModuleList(_ResidualBlock(channels, kernel_size, d) for d in dilations)
        self.norm = nn.LayerNorm(channels)
        self.head = nn.Linear(channels, vocab_size)

    def receptive_field(self) -> int:
        """How many positions (the current one included) the logits at one position depend on."""
        return 1 + sum(block.conv.reach for block in self.blocks)

    def weights_per_token(self) -> int:
        """The weights multiplied once per position: every convolution's kernels and the output layer.

        Biases, layer norms and the embedding (a lookup) are left out, as in the
        ``6 N`` rule: training costs about ``6 * weights_per_token()`` FLOPs per token.
        """
        convs = sum(b.conv.weight.numel() + b.mix.weight.numel() for b in self.blocks)
        return convs + self.head.weight.numel()

    def flops_per_token(self) -> int:
        """Training FLOPs per token: 6 x :meth:`weights_per_token` (2 forward, 4 backward per weight)."""
        return 6 * self.weights_per_token()

    def forward(self, idx: torch.Tensor) -> tuple[torch.Tensor, None]:
        if idx.dim() != 2 or idx.dtype not in (torch.long, torch.int32):
            raise ValueError(f"CausalConvLM expects token ids of shape (B, T) and an integer dtype, got shape "
                             f"{tuple(idx.shape)} and dtype {idx.dtype}")
        if idx.numel() and (idx.min() < 0 or idx.max() >= self.vocab_size):
            raise ValueError(f"CausalConvLM expects ids in [0, {self.vocab_size}), got ids from "
                             f"{idx.min().item()} to {idx.max().item()}")
        h = self.embedding(idx).transpose(1, 2)  # (B, C, T)
        for block in self.blocks:
            h = block(h)  # (B, C, T)
        return self.head(self.norm(h.transpose(1, 2))), None  # (B, T, V)
