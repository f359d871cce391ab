"""Chapter 7's language-modelling task: an LSTM, a GPT and a causal CNN of equal size, at equal tokens, FLOPs and time.

The data is the character corpus of chapters 3 and 4: Python's documentation (``bigmodel_lib.text.pydoc_text``),
``char_splits(pydoc_text(), block_size=LanguageConfig.block_size)`` (the first 90% trains, the rest validates; 103
characters), the split of ``benchmarks/lm_lstm_vs_gpt.py``. Every model predicts the next character at every
position of windows of ``block_size`` characters.

The three families, each with the same number of weights, the embedding and the output layer counted:

* ``gpt``: the library's ``GPT`` of section 4.6 (``n_layer`` pre-norm blocks, ``n_head`` heads, width ``n_embd``,
  learned positions, output layer tied to the embedding). Its count is the **target**: the other two are matched
  to it by bisection on their width (the counts are recorded, all within 2%). On the CPU: 4 blocks of width 64,
  4 heads, 210,752 weights; the LSTM has 185 units (211,490 weights), the CNN 102 channels (211,039).
* ``lstm``: the library's ``CharLSTM`` of section 3.4 (embedding ``lstm_embedding``, one ``nn.LSTM`` layer, linear
  output); the width is the hidden size.
* ``cnn``: ``CausalConvLM`` (``bigmodel_lib.models.conv_lm``, section 7.5): a WaveNet/ByteNet-style stack of
  pre-norm residual blocks (layer norm, causal convolution of kernel 2 with dilation 1, 2, 4, ..., 32, GELU, 1x1
  convolution); it sees exactly 64 positions, the whole block. The width is the channel count. Generation
  recomputes the last 64 positions for every new character (no cache of the layers' past activations).

Training, the same for every family: the book's ``Trainer`` (AdamW, weight decay 0.01, gradients clipped at norm 1),
``batch_size`` windows per step, ``steps`` steps in all, drawn from the training windows in a seeded random order
(a new order after each pass). The learning rate rises linearly for ``warmup_steps`` and then stays **constant**
(``min_lr_fraction=1``): with no decay tied to the end of the run, every checkpoint is a fair "stopped here" point,
so one run per seed gives the whole loss-against-budget curve, where a decaying schedule would need a separate run
per budget (one run per budget would multiply the cost by the number of budgets; every family gets the same
schedule, so the comparison is fair, though a decayed run would end a little lower). The Trainer's epoch is one
checkpoint interval (``steps / checkpoints`` steps): after each, the validation loss (nats per character, every
validation window) is recorded with the tokens seen, the training FLOPs and the training seconds so far (the
Trainer's own clock of its training passes: the validation at the checkpoints is not counted).
``learning_rates[family]`` are tried at seed 0, the one with the lower final validation loss is kept for seeds 1
and 2 (the seed sets the initialisation and the order of the windows). The pairs follow from a first full run:
with (1e-3, 3e-3) for the GPT and the CNN and (3e-3, 1e-2) for the LSTM, every family kept its higher rate,
and one more seed-0 run each at twice that rate ended at 1.4138 nats for the GPT at 6e-3 (1.4501 at 3e-3), 1.3274
for the CNN at 6e-3 (1.3398 at 3e-3) and 1.3322 for the LSTM at 2e-2 (1.3035 at 1e-2); so the GPT and the CNN try
3e-3 and 6e-3, and the LSTM keeps 3e-3 and 1e-2. The same tuning effort for each: three rates at seed 0.

Training FLOPs per token: 6 per weight multiplied per token (forward and backward matrix products; chapter 1), i.e.
``GPT.flops_per_token`` for the GPT (non-embedding weights, the tied output layer among them, plus the attention
term 12 n_layer n_embd block_size), ``lstm_flops_per_token`` of ``benchmarks/lm_lstm_vs_gpt.py`` for the LSTM
(four gates' input and recurrent matrices and the output layer), ``CausalConvLM.flops_per_token`` for the CNN (every
kernel and the output layer). ``tests/test_language_families.py`` checks the GPT's and the CNN's against
``torch.utils.flop_counter.FlopCounterMode``; the counter cannot see inside ``nn.LSTM``'s fused kernel, and
``tests/test_benchmarks_data.py`` checks the LSTM formula on the from-scratch LSTM.

From the curves, :func:`comparisons` gives each family's validation loss (mean and range over the seeds, linearly
interpolated between checkpoints) at equal tokens (the end of training, the same for all), at equal training FLOPs
and at equal training seconds (the largest budget every kept run reached), and the tokens, FLOPs and seconds each
family needs to reach one target loss (the worst final loss of the kept runs; :func:`budget_to_reach`).

Measured once per family on its seed-0 model: the milliseconds per new character generated greedily at batch 1
(16 characters of prompt, 48 new, reading the prompt included; the GPT with and without its ``KVCache``, the LSTM
carrying its state, the CNN recomputing), the forward throughput at a batch of ``throughput_batch`` windows, the
peak bytes of tensors during one training step (the tensor tracker of ``measure_peak_memory`` on a CPU, as in
``text_families.py``), and the forward time of ``scaling_batch`` sequences against their length
(``scaling_lengths``; the GPT is rebuilt at the same sizes with a position table long enough, the LSTM and the CNN
are the trained models, which take any length).

``LanguageConfig.gpu()`` (``--gpu``): a wider, deeper GPT (and so larger LSTM and CNN), longer windows and longer
training, on a CUDA device.

Slow and not a test. Times depend on the machine and its load; counts, FLOPs and (for a given number of threads) the
losses do not. Chapter 7 shows ``bigmodel_lib/results/language_families_cpu.json``, written on the 2-core CPU machine
that runs the book's tests by:

    python benchmarks/language_families.py --threads 1 --out bigmodel_lib/results/language_families_cpu.json

Estimated, before that run, from 10 steps of each family at batches of 32 x 64 characters (one thread, load
average 1): about 58 ms per step for the GPT, 35 for the LSTM and 70 for the CNN, so 12 runs of 1,000 steps with
their validation checkpoints and the measurements take about 20 minutes. The shipped run (2026-12-01, one thread,
load average 1.8 before and 1.0 after) took 10.4 minutes: 1,000 steps took 30 s for the LSTM, 54 to 59 s for the
GPT and 57 to 64 s for the CNN. An earlier run with another benchmark holding the other core (load average 1.3 to
3.5) took 18.6 minutes and its seconds varied by up to 2x between runs of one model (the LSTM's 1,000 steps took
51 to 106 s): the equal-time comparison is the noisiest of the three, and chapter 7 asserts only orders that hold
with a wide margin.
On one GPU (not run yet):

    python benchmarks/language_families.py --gpu --out language_families_gpu.json
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from bigmodel_lib import TrainConfig, Trainer, count_parameters, seed_everything, time_call
from bigmodel_lib.memory import measure_peak_memory, training_state
from bigmodel_lib.models.char_lstm import CharLSTM
from bigmodel_lib.models.conv_lm import CausalConvLM
from bigmodel_lib.models.gpt import GPT, GPTConfig
from bigmodel_lib.text import char_splits, pydoc_text

sys.path.insert(0, str(Path(__file__).resolve().parent))  # chapter 4's LSTM FLOP count, exactly as it was used there
from lm_lstm_vs_gpt import lstm_flops_per_token  # noqa: E402

FAMILIES = ("lstm", "gpt", "cnn")
BUDGETS = ("tokens", "flops", "seconds")


def _learning_rates() -> dict:
    return {"lstm": (3e-3, 1e-2), "gpt": (3e-3, 6e-3), "cnn": (3e-3, 6e-3)}  # see the module docstring


@dataclass
class LanguageConfig:
    # CPU defaults; the GPU values (LanguageConfig.gpu()) in brackets
    block_size: int = 64                    # characters per window                    [256]
    n_layer: int = 4                        # the GPT, whose count is the target       [6]
    n_head: int = 4                         #                                          [6]
    n_embd: int = 64                        #                                          [384]
    lstm_embedding: int = 64                # CharLSTM's embedding width               [384]
    dilations: tuple = (1, 2, 4, 8, 16, 32)  # the CNN: receptive field 1 + sum = 64   [1, ..., 128: 256]
    kernel_size: int = 2
    batch_size: int = 32                    # windows per step                         [64]
    steps: int = 1000                       #                                          [10,000]
    checkpoints: int = 10                   # validation points along the way          [20]
    warmup_steps: int = 50                  # then a constant learning rate            [200]
    learning_rates: dict = field(default_factory=_learning_rates)  # two per family, tried at seed 0
    seeds: tuple = (0, 1, 2)
    val_limit: int | None = None            # validation windows used (None: all)
    prompt: int = 16                        # generation latency: prompt characters
    new_chars: int = 48                     # and characters generated (prompt + new <= block_size)
    throughput_batch: int = 256
    scaling_lengths: tuple = (64, 128, 256, 512)  #                                    [256, ..., 4,096]
    scaling_batch: int = 8
    precision: str = "fp32"

    @classmethod
    def gpu(cls) -> LanguageConfig:
        return cls(block_size=256, n_layer=6, n_head=6, n_embd=384, lstm_embedding=384,
                   dilations=(1, 2, 4, 8, 16, 32, 64, 128), batch_size=64, steps=10_000, checkpoints=20,
                   warmup_steps=200, prompt=64, new_chars=192, scaling_lengths=(256, 512, 1024, 2048, 4096))


CONFIG = LanguageConfig()  # main() replaces it with LanguageConfig.gpu() when run with --gpu


# ---------------------------------------------------------------- the three families


def build(family: str, width: int | None, vocab_size: int, block_size: int | None = None) -> nn.Module:
    """The family's model; ``width`` is the LSTM's hidden size or the CNN's channels (the GPT's is ``n_embd``)."""
    if family == "gpt":
        return GPT(GPTConfig(block_size=block_size or CONFIG.block_size, vocab_size=vocab_size,
                             n_layer=CONFIG.n_layer, n_head=CONFIG.n_head, n_embd=CONFIG.n_embd))
    if family == "lstm":
        return CharLSTM(vocab_size, embedding_dim=CONFIG.lstm_embedding, hidden_size=width, num_layers=1)
    if family == "cnn":
        return CausalConvLM(vocab_size, channels=width, dilations=CONFIG.dilations, kernel_size=CONFIG.kernel_size)
    raise ValueError(f"expected a family in {FAMILIES}, got {family!r}")


def flops_per_token(family: str, model: nn.Module) -> int:
    """Training FLOPs per token (forward and backward), as the module docstring counts them."""
    if family == "lstm":
        return lstm_flops_per_token(model.vocab_size, model.embedding.embedding_dim, model.lstm.hidden_size)
    if family in ("gpt", "cnn"):
        return model.flops_per_token()
    raise ValueError(f"expected a family in {FAMILIES}, got {family!r}")


def target_parameters(vocab_size: int) -> int:
    """The GPT's count: the target the other families are matched to."""
    with torch.device("meta"):
        return count_parameters(build("gpt", None, vocab_size))


