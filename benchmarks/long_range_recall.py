"""Chapter 7's long-range task: recall the token seen L steps earlier, for a CNN, RNNs and a Transformer.

Each sequence is ``L + 1`` tokens drawn uniformly from ``VOCAB`` symbols; the
model reads all of them and, at the last position, must name the first one, the
token seen ``L`` steps earlier. Every symbol can appear anywhere, so only the
position tells the model which token to keep: chance is ``1 / VOCAB``. The
distance ``L`` is the knob: it is the path length a recurrent network must carry
the token along, the receptive field a convolution needs, and the size of the
attention matrix.

The families (``bigmodel_lib.models.sequence_classifiers``), each at about
``RecallConfig.target_params`` weights (15,000 on a CPU; the width is chosen to
get closest; the counts are recorded), all reading the last position:

* ``rnn``, ``lstm``, ``gru``: ``RecurrentClassifier``, PyTorch's ``nn.RNN``
  (tanh), ``nn.LSTM`` (forget gate bias 1, section 3.2) and ``nn.GRU`` over
  embeddings of width 16;
* ``cnn``: ``CausalConvClassifier``, causal dilated convolutions (kernel 2,
  dilations 1, 2, 4, ..., residual connections, ReLU), enough layers to see
  ``max_distance + 1`` positions;
* ``transformer``: ``CausalTransformerClassifier``, 2 pre-norm encoder layers
  of section 4.4 with a causal mask and the sinusoidal encoding of section 4.3
  (no learned positions, so the weights do not grow with L).

Training: fresh random sequences every step (no data is seen twice), AdamW at a
constant learning rate after a 100-step warmup, gradient clipping at norm 1,
batches of ``batch_size``, up to ``steps`` steps, stopping early once the accuracy
over the last 100 training batches reaches ``TARGET_ACCURACY``; the steps and
seconds to that point are recorded ("time to target"). Each family gets the same
tuning: two learning rates on seed 0, the better on 2,000 validation sequences
kept for the other seeds.
Then the accuracy on 2,000 held-out sequences (a fixed generator per L), the
seconds per training step, and the forward time for one sequence and for a
batch of 256.

``RecallConfig.gpu()`` (``--gpu``) is the same grid at 100,000 weights, distances
up to 1,024 and longer training, on a CUDA device.

Slow (the results record the minutes it took) and not a test.
Times depend on the machine and its load; accuracies and step counts do not
(fixed seeds, deterministic CPU kernels). Chapter 7 shows
``bigmodel_lib/results/long_range_recall_cpu.json``, written on the 2-core CPU
machine that runs the book's tests by:

    python benchmarks/long_range_recall.py --out bigmodel_lib/results/long_range_recall_cpu.json
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from bigmodel_lib import seed_everything, time_call
from bigmodel_lib.models.sequence_classifiers import (
    CausalConvClassifier,
    CausalTransformerClassifier,
    RecurrentClassifier,
)
from bigmodel_lib.timing import synchronize

VOCAB = 8
TARGET_ACCURACY = 0.99
EMBED = 16  # embedding width of the recurrent networks
FAMILIES = ("rnn", "lstm", "gru", "cnn", "transformer")


@dataclass
class RecallConfig:
    # CPU defaults; the GPU values (RecallConfig.gpu()) in brackets
    target_params: int = 15_000      # weights of every model                  [100,000]
    max_distance: int = 256          # the convolution's reach, the positions' table [1,024]
    distances: tuple = (4, 16, 64, 256)  #                                     [4, 16, 64, 256, 1,024]
    batch_size: int = 32             #                                         [128]
    steps: int = 1000                # the most training steps of a run        [3,000]
    learning_rates: tuple = (1e-3, 3e-3)  # tried on seed 0, the better kept   [same]
    seeds: tuple = (0, 1, 2)

    @classmethod
    def gpu(cls) -> RecallConfig:
        return cls(target_params=100_000, max_distance=1024, distances=(4, 16, 64, 256, 1024), batch_size=128,
                   steps=3000)


CONFIG = RecallConfig()  # main() replaces it with RecallConfig.gpu() when run with --gpu


def recall_batch(n: int, distance: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` sequences of ``distance + 1`` random tokens (n, L + 1) and their first tokens (n,)."""
    if distance < 1:
        raise ValueError(f"expected a distance of at least 1, got {distance}")
    x = torch.randint(0, VOCAB, (n, distance + 1), generator=generator)
    return x, x[:, 0].clone()


