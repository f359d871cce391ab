"""Chapter 6's biology task: a composition baseline, a CNN, a BiLSTM and a Transformer tell AMPs from UniProt.

The data is ``bigmodel_lib.peptides.load_amp_peptides()``: modlamp's 5,200 peptides without exact duplicates and
without the sequences labelled both ways (4,620 left: 2,540 AMPs, 2,080 UniProt). Two splits, 70/10/20:

* ``random``: ``stratified_split(labels, seed=0)``, the usual seeded stratified split;
* ``cluster``: ``cluster_split(similarity_clusters(sequences, threshold, k), labels, seed=0)``: whole connected
  components of the graph that joins pairs whose 3-mer sets have a Jaccard similarity of at least ``threshold``
  go to one part, so no test sequence has such a neighbour in training (a simple stand-in for CD-HIT).

For each split the results record how many test sequences have a neighbour at or above the threshold in training,
and the test accuracy and ROC AUC (``sklearn.metrics.roc_auc_score`` on p(AMP)) of:

* ``composition``: the 20 amino-acid frequencies (``amino_acid_composition``), standardised, and scikit-learn's
  ``LogisticRegression`` (L2, C=1; deterministic, so one run);
* ``length``: the length alone, scored by the training set's share of AMPs at that length (a lookup table,
  add-one smoothed): the shortcut the UniProt query "length 10 TO 50" leaves in the data;
* ``cnn``, ``lstm``, ``transformer``: ``bigmodel_lib.models.text_classifiers``' ``KimCNN`` (widths 3, 4, 5),
  ``BiLSTMClassifier`` and ``TransformerEncoderClassifier`` (2 pre-norm layers, 4 heads) over residue ids
  (vocabulary 21, padding id 0, ``embed``-wide embeddings), their bodies (everything but the embedding table)
  matched by bisection on the width to the Transformer's count at ``ff`` (the counts are recorded). One recipe for
  all: the book's ``Trainer``, AdamW (weight decay 0.01), ``lr`` with 5% warmup and cosine decay, gradients
  clipped at 1, ``batch_size`` sequences per batch (``peptide_batches``: sorted by length within windows of 8
  batches, each batch cut to its longest), ``epochs`` epochs, the model at the end
  of the last epoch evaluated (the validation accuracy of every epoch is recorded, not used to choose).
  ``seeds`` set the initialisation, dropout and batch order; the splits stay fixed.

Slow and not a test; chapter 6 loads ``bigmodel_lib/results/peptide_families_cpu.json``, written by

    python benchmarks/peptide_families.py --threads 1 --out bigmodel_lib/results/peptide_families_cpu.json
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from bigmodel_lib import TrainConfig, Trainer, count_parameters, seed_everything
from bigmodel_lib.models.text_classifiers import BiLSTMClassifier, KimCNN, TransformerEncoderClassifier
from bigmodel_lib.peptides import (
    VOCAB_SIZE,
    amino_acid_composition,
    cluster_split,
    encode_peptides,
    kmer_jaccard,
    load_amp_peptides,
    peptide_batches,
    similarity_clusters,
    stratified_split,
)

FAMILIES = ("cnn", "lstm", "transformer")
SPLITS = ("random", "cluster")


@dataclass
class PeptideConfig:
    embed: int = 32            # residue embedding width, every family
    ff: int = 64               # the Transformer's feed-forward width: its body is the target
    layers: int = 2
    heads: int = 4
    dropout: float = 0.1
    epochs: int = 10
    batch_size: int = 64
    lr: float = 3e-3
    seeds: tuple = (0, 1, 2)
    threshold: float = 0.3     # Jaccard similarity of 3-mer sets that counts as "a neighbour"
    k: int = 3
    fractions: tuple = (0.7, 0.1, 0.2)


CONFIG = PeptideConfig()


def build(family: str, width: int, config: PeptideConfig | None = None):
    """The family's classifier over residues; ``width``: filters per convolution, LSTM units, feed-forward width."""
    c = config or CONFIG
    shared = dict(num_classes=2, dropout=c.dropout)
    if family == "cnn":
        return KimCNN(VOCAB_SIZE, c.embed, width, kernel_sizes=(3, 4, 5), **shared)
    if family == "lstm":
        return BiLSTMClassifier(VOCAB_SIZE, c.embed, width, **shared)
    if family == "transformer":
        return TransformerEncoderClassifier(VOCAB_SIZE, c.embed, width, num_layers=c.layers, num_heads=c.heads,
                                            max_len=256, **shared)
    raise ValueError(f"expected a family in {FAMILIES}, got {family!r}")


