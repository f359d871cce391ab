"""Four ways to read a whole short text and classify it: a bag, a CNN, a BiLSTM and a Transformer encoder.

Chapter 7 compares them on chapter 5's tweets with the same embedding table and
bodies of matched size. Each model embeds token ids ``(B, T)`` padded with
``pad_id`` at the end, turns them into one vector per text (its ``pool``), and
maps it through dropout and a linear layer to class scores ``(B, num_classes)``.
Unlike :mod:`bigmodel_lib.models.sequence_classifiers`, every model here reads
the text in both directions, and none ever reads the padding:

* :class:`BagOfEmbeddings` -- the mean of the token embeddings (fastText
  without its n-grams): word order plays no part; the floor for the others;
* :class:`KimCNN` -- Kim (2014): parallel 1-D convolutions of widths 3, 4 and 5
  over the embeddings, each followed by ReLU and max-over-time pooling;
* :class:`BiLSTMClassifier` -- one bidirectional LSTM layer over packed sequences
  (its forget gates start open, §3.2), then the mean of its outputs;
* :class:`TransformerEncoderClassifier` -- the sinusoidal encoding of §4.3,
  pre-norm encoder layers of §4.4 with a key padding mask, a final layer norm,
  then the mean of its outputs.

:func:`masked_mean` is the pooling the bag, the BiLSTM and the encoder share.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from bigmodel_lib.models.positional import PositionalEncoding
from bigmodel_lib.models.transformer import EncoderLayer

__all__ = [
    "masked_mean",
    "TextClassifier",
    "BagOfEmbeddings",
    "KimCNN",
    "BiLSTMClassifier",
    "TransformerEncoderClassifier",
]


def masked_mean(h: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """The mean of ``h`` (B, T, C) over the positions where ``real`` (B, T, bool) is True: (B, C).

    Padded positions contribute nothing, so padding a batch further leaves the result
    unchanged. Raises ValueError if the shapes disagree or a row has no real position.

    Introduced in §7.4.
    """
    if h.dim() != 3 or real.shape != h.shape[:2] or real.dtype != torch.bool:
        raise ValueError(f"expected h of shape (B, T, C) and a bool mask of shape (B, T), got h {tuple(h.shape)} "
                         f"and mask {tuple(real.shape)} of dtype {real.dtype}")
    counts = real.sum(1, keepdim=True)  # (B, 1)
    if (counts == 0).any():
        raise ValueError("expected at least one real (True) position in every row of the mask, got an empty row")
    return (h * real[..., None]).sum(1) / counts  # (B, C)


class TextClassifier(nn.Module):
    """The parts every family shares: an embedding table, dropout and a linear classifier.

    ``forward`` maps token ids ``(B, T)`` (long or int32, padded with ``pad_id`` at the
    end of each row) to class scores ``(B, num_classes)``: ``head(dropout(pool(ids,
    lengths)))``, where a subclass's ``pool`` returns ``(B, features)``. The
    ``pad_id`` row of the table is zero and stays zero. Raises ValueError for ids of
    another shape or dtype, ids outside the vocabulary, a row of padding only, or
    padding before a real token.

    Introduced in §7.4.
    """

    def __init__(self, vocab_size: int, embedding_dim: int, features: int, num_classes: int = 3,
                 dropout: float = 0.1, pad_id: int = 0):
        super().__init__()
        self.vocab_size, self.pad_id = vocab_size, pad_id
        self.embed = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(features, num_classes)

    def lengths(self, ids: torch.Tensor) -> torch.Tensor:
        """The number of real tokens of each row of ``ids`` (B, T): (B,), after checking the ids."""
        who = type(self).__name__
        if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.dtype not in (torch.long, torch.int32):
            got = (f"shape {tuple(ids.shape)} and dtype {ids.dtype}" if isinstance(ids, torch.Tensor)
                   else type(ids).__name__)
            raise ValueError(f"{who} expected token ids of shape (B, T) and an integer dtype, got {got}")
        if ids.numel() and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(f"{who} expected ids in [0, {self.vocab_size}), got values from {ids.min().item()} "
                             f"to {ids.max().item()}")
        real = ids != self.pad_id  # (B, T)
        lengths = real.sum(1)  # (B,)
        if (lengths == 0).any():
            raise ValueError(f"{who} expected at least one token that is not [PAD] (id {self.pad_id}) in every "
                             "sequence, got an empty one")
        if (real[:, 1:] & ~real[:, :-1]).any():
            raise ValueError(f"{who} expected padding (id {self.pad_id}) only at the end of each sequence, got a "
                             "token after padding (is the batch padded on the left?)")
        return lengths

    def pool(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` ids and their ``(B,)`` lengths -> one vector per text, ``(B, features)``."""
        raise NotImplementedError

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.pool(ids, self.lengths(ids))))  # (B, num_classes)


class BagOfEmbeddings(TextClassifier):
    """The mean of the real tokens' embeddings and a linear layer: ``(B, T)`` ids -> ``(B, num_classes)``.

    fastText's classifier without its n-grams; word order plays no part. Its body
    (everything but the embedding table) is the classifier alone.

    Introduced in §7.4.
    """

    def __init__(self, vocab_size: int, embedding_dim: int, num_classes: int = 3, dropout: float = 0.1,
                 pad_id: int = 0):
        super().__init__(vocab_size, embedding_dim, embedding_dim, num_classes, dropout, pad_id)

    def pool(self, ids, lengths):
        return masked_mean(self.embed(ids), ids != self.pad_id)  # (B, E)


