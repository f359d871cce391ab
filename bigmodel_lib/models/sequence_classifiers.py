"""Three ways to read a sequence of tokens and classify it from its last position.

Chapter 7 compares the three families of layers on the same tasks at matched
parameter counts. Each model here embeds token ids ``(B, T)``, runs one family's
layers over the sequence with nothing looking ahead, and maps the state at the
last position to class scores ``(B, num_classes)``:

* :class:`RecurrentClassifier` -- one recurrent layer (PyTorch's fused
  ``nn.RNN``, ``nn.LSTM`` or ``nn.GRU``, checked against the book's cells in
  chapter 3); the last hidden state is all it keeps of the sequence;
* :class:`CausalConvClassifier` -- a stack of causal 1-D convolutions of kernel 2
  with dilations 1, 2, 4, ... and residual connections (as in WaveNet); layer
  ``i`` reaches ``2**i`` positions further back, so ``L`` layers see
  ``2**L`` positions and nothing before them;
* :class:`CausalTransformerClassifier` -- the sinusoidal encoding of §4.3 and
  pre-norm encoder layers of §4.4 under a causal mask, then a final layer norm.

The last position is where all three have seen the whole sequence: the
recurrence by construction, the convolution if the sequence fits its receptive
field, the attention in one step.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from bigmodel_lib.models.attention import causal_mask
from bigmodel_lib.models.positional import PositionalEncoding
from bigmodel_lib.models.transformer import EncoderLayer

__all__ = ["RecurrentClassifier", "CausalConvClassifier", "CausalTransformerClassifier"]

_CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def _check_tokens(x: torch.Tensor, vocab_size: int, who: str, max_len: int | None = None) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.dtype != torch.long:
        got = f"{tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{who} expects token ids of shape (batch, length) and dtype torch.long, got {got}")
    if max_len is not None and x.size(1) > max_len:
        raise ValueError(f"{who} reads at most {max_len} positions (max_len), got a sequence of {x.size(1)}")
    if x.numel() and (x.min() < 0 or x.max() >= vocab_size):
        raise ValueError(f"{who} expects ids in [0, {vocab_size}), got values from {x.min().item()} "
                         f"to {x.max().item()}")


class RecurrentClassifier(nn.Module):
    """Embeddings, one recurrent layer, a linear layer on the last hidden state: ``(B, T)`` ids -> ``(B, classes)``.

    ``cell`` is ``"rnn"`` (tanh), ``"lstm"`` or ``"gru"``. An LSTM's forget gate
    starts with bias ``forget_bias`` (1 by default, §3.2), so that it keeps its
    cell state until it learns not to. Raises ValueError for an unknown ``cell``
    or token ids that are not a ``(B, T)`` long tensor within the vocabulary.

    Introduced in §7.2.
    """

    def __init__(self, cell: str, vocab_size: int, num_classes: int, embedding_dim: int, hidden_size: int,
                 forget_bias: float = 1.0):
        super().__init__()
        if cell not in _CELLS:
            raise ValueError(f"expected cell to be one of {sorted(_CELLS)}, got {cell!r}")
        self.cell, self.vocab_size = cell, vocab_size
        self.embed = nn.Embedding(vocab_size, embedding_dim)
        self.rnn = _CELLS[cell](embedding_dim, hidden_size, batch_first=True)
        if cell == "lstm":  # PyTorch orders the gates i, f, g, o
            with torch.no_grad():
                self.rnn.bias_ih_l0[hidden_size: 2 * hidden_size] = forget_bias
                self.rnn.bias_hh_l0[hidden_size: 2 * hidden_size] = 0.0
        self.head = nn.Linear(hidden_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_tokens(x, self.vocab_size, f"RecurrentClassifier({self.cell!r})")
        out, _ = self.rnn(self.embed(x))  # (B, T, H)
        return self.head(out[:, -1])  # (B, classes)


class CausalConvClassifier(nn.Module):
    """Causal dilated convolutions (kernel 2, dilation ``2**i`` in layer ``i``) with residuals; reads the last position.

    Each layer computes ``h + relu(conv(h))`` where the convolution of layer ``i``
    combines positions ``t - 2**i`` and ``t`` (zeros before the start): a stack of
    ``num_layers`` sees :meth:`receptive_field` ``= 2**num_layers`` positions.
    ``(B, T)`` ids -> ``(B, classes)``. Raises ValueError for bad token ids.

    Introduced in §7.2.
    """

    def __init__(self, vocab_size: int, num_classes: int, channels: int, num_layers: int):
        super().__init__()
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, channels)
        self.convs = nn.ModuleList(nn.Conv1d(channels, channels, 2, dilation=2**i) for i in range(num_layers))
        self.head = nn.Linear(channels, num_classes)

    def receptive_field(self) -> int:
        """How many positions the last output can see: 1 plus how far back each layer reaches."""
        return 1 + sum(conv.dilation[0] for conv in self.convs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_tokens(x, self.vocab_size, "CausalConvClassifier")
        h = self.embed(x).transpose(1, 2)  # (B, C, T)
        for conv in self.convs:
            h = h + F.relu(conv(F.pad(h, (conv.dilation[0], 0))))  # zeros on the left only: causal, length kept
        return self.head(h[:, :, -1])  # (B, classes)


class CausalTransformerClassifier(nn.Module):
    """Scaled embeddings plus the sinusoidal encoding, pre-norm encoder layers under a causal mask, a final norm.

    The last position's output goes to a linear layer: ``(B, T)`` ids -> ``(B,
    classes)`` for ``T <= max_len``. The sinusoidal encoding has no weights, so the
    parameter count does not depend on ``max_len``. ``fused_attention`` as in
    :class:`bigmodel_lib.models.transformer.EncoderLayer`. Raises ValueError for
    bad token ids or a sequence longer than ``max_len``.

    Introduced in §7.2.
    """

    def __init__(self, vocab_size: int, num_classes: int, d_model: int, max_len: int, num_layers: int = 2,
                 num_heads: int = 4, fused_attention: bool = True):
        super().__init__()
        self.vocab_size, self.max_len = vocab_size, max_len
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = PositionalEncoding(d_model, max_len=max_len)
        self.layers = nn.ModuleList(
            EncoderLayer(d_model, num_heads, 4 * d_model, dropout=0.0, norm_first=True, fused_attention=fused_attention)
            for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_tokens(x, self.vocab_size, "CausalTransformerClassifier", self.max_len)
        h = self.pos(self.embed(x) * math.sqrt(self.embed.embedding_dim))  # (B, T, C)
        mask = causal_mask(x.size(1), device=x.device)
        for layer in self.layers:
            h = layer(h, attn_mask=mask)
        return self.head(self.norm(h[:, -1]))  # (B, classes)
