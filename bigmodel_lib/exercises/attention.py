"""Checkers for chapter 4's exercises: attention, the causal mask, positional encoding and layer normalisation.

Each checker runs the learner's function on fixed and seeded cases against
PyTorch's own function (or the library's, where PyTorch has none) and, when it
fails, names the modelled mistake its output matches. Masks follow the book's
convention: a boolean mask, True = may attend (``bigmodel_lib.models.attention``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from bigmodel_lib.exercises.checking import Case, CheckResult, Mutant, run_check
from bigmodel_lib.models.attention import causal_mask
from bigmodel_lib.models.positional import sinusoidal_table

# ---------------------------------------------------------------------------
# Scaled dot-product attention


def _attention_cases() -> list[Case]:
    gen = torch.Generator().manual_seed(30)

    def qkv(B, nh, Tq, Tk, d_k, d_v):
        return {"Q": torch.randn(B, nh, Tq, d_k, generator=gen), "K": torch.randn(B, nh, Tk, d_k, generator=gen),
                "V": torch.randn(B, nh, Tk, d_v, generator=gen)}

    keep = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])[:, None, None, :]  # (B, 1, 1, Tk): padding
    return [
        Case("no mask", {**qkv(2, 2, 5, 5, 8, 8), "mask": None}),
        Case("a padding mask", {**qkv(2, 2, 6, 6, 8, 8), "mask": keep}),
        Case("a causal mask", {**qkv(1, 3, 5, 5, 4, 4), "mask": causal_mask(5)}),
        Case("causal and padding", {**qkv(2, 2, 6, 6, 8, 8), "mask": causal_mask(6) & keep}),
        Case("cross-attention, Tq != Tk, d_v != d_k", {**qkv(2, 1, 3, 6, 16, 4), "mask": keep}),
    ]


def _attention_reference(Q, K, V, mask):
    return F.scaled_dot_product_attention(Q, K, V, attn_mask=mask)


def _attention_variant(scale="sqrt", dim=-1, mask_mode="keep"):
    def attention(Q, K, V, mask=None):
        d_k = Q.size(-1)
        scores = Q @ K.transpose(-2, -1) / {"sqrt": math.sqrt(d_k), "none": 1.0, "d_k": d_k}[scale]
        if mask is not None:
            if mask_mode == "keep":
                scores = scores.masked_fill(~mask, float("-inf"))
            elif mask_mode == "inverted":
                scores = scores.masked_fill(mask, float("-inf"))
            elif mask_mode == "multiplied":
                scores = scores * mask
        return torch.softmax(scores, dim=dim) @ V
    return attention


ATTENTION_MUTANTS = [
    Mutant("no scaling", _attention_variant(scale="none"),
           "the 1/sqrt(d_k) scaling is missing: divide the scores Q K^T by math.sqrt(d_k) before the softmax."),
    Mutant("divided by d_k", _attention_variant(scale="d_k"),
           "the scores are divided by d_k: divide by its square root, math.sqrt(Q.size(-1))."),
    Mutant("softmax over the wrong axis", _attention_variant(dim=-2),
           "the softmax runs over the wrong axis: each query's weights over the keys must sum to 1, "
           "softmax(scores, dim=-1) on scores of shape (..., Tq, Tk)."),
    Mutant("mask inverted", _attention_variant(mask_mode="inverted"),
           "the mask's meaning is inverted: in this book True means 'may attend', so fill the scores where the "
           "mask is False, scores.masked_fill(~mask, float('-inf'))."),
    Mutant("mask ignored", _attention_variant(mask_mode="ignored"),
           "the mask is not applied: set the scores of masked keys (mask False) to -inf before the softmax."),
    Mutant("mask multiplied", _attention_variant(mask_mode="multiplied"),
           "the mask multiplies the scores: a score of 0 still gets weight e^0 after the softmax. Fill masked "
           "scores with -inf instead, scores.masked_fill(~mask, float('-inf'))."),
]


def check_attention(fn, strict: bool = False) -> CheckResult:
    """Check ``fn(Q, K, V, mask)``, scaled dot-product attention softmax(Q K^T / sqrt(d_k)) V, called positionally.

    ``Q`` (B, nh, Tq, d_k), ``K`` (B, nh, Tk, d_k), ``V`` (B, nh, Tk, d_v), float32;
    ``mask`` is None or a boolean tensor that broadcasts to (B, nh, Tq, Tk), True
    = may attend (the book's convention). Returns (B, nh, Tq, d_v). Compared with
    ``F.scaled_dot_product_attention(Q, K, V, attn_mask=mask)``; no case masks a
    whole row. Known mistakes: no scaling, division by d_k, the softmax over the
    wrong axis, the mask inverted, ignored or multiplied. ``strict=True`` raises
    ``AssertionError`` on failure.

    Introduced in §4.1.
    """
    return run_check("attention", fn, _attention_cases(), _attention_reference, ATTENTION_MUTANTS, strict=strict,
                     rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------
# The causal mask


CAUSAL_MASK_MUTANTS = [
    Mutant("diagonal excluded", lambda T: torch.ones(T, T, dtype=torch.bool).tril(-1),
           "off by one: the diagonal is excluded, but query t may attend to key t itself (keys 0..t). Use tril() "
           "with diagonal=0."),
    Mutant("one future position", lambda T: torch.ones(T, T, dtype=torch.bool).tril(1),
           "off by one: query t may also see key t + 1, one future position. Use tril() with diagonal=0."),
    Mutant("transposed", lambda T: torch.ones(T, T, dtype=torch.bool).triu(),
           "the mask is transposed: row t is query t and must be True for the keys 0..t, on and below the "
           "diagonal (tril), not above it."),
    Mutant("inverted", lambda T: ~torch.ones(T, T, dtype=torch.bool).tril(),
           "the mask's meaning is inverted: in this book True means 'may attend' (nn.MultiheadAttention's "
           "attn_mask uses the opposite, True = blocked)."),
]


def check_causal_mask(fn, strict: bool = False) -> CheckResult:
    """Check ``fn(T)``, the causal attention mask: an int T -> a (T, T) boolean tensor, True = may attend.

    Row t (the query) is True for the keys 0..t and False after them, as
    ``bigmodel_lib.models.attention.causal_mask`` and
    ``F.scaled_dot_product_attention(is_causal=True)``. The dtype must be
    ``torch.bool``. Known mistakes: the diagonal excluded, one future position
    allowed, the mask transposed or inverted. ``strict=True`` raises
    ``AssertionError`` on failure.

    Introduced in §4.1.
    """
    cases = [Case(f"T = {T}", {"T": T}) for T in (1, 2, 5, 8)]
    return run_check("causal_mask", fn, cases, causal_mask, CAUSAL_MASK_MUTANTS, strict=strict, exact_dtype=True)


# ---------------------------------------------------------------------------
# Sinusoidal positional encoding


def _table(max_len, d_model, swap=False, concatenate=False, exponent="2i", start=0):
    pos = torch.arange(start, start + max_len, dtype=torch.float32)[:, None]  # (max_len, 1)
    even = torch.arange(0, d_model, 2, dtype=torch.float32)  # 2i
    omega = 10000 ** (-{"2i": even, "i": even / 2}[exponent] / d_model)  # (d_model / 2,)
    first, second = (torch.cos, torch.sin) if swap else (torch.sin, torch.cos)
    if concatenate:
        return torch.cat([first(pos * omega), second(pos * omega)], dim=1)
    pe = torch.zeros(max_len, d_model)
    pe[:, 0::2], pe[:, 1::2] = first(pos * omega), second(pos * omega)
    return pe


def _per_dimension(max_len, d_model):
    pos = torch.arange(max_len, dtype=torch.float32)[:, None]
    omega = 10000 ** (-torch.arange(d_model, dtype=torch.float32) / d_model)  # one frequency per dimension
    pe = torch.sin(pos * omega)
    pe[:, 1::2] = torch.cos(pos * omega)[:, 1::2]
    return pe


POSITIONAL_MUTANTS = [
    Mutant("sin and cos swapped", lambda n, d: _table(n, d, swap=True),
           "sine and cosine are swapped: the even columns 2i hold sin(pos * omega_i), the odd columns cos."),
    Mutant("concatenated", lambda n, d: _table(n, d, concatenate=True),
           "the sines and cosines are concatenated ([sin | cos]): they are interleaved, the sine in column 2i "
           "and the cosine of the same frequency in column 2i + 1 (pe[:, 0::2] and pe[:, 1::2])."),
    Mutant("exponent i instead of 2i", lambda n, d: _table(n, d, exponent="i"),
           "the frequency's exponent is wrong: omega_i = 10000^(-2i / d_model) with 2i the even column's index "
           "(torch.arange(0, d_model, 2)), not i."),
    Mutant("a frequency per column", _per_dimension,
           "each column got its own frequency: columns 2i and 2i + 1 share one, omega_i = 10000^(-2i / d_model)."),
    Mutant("positions from 1", lambda n, d: _table(n, d, start=1),
           "the positions start at 1: the first position is 0 (torch.arange(max_len)), whose row is 0, 1, 0, 1, ..."),
]


def check_positional_encoding(fn, strict: bool = False) -> CheckResult:
    """Check ``fn(max_len, d_model)``, the sinusoidal table: two ints (d_model even) -> (max_len, d_model) float32.

    ``PE[pos, 2i] = sin(pos / 10000^(2i / d_model))`` and ``PE[pos, 2i + 1] = cos(...)``
    of the same frequency, positions from 0; compared with
    ``bigmodel_lib.models.positional.sinusoidal_table`` (to 1e-4, since float32
    rounds large angles differently). Known mistakes: sin and cos swapped,
    concatenated instead of interleaved, exponent i instead of 2i, a frequency per
    column, positions from 1. ``strict=True`` raises ``AssertionError`` on failure.

    Introduced in §4.3.
    """
    cases = [Case(f"max_len = {n}, d_model = {d}", {"max_len": n, "d_model": d})
             for n, d in [(10, 8), (50, 16), (1, 4), (20, 2), (30, 6)]]
    return run_check("positional_encoding", fn, cases, sinusoidal_table, POSITIONAL_MUTANTS, strict=strict,
                     rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------
# Layer normalisation


def _layer_norm_cases() -> list[Case]:
    gen = torch.Generator().manual_seed(31)

    def case(label, x, eps=1e-5):
        C = x.shape[-1]
        return Case(label, {"x": x, "gamma": 1 + 0.5 * torch.randn(C, generator=gen),
                            "beta": torch.randn(C, generator=gen), "eps": eps})

    return [
        case("(B, T, C)", 3 * torch.randn(2, 5, 8, generator=gen) + 1),
        case("(B, C)", torch.randn(4, 6, generator=gen)),
        case("small variance", 2e-3 * torch.randn(3, 4, 10, generator=gen)),
        case("eps = 0.1", torch.randn(2, 3, 4, generator=gen), eps=0.1),
    ]


def _layer_norm_variant(unbiased=False, dims=(-1,), eps_outside=False, affine=True):
    def layer_norm(x, gamma, beta, eps=1e-5):
        mu = x.mean(dim=dims, keepdim=True)
        var = x.var(dim=dims, unbiased=unbiased, keepdim=True)
        x_hat = (x - mu) / (var.sqrt() + eps if eps_outside else torch.sqrt(var + eps))
        return gamma * x_hat + beta if affine else x_hat
    return layer_norm


LAYER_NORM_MUTANTS = [
    Mutant("unbiased variance", _layer_norm_variant(unbiased=True),
           "the variance is the unbiased one (divided by C - 1): layer norm uses the population variance, "
           "x.var(dim=-1, unbiased=False, keepdim=True), divided by C."),
    Mutant("over the batch axis", _layer_norm_variant(dims=(0,)),
           "the statistics are taken over the batch axis (that is batch normalisation): layer norm averages over "
           "the last dimension, the C features of each position, mean(dim=-1, keepdim=True)."),
    Mutant("over every axis", _layer_norm_variant(dims=None),
           "the statistics are taken over the whole tensor: layer norm normalises each position on its own, "
           "over its last dimension only (dim=-1, keepdim=True)."),
    Mutant("eps outside the sqrt", _layer_norm_variant(eps_outside=True),
           "eps is outside the square root: divide by sqrt(var + eps), not sqrt(var) + eps."),
    Mutant("no gain and bias", _layer_norm_variant(affine=False),
           "the gain and bias are not applied: the result is gamma * x_hat + beta."),
]


def check_layer_norm(fn, strict: bool = False) -> CheckResult:
    """Check ``fn(x, gamma, beta, eps)``, layer normalisation over the last dimension, called positionally.

    ``x`` (..., C) float32, e.g. (B, T, C); ``gamma`` and ``beta`` (C,); ``eps`` a
    float -> the shape of ``x``: ``gamma * (x - mean) / sqrt(var + eps) + beta``
    with the mean and the population variance over the last dimension. Compared
    with ``F.layer_norm``. Known mistakes: the unbiased variance, statistics over
    the batch axis or the whole tensor, eps outside the square root, no gain and
    bias. ``strict=True`` raises ``AssertionError`` on failure.

    Introduced in §4.4.
    """
    return run_check("layer_norm", fn, _layer_norm_cases(),
                     lambda x, gamma, beta, eps: F.layer_norm(x, x.shape[-1:], gamma, beta, eps),
                     LAYER_NORM_MUTANTS, strict=strict, rtol=1e-4, atol=1e-4)
