"""Fine-tuning strategies on the tweets, measured: what all-MiniLM-L6-v2's pretraining buys, and how to use it.

The task is chapter 5's tweet sentiment (``bigmodel_lib.sentiment``: negative, neutral, positive;
``split_tweets(load_tweets(), (0.8, 0.1, 0.1), seed=0)``: 27,838 / 3,479 / 3,479). Two parts:

**A. Labels against accuracy, with and without pretraining, cheaply.** For each seed and each label budget
n in ``--curve-sizes`` (``all`` = every training tweet), the first n tweets of
``stratified_nested_order(train.labels, seed)`` (section 5.4): the same stratified nested subsets as
``pretraining_benefit.py``. Two classifiers, each a logistic regression (scikit-learn, ``C`` chosen from
``C_GRID`` on the first ``VAL_SELECT`` = 1,000 validation tweets):
TF-IDF of words and word pairs (no pretraining: every weight learned from the n labels) and the frozen
MiniLM sentence embeddings (``encode_sentences``, 384 numbers per tweet; pretrained on 1.17 billion
sentence pairs). Test accuracy on the whole test split.

**B. Strategies at one label budget** (``--n-train``, default 1,000; the first n of seed 0's nested order,
the same tweets for every strategy and seed), one row each:

* majority class; TF-IDF + logistic; frozen MiniLM + logistic (part A's rows at this n);
* **full fine-tuning**: every weight of MiniLM plus a linear head on its mean-pooled output
  (``BertClassifier``, dropout 0.1);
* **LoRA** (``bigmodel_lib.lora.add_lora``): MiniLM frozen, adapters of rank ``LORA["r"]`` = 8 and
  alpha 16 on the query and value projections of all 6 layers, plus the head;
* **from scratch**: the same architecture and tokenizer, BERT's initialisation
  (``init_bert_weights``), every weight trained from the n labels.

The three neural strategies get the same tuning effort: AdamW (weight decay 0.01), batches of 32 (the
training tweets are shuffled every epoch and batched by similar length, to pad little), ``EPOCHS`` epochs,
10% warmup then cosine decay to 10%, gradients clipped at norm 1, the learning rate chosen on seed 0 from
a grid of two values each (``LRS``: full fine-tuning's around BERT's recommended 2e-5 to 5e-5, LoRA's and
scratch's higher, as their papers use), validation accuracy after every epoch, the best epoch kept. Seeds
1 and 2 rerun the chosen learning rate (the seed sets the head's initialisation, the adapters', the
scratch model's, dropout and the order of batches). Tweets are cut at ``MAX_LEN`` = 64 WordPiece tokens (93
of the 27,838 training tweets are longer; the mean is 32).

Recorded per row: test accuracy of each seed with its 95% Wilson interval, trainable parameters, the
training state in bytes (parameters, gradients and AdamW's two moments of the trainable ones:
deterministic), the peak bytes of tensors during one training step on a batch of 32 x 64 tokens
(``measure_peak_memory``: the tensor tracker on the CPU, CUDA's allocator on a GPU), training seconds and
optimizer steps. And what fine-tuning did to the encoder's **general** similarity judgement: the 24
sentence pairs of section 5.3 (``SIMILARITY_PAIRS``), scored by the fine-tuned body's normalised mean-pooled
embeddings (LoRA's with its adapters merged): the mean cosine of each kind of pair and the share of
(paraphrase, unrelated) comparisons ranked the right way.

**C. Fine-tuning too long on too few labels** (``--forgetting``, run after A and B; it reads part B's
chosen learning rates from ``--out`` and adds its rows there). Seed 0's first ``FORGET["n"]`` = 100
labelled tweets, full fine-tuning and LoRA, each at its part-B learning rate, for ``FORGET["epochs"]``
= 30 epochs (120 steps) with the schedule above and *no* early stopping, seeds 0-2. Every
``FORGET["every"]`` = 5 epochs (and before the first step): accuracy on the 100 training tweets and on
the first 1,000 validation tweets, and the 24 pairs' similarity (LoRA's with its adapters on, which is
what the fine-tuned model computes). This shows overfitting (training accuracy 100%, validation accuracy
no longer rising) and catastrophic forgetting (the similarity judgement drifting) as training goes on.

Slow and not a test; times depend on the machine and its load, accuracies on the number of threads (set
with ``--threads``, recorded). Chapter 5, sections 5.4-5.6 load
``bigmodel_lib/results/finetuning_strategies_cpu.json``, written on the 2-core CPU machine that runs the
book's tests by::

    python benchmarks/finetuning_strategies.py --threads 2 --out bigmodel_lib/results/finetuning_strategies_cpu.json
    python benchmarks/finetuning_strategies.py --threads 2 --forgetting --out bigmodel_lib/results/finetuning_strategies_cpu.json

Parts A and B took 44 minutes, part C 15 (measured alone except for a few minutes). TF-IDF's chosen C sat at
the grid's top (256) in 7 of part A's 18 runs; refitting those 7 with C up to 16,384 changed their test
accuracy by at most half a point (checked once by hand, not shipped), far less than the gaps part A shows.

With every training tweet for part B, on one GPU (minutes)::

    python benchmarks/finetuning_strategies.py --n-train all --device cuda --out finetuning_strategies_gpu.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from bigmodel_lib import get_device, seed_everything
from bigmodel_lib.lora import add_lora, merge_lora
from bigmodel_lib.memory import measure_peak_memory, training_state
from bigmodel_lib.metrics import wilson_interval as wilson  # the name tests/test_*.py read
from bigmodel_lib.models.bert import BertClassifier, BertEncoder, encode_sentences, init_bert_weights, load_minilm
from bigmodel_lib.pretrained import SIMILARITY_PAIRS
from bigmodel_lib.sentiment import load_tweets, split_tweets, stratified_nested_order
from bigmodel_lib.training.config import warmup_cosine

MAX_LEN = 64
VAL_SELECT = 1000
C_GRID = (0.25, 1.0, 4.0, 16.0, 64.0, 256.0)  # as benchmarks/minilm_probe.py
EPOCHS = 4
BATCH_SIZE = 32
LORA = dict(r=8, alpha=16.0, targets=("w_q", "w_v"))
LRS = {"full fine-tuning": (3e-5, 1e-4), "LoRA": (3e-4, 1e-3), "from scratch": (1e-4, 3e-4)}
FORGET = dict(n=100, epochs=30, every=5, strategies=("full fine-tuning", "LoRA"))


# ---------------------------------------------------------------- part A: linear classifiers


def logistic(x_train, y_train, x_val, y_val, x_test, y_test) -> dict:
    """Logistic regression with C chosen on validation accuracy (ties to the smaller C)."""
    from sklearn.linear_model import LogisticRegression

    best = None
    for c in C_GRID:
        clf = LogisticRegression(C=c, max_iter=3000).fit(x_train, y_train)
        val = float((clf.predict(x_val) == y_val).mean())
        if best is None or val > best[0]:
            best = (val, c, clf)
    val, c, clf = best
    correct = int((clf.predict(x_test) == y_test).sum())
    return dict(test_accuracy=correct / len(y_test), ci95=list(wilson(correct, len(y_test))), val_accuracy=val,
                chosen_C=c, parameters=int(clf.coef_.size + clf.intercept_.size))


def curve(train, val, test, emb, sizes, seeds) -> list[dict]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    y_train, y_val, y_test = (np.array(s.labels) for s in (train, val, test))
    rows = []
    for seed in seeds:
        order = stratified_nested_order(train.labels, seed)
        for size in sizes:
            n = len(order) if size == "all" else int(size)
            rows_n = order[:n]
            texts = [train.texts[i] for i in rows_n]
            start = time.perf_counter()
            vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1).fit(texts)
            tfidf = logistic(vectorizer.transform(texts), y_train[rows_n], vectorizer.transform(val.texts[:VAL_SELECT]),
                             y_val[:VAL_SELECT], vectorizer.transform(test.texts), y_test)
            tfidf["seconds"] = round(time.perf_counter() - start, 2)
            start = time.perf_counter()
            probe = logistic(emb["train"][rows_n], y_train[rows_n], emb["val"][:VAL_SELECT], y_val[:VAL_SELECT],
                             emb["test"], y_test)
            probe["seconds"] = round(time.perf_counter() - start, 2)
            for method, row in (("TF-IDF + logistic", tfidf), ("frozen MiniLM + logistic", probe)):
                rows.append(dict(method=method, size=size, n=n, seed=seed, **row))
            print(f"seed {seed} n={n:>6}: TF-IDF {tfidf['test_accuracy']:.4f}  MiniLM probe "
                  f"{probe['test_accuracy']:.4f}", flush=True)
    return rows


# ---------------------------------------------------------------- part B: neural strategies


def encode_ids(tokenizer, texts) -> list[list[int]]:
    return [e.ids[:MAX_LEN] for e in tokenizer.encode_batch(list(texts))]


def pad(rows: list[list[int]], device) -> tuple[torch.Tensor, torch.Tensor]:
    T = max(map(len, rows))
    ids = torch.tensor([r + [0] * (T - len(r)) for r in rows], device=device)  # (b, T); [PAD] is 0
    return ids, (ids != 0).long()


def batches(ids: list[list[int]], generator: torch.Generator) -> list[list[int]]:
    """One epoch: shuffle, then within windows of 8 batches sort by length and cut; shuffle the batches."""
    order = torch.randperm(len(ids), generator=generator).tolist()
    window = 8 * BATCH_SIZE
    out = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: len(ids[i]))
        out += [chunk[j : j + BATCH_SIZE] for j in range(0, len(chunk), BATCH_SIZE)]
    return [out[k] for k in torch.randperm(len(out), generator=generator).tolist()]


@torch.no_grad()
def accuracy(model, ids, labels, device, batch_size: int = 128) -> float:
    model.eval()
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    correct = 0
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        x, mask = pad([ids[i] for i in rows], device)
        correct += int((model(x, mask).argmax(-1).cpu() == torch.tensor([labels[i] for i in rows])).sum())
    model.train()
    return correct / len(ids)


def build(strategy: str, device) -> BertClassifier:
    body, _ = load_minilm("cpu")
    if strategy == "from scratch":
        body = init_bert_weights(BertEncoder(body.config))
    elif strategy == "LoRA":
        add_lora(body, targets=LORA["targets"], r=LORA["r"], alpha=LORA["alpha"])
    return BertClassifier(body, 3, dropout=0.1).to(device).train()  # the head is created after add_lora: trainable


def similarity(body, tokenizer) -> dict:
    """The 24 pairs of section 5.3 through ``body``: mean cosine per kind, and the (same, unrelated) ranking."""
    first = encode_sentences(body, tokenizer, [a for _, a, _ in SIMILARITY_PAIRS])
    second = encode_sentences(body, tokenizer, [b for _, _, b in SIMILARITY_PAIRS])
    cos = (first * second).sum(1).cpu()
    kinds = [k for k, _, _ in SIMILARITY_PAIRS]
    mean = {k: float(cos[[i for i, x in enumerate(kinds) if x == k]].mean()) for k in ("same", "related", "unrelated")}
    same = [cos[i] for i, k in enumerate(kinds) if k == "same"]
    unrelated = [cos[i] for i, k in enumerate(kinds) if k == "unrelated"]
    ranked = sum(float(s > u) + 0.5 * float(s == u) for s in same for u in unrelated) / (len(same) * len(unrelated))
    return dict(mean_cosine=mean, same_above_unrelated=ranked)


def start_run(strategy, lr, seed, n_train, epochs, device):
    """A seeded model, its AdamW over the trainable parameters, 10% warmup then cosine, and the batch generator."""
    seed_everything(seed)
    model = build(strategy, device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    total = epochs * math.ceil(n_train / BATCH_SIZE)
    warmup = max(1, round(0.1 * total))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, warmup, total))
    return model, params, optimizer, scheduler, torch.Generator().manual_seed(seed), total


def train_epoch(model, params, optimizer, scheduler, train_ids, train_labels, generator, device) -> float:
    """One epoch of length-sorted batches (clipping at 1); returns its seconds."""
    start = time.perf_counter()
    for rows in batches(train_ids, generator):
        x, mask = pad([train_ids[i] for i in rows], device)
        loss = F.cross_entropy(model(x, mask), torch.tensor([train_labels[i] for i in rows], device=device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def train_one(strategy, lr, seed, data, device, tokenizer) -> dict:
    (train_ids, train_labels), (val_ids, val_labels), (test_ids, test_labels) = data
    model, params, optimizer, scheduler, generator, total = start_run(strategy, lr, seed, len(train_ids), EPOCHS, device)
    best, seconds, history = dict(val_accuracy=-1.0), 0.0, []
    for epoch in range(1, EPOCHS + 1):
        seconds += train_epoch(model, params, optimizer, scheduler, train_ids, train_labels, generator, device)
        val = accuracy(model, val_ids, val_labels, device)
        history.append(dict(epoch=epoch, val_accuracy=val, seconds=round(seconds, 1)))
        if val > best["val_accuracy"]:
            best = dict(val_accuracy=val, epoch=epoch,
                        state={k: v.detach().clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best.pop("state"))
    test = accuracy(model, test_ids, test_labels, device)
    correct = round(test * len(test_ids))
    body = model.body
    if strategy == "LoRA":
        merge_lora(body)
    row = dict(strategy=strategy, lr=lr, seed=seed, test_accuracy=test, ci95=list(wilson(correct, len(test_ids))),
               steps=total, train_seconds=round(seconds, 1), history=history,
               similarity=similarity(body.eval(), tokenizer), **best)
    print(f"{strategy:<18} lr {lr:g} seed {seed}: val {best['val_accuracy']:.4f} (epoch {best['epoch']}) "
          f"test {test:.4f}  {seconds:.0f} s  pairs {row['similarity']['same_above_unrelated']:.3f}", flush=True)
    return row


def costs(strategy, device) -> dict:
    """Trainable parameters, training-state bytes and the peak tensor bytes of one step on 32 x 64 tokens."""
    seed_everything(0)
    model = build(strategy, device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    x = torch.randint(1000, 30000, (BATCH_SIZE, MAX_LEN), device=device)
    mask = torch.ones_like(x)
    y = torch.zeros(BATCH_SIZE, dtype=torch.long, device=device)

    def step():
        loss = F.cross_entropy(model(x, mask), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # AdamW creates its moments at the first step
    trainable = sum(p.numel() for p in params)
    state = sum(t.numel() * t.element_size() for ts in training_state(model, optimizer).values() for t in ts)
    held = [t for ts in training_state(model, optimizer).values() for t in ts] + [x, mask, y]
    peak = measure_peak_memory(step, held=held, device=device)
    return dict(trainable_parameters=trainable, total_parameters=sum(p.numel() for p in model.parameters()),
                training_state_bytes=state, peak_step_bytes=peak.peak_bytes, peak_method=peak.method)


def forgetting_run(strategy, lr, seed, data, device, tokenizer) -> dict:
    """Part C: ``FORGET["epochs"]`` epochs on ``FORGET["n"]`` labels, no early stopping, measured every few epochs."""
    (train_ids, train_labels), (val_ids, val_labels) = data
    model, params, optimizer, scheduler, generator, total = start_run(
        strategy, lr, seed, len(train_ids), FORGET["epochs"], device)
    points, seconds = [], 0.0

    def measure(epoch):
        sim = similarity(model.body.eval(), tokenizer)
        model.train()
        points.append(dict(epoch=epoch, train_accuracy=accuracy(model, train_ids, train_labels, device),
                           val_accuracy=accuracy(model, val_ids, val_labels, device), similarity=sim,
                           seconds=round(seconds, 1)))

    measure(0)
    for epoch in range(1, FORGET["epochs"] + 1):
        seconds += train_epoch(model, params, optimizer, scheduler, train_ids, train_labels, generator, device)
        if epoch % FORGET["every"] == 0:
            measure(epoch)
    last = points[-1]
    print(f"{strategy:<18} lr {lr:g} seed {seed}: train {last['train_accuracy']:.3f} val {last['val_accuracy']:.3f} "
          f"(best {max(p['val_accuracy'] for p in points):.3f})  unrelated cosine "
          f"{points[0]['similarity']['mean_cosine']['unrelated']:.3f} -> {last['similarity']['mean_cosine']['unrelated']:.3f}",
          flush=True)
    return dict(strategy=strategy, lr=lr, seed=seed, steps=total, points=points)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--curve-sizes", nargs="+", default=["30", "100", "300", "1000", "3000", "all"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--n-train", default="1000", help="label budget of part B (a number or 'all')")
    parser.add_argument("--strategies", nargs="+", default=list(LRS))
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--skip-curve", action="store_true")
    parser.add_argument("--forgetting", action="store_true", help="run part C only, adding it to --out")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = get_device(args.device)
    started = time.perf_counter()
    result = dict(
        machine=dict(device=str(device), cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(),
                     torch=torch.__version__, python=platform.python_version(), platform=platform.platform(),
                     gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                     loadavg_before=[round(x, 2) for x in os.getloadavg()]),
        settings=dict(date=datetime.date.today().isoformat(), split="split_tweets(load_tweets(), (0.8, 0.1, 0.1), seed=0)",
                      max_len=MAX_LEN, val_select=VAL_SELECT, c_grid=C_GRID, epochs=EPOCHS, batch_size=BATCH_SIZE,
                      lora=LORA, lrs=LRS, seeds=args.seeds, curve_sizes=args.curve_sizes, n_train=args.n_train,
                      command="python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])])),
    )

    def save():
        result["seconds"] = round(time.perf_counter() - started, 1)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)

    if args.forgetting:
        with open(args.out) as f:
            previous = json.load(f)
        train, val, _ = split_tweets(load_tweets(), (0.8, 0.1, 0.1), seed=0)
        _, tokenizer = load_minilm(device)
        rows = stratified_nested_order(train.labels, 0)[: FORGET["n"]]
        data = ((encode_ids(tokenizer, [train.texts[i] for i in rows]), [train.labels[i] for i in rows]),
                (encode_ids(tokenizer, val.texts[:VAL_SELECT]), list(val.labels[:VAL_SELECT])))
        chosen = {r["strategy"]: r["lr"] for r in previous["strategies"] if "lr" in r}
        part_c = dict(settings=dict(FORGET, threads=torch.get_num_threads(), device=str(device),
                                    loadavg_before=[round(x, 2) for x in os.getloadavg()],
                                    command=result["settings"]["command"]), runs=[])
        previous["forgetting"] = part_c
        for strategy in FORGET["strategies"]:
            for seed in args.seeds:
                part_c["runs"].append(forgetting_run(strategy, chosen[strategy], seed, data, device, tokenizer))
                with open(args.out, "w") as f:
                    json.dump(previous, f, indent=1)
        part_c["seconds"] = round(time.perf_counter() - started, 1)
        with open(args.out, "w") as f:
            json.dump(previous, f, indent=1)
        return 0

    train, val, test = split_tweets(load_tweets(), (0.8, 0.1, 0.1), seed=0)
    result["settings"]["split_sizes"] = [len(train), len(val), len(test)]
    minilm, tokenizer = load_minilm(device)
    order0 = stratified_nested_order(train.labels, 0)
    n_train = len(order0) if args.n_train == "all" else int(args.n_train)
    part_b = order0[:n_train]

    if not args.skip_curve:
        start = time.perf_counter()
        need = sorted(set(range(len(train))) if "all" in args.curve_sizes else
                      {i for s in args.seeds for i in stratified_nested_order(train.labels, s)[: max(map(int, args.curve_sizes))]})
        emb_train = np.zeros((len(train), minilm.config.d_model), dtype=np.float32)
        emb_train[need] = encode_sentences(minilm, tokenizer, [train.texts[i] for i in need]).cpu().numpy()
        emb = dict(train=emb_train,
                   val=encode_sentences(minilm, tokenizer, list(val.texts[:VAL_SELECT])).cpu().numpy(),
                   test=encode_sentences(minilm, tokenizer, list(test.texts)).cpu().numpy())
        result["encode_seconds"] = round(time.perf_counter() - start, 1)
        print(f"encoded {len(need) + VAL_SELECT + len(test)} tweets in {result['encode_seconds']} s", flush=True)
        result["curve"] = curve(train, val, test, emb, args.curve_sizes, args.seeds)
        save()

    result["similarity_pretrained"] = similarity(minilm, tokenizer)
    y_test = np.array(test.labels)
    majority = int(np.bincount(np.array(train.labels)[part_b]).argmax())
    correct = int((y_test == majority).sum())
    result["strategies"] = [dict(strategy="majority class", test_accuracy=correct / len(y_test),
                                 ci95=list(wilson(correct, len(y_test))), trainable_parameters=0)]
    data = ((encode_ids(tokenizer, [train.texts[i] for i in part_b]), [train.labels[i] for i in part_b]),
            (encode_ids(tokenizer, val.texts[:VAL_SELECT]), list(val.labels[:VAL_SELECT])),
            (encode_ids(tokenizer, test.texts), list(test.labels)))
    result["settings"]["part_b_class_counts"] = np.bincount(np.array(data[0][1]), minlength=3).tolist()
    for strategy in args.strategies:
        entry = dict(strategy=strategy, **costs(strategy, device), lrs_tried=[], runs=[])
        result["strategies"].append(entry)
        for lr in LRS[strategy]:
            entry["lrs_tried"].append(train_one(strategy, lr, args.seeds[0], data, device, tokenizer))
            save()
        chosen = max(entry["lrs_tried"], key=lambda r: r["val_accuracy"])
        entry["lr"] = chosen["lr"]
        entry["runs"] = [chosen] + [train_one(strategy, chosen["lr"], s, data, device, tokenizer) for s in args.seeds[1:]]
        save()
    result["complete"] = True
    result["machine"]["loadavg_now"] = [round(x, 2) for x in os.getloadavg()]
    save()
    print(f"done in {result['seconds'] / 60:.1f} min -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
