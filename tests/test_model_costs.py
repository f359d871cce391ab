"""Tests for bigmodel_lib.model_costs (§8.6): the arithmetic against published counts and a real cache.

The parameter counts equal the published sizes of Llama 2 7B and 70B (Touvron et al. 2023, as stored in
their released checkpoints) and Mixtral 8x7B (Jiang et al. 2024); the training memory equals ZeRO's
worked example (Rajbhandari et al. 2020: 7.5B parameters need 120 GB); the key-value cache equals
vLLM's per-token figure for OPT-13B (Kwon et al. 2023: 800 KB) and the bytes of the
:class:`~bigmodel_lib.models.gpt.KVCache` that the book's GPT fills.
"""

from __future__ import annotations

import pytest
import torch

from bigmodel_lib.memory import tensor_bytes
from bigmodel_lib.model_costs import (
    MIXED_PRECISION_ADAM_BYTES,
    decoder_parameters,
    kv_cache_bytes,
    training_energy_kwh,
    training_flops,
    training_gpu_hours,
    training_memory_bytes,
)
from bigmodel_lib.models.gpt import GPT, GPTConfig, KVCache

LLAMA2_7B = dict(vocab_size=32000, d_model=4096, n_layers=32, n_heads=32, n_kv_heads=32, d_ff=11008)
LLAMA2_70B = dict(vocab_size=32000, d_model=8192, n_layers=80, n_heads=64, n_kv_heads=8, d_ff=28672)
MIXTRAL = dict(vocab_size=32000, d_model=4096, n_layers=32, n_heads=32, n_kv_heads=8, d_ff=14336,
               n_experts=8, experts_per_token=2)


def test_parameter_counts_equal_the_published_checkpoints():
    assert decoder_parameters(**LLAMA2_7B) == {"total": 6_738_415_616, "active": 6_738_415_616}
    assert decoder_parameters(**LLAMA2_70B)["total"] == 68_976_648_192
    mixtral = decoder_parameters(**MIXTRAL)
    assert mixtral["total"] == 46_702_792_704
    assert round(mixtral["total"] / 1e9, 1) == 46.7 and round(mixtral["active"] / 1e9, 1) == 12.9  # Mistral AI


def test_parameter_counts_equal_a_module_built_from_the_same_sizes():
    # An independent count: the layers built with nn.Linear / nn.Embedding on the meta device.
    from torch import nn
    v, d, L, h, kv, ff, E = 50, 16, 3, 4, 2, 24, 4
    hd = d // h
    with torch.device("meta"):
        layer = nn.ModuleDict(dict(q=nn.Linear(d, d, bias=False), k=nn.Linear(d, kv * hd, bias=False),
                                   v=nn.Linear(d, kv * hd, bias=False), o=nn.Linear(d, d, bias=False),
                                   router=nn.Linear(d, E, bias=False), n1=nn.RMSNorm(d), n2=nn.RMSNorm(d),
                                   experts=nn.ModuleList(nn.ModuleList([nn.Linear(d, ff, bias=False),
                                                                        nn.Linear(d, ff, bias=False),
                                                                        nn.Linear(ff, d, bias=False)])
                                                         for _ in range(E))))
        model = nn.ModuleList([nn.Embedding(v, d), nn.RMSNorm(d), nn.Linear(d, v, bias=False)])
    per_layer = sum(p.numel() for p in layer.parameters())
    per_expert = sum(p.numel() for p in layer["experts"][0].parameters())
    outer = sum(p.numel() for p in model.parameters())
    got = decoder_parameters(v, d, L, h, kv, ff, n_experts=E, experts_per_token=2)
    assert got["total"] == L * per_layer + outer
    assert got["active"] == L * (per_layer - (E - 2) * per_expert) + outer
    assert decoder_parameters(v, d, L, h, kv, ff, tied_embeddings=True)["total"] == \
        decoder_parameters(v, d, L, h, kv, ff)["total"] - v * d


