"""Tests for bigmodel_lib.models.gpt (chapter 4, section 4.6): the nanoGPT layout,
the same logits, loss and gradients as a reference GPT built from PyTorch's
modules (tests/reference_models.py), fused vs from-scratch attention,
causality, sampling, bf16 autocast, torch.compile, a short training run and
errors on bad input."""

from __future__ import annotations

import dataclasses
import importlib.util
import pathlib

import pytest
import torch
import torch._dynamo
import torch.nn as nn
from reference_models import ReferenceGPT, gpt_to_reference_state_dict
from torch.testing import assert_close

from bigmodel_lib.models.gpt import GPT, GPTConfig, KVCache

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(**overrides) -> GPTConfig:
    return dataclasses.replace(GPTConfig(block_size=16, vocab_size=11, n_layer=2, n_head=2, n_embd=16), **overrides)


def test_default_config_is_small():
    c = GPTConfig()
    assert (c.n_layer, c.n_head, c.n_embd, c.block_size) == (4, 4, 128, 64)
    assert c.fused_attention


def test_layer_names_and_shapes_follow_nanogpt():
    c = tiny(n_layer=1)
    C, V, T = c.n_embd, c.vocab_size, c.block_size
    expected = {
        "transformer.wte.weight": (V, C),
        "transformer.wpe.weight": (T, C),
        "transformer.h.0.ln_1.weight": (C,),
        "transformer.h.0.ln_1.bias": (C,),
        "transformer.h.0.attn.c_attn.weight": (3 * C, C),
        "transformer.h.0.attn.c_attn.bias": (3 * C,),
        "transformer.h.0.attn.c_proj.weight": (C, C),
        "transformer.h.0.attn.c_proj.bias": (C,),
        "transformer.h.0.ln_2.weight": (C,),
        "transformer.h.0.ln_2.bias": (C,),
        "transformer.h.0.mlp.c_fc.weight": (4 * C, C),
        "transformer.h.0.mlp.c_fc.bias": (4 * C,),
        "transformer.h.0.mlp.c_proj.weight": (C, 4 * C),
        "transformer.h.0.mlp.c_proj.bias": (C,),
        "transformer.ln_f.weight": (C,),
        "transformer.ln_f.bias": (C,),
        "lm_head.weight": (V, C),
    }
    source = GPT(c)
    assert {name: tuple(t.shape) for name, t in source.state_dict().items()} == expected
    # A state-dict copy is all it takes to move weights between models of the same shape.
    other = GPT(c)
    idx = torch.randint(0, V, (2, 5))
    assert not torch.allclose(other(idx)[0], source(idx)[0])  # different random weights
    other.load_state_dict(source.state_dict())
    assert_close(other(idx)[0], source(idx)[0])


def test_weight_tying_and_parameter_count():
    c = tiny(bias=True)
    model = GPT(c)
    assert model.lm_head.weight is model.transformer.wte.weight
    C, V, T, L = c.n_embd, c.vocab_size, c.block_size, c.n_layer
    per_block = 12 * C * C + 13 * C  # ln_1, c_attn, c_proj, ln_2, c_fc, c_proj
    assert model.num_parameters() == V * C + T * C + L * per_block + 2 * C  # token table counted once
    assert model.num_parameters(non_embedding=True) == model.num_parameters() - T * C
    assert model.flops_per_token() == 6 * model.num_parameters(non_embedding=True) + 12 * L * C * T
    assert GPT(tiny(bias=False)).num_parameters() == V * C + T * C + L * (12 * C * C + 2 * C) + C  # no biases


def test_initial_loss_is_close_to_uniform_guessing():
    torch.manual_seed(0)
    c = tiny()
    idx, targets = torch.randint(0, c.vocab_size, (2, 4, 16))
    _, loss = GPT(c)(idx, targets=targets)
    assert loss.item() == pytest.approx(torch.log(torch.tensor(11.0)).item(), abs=0.1)


