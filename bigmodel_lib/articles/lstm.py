"""The source articles' LSTM classifier, corrected for padded batches.

The published listings and their defects are in :mod:`bigmodel_lib.articles`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence

from bigmodel_lib.models.rnn import _check_sequence

__all__ = ["CorrectedLSTMClassifier"]


class CorrectedLSTMClassifier(nn.Module):
    """The source articles' ``RNN`` class: an LSTM whose last step feeds a classifier.

    Both articles publish this class (article 000 section 4.2, article 001 section
    1.5.2) under the name ``RNN``, although it is an LSTM: a batch-first
    ``nn.LSTM`` started from zero states, whose output at the last time step,
    ``out[:, -1, :]``, goes through ``fc``. The parameter names (``lstm``,
    ``fc``) are the article's, so its ``state_dict`` loads as is.

    Defects and limits of the published code:

    * ``out[:, -1, :]`` is the state after the last *column* of the batch. In
      a padded batch of sequences of different lengths, the shorter sequences'
      last column is padding, so their prediction depends on how much padding
      the batch happened to need. Pass ``lengths`` to this class to fix that.
    * Article 001's training loop iterates over ``train_loader``, which the
      article never defines: run as published, it stops with
      ``NameError: name 'train_loader' is not defined``.
    * Building ``h0``/``c0`` by hand with ``torch.zeros(...).to(x.device)`` is
      what ``nn.LSTM`` does anyway when no state is given; this class omits it.

    ``forward(x, lengths=None)``: ``x`` (B, T, input_size); ``lengths`` (B,)
    the real length of each sequence (1..T), padding after it. The sequences
    are then packed (``pack_padded_sequence``) so the LSTM stops at each
    sequence's last real step, and the top layer's final hidden state ``h_n``
    is that step's output. Returns logits (B, num_classes).

    Introduced in §3.2.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, num_classes: int):
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers, batch_first=True)
        self.fc = nn.Linear(hidden_size, num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | Sequence[int] | None = None) -> torch.Tensor:
        _check_sequence(x, self.input_size, True, "CorrectedLSTMClassifier")
        if lengths is None:
            out, _ = self.lstm(x)  # (B, T, H), zero initial states
            return self.fc(out[:, -1, :])  # the last column, as published
        lengths = _check_lengths(lengths, x.shape[0], x.shape[1])
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.lstm(packed)  # h_n (L, B, H), in the batch's original order
        return self.fc(h_n[-1])  # top layer, each sequence's last real step


def _check_lengths(lengths, batch_size: int, max_len: int) -> torch.Tensor:
    lengths = torch.as_tensor(lengths).detach().to("cpu")  # pack_padded_sequence wants them on the CPU
    if lengths.dim() != 1 or lengths.shape[0] != batch_size:
        raise ValueError(
            f"lengths must hold one length per sequence, shape ({batch_size},), got shape {tuple(lengths.shape)}"
        )
    if lengths.is_floating_point() or lengths.is_complex():
        raise ValueError(f"lengths must be integers, got dtype {lengths.dtype}")
    if lengths.min() < 1 or lengths.max() > max_len:
        raise ValueError(
            f"every length must be between 1 and the padded length T={max_len}, got {lengths.tolist()}"
        )
    return lengths.long()

