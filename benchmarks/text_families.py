"""Chapter 7's text task: a CNN, an LSTM and a Transformer of matched size classify chapter 5's tweets.

The data is chapter 5's (``bigmodel_lib.sentiment``: negative, neutral, positive;
``split_tweets(load_tweets(), (0.8, 0.1, 0.1), seed=0)``: 27,838 / 3,479 / 3,479 tweets). The tokenizer
is chapter 5's too: ``bigmodel_lib.tokenization.train_bpe_tokenizer`` (lower-casing BPE of
``tokenizers``, learned on the TRAINING tweets only), with ``TextConfig.vocab_size`` = 8,000 tokens; ``[PAD]``
is id 0. Tweets are cut at ``max_len`` tokens (the mean is 27; the results record how many are cut).

The four families are ``bigmodel_lib.models.text_classifiers``' (section 7.4); ``build`` makes them from
the configuration. Every family has the same embedding table (vocab_size x ``embed``, PyTorch's N(0, 1)
initialisation, the ``[PAD]`` row zero), so that the matching is on the rest, the **body**, which includes
the linear classifier: each family's width is chosen by bisection so that its body has the count closest to
``target_body`` (the counts are recorded):

* ``cnn``: Kim (2014). Parallel 1-D convolutions of widths 3, 4 and 5, ``width`` filters each, run
  "wide" (padded with k - 1 zeros on both sides, so a 2-token tweet still has windows), ReLU,
  max-over-time pooling over the windows that hold at least one real token, dropout, linear.
* ``lstm``: one bidirectional ``nn.LSTM`` layer (``width`` units each way; forget-gate bias 1, section
  3.2) over packed sequences, so padding is never read; masked mean of the outputs, dropout, linear.
  Bidirectional because a classifier reads the whole tweet at once: a one-way LSTM's early positions
  would see only a prefix, while every convolution window and every attention query sees both sides.
* ``transformer``: the sinusoidal positions of section 4.3 (no weights; the same table covers every
  length measured), ``layers`` pre-norm ``EncoderLayer``\\ s of section 4.4 (``heads`` heads, feed-forward
  width ``width``, the only knob, since the model width is the embedding width) with a padding mask,
  a final LayerNorm, masked mean over the real tokens, dropout, linear.
* ``bag``: the masked mean of the embeddings and a linear layer (fastText's model without its n-grams):
  no body to speak of; the floor that says what word order and context add.

Training, the same for every family: the book's ``Trainer`` and one ``TrainConfig`` (AdamW with weight decay
0.01, 5% warmup then cosine decay to 10%, gradients clipped at norm 1, ``batch_size`` tweets per batch,
``epochs`` epochs), only the learning rate differs: ``learning_rates`` are tried on seed 0 and the one with
the better validation accuracy is kept for seeds 1 and 2 (the seed sets the initialisation, dropout and the
order of batches). Batches are drawn as chapter 5's benchmarks draw them: shuffled, sorted by length within
windows of 8 batches and cut, so that little padding is computed. The validation accuracy is recorded after
every epoch, and the weights of the best epoch are kept (``BestEpochTrainer``: the Trainer plus a copy
of those weights); the test accuracy (with its 95% Wilson interval), macro-F1 and macro recall are those of
that epoch. From the per-epoch curve: the epochs and training seconds to reach each of ``targets``
(validation accuracy; 0.758 is the TF-IDF + logistic baseline's on the same validation split,
``bigmodel_lib/results/minilm_probe_cpu.json``), at the granularity of an epoch.

Measured per run, besides: training seconds and real (non-padding) tokens per second; the forward latency
(``time_call``, best of several, eval mode, no gradients) for one median-length validation tweet and for the
first 256 validation tweets padded to their longest; the forward time for ``scaling_batch`` sequences of
``scaling_lengths`` random tokens without padding (how each family scales with the length); the peak bytes of
tensors during one training step on ``batch_size`` x ``max_len`` tokens (``measure_peak_memory``, with the
training state and the batch as held tensors: the tensor tracker on a CPU, CUDA's allocator on a GPU).

``TextConfig.gpu()`` (``--gpu``): wider embeddings, a 10x larger body, more layers, longer tweets and
more epochs, on a CUDA device. In fp32 there too (TF32 matrix products aside): models of a million weights
gain little from bf16, the latency and memory measurements then use the number format training used, and
the packed LSTM need not depend on the cuDNN version's bf16 support.

Slow and not a test. Times depend on the machine and its load; counts, bytes and (for a given number of
threads) accuracies do not. Chapter 7 shows ``bigmodel_lib/results/text_families_cpu.json``, written on the
2-core CPU machine that runs the book's tests by:

    python benchmarks/text_families.py --threads 1 --out bigmodel_lib/results/text_families_cpu.json

Estimated, before that run, from one epoch of each family on every training tweet (one thread, another job
holding the cores, load average 4): about 5 s per epoch for the bag, 25 for the CNN, 48 for the LSTM and 56 for
the Transformer, so 16 runs of 4 epochs and their measurements take about 37 minutes (the results record the
minutes it took). Three epochs took the CNN to 0.750 validation accuracy, still rising: 4 is a compromise with
the budget, and the per-epoch curves show whether a family was still improving. On one GPU (not run yet;
minutes, by the step counts):

    python benchmarks/text_families.py --gpu --out text_families_gpu.json
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from bigmodel_lib import Stopwatch, TrainConfig, Trainer, count_parameters, seed_everything, time_call
from bigmodel_lib.memory import measure_peak_memory, training_state
from bigmodel_lib.metrics import confusion_matrix, wilson_interval
from bigmodel_lib.models.text_classifiers import (
    BagOfEmbeddings,
    BiLSTMClassifier,
    KimCNN,
    TextClassifier,
    TransformerEncoderClassifier,
)
from bigmodel_lib.sentiment import load_tweets, split_tweets, stratified_nested_order
from bigmodel_lib.tokenization import train_bpe_tokenizer

SPECIALS = ("[PAD]", "[UNK]", "[MASK]")  # chapter 5's special tokens, train_bpe_tokenizer's default: ids 0, 1, 2
PAD = SPECIALS.index("[PAD]")  # 0
UNK = SPECIALS.index("[UNK]")
NUM_CLASSES = 3
FAMILIES = ("bag", "cnn", "lstm", "transformer")
MATCHED = ("cnn", "lstm", "transformer")  # the bag has no body to match
CONV_WIDTHS = (3, 4, 5)  # Kim (2014)
TFIDF_VALIDATION_ACCURACY = 0.7583  # TF-IDF words 1-2 + logistic, minilm_probe_cpu.json, chosen C: 2,638 / 3,479


@dataclass
class TextConfig:
    # CPU defaults; the GPU values (TextConfig.gpu()) in brackets
    vocab_size: int = 8000                  #                                        [same]
    max_len: int = 64                       # tokens kept per tweet                  [128]
    embed: int = 64                         # embedding width, every family          [128]
    target_body: int = 100_000              # weights besides the embedding table    [1,000,000]
    layers: int = 2                         # Transformer layers                     [4]
    heads: int = 4                          # Transformer heads                      [same]
    dropout: float = 0.1                    # on the pooled vector, and in the Transformer's layers
    epochs: int = 4                         # the CPU budget (see the docstring)    [10]
    batch_size: int = 64                    #                                        [128]
    learning_rates: tuple = (1e-3, 3e-3)    # tried on seed 0, the better kept       [same]
    seeds: tuple = (0, 1, 2)
    targets: tuple = (0.70, TFIDF_VALIDATION_ACCURACY)  # validation accuracies to reach
    scaling_lengths: tuple = (32, 64, 128, 256)  #                                   [32, ..., 1,024]
    scaling_batch: int = 64
    precision: str = "fp32"                 # training and measurements alike: see the docstring

    @classmethod
    def gpu(cls) -> TextConfig:
        return cls(max_len=128, embed=128, target_body=1_000_000, layers=4, epochs=10, batch_size=128,
                   scaling_lengths=(32, 64, 128, 256, 512, 1024))


CONFIG = TextConfig()  # main() replaces it with TextConfig.gpu() when run with --gpu


# ---------------------------------------------------------------- the four families


def build(family: str, width: int) -> TextClassifier:
    """The family's model of ``bigmodel_lib.models.text_classifiers`` at ``width`` and the configuration's sizes."""
    c = CONFIG
    shared = dict(num_classes=NUM_CLASSES, dropout=c.dropout, pad_id=PAD)
    if family == "bag":
        return BagOfEmbeddings(c.vocab_size, c.embed, **shared)
    if family == "cnn":
        return KimCNN(c.vocab_size, c.embed, width, kernel_sizes=CONV_WIDTHS, **shared)
    if family == "lstm":
        return BiLSTMClassifier(c.vocab_size, c.embed, width, **shared)
    if family == "transformer":
        return TransformerEncoderClassifier(c.vocab_size, c.embed, width, num_layers=c.layers, num_heads=c.heads,
                                            max_len=max(c.max_len, *c.scaling_lengths), **shared)
    raise ValueError(f"expected a family in {FAMILIES}, got {family!r}")


def body_parameters(model: TextClassifier) -> int:
    """Every weight but the embedding table's."""
    return count_parameters(model) - model.embed.weight.numel()