def body_parameters(model) -> int:
    """Weights besides the embedding table."""
    return count_parameters(model) - model.embed.weight.numel()


def matched_width(family: str, config: PeptideConfig | None = None) -> int:
    """The width whose body is closest to the Transformer's at ``config.ff``."""
    c = config or CONFIG
    if family == "transformer":
        return c.ff
    with torch.device("meta"):
        target = body_parameters(build("transformer", c.ff, c))

    def body(width: int) -> int:
        with torch.device("meta"):
            return body_parameters(build(family, width, c))

    low, high = 1, target
    while low < high:
        mid = (low + high) // 2
        low, high = (mid + 1, high) if body(mid) < target else (low, mid)
    return min((w for w in (low - 1, low) if w >= 1), key=lambda w: abs(body(w) - target))


def make_splits(sequences: list[str], labels: torch.Tensor, config: PeptideConfig | None = None) -> dict:
    """``{"random": {...}, "cluster": {...}}``, each ``{"train", "val", "test"}`` index tensors."""
    c = config or CONFIG
    clusters = similarity_clusters(sequences, threshold=c.threshold, k=c.k)
    return {"random": stratified_split(labels, c.fractions, seed=0),
            "cluster": cluster_split(clusters, labels, c.fractions, seed=0)}


def test_neighbours(sequences: list[str], split: dict, config: PeptideConfig | None = None) -> int:
    """How many test sequences have a training sequence at or above the similarity threshold."""
    c = config or CONFIG
    test = [sequences[i] for i in split["test"]]
    train = [sequences[i] for i in split["train"]]
    return int((kmer_jaccard(test, train, k=c.k).max(1).values >= c.threshold).sum())


def composition_baseline(sequences: list[str], labels: torch.Tensor, split: dict) -> dict:
    """Standardised amino-acid composition and logistic regression: test accuracy, ROC AUC and p(AMP)."""
    x = amino_acid_composition(sequences).numpy()
    y = labels.numpy()
    scaler = StandardScaler().fit(x[split["train"]])
    model = LogisticRegression(C=1.0, max_iter=2000).fit(scaler.transform(x[split["train"]]), y[split["train"]])
    p = model.predict_proba(scaler.transform(x[split["test"]]))[:, 1]
    return dict(accuracy=float(((p > 0.5) == y[split["test"]]).mean()), auc=float(roc_auc_score(y[split["test"]], p)),
                p_amp=p)


def length_baseline(sequences: list[str], labels: torch.Tensor, split: dict) -> dict:
    """The share of AMPs among the training sequences of each length (add-one smoothed), scored on the test set."""
    lengths = np.array([len(s) for s in sequences])
    y = labels.numpy()
    train, test = split["train"].numpy(), split["test"].numpy()
    amp = np.bincount(lengths[train], weights=y[train], minlength=lengths.max() + 1)
    seen = np.bincount(lengths[train], minlength=lengths.max() + 1)
    p = ((amp + 1) / (seen + 2))[lengths[test]]
    return dict(accuracy=float(((p > 0.5) == y[test]).mean()), auc=float(roc_auc_score(y[test], p)))


def train(family: str, width: int, seed: int, ids: torch.Tensor, labels: torch.Tensor, split: dict,
          config: PeptideConfig | None = None, device="cpu") -> dict:
    """One run: the validation accuracy per epoch, the test accuracy and ROC AUC at the end, and p(AMP) on test."""
    c = config or CONFIG
    seed_everything(seed)
    model = build(family, width, c)
    trainer = Trainer(model, TrainConfig(epochs=c.epochs, batch_size=c.batch_size, lr=c.lr, seed=seed,
                                         progress=False, device=str(device), precision="fp32"))
    parts = {p: (ids[split[p]], labels[split[p]]) for p in ("train", "val", "test")}
    started = time.perf_counter()
    history = trainer.fit(peptide_batches(*parts["train"], c.batch_size, shuffle=True, seed=seed),
                          peptide_batches(*parts["val"], 256))
    seconds = time.perf_counter() - started
    logits, y = trainer.predict(peptide_batches(*parts["test"], 256))
    p = logits.softmax(-1)[:, 1].numpy()
    return dict(family=family, seed=seed, width=width, parameters=count_parameters(model),
                body_parameters=body_parameters(model), val_accuracy=[round(v, 4) for v in history.val_metric],
                accuracy=float((logits.argmax(-1) == y).float().mean()), auc=float(roc_auc_score(y.numpy(), p)),
                seconds=round(seconds, 1), p_amp=p)