def matched_width(family: str, vocab_size: int) -> int | None:
    """The width whose model has the count closest to the GPT's (None for the GPT itself)."""
    if family == "gpt":
        return None
    target = target_parameters(vocab_size)

    def size(width: int) -> int:
        with torch.device("meta"):  # shapes only: no memory, no initialisation
            return count_parameters(build(family, width, vocab_size))

    low, high = 1, 4096  # the count grows with the width: bisect for the first width at or above the target
    while low < high:
        mid = (low + high) // 2
        low, high = (mid + 1, high) if size(mid) < target else (low, mid)
    return min((w for w in (low - 1, low) if w >= 1), key=lambda w: abs(size(w) - target))


# ---------------------------------------------------------------- data


class Windows(Dataset):
    """``data[rows]`` is the batch of those windows: (x (b, T), y (b, T)), y the next characters."""

    def __init__(self, windows, limit: int | None = None):
        n = len(windows) if limit is None else min(limit, len(windows))
        pairs = [windows[i] for i in range(n)]
        self.x = torch.stack([p[0] for p in pairs])  # (N, T)
        self.y = torch.stack([p[1] for p in pairs])  # (N, T)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, rows):
        return self.x[rows], self.y[rows]


class StepChunks(Sampler):
    """``steps`` batches of ``batch_size`` rows per iteration (one Trainer epoch = one checkpoint interval), drawn
    from a seeded stream: a random order of all rows, then another, and so on, without repeats within a pass.
    Each iteration continues the stream where the last one stopped (the whole run reads one stream)."""

    def __init__(self, n: int, batch_size: int, steps: int, seed: int):
        if batch_size > n:
            raise ValueError(f"expected batch_size <= the {n} training windows, got {batch_size}")
        self.n, self.batch_size, self.steps = n, batch_size, steps
        self.generator = torch.Generator().manual_seed(seed)
        self.order, self.position = [], 0

    def __len__(self):
        return self.steps

    def _batch(self) -> list[int]:
        if self.position + self.batch_size > len(self.order):  # a new pass (the rest of the old one is dropped)
            self.order, self.position = torch.randperm(self.n, generator=self.generator).tolist(), 0
        rows = self.order[self.position: self.position + self.batch_size]
        self.position += self.batch_size
        return rows

    def __iter__(self):
        return iter([self._batch() for _ in range(self.steps)])