def test_fused_attention_matches_from_scratch_attention():
    torch.manual_seed(0)
    fused = GPT(tiny(fused_attention=True))
    scratch = GPT(tiny(fused_attention=False))
    scratch.load_state_dict(fused.state_dict())
    idx = torch.randint(0, 11, (3, 16))
    logits_fused, loss_fused = fused(idx, targets=idx)
    logits_scratch, loss_scratch = scratch(idx, targets=idx)
    assert_close(logits_fused, logits_scratch)
    loss_fused.backward()
    loss_scratch.backward()
    assert_close(fused.transformer.h[0].attn.c_attn.weight.grad, scratch.transformer.h[0].attn.c_attn.weight.grad)


@pytest.mark.parametrize("overrides", [{}, {"fused_attention": False}, {"bias": False}])
def test_gpt_matches_a_reference_gpt_built_from_pytorch_modules(overrides):
    """With copied weights the library GPT and ReferenceGPT give the same logits, loss and gradients."""
    torch.manual_seed(0)
    c = tiny(**overrides)
    ours, reference = GPT(c).eval(), ReferenceGPT(c).eval()
    # Same layer details, not looser tolerances: LayerNorm eps and the exact (erf) GELU.
    block, layer = ours.transformer.h[0], reference.encoder.layers[0]
    norms = (block.ln_1, block.ln_2, ours.transformer.ln_f, layer.norm1, layer.norm2, reference.ln_f)
    assert {norm.eps for norm in norms} == {1e-5}
    assert isinstance(layer.activation, nn.GELU) and layer.activation.approximate == block.mlp.gelu.approximate
    reference.load_state_dict(gpt_to_reference_state_dict(ours.state_dict()))  # strict: every name mapped
    assert reference.lm_head.weight is reference.wte.weight  # still tied after the copy

    idx = torch.randint(0, c.vocab_size, (3, c.block_size))
    targets = torch.randint(0, c.vocab_size, (3, c.block_size))
    targets[0, :4] = -100  # ignored by both
    logits, loss = ours(idx, targets)
    ref_logits, ref_loss = reference(idx, targets)
    assert_close(logits, ref_logits)
    assert_close(loss, ref_loss)
    loss.backward()
    ref_loss.backward()
    last = c.n_layer - 1
    pairs = [
        (ours.transformer.wte.weight, reference.wte.weight),  # tied: embedding + output layer
        (ours.transformer.h[0].attn.c_attn.weight, reference.encoder.layers[0].self_attn.in_proj_weight),
        (ours.transformer.h[last].mlp.c_fc.weight, reference.encoder.layers[last].linear1.weight),
        (ours.transformer.h[last].ln_2.weight, reference.encoder.layers[last].norm2.weight),
    ]
    for p, ref_p in pairs:
        assert_close(p.grad, ref_p.grad)


@pytest.mark.parametrize("fused_attention", [True, False])
def test_gpt_never_looks_ahead(fused_attention):
    torch.manual_seed(0)
    model = GPT(tiny(fused_attention=fused_attention)).eval()
    idx = torch.randint(0, 11, (2, 12))
    logits, _ = model(idx)
    for t in range(11):
        changed = idx.clone()
        changed[:, t + 1 :] = (changed[:, t + 1 :] + 1) % 11  # change every token after t
        logits_changed, _ = model(changed)
        assert_close(logits_changed[:, : t + 1], logits[:, : t + 1])
        assert not torch.allclose(logits_changed[:, t + 1], logits[:, t + 1])


