"""Attention: scaled dot-product attention, masks and multi-head attention.

Every function here is written from the formula;
the tests check each one against PyTorch's own implementation.

Shapes use one notation: B batch, T (Tq, Tk) sequence length, C model width
(``d_model``), nh number of heads, hs head size (``C // nh``).

Two kinds of boolean mask, with PyTorch's meaning of True in each:

* an **attention mask** ``attn_mask`` says which keys a query *may* attend to:
  True = attend (as in ``F.scaled_dot_product_attention``). Shape (Tq, Tk) or
  anything that broadcasts to (B, nh, Tq, Tk).
* a **padding mask** ``key_padding_mask`` marks the padding tokens of each
  sequence: True = padding, ignore this key (as in ``nn.MultiheadAttention``).
  Shape (B, Tk). :func:`padding_mask` builds one from sequence lengths.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "causal_mask",
    "padding_mask",
    "attention_weights",
    "scaled_dot_product_attention",
    "attend",
    "MultiHeadAttention",
]


# ---------------------------------------------------------------------------
# Masks


def causal_mask(size: int, key_size: int | None = None, device=None) -> torch.Tensor:
    """The causal (look-ahead) attention mask: query t may attend to keys 0..t.

    Returns a boolean (size, key_size) tensor, True on and below the diagonal,
    i.e. True = may attend. ``key_size`` defaults to ``size``; when it differs
    the mask is aligned at the top left, as ``F.scaled_dot_product_attention(is_causal=True)``
    does.

    Introduced in §4.1.
    """
    key_size = size if key_size is None else key_size
    return torch.ones(size, key_size, dtype=torch.bool, device=device).tril()


def padding_mask(lengths, max_len: int | None = None) -> torch.Tensor:
    """A key padding mask from sequence lengths: True where a position is padding.

    ``lengths`` holds the true length of each sequence of a padded batch; the
    result has shape (B, max_len), row b is False for the first ``lengths[b]``
    positions and True after them.

    Introduced in §4.1.
    """
    lengths = torch.as_tensor(lengths)
    if lengths.dim() != 1:
        raise ValueError(f"expected lengths of shape (B,), got shape {tuple(lengths.shape)}")
    max_len = int(lengths.max()) if max_len is None else max_len
    if int(lengths.max()) > max_len:
        raise ValueError(f"expected lengths of at most max_len={max_len}, got a length of {int(lengths.max())}")
    positions = torch.arange(max_len, device=lengths.device)  # (T,)
    return positions[None, :] >= lengths[:, None]  # (B, T)


def _check_qkv(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> None:
    for name, t in (("query", query), ("key", key), ("value", value)):
        if t.dim() < 2:
            raise ValueError(
                f"expected {name} of shape (..., T, d) with at least 2 dimensions, got shape {tuple(t.shape)}"
            )
    if query.size(-1) != key.size(-1):
        raise ValueError(
            f"expected query and key with the same last dimension d_k, got query {tuple(query.shape)} "
            f"and key {tuple(key.shape)}"
        )
    if key.size(-2) != value.size(-2):
        raise ValueError(
            f"expected key and value with the same length Tk, got key {tuple(key.shape)} and value {tuple(value.shape)}"
        )


def _check_attn_mask(attn_mask: torch.Tensor, scores_shape: torch.Size) -> None:
    if not isinstance(attn_mask, torch.Tensor) or attn_mask.dtype != torch.bool:
        got = attn_mask.dtype if isinstance(attn_mask, torch.Tensor) else type(attn_mask).__name__
        raise ValueError(f"expected attn_mask of dtype torch.bool (True = may attend), got {got}")
    try:
        ok = torch.broadcast_shapes(attn_mask.shape, scores_shape) == scores_shape
    except RuntimeError:
        ok = False
    if not ok:
        Tq, Tk = scores_shape[-2:]
        raise ValueError(
            f"expected attn_mask of shape ({Tq}, {Tk}) or one that broadcasts to the scores' shape "
            f"{tuple(scores_shape)}, got shape {tuple(attn_mask.shape)}"
        )


# ---------------------------------------------------------------------------
# Scaled dot-product attention


def attention_weights(
    query: torch.Tensor,
    key: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    is_causal: bool = False,
) -> torch.Tensor:
    """The attention weights softmax(Q K^T / sqrt(d_k)), each row summing to 1.

    ``query`` (..., Tq, d_k) and ``key`` (..., Tk, d_k) give weights (..., Tq, Tk).
    Masked keys (``attn_mask`` False, or later positions when ``is_causal``)
    get weight 0. A query that may attend to no key at all gets a row of zeros
    rather than NaN, as in ``F.scaled_dot_product_attention``.

    Introduced in §4.1.
    """
    if query.size(-1) != key.size(-1):
        raise ValueError(
            f"expected query and key with the same last dimension d_k, got query {tuple(query.shape)} "
            f"and key {tuple(key.shape)}"
        )
    d_k = query.size(-1)
    # The (Tq, Tk) matrix is the big one: scale and mask it in place (``div_``, ``masked_fill_``) rather
    # than make a new copy at each step: the same numbers, a third less memory at T = 2048 (section 4.1).
    scores = query @ key.transpose(-2, -1)  # (..., Tq, Tk)
    scores.div_(math.sqrt(d_k))
    allowed = None
    if attn_mask is not None:
        _check_attn_mask(attn_mask, scores.shape)
        allowed = attn_mask
    if is_causal:
        causal = causal_mask(scores.size(-2), scores.size(-1), device=scores.device)  # (Tq, Tk)
        allowed = causal if allowed is None else allowed & causal
    if allowed is None:
        return torch.softmax(scores, dim=-1)
    scores.masked_fill_(~allowed, float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # a row of only -inf gives NaN here ...
    if attn_mask is None:  # (a causal row always keeps key 0)
        return weights
    return weights.masked_fill(~allowed.any(dim=-1, keepdim=True), 0.0)  # ... which we set to 0


def scaled_dot_product_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V, written from the formula.

    ``query`` (..., Tq, d_k), ``key`` (..., Tk, d_k) and ``value`` (..., Tk, d_v)
    give (..., Tq, d_v): each output row is a weighted average of the value rows.
    ``attn_mask`` is boolean, True = may attend, broadcasting to (..., Tq, Tk);
    ``is_causal`` adds the look-ahead mask. Same arguments and result as
    ``F.scaled_dot_product_attention`` (the fused version the GPT uses).

    Introduced in §4.1.
    """
    _check_qkv(query, key, value)
    weights = attention_weights(query, key, attn_mask=attn_mask, is_causal=is_causal)  # (..., Tq, Tk)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ value  # (..., Tq, d_v)


