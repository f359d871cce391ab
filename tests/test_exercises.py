"""The exercise checkers: each accepts the reference and several correct answers written differently, rejects
every modelled mistake with that mistake's own hint (also when a learner writes it their own way), reports an
unfinished answer, an exception and a wrong shape in words, and raises in strict mode."""

from __future__ import annotations

import collections
import inspect
import itertools
import json
import math
import pathlib
import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from test_exercises_applications import (
    box_iou_chapter,
    box_iou_loops,
    box_iou_torchvision,
    box_iou_unbound,
    learner_iou_sum,
    learner_iou_unclamped,
    learner_iou_voc,
    learner_sampling_multiplies,
    learner_sampling_scatter,
    learner_sampling_zero_filled,
    learner_whisper_ln,
    learner_whisper_per_frame,
    learner_whisper_precedence,
    sampling_chapter,
    sampling_sorted,
    sampling_transformers,
    whisper_scale_chapter,
    whisper_scale_decibels,
    whisper_scale_numpy,
)
from test_exercises_choosing import (
    causal_conv_chapter,
    causal_conv_cut,
    causal_conv_einsum,
    causal_conv_library,
    int8_linear_chapter,
    int8_linear_integers,
    int8_linear_library,
    learner_by_columns,
    learner_channels_last,
    learner_forgot_zero_point,
    learner_no_rounding,
    learner_reversed_taps,
    learner_symmetric_padding,
    learner_taps_adjacent,
    learner_uint8_range,
    learner_view_only,
    patch_embedding_library,
    patch_embedding_loops,
    patch_embedding_reshape,
    patch_embedding_unfold,
)
from test_exercises_trends import (
    chinchilla_chapter,
    chinchilla_numpy,
    chinchilla_powers,
    flip_argsort,
    flip_chapter,
    flip_numpy,
    kv_chapter,
    kv_math_prod,
    kv_per_token,
    learner_chinchilla_2nd,
    learner_flip_bernoulli,
    learner_flip_same_class,
    learner_kv_bits,
)
from torch.testing import assert_close

from bigmodel_lib.exercises import (
    CHECKERS,
    CheckResult,
    check_adamw_step,
    check_attention,
    check_bert_masking,
    check_box_iou,
    check_causal_conv1d,
    check_causal_mask,
    check_chinchilla_optimal,
    check_clip_grad_norm,
    check_conv2d,
    check_conv_output_size,
    check_cross_entropy,
    check_flip_labels,
    check_gru_cell,
    check_int8_linear,
    check_kv_cache_bytes,
    check_layer_norm,
    check_lstm_cell,
    check_max_pool2d,
    check_mean_pooling,
    check_pair_counts,
    check_patch_embedding,
    check_positional_encoding,
    check_sampling_probs,
    check_softmax,
    check_whisper_scale,
)
from bigmodel_lib.exercises import applications as applications_checks
from bigmodel_lib.exercises import attention as attention_checks
from bigmodel_lib.exercises import choosing as choosing_checks
from bigmodel_lib.exercises import convolution as convolution_checks
from bigmodel_lib.exercises import learning as learning_checks
from bigmodel_lib.exercises import pretraining as pretraining_checks
from bigmodel_lib.exercises import recurrent as recurrent_checks
from bigmodel_lib.exercises import trends as trends_checks
from bigmodel_lib.models.attention import causal_mask
from bigmodel_lib.models.positional import sinusoidal_table

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = pathlib.Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------------
# Correct answers, written the ways learners write them

# Chapter 1


def softmax_max_subtracted(z):
    z = z - z.max(dim=-1, keepdim=True).values
    e = z.exp()
    return e / e.sum(dim=-1, keepdim=True)


def softmax_via_log_softmax(z):
    return torch.log_softmax(z, dim=-1).exp()


def softmax_loop(z):
    rows = z.reshape(-1, z.shape[-1])
    out = torch.empty_like(rows)
    for r in range(rows.shape[0]):
        m = max(rows[r].tolist())
        e = [math.exp(v - m) for v in rows[r].tolist()]
        out[r] = torch.tensor([v / sum(e) for v in e])
    return out.reshape(z.shape)


def softmax_logsumexp(z):
    return (z - z.logsumexp(dim=-1, keepdim=True)).exp()


def cross_entropy_logsumexp(z, target):
    log_p = z - z.logsumexp(dim=-1, keepdim=True)
    return -log_p.gather(-1, target[:, None]).mean()


def cross_entropy_nll(z, target):
    return F.nll_loss(F.log_softmax(z, dim=-1), target)


def cross_entropy_loop(z, target):
    total = 0.0
    for row, y in zip(z, target):
        m = row.max()
        total = total + (m + (row - m).exp().sum().log() - row[y])
    return total / len(target)