def matched_width(family: str, target: int | None = None) -> int:
    """The width (filters per convolution, LSTM units, feed-forward width) whose body is closest to ``target``."""
    if family == "bag":
        return 0
    target = CONFIG.target_body if target is None else target

    def body(width: int) -> int:
        with torch.device("meta"):  # shapes only: no memory, no initialisation
            return body_parameters(build(family, width))

    low, high = 1, target  # the body grows with the width (and exceeds it): bisect for the first at or above target
    while low < high:
        mid = (low + high) // 2
        low, high = (mid + 1, high) if body(mid) < target else (low, mid)
    return min((w for w in (low - 1, low) if w >= 1), key=lambda w: abs(body(w) - target))


# ---------------------------------------------------------------- data


@dataclass
class Encoded:
    """One split as tensors: ids (N, max_len) padded with ``PAD``, lengths (N,), labels (N,), tokens before cutting."""

    ids: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor
    full_lengths: torch.Tensor

    def subset(self, rows) -> Encoded:
        rows = torch.as_tensor(rows)
        return Encoded(self.ids[rows], self.lengths[rows], self.labels[rows], self.full_lengths[rows])


def encode(tokenizer, tweets, max_len: int) -> Encoded:
    """Token ids cut at ``max_len``; an empty tweet becomes one ``[UNK]`` (as in chapter 5)."""
    encodings = tokenizer.encode_batch(list(tweets.texts))
    ids = torch.full((len(encodings), max_len), PAD, dtype=torch.long)
    for i, e in enumerate(encodings):
        row = e.ids[:max_len] or [UNK]
        ids[i, : len(row)] = torch.tensor(row)
    full = torch.tensor([max(len(e.ids), 1) for e in encodings])
    return Encoded(ids, full.clamp(max=max_len), torch.tensor(tweets.labels), full)