def load_data(limit: int | None = None) -> tuple[dict[str, Windows], int]:
    """The training and validation windows (the first ``limit`` training windows, if given) and the vocabulary size."""
    train, val, vocab = char_splits(pydoc_text(), block_size=CONFIG.block_size)
    return {"train": Windows(train, limit), "val": Windows(val, CONFIG.val_limit)}, len(vocab)


# ---------------------------------------------------------------- training


def train(family: str, width: int | None, lr: float, seed: int, data: dict[str, Windows], vocab_size: int,
          device="cpu") -> tuple[nn.Module, dict]:
    """One run: the curve of validation loss against tokens, FLOPs and training seconds at every checkpoint."""
    if CONFIG.steps % CONFIG.checkpoints:
        raise ValueError(f"expected steps divisible by checkpoints, got {CONFIG.steps} and {CONFIG.checkpoints}")
    seed_everything(seed)
    model = build(family, width, vocab_size)
    per_checkpoint = CONFIG.steps // CONFIG.checkpoints
    config = TrainConfig(epochs=CONFIG.checkpoints, batch_size=CONFIG.batch_size, lr=lr, weight_decay=0.01,
                         warmup_fraction=CONFIG.warmup_steps / CONFIG.steps, min_lr_fraction=1.0, grad_clip=1.0,
                         precision=CONFIG.precision, device=str(device), seed=seed, progress=False)
    trainer = Trainer(model, config, metric=None)
    sampler = StepChunks(len(data["train"]), CONFIG.batch_size, per_checkpoint, seed)
    val = DataLoader(data["val"], sampler=[list(range(i, min(i + 128, len(data["val"]))))
                                           for i in range(0, len(data["val"]), 128)], batch_size=None)
    history = trainer.fit(DataLoader(data["train"], sampler=sampler, batch_size=None), val)
    per_token = flops_per_token(family, model)
    tokens = [k * per_checkpoint * CONFIG.batch_size * CONFIG.block_size for k in range(1, history.epochs + 1)]
    seconds = torch.tensor([per_checkpoint * CONFIG.batch_size / s for s in history.samples_per_s]).cumsum(0)
    row = dict(family=family, seed=seed, lr=lr, width=width, parameters=count_parameters(model),
               flops_per_token=per_token, steps=len(history.step_loss), tokens=tokens,
               flops=[t * per_token for t in tokens], seconds=[round(s, 2) for s in seconds.tolist()],
               val_loss=[round(v, 4) for v in history.val_loss], train_loss=[round(v, 4) for v in history.train_loss],
               final_val_loss=round(history.val_loss[-1], 4),
               train_tokens_per_s=round(tokens[-1] / seconds[-1].item()))
    return trainer.model, row