def test_generate_shapes_greedy_and_top_k():
    torch.manual_seed(0)
    model = GPT(tiny())
    model.train()
    idx = torch.randint(0, 11, (2, 3))
    out = model.generate(idx, max_new_tokens=20, temperature=0.0)  # past block_size: the context is cropped
    assert out.shape == (2, 23) and torch.equal(out[:, :3], idx)
    assert model.training  # generate switched to eval mode and back
    # Greedy by hand: append the argmax of the last position, one token at a time.
    expected = idx
    with torch.no_grad():
        for _ in range(5):
            logits, _ = model.eval()(expected[:, -16:])
            expected = torch.cat([expected, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out[:, :8], expected)
    assert torch.equal(model.generate(idx, 5, temperature=1.0, top_k=1), expected)  # top-1 sampling is greedy
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    sample = model.generate(idx, 10, temperature=1.5, top_k=4, generator=g1)
    assert torch.equal(sample, model.generate(idx, 10, temperature=1.5, top_k=4, generator=g2))


def test_top_k_keeps_only_the_k_most_likely_tokens():
    torch.manual_seed(0)
    model = GPT(tiny()).eval()
    idx = torch.randint(0, 11, (1, 4))
    logits, _ = model(idx)
    allowed = set(logits[0, -1].topk(3).indices.tolist())
    generator = torch.Generator().manual_seed(0)
    firsts = {model.generate(idx, 1, temperature=5.0, top_k=3, generator=generator)[0, -1].item() for _ in range(60)}
    assert firsts <= allowed and len(firsts) > 1


def test_training_learns_a_repeating_pattern():
    torch.manual_seed(0)
    model = GPT(tiny(vocab_size=5))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    pattern = torch.arange(5).repeat(8)  # 0 1 2 3 4 0 1 2 ...
    losses = []
    for _ in range(60):
        starts = torch.randint(0, 5, (16,))
        batch = torch.stack([pattern[s : s + 17] for s in starts.tolist()])  # (16, 17)
        _, loss = model(batch[:, :-1], targets=batch[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
    assert model.generate(torch.tensor([[2, 3]]), 8, temperature=0.0).tolist() == [[2, 3, 4, 0, 1, 2, 3, 4, 0, 1]]


def test_bf16_autocast_gives_nearly_the_fp32_loss():
    torch.manual_seed(0)
    model = GPT(tiny())
    idx = torch.randint(0, 11, (2, 16))
    _, loss_fp32 = model(idx, targets=idx)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        logits, loss_bf16 = model(idx, targets=idx)
    assert logits.dtype == torch.bfloat16
    assert loss_bf16.dtype == torch.float32  # the loss is computed in fp32
    assert loss_bf16.item() == pytest.approx(loss_fp32.item(), rel=2e-2)
    loss_bf16.backward()
    assert torch.isfinite(model.transformer.wte.weight.grad).all()


@pytest.mark.skipif(
    not torch._dynamo.is_dynamo_supported(), reason="torch.compile does not support this Python/torch pair"
)
def test_torch_compile_captures_the_whole_model_in_one_graph():
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = GPT(tiny(n_layer=1)).eval()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)  # fullgraph: fail on any graph break
    idx = torch.randint(0, 11, (2, 8))
    assert_close(compiled(idx)[0], model(idx)[0])


# ---------------------------------------------------------------------------
# The benchmark (benchmarks/bench_gpt.py)


def _load_benchmark():
    path = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "bench_gpt.py"
    spec = importlib.util.spec_from_file_location("bench_gpt", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_runs_and_reports_a_ratio(capsys):
    bench = _load_benchmark()
    args = "--device cpu --n-layer 1 --n-head 2 --n-embd 16 --block-size 8 --batch-size 2 --rounds 1 --steps 1"
    results = bench.main(args.split() + ["--warmup", "1", "--threads", "1"])
    out = capsys.readouterr().out
    assert "library GPT" in out and "PyTorch baseline" in out and "ratio (library / baseline step time)" in out
    assert results["ratio"] == pytest.approx(results["library GPT"]["wall_s"] / results["PyTorch baseline"]["wall_s"])
    assert bench.peak_flops(torch.device("cpu"), peak_tflops=None) is None
    assert bench.peak_flops(torch.device("cpu"), peak_tflops=100.0) == 1e14


# ---------------------------------------------------------------------------
# Bad input


def test_sequence_longer_than_block_size():
    model = GPT(tiny())
    with pytest.raises(ValueError, match=r"at most block_size=16 tokens.*got T=17"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_wrong_rank_dtype_and_width():
    model = GPT(tiny())
    with pytest.raises(ValueError, match=r"idx of shape \(B, T\) and an integer dtype, got shape \(5,\)"):
        model(torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"got shape \(1, 5\) and dtype torch.float32"):
        model(torch.zeros(1, 5))
    with pytest.raises(ValueError, match=r"targets of the same shape as idx \(1, 5\), got \(1, 4\)"):
        model(torch.zeros(1, 5, dtype=torch.long), targets=torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"n_embd divisible by n_head, got n_embd=16 and n_head=3"):
        GPT(tiny(n_head=3))
    with pytest.raises(ValueError, match=r"top_k between 1 and vocab_size=11, got 12"):
        model.generate(torch.zeros(1, 2, dtype=torch.long), 1, top_k=12)
    with pytest.raises(ValueError, match=r"temperature >= 0, got -1"):
        model.generate(torch.zeros(1, 2, dtype=torch.long), 1, temperature=-1)


# The KV cache (section 4.6): the same logits and tokens, and linear work per new token.

@pytest.mark.parametrize("fused_attention", [True, False])
def test_forward_cached_in_chunks_equals_one_forward(fused_attention):
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=50, n_layer=2, n_head=4, n_embd=32,
                          fused_attention=fused_attention)).eval()
    idx = torch.randint(0, 50, (3, 12))
    cache = KVCache()
    with torch.no_grad():
        chunks = [model.forward_cached(idx[:, a:b], cache) for a, b in ((0, 5), (5, 6), (6, 12))]
        assert_close(torch.cat(chunks, dim=1), model(idx)[0])
    assert cache.length == 12 and len(cache.layers) == 2
    assert cache.layers[0][0].shape == (3, 4, 12, 8)


def test_cached_generation_gives_the_same_tokens_past_block_size():
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=8, vocab_size=30, n_layer=2, n_head=2, n_embd=16))
    prompt = torch.randint(0, 30, (2, 3))
    greedy = model.generate(prompt, 20, temperature=0)  # 23 tokens: the context is cropped 15 times
    assert torch.equal(model.generate(prompt, 20, temperature=0, use_cache=True), greedy)
    sampled = model.generate(prompt, 20, top_k=5, generator=torch.Generator().manual_seed(3))
    cached = model.generate(prompt, 20, top_k=5, generator=torch.Generator().manual_seed(3), use_cache=True)
    assert torch.equal(cached, sampled)


