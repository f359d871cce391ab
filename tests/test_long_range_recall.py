"""benchmarks/long_range_recall.py (chapter 7's long-range task) on tiny inputs: the task, the matched
sizes, the convolution's reach, and one short run of every family."""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("long_range_recall", ROOT / "benchmarks" / "long_range_recall.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # a dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def test_the_target_is_the_first_token_and_every_symbol_appears_everywhere(bench):
    x, y = bench.recall_batch(4000, 5, torch.Generator().manual_seed(0))
    assert x.shape == (4000, 6) and y.shape == (4000,)
    assert torch.equal(y, x[:, 0])
    for position in range(6):  # no position is marked by its symbols: each holds all of them, about equally often
        counts = torch.bincount(x[:, position], minlength=bench.VOCAB)
        assert counts.min() > 0.8 * 4000 / bench.VOCAB


def test_a_distance_below_one_is_refused(bench):
    with pytest.raises(ValueError, match="distance of at least 1, got 0"):
        bench.recall_batch(2, 0, torch.Generator())


def test_an_unknown_family_is_refused(bench):
    with pytest.raises(ValueError, match="expected a family in"):
        bench.build("mamba", 8)


@pytest.mark.parametrize("family", ["rnn", "lstm", "gru", "cnn", "transformer"])
def test_the_matched_sizes_are_within_two_percent_of_the_target(bench, family):
    n = bench.count(bench.build(family, bench.matched_width(family)))
    target = bench.CONFIG.target_params
    assert abs(n - target) < 0.02 * target, (family, n)


def test_the_lstm_starts_with_its_forget_gate_open(bench):
    model = bench.build("lstm", 6)
    bias = model.rnn.bias_ih_l0 + model.rnn.bias_hh_l0  # gates i, f, g, o
    assert torch.equal(bias[6:12], torch.ones(6))


def test_the_convolution_reaches_exactly_as_far_as_its_receptive_field(bench):
    torch.manual_seed(0)
    model = bench.build("cnn", 16)
    field = model.receptive_field()
    reach = bench.CONFIG.max_distance
    assert field == 2 ** bench.conv_layers_for(reach) >= reach + 1

    def first_token_matters(length):  # does the reading at the last position change with the first token?
        x = torch.randint(0, bench.VOCAB, (8, length), generator=torch.Generator().manual_seed(length))
        changed = x.clone()
        changed[:, 0] = (changed[:, 0] + 1) % bench.VOCAB
        with torch.no_grad():
            return not torch.equal(model(x), model(changed))

    assert first_token_matters(field) and not first_token_matters(field + 1)


def test_the_transformers_reading_depends_on_the_first_and_the_last_token(bench):
    torch.manual_seed(0)
    model = bench.build("transformer", 8).eval()
    x = torch.randint(0, bench.VOCAB, (2, 10))
    with torch.no_grad():
        full = model(x)
        assert not torch.allclose(model(x[:, :-1]), full)  # the last token changes the reading...
        changed = x.clone()
        changed[:, 0] = (changed[:, 0] + 1) % bench.VOCAB
        assert not torch.allclose(model(changed), full)  # ...and so does the first, the one to recall


@pytest.mark.parametrize("family", ["rnn", "lstm", "gru", "cnn", "transformer"])
def test_one_short_run_of_each_family(bench, family):
    row = bench.run_cell(family, distance=4, seed=0, lr=3e-3, steps=3, width=8)
    assert row["steps"] == 3 and row["steps_to_target"] is None
    assert 0.0 <= row["test_accuracy"] <= 1.0 and 0.0 <= row["validation_accuracy"] <= 1.0 and row["parameters"] == bench.count(bench.build(family, 8))
    assert row["batch1_ms"] > 0 and row["batch256_ms"] > 0


def test_the_gpu_configuration_is_larger_in_every_dimension(bench):
    cpu, gpu = bench.RecallConfig(), bench.RecallConfig.gpu()
    assert gpu.target_params > cpu.target_params and gpu.max_distance > cpu.max_distance
    assert set(cpu.distances) < set(gpu.distances) and max(gpu.distances) == gpu.max_distance
    assert gpu.steps > cpu.steps and gpu.batch_size > cpu.batch_size


def test_validation_and_test_sequences_differ(bench):
    model = bench.build("cnn", 4)
    gen_test = bench.recall_batch(5, 16, torch.Generator().manual_seed(16))[0]
    gen_val = bench.recall_batch(5, 16, torch.Generator().manual_seed(16 + 500_000))[0]
    assert not torch.equal(gen_test, gen_val)
    assert 0.0 <= bench.evaluate(model, 16, "validation", n=600) <= 1.0


def test_the_shipped_results_are_complete_and_consistent_with_the_script(bench):
    import json
    from importlib.resources import files

    data = json.loads(files("bigmodel_lib").joinpath("results/long_range_recall_cpu.json").read_text())
    s = data["settings"]
    assert s["target_params"] == bench.RecallConfig().target_params and s["max_distance"] == bench.CONFIG.max_distance
    assert s["widths"] == {f: bench.matched_width(f) for f in bench.FAMILIES}
    assert s["conv_layers"] == bench.conv_layers_for(s["max_distance"])
    kept = {(r["family"], r["distance"], r["seed"]) for r in data["rows"] if r["lr_kept"]}
    assert kept == {(f, d, seed) for f in bench.FAMILIES for d in s["distances"] for seed in s["seeds"]}
    for r in data["rows"]:
        assert r["parameters"] == bench.count(bench.build(r["family"], r["width"]))
        assert r["lr"] in s["learning_rates"] and 1 <= r["steps"] <= s["steps"]
        assert r["steps"] == (r["steps_to_target"] or s["steps"])  # stopped at the target, or ran the whole budget
    for f in bench.FAMILIES:  # seed 0 tried both learning rates; the kept one had the better validation accuracy
        for d in s["distances"]:
            tried = [r for r in data["rows"] if (r["family"], r["distance"], r["seed"]) == (f, d, 0)]
            assert len(tried) == 2 and max(tried, key=lambda r: (r["validation_accuracy"], -r["steps"]))["lr_kept"]