# ---------------------------------------------------------------- reading the curves


def loss_at(budgets: list[float], losses: list[float], budget: float) -> float | None:
    """The loss at ``budget``, linearly interpolated between the checkpoints around it (None outside them)."""
    if len(budgets) != len(losses) or not budgets:
        raise ValueError(f"expected as many budgets as losses (at least one), got {len(budgets)} and {len(losses)}")
    if not budgets[0] <= budget <= budgets[-1]:
        return None
    for (b0, l0), (b1, l1) in zip(zip(budgets, losses), zip(budgets[1:], losses[1:])):
        if b0 <= budget <= b1:
            return l0 if b1 == b0 else l0 + (l1 - l0) * (budget - b0) / (b1 - b0)
    return losses[0]  # a single checkpoint, at exactly the budget


def budget_to_reach(budgets: list[float], losses: list[float], target: float) -> float | None:
    """The first budget at which the loss, linearly interpolated between checkpoints, is at most ``target``.

    None if no checkpoint reaches it; the first checkpoint's budget if that one already does (nothing is known
    before it).
    """
    if len(budgets) != len(losses) or not budgets:
        raise ValueError(f"expected as many budgets as losses (at least one), got {len(budgets)} and {len(losses)}")
    if losses[0] <= target:
        return budgets[0]
    for (b0, l0), (b1, l1) in zip(zip(budgets, losses), zip(budgets[1:], losses[1:])):
        if l1 <= target:
            return b0 + (b1 - b0) * (l0 - target) / (l0 - l1)
    return None


