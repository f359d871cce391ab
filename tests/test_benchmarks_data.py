"""The benchmark results the notebooks load: their FLOP counts and shapes are checked here.

``benchmarks/lm_lstm_vs_gpt.py`` counts an LSTM language model's training FLOPs
by formula, because ``torch.utils.flop_counter`` does not see inside
``nn.LSTM``'s fused kernel; the formula is checked against the counter run on
the from-scratch LSTM of section 3.2, whose gates are plain matrix products.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
from importlib.resources import files

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from bigmodel_lib.models.gpt import GPT, GPTConfig
from bigmodel_lib.models.rnn import LSTM

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _benchmark_module(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_lstm_flop_formula_matches_the_flop_counter_on_the_from_scratch_lstm():
    bench = _benchmark_module("lm_lstm_vs_gpt")
    B, T, E, H, V = 3, 5, 8, 16, 11
    lstm, head = LSTM(E, H, batch_first=True), nn.Linear(H, V)
    x = torch.randn(B, T, E, requires_grad=True)  # the embeddings, which train too
    with FlopCounterMode(display=False) as counter:
        out, _ = lstm(x)
        head(out).sum().backward()
    # The formula counts the weights' matrix products, 6 per weight per token (the biases are additions).
    # Exactly one product is skipped: at t = 0 the initial state h_0 = 0 needs no gradient, so the
    # backward pass of h_0 W_hh^T computes only the weight's gradient (2 * 4H * H FLOPs per sequence fewer).
    assert counter.get_total_flops() == bench.lstm_flops_per_token(V, E, H) * B * T - 2 * 4 * H * H * B


def test_the_shipped_lstm_vs_gpt_results_are_consistent():
    bench = _benchmark_module("lm_lstm_vs_gpt")
    data = json.loads(files("bigmodel_lib").joinpath("results/lm_lstm_vs_gpt_cpu.json").read_text())
    settings = data["settings"]
    assert settings["lstm"] == bench.LSTM and settings["gpt"] == bench.GPT_SIZES
    V = 103  # the characters of Python 3.11's pydoc topics, as the notebooks print
    for row in data["rows"]:
        assert row["tokens"] == row["epochs"] * settings["train_windows"] * settings["block_size"]
        assert row["train_flops"] == row["flops_per_token"] * row["tokens"]
        assert row["val_loss"] == row["val_loss_per_epoch"][-1] and len(row["val_loss_per_epoch"]) == row["epochs"]
        if row["model"] == "LSTM":
            lstm = settings["lstm"]
            assert row["flops_per_token"] == bench.lstm_flops_per_token(V, lstm["embedding_dim"], lstm["hidden_size"])
        else:
            gpt = GPT(GPTConfig(block_size=settings["block_size"], vocab_size=V, n_layer=settings["gpt"]["n_layer"],
                                n_head=settings["gpt"]["n_head"], n_embd=settings["gpt"]["n_embd"]))
            assert row["flops_per_token"] == gpt.flops_per_token()


def _pretraining_benefit():
    return json.loads(files("bigmodel_lib").joinpath("results/pretraining_benefit_cpu.json").read_text())


def test_the_shipped_pretraining_benefit_results_are_consistent():
    bench = _benchmark_module("pretraining_benefit")
    data = _pretraining_benefit()
    settings, rows = data["settings"], data["rows"]
    assert data["complete"] and data["machine"]["torch_threads"] >= 1
    assert settings["body"] == bench.BODY and settings["finetune"] == bench.FINETUNE
    assert settings["pretrain"] == bench.PRETRAIN and settings["vocab_size"] == bench.VOCAB_SIZE
    assert settings["val_select"] == bench.VAL_SELECT
    sizes = [settings["split_sizes"][0] if s == "all" else int(s) for s in settings["sizes"]]
    keys = [(r["size"], r["init"], r["seed"]) for r in rows]
    assert sorted(keys) == sorted((n, i, s) for n in sizes for i in ("pretrained", "scratch") for s in settings["seeds"])
    for r in rows:
        assert sum(r["class_counts"]) == r["size"]
        assert r["steps"] == bench.finetune_steps(r["size"], settings["min_steps"], settings["max_steps"])
        tried = [t["lr"] for t in r["lrs_tried"]]
        assert tried == settings["lrs"] and 1 <= r["best_step"] <= r["steps"]
        best = max(t["val_acc"] for t in r["lrs_tried"])  # the chosen lr is the first with the best val accuracy
        assert r["val_acc"] == best and r["lr"] == next(t["lr"] for t in r["lrs_tried"] if t["val_acc"] == best)
    for seed in settings["seeds"]:  # nested subsets: a class never loses tweets as the subset grows
        counts = [r["class_counts"] for r in sorted(rows, key=lambda r: r["size"]) if r["seed"] == seed]
        assert all(a[c] <= b[c] for a, b in zip(counts, counts[1:]) for c in range(3))
    curve = data["pretraining"]["curve"]
    assert [p["step"] for p in curve] == sorted(p["step"] for p in curve)
    assert curve[-1]["step"] == settings["pretrain_steps"] == data["pretraining"]["steps"]
    # The masked-LM loss falls and the masked-token accuracy rises at every logged point (0.074 -> 0.192).
    assert all(a["val_loss"] > b["val_loss"] for a, b in zip(curve, curve[1:]))
    assert all(a["val_masked_accuracy"] < b["val_masked_accuracy"] for a, b in zip(curve, curve[1:]))


def test_the_shipped_pretraining_benefit_shows_what_was_measured():
    """What the CPU run shows, and no more: accuracy grows with labels for both inits, far beyond the seed spread,
    and the pretrained body wins on average over the paired (size, seed) runs by more than twice the standard
    error of that mean. The gap per size (1.1 to 1.8 points) is inside the seed spread at every size and does not
    clearly shrink with more labels at this pretraining budget (1,200 steps), so neither is asserted."""
    rows = _pretraining_benefit()["rows"]
    test_acc = {(r["size"], r["init"], r["seed"]): r["test_acc"] for r in rows}
    sizes, seeds = sorted({r["size"] for r in rows}), sorted({r["seed"] for r in rows})

    def mean(values):
        values = list(values)
        return sum(values) / len(values)

    for init in ("pretrained", "scratch"):  # measured: +0.186 and +0.190; seed ranges at most 0.096
        assert mean(test_acc[sizes[-1], init, s] for s in seeds) - mean(test_acc[sizes[0], init, s] for s in seeds) > 0.15
    for n in sizes:  # measured gaps of the means: 0.011 to 0.018
        assert mean(test_acc[n, "pretrained", s] for s in seeds) > mean(test_acc[n, "scratch", s] for s in seeds)
    gaps = [test_acc[n, "pretrained", s] - test_acc[n, "scratch", s] for n in sizes for s in seeds]
    gap = mean(gaps)
    standard_error = (sum((g - gap) ** 2 for g in gaps) / (len(gaps) - 1) / len(gaps)) ** 0.5
    assert gap > 2 * standard_error  # measured: 0.0144 > 2 x 0.0055 (12 of the 15 pairs won)


def _run_benchmarks_tool():
    spec = importlib.util.spec_from_file_location("run_benchmarks", ROOT / "tools" / "run_benchmarks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_bench_reruns_every_benchmark_that_writes_shipped_results():
    tool = _run_benchmarks_tool()
    scripts = {path.stem for path in (ROOT / "benchmarks").glob("*.py")}
    listed = set(tool.BENCHMARKS) | set(tool.NOT_SHIPPED)
    assert scripts == listed, f"in benchmarks/ but not in tools/run_benchmarks.py: {sorted(scripts - listed)}; " \
                              f"listed but missing: {sorted(listed - scripts)}"
    # Every shipped results file comes from one listed benchmark (notebook_times.json from tools/run_notebooks.py)
    shipped = {path.name for path in (ROOT / "bigmodel_lib" / "results").glob("*_cpu.json")}
    written = {tool.output_of(name).name for name in tool.BENCHMARKS}
    assert shipped <= written, f"shipped results that make bench does not rewrite: {sorted(shipped - written)}"
    # Each argument the tool passes is one the script defines
    for name, args in tool.BENCHMARKS.items():
        source = (ROOT / "benchmarks" / f"{name}.py").read_text(encoding="utf-8")
        for flag in (a for a in args if a.startswith("--")):
            assert f'"{flag}"' in source, f"tools/run_benchmarks.py passes {flag} to benchmarks/{name}.py, which has no such option"
        assert tool.output_of(name).parent == ROOT / "bigmodel_lib" / "results"
