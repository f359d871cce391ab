"""Sentiment of tweets from frozen all-MiniLM-L6-v2 embeddings (a linear probe) against bag-of-words baselines.

The labelled tweets of ``bigmodel_lib.sentiment`` (34,796 after de-duplication; negative,
neutral, positive), split 80/10/10 with ``split_tweets(seed=0)``. Each tweet becomes one
384-number sentence embedding from the book's own encoder with all-MiniLM-L6-v2's weights
(``models.bert.load_minilm`` and ``encode_sentences``: mean pooling, length 1; section 5.3),
computed once, without training the encoder. On those embeddings, and on two bag-of-words
representations (TF-IDF of words and word pairs; TF-IDF of words plus character 2-5-grams),
a multinomial logistic regression (scikit-learn) is fitted on the training split, with its
inverse regularisation strength ``C`` chosen on the validation split from the same grid for
every representation. The majority class is the floor. Reported per method: test accuracy with
its 95% Wilson interval, macro-F1, the chosen ``C``, the number of trainable parameters of the
classifier, and the seconds spent (encoding and fitting, measured on this machine: they vary
with its load; the accuracies do not).

Chapter 5 compares these with fine-tuning strategies. Written on the 2-core CPU machine that
runs the book's tests by (about 15 minutes, most of it encoding 34,796 tweets):

    python benchmarks/minilm_probe.py --out bigmodel_lib/results/minilm_probe_cpu.json

A first full run with C from 0.25 to 16 chose C = 16, the edge of that grid, for the embeddings, so
the grid was widened; with it, their validation accuracy is flat from C = 1 to 256 and every method's
chosen C lies inside the grid (``tests/test_minilm_probe_data.py``). ``--embeddings`` keeps the encoded
tweets in a file, so that a rerun of the classifiers skips the encoding.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time

import numpy as np
import torch
from scipy.sparse import hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

from bigmodel_lib import seed_everything
from bigmodel_lib.metrics import wilson_interval as wilson  # the name tests/test_*.py read
from bigmodel_lib.models.bert import encode_sentences, load_minilm
from bigmodel_lib.sentiment import load_tweets, split_tweets

C_GRID = (0.25, 1.0, 4.0, 16.0, 64.0, 256.0)  # a first run with 0.25-16 chose 16 for the embeddings: widened


def fit_probe(name: str, x_train, y_train, x_val, y_val, x_test, y_test, extra_seconds: float = 0.0) -> dict:
    """Logistic regression with C chosen on validation accuracy; test metrics at that C."""
    start = time.perf_counter()
    fits = {}
    for c in C_GRID:
        clf = LogisticRegression(C=c, max_iter=2000)
        clf.fit(x_train, y_train)
        fits[c] = (float((clf.predict(x_val) == y_val).mean()), clf)
    best_c = max(C_GRID, key=lambda c: (fits[c][0], -c))  # ties to the stronger regularisation
    clf = fits[best_c][1]
    predicted = clf.predict(x_test)
    correct = int((predicted == y_test).sum())
    low, high = wilson(correct, len(y_test))
    row = dict(method=name, test_accuracy=correct / len(y_test), ci95=[low, high],
               macro_f1=float(f1_score(y_test, predicted, average="macro")), chosen_C=best_c,
               val_accuracy_by_C={str(c): fits[c][0] for c in C_GRID},
               classifier_parameters=int(clf.coef_.size + clf.intercept_.size),
               seconds=round(extra_seconds + time.perf_counter() - start, 1))
    print(f"{name:<34} test accuracy {row['test_accuracy']:.4f} [{low:.4f}, {high:.4f}]  macro-F1 "
          f"{row['macro_f1']:.4f}  C={best_c}  {row['seconds']:.0f} s", flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bigmodel_lib/results/minilm_probe_cpu.json")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--limit", type=int, default=None, help="use only the first N tweets of each split (smoke)")
    parser.add_argument("--embeddings", default=None,
                        help="an .npz file to keep the MiniLM embeddings in: read when it exists, written otherwise")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    seed_everything(0)
    train, val, test = split_tweets(load_tweets(), (0.8, 0.1, 0.1), seed=0)
    splits = {"train": train, "val": val, "test": test}
    if args.limit:
        splits = {k: s.subset(range(min(args.limit, len(s)))) for k, s in splits.items()}
    y = {k: np.array(s.labels) for k, s in splits.items()}
    rows = []

    majority = int(np.bincount(y["train"]).argmax())
    correct = int((y["test"] == majority).sum())
    rows.append(dict(method="majority class", test_accuracy=correct / len(y["test"]),
                     ci95=list(wilson(correct, len(y["test"]))),
                     macro_f1=float(f1_score(y["test"], np.full_like(y["test"], majority), average="macro")),
                     classifier_parameters=0, seconds=0.0))

    start = time.perf_counter()
    words = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    x_words = {"train": words.fit_transform(splits["train"].texts)}
    x_words.update({k: words.transform(splits[k].texts) for k in ("val", "test")})
    rows.append(fit_probe("TF-IDF words 1-2 + logistic", x_words["train"], y["train"], x_words["val"], y["val"],
                          x_words["test"], y["test"], time.perf_counter() - start))

    start = time.perf_counter()
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True, max_features=100_000)
    x_chars = {"train": chars.fit_transform(splits["train"].texts)}
    x_chars.update({k: chars.transform(splits[k].texts) for k in ("val", "test")})
    x_both = {k: hstack([x_words[k], x_chars[k]]).tocsr() for k in x_words}
    rows.append(fit_probe("TF-IDF words + chars 2-5 + logistic", x_both["train"], y["train"], x_both["val"],
                          y["val"], x_both["test"], y["test"], time.perf_counter() - start))

    start = time.perf_counter()
    if args.embeddings and os.path.exists(args.embeddings):
        with np.load(args.embeddings) as cached:
            emb = {k: cached[k] for k in splits}
        assert all(len(emb[k]) == len(splits[k]) for k in splits), "the cached embeddings belong to another split"
    else:
        model, tokenizer = load_minilm("cpu")
        emb = {k: encode_sentences(model, tokenizer, s.texts, batch_size=64).numpy() for k, s in splits.items()}
        if args.embeddings:
            np.savez(args.embeddings, **emb)
    encode_seconds = time.perf_counter() - start
    n_tweets = sum(len(s) for s in splits.values())
    print(f"encoded {n_tweets:,} tweets with the book's MiniLM encoder in {encode_seconds:.0f} s "
          f"({n_tweets / encode_seconds:.0f} tweets/s)", flush=True)
    rows.append(fit_probe("MiniLM embeddings (frozen) + logistic", emb["train"], y["train"], emb["val"], y["val"],
                          emb["test"], y["test"], encode_seconds))

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    result = dict(
        machine=dict(cpu=cpu, cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(), torch=torch.__version__,
                     python=platform.python_version()),
        settings=dict(date=datetime.date.today().isoformat(), split="split_tweets(load_tweets(), (0.8, 0.1, 0.1), seed=0)",
                      sizes={k: len(s) for k, s in splits.items()}, C_grid=list(C_GRID), limit=args.limit,
                      encode_seconds=round(encode_seconds, 1)),
        rows=rows,
    )
    with open(args.out, "w") as f:
        f.write(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