def summary(rows: list[dict]) -> dict:
    """Mean, min and max of test accuracy and ROC AUC per (split, family) over the seeds."""
    out = {}
    for r in rows:
        out.setdefault(r["split"], {}).setdefault(r["family"], {"accuracy": [], "auc": []})
        for m in ("accuracy", "auc"):
            out[r["split"]][r["family"]][m].append(r[m])
    return {s: {f: {m: dict(mean=round(float(np.mean(v)), 4), min=round(min(v), 4), max=round(max(v), 4))
                    for m, v in d.items()} for f, d in fams.items()} for s, fams in out.items()}


def main(argv: list[str] | None = None, config: PeptideConfig | None = None, limit: int | None = None) -> dict:
    """Run every split, baseline, family and seed; write ``--out``. ``limit`` (tests): N sequences drawn at random (seed 0)."""
    global CONFIG
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    CONFIG = config or PeptideConfig()
    if args.seeds is not None:
        CONFIG = dataclasses.replace(CONFIG, seeds=tuple(args.seeds))
    if args.epochs is not None:
        CONFIG = dataclasses.replace(CONFIG, epochs=args.epochs)
    if args.threads:
        torch.set_num_threads(args.threads)
    started, load_before = time.time(), os.getloadavg()
    data = load_amp_peptides()
    rows_kept = range(len(data.sequences)) if limit is None else \
        torch.randperm(len(data.sequences), generator=torch.Generator().manual_seed(0))[:limit].sort().values.tolist()
    sequences, labels = [data.sequences[i] for i in rows_kept], data.labels[list(rows_kept)]
    ids = encode_peptides(sequences)
    splits = make_splits(sequences, labels, CONFIG)
    widths = {f: matched_width(f, CONFIG) for f in FAMILIES}
    rows, baselines, split_info = [], {}, {}
    for name, split in splits.items():
        split_info[name] = dict(sizes={p: len(v) for p, v in split.items()},
                                amp={p: int(labels[v].sum()) for p, v in split.items()},
                                test_with_neighbour=test_neighbours(sequences, split, CONFIG))
        comp = composition_baseline(sequences, labels, split)
        baselines[name] = dict(composition={k: v for k, v in comp.items() if k != "p_amp"},
                               length=length_baseline(sequences, labels, split),
                               test_labels=labels[split["test"]].tolist(),
                               composition_p_amp=[round(float(v), 4) for v in comp["p_amp"]])
        print(name, split_info[name], {k: v for k, v in baselines[name].items() if k in ("composition", "length")},
              flush=True)
        for family in FAMILIES:
            for seed in CONFIG.seeds:
                r = train(family, widths[family], seed, ids, labels, split, CONFIG)
                r["split"] = name
                r["p_amp"] = [round(float(v), 4) for v in r["p_amp"]] if seed == CONFIG.seeds[0] else None
                rows.append(r)
                if args.out:
                    write(args.out, CONFIG, data, limit, started, load_before, split_info, baselines, rows, argv, widths)
                print(f"{name:>7} {family:>11} {seed} {r['body_parameters']:>6} acc {r['accuracy']:.4f} "
                      f"auc {r['auc']:.4f} {r['seconds']:.1f}s", flush=True)
    return write(args.out, CONFIG, data, limit, started, load_before, split_info, baselines, rows, argv, widths)


def write(out, config, data, limit, started, load_before, split_info, baselines, rows, argv, widths=None) -> dict:
    """The results so far as a dict, also written to ``out`` (if given): after every run, so a stopped run keeps them."""
    settings = asdict(config)
    settings.update(widths=widths or {f: matched_width(f, config) for f in FAMILIES},
                    sequences=sum(split_info["random"]["sizes"].values()), raw_count=data.raw_count,
                    duplicates_removed=data.duplicates_removed, conflicting_removed=data.conflicting_removed,
                    limit=limit, date=datetime.date.today().isoformat(),
                    minutes=round((time.time() - started) / 60, 1),
                    command="python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]))
    result = dict(settings=settings,
                  machine=dict(python=platform.python_version(), torch=torch.__version__, cpu_count=os.cpu_count(),
                               torch_threads=torch.get_num_threads(), processor=platform.processor(),
                               loadavg_before=[round(v, 2) for v in load_before],
                               loadavg_after=[round(v, 2) for v in os.getloadavg()]),
                  splits=split_info, baselines=baselines, rows=rows, summary=summary(rows))
    if out:
        with open(out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
    return result

if __name__ == "__main__":
    main()
