"""Execute the course notebooks in place, top to bottom (``make notebooks``).

This is the one way stored outputs are produced, so every notebook in the
repository shows a single clean run: execution counts 1..N, no stale outputs.
Stream outputs are merged and carriage returns collapsed, so a tqdm progress
bar is stored as its final state rather than as hundreds of redraws.

Usage:
    python tools/run_notebooks.py                  # every notebook in notebooks/
    python tools/run_notebooks.py notebooks/02_cnn.ipynb
"""

from __future__ import annotations

import argparse
import pathlib
import re
import sys
import time

import nbformat
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=pathlib.Path, help="notebooks to run (default: all)")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds allowed per cell")
    args = parser.parse_args(argv)
    paths = args.paths or sorted(NOTEBOOKS.glob("*.ipynb"))
    if not paths:
        print(f"no notebooks found in {NOTEBOOKS}", file=sys.stderr)
        return 1
    for path in paths:
        print(f"executing {path} ...", flush=True)
        seconds = run(path.resolve(), args.timeout)
        print(f"  done in {seconds:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
