"""A small scaling study: the book's GPT at five sizes, validation loss against parameters and compute.

Each size of chapter 4's GPT (``bigmodel_lib.models.gpt``) trains on the same
character-level corpus as chapters 3-4 (Python's documentation,
``bigmodel_lib.text.pydoc_text``, windows of 64 characters) with the same
engine and settings as section 4.6 (``Trainer``: AdamW, warmup and cosine
decay, clipping; batches of 16, learning rate 2e-3), one seed per size, for
the same number of training tokens. The validation loss is measured
``evaluations`` times along each run (the run is cut into that many equal
segments of a fixed shuffled order, three passes over the training windows, and
the ``Trainer`` evaluates after each; the cosine schedule spans the whole run),
so that loss against compute can be drawn per run and the compute frontier
read off, as in Kaplan et al. (2020), figure 1.

Per evaluation point it records the tokens seen, the compute by the 6ND rule
with Kaplan's non-embedding ``N`` (``bigmodel_lib.scaling``), and the exact
matrix-product count ``GPT.flops_per_token() * tokens`` (which adds the tied
output layer and attention).

Two sizes also train with two more seeds, to measure the spread that one seed
per size hides.

Slow (about 8-12 minutes on the 2-core CPU, depending on its load) and not a
test. It runs on one thread by default: on the shared 2-core machine, with
other jobs running, two threads made a step of the smallest model about 15
times slower (128 steps: 67 s against 4 s, the same losses), as each thread
spins while it waits for the other. Times depend on the machine and its load; the losses do not (same seed,
same order of batches). Chapter 8, section 8.1 shows
``bigmodel_lib/results/scaling_gpt_cpu.json``, written by:

    python benchmarks/scaling_gpt.py --out bigmodel_lib/results/scaling_gpt_cpu.json

``ScalingConfig.gpu()`` (``--gpu``): six sizes up to 8 layers of width 512 and
longer windows, for 10 passes, on the CUDA device:

    python benchmarks/scaling_gpt.py --gpu --out scaling_gpt_gpu.json
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

import torch
from torch.utils.data import DataLoader, Sampler, Subset

from bigmodel_lib import TrainConfig, Trainer, seed_everything
from bigmodel_lib.models.gpt import GPT, GPTConfig
from bigmodel_lib.scaling import non_embedding_parameters, training_flops
from bigmodel_lib.text import char_splits, pydoc_text


@dataclass
class ScalingConfig:
    # CPU defaults; the GPU values (ScalingConfig.gpu()) in brackets
    sizes: tuple = ((2, 32, 2), (2, 48, 2), (3, 64, 4), (3, 96, 4), (4, 128, 4))  # (n_layer, n_embd, n_head)
    block_size: int = 64        # characters per window                             [256]
    epochs: int = 3             # passes over the training windows, every size      [10]
    evaluations: int = 8        # validation points along each run                  [20]
    batch_size: int = 16        # section 4.6                                       [64]
    lr: float = 2e-3            # section 4.6, every size                           [1e-3]
    seed: int = 0
    device: str = "cpu"         #                                                   [cuda]
    spread_seeds: tuple = (1, 2)  # more seeds for the sizes below, to measure the spread one seed hides
    spread_sizes: tuple = (0, 2)  # indices into sizes
    check_windows: tuple = (4096, 256)  # the notebook's live check: training and validation windows

    @classmethod
    def gpu(cls) -> ScalingConfig:
        return cls(sizes=((2, 64, 2), (4, 128, 4), (4, 192, 6), (6, 256, 8), (6, 384, 6), (8, 512, 8)),
                   block_size=256, epochs=10, evaluations=20, batch_size=64, lr=1e-3, device="cuda")


CONFIG = ScalingConfig()  # main() replaces it with ScalingConfig.gpu() when run with --gpu


class Segments(Sampler):
    """``epochs`` shuffled passes over ``n`` windows, handed out one of ``segments`` equal parts per iteration.

    The ``Trainer`` evaluates after every pass over its loader, so a loader over
    this sampler, with ``TrainConfig(epochs=segments)``, trains on exactly
    ``epochs`` passes and evaluates ``segments`` times along the way.
    """

    def __init__(self, n: int, epochs: int, segments: int, batch_size: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        order = torch.cat([torch.randperm(n, generator=g) for _ in range(epochs)])
        per = len(order) // (segments * batch_size) * batch_size  # whole batches per segment
        self.parts = [order[i * per:(i + 1) * per].tolist() for i in range(segments)]
        self.next = 0

    def __len__(self) -> int:
        return len(self.parts[0])

    def __iter__(self):
        part = self.parts[self.next % len(self.parts)]
        self.next += 1
        return iter(part)


def build(n_layer: int, n_embd: int, n_head: int, vocab_size: int, config: ScalingConfig | None = None) -> GPT:
    c = config or CONFIG
    return GPT(GPTConfig(block_size=c.block_size, vocab_size=vocab_size, n_layer=n_layer, n_head=n_head,
                         n_embd=n_embd))


def train(size: tuple, train_set, val_set, vocab_size: int, config: ScalingConfig | None = None) -> dict:
    c = config or CONFIG
    n_layer, n_embd, n_head = size
    seed_everything(c.seed)
    model = build(n_layer, n_embd, n_head, vocab_size, c)
    sampler = Segments(len(train_set), c.epochs, c.evaluations, c.batch_size, c.seed)
    loader = DataLoader(train_set, batch_size=c.batch_size, sampler=sampler, drop_last=True)
    trainer = Trainer(model, TrainConfig(epochs=c.evaluations, batch_size=c.batch_size, lr=c.lr, device=c.device,
                                         seed=c.seed, progress=False), metric=None)
    started = time.perf_counter()
    history = trainer.fit(loader, val_set)
    seconds = time.perf_counter() - started
    n = non_embedding_parameters(model)
    steps_per_segment = len(loader)
    curve = []
    for i, val_loss in enumerate(history.val_loss, start=1):
        tokens = i * steps_per_segment * c.batch_size * c.block_size
        curve.append(dict(step=i * steps_per_segment, tokens=tokens, compute_6nd=training_flops(n, tokens),
                          train_flops=model.flops_per_token() * tokens, val_loss=round(val_loss, 4)))
    return dict(n_layer=n_layer, n_embd=n_embd, n_head=n_head, non_embedding_parameters=n,
                parameters=sum(p.numel() for p in model.parameters()),
                gpt_non_embedding=model.num_parameters(non_embedding=True), flops_per_token=model.flops_per_token(),
                tokens=curve[-1]["tokens"], val_loss=curve[-1]["val_loss"], seconds=round(seconds, 1), curve=curve)


def live_check(train_set, val_set, vocab_size: int, config: ScalingConfig | None = None) -> dict:
    """The smallest size, one pass over the first training windows, scored on the first validation windows.

    Section 8.1 reruns exactly this (same seed, same windows, same settings) in a few seconds and compares its
    validation loss with the one recorded here.
    """
    c = config or CONFIG
    n_train, n_val = c.check_windows
    seed_everything(c.seed)
    model = build(*c.sizes[0], vocab_size, c)
    trainer = Trainer(model, TrainConfig(epochs=1, batch_size=c.batch_size, lr=c.lr, device=c.device, seed=c.seed,
                                         progress=False), metric=None)
    history = trainer.fit(Subset(train_set, range(n_train)), Subset(val_set, range(n_val)))
    return dict(size=list(c.sizes[0]), train_windows=n_train, val_windows=n_val,
                steps=len(history.step_loss), val_loss=round(history.val_loss[-1], 4))


def main(argv: list[str] | None = None, config: ScalingConfig | None = None) -> dict:
    global CONFIG
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="ScalingConfig.gpu() on the CUDA device")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch threads on the CPU (default 1; see above)")
    parser.add_argument("--out", default=None, help="also write the results as JSON to this file")
    args = parser.parse_args(argv)
    CONFIG = config or (ScalingConfig.gpu() if args.gpu else ScalingConfig())
    if args.epochs is not None:
        CONFIG = dataclasses.replace(CONFIG, epochs=args.epochs)
    torch.set_num_threads(args.threads)
    started, load_before = time.time(), os.getloadavg()
    train_set, val_set, vocab = char_splits(pydoc_text(), block_size=CONFIG.block_size)
    rows = []
    print(f"{'size':>10} {'N':>8} {'tokens':>9} {'val loss':>8} {'seconds':>8}", flush=True)
    for size in CONFIG.sizes:
        row = train(size, train_set, val_set, len(vocab), CONFIG)
        rows.append(row)
        print(f"{'x'.join(map(str, size)):>10} {row['non_embedding_parameters']:>8} {row['tokens']:>9} "
              f"{row['val_loss']:>8.4f} {row['seconds']:>8.1f}", flush=True)
    spread = []
    for index in CONFIG.spread_sizes:
        for seed in CONFIG.spread_seeds:
            row = train(CONFIG.sizes[index], train_set, val_set, len(vocab), dataclasses.replace(CONFIG, seed=seed))
            spread.append(dict(size=list(CONFIG.sizes[index]), seed=seed, val_loss=row["val_loss"],
                               seconds=row["seconds"]))
            print(f"seed {seed} of size {CONFIG.sizes[index]}: val loss {row['val_loss']:.4f}", flush=True)
    check = live_check(train_set, val_set, len(vocab), CONFIG)
    settings = asdict(CONFIG)
    settings.update(vocab_size=len(vocab), train_windows=len(train_set), val_windows=len(val_set),
                    date=datetime.date.today().isoformat(), minutes=round((time.time() - started) / 60, 1),
                    command="python " + " ".join([sys.argv[0] if argv is None else "benchmarks/scaling_gpt.py",
                                                   *(argv if argv is not None else sys.argv[1:])]))
    machine = dict(device=CONFIG.device, cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(),
                   torch=torch.__version__, python=platform.python_version(), processor=platform.processor(),
                   gpu=torch.cuda.get_device_name() if CONFIG.device == "cuda" else None,
                   loadavg_before=[round(x, 2) for x in load_before],
                   loadavg_after=[round(x, 2) for x in os.getloadavg()])
    result = dict(settings=settings, machine=machine, rows=rows, seed_spread=spread, live_check=check)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
        print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