def adamw_chapter(params, state, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
    b1, b2 = betas
    for p in params:
        t, m, v = state.get(p, (0, torch.zeros_like(p), torch.zeros_like(p)))
        t += 1
        p.mul_(1 - lr * weight_decay)
        m = b1 * m + (1 - b1) * p.grad
        v = b2 * v + (1 - b2) * p.grad * p.grad
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        p -= lr * m_hat / (v_hat.sqrt() + eps)
        state[p] = (t, m, v)


def adamw_by_index(params, state, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
    state["t"] = state.get("t", 0) + 1  # one step count for all parameters
    t = state["t"]
    for i, p in enumerate(params):
        m = state.setdefault(("m", i), torch.zeros_like(p))
        v = state.setdefault(("v", i), torch.zeros_like(p))
        m.lerp_(p.grad, 1 - betas[0])
        v.mul_(betas[1]).addcmul_(p.grad, p.grad, value=1 - betas[1])
        p.mul_(1 - lr * weight_decay)
        denom = (v / (1 - betas[1] ** t)).sqrt().add_(eps)
        p.addcdiv_(m, denom, value=-lr / (1 - betas[0] ** t))


def adamw_torch(params, state, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
    if "opt" not in state:
        state["opt"] = torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    state["opt"].step()


# Chapter 2


def conv2d_loops(x, weight, bias=None, stride=1, padding=0):
    B, C_in, H, W = x.shape
    C_out, _, k, _ = weight.shape
    x = F.pad(x, (padding, padding, padding, padding))
    H_out, W_out = (H + 2 * padding - k) // stride + 1, (W + 2 * padding - k) // stride + 1
    y = torch.zeros(B, C_out, H_out, W_out)
    for i in range(H_out):
        for j in range(W_out):
            window = x[:, :, i * stride: i * stride + k, j * stride: j * stride + k]  # (B, C_in, k, k)
            y[:, :, i, j] = (window[:, None] * weight[None]).sum(dim=(2, 3, 4))
    if bias is not None:
        y = y + bias.view(1, C_out, 1, 1)
    return y


def conv2d_unfold(x, weight, bias=None, stride=1, padding=0):
    B, C_in, H, W = x.shape
    C_out, _, k, _ = weight.shape
    cols = F.unfold(x, k, padding=padding, stride=stride)  # (B, C_in*k*k, L)
    y = weight.view(C_out, -1) @ cols
    if bias is not None:
        y = y + bias.view(1, C_out, 1)
    return y.view(B, C_out, (H + 2 * padding - k) // stride + 1, (W + 2 * padding - k) // stride + 1)


def conv2d_shift_and_add(x, weight, bias=None, stride=1, padding=0):
    x = F.pad(x, (padding,) * 4)
    k = weight.shape[-1]
    H_out, W_out = (x.shape[2] - k) // stride + 1, (x.shape[3] - k) // stride + 1
    y = 0
    for u in range(k):
        for v in range(k):
            patch = x[:, :, u: u + stride * (H_out - 1) + 1: stride, v: v + stride * (W_out - 1) + 1: stride]
            y = y + torch.einsum("bchw,oc->bohw", patch, weight[:, :, u, v])
    return y if bias is None else y + bias[:, None, None]


def max_pool_unfold(x, k, stride=None):
    stride = stride or k
    B, C, H, W = x.shape
    windows = F.unfold(x.reshape(B * C, 1, H, W), k, stride=stride)
    return windows.amax(dim=1).view(B, C, (H - k) // stride + 1, (W - k) // stride + 1)


def max_pool_tensor_unfold(x, k, stride=None):
    stride = k if stride is None else stride
    return x.unfold(2, k, stride).unfold(3, k, stride).amax(dim=(-2, -1))


def max_pool_loops(x, k, stride=None):
    s = stride if stride is not None else k
    B, C, H, W = x.shape
    H_out, W_out = (H - k) // s + 1, (W - k) // s + 1
    out = torch.empty(B, C, H_out, W_out)
    for i in range(H_out):
        for j in range(W_out):
            out[:, :, i, j] = x[:, :, i * s: i * s + k, j * s: j * s + k].amax(dim=(-2, -1))
    return out


def output_size_floor(n, k, stride=1, padding=0):
    return math.floor((n + 2 * padding - k) / stride) + 1


def output_size_count(n, k, stride=1, padding=0):
    return len(range(0, n + 2 * padding - k + 1, stride))


def output_size_int(n, k, stride=1, padding=0):
    return int((n + 2 * padding - k) / stride) + 1  # truncation is floor for a non-negative numerator


# Chapter 3


def clip_chapter(grads, max_norm):
    norm = torch.sqrt(sum((g**2).sum() for g in grads))
    return [g * min(1.0, max_norm / (norm.item() + 1e-6)) for g in grads], norm


def clip_concatenated(grads, max_norm):
    norm = torch.cat([g.flatten() for g in grads]).norm()
    scale = (max_norm / (norm + 1e-6)).clamp(max=1.0)
    return [g * scale for g in grads], norm


def clip_norm_of_norms(grads, max_norm):
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    return [g * torch.clamp(max_norm / (norm + 1e-6), max=1.0) for g in grads], norm.item()


def clip_with_torch(grads, max_norm):
    params = [nn.Parameter(torch.zeros_like(g)) for g in grads]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    norm = nn.utils.clip_grad_norm_(params, max_norm)
    return [p.grad for p in params], norm


def lstm_chapter(x_t, h_prev, c_prev, W_x, W_h, b):
    i, f, g, o = (x_t @ W_x.T + h_prev @ W_h.T + b).chunk(4, dim=1)
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    c = f * c_prev + i * g
    return o * torch.tanh(c), c


def lstm_sliced(x_t, h_prev, c_prev, W_x, W_h, b):
    H = h_prev.shape[1]
    gate = [F.linear(x_t, W_x[n * H:(n + 1) * H], b[n * H:(n + 1) * H]) + F.linear(h_prev, W_h[n * H:(n + 1) * H])
            for n in range(4)]
    i, f, o = torch.sigmoid(gate[0]), torch.sigmoid(gate[1]), torch.sigmoid(gate[3])
    c = f * c_prev + i * torch.tanh(gate[2])
    h = o * torch.tanh(c)
    return h, c


def lstm_torch(x_t, h_prev, c_prev, W_x, W_h, b):
    cell = nn.LSTMCell(W_x.shape[1], W_h.shape[1])
    with torch.no_grad():
        cell.weight_ih.copy_(W_x)
        cell.weight_hh.copy_(W_h)
        cell.bias_ih.copy_(b / 2)
        cell.bias_hh.copy_(b / 2)  # the bias split in two, as nn.LSTM stores it
        return cell(x_t, (h_prev, c_prev))


def gru_chapter(x_t, h_prev, W_x, W_h, b_x, b_h):
    xr, xz, xn = (x_t @ W_x.T + b_x).chunk(3, dim=1)
    hr, hz, hn = (h_prev @ W_h.T + b_h).chunk(3, dim=1)
    r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    return (1 - z) * n + z * h_prev


def gru_sliced(x_t, h_prev, W_x, W_h, b_x, b_h):
    H = h_prev.shape[1]
    part = [slice(n * H, (n + 1) * H) for n in range(3)]
    r = torch.sigmoid(F.linear(x_t, W_x[part[0]], b_x[part[0]]) + F.linear(h_prev, W_h[part[0]], b_h[part[0]]))
    z = torch.sigmoid(F.linear(x_t, W_x[part[1]], b_x[part[1]]) + F.linear(h_prev, W_h[part[1]], b_h[part[1]]))
    n = torch.tanh(F.linear(x_t, W_x[part[2]], b_x[part[2]]) + r * F.linear(h_prev, W_h[part[2]], b_h[part[2]]))
    return n + z * (h_prev - n)


def gru_torch(x_t, h_prev, W_x, W_h, b_x, b_h):
    cell = nn.GRUCell(W_x.shape[1], W_h.shape[1])
    with torch.no_grad():
        cell.weight_ih.copy_(W_x)
        cell.weight_hh.copy_(W_h)
        cell.bias_ih.copy_(b_x)
        cell.bias_hh.copy_(b_h)
        return cell(x_t, h_prev)


# Chapter 4


def attention_chapter(Q, K, V, mask=None):
    scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.size(-1))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ V


def attention_einsum(Q, K, V, mask=None):
    scores = torch.einsum("bhqd,bhkd->bhqk", Q / Q.shape[-1] ** 0.5, K)
    if mask is not None:
        scores = torch.where(mask, scores, torch.tensor(float("-inf")))
    return torch.einsum("bhqk,bhkd->bhqd", scores.softmax(dim=-1), V)


def attention_additive_mask(Q, K, V, mask=None):
    scores = Q @ K.mT * Q.shape[-1] ** -0.5
    if mask is not None:
        scores = scores + torch.zeros(mask.shape).masked_fill(~mask, float("-inf"))
    weights = scores.exp() / scores.exp().sum(dim=-1, keepdim=True)  # fine at these sizes
    return weights @ V


def attention_fused(Q, K, V, mask=None):
    return F.scaled_dot_product_attention(Q, K, V, attn_mask=mask)


def causal_tril(T):
    return torch.ones(T, T).tril().bool()


def causal_compare(T):
    return torch.arange(T)[:, None] >= torch.arange(T)[None, :]


def causal_loops(T):
    mask = torch.zeros(T, T, dtype=torch.bool)
    for t in range(T):
        mask[t, : t + 1] = True
    return mask


def pe_chapter(max_len, d_model):
    pos = torch.arange(max_len, dtype=torch.float32)[:, None]
    omega = 10000 ** (-torch.arange(0, d_model, 2) / d_model)
    pe = torch.zeros(max_len, d_model)
    pe[:, 0::2] = torch.sin(pos * omega)
    pe[:, 1::2] = torch.cos(pos * omega)
    return pe


def pe_loops(max_len, d_model):
    pe = torch.zeros(max_len, d_model)
    for pos in range(max_len):
        for i in range(0, d_model, 2):
            angle = pos / 10000 ** (i / d_model)
            pe[pos, i], pe[pos, i + 1] = math.sin(angle), math.cos(angle)
    return pe


def pe_stacked(max_len, d_model):
    angles = torch.arange(max_len)[:, None] * torch.exp(-math.log(10000) * torch.arange(0, d_model, 2) / d_model)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).reshape(max_len, d_model)  # interleaved


def layer_norm_chapter(x, gamma, beta, eps=1e-5):
    mu = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, unbiased=False, keepdim=True)
    return gamma * (x - mu) / torch.sqrt(var + eps) + beta


def layer_norm_var_mean(x, gamma, beta, eps=1e-5):
    var, mu = torch.var_mean(x, dim=-1, correction=0, keepdim=True)
    return (x - mu) * torch.rsqrt(var + eps) * gamma + beta


def layer_norm_squares(x, gamma, beta, eps=1e-5):
    centred = x - x.mean(-1, keepdim=True)
    return centred / ((centred**2).mean(-1, keepdim=True) + eps).sqrt() * gamma + beta


def layer_norm_torch(x, gamma, beta, eps=1e-5):
    return F.layer_norm(x, (x.shape[-1],), gamma, beta, eps)


# Chapter 5


def pairs_counter(words):
    counts = collections.Counter()
    for word, freq in words.items():
        for pair in zip(word, word[1:]):
            counts[pair] += freq
    return counts


def pairs_defaultdict(words):
    counts = collections.defaultdict(int)
    for symbols, n in words.items():
        for i in range(len(symbols) - 1):
            counts[symbols[i], symbols[i + 1]] += n
    return dict(counts)


def pairs_pairwise(words):
    counts = {}
    for word, freq in words.items():
        for pair in itertools.pairwise(word):
            counts[pair] = counts.get(pair, 0) + freq
    return counts


def bert_mask_indexing(input_ids, special, rand, action, random_ids, mask_id):
    chosen = (rand < 0.15) & ~special
    inputs = input_ids.clone()
    inputs[chosen & (action < 0.8)] = mask_id
    replace = chosen & (action >= 0.8) & (action < 0.9)
    inputs[replace] = random_ids[replace]
    labels = torch.full_like(input_ids, -100)
    labels[chosen] = input_ids[chosen]
    return inputs, labels


def bert_mask_where(input_ids, special, rand, action, random_ids, mask_id):
    chosen = (rand < 0.15) & ~special
    corrupted = torch.where(action < 0.8, mask_id, torch.where(action < 0.9, random_ids, input_ids))
    return torch.where(chosen, corrupted, input_ids), torch.where(chosen, input_ids, -100)


def bert_mask_loops(input_ids, special, rand, action, random_ids, mask_id):
    inputs, labels = input_ids.clone(), input_ids.clone()
    B, T = input_ids.shape
    for b in range(B):
        for t in range(T):
            if special[b, t] or rand[b, t] >= 0.15:
                labels[b, t] = -100
            elif action[b, t] < 0.8:
                inputs[b, t] = mask_id
            elif action[b, t] < 0.9:
                inputs[b, t] = random_ids[b, t]
    return inputs, labels


def mean_pooling_chapter(token_outputs, attention_mask):
    mask = attention_mask.unsqueeze(-1).float()  # (B, T, 1)
    return (token_outputs * mask).sum(1) / mask.sum(1)


def mean_pooling_einsum(token_outputs, attention_mask):
    mask = attention_mask.to(token_outputs.dtype)
    return torch.einsum("btc,bt->bc", token_outputs, mask) / mask.sum(-1, keepdim=True)


def mean_pooling_loop(token_outputs, attention_mask):
    return torch.stack([x[m.bool()].mean(dim=0) for x, m in zip(token_outputs, attention_mask)])


def mean_pooling_sentence_transformers(token_outputs, attention_mask):
    # sentence-transformers' Pooling(pooling_mode="mean"), written out (importing it takes seconds)
    expanded = attention_mask.unsqueeze(-1).expand(token_outputs.size()).to(token_outputs.dtype)
    return torch.sum(token_outputs * expanded, 1) / torch.clamp(expanded.sum(1), min=1e-9)


CORRECT = {
    check_softmax: [lambda z: torch.softmax(z, -1), softmax_max_subtracted, softmax_via_log_softmax, softmax_loop,
                    softmax_logsumexp],
    check_cross_entropy: [F.cross_entropy, cross_entropy_logsumexp, cross_entropy_nll, cross_entropy_loop],
    check_adamw_step: [adamw_torch, adamw_chapter, adamw_by_index],
    check_conv2d: [lambda x, w, b, s, p: F.conv2d(x, w, b, stride=s, padding=p), conv2d_loops, conv2d_unfold,
                   conv2d_shift_and_add],
    check_max_pool2d: [F.max_pool2d, max_pool_unfold, max_pool_tensor_unfold, max_pool_loops],
    check_conv_output_size: [lambda n, k, s, p: (n + 2 * p - k) // s + 1, output_size_floor, output_size_count,
                             output_size_int],
    check_clip_grad_norm: [clip_with_torch, clip_chapter, clip_concatenated, clip_norm_of_norms],
    check_lstm_cell: [lstm_torch, lstm_chapter, lstm_sliced],
    check_gru_cell: [gru_torch, gru_chapter, gru_sliced],
    check_attention: [attention_fused, attention_chapter, attention_einsum, attention_additive_mask],
    check_causal_mask: [causal_mask, causal_tril, causal_compare, causal_loops],
    check_positional_encoding: [sinusoidal_table, pe_chapter, pe_loops, pe_stacked],
    check_layer_norm: [layer_norm_torch, layer_norm_chapter, layer_norm_var_mean, layer_norm_squares],
    check_pair_counts: [pretraining_checks._pair_counts, pairs_counter, pairs_defaultdict, pairs_pairwise],
    check_bert_masking: [bert_mask_indexing, bert_mask_where, bert_mask_loops],
    check_mean_pooling: [mean_pooling_sentence_transformers, mean_pooling_chapter, mean_pooling_einsum,
                         mean_pooling_loop],
    check_box_iou: [box_iou_torchvision, box_iou_chapter, box_iou_loops, box_iou_unbound],
    check_sampling_probs: [sampling_chapter, sampling_transformers, sampling_sorted],
    check_whisper_scale: [whisper_scale_chapter, whisper_scale_numpy, whisper_scale_decibels],
    check_patch_embedding: [patch_embedding_reshape, patch_embedding_unfold, patch_embedding_loops,
                            patch_embedding_library],
    check_causal_conv1d: [causal_conv_chapter, causal_conv_cut, causal_conv_einsum, causal_conv_library],
    check_int8_linear: [int8_linear_chapter, int8_linear_integers, int8_linear_library],
    check_chinchilla_optimal: [chinchilla_chapter, chinchilla_numpy, chinchilla_powers],
    check_flip_labels: [flip_chapter, flip_numpy, flip_argsort],
    check_kv_cache_bytes: [kv_chapter, kv_per_token, kv_math_prod],
}


def test_every_checker_is_listed_and_tested():
    assert set(CHECKERS.values()) == set(CORRECT)
    assert len(CHECKERS) >= 12
    assert all(len(answers) >= 3 for answers in CORRECT.values())


@pytest.mark.parametrize(("check", "answer"), [(c, a) for c, answers in CORRECT.items() for a in answers],
                         ids=lambda v: getattr(v, "__name__", "?"))
def test_correct_answers_pass(check, answer):
    result = check(answer)
    assert result.passed, str(result)
    assert isinstance(result, CheckResult) and result.hint is None and result.mistake is None
    assert check(answer, strict=True).passed  # strict mode does not raise on a correct answer


# ---------------------------------------------------------------------------
# Every modelled mistake is rejected with its own hint

MUTANTS = {
    check_softmax: learning_checks.SOFTMAX_MUTANTS,
    check_cross_entropy: learning_checks.CROSS_ENTROPY_MUTANTS,
    check_adamw_step: learning_checks.ADAMW_MUTANTS,
    check_conv2d: convolution_checks.CONV2D_MUTANTS,
    check_max_pool2d: convolution_checks.MAX_POOL2D_MUTANTS,
    check_conv_output_size: convolution_checks.CONV_OUTPUT_SIZE_MUTANTS,
    check_clip_grad_norm: recurrent_checks.CLIP_MUTANTS,
    check_lstm_cell: recurrent_checks.LSTM_MUTANTS,
    check_gru_cell: recurrent_checks.GRU_MUTANTS,
    check_attention: attention_checks.ATTENTION_MUTANTS,
    check_causal_mask: attention_checks.CAUSAL_MASK_MUTANTS,
    check_positional_encoding: attention_checks.POSITIONAL_MUTANTS,
    check_layer_norm: attention_checks.LAYER_NORM_MUTANTS,
    check_pair_counts: pretraining_checks.PAIR_COUNTS_MUTANTS,
    check_bert_masking: pretraining_checks.MASKING_MUTANTS,
    check_mean_pooling: pretraining_checks.MEAN_POOLING_MUTANTS,
    check_box_iou: applications_checks.BOX_IOU_MUTANTS,
    check_sampling_probs: applications_checks.SAMPLING_MUTANTS,
    check_whisper_scale: applications_checks.WHISPER_SCALE_MUTANTS,
    check_patch_embedding: choosing_checks.PATCH_EMBEDDING_MUTANTS,
    check_causal_conv1d: choosing_checks.CAUSAL_CONV_MUTANTS,
    check_int8_linear: choosing_checks.INT8_LINEAR_MUTANTS,
    check_chinchilla_optimal: trends_checks.CHINCHILLA_MUTANTS,
    check_flip_labels: trends_checks.FLIP_LABELS_MUTANTS,
    check_kv_cache_bytes: trends_checks.KV_CACHE_MUTANTS,
}


def test_every_checker_models_at_least_three_mistakes_with_distinct_hints():
    assert set(MUTANTS) == set(CORRECT)
    for mutants in MUTANTS.values():
        assert len(mutants) >= 3
        assert len({m.hint for m in mutants}) == len({m.name for m in mutants}) == len(mutants)


@pytest.mark.parametrize(("check", "mutant"), [(c, m) for c, ms in MUTANTS.items() for m in ms],
                         ids=lambda v: getattr(v, "name", getattr(v, "__name__", "?")))
def test_each_modelled_mistake_gets_its_own_hint(check, mutant):
    result = check(mutant.fn)
    assert not result.passed and not result.unfinished, str(result)
    assert (result.mistake, result.hint) == (mutant.name, mutant.hint), str(result)
    assert "Hint: " + mutant.hint in str(result)
    with pytest.raises(AssertionError, match=r"FAILED"):
        check(mutant.fn, strict=True)


# The same mistakes written the way a learner would, not by the checker's own mutants


def softmax_columns(z):
    e = (z - z.max()).exp()
    return e / e.sum(dim=0, keepdim=True)


def softmax_naive(z):
    return torch.exp(z) / torch.exp(z).sum(-1, keepdim=True)


def softmax_global(z):
    e = torch.exp(z - z.max(-1, keepdim=True)[0])
    return e / torch.sum(e)


def ce_sum(z, target):
    return -sum(torch.log_softmax(row, 0)[y] for row, y in zip(z, target))


def ce_book_by_hand(z, target):
    p = z.softmax(dim=-1)
    return -p[torch.arange(len(target)), target].log().mean()  # section 1.4's lines, unstable for -1000


def ce_all_pairs(z, target):
    return -F.log_softmax(z, -1)[:, target].mean()


def adam_l2(params, state, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
    if "opt" not in state:
        state["opt"] = torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    state["opt"].step()


def adamw_no_correction(params, state, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
    for i, p in enumerate(params):
        m = state.setdefault(f"m{i}", torch.zeros_like(p))
        v = state.setdefault(f"v{i}", torch.zeros_like(p))
        m.mul_(betas[0]).add_((1 - betas[0]) * p.grad)
        v.mul_(betas[1]).add_((1 - betas[1]) * p.grad**2)
        p.mul_(1 - lr * weight_decay)
        p.sub_(lr * m / (v.sqrt() + eps))


def adamw_fresh_state(params, state, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
    adamw_chapter(params, {}, lr, betas, eps, weight_decay)


def conv2d_true_convolution(x, weight, bias=None, stride=1, padding=0):
    return conv2d_loops(x, torch.flip(weight, dims=(2, 3)), bias, stride, padding)


def conv2d_no_stride(x, weight, bias=None, stride=1, padding=0):
    return conv2d_unfold(x, weight, bias, 1, padding)


def conv2d_no_padding(x, weight, bias=None, stride=1, padding=0):
    return conv2d_loops(x, weight, bias, stride, 0)


def conv2d_no_bias(x, weight, bias=None, stride=1, padding=0):
    return conv2d_unfold(x, weight, None, stride, padding)


def pool_mean(x, k, stride=None):
    stride = stride or k
    return x.unfold(2, k, stride).unfold(3, k, stride).mean(dim=(-2, -1))


def pool_stride_default_one(x, k, stride=None):
    return max_pool_loops(x, k, 1 if stride is None else stride)


def pool_ceil(x, k, stride=None):
    s = stride or k
    B, C, H, W = x.shape
    H_out, W_out = math.ceil((H - k) / s) + 1, math.ceil((W - k) / s) + 1
    return torch.stack([torch.stack([x[:, :, i * s: i * s + k, j * s: j * s + k].amax(dim=(-2, -1))
                                     for j in range(W_out)], dim=-1) for i in range(H_out)], dim=-2)


def clip_each(grads, max_norm):
    norm = torch.sqrt(sum((g**2).sum() for g in grads))
    return [g * min(1.0, max_norm / g.norm().item()) for g in grads], norm


def clip_always(grads, max_norm):
    norm = torch.cat([g.flatten() for g in grads]).norm()
    return [g * (max_norm / norm) for g in grads], norm


def clip_sum_of_norms(grads, max_norm):
    norm = sum(torch.linalg.norm(g) for g in grads)
    return [g * torch.clamp(max_norm / norm, max=1.0) for g in grads], norm


def lstm_ifog(x_t, h_prev, c_prev, W_x, W_h, b):
    i, f, o, g = (x_t @ W_x.T + h_prev @ W_h.T + b).chunk(4, dim=1)
    c = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def lstm_forgetful(x_t, h_prev, c_prev, W_x, W_h, b):
    i, f, g, o = (x_t @ W_x.T + h_prev @ W_h.T + b).chunk(4, dim=1)
    c = torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def lstm_c_first(x_t, h_prev, c_prev, W_x, W_h, b):
    h, c = lstm_chapter(x_t, h_prev, c_prev, W_x, W_h, b)
    return c, h


def gru_reset_first(x_t, h_prev, W_x, W_h, b_x, b_h):
    H = h_prev.shape[1]
    xr, xz, xn = (x_t @ W_x.T + b_x).chunk(3, dim=1)
    r = torch.sigmoid(xr + h_prev @ W_h[:H].T + b_h[:H])
    z = torch.sigmoid(xz + h_prev @ W_h[H:2 * H].T + b_h[H:2 * H])
    n = torch.tanh(xn + (r * h_prev) @ W_h[2 * H:].T + b_h[2 * H:])
    return (1 - z) * n + z * h_prev


def gru_z_swapped(x_t, h_prev, W_x, W_h, b_x, b_h):
    xr, xz, xn = (x_t @ W_x.T + b_x).chunk(3, dim=1)
    hr, hz, hn = (h_prev @ W_h.T + b_h).chunk(3, dim=1)
    r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    return z * n + (1 - z) * h_prev


def gru_zr(x_t, h_prev, W_x, W_h, b_x, b_h):
    xz, xr, xn = (x_t @ W_x.T + b_x).chunk(3, dim=1)
    hz, hr, hn = (h_prev @ W_h.T + b_h).chunk(3, dim=1)
    r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
    return (1 - z) * torch.tanh(xn + r * hn) + z * h_prev


def attention_unscaled(Q, K, V, mask=None):
    scores = Q @ K.transpose(-1, -2)
    if mask is not None:
        scores = scores.masked_fill(mask == 0, -1e9)
    return F.softmax(scores, dim=-1) @ V


def attention_pytorch_mask_meaning(Q, K, V, mask=None):
    scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.size(-1))
    if mask is not None:
        scores = scores.masked_fill(mask, float("-inf"))  # nn.MultiheadAttention's meaning of True
    return torch.softmax(scores, dim=-1) @ V


def attention_columns(Q, K, V, mask=None):
    scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.size(-1))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=2) @ V


def attention_mask_forgotten(Q, K, V, mask=None):
    return torch.softmax(Q @ K.transpose(-2, -1) / math.sqrt(Q.size(-1)), dim=-1) @ V


def causal_strict(T):
    return torch.arange(T)[:, None] > torch.arange(T)[None, :]


def causal_upper(T):
    return torch.triu(torch.ones(T, T, dtype=torch.bool))


def causal_blocked(T):
    return torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)


def pe_cos_first(max_len, d_model):
    pe = pe_chapter(max_len, d_model)
    return pe[:, [j + 1 if j % 2 == 0 else j - 1 for j in range(d_model)]]


def pe_halves(max_len, d_model):
    pe = pe_chapter(max_len, d_model)
    return torch.cat([pe[:, 0::2], pe[:, 1::2]], dim=1)


def pe_exponent_i(max_len, d_model):
    pe = torch.zeros(max_len, d_model)
    for pos in range(max_len):
        for i in range(d_model // 2):
            pe[pos, 2 * i] = math.sin(pos / 10000 ** (i / d_model))
            pe[pos, 2 * i + 1] = math.cos(pos / 10000 ** (i / d_model))
    return pe


def ln_unbiased(x, gamma, beta, eps=1e-5):
    return gamma * (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True) + eps) + beta


def ln_batch(x, gamma, beta, eps=1e-5):
    mu, var = x.mean(0, keepdim=True), x.var(0, unbiased=False, keepdim=True)
    return gamma * (x - mu) / torch.sqrt(var + eps) + beta


def ln_eps_outside(x, gamma, beta, eps=1e-5):
    return gamma * (x - x.mean(-1, keepdim=True)) / (x.std(-1, unbiased=False, keepdim=True) + eps) + beta


def pairs_counter_per_word(words):
    counts = collections.Counter()
    for word in words:
        counts.update(zip(word, word[1:]))  # the word's count forgotten
    return counts


def pairs_set(words):
    counts = collections.defaultdict(int)
    for word, freq in words.items():
        for pair in set(zip(word, word[1:])):
            counts[pair] += freq
    return counts


def pairs_modulo(words):
    counts = collections.Counter()
    for word, freq in words.items():
        for i, a in enumerate(word):
            counts[a, word[(i + 1) % len(word)]] += freq
    return counts


def pairs_combinations(words):
    counts = collections.Counter()
    for word, freq in words.items():
        for pair in itertools.combinations(word, 2):
            counts[pair] += freq
    return counts


def bert_in_place_labels(input_ids, special, rand, action, random_ids, mask_id):
    chosen = (rand < 0.15) & ~special
    input_ids[chosen & (action < 0.8)] = mask_id  # the originals are gone before the labels are read
    replace = chosen & (action >= 0.8) & (action < 0.9)
    input_ids[replace] = random_ids[replace]
    return input_ids, torch.where(chosen, input_ids, -100)


def bert_special_chosen(input_ids, special, rand, action, random_ids, mask_id):
    return bert_mask_where(input_ids, torch.zeros_like(special), rand, action, random_ids, mask_id)


def bert_random_unchosen(input_ids, special, rand, action, random_ids, mask_id):
    chosen = (rand < 0.15) & ~special
    inputs = input_ids.masked_fill(chosen & (action < 0.8), mask_id)
    inputs = torch.where((action >= 0.8) & (action < 0.9), random_ids, inputs)
    return inputs, torch.where(chosen, input_ids, -100)


def bert_labels_inverted(input_ids, special, rand, action, random_ids, mask_id):
    inputs, labels = bert_mask_indexing(input_ids, special, rand, action, random_ids, mask_id)
    return inputs, input_ids.masked_fill(labels != -100, -100)


def bert_all_masked(input_ids, special, rand, action, random_ids, mask_id):
    chosen = (rand < 0.15) & ~special
    return input_ids.masked_fill(chosen, mask_id), input_ids.masked_fill(~chosen, -100)


def pooling_plain_mean(token_outputs, attention_mask):
    return token_outputs.mean(dim=1)


def pooling_divided_by_length(token_outputs, attention_mask):
    B, T, C = token_outputs.shape
    return (token_outputs * attention_mask.unsqueeze(-1)).sum(dim=1) / T


def pooling_normalised(token_outputs, attention_mask):
    return F.normalize(mean_pooling_chapter(token_outputs, attention_mask), p=2, dim=1)


def pooling_no_feature_axis(token_outputs, attention_mask):
    summed = (token_outputs * attention_mask).sum(dim=1)
    return summed / attention_mask.sum(dim=1)


LEARNER_MISTAKES = [
    (check_softmax, softmax_columns, "wrong axis"),
    (check_softmax, softmax_naive, "no max-subtraction"),
    (check_softmax, softmax_global, "wrong sum"),
    (check_softmax, lambda z: F.softmax(z, dim=1), "dim=-1"),
    (check_cross_entropy, ce_sum, "sum over the batch"),
    (check_cross_entropy, ce_book_by_hand, "underflows"),
    (check_cross_entropy, ce_all_pairs, "wrong entries"),
    (check_adamw_step, adam_l2, "Adam with L2"),
    (check_adamw_step, adamw_no_correction, "bias correction"),
    (check_adamw_step, adamw_fresh_state, "restart at every call"),
    (check_conv2d, conv2d_true_convolution, "kernel is flipped"),
    (check_conv2d, conv2d_no_stride, "stride is ignored"),
    (check_conv2d, conv2d_no_padding, "padding is ignored"),
    (check_conv2d, conv2d_no_bias, "bias is missing"),
    (check_max_pool2d, pool_mean, "average pooling"),
    (check_max_pool2d, pool_stride_default_one, "stride=None must mean"),
    (check_max_pool2d, pool_ceil, "run past the edge"),
    (check_conv_output_size, lambda n, k, s, p: (n + 2 * p - k) / s + 1, "not rounded down"),
    (check_conv_output_size, lambda n, k, s, p: (n + 2 * p - k) // s, "+ 1 is missing"),
    (check_conv_output_size, lambda n, k, s, p: (n + p - k) // s + 1, "padding is counted once"),
    (check_clip_grad_norm, clip_each, "its own norm"),
    (check_clip_grad_norm, clip_always, "scaled up"),
    (check_clip_grad_norm, clip_sum_of_norms, "sum of the tensors' norms"),
    (check_lstm_cell, lstm_ifog, "wrong order"),
    (check_lstm_cell, lstm_forgetful, "previous cell state is not used"),
    (check_lstm_cell, lstm_c_first, "return (h, c)"),
    (check_gru_cell, gru_reset_first, "before the matrix product"),
    (check_gru_cell, gru_z_swapped, "z and 1 - z are swapped"),
    (check_gru_cell, gru_zr, "wrong order"),
    (check_attention, attention_unscaled, "1/sqrt(d_k) scaling is missing"),
    (check_attention, attention_pytorch_mask_meaning, "inverted"),
    (check_attention, attention_columns, "wrong axis"),
    (check_attention, attention_mask_forgotten, "mask is not applied"),
    (check_causal_mask, causal_strict, "diagonal is excluded"),
    (check_causal_mask, causal_upper, "transposed"),
    (check_causal_mask, causal_blocked, "inverted"),
    (check_positional_encoding, pe_cos_first, "swapped"),
    (check_positional_encoding, pe_halves, "concatenated"),
    (check_positional_encoding, pe_exponent_i, "exponent is wrong"),
    (check_layer_norm, ln_unbiased, "unbiased"),
    (check_layer_norm, ln_batch, "batch axis"),
    (check_layer_norm, ln_eps_outside, "outside the square root"),
    (check_pair_counts, pairs_counter_per_word, "weight it by the word's count"),
    (check_pair_counts, pairs_set, "counted once"),
    (check_pair_counts, pairs_modulo, "paired with the first"),
    (check_pair_counts, pairs_combinations, "not neighbours"),
    (check_bert_masking, bert_in_place_labels, "read after the corruption"),
    (check_bert_masking, bert_special_chosen, "special tokens"),
    (check_bert_masking, bert_random_unchosen, "not chosen"),
    (check_bert_masking, bert_labels_inverted, "swapped"),
    (check_bert_masking, bert_all_masked, "80%"),
    (check_mean_pooling, pooling_plain_mean, "averaged in"),
    (check_mean_pooling, pooling_divided_by_length, "divided by T"),
    (check_mean_pooling, pooling_normalised, "separate step"),
    (check_mean_pooling, pooling_no_feature_axis, "feature axis"),
    (check_box_iou, learner_iou_unclamped, "Clamp the overlap's width and height"),
    (check_box_iou, learner_iou_voc, "inclusive pixel indices"),
    (check_box_iou, learner_iou_sum, "counts the overlap twice"),
    (check_sampling_probs, learner_sampling_multiplies, "multiplied by the temperature"),
    (check_sampling_probs, learner_sampling_zero_filled, "exp(0) = 1"),
    (check_sampling_probs, learner_sampling_scatter, "only k tokens were kept"),
    (check_whisper_scale, learner_whisper_ln, "natural logarithm"),
    (check_whisper_scale, learner_whisper_per_frame, "each frame's loudest band"),
    (check_whisper_scale, learner_whisper_precedence, "division binds tighter"),
    (check_patch_embedding, learner_by_columns, "column order"),
    (check_patch_embedding, learner_view_only, "consecutive pixels"),
    (check_patch_embedding, learner_channels_last, "channels come last"),
    (check_causal_conv1d, learner_symmetric_padding, "splits the (k - 1) d zeros"),
    (check_causal_conv1d, learner_taps_adjacent, "the taps are 1 apart"),
    (check_causal_conv1d, learner_reversed_taps, "the kernel is reversed"),
    (check_int8_linear, learner_forgot_zero_point, "still holds the zero point"),
    (check_int8_linear, learner_no_rounding, "float32 layer"),
    (check_int8_linear, learner_uint8_range, "255 levels"),
    (check_chinchilla_optimal, learner_chinchilla_2nd, "not 2 N D"),
    (check_chinchilla_optimal, lambda c, tokens_per_param=20: (math.sqrt(c / 6 / tokens_per_param) * tokens_per_param,
                                                               math.sqrt(c / 6 / tokens_per_param)),
     "(tokens, parameters)"),
    (check_chinchilla_optimal, lambda c, tokens_per_param=20: (c / 120, c / 6), "no square root"),
    (check_flip_labels, learner_flip_same_class, "kept their class"),
    (check_flip_labels, learner_flip_bernoulli, "a random number of labels"),
    (check_flip_labels, lambda y, f, c, g: flip_chapter(y, f * c / len(y), c, g), "share of the examples"),
    (check_kv_cache_bytes, learner_kv_bits, "bits rather than bytes"),
    (check_kv_cache_bytes, lambda n, h, d, t=1, b=1, p=2: n * h * d * t * b * p, "a key and a value"),
    (check_kv_cache_bytes, lambda n, h, d, t=1, b=1, p=2: 2 * h * d * t * b * p, "every layer keeps"),
]


def test_learner_mistakes_cover_three_per_checker():
    assert all(sum(c is check for c, _, _ in LEARNER_MISTAKES) >= 3 for check in CORRECT)


@pytest.mark.parametrize(("check", "answer", "phrase"), LEARNER_MISTAKES,
                         ids=lambda v: v if isinstance(v, str) else getattr(v, "__name__", "?"))
def test_mistakes_written_by_a_learner_get_the_right_hint(check, answer, phrase):
    result = check(answer)
    assert not result.passed, str(result)
    assert result.hint is not None and phrase in result.hint, str(result)


# ---------------------------------------------------------------------------
# Unfinished answers, exceptions, wrong shapes, strict mode, rendering


def _unfinished_raise(*args, **kwargs):
    raise NotImplementedError


def _unfinished_none(*args, **kwargs):
    return None


def _unfinished_ellipsis(*args, **kwargs):
    ...
    return ...


def _unfinished_pass(*args, **kwargs):
    pass


@pytest.mark.parametrize("check", list(CORRECT), ids=lambda c: c.__name__)
@pytest.mark.parametrize("answer", [_unfinished_raise, _unfinished_none, _unfinished_ellipsis, _unfinished_pass])
def test_an_unfinished_answer_is_not_finished_yet(check, answer):
    result = check(answer)
    assert not result.passed and result.unfinished
    assert "not finished yet" in result.message and "Traceback" not in str(result)
    with pytest.raises(AssertionError, match="not finished yet"):
        check(answer, strict=True)


@pytest.mark.parametrize("check", list(CORRECT), ids=lambda c: c.__name__)
def test_an_answer_that_raises_gets_the_exception_and_the_input_shapes(check):
    def broken(*args, **kwargs):
        raise ValueError("boom")

    result = check(broken)
    assert not result.passed and not result.unfinished
    assert "your function raised ValueError: boom on case '" in result.message
    assert "Traceback" not in str(result)


def test_the_exception_message_names_the_shapes_and_the_line():
    result = check_softmax(lambda z: z @ torch.ones(3))
    assert result.message.startswith("your function raised RuntimeError: ")
    assert "on case 'random scores' (z (4, 7) float32)" in result.message
    assert "at line " in result.message
    result = check_conv2d(lambda x, w, b, s, p: x.view(-1, 5) @ w)
    assert "x (1, 1, 5, 5) float32, weight (1, 1, 3, 3) float32, bias None, stride 1, padding 0" in result.message


def _add_a_dimension(output):
    if isinstance(output, torch.Tensor):
        return output.unsqueeze(0)
    return type(output)(_add_a_dimension(o) for o in output)


@pytest.mark.parametrize("check", [c for c in CORRECT
                                   if c not in (check_conv_output_size, check_adamw_step, check_pair_counts,
                                                check_chinchilla_optimal, check_kv_cache_bytes, check_flip_labels)],
                         ids=lambda c: c.__name__)
def test_a_wrong_shape_is_named(check):
    correct = CORRECT[check][1]
    result = check(lambda *args: _add_a_dimension(correct(*args)))
    assert not result.passed
    assert "expected shape (" in result.message and ", got (1" in result.message, result.message


def test_wrong_shape_messages_read_naturally():
    assert check_softmax(lambda z: softmax_max_subtracted(z).mT).message == (
        "on case 'random scores' (z (4, 7) float32): expected shape (4, 7), got (7, 4).")
    result = check_max_pool2d(lambda x, k, s: F.max_pool2d(x, k, 1))
    assert "expected shape (2, 3, 3, 3), got (2, 3, 5, 5)" in result.message and "stride is ignored" in result.hint
    assert check_lstm_cell(lambda *a: lstm_chapter(*a)[0]).message.endswith("expected a tuple of 2, got a tensor "
                                                                             "of shape (3, 4).")


def test_an_unrelated_exception_gets_no_hint():
    result = check_softmax(lambda z: z.exp() @ z)  # a RuntimeError too, but not the one a missing keepdim raises
    assert result.message.startswith("your function raised RuntimeError: mat1 and mat2 shapes cannot be multiplied")
    assert result.hint is None and result.mistake is None
    assert check_softmax(learning_checks._softmax_no_keepdim).mistake == "sum without keepdim"


def test_a_wrong_mask_says_where():
    assert check_causal_mask(causal_upper).message == (
        "on case 'T = 2' (T 2): 2 of 4 entries differ, the first at index (0, 1): expected False, got True.")


def test_a_float_causal_mask_is_asked_to_be_boolean():
    result = check_causal_mask(lambda T: torch.ones(T, T).tril())
    assert not result.passed and "expected dtype torch.bool, got torch.float32" in result.message


def test_conv_output_size_wants_whole_numbers():
    result = check_conv_output_size(lambda n, k, s, p: (n + 2 * p - k) / s + 1)
    assert result.message == "on case 'n=8, k=3, stride=2, padding=0' (n 8, k 3, stride 2, padding 0): expected 3, got 3.5."


def test_adamw_that_returns_instead_of_updating_in_place_is_told_so():
    result = check_adamw_step(lambda params, state, lr, **kwargs: [p - lr * p.grad for p in params])
    assert "expected the parameters updated in place" in result.message


def test_a_path_without_return_is_pointed_out():
    def attention_missing_return(Q, K, V, mask=None):
        if mask is None:
            return attention_chapter(Q, K, V)
        attention_chapter(Q, K, V, mask)

    result = check_attention(attention_missing_return)
    assert not result.passed and not result.unfinished
    assert result.message.startswith("your function returned None on case 'a padding mask' (Q (2, 2, 6, 8) float32")
    assert result.message.endswith("does every path end with a return?")


def test_passing_a_result_instead_of_the_function_is_explained():
    result = check_softmax(torch.zeros(3))
    assert not result.passed and "pass the function itself" in result.message
    assert check_softmax(None).unfinished and check_softmax(...).unfinished


def test_a_learner_function_that_edits_its_inputs_does_not_change_the_reference():
    def in_place(z):
        z -= z.max(dim=-1, keepdim=True).values
        z.exp_()
        return z / z.sum(dim=-1, keepdim=True)

    assert check_softmax(in_place).passed


def test_the_result_renders_as_text_and_html_and_raises_on_request():
    good, bad, unfinished = check_softmax(softmax_max_subtracted), check_softmax(softmax_naive), \
        check_softmax(_unfinished_raise)
    assert str(good) == repr(good) == "PASSED softmax: matches the reference on all 7 cases."
    assert bool(good) and not bool(bad)
    assert str(bad).startswith("FAILED softmax: on case 'large scores'") and "\nHint: no max-subtraction" in str(bad)
    assert str(unfinished).startswith("NOT FINISHED softmax: not finished yet")
    assert "#1a7f37" in good._repr_html_() and "#b42318" in bad._repr_html_() and "#8a6100" in unfinished._repr_html_()
    assert "Hint:" in bad._repr_html_() and "&lt;" in CheckResult("x", False, "a < b")._repr_html_()
    assert good.raise_if_failed() is good
    with pytest.raises(AssertionError, match=r"(?s)FAILED softmax: .*Hint: no max-subtraction"):
        bad.raise_if_failed()


def test_checks_are_deterministic():
    for check, mutants in MUTANTS.items():
        wrong = mutants[0].fn
        assert str(check(wrong)) == str(check(wrong))


def test_the_reference_cases_agree_with_the_books_formulas():
    # The checkers' references are PyTorch's functions; the formulas the chapters write agree with them.
    z = torch.randn(3, 5)
    assert_close(softmax_max_subtracted(z), torch.softmax(z, -1))
    assert_close(pe_chapter(40, 16), sinusoidal_table(40, 16))
    assert torch.equal(causal_compare(7), causal_mask(7))


def test_each_checker_names_a_section_its_chapter_has():
    # The footer test (tests/test_introduced_in.py) checks the checkers in __all__ against a chapter's notebooks
    # merged; this one says it plainly: the footer names the checker's chapter and a section of the chapter's own
    # notebook (not its exercise notebook, which has no numbered sections).
    chapters = {check_softmax: 1, check_cross_entropy: 1, check_adamw_step: 1, check_conv2d: 2, check_max_pool2d: 2,
                check_conv_output_size: 2, check_clip_grad_norm: 3, check_lstm_cell: 3, check_gru_cell: 3,
                check_attention: 4, check_causal_mask: 4, check_positional_encoding: 4, check_layer_norm: 4,
                check_pair_counts: 5, check_bert_masking: 5, check_mean_pooling: 5, check_box_iou: 6,
                check_sampling_probs: 6, check_whisper_scale: 6, check_patch_embedding: 7,
                check_causal_conv1d: 7, check_int8_linear: 7,
                check_chinchilla_optimal: 8, check_flip_labels: 8, check_kv_cache_bytes: 8}
    assert set(chapters) == set(CORRECT)
    for check, chapter in [*chapters.items(), (CheckResult, 1)]:
        last = inspect.getdoc(check).splitlines()[-1]
        match = re.fullmatch(r"Introduced in §(\d+)\.(\d+)\.", last)
        assert match and int(match.group(1)) == chapter, (check.__name__, last)
        paths = [p for p in sorted((REPO / "notebooks").glob(f"0{chapter}_*.ipynb"))
                 if not p.stem.endswith("_exercises")]
        assert paths, f"{check.__name__}: chapter {chapter}'s notebook (notebooks/0{chapter}_*.ipynb) is missing"
        notebook = json.loads(paths[0].read_text())
        headings = {line for cell in notebook["cells"] if cell["cell_type"] == "markdown"
                    for line in "".join(cell["source"]).splitlines() if line.startswith("## ")}
        assert any(h.startswith(f"## {match.group(1)}.{match.group(2)} ") for h in headings), (check.__name__, last)


# ---------------------------------------------------------------------------
# Chapter 5's checkers: what their cases hold and what they say


def test_pair_counts_on_sennrich_corpus_are_the_papers():
    counts = pairs_counter(pretraining_checks._SENNRICH)
    assert counts["e", "s"] == counts["s", "t"] == counts["t", "</w>"] == 9  # the first merges of Sennrich et al.
    assert counts["l", "o"] == counts["o", "w"] == 7 and counts["w", "e"] == 8
    assert sum(counts.values()) == 5 * 3 + 2 * 5 + 6 * 6 + 3 * 6  # each word's count times its len - 1 pairs


def test_pair_counts_that_are_not_a_dict_of_pairs_are_told_so():
    result = check_pair_counts(lambda words: list(pairs_counter(words).items()))
    assert "expected a dict {(a, b): count}, got a list" in result.message
    result = check_pair_counts(lambda words: {" ".join(p): n for p, n in pairs_counter(words).items()})
    assert "expected the dict's keys to be pairs of symbols, tuples such as ('l', 'o'); got the key" in result.message
    result = check_pair_counts(lambda words: {p: [n] for p, n in pairs_counter(words).items()})
    assert "expected a count (a number) for the pair" in result.message
    result = check_pair_counts(lambda words: {("x", "y"): 1})
    assert "the key ('x', 'y') is not a pair of symbols of the words" in result.message
    # zero counts, float counts and a Counter are all fine
    assert check_pair_counts(lambda words: {**{p: 0.0 for p in pairs_combinations(words)}, **pairs_counter(words)})
    assert check_pair_counts(lambda words: {p: float(n) for p, n in pairs_defaultdict(words).items()})


def test_a_wrong_pair_count_names_the_table_rows_and_columns():
    message = check_pair_counts(pairs_set).message
    assert message == ("on case 'a repeated pair in one word' (words {('a', 'a', 'a'): 3, ('a', 'b'): 2}, rows and "
                       "columns 'a b'): 1 of 4 entries differ, the first at index (0, 0): expected 6, got 3.")


def test_bert_masking_cases_reach_every_branch():
    # Over the cases, chosen positions become [MASK], a random id and stay unchanged; the hand-built case puts
    # draws exactly on the thresholds 0.15, 0.8 and 0.9, and its first row is all special tokens.
    branches = torch.zeros(3, dtype=torch.long)
    for case in pretraining_checks._masking_cases():
        a = case.args
        chosen = (a["rand"] < 0.15) & ~a["special"]
        masked, swapped = chosen & (a["action"] < 0.8), chosen & (a["action"] >= 0.8) & (a["action"] < 0.9)
        branches += torch.stack([masked.sum(), swapped.sum(), (chosen & (a["action"] >= 0.9)).sum()])
    assert (branches >= 3).all(), branches
    edge = pretraining_checks._masking_cases()[-1].args
    inputs, labels = bert_mask_loops(*edge.values())
    assert torch.equal(inputs[0], edge["input_ids"][0]) and (labels[0] == -100).all()
    assert inputs[1].tolist() == [101, 103, 3013, 2003, 103, 2005, 102]
    assert labels[1].tolist() == [-100, 2001, 2002, 2003, 2004, -100, -100]


def test_bert_masking_wants_long_outputs():
    result = check_bert_masking(lambda *args: tuple(t.int() for t in bert_mask_indexing(*args)))
    assert not result.passed and "expected dtype torch.int64, got torch.int32" in result.message


def test_mean_pooling_equals_the_tokens_own_mean():
    case = pretraining_checks._pooling_cases()[1]  # lengths 6, 4, 2
    x, mask = case.args.values()
    pooled = mean_pooling_chapter(x, mask)
    assert_close(pooled[2], x[2, :2].mean(dim=0))
    assert_close(pooled[1], x[1, :4].mean(dim=0))
