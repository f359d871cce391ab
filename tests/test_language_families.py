"""benchmarks/language_families.py (chapter 7's language-modelling task) on tiny inputs: the matched sizes, the FLOP
counts against PyTorch's counter, the curves read at equal budgets, deterministic short runs and the results file."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import pathlib
import sys

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from bigmodel_lib.models.gpt import GPT

ROOT = pathlib.Path(__file__).resolve().parent.parent
FAMILIES = ["lstm", "gpt", "cnn"]
VOCAB = 103  # the characters of pydoc_text()


@pytest.fixture(scope="module")
def bench(one_thread):
    spec = importlib.util.spec_from_file_location("language_families", ROOT / "benchmarks" / "language_families.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # a dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def tiny_config(bench, **changes):
    config = dict(block_size=16, n_layer=1, n_head=2, n_embd=16, lstm_embedding=8, dilations=(1, 2, 4, 8),
                  batch_size=4, steps=6, checkpoints=3, warmup_steps=2, seeds=(0,), val_limit=8, prompt=4,
                  new_chars=8, throughput_batch=8, scaling_lengths=(16, 32), scaling_batch=2)
    config.update(changes)
    return dataclasses.replace(bench.LanguageConfig(), **config)


@pytest.fixture
def tiny(bench, monkeypatch):
    """The tiny configuration, and the first 40 training windows of 16 characters (8 validation windows)."""
    monkeypatch.setattr(bench, "CONFIG", tiny_config(bench))
    data, vocab_size = bench.load_data(limit=40)
    assert vocab_size == VOCAB and len(data["train"]) == 40 and len(data["val"]) == 8
    return data


@pytest.mark.parametrize("family", FAMILIES)
def test_the_three_families_have_the_gpts_count_within_two_percent(bench, family):
    target = bench.target_parameters(VOCAB)
    model = bench.build(family, bench.matched_width(family, VOCAB), VOCAB)
    count = bench.count_parameters(model)
    assert abs(count - target) < 0.02 * target, (family, count, target)
    assert 200_000 <= count <= 400_000


def test_the_cnn_sees_the_whole_block_and_generation_fits_in_it(bench):
    for config in (bench.LanguageConfig(), bench.LanguageConfig.gpu()):
        assert 1 + (config.kernel_size - 1) * sum(config.dilations) == config.block_size
        assert config.prompt + config.new_chars <= config.block_size
        assert config.steps % config.checkpoints == 0


def test_the_gpts_flops_per_token_are_what_pytorchs_counter_counts(bench):
    """6 per matrix weight (the tied output layer counted once) plus the attention term: the counter sees the
    attention's matrix products in the from-scratch attention (not inside the fused kernel) and not the biases and
    layer norms, which the 6 N rule counts as weights."""
    model = bench.build("gpt", None, VOCAB)
    scratch = GPT(dataclasses.replace(model.config, fused_attention=False))
    x, y = torch.randint(0, VOCAB, (2, model.config.block_size)), torch.randint(0, VOCAB, (2, model.config.block_size))
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(scratch(x)[0].flatten(0, 1), y.flatten()).backward()
    vectors = sum(p.numel() for p in scratch.parameters() if p.dim() == 1)  # biases and layer-norm weights
    assert counter.get_total_flops() == (bench.flops_per_token("gpt", scratch) - 6 * vectors) * x.numel()
    assert bench.flops_per_token("gpt", model) == bench.flops_per_token("gpt", scratch)


def test_the_cnns_flops_per_token_are_what_pytorchs_counter_counts(bench):
    model = bench.build("cnn", bench.matched_width("cnn", VOCAB), VOCAB)
    x, y = torch.randint(0, VOCAB, (2, 64)), torch.randint(0, VOCAB, (2, 64))
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x)[0].flatten(0, 1), y.flatten()).backward()
    assert counter.get_total_flops() == bench.flops_per_token("cnn", model) * x.numel()


def test_the_lstms_flops_per_token_are_six_per_weight_it_multiplies(bench):
    """FlopCounterMode does not see inside nn.LSTM; the formula (checked on the from-scratch LSTM by
    tests/test_benchmarks_data.py) is 6 x the input, recurrent and output matrices."""
    model = bench.build("lstm", 50, VOCAB)
    matrices = model.lstm.weight_ih_l0.numel() + model.lstm.weight_hh_l0.numel() + model.head.weight.numel()
    assert bench.flops_per_token("lstm", model) == 6 * matrices


def test_loss_at_interpolates_between_checkpoints(bench):
    assert bench.loss_at([10, 20, 30], [3.0, 2.0, 1.5], 15) == 2.5
    assert bench.loss_at([10, 20, 30], [3.0, 2.0, 1.5], 30) == 1.5
    assert bench.loss_at([10, 20, 30], [3.0, 2.0, 1.5], 5) is None and bench.loss_at([10], [3.0], 11) is None
    with pytest.raises(ValueError, match="as many budgets as losses"):
        bench.loss_at([1, 2], [3.0], 1)


def test_budget_to_reach_is_where_the_interpolated_curve_first_meets_the_target(bench):
    assert bench.budget_to_reach([10, 20, 30], [3.0, 2.0, 1.5], 2.5) == 15
    assert bench.budget_to_reach([10, 20, 30], [3.0, 2.0, 1.5], 1.5) == 30
    assert bench.budget_to_reach([10, 20, 30], [3.0, 2.0, 1.5], 3.5) == 10  # nothing known before the first
    assert bench.budget_to_reach([10, 20, 30], [3.0, 2.0, 1.5], 1.0) is None
    assert bench.budget_to_reach([10, 20, 30], [3.0, 1.0, 2.5], 2.0) == 15  # the first crossing, not a later one
    with pytest.raises(ValueError, match="as many budgets as losses"):
        bench.budget_to_reach([1], [3.0, 2.0], 1)


def test_comparisons_read_every_kept_run_at_the_largest_budget_all_reached(bench):
    def row(family, seconds, losses, kept=True):
        return dict(family=family, lr_kept=kept, tokens=[100, 200], flops=[1000, 2000], seconds=seconds,
                    val_loss=losses)

    rows = [row("a", [1.0, 2.0], [3.0, 2.0]), row("a", [1.0, 2.0], [3.2, 2.2]), row("b", [2.0, 4.0], [2.6, 1.0]),
            row("b", [1.0, 1.5], [9.0, 9.0], kept=False)]
    result = bench.comparisons(rows)
    assert result["tokens"] == dict(budget=200, families=dict(a=dict(mean=2.1, min=2.0, max=2.2, runs=2),
                                                              b=dict(mean=1.0, min=1.0, max=1.0, runs=1)))
    assert result["seconds"]["budget"] == 2.0 and result["seconds"]["families"]["b"]["mean"] == 2.6
    assert result["to_target"]["target_loss"] == 2.2  # the worst final loss of the kept runs
    assert result["to_target"]["families"]["a"]["tokens"] == dict(mean=190.0, min=180.0, max=200.0, runs=2)
    assert result["to_target"]["families"]["b"]["seconds"] == dict(mean=2.5, min=2.5, max=2.5, runs=1)
    with pytest.raises(ValueError, match="lr_kept=True"):
        bench.comparisons([row("a", [1.0], [1.0], kept=False)])


def test_the_step_stream_continues_across_checkpoints_without_repeats_in_a_pass(bench):
    sampler = bench.StepChunks(10, 3, steps=2, seed=0)
    first, second = list(sampler), list(sampler)
    assert len(first) == len(second) == 2 and all(len(b) == 3 for b in first + second)
    one_pass = first[0] + first[1] + second[0]
    assert len(set(one_pass)) == 9  # one pass of 10 rows gives 3 batches of 3 before reshuffling
    assert first == list(bench.StepChunks(10, 3, steps=2, seed=0)) != list(bench.StepChunks(10, 3, steps=2, seed=1))
    with pytest.raises(ValueError, match="batch_size <= the 2 training windows, got 3"):
        bench.StepChunks(2, 3, steps=1, seed=0)


def test_bad_families_are_refused(bench):
    with pytest.raises(ValueError, match="expected a family in"):
        bench.build("mamba", 8, VOCAB)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_tiny_run_of_each_family_is_deterministic(bench, tiny, family):
    width = bench.matched_width(family, VOCAB)
    _, first = bench.train(family, width, 3e-3, 0, tiny, VOCAB)
    _, again = bench.train(family, width, 3e-3, 0, tiny, VOCAB)
    for key in ("val_loss", "train_loss", "tokens", "flops", "parameters"):
        assert first[key] == again[key], key
    assert first["steps"] == 6 and first["tokens"] == [2 * 4 * 16, 4 * 4 * 16, 6 * 4 * 16]
    assert first["flops"] == [t * first["flops_per_token"] for t in first["tokens"]]
    assert len(first["val_loss"]) == len(first["seconds"]) == 3 and first["seconds"] == sorted(first["seconds"])
    _, other_seed = bench.train(family, width, 3e-3, 1, tiny, VOCAB)
    assert other_seed["val_loss"] != first["val_loss"]


def test_a_tiny_grid_writes_every_field_the_chapter_reads(bench, tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "CONFIG", bench.CONFIG)  # main() replaces it: restored after the test
    out = tmp_path / "language.json"
    assert bench.main(["--limit", "40", "--out", str(out)], config=tiny_config(bench, seeds=(0, 1))) == 0
    result = json.loads(out.read_text())
    assert set(result) == {"settings", "machine", "rows", "measurements", "comparisons"}
    settings = result["settings"]
    assert settings["vocab_size"] == VOCAB and settings["train_windows"] == 40 and settings["val_windows"] == 8
    assert set(settings["widths"]) == set(FAMILIES) and settings["widths"]["gpt"] is None
    rows = result["rows"]
    assert [r["family"] for r in rows] == ["lstm"] * 3 + ["gpt"] * 3 + ["cnn"] * 3  # 2 rates at seed 0, then 1
    for family in FAMILIES:
        mine = [r for r in rows if r["family"] == family]
        seed0 = [r for r in mine if r["seed"] == 0]
        assert [r["lr"] for r in seed0] == list(bench.LanguageConfig().learning_rates[family])
        best = min(seed0, key=lambda r: r["final_val_loss"])
        assert best["lr_kept"] and sum(r["lr_kept"] for r in seed0) == 1
        assert mine[-1]["seed"] == 1 and mine[-1]["lr"] == best["lr"] and mine[-1]["lr_kept"]
    expected = {"family", "seed", "lr", "width", "parameters", "flops_per_token", "steps", "tokens", "flops",
                "seconds", "val_loss", "train_loss", "final_val_loss", "train_tokens_per_s", "lr_kept"}
    assert all(set(r) == expected for r in rows)
    measured = {m["family"]: m for m in result["measurements"]}
    assert set(measured) == set(FAMILIES)
    for m in measured.values():
        assert m["generate_ms_per_char"] > 0 and m["throughput_chars_per_s"] > 0
        assert set(m["forward_ms_by_length"]) == {"16", "32"} and m["throughput_shape"] == [8, 16]
        assert m["peak_step_bytes"] > m["held_bytes"] > 0 and m["memory_method"] == "tensor tracker"
    assert measured["gpt"]["generate_ms_per_char_uncached"] > 0 and measured["cnn"]["receptive_field"] == 16
    comparisons = result["comparisons"]
    assert set(comparisons) == {"tokens", "flops", "seconds", "to_target"}
    assert set(comparisons["to_target"]["families"]) == set(FAMILIES)
    assert comparisons["tokens"]["budget"] == 6 * 4 * 16
    for key in ("tokens", "flops", "seconds"):
        assert set(comparisons[key]["families"]) == set(FAMILIES)
    for family in FAMILIES:  # at equal tokens (the end of training) the comparison is the kept runs' final losses
        finals = [r["final_val_loss"] for r in rows if r["family"] == family and r["lr_kept"]]
        assert comparisons["tokens"]["families"][family]["min"] == min(finals)


def test_the_gpu_configuration_is_larger(bench):
    cpu, gpu = bench.LanguageConfig(), bench.LanguageConfig.gpu()
    assert gpu.n_embd > cpu.n_embd and gpu.n_layer > cpu.n_layer and gpu.block_size > cpu.block_size
    assert gpu.steps > cpu.steps and gpu.batch_size > cpu.batch_size
    assert max(gpu.scaling_lengths) > max(cpu.scaling_lengths) and gpu.n_embd % gpu.n_head == 0


def test_the_shipped_results_are_consistent_with_the_code(bench):
    shipped = json.loads((ROOT / "bigmodel_lib" / "results" / "language_families_cpu.json").read_text())
    settings, rows = shipped["settings"], shipped["rows"]
    assert settings["limit"] is None and settings["seeds"] == [0, 1, 2] and settings["vocab_size"] == VOCAB
    assert settings["widths"] == {f: bench.matched_width(f, VOCAB) for f in FAMILIES}
    assert settings["target_parameters"] == bench.target_parameters(VOCAB)
    for family in FAMILIES:
        mine = [r for r in rows if r["family"] == family]
        assert len(mine) == 4 and sorted(r["seed"] for r in mine if r["lr_kept"]) == [0, 1, 2]
        model = bench.build(family, settings["widths"][family], VOCAB)
        assert all(r["parameters"] == bench.count_parameters(model) for r in mine)
        assert all(r["flops_per_token"] == bench.flops_per_token(family, model) for r in mine)
        assert all(r["flops"] == [t * r["flops_per_token"] for t in r["tokens"]] for r in mine)
    assert shipped["comparisons"] == json.loads(json.dumps(bench.comparisons(rows)))
