"""Tests for bigmodel_lib.models.attention and .positional (chapter 4, sections 4.1-4.3):
scaled dot-product attention and multi-head attention against PyTorch's own,
masks, positional encodings, and errors on bad input."""

from __future__ import annotations

import math
import random

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.testing import assert_close

from bigmodel_lib.models.attention import (
    MultiHeadAttention,
    attend,
    attention_weights,
    causal_mask,
    padding_mask,
    scaled_dot_product_attention,
)
from bigmodel_lib.models.positional import LearnedPositionalEmbedding, PositionalEncoding, sinusoidal_table
from bigmodel_lib.probes import attention_cost

# ---------------------------------------------------------------------------
# Masks


def test_causal_mask_is_lower_triangular():
    expected = torch.tensor([[True, False, False], [True, True, False], [True, True, True]])
    assert torch.equal(causal_mask(3), expected)
    assert causal_mask(2, 4).tolist() == [[True, False, False, False], [True, True, False, False]]


def test_padding_mask_marks_positions_after_each_length():
    mask = padding_mask([3, 1, 4], max_len=5)
    assert mask.tolist() == [
        [False, False, False, True, True],
        [False, True, True, True, True],
        [False, False, False, False, True],
    ]
    assert padding_mask(torch.tensor([2, 1])).shape == (2, 2)


# ---------------------------------------------------------------------------
# Scaled dot-product attention


def _random_case(rng: random.Random):
    B, nh = rng.randint(1, 3), rng.randint(1, 4)
    Tq, Tk = rng.randint(1, 7), rng.randint(1, 7)
    d_k, d_v = rng.randint(1, 9), rng.randint(1, 9)
    q, k, v = torch.randn(B, nh, Tq, d_k), torch.randn(B, nh, Tk, d_k), torch.randn(B, nh, Tk, d_v)
    return q, k, v


@pytest.mark.parametrize("seed", range(6))
def test_attention_matches_pytorch_with_padding_and_causal_masks(seed):
    rng = random.Random(seed)
    torch.manual_seed(seed)
    q, k, v = _random_case(rng)
    B, Tk = k.size(0), k.size(2)
    # No mask, causal mask (also with Tq != Tk), and a padding mask with at least one real key per row.
    assert_close(scaled_dot_product_attention(q, k, v), F.scaled_dot_product_attention(q, k, v))
    assert_close(
        scaled_dot_product_attention(q, k, v, is_causal=True), F.scaled_dot_product_attention(q, k, v, is_causal=True)
    )
    lengths = torch.randint(1, Tk + 1, (B,))
    allowed = ~padding_mask(lengths, Tk)[:, None, None, :]  # (B, 1, 1, Tk), True = may attend
    assert_close(
        scaled_dot_product_attention(q, k, v, attn_mask=allowed),
        F.scaled_dot_product_attention(q, k, v, attn_mask=allowed),
    )
    both = allowed & causal_mask(q.size(2), Tk)
    assert_close(
        scaled_dot_product_attention(q, k, v, attn_mask=allowed, is_causal=True),
        F.scaled_dot_product_attention(q, k, v, attn_mask=both),
    )


def test_attention_is_the_formula():
    torch.manual_seed(0)
    q, k, v = torch.randn(5, 4), torch.randn(6, 4), torch.randn(6, 3)
    expected = torch.softmax(q @ k.T / 2.0, dim=-1) @ v  # sqrt(d_k) = sqrt(4) = 2
    assert_close(scaled_dot_product_attention(q, k, v), expected)


def test_attention_weights_rows_sum_to_one_and_masked_keys_get_zero():
    torch.manual_seed(0)
    q, k = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    w = attention_weights(q, k, is_causal=True)
    assert_close(w.sum(-1), torch.ones(2, 5))
    assert torch.all(w.masked_select(~causal_mask(5)) == 0)
    assert torch.all(w[:, 0, 0] == 1)  # the first query can only see the first key


