"""The source articles' Transformers, corrected.

The published listings and the defects met by running them are in
:mod:`bigmodel_lib.articles`.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from bigmodel_lib.metrics import check_class_indices
from bigmodel_lib.models.positional import PositionalEncoding

__all__ = ["CorrectedTransformer000", "CorrectedTransformer001"]


def _check_heads(hidden_size: int, num_heads: int) -> None:
    if hidden_size % num_heads != 0:
        raise ValueError(
            f"expected hidden_size divisible by num_heads, got hidden_size={hidden_size} and num_heads={num_heads}"
        )


class CorrectedTransformer000(nn.Module):
    """Article 000's encoder-decoder Transformer, corrected.

    The article's section 4.3 builds an embedding, a sinusoidal positional
    encoding, an ``nn.TransformerEncoderLayer``, an ``nn.TransformerDecoderLayer``
    and an output layer over the vocabulary, with ``input_size=10`` (the
    vocabulary) and ``hidden_size=8``. Run as published (torch 2.14), in the
    order the errors appear (``defects("000", "transformer")``, each fixed before the next):

    1. ``self.positional_encoding(hidden_size)`` calls a method that is never
       defined: ``AttributeError: 'Transformer' object has no attribute
       'positional_encoding'`` at construction.
    2. ``nhead=8`` is hard-coded and ``num_layers`` cannot change it. With
       ``hidden_size=8`` each head has head size 1: its query and key are single
       numbers, so each head's attention can only rank keys by one scalar.
       Any width not divisible by 8 crashes: ``Transformer(input_size=10,
       hidden_size=50, num_layers=2)`` raises ``AssertionError: embed_dim must
       be divisible by num_heads``.
    3. ``math.sqrt`` is used but ``math`` is never imported: ``NameError: name
       'math' is not defined`` on the first forward pass.
    4. ``self.pos_encoding[:src.size(0), :]`` slices the table by ``src.size(0)``,
       the batch size B of the batch-first input (the ``transpose(0, 1)`` that
       follows shows the input is (B, T)); the input layouts are confused.
       Broadcasting lines the (B, C) slice up with the time axis of (B, T, C),
       so for B=4, T=6: ``RuntimeError: The size of tensor a (6) must match the
       size of tensor b (4) at non-singleton dimension 1``. It runs silently
       wrong when B == 1 (every token gets position 0's vector, so the model
       has no notion of order) and correct by accident when B == T.
    5. ``self.encoder(src, src)`` passes the input as the second argument,
       which is ``src_mask``: ``RuntimeError: The shape of the 3D attn_mask is
       torch.Size([6, 4, 8]), but should be (8, 6, 6).`` (for B=4, T=6, 2 heads
       after fix 2; the published 8 heads expect (32, 6, 6)).

    With those five fixed the snippet runs, and computes the wrong thing:

    6. ``self.fc(output[0])``: the layers are sequence-first, so ``output[0]``
       is time step 0 of every sequence. ``net(x)`` for x of shape (4, 6)
       returns shape (4, 10): logits for time step 0 only, not (4, 6, 10).
    7. ``self.decoder(output, output)`` feeds the decoder its own input as
       ``memory``: there is no target sequence, no causal ``tgt_mask``, so the
       "decoder" is a second encoder layer and sees the future: changing the
       last token changes the output at time step 0, so it cannot be trained
       to generate.
    8. ``num_layers`` is stored but unused: ``Transformer(num_layers=2)`` has
       1 encoder layer and 1 decoder layer.
    9. ``self.pos_encoding`` is a plain tensor attribute, not a registered
       buffer: it is not in ``named_buffers()`` or the state dict and stays in
       float32 on the CPU when the model moves. ``net.to(torch.bfloat16)``
       then fails with ``RuntimeError: expected m1 and m2 to have the same
       dtype, but got: float != c10::BFloat16``; ``net.to("cuda")`` likewise
       leaves the table on the CPU (a device-mismatch error; not run here).

    (``math.sqrt(torch.tensor(self.hidden_size).float())`` works, since a
    one-element tensor converts to a float, and gives the paper's sqrt(d_model).)

    The correction keeps the sizes, the sinusoidal encoding and PyTorch's
    encoder and decoder layers, and makes it a real encoder-decoder:
    ``forward(src, tgt_in)`` takes source ids (B, S) and the target shifted
    right (B, T) and returns logits (B, T, input_size) for every target
    position. ``num_layers`` layers are stacked, ``num_heads`` is an argument
    (default 2: head size 4), the decoder attends to the encoder output with a
    causal mask on its own input, the position table is a buffer sized by
    ``max_len``, and everything is batch-first. The feed-forward width is
    4 x ``hidden_size`` (PyTorch's default 2048 would be 256 x).

    Introduced in §4.7.
    """

    def __init__(
        self,
        input_size: int = 10,
        hidden_size: int = 8,
        num_layers: int = 2,
        num_heads: int = 2,
        dropout: float = 0.1,
        max_len: int = 512,
    ):
        super().__init__()
        _check_heads(hidden_size, num_heads)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.embedding = nn.Embedding(input_size, hidden_size)  # shared by source and target (one vocabulary)
        self.pos_encoding = PositionalEncoding(hidden_size, max_len=max_len, dropout=dropout)
        self.encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(hidden_size, num_heads, 4 * hidden_size, dropout, batch_first=True),
            num_layers,
            enable_nested_tensor=False,
        )
        self.decoder = nn.TransformerDecoder(
            nn.TransformerDecoderLayer(hidden_size, num_heads, 4 * hidden_size, dropout, batch_first=True),
            num_layers,
        )
        self.fc = nn.Linear(hidden_size, input_size)
        # The embeddings are multiplied by sqrt(hidden_size): start them at std 1/sqrt(hidden_size)
        # so that tokens do not drown the positions (nn.Embedding's default std is 1).
        nn.init.normal_(self.embedding.weight, std=hidden_size**-0.5)

    def _embed(self, ids: torch.Tensor, name: str) -> torch.Tensor:
        if ids.dim() != 2:
            raise ValueError(f"expected {name} token ids of shape (B, T) (batch first), got shape {tuple(ids.shape)}")
        check_class_indices(ids, self.input_size, "CorrectedTransformer000", name=f"{name} token ids")
        return self.pos_encoding(self.embedding(ids) * math.sqrt(self.hidden_size))  # (B, T, C)

    def forward(
        self,
        src: torch.Tensor,
        tgt_in: torch.Tensor,
        src_key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        memory = self.encoder(self._embed(src, "src"), src_key_padding_mask=src_key_padding_mask)  # (B, S, C)
        T = tgt_in.size(-1)
        # (T, T), True above the diagonal: in PyTorch's modules a True mask entry means "may NOT attend".
        causal = torch.ones(T, T, dtype=torch.bool, device=tgt_in.device).triu(diagonal=1)
        output = self.decoder(
            self._embed(tgt_in, "tgt_in"),
            memory,
            tgt_mask=causal,
            tgt_is_causal=True,
            memory_key_padding_mask=src_key_padding_mask,
        )  # (B, T, C)
        return self.fc(output)  # (B, T, input_size)


class CorrectedTransformer001(nn.Module):
    """Article 001's encoder-only Transformer, corrected.

    The article's section 1.5.3 builds a token embedding, a learned position
    embedding, ``num_layers`` ``nn.TransformerEncoderLayer`` in an
    ``nn.ModuleList`` and an output layer over the vocabulary: a model that
    predicts one token per input position (``input_size=10`` tokens,
    ``hidden_size=50``, 2 layers, 2 heads, dropout 0.1), trained with
    ``CrossEntropyLoss`` and Adam. Run as published (torch 2.14), in the order
    the errors appear (``defects("001", "transformer")``, each fixed before the next;
    the batches are 4 sequences of 6 tokens):

    1. ``nn.TransformerEncoderLayer(hidden_size, num_heads, dropout)``: the
       third positional parameter is ``dim_feedforward``, so the feed-forward
       layer gets width 0.1: ``TypeError: empty(): argument 'size' (position 1)
       must be tuple of ints, but found element of type float at pos 0`` at
       construction (PyTorch 2.11 says ``empty() received an invalid combination
       of arguments``). (Passing ``dropout=dropout`` leaves PyTorch's default
       ``dim_feedforward=2048``, 41 x the width of 50.)
    2. The training loop uses ``train_loader``, which is never defined:
       ``NameError: name 'train_loader' is not defined``.
    3. ``math.sqrt`` is used but ``math`` is never imported: ``NameError: name
       'math' is not defined``.
    4. ``self.layers(src, src_mask)`` calls the ``nn.ModuleList`` as if it were a
       module; a ModuleList only holds layers: ``NotImplementedError: Module
       [ModuleList] is missing the required "forward" function``.
    5. ``src_mask`` is a ``torch.long`` tensor of zeros: ``AssertionError: only
       bool and floating types of src_mask are supported``.
    6. Its shape is the input's (B, T), not an attention mask's (T, T) (nor is
       it passed as ``src_key_padding_mask``), and zeros would mask nothing
       anyway: ``RuntimeError: The shape of the 2D attn_mask is
       torch.Size([4, 6]), but should be (6, 6).``
    7. ``src = self.position_encoding(...)`` overwrites the token embeddings
       with the position embeddings, so the output does not depend on the input
       at all: two different random batches give exactly the same output.
    8. ``src + src.unsqueeze(1)`` then adds (T, C) and (T, 1, C), which
       broadcasts to (T, T, C): the batch dimension is gone, the output has
       shape (6, 6, 10) for a batch of 4, and the loss fails with
       ``ValueError: Expected input batch_size (6) to match target batch_size (4).``
    9. ``criterion(output, target)`` gives ``CrossEntropyLoss`` logits of shape
       (B, T, V), but it expects the classes in dimension 1: ``RuntimeError:
       Expected target size [4, 10], got [4, 6]``.

    With those fixed the snippet trains, and computes the wrong thing:

    10. The layers are sequence-first (``batch_first=False``, the default) but
        the data is batch-first (B, T): each layer attends across the 4
        sequences of a batch at one time step instead of across the 6 time
        steps of a sequence: changing sequence 1 changes the output for
        sequence 0, while changing the last token of sequence 0 leaves its
        first output unchanged.
    11. The embeddings are scaled by ``sqrt(hidden_size // num_heads)``: the
        factor is sqrt(50 // 2) = 5.0 instead of sqrt(50) = 7.07, confusing the
        paper's sqrt(d_model) embedding scale with the sqrt(d_k) of attention.
    12. The position table is ``nn.Embedding(input_size, hidden_size)``, sized
        by the vocabulary (10) instead of a maximum length, so a sequence of 11
        tokens fails: ``IndexError: index out of range in self``.

    (``math.sqrt`` of an integer tensor works: a one-element tensor converts
    to a float. The ``dropout`` argument is stored and, after fix 1, used.)

    The correction keeps the sizes, the learned position embedding, the
    ``nn.ModuleList`` of ``nn.TransformerEncoderLayer`` and the output layer:
    the layers are batch-first with ``dropout=dropout`` and a feed-forward
    width of 4 x ``hidden_size``, the loop runs them one after the other, the
    token and position embeddings are added (the tokens scaled by
    sqrt(hidden_size)), the position table has ``max_len`` rows, and an
    optional boolean ``src_key_padding_mask`` (B, T) (True = padding) replaces
    the broken mask. ``forward(src)`` maps (B, T) ids to logits (B, T, input_size).

    Introduced in §4.7.
    """

    def __init__(
        self,
        input_size: int = 10,
        hidden_size: int = 50,
        num_layers: int = 2,
        num_heads: int = 2,
        dropout: float = 0.1,
        max_len: int = 64,
    ):
        super().__init__()
        _check_heads(hidden_size, num_heads)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.dropout = dropout
        self.max_len = max_len
        self.embedding = nn.Embedding(input_size, hidden_size)
        self.position_encoding = nn.Embedding(max_len, hidden_size)
        self.layers = nn.ModuleList(
            [
                nn.TransformerEncoderLayer(hidden_size, num_heads, 4 * hidden_size, dropout=dropout, batch_first=True)
                for _ in range(num_layers)
            ]
        )
        self.output = nn.Linear(hidden_size, input_size)
        # Tokens are multiplied by sqrt(hidden_size): start them at std 1/sqrt(hidden_size), the size
        # of the position vectors after scaling (nn.Embedding's default std is 1 for both).
        nn.init.normal_(self.embedding.weight, std=hidden_size**-0.5)

    def forward(self, src: torch.Tensor, src_key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        if src.dim() != 2:
            raise ValueError(f"expected src token ids of shape (B, T) (batch first), got shape {tuple(src.shape)}")
        if src.size(1) > self.max_len:
            raise ValueError(
                f"expected a sequence of at most max_len={self.max_len} tokens (the size of the position table), "
                f"got T={src.size(1)}"
            )
        check_class_indices(src, self.input_size, "CorrectedTransformer001", name="src token ids")
        positions = torch.arange(src.size(1), device=src.device)  # (T,)
        x = self.embedding(src) * math.sqrt(self.hidden_size) + self.position_encoding(positions)  # (B, T, C)
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=src_key_padding_mask)  # (B, T, C)
        return self.output(x)  # (B, T, input_size)