class Batches(Dataset):
    """``data[rows]`` is the batch of those rows, cut to its longest tweet: (ids (b, T), labels (b,))."""

    def __init__(self, data: Encoded):
        self.data = data

    def __len__(self):
        return len(self.data.labels)

    def __getitem__(self, rows):
        T = int(self.data.lengths[rows].max())
        return self.data.ids[rows, :T], self.data.labels[rows]


class LengthBatches(Sampler):
    """Lists of rows, one per batch. Training: shuffle, sort by length within windows of 8 batches, cut,
    shuffle the batches (a seeded generator, a new order every epoch). Evaluation: all rows sorted by length."""

    def __init__(self, lengths: torch.Tensor, batch_size: int, seed: int | None = None):
        self.lengths, self.batch_size = lengths, batch_size
        self.generator = None if seed is None else torch.Generator().manual_seed(seed)

    def __len__(self):
        return math.ceil(len(self.lengths) / self.batch_size)

    def __iter__(self):
        b = self.batch_size
        if self.generator is None:
            order = torch.argsort(self.lengths, stable=True).tolist()
            return iter([order[i: i + b] for i in range(0, len(order), b)])
        order = torch.randperm(len(self.lengths), generator=self.generator).tolist()
        batches = []
        for start in range(0, len(order), 8 * b):
            window = sorted(order[start: start + 8 * b], key=lambda i: int(self.lengths[i]))
            batches += [window[j: j + b] for j in range(0, len(window), b)]
        return iter([batches[k] for k in torch.randperm(len(batches), generator=self.generator).tolist()])


