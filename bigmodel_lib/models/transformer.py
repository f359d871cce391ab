"""The encoder-decoder Transformer ("Attention Is All You Need"), layer by layer.

Layers are batch-first
(B, T, C) and use :class:`~bigmodel_lib.models.attention.MultiHeadAttention`;
the tests check each layer against ``nn.TransformerEncoderLayer`` and
``nn.TransformerDecoderLayer`` with copied weights (``load_from_torch``).

Masks follow PyTorch (see :mod:`bigmodel_lib.models.attention`): padding masks
are True at padding tokens. ``fused_attention=True`` (of a layer or :class:`Seq2SeqConfig`) runs every
attention through ``F.scaled_dot_product_attention`` instead of the from-scratch function.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pad_sequence

from bigmodel_lib.devices import evaluation_mode
from bigmodel_lib.metrics import IGNORE_INDEX, check_class_indices
from bigmodel_lib.models.attention import MultiHeadAttention
from bigmodel_lib.models.positional import PositionalEncoding

__all__ = ["EncoderLayer", "DecoderLayer", "Seq2SeqConfig", "Seq2SeqTransformer"]

_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}


class FeedForward(nn.Module):
    """The position-wise feed-forward network FFN(x) = max(0, x W_1 + b_1) W_2 + b_2.

    Applied to every position separately: (B, T, C) -> (B, T, d_ff) -> (B, T, C).
    """

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0, activation: str = "relu"):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"expected activation to be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)
        self.activation = _ACTIVATIONS[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.dropout(self.activation(self.linear1(x))))  # (B, T, C)


def _check_layer_input(x: torch.Tensor, d_model: int, name: str = "x") -> None:
    if x.dim() != 3 or x.size(-1) != d_model:
        raise ValueError(f"expected {name} of shape (B, T, {d_model}) (batch first), got shape {tuple(x.shape)}")


@torch.no_grad()
def _copy_linear(ours: nn.Linear, theirs: nn.Linear) -> None:
    ours.weight.copy_(theirs.weight)
    ours.bias.copy_(theirs.bias)


class EncoderLayer(nn.Module):
    """One encoder layer: self-attention, then feed-forward, each wrapped in a residual and a layer norm.

    Post-norm (the original paper, ``norm_first=False``)::

        x = LayerNorm(x + Dropout(SelfAttention(x)))
        x = LayerNorm(x + Dropout(FFN(x)))

    Pre-norm (``norm_first=True``, GPT-2 and most large models; trains more stably)::

        x = x + Dropout(SelfAttention(LayerNorm(x)))
        x = x + Dropout(FFN(LayerNorm(x)))

    Input and output (B, T, C). Same computation as ``nn.TransformerEncoderLayer(batch_first=True)``;
    :meth:`load_from_torch` copies its weights. ``fused_attention=True``: PyTorch's fused attention kernel
    (see :func:`~bigmodel_lib.models.attention.attend`).

    Introduced in §4.4.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_ff: int,
        dropout: float = 0.1,
        norm_first: bool = False,
        activation: str = "relu",
        layer_norm_eps: float = 1e-5,
        fused_attention: bool = False,
    ):
        super().__init__()
        self.d_model = d_model
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout=dropout, fused_attention=fused_attention)
        self.feed_forward = FeedForward(d_model, d_ff, dropout=dropout, activation=activation)
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def _self_attention(self, x, key_padding_mask, attn_mask):
        return self.dropout1(self.self_attn(x, x, x, key_padding_mask=key_padding_mask, attn_mask=attn_mask))

    def forward(
        self,
        x: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        _check_layer_input(x, self.d_model)
        if self.norm_first:
            x = x + self._self_attention(self.norm1(x), key_padding_mask, attn_mask)
            x = x + self.dropout2(self.feed_forward(self.norm2(x)))
        else:
            x = self.norm1(x + self._self_attention(x, key_padding_mask, attn_mask))
            x = self.norm2(x + self.dropout2(self.feed_forward(x)))
        return x  # (B, T, C)

    @torch.no_grad()
    def load_from_torch(self, layer: nn.TransformerEncoderLayer) -> EncoderLayer:
        """Copy the weights of an ``nn.TransformerEncoderLayer`` (same sizes)."""
        if layer.norm_first != self.norm_first:
            raise ValueError(f"expected a layer with norm_first={self.norm_first}, got norm_first={layer.norm_first}")
        self.self_attn.load_from_torch(layer.self_attn)
        _copy_linear(self.feed_forward.linear1, layer.linear1)
        _copy_linear(self.feed_forward.linear2, layer.linear2)
        self.norm1.load_state_dict(layer.norm1.state_dict())
        self.norm2.load_state_dict(layer.norm2.state_dict())
        return self


class DecoderLayer(nn.Module):
    """One decoder layer: masked self-attention, cross-attention to the encoder output, feed-forward.

    The self-attention is causal: position t sees target positions 0..t only,
    so the decoder can be trained on whole target sequences at once yet never
    looks at the token it must predict. The cross-attention takes its queries
    from the decoder and its keys and values from ``memory``, the encoder's
    output (B, S, C). Post-norm (``norm_first=False``)::

        x = LayerNorm(x + Dropout(MaskedSelfAttention(x)))
        x = LayerNorm(x + Dropout(CrossAttention(x, memory)))
        x = LayerNorm(x + Dropout(FFN(x)))

    and pre-norm (``norm_first=True``) puts each LayerNorm inside the residual
    branch, as in :class:`EncoderLayer`. Input and output (B, T, C). Same
    computation as ``nn.TransformerDecoderLayer(batch_first=True)`` called with
    a causal ``tgt_mask``; ``fused_attention`` as in :class:`EncoderLayer`.

    Introduced in §4.4.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_ff: int,
        dropout: float = 0.1,
        norm_first: bool = False,
        activation: str = "relu",
        layer_norm_eps: float = 1e-5,
        fused_attention: bool = False,
    ):
        super().__init__()
        self.d_model = d_model
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout=dropout, fused_attention=fused_attention)
        self.cross_attn = MultiHeadAttention(d_model, num_heads, dropout=dropout, fused_attention=fused_attention)
        self.feed_forward = FeedForward(d_model, d_ff, dropout=dropout, activation=activation)
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.norm3 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def _masked_self_attention(self, x, tgt_key_padding_mask):
        return self.dropout1(self.self_attn(x, x, x, key_padding_mask=tgt_key_padding_mask, is_causal=True))

    def _cross_attention(self, x, memory, memory_key_padding_mask):
        return self.dropout2(self.cross_attn(x, memory, memory, key_padding_mask=memory_key_padding_mask))

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        memory_key_padding_mask: torch.Tensor | None = None,
        tgt_key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        _check_layer_input(x, self.d_model)
        _check_layer_input(memory, self.d_model, name="memory (the encoder output)")
        if self.norm_first:
            x = x + self._masked_self_attention(self.norm1(x), tgt_key_padding_mask)
            x = x + self._cross_attention(self.norm2(x), memory, memory_key_padding_mask)
            x = x + self.dropout3(self.feed_forward(self.norm3(x)))
        else:
            x = self.norm1(x + self._masked_self_attention(x, tgt_key_padding_mask))
            x = self.norm2(x + self._cross_attention(x, memory, memory_key_padding_mask))
            x = self.norm3(x + self.dropout3(self.feed_forward(x)))
        return x  # (B, T, C)

    @torch.no_grad()
    def load_from_torch(self, layer: nn.TransformerDecoderLayer) -> DecoderLayer:
        """Copy the weights of an ``nn.TransformerDecoderLayer`` (same sizes)."""
        if layer.norm_first != self.norm_first:
            raise ValueError(f"expected a layer with norm_first={self.norm_first}, got norm_first={layer.norm_first}")
        self.self_attn.load_from_torch(layer.self_attn)
        self.cross_attn.load_from_torch(layer.multihead_attn)
        _copy_linear(self.feed_forward.linear1, layer.linear1)
        _copy_linear(self.feed_forward.linear2, layer.linear2)
        for ours, theirs in ((self.norm1, layer.norm1), (self.norm2, layer.norm2), (self.norm3, layer.norm3)):
            ours.load_state_dict(theirs.state_dict())
        return self


# ---------------------------------------------------------------------------
# The encoder-decoder model


@dataclass
class Seq2SeqConfig:
    """Sizes of a :class:`Seq2SeqTransformer`; the defaults run on a laptop CPU.

    Token ids ``pad_id``, ``bos_id`` (begin of sequence) and ``eos_id`` (end)
    are shared by the source and target vocabularies. ``max_len`` bounds the
    source length and the target length including BOS and EOS.
    ``fused_attention`` picks PyTorch's fused attention kernel in every layer (same result).

    Introduced in §4.5.
    """

    src_vocab_size: int = 32
    tgt_vocab_size: int = 32
    d_model: int = 128
    num_heads: int = 4
    num_encoder_layers: int = 2
    num_decoder_layers: int = 2
    d_ff: int = 512
    dropout: float = 0.1
    max_len: int = 64
    norm_first: bool = True
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    fused_attention: bool = False  # F.scaled_dot_product_attention, else the from-scratch function


class Seq2SeqTransformer(nn.Module):
    """Encoder-decoder Transformer: maps a source sequence to a target sequence (e.g. spelling to pronunciation).

    ``forward(src, tgt_in, targets=None)`` takes source ids (B, S) and the
    target shifted right, ``tgt_in`` = [BOS, y_1, ..., y_{n-1}] (B, T), and
    returns logits (B, T, tgt_vocab_size) for y_1..y_n and, given ``targets``,
    the cross-entropy loss in float32 over the targets that are not
    ``IGNORE_INDEX`` (-100: pad ``targets`` with it, and the inputs with ``pad_id``). :meth:`greedy_decode` and
    :meth:`beam_search` generate targets for new sources.

    Introduced in §4.5.
    """

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        self.config = config
        c = config
        self.src_embed = nn.Embedding(c.src_vocab_size, c.d_model)
        self.tgt_embed = nn.Embedding(c.tgt_vocab_size, c.d_model)
        self.pos_encoding = PositionalEncoding(c.d_model, max_len=c.max_len, dropout=c.dropout)
        layer_args = dict(d_model=c.d_model, num_heads=c.num_heads, d_ff=c.d_ff, dropout=c.dropout,
                          norm_first=c.norm_first, fused_attention=c.fused_attention)
        self.encoder_layers = nn.ModuleList(EncoderLayer(**layer_args) for _ in range(c.num_encoder_layers))
        self.decoder_layers = nn.ModuleList(DecoderLayer(**layer_args) for _ in range(c.num_decoder_layers))
        # Pre-norm layers leave their output un-normalised, so a final LayerNorm follows each stack.
        self.encoder_norm = nn.LayerNorm(c.d_model) if c.norm_first else nn.Identity()
        self.decoder_norm = nn.LayerNorm(c.d_model) if c.norm_first else nn.Identity()
        self.lm_head = nn.Linear(c.d_model, c.tgt_vocab_size)  # the output layer: hidden state -> token logits
        # Embeddings are multiplied by sqrt(d_model) below (as in the paper), so start them
        # at std 1/sqrt(d_model): token and position vectors then have similar sizes.
        for embedding in (self.src_embed, self.tgt_embed):
            nn.init.normal_(embedding.weight, mean=0.0, std=c.d_model**-0.5)

    def _check_ids(self, ids: torch.Tensor, name: str, vocab_size: int) -> None:
        if ids.dim() != 2 or ids.dtype not in (torch.long, torch.int32):
            raise ValueError(
                f"expected {name} token ids of shape (B, T) and an integer dtype, got shape {tuple(ids.shape)} "
                f"and dtype {ids.dtype}"
            )
        check_class_indices(ids, vocab_size, "Seq2SeqTransformer", name=f"{name} token ids")

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Source ids (B, S) -> memory (B, S, C) and the source padding mask (B, S)."""
        self._check_ids(src, "src", self.config.src_vocab_size)
        src_padding = src == self.config.pad_id  # (B, S), True = padding
        x = self.pos_encoding(self.src_embed(src) * math.sqrt(self.config.d_model))  # (B, S, C)
        for layer in self.encoder_layers:
            x = layer(x, key_padding_mask=src_padding)
        return self.encoder_norm(x), src_padding

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor, src_padding: torch.Tensor) -> torch.Tensor:
        """Shifted target ids (B, T) and memory (B, S, C) -> logits (B, T, tgt_vocab_size)."""
        self._check_ids(tgt_in, "tgt_in", self.config.tgt_vocab_size)
        x = self.pos_encoding(self.tgt_embed(tgt_in) * math.sqrt(self.config.d_model))  # (B, T, C)
        # Target padding only ever follows EOS, and the causal mask already hides
        # later positions from every real token, so no target padding mask is needed.
        for layer in self.decoder_layers:
            x = layer(x, memory, memory_key_padding_mask=src_padding)
        return self.lm_head(self.decoder_norm(x))  # (B, T, V)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor, targets: torch.Tensor | None = None):
        memory, src_padding = self.encode(src)
        logits = self.decode(tgt_in, memory, src_padding)  # (B, T, V)
        loss = None
        if targets is not None:
            if targets.shape != tgt_in.shape:
                raise ValueError(
                    f"expected targets of the same shape as tgt_in {tuple(tgt_in.shape)}, got {tuple(targets.shape)}"
                )
            check_class_indices(
                targets, self.config.tgt_vocab_size, "Seq2SeqTransformer", "targets", ignore_index=IGNORE_INDEX
            )
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX)
        return logits, loss

    @torch.no_grad()
    def greedy_decode(self, src: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
        """Generate by taking the most likely next token each step.

        Returns ids (B, L): each row starts with BOS, stops at its first EOS
        and is padded with ``pad_id`` after it (L <= ``max_len``, default
        ``config.max_len``). Runs in eval mode.
        """
        with evaluation_mode(self):  # no dropout; the caller's mode is restored afterwards
            c = self.config
            max_len = c.max_len if max_len is None else max_len
            memory, src_padding = self.encode(src)
            B = src.size(0)
            ys = torch.full((B, 1), c.bos_id, dtype=torch.long, device=src.device)  # (B, 1)
            done = torch.zeros(B, dtype=torch.bool, device=src.device)
            for _ in range(max_len - 1):
                logits = self.decode(ys, memory, src_padding)[:, -1]  # (B, V): the last position predicts
                next_token = logits.argmax(dim=-1).masked_fill(done, c.pad_id)  # (B,)
                ys = torch.cat([ys, next_token[:, None]], dim=1)  # (B, t+1)
                done |= next_token == c.eos_id
                if done.all():
                    break
            return ys

    @torch.no_grad()
    def beam_search(
        self, src: torch.Tensor, beam_size: int = 4, max_len: int | None = None, length_penalty: float = 0.0
    ) -> torch.Tensor:
        """Generate by keeping the ``beam_size`` most likely partial targets each step.

        A hypothesis's score is the sum of its tokens' log-probabilities,
        divided by (number of generated tokens) ** ``length_penalty`` when
        finished hypotheses are compared (0 = no normalisation, which favours
        short outputs). The search for one source stops once ``beam_size``
        hypotheses have ended with EOS, or at ``max_len``. Returns the best
        hypothesis per source in the format of :meth:`greedy_decode`; with
        ``beam_size=1`` it is greedy decoding.
        """
        with evaluation_mode(self):  # no dropout; the caller's mode is restored afterwards
            if beam_size < 1:
                raise ValueError(f"expected beam_size >= 1, got {beam_size}")
            max_len = self.config.max_len if max_len is None else max_len
            self._check_ids(src, "src", self.config.src_vocab_size)
            best = [self._beam_search_one(src[b : b + 1], beam_size, max_len, length_penalty) for b in range(src.size(0))]
            return pad_sequence(best, batch_first=True, padding_value=self.config.pad_id)

    def _beam_search_one(self, src: torch.Tensor, beam_size: int, max_len: int, length_penalty: float) -> torch.Tensor:
        c = self.config
        memory, src_padding = self.encode(src)  # (1, S, C), (1, S)
        beams = torch.full((1, 1), c.bos_id, dtype=torch.long, device=src.device)  # (k, t) live hypotheses
        scores = torch.zeros(1, device=src.device)  # (k,) their summed log-probabilities
        finished = []  # (normalised score, ids) of hypotheses that ended with EOS

        def normalised(score: float, ids: torch.Tensor) -> float:
            return score / (ids.size(0) - 1) ** length_penalty  # ids.size(0) - 1 generated tokens

        for _ in range(max_len - 1):
            k = beams.size(0)
            logits = self.decode(beams, memory.expand(k, -1, -1), src_padding.expand(k, -1))[:, -1]  # (k, V)
            candidates = (scores[:, None] + logits.log_softmax(dim=-1)).flatten()  # (k * V,)
            # 2 * beam_size candidates leave beam_size live ones even if up to beam_size of them end here.
            top_scores, top_ids = candidates.topk(min(2 * beam_size, candidates.numel()))
            live, live_scores = [], []
            for score, index in zip(top_scores.tolist(), top_ids.tolist()):
                beam, token = divmod(index, c.tgt_vocab_size)
                ids = torch.cat([beams[beam], beams.new_tensor([token])])  # (t+1,)
                if token == c.eos_id:
                    finished.append((normalised(score, ids), ids))
                else:
                    live.append(ids)
                    live_scores.append(score)
                if len(live) == beam_size:
                    break
            if len(finished) >= beam_size or not live:
                break
            beams, scores = torch.stack(live), scores.new_tensor(live_scores)  # (k, t+1), (k,)
        else:  # max_len reached: unfinished hypotheses compete too
            finished += [(normalised(s, ids), ids) for s, ids in zip(scores.tolist(), beams)]
        return max(finished, key=lambda f: f[0])[1]
