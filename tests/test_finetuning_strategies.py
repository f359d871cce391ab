"""``benchmarks/finetuning_strategies.py``: its parts on tiny inputs, and its shipped results (consistent with the
script, and what chapter 5 reads from them)."""

from __future__ import annotations

import importlib.util
import json
import pathlib
from importlib.resources import files

import pytest
import torch

REPO = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("finetuning_strategies", REPO / "benchmarks" / "finetuning_strategies.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def data():
    return json.loads(files("bigmodel_lib").joinpath("results/finetuning_strategies_cpu.json").read_text())


def test_an_epoch_of_length_sorted_batches_covers_every_tweet_once(script):
    ids = [[1] * (1 + (i * 7) % 50) for i in range(1000)]
    out = script.batches(ids, torch.Generator().manual_seed(0))
    flat = [i for b in out for i in b]
    assert sorted(flat) == list(range(1000)) and max(map(len, out)) == script.BATCH_SIZE
    padded = sum(max(len(ids[i]) for i in b) * len(b) for b in out)
    assert padded < 1.2 * sum(map(len, ids))  # similar lengths together: little padding
    assert out != script.batches(ids, torch.Generator().manual_seed(1))


def test_pad_and_the_wilson_interval(script):
    x, mask = script.pad([[5, 6, 7], [8]], "cpu")
    assert x.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    low, high = script.wilson(750, 1000)
    assert low < 0.75 < high and high - low == pytest.approx(2 * 1.96 * (0.75 * 0.25 / 1000) ** 0.5, rel=0.01)


def test_the_shipped_run_is_complete_and_consistent_with_the_script(script, data):
    s = data["settings"]
    assert data["complete"] and s["split_sizes"] == [27_838, 3_479, 3_479]
    assert (s["max_len"], s["val_select"], s["epochs"], s["batch_size"]) == (
        script.MAX_LEN, script.VAL_SELECT, script.EPOCHS, script.BATCH_SIZE)
    assert {k: list(v) for k, v in script.LRS.items()} == s["lrs"] and s["c_grid"] == list(script.C_GRID)
    rows = {r["strategy"]: r for r in data["strategies"]}
    assert list(rows) == ["majority class", *script.LRS]
    for name, lrs in script.LRS.items():
        row = rows[name]
        tried = {r["lr"]: r["val_accuracy"] for r in row["lrs_tried"]}
        assert list(tried) == list(lrs) and tried[row["lr"]] == max(tried.values())  # chosen on validation
        assert [r["seed"] for r in row["runs"]] == s["seeds"] and all(r["lr"] == row["lr"] for r in row["runs"])
        for r in row["runs"]:
            low, high = r["ci95"]
            assert low < r["test_accuracy"] < high
            assert 1 <= r["epoch"] <= script.EPOCHS and r["steps"] == script.EPOCHS * -(-int(s["n_train"]) // 32)
        # training state: weights (all) + gradients and AdamW's two moments (trainable) in float32, plus
        # one 4-byte step counter per trainable tensor
        weights, trainable = row["total_parameters"], row["trainable_parameters"]
        extra = row["training_state_bytes"] - 4 * (weights + 3 * trainable)
        assert 0 < extra < 4 * 200 and extra % 4 == 0
        assert row["peak_step_bytes"] > row["training_state_bytes"]
    lora = rows["LoRA"]["trainable_parameters"]
    assert lora == 6 * 2 * script.LORA["r"] * (384 + 384) + 384 * 3 + 3
    assert rows["full fine-tuning"]["trainable_parameters"] == rows["from scratch"]["trainable_parameters"] == 22_565_376 + 3 * 384 + 3


def _mean(values):
    return sum(values) / len(values)


def test_what_part_a_shows_pretraining_pays_most_with_few_labels(data):
    acc = {}
    for r in data["curve"]:
        acc.setdefault((r["method"], r["n"]), []).append(r["test_accuracy"])
    sizes = sorted({n for _, n in acc})
    gap = {n: _mean(acc["frozen MiniLM + logistic", n]) - _mean(acc["TF-IDF + logistic", n]) for n in sizes}
    assert sizes == [30, 100, 300, 1000, 3000, 27_838]
    assert min(gap[30], gap[100]) > 0.04 and gap[300] > max(gap[1000], gap[3000]) > 0 > gap[27_838]


def test_what_part_b_shows(data):
    acc = {r["strategy"]: _mean([x["test_accuracy"] for x in r.get("runs", [])] or [r["test_accuracy"]])
           for r in data["strategies"]}
    assert acc["full fine-tuning"] > acc["LoRA"] > acc["from scratch"] > acc["majority class"] + 0.2
    # the randomly initialised encoder knows nothing about meaning: its pair ranking is near chance
    scratch = [r["similarity"]["same_above_unrelated"] for r in data["strategies"][3]["runs"]]
    assert data["strategies"][3]["strategy"] == "from scratch" and max(scratch) < 0.7
    assert data["similarity_pretrained"]["same_above_unrelated"] > 0.95


def test_part_c_is_complete_and_shows_forgetting(script, data):
    part = data["forgetting"]
    assert part["settings"]["n"] == script.FORGET["n"] and part["settings"]["epochs"] == script.FORGET["epochs"]
    runs = part["runs"]
    assert [(r["strategy"], r["seed"]) for r in runs] == [(s, seed) for s in script.FORGET["strategies"] for seed in (0, 1, 2)]
    epochs = list(range(0, script.FORGET["epochs"] + 1, script.FORGET["every"]))
    pre = data["similarity_pretrained"]["mean_cosine"]
    for r in runs:
        assert [p["epoch"] for p in r["points"]] == epochs
        assert r["points"][0]["similarity"]["mean_cosine"] == pytest.approx(pre, abs=1e-5)  # starts as pretrained
        assert r["points"][-1]["train_accuracy"] >= 0.99  # the 100 labels are fitted

    def gap(p):
        return p["similarity"]["mean_cosine"]["same"] - p["similarity"]["mean_cosine"]["unrelated"]

    final = {s: [gap(r["points"][-1]) for r in runs if r["strategy"] == s] for s in script.FORGET["strategies"]}
    assert max(final["full fine-tuning"]) < 0.8 * (pre["same"] - pre["unrelated"]) < min(final["LoRA"])
