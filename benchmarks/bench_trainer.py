"""How much does the training engine cost? ``Trainer.fit`` against a bare PyTorch loop.

Both train the same model on the same data in the same order with the same
algorithm (AdamW, warmup + cosine schedule, gradient clipping), so the
difference is the engine's own bookkeeping: progress bars, history, NaN checks,
metric accumulation and device moves. A second bare loop without schedule and
clipping shows what those two cost on their own.

Runs are interleaved (bare, engine, engine, bare, ...) and the overhead is the
median over the repeats of engine time / bare time in the same repeat, because a
shared machine's speed drifts. Two clocks: wall time, and the
CPU time of this process, which on a busy shared machine still counts only the
work done (with one torch thread, CPU time equals wall time on an idle machine).
On CUDA only wall time means anything. Not a test: run it by hand,

    python benchmarks/bench_trainer.py                 # CPU, 1 thread, digits MLP 256 and 1024 wide, 7 repeats
    python benchmarks/bench_trainer.py --hidden 1024 --repeats 9 --device cuda

The engine's cost is a fixed amount per step (Python bookkeeping), so its share
shrinks as the step grows: hence two widths. The performance appendix reads the results.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from datetime import date
from functools import partial
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from bigmodel_lib import Stopwatch, TrainConfig, Trainer, get_device, load_dataset, seed_everything
from bigmodel_lib.devices import dataloader_kwargs
from bigmodel_lib.training.config import warmup_cosine


def make_model(hidden: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, 10))


def bare_loop(train, config: TrainConfig, hidden: int, schedule_and_clip: bool = True) -> tuple[float, float]:
    """The loop a reader would write by hand; returns (wall, CPU) seconds."""
    seed_everything(0)
    device = get_device(config.device)
    with Stopwatch(device) as watch:
        model = make_model(hidden).to(device)
        loader = DataLoader(train, batch_size=config.batch_size, shuffle=True,
                            generator=torch.Generator().manual_seed(config.seed), **dataloader_kwargs(device))
        opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        total = config.epochs * len(loader)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, partial(warmup_cosine, warmup_steps=int(config.warmup_fraction * total), total_steps=total,
                         min_lr_fraction=config.min_lr_fraction))
        model.train()
        for _ in range(config.epochs):
            for x, y in loader:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                loss = nn.functional.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if schedule_and_clip:
                    nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                opt.step()
                if schedule_and_clip:
                    sched.step()
    return watch.seconds, watch.cpu_seconds


def engine(train, config: TrainConfig, hidden: int) -> tuple[float, float]:
    """The same run through ``Trainer.fit``; returns (wall, CPU) seconds."""
    seed_everything(0)
    with Stopwatch(get_device(config.device)) as watch:
        trainer = Trainer(make_model(hidden), config)
        trainer.fit(train)
    return watch.seconds, watch.cpu_seconds


def measure(train, config: TrainConfig, hidden: int, repeats: int) -> tuple[dict, dict]:
    """Interleaved runs of the bare loops and the engine; returns (medians and paired ratios, every run's times)."""
    engine(train, config, hidden)  # warm-up: imports, allocator, first-call costs
    bare_loop(train, config, hidden)
    runs = {"bare": [], "engine": [], "minimal": []}
    for i in range(repeats):
        # Alternate the order, so that neither side always runs right after the other.
        order = ("bare", "engine", "minimal") if i % 2 == 0 else ("engine", "bare", "minimal")
        for name in order:
            if name == "engine":
                runs[name].append(engine(train, config, hidden))
            else:
                runs[name].append(bare_loop(train, config, hidden, schedule_and_clip=name == "bare"))
        times = ", ".join(f"{n} {runs[n][-1][0]:.3f}/{runs[n][-1][1]:.3f}" for n in runs)
        print(f"  run {i + 1} (wall/CPU s): {times}", file=sys.stderr)
    summary = {}
    for clock, k in (("wall", 0), ("CPU", 1)):
        med = {name: statistics.median(r[k] for r in rs) for name, rs in runs.items()}
        paired = statistics.median(e[k] / b[k] for e, b in zip(runs["engine"], runs["bare"]))
        paired_minimal = statistics.median(e[k] / b[k] for e, b in zip(runs["engine"], runs["minimal"]))
        print(f"{clock:>4} time medians: bare loop {med['bare']:.3f} s, engine {med['engine']:.3f} s, "
              f"bare loop without schedule/clipping {med['minimal']:.3f} s")
        print(f"     engine overhead over the same bare loop (median of paired runs): {100 * (paired - 1):+.1f}% "
              f"(target <= +5%); over the minimal loop: {100 * (paired_minimal - 1):+.1f}%")
        summary[clock] = dict(medians_s=med, engine_over_bare=paired, engine_over_minimal=paired_minimal)
    return summary, runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 1024],
                        help="widths of the MLP's two hidden layers, one measurement each")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default=None, help="cpu, cuda or mps (default: the best available)")
    parser.add_argument("--progress", action="store_true", help="let the engine draw its progress bars (to stderr)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: steadier timings)")
    parser.add_argument("--out", default=None, help="also write the medians, settings and machine to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    train = load_dataset("digits", val_fraction=0.1).train
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=1e-2, device=args.device,
                         progress=args.progress, precision="fp32")
    print(f"device {get_device(args.device)}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    load_before = os.getloadavg()
    summaries, all_runs = {}, {}
    for hidden in args.hidden:
        print(f"MLP 64-{hidden}-{hidden}-10 on digits ({len(train)} samples), {args.epochs} epochs, "
              f"batch {args.batch_size}, progress bars {'on' if args.progress else 'off'}")
        summaries[str(hidden)], all_runs[str(hidden)] = measure(train, config, hidden, args.repeats)
    if args.out:
        machine = dict(processor=platform.processor(), cpu_count=os.cpu_count(), torch=torch.__version__,
                       python=platform.python_version(), loadavg_before=[round(x, 2) for x in load_before])
        settings = dict(hidden=args.hidden, epochs=args.epochs, batch_size=args.batch_size, repeats=args.repeats,
                        threads=args.threads, device=str(get_device(args.device)), date=date.today().isoformat(),
                        samples=len(train))
        Path(args.out).write_text(json.dumps(dict(settings=settings, machine=machine, results=summaries, runs=all_runs,
                                                  complete=True), indent=1) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
