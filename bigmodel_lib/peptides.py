"""Chapter 6's biology task: antimicrobial peptides (AMPs) against random UniProt sequences.

The data is ``modlamp``'s ``load_AMPvsUniProt`` (BSD-3, inside the package): 2,600 AMPs of the APD3
database and 2,600 UniProt sequences of 10 to 50 residues. :func:`load_amp_peptides` removes the exact
duplicates and the sequences that carry both labels; :func:`check_sequences` insists on the 20
standard amino acids (anything else raises, naming the letters, rather than being silently mapped).

The pieces the section builds from their formulas:

* the residue vocabulary (:data:`AMINO_ACIDS`, id 0 is padding) and :func:`encode_peptides`, ids
  ``(N, T)`` padded at the end, which :func:`peptide_batches` cuts to each batch's longest sequence;
* :func:`amino_acid_composition`, the 20 frequencies per sequence of the logistic-regression baseline;
* :func:`stratified_split`, a seeded split that keeps the share of each class;
* a similarity-aware split: :func:`kmer_jaccard` (the Jaccard similarity of the sets of k-mers of two
  sequences), :func:`similarity_clusters` (connected components of the graph that joins every pair at or
  above a threshold) and :func:`cluster_split`, which assigns whole components to one part, so no
  sequence of one part has a neighbour at or above the threshold in another. A simple stand-in for the
  alignment-based clustering (CD-HIT) the field uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler, SequentialSampler

__all__ = [
    "AMINO_ACIDS",
    "PAD_ID",
    "VOCAB_SIZE",
    "load_amp_peptides",
    "check_sequences",
    "encode_peptides",
    "amino_acid_composition",
    "stratified_split",
    "kmer_jaccard",
    "similarity_clusters",
    "cluster_split",
    "peptide_batches",
]

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
"""The 20 standard amino acids, one-letter codes, in alphabetical order; residue ``AMINO_ACIDS[i]`` has id ``i + 1``.

Introduced in §6.4.
"""
PAD_ID = 0
"""The id of padding (0): :func:`encode_peptides` pads every sequence at the end with it, and the models mask it.

Introduced in §6.4.
"""
VOCAB_SIZE = len(AMINO_ACIDS) + 1
"""The number of ids, 21: the 20 amino acids and padding.

