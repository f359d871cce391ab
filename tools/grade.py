"""Grade submitted exercise notebooks with the autograder bundles, without Docker (`make grade SUBMISSIONS=dir`).

Every `*.ipynb` under the submissions folder is graded by otter-grader (`otter.api.grade_submission`, which
executes the notebook in a local Jupyter kernel, then runs the hidden tests of `tools/instructor_edition.py`'s
bundle: each exercise's checker in strict mode). Each submission runs in its own process group with a time
limit (otter has none): one that runs past it is killed and reported as timed out, with zero points.

Which exercise notebook a submission answers is read from its file name when it contains one
(`alice_02_cnn_exercises.ipynb`), otherwise from the checkers its cells call (a renamed copy still grades).

The result is one CSV (default `_build/instructor/grades.csv`), one row per submission: its path, the
exercise notebook, a status (`graded`, `timed out after N s`, `error: ...`), the total, the points possible,
and one column per question (the checker's name without `check_`; empty for another notebook's questions).

Submitted code runs unsandboxed, with your user's rights: grade untrusted work on a throwaway machine.

Usage:
    python tools/grade.py SUBMISSIONS [--output grades.csv] [--timeout 120] [--jobs 1]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from instructor_edition import OUTPUT  # noqa: E402
from set_repository import ROOT  # noqa: E402

FIXED_COLUMNS = ["submission", "notebook", "status", "score", "possible", "seconds"]


def bundles(folder: pathlib.Path) -> dict[str, tuple[pathlib.Path, dict[str, float]]]:
    """{exercise notebook: (autograder.zip, {question: points})} for every bundle `make instructor` wrote."""
    found = {}
    for zip_path in sorted(folder.glob("*/autograder.zip")):
        questions = json.loads((zip_path.parent / "questions.json").read_text(encoding="utf-8"))
        found[zip_path.parent.name] = (zip_path, questions)
    return found


def assignment_of(submission: pathlib.Path, known: dict[str, tuple[pathlib.Path, dict[str, float]]]) -> str | None:
    """The exercise notebook a submission answers: by file name, else by the checkers its code cells call."""
    for name in sorted(known, key=len, reverse=True):
        if name in submission.stem:
            return name
    try:
        cells = json.loads(submission.read_text(encoding="utf-8"))["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c.get("cell_type") == "code")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    called = set(re.findall(r"\bcheck_(\w+)\(", code))
    overlap = {name: len(called & set(questions)) for name, (_, questions) in known.items()}
    best = max(overlap, key=overlap.get, default=None)
    return best if best is not None and overlap[best] > 0 else None


def grade_one(submission: pathlib.Path, bundle: pathlib.Path, timeout: float) -> tuple[str, dict[str, float], float]:
    """(status, {question: score}, seconds) for one submission, graded in a child process killed after ``timeout``."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="grade-") as work:
        result = pathlib.Path(work) / "result.json"
        command = [sys.executable, str(pathlib.Path(__file__).resolve()), "--worker", str(submission.resolve()),
                   str(bundle.resolve()), str(result)]
        # A new session: on timeout the whole group (the worker and the kernel it started) is killed.
        process = subprocess.Popen(command, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True, text=True)
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            return f"timed out after {timeout:g} s", {}, time.perf_counter() - start
        finally:
            try:
                os.killpg(process.pid, signal.SIGKILL)  # a kernel left behind by a finished worker
            except ProcessLookupError:
                pass
        if process.returncode != 0 or not result.exists():
            lines = [line for line in output.strip().splitlines() if line.strip()]
            return f"error: {lines[-1] if lines else f'exit status {process.returncode}'}", {}, \
                time.perf_counter() - start
        scores = json.loads(result.read_text(encoding="utf-8"))
    return "graded", scores, time.perf_counter() - start


def worker(submission: str, bundle: str, result: str) -> None:
    """In the child process: grade one notebook with otter and write {question: score} to ``result``."""
    from otter.api import grade_submission

    graded = grade_submission(submission, bundle, quiet=True)
    scores = {name: float(test.score) for name, test in graded.results.items()}
    pathlib.Path(result).write_text(json.dumps(scores), encoding="utf-8")


def grade(submissions: pathlib.Path, output: pathlib.Path, timeout: float = 120, jobs: int = 1,
          folder: pathlib.Path | None = None) -> list[dict[str, str]]:
    """Grade every notebook under ``submissions`` into the CSV ``output``; return its rows."""
    known = bundles(folder or ROOT / OUTPUT)
    if not known:
        sys.exit(f"no autograder bundles in {folder or ROOT / OUTPUT}: run `make instructor` first")
    notebooks = sorted(p for p in submissions.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    if not notebooks:
        sys.exit(f"no notebooks (*.ipynb) under {submissions}")
    columns = FIXED_COLUMNS + [q for _, questions in known.values() for q in questions]

    def one(path: pathlib.Path) -> dict[str, str]:
        row = {"submission": str(path.relative_to(submissions))}
        name = assignment_of(path, known)
        if name is None:
            return {**row, "notebook": "", "status": "error: not an exercise notebook this course grades"}
        bundle, questions = known[name]
        status, scores, seconds = grade_one(path, bundle, timeout)
        row.update(notebook=name, status=status, seconds=f"{seconds:.1f}",
                   possible=f"{sum(questions.values()):g}")
        if status == "graded" or not scores:
            row.update({q: f"{scores.get(q, 0.0):g}" for q in questions})
            row["score"] = f"{sum(scores.get(q, 0.0) for q in questions):g}"
        return row

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        rows = []
        for row in pool.map(one, notebooks):
            print(f"{row['submission']}: {row['status']}"
                  + (f", {row['score']}/{row['possible']}" if "score" in row else ""), flush=True)
            rows.append(row)
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return rows


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        worker(*argv[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("submissions", type=pathlib.Path, help="folder of submitted notebooks (searched recursively)")
    parser.add_argument("--output", type=pathlib.Path, default=ROOT / OUTPUT / "grades.csv", help="the CSV to write")
    parser.add_argument("--timeout", type=float, default=120, help="seconds per submission (default 120)")
    parser.add_argument("--jobs", type=int, default=1, help="submissions graded at once (default 1)")
    parser.add_argument("--bundles", type=pathlib.Path, default=ROOT / OUTPUT,
                        help="where `make instructor` wrote the bundles (default _build/instructor)")
    args = parser.parse_args(argv)
    try:
        import otter  # noqa: F401
    except ImportError:
        sys.exit("otter-grader is not installed here: run `make instructor` (it installs .venv-instructor)")
    if not args.submissions.is_dir():
        sys.exit(f"{args.submissions} is not a folder")
    start = time.perf_counter()
    rows = grade(args.submissions, args.output, args.timeout, args.jobs, args.bundles)
    print(f"graded {len(rows)} submissions in {time.perf_counter() - start:.0f} s: {args.output}")
    print("Submitted code ran unsandboxed, with your rights: grade untrusted work on a throwaway machine.")


if __name__ == "__main__":
    main()