def _spread(values: list[float]) -> dict:
    return dict(mean=round(sum(values) / len(values), 4), min=round(min(values), 4), max=round(max(values), 4),
                runs=len(values))


def comparisons(rows: list[dict]) -> dict:
    """Each family's loss (mean, min, max over its kept runs) at equal tokens, equal FLOPs and equal seconds, and
    the tokens, FLOPs and seconds each needs to reach one target loss.

    The budget for each is the largest one every kept run reached: the smallest of their final budgets. The target
    (``to_target``) is the highest final validation loss of the kept runs, so that every run reaches it.
    """
    kept = [r for r in rows if r.get("lr_kept")]
    if not kept:
        raise ValueError("expected at least one row with lr_kept=True, got none")
    families = list(dict.fromkeys(r["family"] for r in kept))
    result = {}
    for key in BUDGETS:
        budget = min(r[key][-1] for r in kept)
        at_budget = {}
        for family in families:
            losses = [loss_at(r[key], r["val_loss"], budget) for r in kept if r["family"] == family]
            losses = [v for v in losses if v is not None]  # before a run's first checkpoint: no value
            at_budget[family] = _spread(losses) if losses else None
        result[key] = dict(budget=budget, families=at_budget)
    target = max(r["val_loss"][-1] for r in kept)
    result["to_target"] = dict(target_loss=target, families={
        family: {key: _spread([budget_to_reach(r[key], r["val_loss"], target) for r in kept if r["family"] == family])
                 for key in BUDGETS}
        for family in families})
    return result


# ---------------------------------------------------------------- measurements


@torch.no_grad()
def conv_generate(model: CausalConvLM, idx: torch.Tensor, new: int) -> torch.Tensor:
    """Greedy generation that recomputes the last ``receptive_field()`` positions for every new character."""
    window = model.receptive_field()
    for _ in range(new):
        next_id = model(idx[:, -window:])[0][:, -1].argmax(-1, keepdim=True)  # (B, 1)
        idx = torch.cat((idx, next_id), 1)
    return idx


def generation_ms(family: str, model: nn.Module, prompt: torch.Tensor, device) -> dict:
    """Milliseconds per new character (best of 3), greedy, batch 1."""
    if CONFIG.prompt + CONFIG.new_chars > CONFIG.block_size:
        raise ValueError(f"expected prompt + new_chars <= block_size, got {CONFIG.prompt} + {CONFIG.new_chars} > "
                         f"{CONFIG.block_size}")
    n = CONFIG.new_chars
    model.eval()
    if family == "lstm":
        calls = {"generate_ms_per_char": lambda: model.generate(prompt[0].tolist(), n, temperature=0)}
    elif family == "gpt":
        calls = {"generate_ms_per_char": lambda: model.generate(prompt, n, temperature=0, use_cache=True),
                 "generate_ms_per_char_uncached": lambda: model.generate(prompt, n, temperature=0)}
    else:
        calls = {"generate_ms_per_char": lambda: conv_generate(model, prompt, n)}
    return {k: round(time_call(fn, repeats=3, device=device).best_ms / n, 3) for k, fn in calls.items()}