def conv_layers_for(max_distance: int) -> int:
    """Layers of kernel 2 and dilations 1, 2, 4, ... whose receptive field covers ``max_distance + 1`` positions."""
    return math.ceil(math.log2(max_distance + 1))


def build(family: str, width: int) -> nn.Module:
    """The family's model at the given width (hidden size, channels or d_model), classifying into VOCAB classes."""
    if family in ("rnn", "lstm", "gru"):
        return RecurrentClassifier(family, VOCAB, VOCAB, EMBED, width)
    if family == "cnn":
        return CausalConvClassifier(VOCAB, VOCAB, width, conv_layers_for(CONFIG.max_distance))
    if family == "transformer":
        return CausalTransformerClassifier(VOCAB, VOCAB, width, max_len=CONFIG.max_distance + 1)
    raise ValueError(f"expected a family in {FAMILIES}, got {family!r}")


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def matched_width(family: str, target: int | None = None) -> int:
    """The width whose model has the parameter count closest to ``target`` (transformer widths divisible by 4)."""
    target = CONFIG.target_params if target is None else target
    step = 4 if family == "transformer" else 1
    low, high = 1, 1024 // step  # the count grows with the width: bisect for the first width at or above target
    while low < high:
        mid = (low + high) // 2
        low, high = (mid + 1, high) if count(build(family, mid * step)) < target else (low, mid)
    candidates = [w * step for w in (low - 1, low) if w >= 1]
    return min(candidates, key=lambda w: abs(count(build(family, w)) - target))


def train(model: nn.Module, distance: int, lr: float, steps: int, seed: int) -> dict:
    device = next(model.parameters()).device
    seed_everything(seed)
    gen = torch.Generator().manual_seed(10_000 + seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 100))
    recent, reached, start = [], None, time.perf_counter()
    model.train()
    for step in range(1, steps + 1):
        x, y = (t.to(device) for t in recall_batch(CONFIG.batch_size, distance, gen))
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        recent = (recent + [(logits.argmax(-1) == y).float().mean().item()])[-100:]
        if len(recent) == 100 and sum(recent) / 100 >= TARGET_ACCURACY:
            reached = step
            break
    synchronize(device)
    seconds = time.perf_counter() - start
    return dict(steps=step, seconds=round(seconds, 2), seconds_per_step=round(seconds / step, 5),
                steps_to_target=reached, seconds_to_target=round(seconds, 2) if reached else None,
                final_loss=round(loss.item(), 4))


@torch.no_grad()
def evaluate(model: nn.Module, distance: int, split: str = "test", n: int = 2000) -> float:
    """Accuracy on ``n`` held-out sequences: a fixed generator per distance and split ("validation" or "test")."""
    model.eval()
    device = next(model.parameters()).device
    x, y = recall_batch(n, distance, torch.Generator().manual_seed(distance + (0 if split == "test" else 500_000)))
    return sum((model(xb.to(device)).argmax(-1).cpu() == yb).sum().item()
               for xb, yb in zip(x.split(500), y.split(500))) / n


@torch.no_grad()
def latency(model: nn.Module, distance: int) -> dict:
    model.eval()
    gen = torch.Generator().manual_seed(1)
    device = next(model.parameters()).device
    one, many = recall_batch(1, distance, gen)[0].to(device), recall_batch(256, distance, gen)[0].to(device)
    return dict(batch1_ms=round(1000 * time_call(model, one, repeats=5, device=device).best_s, 3),
                batch256_ms=round(1000 * time_call(model, many, repeats=3, device=device).best_s, 3))


