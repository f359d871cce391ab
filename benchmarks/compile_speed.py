"""Does ``torch.compile`` pay for the book's models? Eager against compiled training steps, compile time counted.

For chapter 4's two trained models, the character GPT of section 4.6 (4 layers,
4 heads, 128 wide, 16 windows of 64 characters, AdamW) and the spelling-to-
pronunciation encoder-decoder of section 4.5 (its own configuration, a batch
of 64 word pairs), the script measures

* the eager training step (forward, loss, backward, AdamW), median of
  ``--steps`` steps after ``--warmup``;
* the first compiled step, which includes compiling from cold, with inductor's
  on-disk caches empty (on a CPU it generates and compiles C++), and the compiled step after it, median likewise;
* the break-even point: after how many steps the compiled model has made up
  its compile time, ``compile_s / (eager_step - compiled_step)``;
* that both compute the same thing: the first step's loss from the same
  initial weights agrees to float rounding (asserted).

Both models start from the same weights and see the same batches (random
tokens: speed does not depend on the text). Results go to
``bigmodel_lib/results/compile_speed_<device>.json``; the performance appendix
loads them. If ``torch.compile`` is not available here (no C++ compiler, an
unsupported Python), the row says why instead of failing. Not a test; run it
by hand on an otherwise idle machine:

    python benchmarks/compile_speed.py                  # CPU, 1 thread, about 3 minutes
    python benchmarks/compile_speed.py --device cuda --steps 50

Issue 20 (performance), item 2.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

# A cold compile, as a reader's first run has: inductor's on-disk caches start empty (set before torch loads).
os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="compile_speed_")

import torch  # noqa: E402
import torch.nn.functional as F

from bigmodel_lib import get_device  # noqa: E402
from bigmodel_lib.models.gpt import GPT, GPTConfig  # noqa: E402
from bigmodel_lib.models.transformer import Seq2SeqConfig, Seq2SeqTransformer  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "bigmodel_lib" / "results"

GPT_CONFIG = dict(block_size=64, vocab_size=100, n_layer=4, n_head=4, n_embd=128)  # section 4.6
GPT_BATCH = 16
SEQ2SEQ_CONFIG = dict(src_vocab_size=30, tgt_vocab_size=42, d_model=96, num_heads=4, num_encoder_layers=3,
                      num_decoder_layers=2, d_ff=192, dropout=0.0, max_len=32, norm_first=True, pad_id=0,
                      bos_id=1, eos_id=2, fused_attention=False)  # section 4.5
SEQ2SEQ_BATCH, SRC_LEN, TGT_LEN = 64, 12, 14


def gpt_case(device: torch.device):
    torch.manual_seed(0)
    model = GPT(GPTConfig(**GPT_CONFIG)).to(device)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, GPT_CONFIG["vocab_size"], (GPT_BATCH, GPT_CONFIG["block_size"]), generator=g).to(device)
    y = torch.randint(0, GPT_CONFIG["vocab_size"], (GPT_BATCH, GPT_CONFIG["block_size"]), generator=g).to(device)

    def loss_of(m):
        _, loss = m(x, y)
        return loss

    return model, loss_of


def seq2seq_case(device: torch.device):
    torch.manual_seed(0)
    model = Seq2SeqTransformer(Seq2SeqConfig(**SEQ2SEQ_CONFIG)).to(device)
    g = torch.Generator().manual_seed(1)
    src = torch.randint(3, SEQ2SEQ_CONFIG["src_vocab_size"], (SEQ2SEQ_BATCH, SRC_LEN), generator=g).to(device)
    tgt = torch.randint(3, SEQ2SEQ_CONFIG["tgt_vocab_size"], (SEQ2SEQ_BATCH, TGT_LEN + 1), generator=g).to(device)

    def loss_of(m):
        logits, _ = m(src, tgt[:, :-1])
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), tgt[:, 1:].reshape(-1))

    return model, loss_of


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_steps(forward, params, loss_of, n: int, device: torch.device) -> tuple[list[float], float]:
    """Run n training steps of ``forward``; return each step's seconds and the first step's loss."""
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    times, first_loss = [], None
    for _ in range(n):
        sync(device)
        start = time.perf_counter()
        loss = loss_of(forward)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sync(device)
        times.append(time.perf_counter() - start)
        first_loss = loss.item() if first_loss is None else first_loss
    return times, first_loss


def measure(name: str, case, device: torch.device, steps: int, warmup: int) -> dict:
    model, loss_of = case(device)
    eager_model = copy.deepcopy(model)
    eager_times, eager_loss = train_steps(eager_model, eager_model.parameters(), loss_of, warmup + steps, device)
    row = dict(model=name, parameters=sum(p.numel() for p in model.parameters()),
               eager_step_ms=1e3 * statistics.median(eager_times[warmup:]))
    torch._dynamo.reset()
    compiled_model = copy.deepcopy(model)
    try:
        compiled = torch.compile(compiled_model)
        compiled_times, compiled_loss = train_steps(compiled, compiled_model.parameters(), loss_of,
                                                    1 + warmup + steps, device)
    except Exception as exc:  # no C++ compiler, unsupported Python, ...: say why, keep the eager numbers
        row.update(compiled=False, reason=f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
        print(f"{name}: torch.compile unavailable here ({row['reason']})")
        return row
    assert abs(compiled_loss - eager_loss) < 1e-4 * max(1.0, abs(eager_loss)), (compiled_loss, eager_loss)
    compiled_step = statistics.median(compiled_times[1 + warmup:])
    first = compiled_times[0]
    saving = statistics.median(eager_times[warmup:]) - compiled_step
    row.update(compiled=True, first_compiled_step_s=first, compiled_step_ms=1e3 * compiled_step,
               speedup=statistics.median(eager_times[warmup:]) / compiled_step,
               break_even_steps=(first - compiled_step) / saving if saving > 0 else None,
               first_loss_eager=eager_loss, first_loss_compiled=compiled_loss)
    return row


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (CPU runs only)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per model and mode")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--out", default=None, help="results file (default: bigmodel_lib/results/compile_speed_<device>.json)")
    args = parser.parse_args(argv)
    device = get_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    started = time.perf_counter()
    rows = [measure(name, case, device, args.steps, args.warmup)
            for name, case in (("gpt", gpt_case), ("seq2seq", seq2seq_case))]
    print(f"{'model':>8} {'params':>8} {'eager ms':>9} {'compiled ms':>12} {'speedup':>8} {'compile s':>10} "
          f"{'break-even steps':>17}")
    for r in rows:
        if r.get("compiled"):
            be = f"{r['break_even_steps']:.0f}" if r["break_even_steps"] is not None else "never"
            print(f"{r['model']:>8} {r['parameters']:>8,} {r['eager_step_ms']:>9.1f} {r['compiled_step_ms']:>12.1f} "
                  f"{r['speedup']:>8.2f} {r['first_compiled_step_s']:>10.1f} {be:>17}")
    result = dict(
        settings=dict(date=date.today().isoformat(), device=device.type, threads=args.threads if device.type == "cpu" else None,
                      steps=args.steps, warmup=args.warmup, gpt=dict(GPT_CONFIG, batch_size=GPT_BATCH),
                      seq2seq=dict(SEQ2SEQ_CONFIG, batch_size=SEQ2SEQ_BATCH, src_len=SRC_LEN, tgt_len=TGT_LEN),
                      minutes=round((time.perf_counter() - started) / 60, 1)),
        machine=dict(processor=platform.processor(), cpu_count=os.cpu_count(), torch=torch.__version__,
                     python=platform.python_version(), loadavg_before=[round(x, 2) for x in load_before],
                     gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else None),
        rows=rows,
        complete=True,
    )
    out = Path(args.out) if args.out else RESULTS / f"compile_speed_{device.type}.json"
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
