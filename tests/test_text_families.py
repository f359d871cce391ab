"""benchmarks/text_families.py (chapter 7's text task) on tiny inputs: the matched sizes, padding that changes
nothing, the tokenized tweets, and one short run of every family with every field it records."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import pathlib
import sys

import pytest
import torch
from torch.testing import assert_close

ROOT = pathlib.Path(__file__).resolve().parent.parent
FAMILIES = ["bag", "cnn", "lstm", "transformer"]


@pytest.fixture(scope="module")
def bench(one_thread):
    spec = importlib.util.spec_from_file_location("text_families", ROOT / "benchmarks" / "text_families.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # a dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tiny(bench, monkeypatch):
    """A small configuration, and a synthetic data set of 48 tweets of 1 to 12 tokens, 16 per split."""
    config = dataclasses.replace(bench.TextConfig(), vocab_size=40, max_len=12, embed=8, target_body=600, layers=1,
                                 heads=2, epochs=2, batch_size=8, scaling_lengths=(8, 16), scaling_batch=4)
    monkeypatch.setattr(bench, "CONFIG", config)
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 13, (48,), generator=gen)
    ids = torch.randint(len(bench.SPECIALS), 40, (48, 12), generator=gen)
    ids[torch.arange(12)[None, :] >= lengths[:, None]] = bench.PAD
    all_data = bench.Encoded(ids, lengths, torch.arange(48) % 3, lengths)
    return {name: all_data.subset(range(16 * k, 16 * k + 16)) for k, name in enumerate(("train", "val", "test"))}


@pytest.mark.parametrize("family", ["cnn", "lstm", "transformer"])
def test_the_matched_bodies_are_within_two_percent_of_the_target(bench, family):
    model = bench.build(family, bench.matched_width(family))
    target = bench.CONFIG.target_body
    assert abs(bench.body_parameters(model) - target) < 0.02 * target, (family, bench.body_parameters(model))
    assert bench.count_parameters(model) - bench.body_parameters(model) == bench.CONFIG.vocab_size * bench.CONFIG.embed


def test_every_family_shares_the_same_embedding_table_and_the_bag_has_only_a_classifier(bench):
    shapes = {f: tuple(bench.build(f, 4).embed.weight.shape) for f in FAMILIES}
    assert set(shapes.values()) == {(bench.CONFIG.vocab_size, bench.CONFIG.embed)}
    assert bench.body_parameters(bench.build("bag", 0)) == 3 * bench.CONFIG.embed + 3


@pytest.mark.parametrize("family", FAMILIES)
def test_padding_changes_no_familys_output(bench, tiny, family):
    torch.manual_seed(0)
    model = bench.build(family, 6).eval()
    ids = torch.randint(3, 40, (4, 7))
    ids[0, 1:] = bench.PAD  # a one-token tweet: shorter than every convolution
    ids[1, 5:] = bench.PAD
    padded = torch.cat([ids, torch.full((4, 5), bench.PAD)], 1)  # (4, 12)
    with torch.no_grad():
        logits = model(ids)
        assert_close(model(padded), logits, rtol=1e-5, atol=1e-6)
        assert_close(model(ids[1:2, :5]), logits[1:2], rtol=1e-5, atol=1e-6)  # alone, without padding
        changed = ids.clone()
        changed[2, 0] = (changed[2, 0] + 1 - 3) % 37 + 3  # another real token does change it
        assert not torch.allclose(model(changed)[2], logits[2])


def test_the_lstm_reads_both_ways_with_its_forget_gates_open(bench):
    model = bench.build("lstm", 5)
    assert model.lstm.bidirectional
    for suffix in ("l0", "l0_reverse"):
        bias = getattr(model.lstm, f"bias_ih_{suffix}") + getattr(model.lstm, f"bias_hh_{suffix}")  # gates i, f, g, o
        assert torch.equal(bias[5:10], torch.ones(5))


def test_bad_inputs_are_refused(bench):
    with pytest.raises(ValueError, match="expected a family in"):
        bench.build("mamba", 8)
    model = bench.build("cnn", 4)
    with pytest.raises(ValueError, match=r"shape \(B, T\) and an integer dtype, got shape \(2, 3\) and dtype torch.float32"):
        model(torch.ones(2, 3))
    with pytest.raises(ValueError, match="every sequence, got an empty one"):
        model(torch.tensor([[5, 6], [0, 0]]))


def test_the_target_is_the_shipped_tfidf_baselines_validation_accuracy(bench):
    shipped = json.loads((ROOT / "bigmodel_lib" / "results" / "minilm_probe_cpu.json").read_text())
    tfidf = next(r for r in shipped["rows"] if r["method"] == "TF-IDF words 1-2 + logistic")
    assert round(tfidf["val_accuracy_by_C"][str(tfidf["chosen_C"])], 4) == bench.TFIDF_VALIDATION_ACCURACY
    assert bench.TFIDF_VALIDATION_ACCURACY in bench.CONFIG.targets


def test_time_to_target_is_the_first_epoch_that_reaches_it(bench):
    assert bench.reached([0.5, 0.71, 0.69, 0.8], [10.0, 20.0, 30.0, 40.0], 0.7) == dict(target=0.7, epochs=2, seconds=20.0)
    assert bench.reached([0.5, 0.6], [10.0, 20.0], 0.7)["epochs"] is None


def test_training_batches_are_shuffled_by_length_windows_and_evaluation_is_sorted(bench):
    lengths = torch.randint(1, 60, (1000,), generator=torch.Generator().manual_seed(0))
    train = list(bench.LengthBatches(lengths, 16, seed=0))
    assert sorted(i for b in train for i in b) == list(range(1000)) and len(train) == 63
    assert train != list(bench.LengthBatches(lengths, 16, seed=1))
    spread = sum(int(lengths[b].max() - lengths[b].min()) for b in train) / len(train)
    assert spread < 10  # sorted within windows: batches of similar lengths, little padding
    evaluation = [i for b in bench.LengthBatches(lengths, 16) for i in b]
    assert lengths[evaluation].tolist() == sorted(lengths.tolist())


@pytest.mark.parametrize("family", FAMILIES)
def test_one_short_run_of_each_family_records_every_field(bench, tiny, family):
    width = bench.matched_width(family)
    row = bench.run_cell(family, width, 3e-3, 0, tiny)
    expected = {"family", "seed", "lr", "width", "parameters", "body_parameters", "epochs", "train_seconds",
                "wall_seconds", "tokens_per_s", "val_accuracy_by_epoch", "train_loss_by_epoch", "seconds_by_epoch",
                "best_epoch", "val_accuracy", "to_target", "test_accuracy", "ci95", "macro_f1", "macro_recall",
                "batch1_tokens", "batch1_ms", "batch256_tokens", "batch256_ms", "forward_ms_by_length",
                "peak_step_bytes", "held_bytes", "memory_method"}
    assert set(row) == expected
    assert row["epochs"] == 2 and len(row["val_accuracy_by_epoch"]) == len(row["seconds_by_epoch"]) == 2
    assert row["val_accuracy_by_epoch"][row["best_epoch"] - 1] == round(row["val_accuracy"], 4)
    assert row["val_accuracy"] == max(row["val_accuracy_by_epoch"]) or round(row["val_accuracy"], 4) == max(
        row["val_accuracy_by_epoch"])
    assert 0.0 <= row["test_accuracy"] <= 1.0 and row["ci95"][0] <= row["test_accuracy"] <= row["ci95"][1]
    assert row["parameters"] == row["body_parameters"] + 40 * 8
    assert row["batch256_tokens"] == [16, 12] and set(row["forward_ms_by_length"]) == {8, 16}
    assert row["peak_step_bytes"] > row["held_bytes"] > 0 and row["memory_method"] == "tensor tracker"
    assert [t["target"] for t in row["to_target"]] == list(bench.CONFIG.targets)
    json.dumps(row)  # the row goes into the results file as it is


def test_the_tweets_are_encoded_with_chapter_5s_tokenizer_and_cut_at_max_len(bench, monkeypatch):
    monkeypatch.setattr(bench, "CONFIG", dataclasses.replace(bench.TextConfig(), vocab_size=500, max_len=16))
    data, stats = bench.load_data(limit=300)
    assert [stats[s]["tweets"] for s in ("train", "val", "test")] == [300, 3479, 3479]
    val = data["val"]
    assert val.ids.shape == (3479, 16) and stats["vocab_size"] <= 500
    assert stats["val"]["truncated"] == int((val.full_lengths > 16).sum()) > 0
    assert torch.equal(val.lengths, val.full_lengths.clamp(max=16))
    assert torch.equal((val.ids != bench.PAD).sum(1), val.lengths)  # padding only after the tokens
    assert sorted(set(data["train"].labels.tolist())) == [0, 1, 2]


def test_the_gpu_configuration_is_larger(bench):
    cpu, gpu = bench.TextConfig(), bench.TextConfig.gpu()
    assert gpu.target_body > cpu.target_body and gpu.embed > cpu.embed and gpu.max_len > cpu.max_len
    assert gpu.epochs > cpu.epochs and gpu.layers > cpu.layers and gpu.batch_size > cpu.batch_size
    assert set(cpu.scaling_lengths) < set(gpu.scaling_lengths) and gpu.vocab_size == cpu.vocab_size