class KimCNN(TextClassifier):
    """Kim (2014): 1-D convolutions of several widths over the embeddings, max over time, a linear layer.

    For each width ``k`` in ``kernel_sizes``, ``num_filters`` filters slide over the
    embeddings ``(B, E, T)``. They run "wide": padded with ``k - 1`` zeros on both
    sides, so window ``j`` of the ``T + k - 1`` reads positions ``j - k + 1 .. j`` and
    even a one-token text has windows. Max-over-time pooling keeps each filter's
    largest response over the windows that hold at least one real token, then ReLU:
    ``(B, len(kernel_sizes) * num_filters)``. Output ``(B, num_classes)``.

    Introduced in §7.4.
    """

    def __init__(self, vocab_size: int, embedding_dim: int, num_filters: int, num_classes: int = 3,
                 kernel_sizes: tuple[int, ...] = (3, 4, 5), dropout: float = 0.1, pad_id: int = 0):
        super().__init__(vocab_size, embedding_dim, len(kernel_sizes) * num_filters, num_classes, dropout, pad_id)
        self.kernel_sizes = tuple(kernel_sizes)
        self.convs = nn.ModuleList(nn.Conv1d(embedding_dim, num_filters, k, padding=k - 1) for k in self.kernel_sizes)

    def pool(self, ids, lengths):
        x = self.embed(ids).transpose(1, 2)  # (B, E, T); [PAD] embeds to zeros, like the convolution's own padding
        pooled = []
        for conv, k in zip(self.convs, self.kernel_sizes):
            h = conv(x)  # (B, F, T + k - 1): window j reads positions j - k + 1 .. j
            empty = torch.arange(h.size(-1), device=ids.device)[None, :] >= (lengths + k - 1)[:, None]  # (B, T+k-1)
            h = h.masked_fill(empty[:, None, :], float("-inf"))  # windows of padding alone never win the max
            pooled.append(F.relu(h.amax(-1)))  # (B, F); max then ReLU = ReLU then max, on fewer numbers
        return torch.cat(pooled, 1)  # (B, len(kernel_sizes) * F)


class BiLSTMClassifier(TextClassifier):
    """A bidirectional LSTM layer, the mean of its outputs over the real tokens, a linear layer.

    ``hidden_size`` units each way; the sequences are packed, so neither direction
    ever reads the padding (the backward one starts at each text's last real token).
    The forget gates' bias starts at ``forget_bias`` (§3.2). ``(B, T)`` ids ->
    ``(B, num_classes)``; :meth:`hidden_states` gives the outputs ``(B, T, 2 *
    hidden_size)``, forward direction first, zero at padded positions.

    Introduced in §7.4.
    """

    def __init__(self, vocab_size: int, embedding_dim: int, hidden_size: int, num_classes: int = 3,
                 dropout: float = 0.1, forget_bias: float = 1.0, pad_id: int = 0):
        super().__init__(vocab_size, embedding_dim, 2 * hidden_size, num_classes, dropout, pad_id)
        self.lstm = nn.LSTM(embedding_dim, hidden_size, batch_first=True, bidirectional=True)
        with torch.no_grad():  # PyTorch orders the gates i, f, g, o
            for suffix in ("l0", "l0_reverse"):
                getattr(self.lstm, f"bias_ih_{suffix}")[hidden_size: 2 * hidden_size] = forget_bias
                getattr(self.lstm, f"bias_hh_{suffix}")[hidden_size: 2 * hidden_size] = 0.0

    def hidden_states(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` ids and ``(B,)`` lengths -> the LSTM's outputs ``(B, T, 2H)``."""
        packed = pack_padded_sequence(self.embed(ids), lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=ids.size(1))
        return out  # (B, T, 2H)

    def pool(self, ids, lengths):
        return masked_mean(self.hidden_states(ids, lengths), ids != self.pad_id)  # (B, 2H)


class TransformerEncoderClassifier(TextClassifier):
    """Sinusoidal positions, pre-norm encoder layers with a padding mask, a final norm, the mean, a linear layer.

    The model width is ``embedding_dim`` (the embeddings are used unscaled: PyTorch's
    N(0, 1) initialisation already dominates the sinusoids' unit amplitude);
    ``d_ff`` is the feed-forward width. No query attends to a padded key, so the
    real positions' outputs do not depend on the padding. ``(B, T)`` ids with ``T <=
    max_len`` -> ``(B, num_classes)``; :meth:`hidden_states` gives the normalised
    outputs ``(B, T, embedding_dim)``.

    Introduced in §7.4.
    """

    def __init__(self, vocab_size: int, embedding_dim: int, d_ff: int, num_classes: int = 3, num_layers: int = 2,
                 num_heads: int = 4, dropout: float = 0.1, max_len: int = 512, fused_attention: bool = True,
                 pad_id: int = 0):
        super().__init__(vocab_size, embedding_dim, embedding_dim, num_classes, dropout, pad_id)
        self.positions = PositionalEncoding(embedding_dim, max_len=max_len)
        self.layers = nn.ModuleList(EncoderLayer(embedding_dim, num_heads, d_ff, dropout=dropout, norm_first=True,
                                                 fused_attention=fused_attention) for _ in range(num_layers))
        self.norm = nn.LayerNorm(embedding_dim)

    def hidden_states(self, ids: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` ids -> the final layer norm's outputs ``(B, T, E)``."""
        padding = ids == self.pad_id  # (B, T), True = padding
        h = self.positions(self.embed(ids))  # (B, T, E)
        for layer in self.layers:
            h = layer(h, key_padding_mask=padding)
        return self.norm(h)  # (B, T, E)

    def pool(self, ids, lengths):
        return masked_mean(self.hidden_states(ids), ids != self.pad_id)  # (B, E)
