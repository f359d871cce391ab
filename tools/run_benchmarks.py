"""Rerun the CPU benchmarks and rewrite the results the book ships: what ``make bench`` runs.

Every script in ``benchmarks/`` that writes a file under ``bigmodel_lib/results/``
is listed in :data:`BENCHMARKS` with the exact arguments that produced the
shipped file (``tests/test_benchmarks_data.py`` checks that the list and the
folders agree). The chapters and the performance appendix load those files and
assert on them, so after a rerun execute the notebooks again (``make
notebooks``) and run the tests: a rerun on another machine changes the times,
and can move a trained model's numbers within the spread the assertions allow.

All of them take several hours on a 2-core CPU; run them on an otherwise
idle machine (each one records the load average it started with). Use
``--only`` to rerun some:

    python tools/run_benchmarks.py                       # everything, in the order below
    python tools/run_benchmarks.py --only attention_speed compile_speed
    python tools/run_benchmarks.py --list                # names, minutes last time, commands
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = "bigmodel_lib/results"

#: name -> arguments after ``python benchmarks/<name>.py``; each writes ``bigmodel_lib/results/<name>_cpu.json``.
BENCHMARKS: dict[str, list[str]] = {
    # Performance (issue 20): library against references, the cost of compiling
    "attention_speed": ["--threads", "1"],
    "compile_speed": ["--threads", "1"],
    "bench_gpt": ["--threads", "1", "--out", f"{RESULTS}/bench_gpt_cpu.json"],
    "bench_trainer": ["--threads", "1", "--out", f"{RESULTS}/bench_trainer_cpu.json"],
    # Chapters 3-8: the grids the notebooks read
    "lm_lstm_vs_gpt": ["--out", f"{RESULTS}/lm_lstm_vs_gpt_cpu.json"],
    "g2p_sizes": ["--threads", "1", "--out", f"{RESULTS}/g2p_sizes_cpu.json"],
    "minilm_probe": ["--out", f"{RESULTS}/minilm_probe_cpu.json"],
    "pretraining_benefit": ["--sizes", "30", "100", "300", "1000", "3000", "--seeds", "0", "1", "2",
                            "--pretrain-steps", "1200", "--log-every", "200",
                            "--out", f"{RESULTS}/pretraining_benefit_cpu.json"],
    "finetuning_strategies": ["--threads", "2", "--out", f"{RESULTS}/finetuning_strategies_cpu.json"],
    "digit_detection": ["--threads", "1", "--out", f"{RESULTS}/digit_detection_cpu.json"],
    "peptide_families": ["--threads", "1", "--out", f"{RESULTS}/peptide_families_cpu.json"],
    "volatility_forecasts": ["--threads", "1", "--out", f"{RESULTS}/volatility_forecasts_cpu.json"],
    "long_range_recall": ["--threads", "1", "--out", f"{RESULTS}/long_range_recall_cpu.json"],
    "image_families": ["--threads", "1", "--out", f"{RESULTS}/image_families_cpu.json"],
    "image_constraints": ["--threads", "1", "--out", f"{RESULTS}/image_constraints_cpu.json"],
    "text_families": ["--threads", "1", "--out", f"{RESULTS}/text_families_cpu.json"],
    "language_families": ["--threads", "1", "--out", f"{RESULTS}/language_families_cpu.json"],
    "scaling_gpt": ["--threads", "1", "--out", f"{RESULTS}/scaling_gpt_cpu.json"],
    "tiny_clip": ["--threads", "2", "--out", f"{RESULTS}/tiny_clip_cpu.json"],
    "label_noise": ["--threads", "1", "--out", f"{RESULTS}/label_noise_cpu.json"],
    "compression": ["--threads", "1", "--out", f"{RESULTS}/compression_cpu.json"],
    "interpretability": ["--threads", "1", "--out", f"{RESULTS}/interpretability_cpu.json"],
}

#: Scripts in benchmarks/ that write no shipped file (the book quotes them in prose, or they are run by hand).
NOT_SHIPPED: dict[str, str] = {}


def output_of(name: str) -> Path:
    """The results file a benchmark writes."""
    args = BENCHMARKS[name]
    return ROOT / (args[args.index("--out") + 1] if "--out" in args else f"{RESULTS}/{name}_cpu.json")


def command(name: str) -> list[str]:
    return [sys.executable, f"benchmarks/{name}.py", *BENCHMARKS[name]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="run just these")
    parser.add_argument("--list", action="store_true", help="print the benchmarks and their commands, run nothing")
    args = parser.parse_args(argv)
    names = args.only or list(BENCHMARKS)
    if args.list:
        for name in names:
            path = output_of(name)
            minutes = "-"
            if path.is_file():
                minutes = json.loads(path.read_text(encoding="utf-8")).get("settings", {}).get("minutes") or "-"
            print(f"{name:>22}  last run {minutes!s:>5} min   python {' '.join(command(name)[1:])}")
        return 0
    failed = []
    for name in names:
        print(f"== {name}: python {' '.join(command(name)[1:])}", flush=True)
        started = time.perf_counter()
        if subprocess.run(command(name), cwd=ROOT).returncode != 0:
            failed.append(name)
        print(f"== {name}: {(time.perf_counter() - started) / 60:.1f} min", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
