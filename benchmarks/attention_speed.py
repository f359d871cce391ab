"""Attention written from the formula against PyTorch's fused kernel: time and peak memory against length.

Two measurements, both causal self-attention in float32:

* the attention function alone, one sequence of 4 heads of size 64 (chapter 4's
  cost table, section 4.1), through :func:`bigmodel_lib.probes.attention_cost`:
  from scratch (:func:`~bigmodel_lib.models.attention.scaled_dot_product_attention`,
  which stores the (T, T) weights) against ``F.scaled_dot_product_attention``;
  best-of-``--repeats`` milliseconds and the peak memory each call allocates
  beyond its inputs;
* the whole multi-head layer, the library's :class:`MultiHeadAttention` from
  scratch and fused against ``nn.MultiheadAttention(need_weights=False)`` with
  the same weights (checked equal), a batch of 16 sequences of 256 tokens, 128
  wide, 4 heads, forward only: median of ``--repeats`` interleaved calls.

Results go to ``bigmodel_lib/results/attention_speed_<device>.json``; the
performance appendix loads them. Not a test; run it by hand on an idle machine:

    python benchmarks/attention_speed.py            # CPU, 1 thread, about a minute

Issue 20 (performance), items 3 and 5.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import date
from pathlib import Path

import torch
import torch.nn as nn
from torch.testing import assert_close

from bigmodel_lib import get_device
from bigmodel_lib.models.attention import MultiHeadAttention, causal_mask
from bigmodel_lib.probes import attention_cost

RESULTS = Path(__file__).resolve().parents[1] / "bigmodel_lib" / "results"


def layer_times(device: torch.device, repeats: int, batch: int = 16, T: int = 256, d: int = 128, heads: int = 4) -> dict:
    torch.manual_seed(0)
    reference = nn.MultiheadAttention(d, heads, batch_first=True).to(device).eval()
    layers = {"from scratch": MultiHeadAttention(d, heads).to(device).eval(),
              "fused": MultiHeadAttention(d, heads, fused_attention=True).to(device).eval()}
    for layer in layers.values():
        layer.load_from_torch(reference)
    x = torch.randn(batch, T, d, device=device)
    allowed = causal_mask(T, device=device)
    calls = {name: (lambda layer=layer: layer(x, x, x, is_causal=True)) for name, layer in layers.items()}
    calls["nn.MultiheadAttention"] = lambda: reference(x, x, x, attn_mask=~allowed, need_weights=False)[0]
    with torch.no_grad():
        expected = calls["nn.MultiheadAttention"]()
        for name in layers:
            assert_close(calls[name](), expected, rtol=1e-4, atol=1e-5)
        times = {name: [] for name in calls}
        for _ in range(2):  # warm-up
            for call in calls.values():
                call()
        for _ in range(repeats):
            for name, call in calls.items():
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                call()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times[name].append(time.perf_counter() - start)
    ms = {name: 1e3 * statistics.median(t) for name, t in times.items()}
    return dict(batch=batch, seq_len=T, d_model=d, num_heads=heads, median_ms=ms,
                ratio_to_torch={name: ms[name] / ms["nn.MultiheadAttention"] for name in layers})


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (CPU runs only)")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    device = get_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    seq_lens = (256, 512, 1024, 2048, 4096) if device.type == "cpu" else (512, 1024, 2048, 4096, 8192, 16384)
    rows = attention_cost(seq_lens=seq_lens, num_heads=4, head_size=64, repeats=args.repeats, device=device)
    print(f"{'T':>6} {'impl':>13} {'ms':>9} {'peak MiB':>9} {'weights MiB':>12}")
    for r in rows:
        print(f"{r['seq_len']:>6} {r['impl']:>13} {r['ms']:>9.2f} {r['peak_mib']:>9.1f} "
              f"{r['weights_mib'] if r['weights_mib'] is not None else '-':>12}")
    layer = layer_times(device, args.repeats)
    print("multi-head layer, median ms: " + ", ".join(f"{k} {v:.2f}" for k, v in layer["median_ms"].items()))
    result = dict(
        settings=dict(date=date.today().isoformat(), device=device.type, repeats=args.repeats,
                      threads=args.threads if device.type == "cpu" else None, num_heads=4, head_size=64),
        machine=dict(processor=platform.processor(), cpu_count=os.cpu_count(), torch=torch.__version__,
                     python=platform.python_version(), loadavg_before=[round(x, 2) for x in load_before],
                     gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else None),
        rows=rows, layer=layer, complete=True)
    out = Path(args.out) if args.out else RESULTS / f"attention_speed_{device.type}.json"
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