def run_cell(family: str, distance: int, seed: int, lr: float, steps: int, width: int, device="cpu") -> dict:
    seed_everything(seed)
    model = build(family, width).to(device)
    row = dict(family=family, distance=distance, seed=seed, lr=lr, width=width, parameters=count(model))
    row.update(train(model, distance, lr, steps, seed))
    row["validation_accuracy"] = evaluate(model, distance, "validation")
    row["test_accuracy"] = evaluate(model, distance, "test")
    row.update(latency(model, distance))
    return row


def main() -> None:
    global CONFIG
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="RecallConfig.gpu() on the CUDA device")
    parser.add_argument("--distances", type=int, nargs="+", default=None, help="default: the configuration's")
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default: the configuration's")
    parser.add_argument("--steps", type=int, default=None, help="the most training steps of a run")
    parser.add_argument("--threads", type=int, default=None, help="torch threads on a CPU (default: torch's choice)")
    parser.add_argument("--out", default=None, help="write the results here as JSON")
    args = parser.parse_args()
    CONFIG = RecallConfig.gpu() if args.gpu else RecallConfig()
    for name in ("distances", "seeds", "steps"):
        if getattr(args, name) is not None:
            value = getattr(args, name)
            CONFIG = dataclasses.replace(CONFIG, **{name: tuple(value) if isinstance(value, list) else value})
    device = torch.device("cuda" if args.gpu else "cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    if max(CONFIG.distances) > CONFIG.max_distance:
        parser.error(f"distances go up to {CONFIG.max_distance} (the positions' table and the convolution's reach)")
    started, load_before = time.time(), os.getloadavg()
    widths = {f: matched_width(f) for f in args.families}
    rows = []
    print(CONFIG, flush=True)
    print(f"{'family':>11} {'L':>4} {'seed':>4} {'lr':>6} {'params':>7} {'steps':>5} {'s/step':>7} {'to 99%':>7} "
          f"{'val acc':>7} {'test acc':>8} {'1 seq ms':>8} {'256 ms':>8}", flush=True)
    for family in args.families:
        for distance in CONFIG.distances:
            chosen = None
            for seed in CONFIG.seeds:
                candidates = CONFIG.learning_rates if chosen is None else (chosen,)
                tried = [run_cell(family, distance, seed, lr, CONFIG.steps, widths[family], device)
                         for lr in candidates]
                best = max(tried, key=lambda r: (r["validation_accuracy"], -r["steps"]))  # chosen on validation
                chosen = best["lr"]
                for r in tried:
                    r["lr_kept"] = r is best
                    rows.append(r)
                    print(f"{family:>11} {distance:>4} {seed:>4} {r['lr']:>6g} {r['parameters']:>7,} {r['steps']:>5} "
                          f"{r['seconds_per_step']:>7.4f} {str(r['steps_to_target']):>7} "
                          f"{r['validation_accuracy']:>7.3f} {r['test_accuracy']:>8.3f} "
                          f"{r['batch1_ms']:>8.2f} {r['batch256_ms']:>8.1f}", flush=True)
    settings = asdict(CONFIG)
    settings.update(vocab=VOCAB, target_accuracy=TARGET_ACCURACY, embed=EMBED, widths=widths,
                    conv_layers=conv_layers_for(CONFIG.max_distance), device=str(device),
                    date=datetime.date.today().isoformat(), minutes=round((time.time() - started) / 60, 1))
    result = dict(
        settings=settings,
        machine=dict(python=platform.python_version(), torch=torch.__version__, cpu_count=os.cpu_count(),
                     torch_threads=torch.get_num_threads(), loadavg_before=[round(v, 2) for v in load_before],
                     loadavg_after=[round(v, 2) for v in os.getloadavg()],
                     gpu=torch.cuda.get_device_name() if device.type == "cuda" else None),
        rows=rows,
    )
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