def loader(data: Encoded, seed: int | None = None) -> DataLoader:
    """Batches of ``CONFIG.batch_size`` (shuffled with ``seed``, or in length order for ``seed=None``)."""
    return DataLoader(Batches(data), sampler=LengthBatches(data.lengths, CONFIG.batch_size, seed), batch_size=None)


def load_data(limit: int | None = None) -> tuple[dict[str, Encoded], dict]:
    """The three splits encoded (the first ``limit`` of a stratified order of the training split, if given)."""
    train, val, test = split_tweets(load_tweets(), (0.8, 0.1, 0.1), seed=0)
    if limit is not None:
        train = train.subset(stratified_nested_order(train.labels, 0)[:limit])
    tokenizer = train_bpe_tokenizer(list(train.texts), CONFIG.vocab_size, SPECIALS)
    data = {name: encode(tokenizer, split, CONFIG.max_len) for name, split in (("train", train), ("val", val),
                                                                                ("test", test))}
    stats = {name: dict(tweets=len(d.labels), mean_tokens=round(d.full_lengths.float().mean().item(), 2),
                        truncated=int((d.full_lengths > CONFIG.max_len).sum()),
                        truncated_fraction=round((d.full_lengths > CONFIG.max_len).float().mean().item(), 5))
             for name, d in data.items()}
    stats["vocab_size"] = tokenizer.get_vocab_size()
    return data, stats


# ---------------------------------------------------------------- training and measurements