Introduced in §6.4.
"""
_INDEX = {a: i for i, a in enumerate(AMINO_ACIDS)}


@dataclass(frozen=True)
class PeptideData:
    """The cleaned peptides: ``sequences`` (N strings), ``labels`` (N,) long with 1 = AMP, 0 = UniProt,
    and what cleaning removed from the ``raw_count`` sequences.

    Introduced in §6.4.
    """

    sequences: list[str]
    labels: torch.Tensor
    raw_count: int
    duplicates_removed: int  # second and later copies of a sequence with one label
    conflicting_removed: int  # every copy of a sequence that appears with both labels


def check_sequences(sequences: Sequence[str]) -> list[str]:
    """Return ``sequences`` as a list after checking each is a non-empty string of the 20 standard amino acids.

    Upper-case one-letter codes only: a lower-case letter, a gap, X (unknown), B, Z, U or O raises
    ValueError naming the sequence and the letters; a non-string raises TypeError.

    Introduced in §6.4.
    """
    if isinstance(sequences, str) or not isinstance(sequences, Sequence | np.ndarray):
        raise TypeError(f"expected a sequence (list) of peptide strings, got {type(sequences).__name__}")
    out = []
    for i, s in enumerate(sequences):
        if not isinstance(s, str):
            raise TypeError(f"expected peptide {i} to be a string of amino-acid letters, got {type(s).__name__}")
        if not s:
            raise ValueError(f"expected peptide {i} to have at least one residue, got an empty string")
        bad = sorted(set(s) - _INDEX.keys())
        if bad:
            raise ValueError(f"expected peptide {i} to use only the 20 standard amino acids {AMINO_ACIDS}, "
                             f"got {bad} in {s[:40]!r}")
        out.append(str(s))
    return out


def load_amp_peptides() -> PeptideData:
    """modlamp's 5,200 labelled peptides, without exact duplicates and without sequences labelled both ways.

    Returns a :class:`PeptideData`, sequences in the order of their first appearance. Offline (the data
    ships inside ``modlamp``); raises ValueError if a sequence uses a non-standard letter.

    Introduced in §6.4.
    """
    from modlamp.datasets import load_AMPvsUniProt

    raw = load_AMPvsUniProt()
    sequences, targets = check_sequences([str(s) for s in raw.sequences]), [int(t) for t in raw.target]
    labels_of: dict[str, set[int]] = {}
    for s, t in zip(sequences, targets):
        labels_of.setdefault(s, set()).add(t)
    keep = [s for s in labels_of if len(labels_of[s]) == 1]  # dicts keep the order of first appearance
    conflicting = sum(1 for s in sequences if len(labels_of[s]) > 1)
    return PeptideData(sequences=keep, labels=torch.tensor([labels_of[s].pop() for s in keep]),
                       raw_count=len(sequences), duplicates_removed=len(sequences) - conflicting - len(keep),
                       conflicting_removed=conflicting)


def encode_peptides(sequences: Sequence[str], max_len: int | None = None) -> torch.Tensor:
    """Residue ids ``(N, T)`` long, padded with :data:`PAD_ID` at the end; ``T`` is the longest length.

    With ``max_len``, longer sequences raise ValueError (nothing is cut silently) and ``T = max_len``.

    Introduced in §6.4.
    """
    sequences = check_sequences(sequences)
    longest = max((len(s) for s in sequences), default=0)
    if max_len is not None and longest > max_len:
        raise ValueError(f"expected sequences of at most max_len={max_len} residues, got one of {longest}")
    ids = torch.full((len(sequences), max_len or longest), PAD_ID, dtype=torch.long)  # (N, T)
    for i, s in enumerate(sequences):
        ids[i, : len(s)] = torch.tensor([_INDEX[a] + 1 for a in s])
    return ids


def amino_acid_composition(sequences: Sequence[str]) -> torch.Tensor:
    """The share of each of the 20 amino acids in each sequence: ``(N, 20)`` float32, rows summing to 1.

    Columns in the order of :data:`AMINO_ACIDS`. The sequence's length and order play no part.

    Introduced in §6.4.
    """
    ids = encode_peptides(sequences)  # (N, T)
    counts = torch.zeros(len(ids), VOCAB_SIZE).scatter_add_(1, ids, torch.ones_like(ids, dtype=torch.float))
    counts = counts[:, 1:]  # (N, 20): drop the padding column
    return counts / counts.sum(1, keepdim=True)


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if len(fractions) != 3 or any(not 0 <= f <= 1 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"expected three fractions (train, validation, test) in [0, 1] summing to 1, got {fractions}")
    return tuple(float(f) for f in fractions)


def _check_labels(labels) -> torch.Tensor:
    labels = torch.as_tensor(labels)
    if labels.dim() != 1 or labels.dtype.is_floating_point or labels.dtype == torch.bool or len(labels) == 0:
        raise ValueError(f"expected labels as a non-empty 1-D integer tensor, got shape {tuple(labels.shape)} "
                         f"and dtype {labels.dtype}")
    return labels


def stratified_split(labels, fractions: Sequence[float] = (0.7, 0.1, 0.2), seed: int = 0) -> dict[str, torch.Tensor]:
    """A seeded split of ``range(N)`` into ``"train"``, ``"val"`` and ``"test"`` indices (sorted, long).

    Each class is shuffled on its own and cut at the fractions (rounded down for validation and test),
    so every part has the class shares of the whole. Raises ValueError for bad labels or fractions.

    Introduced in §6.4.
    """
    labels, (_, f_val, f_test) = _check_labels(labels), _check_fractions(fractions)
    generator = torch.Generator().manual_seed(seed)
    parts = {"train": [], "val": [], "test": []}
    for c in labels.unique().tolist():
        rows = torch.nonzero(labels == c).flatten()
        rows = rows[torch.randperm(len(rows), generator=generator)]
        n_test, n_val = int(f_test * len(rows)), int(f_val * len(rows))
        parts["test"].append(rows[:n_test])
        parts["val"].append(rows[n_test: n_test + n_val])
        parts["train"].append(rows[n_test + n_val:])
    return {k: torch.cat(v).sort().values for k, v in parts.items()}


def _kmer_matrix(sequences: Sequence[str], k: int, vocabulary: dict[str, int]) -> tuple[list[int], list[int]]:
    """(row, column) of every distinct k-mer of every sequence; new k-mers are added to ``vocabulary``."""
    rows, cols = [], []
    for i, s in enumerate(sequences):
        kmers = {s[j: j + k] for j in range(len(s) - k + 1)}
        cols.extend(vocabulary.setdefault(m, len(vocabulary)) for m in kmers)
        rows.extend([i] * len(kmers))
    return rows, cols


def kmer_jaccard(a: Sequence[str], b: Sequence[str] | None = None, k: int = 3) -> torch.Tensor:
    """Jaccard similarity ``|A ∩ B| / |A ∪ B|`` of the sets of k-mers of every pair: ``(len(a), len(b))`` float32.

    ``b`` defaults to ``a``. A sequence shorter than ``k`` has no k-mers and similarity 0 to everything.
    The intersections come from one sparse product of the 0/1 k-mer indicator matrices (SciPy).
    Raises ValueError for ``k < 1`` or non-standard letters.

    Introduced in §6.4.
    """
    from scipy.sparse import csr_matrix

    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"expected k to be an integer >= 1, got {k!r}")
    a = check_sequences(a)
    b = a if b is None else check_sequences(b)
    vocabulary: dict[str, int] = {}
    ra, ca = _kmer_matrix(a, k, vocabulary)
    rb, cb = _kmer_matrix(b, k, vocabulary)
    xa = csr_matrix((np.ones(len(ra), np.float32), (ra, ca)), shape=(len(a), max(len(vocabulary), 1)))
    xb = csr_matrix((np.ones(len(rb), np.float32), (rb, cb)), shape=(len(b), max(len(vocabulary), 1)))
    inter = torch.from_numpy((xa @ xb.T).toarray())  # (Na, Nb): shared k-mers
    size_a = torch.from_numpy(np.asarray(xa.sum(1), np.float32)).flatten()  # (Na,)
    size_b = torch.from_numpy(np.asarray(xb.sum(1), np.float32)).flatten()  # (Nb,)
    union = size_a[:, None] + size_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp_min(1), torch.zeros(()))


def similarity_clusters(sequences: Sequence[str], threshold: float = 0.5, k: int = 3) -> torch.Tensor:
    """Cluster ids ``(N,)`` long: the connected components of the graph joining every pair whose
    :func:`kmer_jaccard` is at least ``threshold``; ids count from 0 in order of first appearance.

    Single linkage: a chain of similar pairs ends up in one component, so two members may be
    dissimilar, but members of different components never reach the threshold. Raises ValueError
    for a threshold outside (0, 1].

    Introduced in §6.4.
    """
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    if not 0 < threshold <= 1:
        raise ValueError(f"expected a threshold in (0, 1], got {threshold!r}")
    similar = (kmer_jaccard(sequences, k=k) >= threshold).numpy()  # (N, N) bool
    _, component = connected_components(csr_matrix(similar), directed=False)
    _, first, inverse = np.unique(component, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # renumber components by their first member
    return torch.from_numpy(order[inverse]).long()


def cluster_split(clusters, labels, fractions: Sequence[float] = (0.7, 0.1, 0.2),
                  seed: int = 0) -> dict[str, torch.Tensor]:
    """A seeded split that puts every member of a cluster in the same part: ``"train"``, ``"val"``, ``"test"``.

    The clusters are shuffled; for each class of ``labels``, its clusters (those whose members are
    mostly of that class) fill the test part until it holds ``fractions[2]`` of the class, then the
    validation part, and the rest train. Parts come out near, not exactly at, the fractions: a big
    cluster cannot be cut. ``clusters`` and ``labels`` are ``(N,)`` integer tensors.

    Introduced in §6.4.
    """
    clusters, labels = _check_labels(clusters), _check_labels(labels)
    _, f_val, f_test = _check_fractions(fractions)
    if clusters.shape != labels.shape:
        raise ValueError(f"expected clusters and labels of the same shape, got {tuple(clusters.shape)} "
                         f"and {tuple(labels.shape)}")
    generator = torch.Generator().manual_seed(seed)
    ids, inverse = clusters.unique(return_inverse=True)
    majority = [int(labels[inverse == j].mode().values) for j in range(len(ids))]
    part_of = {}
    for c in labels.unique().tolist():
        mine = [j for j in range(len(ids)) if majority[j] == c]
        total, taken = sum(int((inverse == j).sum()) for j in mine), 0
        for pos in torch.randperm(len(mine), generator=generator).tolist():
            j = mine[pos]
            part_of[j] = "test" if taken < f_test * total else "val" if taken < (f_test + f_val) * total else "train"
            taken += int((inverse == j).sum())
    where = [part_of[j] for j in inverse.tolist()]
    return {p: torch.tensor([i for i, w in enumerate(where) if w == p], dtype=torch.long)
            for p in ("train", "val", "test")}


class _Batches(Dataset):
    """``data[rows]`` is the batch ``(ids[rows] cut to its longest sequence, labels[rows])``."""

    def __init__(self, ids: torch.Tensor, labels: torch.Tensor):
        self.ids, self.labels, self.lengths = ids, labels, (ids != PAD_ID).sum(1)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, rows):
        longest = int(self.lengths[rows].max())
        return self.ids[rows, :longest], self.labels[rows]  # (b, T_batch), (b,)


class _BucketedBatches(Sampler):
    """Every pass: a seeded random order, sorted by length within windows of ``window`` batches, cut into
    batches, the batches shuffled. Similar lengths share a batch, so little padding is computed."""

    def __init__(self, lengths: torch.Tensor, batch_size: int, window: int, seed: int):
        self.lengths, self.batch_size, self.window = lengths, batch_size, window
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self):
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self):
        order = torch.randperm(len(self.lengths), generator=self.generator)
        span = self.batch_size * self.window
        batches = []
        for start in range(0, len(order), span):
            chunk = order[start: start + span]
            chunk = chunk[self.lengths[chunk].argsort(stable=True)]
            batches += [chunk[i: i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size)]
        return iter([batches[i] for i in torch.randperm(len(batches), generator=self.generator).tolist()])


def peptide_batches(ids: torch.Tensor, labels: torch.Tensor, batch_size: int = 64, shuffle: bool = False,
                    seed: int = 0, window: int = 8) -> DataLoader:
    """A DataLoader of ``(ids (b, T_batch), labels (b,))`` with each batch cut to its longest sequence.

    ``ids`` ``(N, T)`` as from :func:`encode_peptides`. Without ``shuffle``, the rows in order. With it,
    every pass draws a seeded random order (the same orders for the same ``seed``), sorts it by length
    within windows of ``window`` batches, cuts it into batches and shuffles those: similar lengths share
    a batch, so little padding is computed (the book's classifiers mask padding, so it changes only the
    time and which rows meet in a batch). Raises ValueError if the shapes disagree.

    Introduced in §6.4.
    """
    if ids.dim() != 2 or labels.shape != ids.shape[:1]:
        raise ValueError(f"expected ids (N, T) and labels (N,), got {tuple(ids.shape)} and {tuple(labels.shape)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"expected batch_size to be an integer >= 1, got {batch_size!r}")
    data = _Batches(ids, labels)
    if shuffle:
        sampler = _BucketedBatches(data.lengths, batch_size, window, seed)
    else:
        sampler = BatchSampler(SequentialSampler(data), batch_size, drop_last=False)
    return DataLoader(data, sampler=sampler, batch_size=None)