def test_training_memory_is_16_bytes_per_parameter_as_in_zero():
    assert sum(MIXED_PRECISION_ADAM_BYTES.values()) == 16
    memory = training_memory_bytes(7.5e9)
    assert memory["total"] == 120e9  # ZeRO, section 1: "7.5B parameters ... 120GB"
    assert memory["weights"] == memory["gradients"] == 15e9 and memory["optimizer state"] == 60e9
    fp32 = training_memory_bytes(1000, {"weights": 4, "gradients": 4, "optimizer state": 8})
    assert fp32 == {"weights": 4000, "gradients": 4000, "optimizer state": 8000, "total": 16000}


def test_kv_cache_per_token_equals_vllm_figure_for_opt_13b():
    # OPT-13B: 40 layers, 40 heads of 128, fp16: 2 x 5120 x 40 x 2 bytes = 800 KB per token
    assert kv_cache_bytes(40, 40, 128) == 800 * 1024
    assert kv_cache_bytes(40, 40, 128, seq_len=7, batch=3) == 21 * 800 * 1024


@pytest.mark.parametrize("batch, tokens", [(1, 1), (2, 9), (3, 16)])
def test_kv_cache_equals_the_bytes_of_the_gpts_filled_cache(batch, tokens):
    torch.manual_seed(0)
    config = GPTConfig(block_size=32, vocab_size=11, n_layer=3, n_head=4, n_embd=32)
    model = GPT(config).eval()
    cache = KVCache()
    with torch.no_grad():
        model.forward_cached(torch.randint(0, 11, (batch, tokens - tokens // 2)), cache)
        if tokens // 2:
            model.forward_cached(torch.randint(0, 11, (batch, tokens // 2)), cache)  # appended, as in decoding
    assert cache.length == tokens
    held = [t for pair in cache.layers for t in pair]
    expected = kv_cache_bytes(config.n_layer, config.n_head, config.n_embd // config.n_head, tokens, batch, bytes_per=4)
    assert sum(t.numel() * t.element_size() for t in held) == expected
    assert tensor_bytes(held) == expected  # no storage larger than the tensors: the cache holds exactly this


def test_flops_hours_and_energy_by_hand():
    assert training_flops(175e9, 300e9) == pytest.approx(3.15e23)  # GPT-3 (chapter 1)
    hours = training_gpu_hours(7e9, 2e12, gpu_flops=312e12, mfu=0.5)
    torch.testing.assert_close(hours, 6 * 7e9 * 2e12 / (312e12 * 0.5) / 3600)
    # Llama 2 7B's reported 184,320 GPU-hours at 400 W: 73,728 kWh
    assert training_energy_kwh(184_320, 400) == pytest.approx(73_728)


@pytest.mark.parametrize("call, words", [
    (lambda: decoder_parameters(32000, 4096, 32, 30, 30, 11008), "divisible by n_heads"),
    (lambda: decoder_parameters(32000, 4096, 32, 32, 5, 11008), "divisible by n_kv_heads"),
    (lambda: decoder_parameters(32000, 4096, 32, 32, 8, 11008, n_experts=2, experts_per_token=3), "experts_per_token"),
    (lambda: decoder_parameters(32000, 4096.5, 32, 32, 8, 11008), "d_model"),
    (lambda: training_memory_bytes(0), "n_params"),
    (lambda: training_memory_bytes(10, {"weights": -2}), "'weights'"),
    (lambda: kv_cache_bytes(32, 8, 128, seq_len=0), "seq_len"),
    (lambda: kv_cache_bytes(32, 8, 128, bytes_per="2"), "bytes_per"),
    (lambda: training_gpu_hours(7e9, 2e12, 312e12, mfu=40), "mfu"),
    (lambda: training_energy_kwh(-1, 400), "gpu_hours"),
])
def test_bad_input_raises_a_clear_error(call, words):
    with pytest.raises(ValueError, match=words):
        call()