def attend(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
    fused_attention: bool = False,
) -> torch.Tensor:
    """Attention of every head at once, from scratch or with PyTorch's fused kernel: the one place that chooses.

    ``query`` (B, nh, Tq, hs), ``key`` (B, nh, Tk, hs), ``value`` (B, nh, Tk, hs)
    give (B, nh, Tq, hs) (other leading dimensions work too). ``attn_mask`` is
    boolean, True = may attend, broadcasting to (B, nh, Tq, Tk); ``is_causal``
    adds the look-ahead mask (with a mask too, a key must be allowed by both).
    ``fused_attention=False`` runs :func:`scaled_dot_product_attention`, which
    the reader can step through; True runs ``F.scaled_dot_product_attention``,
    which can pick a fused kernel (FlashAttention and the like) that never
    stores the (Tq, Tk) weights. Without dropout both give the same result (the
    tests check it); wrong shapes or mask dtypes raise ``ValueError`` on both.
    The GPT of section 4.6 uses it too.

    Introduced in §4.1.
    """
    if not fused_attention:
        return scaled_dot_product_attention(query, key, value, attn_mask, is_causal=is_causal, dropout_p=dropout_p)
    _check_qkv(query, key, value)
    if attn_mask is not None:
        Tq, Tk = query.size(-2), key.size(-2)
        batch = torch.broadcast_shapes(query.shape[:-2], key.shape[:-2])
        _check_attn_mask(attn_mask, torch.Size((*batch, Tq, Tk)))
        if is_causal:  # the fused call takes a mask or is_causal, not both
            attn_mask, is_causal = attn_mask & causal_mask(Tq, Tk, device=query.device), False
    y = F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal)
    return y  # (B, nh, Tq, hs)


# ---------------------------------------------------------------------------
# Multi-head attention


