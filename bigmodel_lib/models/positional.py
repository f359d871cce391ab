"""Positions: sinusoidal positional encoding and learned position embeddings.

Attention by itself ignores order: permute the tokens and the outputs are
permuted the same way (the tests check this). A Transformer therefore adds a
vector that depends on the position to every token embedding.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

__all__ = ["sinusoidal_table", "PositionalEncoding", "LearnedPositionalEmbedding"]


def sinusoidal_table(max_len: int, d_model: int) -> torch.Tensor:
    """The (max_len, d_model) table PE(pos, 2i) = sin(pos / 10000^(2i/d_model)), PE(pos, 2i+1) = cos(...).

    Each pair of columns (2i, 2i+1) is a sine and cosine of one frequency; the
    wavelengths grow geometrically from 2*pi to 10000*2*pi.

    Introduced in §4.3.
    """
    if d_model % 2 != 0:
        raise ValueError(f"expected an even d_model (sine and cosine columns come in pairs), got d_model={d_model}")
    position = torch.arange(max_len, dtype=torch.float32)[:, None]  # (max_len, 1)
    inv_freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))  # (C/2,)
    table = torch.zeros(max_len, d_model)
    table[:, 0::2] = torch.sin(position * inv_freq)  # (max_len, C/2)
    table[:, 1::2] = torch.cos(position * inv_freq)
    return table


def _check_positions(x: torch.Tensor, max_len: int, d_model: int) -> None:
    if x.dim() != 3 or x.size(-1) != d_model:
        raise ValueError(f"expected token embeddings of shape (B, T, {d_model}), got shape {tuple(x.shape)}")
    if x.size(1) > max_len:
        raise ValueError(
            f"expected a sequence of at most max_len={max_len} positions, got length T={x.size(1)}; "
            "build the position table with a larger max_len"
        )


class PositionalEncoding(nn.Module):
    """Adds the fixed sinusoidal table to token embeddings: x + PE[:T], then dropout.

    Input and output (B, T, d_model). The table is a buffer (not a parameter):
    it moves with ``.to(device)`` and is never trained. A sequence longer than
    ``max_len`` raises ValueError naming both lengths.

    Introduced in §4.3.
    """

    def __init__(self, d_model: int, max_len: int = 5000, dropout: float = 0.0):
        super().__init__()
        self.d_model = d_model
        self.max_len = max_len
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("pe", sinusoidal_table(max_len, d_model), persistent=False)  # (max_len, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_positions(x, self.max_len, self.d_model)
        T = x.size(1)
        return self.dropout(x + self.pe[:T])  # (B, T, C) + (T, C)


class LearnedPositionalEmbedding(nn.Module):
    """Adds a trained vector per position to token embeddings: x + P[0..T-1] (as in GPT and BERT).

    ``embedding`` is an ``nn.Embedding(max_len, d_model)`` table. Input and output
    (B, T, d_model). Unlike the sinusoidal table it cannot go beyond ``max_len``:
    a longer sequence raises ValueError naming both lengths.

    Introduced in §4.3.
    """

    def __init__(self, max_len: int, d_model: int, dropout: float = 0.0):
        super().__init__()
        self.d_model = d_model
        self.max_len = max_len
        self.embedding = nn.Embedding(max_len, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_positions(x, self.max_len, self.d_model)
        positions = torch.arange(x.size(1), device=x.device)  # (T,)
        return self.dropout(x + self.embedding(positions))  # (B, T, C) + (T, C)
