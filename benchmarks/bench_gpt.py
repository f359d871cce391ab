"""How fast is the library's GPT? Its training step against plain PyTorch blocks of the same shape.

One training step = forward, loss, backward and an AdamW step, on random
token ids. The baseline is the tests' reference model ``ReferenceGPT``
(``tests/reference_models.py``), the same network built from PyTorch's own
modules: token and position embeddings, ``nn.TransformerEncoder`` of pre-norm
GELU layers with a causal mask, a final LayerNorm and a tied output layer.
``tests/test_gpt.py`` checks that it computes the library GPT's function with
copied weights; here both have exactly the same number of parameters
(asserted), so the ratio of their step times is the cost (or gain) of the
library's readable code.

Steps are timed in interleaved rounds (library, baseline, library, ...) and
the median is reported, because a shared machine's speed drifts. On CPU the
process's CPU time is shown too: on a busy machine it still counts only the
work done. On CUDA the script also reports tokens per second and the model
FLOPs utilisation (MFU): achieved FLOP/s over the GPU's peak bf16 FLOP/s,
with 6 N + 12 n_layer n_embd T FLOPs per token (``GPT.flops_per_token``);
the peak comes from a small table or ``--peak-tflops``. Not a test: run it by hand,

    python benchmarks/bench_gpt.py                          # CPU, 1 thread, GPTConfig() defaults
    python benchmarks/bench_gpt.py --device cuda --compile --batch-size 64
    python benchmarks/bench_gpt.py --device cuda --n-layer 12 --n-head 12 --n-embd 768 --block-size 1024 --batch-size 16

Chapter 4, section 4.6 (the cost of training a GPT).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from datetime import date
from pathlib import Path

import torch
import torch.nn as nn

from bigmodel_lib import Stopwatch, get_device
from bigmodel_lib.devices import autocast, resolve_precision
from bigmodel_lib.models.gpt import GPT, GPTConfig

# The baseline is the reference model of the tests. tests/ is not a package, so its folder goes on the path
# (rather than the repository root, where an installed package named ``tests`` could shadow it).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from reference_models import ReferenceGPT  # noqa: E402

# Dense (no sparsity) bf16 tensor-core peak in TFLOP/s, from the vendor data sheets,
# matched against torch.cuda.get_device_name() in this order. Pass --peak-tflops for others.
PEAK_BF16_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100", 989.0),  # SXM
    ("H200", 989.0),
    ("A100", 312.0),
)


def peak_flops(device: torch.device, peak_tflops: float | None) -> float | None:
    if peak_tflops is not None:
        return peak_tflops * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, tflops in PEAK_BF16_TFLOPS:
        if key in name:
            return tflops * 1e12
    return None


def make_step(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], device: torch.device, precision: str):
    """One training step (forward, backward, AdamW) as a function of no arguments."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, fused=device.type == "cuda")
    idx, targets = batch

    def step() -> None:
        with autocast(device, precision):
            _, loss = model(idx, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def time_steps(step, n: int, device: torch.device) -> tuple[float, float]:
    """Wall and CPU seconds per step, averaged over n steps (the clock waits for the GPU)."""
    with Stopwatch(device) as watch:
        for _ in range(n):
            step()
    return watch.seconds / n, watch.cpu_seconds / n


def main(argv: list[str] | None = None) -> dict:
    defaults = GPTConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--block-size", type=int, default=defaults.block_size)
    parser.add_argument("--vocab-size", type=int, default=defaults.vocab_size)
    parser.add_argument("--n-layer", type=int, default=defaults.n_layer)
    parser.add_argument("--n-head", type=int, default=defaults.n_head)
    parser.add_argument("--n-embd", type=int, default=defaults.n_embd)
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="auto: bf16 autocast on recent GPUs, fp32 on CPU")
    parser.add_argument("--compile", action="store_true", help="torch.compile both models")
    parser.add_argument("--from-scratch-attention", action="store_true",
                        help="the library GPT uses the from-scratch attention instead of the fused one")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--steps", type=int, default=3, help="training steps per round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (CPU runs only)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="peak bf16 TFLOP/s of the GPU, for MFU")
    parser.add_argument("--out", default=None, help="also write the results, settings and machine to this JSON file")
    args = parser.parse_args(argv)

    device = get_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    precision = resolve_precision(device, args.precision)
    config = GPTConfig(block_size=args.block_size, vocab_size=args.vocab_size, n_layer=args.n_layer,
                       n_head=args.n_head, n_embd=args.n_embd, fused_attention=not args.from_scratch_attention)
    torch.manual_seed(0)
    library, baseline = GPT(config).to(device), ReferenceGPT(config).to(device)
    n_params = library.num_parameters()
    assert n_params == sum(p.numel() for p in baseline.parameters()), "the two models must have the same size"
    if args.compile:
        library, baseline = torch.compile(library), torch.compile(baseline)
    generator = torch.Generator().manual_seed(0)
    batch = tuple(torch.randint(0, config.vocab_size, (args.batch_size, config.block_size), generator=generator)
                  .to(device) for _ in range(2))
    steps = {"library GPT": make_step(library, batch, device, precision),
             "PyTorch baseline": make_step(baseline, batch, device, precision)}
    for step in steps.values():
        time_steps(step, args.warmup, device)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            times[name].append(time_steps(step, args.steps, device))

    attention = "from scratch" if args.from_scratch_attention else "fused (F.scaled_dot_product_attention)"
    print(f"device: {device}, torch {torch.__version__}, precision: {precision}, compile: {args.compile}, "
          f"threads: {torch.get_num_threads() if device.type == 'cpu' else '-'}")
    print(f"model: {config.n_layer} layers, {config.n_head} heads, {config.n_embd} wide, vocab {config.vocab_size}, "
          f"{n_params / 1e6:.2f} M parameters; library attention: {attention}")
    print(f"batch: {args.batch_size} x {config.block_size} tokens; "
          f"median of {args.rounds} rounds of {args.steps} steps")
    tokens = args.batch_size * config.block_size
    flops_per_token = GPT(config).flops_per_token()
    peak = peak_flops(device, args.peak_tflops)
    results = {}
    for name, samples in times.items():
        wall = statistics.median(s[0] for s in samples)
        cpu = statistics.median(s[1] for s in samples)
        line = f"  {name:<17} {wall * 1e3:8.1f} ms/step"
        if device.type == "cpu":
            line += f"  (CPU time {cpu * 1e3:.1f} ms/step)"
        else:
            line += f"  {tokens / wall:12,.0f} tokens/s"
            if peak is not None:
                line += f"  MFU {flops_per_token * tokens / wall / peak:6.1%}"
        print(line)
        results[name] = {"wall_s": wall, "cpu_s": cpu, "tokens_per_s": tokens / wall}
    ratio = results["library GPT"]["wall_s"] / results["PyTorch baseline"]["wall_s"]
    print(f"ratio (library / baseline step time): {ratio:.2f}")
    if device.type == "cuda" and peak is None:
        print("MFU not shown: unknown GPU peak; pass --peak-tflops")
    results["ratio"] = ratio
    if args.out:
        write_results(args.out, dict(vars(args), n_params=n_params, precision=precision, attention=attention,
                                     flops_per_token=flops_per_token, peak_flops=peak), results, device)
    return results


def write_results(path: str, settings: dict, results: dict, device: torch.device) -> None:
    """Write ``results`` with the settings and the machine they came from (the performance appendix reads it)."""

    machine = dict(processor=platform.processor(), cpu_count=os.cpu_count(), torch=torch.__version__,
                   python=platform.python_version(), loadavg_before=None if not hasattr(os, "getloadavg")
                   else [round(x, 2) for x in os.getloadavg()],
                   gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else None)
    settings = dict(settings, date=date.today().isoformat(), device=device.type)
    Path(path).write_text(json.dumps(dict(settings=settings, machine=machine, results=results, complete=True),
                                     indent=1) + "\n", encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
