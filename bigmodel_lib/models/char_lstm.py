"""A character-level language model on ``nn.LSTM`` (chapter 3, section 3.4).

Built on PyTorch's ``nn.LSTM`` so that a GPU uses cuDNN's fused kernels; the
from-scratch cells of :mod:`bigmodel_lib.models.rnn` are for understanding.
Shapes: ``B`` batch, ``T`` time steps, ``V`` vocabulary size, ``H`` hidden size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from bigmodel_lib.devices import evaluation_mode

__all__ = ["CharLSTM"]


class CharLSTM(nn.Module):
    """A character-level language model: embedding -> LSTM -> next-character logits.

    ``forward(idx, state=None)``: ``idx`` (B, T) character ids in
    ``[0, vocab_size)``; returns ``(logits, state)`` with logits (B, T, V), the
    prediction of the character after each position, and the LSTM state
    ``(h, c)`` (L, B, H) each, to continue from. Uses ``nn.LSTM`` (cuDNN on a
    GPU); :class:`LSTM` is the same computation written out.

    Introduced in §3.4.
    """

    def __init__(self, vocab_size: int, embedding_dim: int = 32, hidden_size: int = 128, num_layers: int = 1):
        super().__init__()
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.lstm = nn.LSTM(embedding_dim, hidden_size, num_layers, batch_first=True)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(
        self, idx: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        if idx.dim() != 2 or idx.is_floating_point():
            hint = " (a single sequence? use idx.unsqueeze(0))" if idx.dim() == 1 else ""
            raise ValueError(
                f"CharLSTM expects integer character ids of shape (B, T), got {idx.dtype} "
                f"of shape {tuple(idx.shape)}{hint}"
            )
        if idx.numel() and (idx.min() < 0 or idx.max() >= self.vocab_size):
            raise ValueError(
                f"character ids must be in [0, {self.vocab_size}), got ids from "
                f"{idx.min().item()} to {idx.max().item()}"
            )
        emb = self.embedding(idx)  # (B, T, E)
        out, state = self.lstm(emb, state)  # (B, T, H)
        return self.head(out), state  # (B, T, V)

    @torch.no_grad()
    def generate(
        self,
        start: Sequence[int] | torch.Tensor,
        length: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> list[int]:
        """Continue ``start`` (character ids) by ``length`` sampled characters.

        Samples from ``softmax(logits / temperature)``: below 1 sharper, above 1
        flatter; ``temperature=0`` picks the most likely character every time.
        Randomness comes from ``generator`` (a CPU ``torch.Generator``: sampling
        runs on the CPU) if given, else from the global seed,
        so ``torch.manual_seed(s)`` makes a run repeatable. Returns the ids of
        ``start`` followed by the new ones. The model is put in eval mode for
        the call and restored afterwards.
        """
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        device = self.head.weight.device
        ids = torch.as_tensor(list(start) if not torch.is_tensor(start) else start, dtype=torch.long)
        if ids.dim() != 1 or ids.numel() == 0:
            raise ValueError(f"start must be a non-empty 1-D sequence of character ids, got shape {tuple(ids.shape)}")
        with evaluation_mode(self):  # no dropout; the caller's mode is restored afterwards
            result = ids.tolist()
            logits, state = self(ids.to(device).unsqueeze(0))  # read the whole prompt: (1, T, V)
            for _ in range(length):
                last = logits[0, -1]  # (V,)
                if temperature == 0:
                    next_id = int(last.argmax())
                else:
                    probs = F.softmax(last / temperature, dim=-1)
                    next_id = int(torch.multinomial(probs.cpu(), 1, generator=generator))
                result.append(next_id)
                logits, state = self(torch.tensor([[next_id]], device=device), state)  # one step: (1, 1, V)
        return result
