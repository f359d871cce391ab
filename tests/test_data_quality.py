"""Section 8.5's label noise and near-duplicate helpers, checked against direct computations."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from bigmodel_lib.data_quality import flip_labels, loss_filter, near_duplicates_in_training


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.25, 0.5, 1.0])
def test_flip_labels_flips_the_exact_fraction_and_never_to_the_same_class(fraction):
    labels = torch.arange(1000) % 7
    noisy, flipped = flip_labels(labels, fraction, 7, torch.Generator().manual_seed(3))
    assert int(flipped.sum()) == round(fraction * 1000)
    assert_close(flipped, noisy != labels)  # changed exactly where flagged, and every flagged one changed
    assert noisy.dtype == torch.long and int(noisy.min()) >= 0 and int(noisy.max()) < 7
    assert_close(labels, torch.arange(1000) % 7)  # the input is untouched


def test_flip_labels_is_deterministic_and_uniform_over_the_other_classes():
    labels = torch.zeros(30_000, dtype=torch.long)
    a, _ = flip_labels(labels, 0.5, 4, torch.Generator().manual_seed(0))
    b, _ = flip_labels(labels, 0.5, 4, torch.Generator().manual_seed(0))
    assert_close(a, b)
    counts = torch.bincount(a, minlength=4).double()
    assert counts[0] == 15_000
    assert_close(counts[1:] / 15_000, torch.full((3,), 1 / 3, dtype=torch.float64), atol=0.02, rtol=0)


@pytest.mark.parametrize("args, match", [
    ((torch.tensor([0.0, 1.0]), 0.1, 2), "1-D integer tensor"),
    ((torch.zeros(2, 2, dtype=torch.long), 0.1, 2), "1-D integer tensor"),
    (([0, 1], 0.1, 2), "1-D integer tensor"),
    ((torch.tensor([0, 1]), 1.5, 2), r"fraction as a number in \[0, 1\]"),
    ((torch.tensor([0, 1]), 0.1, 1), "num_classes as an integer of at least 2"),
    ((torch.tensor([0, 3]), 0.1, 3), "labels in 0..2"),
])
def test_flip_labels_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        flip_labels(*args)


def test_loss_filter_drops_the_highest_losses_as_topk_does():
    losses = torch.rand(1000, generator=torch.Generator().manual_seed(1))
    keep = loss_filter(losses, 0.3)
    expected = torch.ones(1000, dtype=torch.bool)
    expected[torch.topk(losses, 300).indices] = False
    assert_close(keep, expected)
    assert int(keep.sum()) == 700 and losses[keep].max() < losses[~keep].min()


def test_loss_filter_breaks_ties_by_position_and_rejects_bad_input():
    assert loss_filter(torch.ones(4), 0.5).tolist() == [True, True, False, False]
    assert loss_filter(torch.tensor([3.0, 1.0]), 0.0).tolist() == [True, True]
    for args, match in [((torch.tensor([1, 2]), 0.5), "floating-point"), ((torch.ones(2), -0.1), "fraction"),
                        ((torch.tensor([1.0, float("nan")]), 0.5), "NaN")]:
        with pytest.raises(ValueError, match=match):
            loss_filter(*args)


def test_near_duplicates_in_training_matches_retweets_links_and_mentions():
    train = ["Great flight with @united today http://t.co/abc", "The delay was awful and nobody told us anything at all"]
    test = ["RT @someone: great flight with @JetBlue today http://t.co/xyz",  # same key: a duplicate
            "The delay was awful and nobody told us anything\u2026",  # a retweet cut short: a duplicate
            "A completely different tweet"]
    assert near_duplicates_in_training(train, test).tolist() == [True, True, False]
    assert near_duplicates_in_training([], test).tolist() == [False, False, False]
    with pytest.raises(ValueError, match="sequence of strings"):
        near_duplicates_in_training("abc", test)


def test_the_shipped_label_noise_results_are_consistent():
    import json
    from importlib.resources import files

    data = json.loads(files("bigmodel_lib").joinpath("results/label_noise_cpu.json").read_text())
    settings, rows = data["settings"], data["rows"]
    assert data["complete"] and data["machine"]["torch_threads"] == 1
    assert sorted((r["fraction"], r["seed"]) for r in rows) == sorted(
        (f, s) for f in settings["fractions"] for s in settings["seeds"])
    for r in rows:
        assert r["flipped"] == r["dropped"] == round(r["fraction"] * 3500)
        assert 0 <= r["dropped_wrong"] <= r["dropped"] and 0 < r["noisy"] <= 1 and 0 < r["filtered"] <= 1
