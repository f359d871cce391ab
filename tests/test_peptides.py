"""bigmodel_lib.peptides (section 6.4) and benchmarks/peptide_families.py: the data and its cleaning, the encoding,
the composition against collections.Counter, the k-mer Jaccard similarity against Python's sets and scikit-learn,
the splits (stratified, and by similarity cluster), the batches, bad inputs, a tiny deterministic benchmark run and
the shipped results file."""

from __future__ import annotations

import json
import pathlib
from collections import Counter

import numpy as np
import pytest
import torch
from sklearn.metrics import jaccard_score
from torch.testing import assert_close

from bigmodel_lib.peptides import (
    AMINO_ACIDS,
    PAD_ID,
    VOCAB_SIZE,
    amino_acid_composition,
    check_sequences,
    cluster_split,
    encode_peptides,
    kmer_jaccard,
    load_amp_peptides,
    peptide_batches,
    similarity_clusters,
    stratified_split,
)
from tests.conftest import load_benchmark

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bigmodel_lib" / "results" / "peptide_families_cpu.json"


@pytest.fixture(scope="module")
def data():
    return load_amp_peptides()


def test_the_cleaned_data_has_the_counts_the_book_states(data):
    assert data.raw_count == 5200
    assert (len(data.sequences), data.duplicates_removed, data.conflicting_removed) == (4620, 533, 47)
    assert data.raw_count == len(data.sequences) + data.duplicates_removed + data.conflicting_removed
    assert len(set(data.sequences)) == len(data.sequences)
    assert int(data.labels.sum()) == 2540 and set(data.labels.tolist()) == {0, 1}
    assert min(map(len, data.sequences)) == 7 and max(map(len, data.sequences)) == 174
    assert data.sequences[0] == "GLWSKIKEVGKEAAKAAAKAAGKAALGAVSEAV" and data.labels[0] == 1  # modlamp's first AMP


def test_bad_sequences_raise_clear_errors():
    with pytest.raises(TypeError, match="sequence .* of peptide strings"):
        check_sequences("ACDE")
    with pytest.raises(TypeError, match="peptide 1 to be a string"):
        check_sequences(["ACD", 7])
    with pytest.raises(ValueError, match="at least one residue"):
        check_sequences(["ACD", ""])
    with pytest.raises(ValueError, match=r"20 standard amino acids .*\['X'\]"):
        check_sequences(["ACDXK"])
    with pytest.raises(ValueError, match=r"\['a'\]"):
        encode_peptides(["aCD"])


def test_encoding_gives_exact_ids_padded_at_the_end():
    ids = encode_peptides(["ACY", "W"])
    assert VOCAB_SIZE == 21 and PAD_ID == 0 and AMINO_ACIDS == "ACDEFGHIKLMNPQRSTVWY"
    assert ids.tolist() == [[1, 2, 20], [19, 0, 0]]
    assert encode_peptides(["W"], max_len=4).tolist() == [[19, 0, 0, 0]]
    with pytest.raises(ValueError, match="at most max_len=2 .* got one of 3"):
        encode_peptides(["ACY"], max_len=2)


def test_composition_matches_collections_counter(data):
    sequences = data.sequences[:300]
    expected = torch.tensor([[Counter(s)[a] / len(s) for a in AMINO_ACIDS] for s in sequences])
    got = amino_acid_composition(sequences)
    assert got.shape == (300, 20)
    assert_close(got, expected)
    assert_close(got.sum(1), torch.ones(300))


def test_stratified_split_is_a_seeded_partition_that_keeps_the_class_shares(data):
    split = stratified_split(data.labels, (0.7, 0.1, 0.2), seed=0)
    allrows = torch.cat(list(split.values()))
    assert sorted(allrows.tolist()) == list(range(len(data.labels)))
    assert {k: len(v) for k, v in split.items()} == {"train": 3234, "val": 462, "test": 924}
    assert [int(data.labels[split[p]].sum()) for p in ("train", "val", "test")] == [1778, 254, 508]
    again = stratified_split(data.labels, (0.7, 0.1, 0.2), seed=0)
    assert all(torch.equal(split[p], again[p]) for p in split)
    assert not torch.equal(split["test"], stratified_split(data.labels, seed=1)["test"])


@pytest.mark.parametrize("bad", [(0.7, 0.2), (0.7, 0.2, 0.2), (1.2, -0.1, -0.1)])
def test_bad_fractions_raise(bad):
    with pytest.raises(ValueError, match="three fractions"):
        stratified_split(torch.tensor([0, 1, 0, 1]), bad)


def test_bad_labels_raise():
    with pytest.raises(ValueError, match="1-D integer tensor"):
        stratified_split(torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="same shape"):
        cluster_split(torch.tensor([0, 1, 2]), torch.tensor([0, 1]))