def test_query_that_may_attend_to_nothing_gets_zeros_like_pytorch():
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 3, 4), torch.randn(1, 3, 4), torch.randn(1, 3, 4)
    mask = torch.tensor([[True, True, False], [False, False, False], [True, False, True]])
    ours = scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert not torch.isnan(ours).any()
    assert torch.all(ours[0, 1] == 0)
    assert_close(ours, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


@pytest.mark.parametrize("seed", range(4))
def test_attend_gives_the_same_from_scratch_and_fused(seed):
    """One function, two paths: the fused call gets the padding and the causal mask combined into one."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    q, k, v = _random_case(rng)
    q.requires_grad_(True)
    B, Tk = k.size(0), k.size(2)
    allowed = ~padding_mask(torch.randint(1, Tk + 1, (B,)), Tk)[:, None, None, :]  # (B, 1, 1, Tk)
    for mask in (None, allowed):
        for is_causal in (False, True):
            scratch = attend(q, k, v, attn_mask=mask, is_causal=is_causal, fused_attention=False)
            (grad_scratch,) = torch.autograd.grad(scratch.sum(), q)
            fused = attend(q, k, v, attn_mask=mask, is_causal=is_causal, fused_attention=True)
            (grad_fused,) = torch.autograd.grad(fused.sum(), q)
            assert_close(fused, scratch)
            assert_close(fused, scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal))
            assert_close(grad_fused, grad_scratch)


def test_attend_raises_the_same_errors_on_both_paths():
    q = torch.randn(2, 3, 4)
    for fused_attention in (False, True):
        with pytest.raises(ValueError, match=r"attn_mask of dtype torch.bool.*got torch.int64"):
            attend(q, q, q, attn_mask=torch.ones(3, 3, dtype=torch.long), fused_attention=fused_attention)
        with pytest.raises(ValueError, match=r"attn_mask of shape \(3, 5\).*got shape \(3, 3\)"):
            k = torch.randn(2, 5, 4)
            attend(q, k, k, attn_mask=causal_mask(3), is_causal=True, fused_attention=fused_attention)
        with pytest.raises(ValueError, match=r"same last dimension d_k, got query \(2, 3, 4\) and key \(2, 3, 5\)"):
            attend(q, torch.randn(2, 3, 5), torch.randn(2, 3, 5), fused_attention=fused_attention)


# ---------------------------------------------------------------------------
# Multi-head attention


def _mha_pair(d_model: int, num_heads: int, seed: int, fused_attention: bool = False):
    torch.manual_seed(seed)
    theirs = nn.MultiheadAttention(d_model, num_heads, batch_first=True).eval()
    ours = MultiHeadAttention(d_model, num_heads, fused_attention=fused_attention).load_from_torch(theirs).eval()
    return ours, theirs


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("fused_attention", [False, True])
def test_multi_head_attention_matches_nn_multihead_attention(seed, fused_attention):
    rng = random.Random(seed)
    num_heads = rng.choice([1, 2, 4])
    d_model = num_heads * rng.randint(1, 6)
    B, Tq, Tk = rng.randint(1, 3), rng.randint(1, 6), rng.randint(1, 6)
    ours, theirs = _mha_pair(d_model, num_heads, seed, fused_attention)
    assert ours.fused_attention is fused_attention
    query, key, value = torch.randn(B, Tq, d_model), torch.randn(B, Tk, d_model), torch.randn(B, Tk, d_model)
    key_padding = padding_mask(torch.randint(1, Tk + 1, (B,)), Tk)  # True = padding, at least one real key
    allowed = torch.rand(Tq, Tk) > 0.3
    allowed[:, 0] = True  # every query keeps one key; PyTorch's module gives NaN for a query with none

    expected, _ = theirs(query, key, value)
    assert_close(ours(query, key, value), expected)
    expected, _ = theirs(query, key, value, key_padding_mask=key_padding)
    assert_close(ours(query, key, value, key_padding_mask=key_padding), expected)
    # nn.MultiheadAttention's boolean attn_mask means the opposite: True = may NOT attend.
    expected, _ = theirs(query, key, value, key_padding_mask=key_padding, attn_mask=~allowed)
    assert_close(ours(query, key, value, key_padding_mask=key_padding, attn_mask=allowed), expected)


def test_multi_head_self_attention_is_causal_with_is_causal():
    ours, theirs = _mha_pair(8, 2, seed=0)
    x = torch.randn(2, 5, 8)
    key_padding = padding_mask([5, 3], 5)
    expected, _ = theirs(x, x, x, key_padding_mask=key_padding, attn_mask=~causal_mask(5))
    for fused_attention in (False, True):
        ours.fused_attention = fused_attention
        assert_close(ours(x, x, x, key_padding_mask=key_padding, is_causal=True), expected)


def test_per_head_weights_match_nn_multihead_attention():
    ours, theirs = _mha_pair(8, 2, seed=1)
    x = torch.randn(2, 5, 8)
    key_padding = padding_mask([5, 2], 5)
    _, expected = theirs(x, x, x, key_padding_mask=key_padding, need_weights=True, average_attn_weights=False)
    weights = ours.attention_weights(x, x, key_padding_mask=key_padding)
    assert weights.shape == (2, 2, 5, 5)
    assert_close(weights, expected)


def test_heads_are_concatenated_then_projected_by_w_o():
    """MultiHead = Concat(head_1..head_h) W^O, computed head by head."""
    torch.manual_seed(0)
    mha = MultiHeadAttention(6, 3).eval()
    assert not mha.fused_attention  # the from-scratch attention unless asked
    x = torch.randn(2, 4, 6)
    q, k, v = mha.w_q(x), mha.w_k(x), mha.w_v(x)
    heads = [
        scaled_dot_product_attention(q[..., 2 * i : 2 * i + 2], k[..., 2 * i : 2 * i + 2], v[..., 2 * i : 2 * i + 2])
        for i in range(3)
    ]
    assert_close(mha(x, x, x), mha.w_o(torch.cat(heads, dim=-1)))


def test_self_attention_without_positions_is_permutation_equivariant():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4).eval()
    x = torch.randn(2, 7, 16)
    perm = torch.randperm(7)
    assert_close(mha(x[:, perm], x[:, perm], x[:, perm]), mha(x, x, x)[:, perm])
    # With positions added the permuted input is a different sequence: the equivariance is gone.
    pe = PositionalEncoding(16)
    y, y_perm = pe(x), pe(x[:, perm])
    assert not torch.allclose(mha(y_perm, y_perm, y_perm), mha(y, y, y)[:, perm], atol=1e-3)


# ---------------------------------------------------------------------------
# Positional encodings


def test_sinusoidal_table_matches_a_hand_computation():
    table = sinusoidal_table(max_len=50, d_model=6)
    for pos in (0, 1, 7, 49):
        for i in range(3):
            angle = pos / 10000 ** (2 * i / 6)
            assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-5)
            assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-5)
    assert table[0].tolist() == [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]


def test_positional_encoding_adds_the_table_and_is_a_buffer():
    pe = PositionalEncoding(d_model=8, max_len=20)
    x = torch.randn(3, 5, 8)
    assert_close(pe(x), x + sinusoidal_table(20, 8)[:5])
    assert list(pe.parameters()) == []
    assert "pe" in dict(pe.named_buffers())


def test_learned_position_embedding_adds_one_trained_vector_per_position():
    torch.manual_seed(0)
    wpe = LearnedPositionalEmbedding(max_len=10, d_model=4)
    x = torch.zeros(2, 3, 4)
    assert_close(wpe(x), wpe.embedding.weight[:3].expand(2, 3, 4))
    wpe(torch.randn(2, 3, 4)).sum().backward()
    assert wpe.embedding.weight.grad[:3].abs().sum() > 0
    assert torch.all(wpe.embedding.weight.grad[3:] == 0)  # unused positions get no gradient


# ---------------------------------------------------------------------------
# Cost of attention


def test_attention_cost_reports_time_and_the_size_of_the_weight_matrix():
    rows = attention_cost(seq_lens=(8, 16), num_heads=2, head_size=4, device="cpu", repeats=1)
    assert [(r["seq_len"], r["impl"]) for r in rows] == [
        (8, "from scratch"),
        (8, "fused"),
        (16, "from scratch"),
        (16, "fused"),
    ]
    assert all(r["ms"] > 0 for r in rows)
    assert rows[2]["weights_mib"] == 2 * 16 * 16 * 4 / 2**20  # (B, nh, T, T) float32
    assert rows[1]["weights_mib"] is None
    # Measured on the CPU too: from scratch holds at least the weight matrix, fused never does
    # (its peak is the output, (B, nh, T, hs), and per-row statistics: linear in T).
    scratch, fused = rows[2], rows[3]
    assert scratch["peak_mib"] >= scratch["weights_mib"] + 2 * 16 * 4 * 4 / 2**20  # weights and output
    assert fused["peak_mib"] < scratch["weights_mib"]
    assert fused["peak_mib"] == 2 * rows[1]["peak_mib"]  # twice the length, twice the memory


# ---------------------------------------------------------------------------
# Bad input: a ValueError that names what was expected and what was received


def test_d_model_not_divisible_by_heads():
    with pytest.raises(ValueError, match=r"d_model divisible by num_heads, got d_model=10 and num_heads=4"):
        MultiHeadAttention(10, 4)


def test_mask_of_the_wrong_dtype():
    q = torch.randn(1, 3, 4)
    with pytest.raises(ValueError, match=r"attn_mask of dtype torch.bool.*got torch.int64"):
        scaled_dot_product_attention(q, q, q, attn_mask=torch.ones(3, 3, dtype=torch.long))
    mha = MultiHeadAttention(4, 2)
    x = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match=r"key_padding_mask of shape \(2, 3\) and dtype torch.bool.*torch.float32"):
        mha(x, x, x, key_padding_mask=torch.zeros(2, 3))


def test_mask_of_the_wrong_shape():
    q = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match=r"attn_mask of shape \(3, 5\).*got shape \(3, 3\)"):
        scaled_dot_product_attention(q, torch.randn(2, 5, 4), torch.randn(2, 5, 4), attn_mask=causal_mask(3))
    mha = MultiHeadAttention(4, 2)
    x = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match=r"key_padding_mask of shape \(2, 3\).*got shape \(3, 2\)"):
        mha(x, x, x, key_padding_mask=torch.zeros(3, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"attn_mask of shape \(3, 3\).*got shape \(2, 3\)"):
        mha(x, x, x, attn_mask=torch.ones(2, 3, dtype=torch.bool))


def test_wrong_rank_and_width():
    mha = MultiHeadAttention(8, 2)
    with pytest.raises(ValueError, match=r"query of shape \(B, T, 8\).*got shape \(5, 8\)"):
        mha(torch.randn(5, 8), torch.randn(5, 8), torch.randn(5, 8))
    with pytest.raises(ValueError, match=r"key of shape \(B, T, 8\).*got shape \(1, 5, 6\)"):
        mha(torch.randn(1, 5, 8), torch.randn(1, 5, 6), torch.randn(1, 5, 8))
    with pytest.raises(ValueError, match=r"same last dimension d_k, got query \(3, 4\) and key \(3, 5\)"):
        scaled_dot_product_attention(torch.randn(3, 4), torch.randn(3, 5), torch.randn(3, 5))
    with pytest.raises(ValueError, match=r"at least 2 dimensions, got shape \(4,\)"):
        scaled_dot_product_attention(torch.randn(4), torch.randn(3, 4), torch.randn(3, 4))


def test_sequence_longer_than_the_position_table():
    with pytest.raises(ValueError, match=r"at most max_len=4 positions, got length T=6"):
        PositionalEncoding(8, max_len=4)(torch.zeros(1, 6, 8))
    with pytest.raises(ValueError, match=r"at most max_len=4 positions, got length T=5"):
        LearnedPositionalEmbedding(4, 8)(torch.zeros(1, 5, 8))
    with pytest.raises(ValueError, match=r"shape \(B, T, 8\), got shape \(6, 8\)"):
        PositionalEncoding(8)(torch.zeros(6, 8))
    with pytest.raises(ValueError, match=r"even d_model.*got d_model=5"):
        sinusoidal_table(10, 5)


def test_record_attention_gives_each_calls_weights_and_removes_its_hooks():
    from bigmodel_lib.models.gpt import GPT, GPTConfig
    from bigmodel_lib.probes import record_attention

    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 2, fused_attention=True).eval()  # the fused kernel never stores the weights
    x, memory = torch.randn(2, 5, 8), torch.randn(2, 7, 8)
    pad = torch.tensor([[False] * 7, [False] * 4 + [True] * 3])
    with record_attention(mha) as maps:
        mha(x, memory, memory, key_padding_mask=pad)
        mha(x, x, x, is_causal=True)
    assert len(maps) == 2 and not mha._forward_hooks
    assert_close(maps[0], mha.attention_weights(x, memory, key_padding_mask=pad))
    assert (maps[0][1, :, :, 4:] == 0).all() and (maps[1].triu(1) == 0).all()

    gpt = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=2, n_head=2, n_embd=8)).eval()
    ids = torch.randint(0, 11, (1, 6))
    with record_attention(*(block.attn for block in gpt.transformer.h)) as maps:
        gpt(ids)
    x0 = gpt.transformer.drop(gpt.transformer.wte(ids) + gpt.transformer.wpe(torch.arange(6)))
    q, k, _ = gpt.transformer.h[0].attn.c_attn(gpt.transformer.h[0].ln_1(x0)).split(8, dim=2)
    heads = lambda z: z.view(1, 6, 2, 4).transpose(1, 2)  # noqa: E731
    assert_close(maps[0], torch.softmax((heads(q) @ heads(k).transpose(-2, -1) / 2).masked_fill(
        torch.ones(6, 6, dtype=torch.bool).triu(1), float("-inf")), dim=-1))  # by hand, head size 4
    assert len(maps) == 2 and maps[1].shape == (1, 2, 6, 6)

    with pytest.raises(ValueError, match=r"attention_weights method .* got Linear"):
        with record_attention(nn.Linear(2, 2)):
            pass