class BestEpochTrainer(Trainer):
    """The book's ``Trainer``, unchanged, that also keeps a copy of the weights after the epoch with the best
    accuracy on ``validation`` (``fit`` evaluates it after every epoch, through ``evaluate``)."""

    def __init__(self, *args, validation=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.validation, self.best_accuracy, self.best_epoch, self.best_state = validation, -1.0, None, None

    def evaluate(self, data):
        result = super().evaluate(data)
        if data is self.validation and result["accuracy"] > self.best_accuracy:  # ties: the earlier epoch
            self.best_accuracy, self.best_epoch = result["accuracy"], self.history.epochs
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        return result


def held_out_metrics(trainer: Trainer, data: Encoded) -> dict:
    outputs, targets = trainer.predict(loader(data))
    cm = confusion_matrix(outputs.argmax(-1), targets, NUM_CLASSES).double()  # (true, predicted)
    correct, n = int(cm.trace()), int(cm.sum())
    recall = cm.diag() / cm.sum(1).clamp(min=1)
    precision = cm.diag() / cm.sum(0).clamp(min=1)
    f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
    return dict(test_accuracy=correct / n, ci95=[round(v, 4) for v in wilson_interval(correct, n)],
                macro_f1=round(f1.mean().item(), 4), macro_recall=round(recall.mean().item(), 4))


def reached(val_accuracy: list[float], seconds: list[float], target: float) -> dict:
    """The first epoch whose validation accuracy is at least ``target``, and the training seconds until then."""
    epoch = next((e for e, acc in enumerate(val_accuracy, 1) if acc >= target), None)
    return dict(target=target, epochs=epoch, seconds=None if epoch is None else round(seconds[epoch - 1], 2))


def train(family: str, width: int, lr: float, seed: int, data: dict[str, Encoded], device) -> tuple[Trainer, dict]:
    seed_everything(seed)
    model = build(family, width)
    config = TrainConfig(epochs=CONFIG.epochs, batch_size=CONFIG.batch_size, lr=lr, weight_decay=0.01,
                         warmup_fraction=0.05, min_lr_fraction=0.1, grad_clip=1.0, precision=CONFIG.precision,
                         device=str(device), seed=seed, progress=False)
    val = loader(data["val"])
    trainer = BestEpochTrainer(model, config, validation=val)
    with Stopwatch(device) as watch:
        history = trainer.fit(loader(data["train"], seed), val)
    n_train = len(data["train"].labels)
    seconds = list(torch.tensor([n_train / s for s in history.samples_per_s]).cumsum(0).tolist())  # training only
    trainer.model.load_state_dict(trainer.best_state)
    tokens = int(data["train"].lengths.sum()) * history.epochs
    row = dict(epochs=history.epochs, train_seconds=round(seconds[-1], 2), wall_seconds=round(watch.seconds, 2),
               tokens_per_s=round(tokens / seconds[-1]), val_accuracy_by_epoch=[round(v, 4) for v in history.val_metric],
               train_loss_by_epoch=[round(v, 4) for v in history.train_loss],
               seconds_by_epoch=[round(s, 2) for s in seconds], best_epoch=trainer.best_epoch,
               val_accuracy=trainer.best_accuracy,
               to_target=[reached(history.val_metric, seconds, t) for t in CONFIG.targets])
    return trainer, row


@torch.no_grad()
def latency(model: nn.Module, data: Encoded, device) -> dict:
    """Forward milliseconds (best of several) for one median-length tweet and for 256 tweets, and against length."""
    model.eval()
    median = int(data.lengths.median())
    one = data.ids[int((data.lengths == median).nonzero()[0])][None, :median].to(device)  # (1, median)
    many = Batches(data)[list(range(min(256, len(data.labels))))][0].to(device)  # (256, longest of them)
    row = dict(batch1_tokens=median, batch1_ms=round(time_call(model, one, repeats=20, device=device).best_ms, 3),
               batch256_tokens=list(many.shape), batch256_ms=round(time_call(model, many, repeats=5,
                                                                              device=device).best_ms, 2))
    gen = torch.Generator().manual_seed(0)
    row["forward_ms_by_length"] = {
        T: round(time_call(model, torch.randint(len(SPECIALS), CONFIG.vocab_size, (CONFIG.scaling_batch, T),
                                                generator=gen).to(device), repeats=3, device=device).best_ms, 2)
        for T in CONFIG.scaling_lengths}
    return row


def step_memory(family: str, width: int, device) -> dict:
    """Peak bytes of tensors during one AdamW step on ``batch_size`` x ``max_len`` tokens (after a first step)."""
    seed_everything(0)
    model = build(family, width).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(len(SPECIALS), CONFIG.vocab_size, (CONFIG.batch_size, CONFIG.max_len), generator=gen).to(device)
    y = torch.randint(0, NUM_CLASSES, (CONFIG.batch_size,), generator=gen).to(device)

    def step():
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    step()  # AdamW creates its moments at the first step
    held = [t for ts in training_state(model, optimizer).values() for t in ts] + [x, y]
    peak = measure_peak_memory(step, held=held, device=device)
    return dict(peak_step_bytes=peak.peak_bytes, held_bytes=peak.held_bytes, memory_method=peak.method)


def run_cell(family: str, width: int, lr: float, seed: int, data: dict[str, Encoded], device="cpu") -> dict:
    """One training run and every measurement of it, as one row of the results."""
    device = torch.device(device)
    trainer, trained = train(family, width, lr, seed, data, device)
    model = trainer.model
    row = dict(family=family, seed=seed, lr=lr, width=width, parameters=count_parameters(model),
               body_parameters=body_parameters(model), **trained, **held_out_metrics(trainer, data["test"]))
    row.update(latency(model, data["val"], device))
    row.update(step_memory(family, width, device))
    return row


def main(argv: list[str] | None = None) -> int:
    global CONFIG
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="TextConfig.gpu() on the CUDA device")
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default: the configuration's")
    parser.add_argument("--epochs", type=int, default=None, help="default: the configuration's")
    parser.add_argument("--limit", type=int, default=None, help="train on this many tweets only (a trial)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads on a CPU (default: torch's choice)")
    parser.add_argument("--out", default=None, help="write the results here as JSON")
    args = parser.parse_args(argv)
    CONFIG = TextConfig.gpu() if args.gpu else TextConfig()
    if args.seeds is not None:
        CONFIG = dataclasses.replace(CONFIG, seeds=tuple(args.seeds))
    if args.epochs is not None:
        CONFIG = dataclasses.replace(CONFIG, epochs=args.epochs)
    device = torch.device("cuda" if args.gpu else "cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    started, load_before = time.time(), os.getloadavg()
    data, stats = load_data(args.limit)
    widths = {f: matched_width(f) for f in args.families}
    print(CONFIG, stats, widths, sep="\n", flush=True)
    print(f"{'family':>11} {'seed':>4} {'lr':>6} {'body':>7} {'s/epoch':>7} {'best':>4} {'val acc':>7} "
          f"{'test acc':>8} {'1 tweet ms':>10} {'256 ms':>7} {'step MiB':>8}", flush=True)
    rows = []

    def save():
        settings = asdict(CONFIG)
        settings.update(split="split_tweets(load_tweets(), (0.8, 0.1, 0.1), seed=0)", data=stats, widths=widths,
                        conv_widths=CONV_WIDTHS, limit=args.limit, device=str(device),
                        date=datetime.date.today().isoformat(), minutes=round((time.time() - started) / 60, 1),
                        command="python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]))
        result = dict(settings=settings,
                      machine=dict(python=platform.python_version(), torch=torch.__version__, cpu_count=os.cpu_count(),
                                   torch_threads=torch.get_num_threads(),
                                   loadavg_before=[round(v, 2) for v in load_before],
                                   loadavg_after=[round(v, 2) for v in os.getloadavg()],
                                   gpu=torch.cuda.get_device_name() if device.type == "cuda" else None),
                      rows=rows)
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
            f.write("\n")

    for family in args.families:
        chosen = None
        for seed in CONFIG.seeds:
            tried = [run_cell(family, widths[family], lr, seed, data, device)
                     for lr in (CONFIG.learning_rates if chosen is None else (chosen,))]
            best = max(tried, key=lambda r: r["val_accuracy"])  # chosen on validation; ties: the first rate
            chosen = best["lr"]
            for r in tried:
                r["lr_kept"] = r is best
                rows.append(r)
                print(f"{family:>11} {seed:>4} {r['lr']:>6g} {r['body_parameters']:>7,} "
                      f"{r['train_seconds'] / r['epochs']:>7.1f} {r['best_epoch']:>4} {r['val_accuracy']:>7.4f} "
                      f"{r['test_accuracy']:>8.4f} {r['batch1_ms']:>10.2f} {r['batch256_ms']:>7.1f} "
                      f"{r['peak_step_bytes'] / 2**20:>8.1f}", flush=True)
            if args.out:
                save()  # after every seed: a long run that stops keeps what it measured
    if args.out:
        save()
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