def step_memory(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device) -> dict:
    """Peak bytes of tensors during one AdamW step on ``x`` (after a first step, which creates AdamW's moments)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        loss = F.cross_entropy(model(x)[0].flatten(0, 1), y.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    step()
    held = [t for ts in training_state(model, optimizer).values() for t in ts] + [x, y]
    peak = measure_peak_memory(step, held=held, device=device)
    return dict(peak_step_bytes=peak.peak_bytes, held_bytes=peak.held_bytes, memory_method=peak.method)


def measure(family: str, model: nn.Module, width: int | None, data: dict[str, Windows], vocab_size: int,
            device="cpu") -> dict:
    """Generation latency, throughput, training-step memory and forward time against length, for one model."""
    device = torch.device(device)
    model = model.to(device).eval()
    row = dict(family=family, width=width, parameters=count_parameters(model),
               receptive_field=model.receptive_field() if family == "cnn" else None)
    row.update(generation_ms(family, model, data["val"].x[:1, : CONFIG.prompt].to(device), device))
    with torch.no_grad():
        batch = data["val"].x[: CONFIG.throughput_batch].to(device)
        ms = time_call(model, batch, repeats=3, device=device).best_ms
        row.update(throughput_shape=list(batch.shape), throughput_chars_per_s=round(batch.numel() / ms * 1000))
        gen = torch.Generator().manual_seed(0)
        scaled = build(family, width, vocab_size, block_size=max(CONFIG.scaling_lengths)).to(device).eval() \
            if family == "gpt" else model  # the same sizes, a position table long enough
        row["forward_ms_by_length"] = {
            T: round(time_call(scaled, torch.randint(0, vocab_size, (CONFIG.scaling_batch, T), generator=gen)
                               .to(device), repeats=3, device=device).best_ms, 2)
            for T in CONFIG.scaling_lengths}
    x, y = data["train"][list(range(CONFIG.batch_size))]
    row.update(step_memory(copy.deepcopy(model).train(), x.to(device), y.to(device), device))  # the model unchanged
    return row


# ---------------------------------------------------------------- the grid


def main(argv: list[str] | None = None, config: LanguageConfig | None = None) -> int:
    """Run the grid and write the results; ``config`` (for the tests) replaces the command line's choice."""
    global CONFIG
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="LanguageConfig.gpu() on the CUDA device")
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default: the configuration's")
    parser.add_argument("--steps", type=int, default=None, help="default: the configuration's")
    parser.add_argument("--limit", type=int, default=None, help="train on this many windows only (a trial)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads on a CPU (default: torch's choice)")
    parser.add_argument("--out", default=None, help="write the results here as JSON")
    args = parser.parse_args(argv)
    CONFIG = config or (LanguageConfig.gpu() if args.gpu else LanguageConfig())
    if args.seeds is not None:
        CONFIG = dataclasses.replace(CONFIG, seeds=tuple(args.seeds))
    if args.steps is not None:
        CONFIG = dataclasses.replace(CONFIG, steps=args.steps)
    device = torch.device("cuda" if args.gpu else "cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    started, load_before = time.time(), os.getloadavg()
    data, vocab_size = load_data(args.limit)
    widths = {f: matched_width(f, vocab_size) for f in args.families}
    print(CONFIG, f"vocab {vocab_size}, windows {len(data['train'])} / {len(data['val'])}", widths, sep="\n",
          flush=True)
    print(f"{'family':>6} {'seed':>4} {'lr':>6} {'params':>8} {'MFLOP/tok':>9} {'train s':>7} {'val loss':>8}",
          flush=True)
    rows, measurements = [], []

    def save():
        settings = asdict(CONFIG)
        settings.update(split=f"char_splits(pydoc_text(), block_size={CONFIG.block_size})", vocab_size=vocab_size,
                        train_windows=len(data["train"]), val_windows=len(data["val"]), widths=widths,
                        target_parameters=target_parameters(vocab_size), limit=args.limit, device=str(device),
                        date=datetime.date.today().isoformat(), minutes=round((time.time() - started) / 60, 1),
                        command="python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]))
        result = dict(settings=settings,
                      machine=dict(python=platform.python_version(), torch=torch.__version__, cpu_count=os.cpu_count(),
                                   torch_threads=torch.get_num_threads(),
                                   loadavg_before=[round(v, 2) for v in load_before],
                                   loadavg_after=[round(v, 2) for v in os.getloadavg()],
                                   gpu=torch.cuda.get_device_name() if device.type == "cuda" else None),
                      rows=rows, measurements=measurements,
                      comparisons=comparisons(rows) if any(r.get("lr_kept") for r in rows) else None)
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
            f.write("\n")

    for family in args.families:
        chosen, first_model = None, None
        for seed in CONFIG.seeds:
            tried = [train(family, widths[family], lr, seed, data, vocab_size, device)
                     for lr in (CONFIG.learning_rates[family] if chosen is None else (chosen,))]
            best = min(tried, key=lambda mr: mr[1]["final_val_loss"])  # chosen on validation; ties: the first
            chosen = best[1]["lr"]
            first_model = best[0] if first_model is None else first_model
            for _, r in tried:
                r["lr_kept"] = r is best[1]
                rows.append(r)
                print(f"{family:>6} {seed:>4} {r['lr']:>6g} {r['parameters']:>8,} {r['flops_per_token'] / 1e6:>9.3f} "
                      f"{r['seconds'][-1]:>7.1f} {r['final_val_loss']:>8.4f}", flush=True)
            if args.out:
                save()  # after every seed: a long run that stops keeps what it measured
        measurements.append(measure(family, first_model, widths[family], data, vocab_size, device))
        print(measurements[-1], flush=True)
    if args.out:
        save()
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