class MultiHeadAttention(nn.Module):
    """MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O, head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V).

    The h heads' projections W_i^Q are stored side by side in one (C, C) linear
    layer ``w_q`` (likewise ``w_k``, ``w_v``), so each head works in a
    ``head_size = d_model // num_heads`` dimensional subspace. Inputs and output
    are batch-first (B, T, C). ``key_padding_mask`` (B, Tk) is True at padding
    keys; ``attn_mask`` (Tq, Tk) or (B, nh, Tq, Tk) is True where attention is
    allowed (see the module docstring). Set ``fused_attention=True`` to compute
    the attention with ``F.scaled_dot_product_attention`` instead of the
    from-scratch function (see :func:`attend`). :meth:`load_from_torch` copies
    the weights of an ``nn.MultiheadAttention``.

    Introduced in §4.2.
    """

    def __init__(
        self, d_model: int, num_heads: int, dropout: float = 0.0, bias: bool = True, fused_attention: bool = False
    ):
        super().__init__()
        if d_model % num_heads != 0:
            raise ValueError(
                f"expected d_model divisible by num_heads, got d_model={d_model} and num_heads={num_heads} "
                f"({d_model} / {num_heads} = {d_model / num_heads:.2f} is not a whole head size)"
            )
        self.d_model = d_model
        self.num_heads = num_heads
        self.head_size = d_model // num_heads
        self.dropout = dropout
        self.fused_attention = fused_attention
        self.w_q = nn.Linear(d_model, d_model, bias=bias)
        self.w_k = nn.Linear(d_model, d_model, bias=bias)
        self.w_v = nn.Linear(d_model, d_model, bias=bias)
        self.w_o = nn.Linear(d_model, d_model, bias=bias)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        return x.view(B, T, self.num_heads, self.head_size).transpose(1, 2)  # (B, nh, T, hs)

    def _check_inputs(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor | None = None) -> None:
        named = [("query", query), ("key", key)] + ([("value", value)] if value is not None else [])
        for name, t in named:
            if t.dim() != 3 or t.size(-1) != self.d_model:
                raise ValueError(
                    f"expected {name} of shape (B, T, {self.d_model}) (batch first, d_model={self.d_model}), "
                    f"got shape {tuple(t.shape)}"
                )
        if key.size(0) != query.size(0) or (value is not None and key.shape != value.shape):
            raise ValueError(
                f"expected key and value of the same shape ({query.size(0)}, Tk, {self.d_model}), "
                f"got key {tuple(key.shape)} and value {tuple(value.shape if value is not None else key.shape)}"
            )

    def _combined_mask(self, B: int, Tq: int, Tk: int, key_padding_mask, attn_mask) -> torch.Tensor | None:
        """One boolean mask (True = may attend) broadcasting to (B, nh, Tq, Tk), or None."""
        mask = None
        if key_padding_mask is not None:
            if key_padding_mask.dtype != torch.bool or key_padding_mask.shape != (B, Tk):
                raise ValueError(
                    f"expected key_padding_mask of shape ({B}, {Tk}) and dtype torch.bool (True = padding), "
                    f"got shape {tuple(key_padding_mask.shape)} and dtype {key_padding_mask.dtype}"
                )
            mask = ~key_padding_mask[:, None, None, :]  # (B, 1, 1, Tk)
        if attn_mask is not None:
            _check_attn_mask(attn_mask, torch.Size((B, self.num_heads, Tq, Tk)))
            mask = attn_mask if mask is None else mask & attn_mask
        return mask

    def attention_weights(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
    ) -> torch.Tensor:
        """The weights (B, nh, Tq, Tk) of every head that ``forward`` with the same arguments uses.

        Takes ``forward``'s arguments (``value`` is accepted and not needed), so
        :func:`bigmodel_lib.probes.record_attention` can recompute the weights
        of any call.
        """
        self._check_inputs(query, key)
        mask = self._combined_mask(query.size(0), query.size(1), key.size(1), key_padding_mask, attn_mask)
        q = self._split_heads(self.w_q(query))  # (B, nh, Tq, hs)
        k = self._split_heads(self.w_k(key))  # (B, nh, Tk, hs)
        return attention_weights(q, k, attn_mask=mask, is_causal=is_causal)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
    ) -> torch.Tensor:
        self._check_inputs(query, key, value)
        B, Tq, C = query.shape
        Tk = key.size(1)
        mask = self._combined_mask(B, Tq, Tk, key_padding_mask, attn_mask)  # True = may attend

        q = self._split_heads(self.w_q(query))  # (B, nh, Tq, hs)
        k = self._split_heads(self.w_k(key))  # (B, nh, Tk, hs)
        v = self._split_heads(self.w_v(value))  # (B, nh, Tk, hs)
        dropout_p = self.dropout if self.training else 0.0
        y = attend(q, k, v, attn_mask=mask, is_causal=is_causal, dropout_p=dropout_p, fused_attention=self.fused_attention)
        y = y.transpose(1, 2).contiguous().view(B, Tq, C)  # (B, Tq, C): the heads concatenated
        return self.w_o(y)

    @torch.no_grad()
    def load_from_torch(self, mha: nn.MultiheadAttention) -> MultiHeadAttention:
        """Copy the weights of a batch-first ``nn.MultiheadAttention`` into this module.

        PyTorch stores W^Q, W^K, W^V stacked in one (3C, C) ``in_proj_weight``;
        we split it in three.
        """
        if mha.embed_dim != self.d_model or mha.num_heads != self.num_heads:
            raise ValueError(
                f"expected nn.MultiheadAttention with embed_dim={self.d_model} and num_heads={self.num_heads}, "
                f"got embed_dim={mha.embed_dim} and num_heads={mha.num_heads}"
            )
        if mha.in_proj_weight is None:
            raise ValueError("expected nn.MultiheadAttention with kdim == vdim == embed_dim (one in_proj_weight)")
        for ours, w in zip((self.w_q, self.w_k, self.w_v), mha.in_proj_weight.chunk(3)):
            ours.weight.copy_(w)
        if mha.in_proj_bias is not None:
            for ours, b in zip((self.w_q, self.w_k, self.w_v), mha.in_proj_bias.chunk(3)):
                ours.bias.copy_(b)
        self.w_o.weight.copy_(mha.out_proj.weight)
        if mha.out_proj.bias is not None:
            self.w_o.bias.copy_(mha.out_proj.bias)
        return self
