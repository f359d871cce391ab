"""Execute the course notebooks in place, top to bottom (``make notebooks``).

This is the one way stored outputs are produced, so every notebook in the
repository shows a single clean run: execution counts 1..N, no stale outputs.
Stream outputs are merged and carriage returns collapsed, so a tqdm progress
bar is stored as its final state rather than as hundreds of redraws.

With ``--record-times`` each notebook's wall time is also written to
``bigmodel_lib/results/notebook_times.json`` under the device kind it ran on
(``cpu``, ``cuda`` or ``mps``) with a description of the machine; the preface
shows that table as the expected run time of each chapter. Record times with
nothing else running: other processes take the same cores.

Usage:
    python tools/run_notebooks.py                  # every notebook in notebooks/
    python tools/run_notebooks.py notebooks/02_cnn.ipynb
    python tools/run_notebooks.py --record-times   # every notebook, times kept for the preface
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import re
import sys
import time

import nbformat
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
TIMES = ROOT / "bigmodel_lib" / "results" / "notebook_times.json"
_CARRIAGE_RETURN = re.compile(r"^.*\r(?=[^\n])", re.MULTILINE)


def collapse_streams(outputs: list) -> list:
    """Merge consecutive stream outputs of the same name and apply carriage returns."""
    merged: list = []
    for out in outputs:
        if (
            out.get("output_type") == "stream"
            and merged
            and merged[-1].get("output_type") == "stream"
            and merged[-1]["name"] == out["name"]
        ):
            merged[-1]["text"] += out["text"]
        else:
            merged.append(out)
    for out in merged:
        if out.get("output_type") == "stream":
            text = out["text"].replace("\r\n", "\n")
            out["text"] = _CARRIAGE_RETURN.sub("", text).replace("\r", "")
    return merged


def run(path: pathlib.Path, timeout: int) -> float:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        record_timing=False,
    )
    client.execute()
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = collapse_streams(cell.outputs)
            cell.metadata.pop("execution", None)
    # Keep the stored kernel generic so Colab and any local kernel accept it.
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata.get("language_info", {}).pop("version", None)
    nbformat.write(nb, path)
    return time.perf_counter() - start


def machine() -> tuple[str, str]:
    """The device kind the notebooks compute on (as ``get_device`` picks it) and the machine, in words."""
    import torch

    from bigmodel_lib import get_device

    kind = get_device().type
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    words = f"{cpu}, {os.cpu_count()} logical cores, torch {torch.__version__}"
    if kind == "cuda":
        words = f"{torch.cuda.get_device_name()}; {words}"
    return kind, words


def record_time(path: pathlib.Path, seconds: float, loadavg: list[float]) -> None:
    """Store one notebook's wall time in ``TIMES`` under the device kind it ran on."""
    kind, words = machine()
    times = json.loads(TIMES.read_text(encoding="utf-8")) if TIMES.exists() else {"notebooks": {}}
    times["notebooks"].setdefault(path.stem, {})[kind] = {
        "wall_s": round(seconds, 1),
        "machine": words,
        "loadavg_at_start": loadavg,
        "date": datetime.date.today().isoformat(),
    }
    times["notebooks"] = dict(sorted(times["notebooks"].items()))
    TIMES.write_text(json.dumps(times, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=pathlib.Path, help="notebooks to run (default: all)")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds allowed per cell")
    parser.add_argument("--record-times", action="store_true",
                        help=f"write each wall time to {TIMES.relative_to(ROOT)} (run with nothing else busy)")
    args = parser.parse_args(argv)
    paths = args.paths or sorted(NOTEBOOKS.glob("*.ipynb"))
    if not paths:
        print(f"no notebooks found in {NOTEBOOKS}", file=sys.stderr)
        return 1
    for path in paths:
        print(f"executing {path} ...", flush=True)
        loadavg = [round(x, 2) for x in os.getloadavg()]
        seconds = run(path.resolve(), args.timeout)
        print(f"  done in {seconds:.1f} s", flush=True)
        if args.record_times:
            record_time(path, seconds, loadavg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