def test_cached_generation_uses_the_cache_only_while_the_sequence_fits(monkeypatch):
    # Positions are absolute: once the window slides, cached keys and values are stale, so the remaining
    # steps run the plain forward pass instead of rebuilding a cache that would be used once.
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=8, vocab_size=30, n_layer=1, n_head=2, n_embd=16))
    fed = []
    original = GPT.forward_cached
    monkeypatch.setattr(GPT, "forward_cached", lambda self, idx, cache: fed.append(idx.size(1)) or original(self, idx, cache))
    model.generate(torch.randint(0, 30, (1, 3)), 20, temperature=0, use_cache=True)
    assert fed == [3, 1, 1, 1, 1, 1]  # the prompt, then one token per step until all 8 positions are used


def test_cached_step_flops_grow_linearly_with_the_context():
    from torch.utils.flop_counter import FlopCounterMode

    config = GPTConfig(block_size=64, vocab_size=50, n_layer=2, n_head=4, n_embd=32, fused_attention=False)
    model = GPT(config).eval()

    def step_flops(P):  # FLOPs of one new token after P cached ones
        cache = KVCache()
        with torch.no_grad():
            if P:
                model.forward_cached(torch.zeros(1, P, dtype=torch.long), cache)
            with FlopCounterMode(display=False) as counter:
                model.forward_cached(torch.zeros(1, 1, dtype=torch.long), cache)
        return counter.get_total_flops()

    base = step_flops(0)
    for P in (1, 8, 31):  # q K^T and weights @ V: 2 P C FLOPs each, per layer
        assert step_flops(P) - base == 4 * config.n_layer * config.n_embd * P


def test_forward_cached_rejects_overflow_and_a_batch_change():
    model = GPT(GPTConfig(block_size=8, vocab_size=30, n_layer=1, n_head=2, n_embd=16)).eval()
    cache = KVCache()
    with torch.no_grad():
        model.forward_cached(torch.zeros(2, 6, dtype=torch.long), cache)
        with pytest.raises(ValueError, match=r"at most block_size=8 tokens.*got 6 cached \+ 3 new"):
            model.forward_cached(torch.zeros(2, 3, dtype=torch.long), cache)
        with pytest.raises(ValueError, match=r"expected a batch of 2 \(the cache's\), got 1"):
            model.forward_cached(torch.zeros(1, 1, dtype=torch.long), cache)