def test_kmer_jaccard_matches_python_sets_and_scikit_learn(data):
    sequences = data.sequences[:40] + ["ACDEFG", "ACDEFH", "AC"]
    k = 3
    sets = [{s[j: j + k] for j in range(len(s) - k + 1)} for s in sequences]
    expected = torch.tensor([[len(a & b) / len(a | b) if a | b else 0.0 for b in sets] for a in sets])
    got = kmer_jaccard(sequences, k=k)
    assert_close(got, expected)
    vocabulary = sorted(set().union(*sets))
    onehot = np.array([[m in s for m in vocabulary] for s in sets])
    assert_close(float(got[40, 41]), jaccard_score(onehot[40], onehot[41]))  # {ACD, CDE, DEF} vs {.., DEH}
    assert_close(float(got[40, 41]), 3 / 5)
    assert float(got[42].max()) == 0.0  # "AC" has no 3-mer
    assert kmer_jaccard(["ACDEF"], ["ACDEF", "KKKK"]).tolist() == [[1.0, 0.0]]
    with pytest.raises(ValueError, match="k to be an integer >= 1"):
        kmer_jaccard(["ACD"], k=0)


def test_similarity_clusters_are_connected_components():
    # A-B similar, B-C similar, A-C not (a chain), D alone.
    a, b, c, d = "ACDEFGHIKL", "ACDEFGHIKM", "CDEFGHIKMN", "WWWYYYWWWY"
    j = kmer_jaccard([a, b, c, d])
    assert_close(j[:3, :3], torch.tensor([[1, 7 / 9, 3 / 5], [7 / 9, 1, 7 / 9], [3 / 5, 7 / 9, 1]]))
    assert similarity_clusters([a, b, c, d], threshold=0.7).tolist() == [0, 0, 0, 1]
    assert similarity_clusters([d, a, b, c], threshold=0.7).tolist() == [0, 1, 1, 1]
    assert similarity_clusters([a, b, c, d], threshold=0.8).tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match=r"threshold in \(0, 1\]"):
        similarity_clusters([a, b], threshold=0)


def test_cluster_split_keeps_every_cluster_whole_and_no_test_sequence_has_a_training_neighbour(data):
    sequences, labels = data.sequences[:1200], data.labels[:1200]
    clusters = similarity_clusters(sequences, threshold=0.3)
    split = cluster_split(clusters, labels, (0.7, 0.1, 0.2), seed=0)
    assert sorted(torch.cat(list(split.values())).tolist()) == list(range(1200))
    owner = {}
    for part, rows in split.items():
        for c in clusters[rows].tolist():
            assert owner.setdefault(c, part) == part
    test, train = [sequences[i] for i in split["test"]], [sequences[i] for i in split["train"]]
    assert float(kmer_jaccard(test, train).max()) < 0.3
    assert 0.15 * 1200 < len(split["test"]) < 0.25 * 1200


def test_peptide_batches_cut_each_batch_to_its_longest_sequence():
    ids = encode_peptides(["ACDEFGHIK", "AC", "ACD", "A"])
    labels = torch.tensor([1, 0, 1, 0])
    batches = list(peptide_batches(ids, labels, batch_size=2))
    assert [tuple(x.shape) for x, _ in batches] == [(2, 9), (2, 3)]
    assert torch.equal(batches[1][0], ids[2:, :3]) and torch.equal(batches[1][1], labels[2:])
    first = [y.tolist() for _, y in peptide_batches(ids, labels, 2, shuffle=True, seed=3)]
    assert first == [y.tolist() for _, y in peptide_batches(ids, labels, 2, shuffle=True, seed=3)]
    with pytest.raises(ValueError, match=r"ids \(N, T\) and labels \(N,\)"):
        peptide_batches(ids, labels[:3])


# ---------------------------------------------------------------- the benchmark


@pytest.fixture(scope="module")
def bench(one_thread):
    return load_benchmark("peptide_families")


@pytest.mark.parametrize("family", ["cnn", "lstm"])
def test_the_families_bodies_are_within_two_percent_of_the_transformers(bench, family):
    target = bench.body_parameters(bench.build("transformer", bench.CONFIG.ff))
    body = bench.body_parameters(bench.build(family, bench.matched_width(family)))
    assert abs(body - target) < 0.02 * target, (family, body, target)


def test_a_tiny_benchmark_run_is_deterministic(bench):
    config = bench.PeptideConfig(embed=8, ff=16, layers=1, heads=2, epochs=1, seeds=(0,), batch_size=32)
    first = bench.main([], config=config, limit=300)
    second = bench.main([], config=config, limit=300)
    assert first["settings"]["sequences"] == 300 and len(first["rows"]) == 6
    assert first["splits"]["cluster"]["test_with_neighbour"] == 0
    for r, s in zip(first["rows"], second["rows"]):
        assert (r["accuracy"], r["auc"], r["val_accuracy"]) == (s["accuracy"], s["auc"], s["val_accuracy"])
        assert 0 <= r["auc"] <= 1


@pytest.mark.skipif(not RESULTS.exists(), reason="the benchmark's results are not shipped yet")
def test_the_shipped_results_are_consistent():
    result = json.loads(RESULTS.read_text())
    s = result["settings"]
    assert (s["sequences"], s["duplicates_removed"], s["conflicting_removed"]) == (4620, 533, 47)
    assert result["splits"]["cluster"]["test_with_neighbour"] == 0
    assert result["splits"]["random"]["test_with_neighbour"] == 475
    for split, families in result["summary"].items():
        for family, metrics in families.items():
            rows = [r for r in result["rows"] if r["split"] == split and r["family"] == family]
            assert len(rows) == len(s["seeds"])
            assert metrics["auc"]["min"] == round(min(r["auc"] for r in rows), 4)
