"""Write the autograder: one otter-grader bundle per exercise notebook (`make instructor`).

For each `notebooks/NN_<chapter>_exercises.ipynb` this writes, under `_build/instructor/<notebook>/`:

- `master.ipynb`: the exercise notebook in otter-grader's master format (raw `# BEGIN QUESTION` ...
  `# END QUESTION` cells around each exercise). Each exercise is one question worth one point, named after
  its checker (`check_softmax` -> question `softmax`), and its one test is hidden and calls that same
  checker with ``strict=True``: a learner whose visible check cell shows green gets the point.
- `autograder.zip`: what `otter assign` makes of it (otter names it with a timestamp; this copy has a
  stable name). `otter assign` also runs the hidden tests against the reference solutions, so a bundle
  is only written when every solution passes.
- `questions.json`: each question's points, in order, for `tools/grade.py`'s CSV columns.

The student edition (`student/`, `tools/student_edition.py`) is unchanged by this: it carries no otter
code, and it is what learners submit. otter's own student notebook (`otter-dist/student/`) is not used.
`tools/grade.py` (`make grade`) grades submissions with these bundles. Needs the `instructor` extra
(otter-grader), which `make instructor` installs into `.venv-instructor`.

Usage:
    python tools/instructor_edition.py            # every exercise notebook
    python tools/instructor_edition.py 01_large_models_exercises
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from set_repository import NOTEBOOKS, ROOT  # noqa: E402

OUTPUT = pathlib.Path("_build") / "instructor"
POINTS = 1  # per exercise
_CHECK_CELL = re.compile(r"^(?P<checker>check_(?P<question>\w+))\((?P<answer>\w+)\)$")
_CONFIG = """\
# ASSIGNMENT CONFIG
init_cell: false
check_all_cell: false
export_cell: false
run_tests: true
tests:
  ok_format: false
"""


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _raw(text: str) -> dict:
    return {"cell_type": "raw", "metadata": {}, "source": text.splitlines(keepends=True)}


def _code(text: str) -> dict:
    return {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
            "source": text.splitlines(keepends=True)}


def _number_new_cells(cells: list[dict]) -> list[dict]:
    """Give the cells this tool made an id (nbformat 4.5 wants one), stable from run to run."""
    return [cell if "id" in cell else {**cell, "id": f"otter-{i}"} for i, cell in enumerate(cells)]


def exercise_notebooks(root: pathlib.Path = ROOT) -> list[pathlib.Path]:
    return sorted((root / NOTEBOOKS).glob("*_exercises.ipynb"))


def questions(nb: dict) -> list[tuple[str, str, str]]:
    """(question, checker, answer function) for each check cell, in order: ('softmax', 'check_softmax', 'softmax')."""
    found = []
    for cell in nb["cells"]:
        match = _CHECK_CELL.match(_source(cell).strip()) if cell["cell_type"] == "code" else None
        if match:
            found.append((match["question"], match["checker"], match["answer"]))
    return found


def hidden_test(checker: str, answer: str) -> str:
    """The otter test cell of one question: the checker in strict mode (raises AssertionError unless it passes)."""
    return (f"# HIDDEN\n"
            f"def test_{answer}({answer}):\n"
            f"    from bigmodel_lib.exercises import {checker}\n"
            f"    {checker}({answer}, strict=True)\n")


def master_notebook(nb: dict) -> dict:
    """The exercise notebook as an otter master notebook (a new object; outputs cleared).

    Each exercise is the cells from its ``{exercise}`` prompt to its answer cell (tagged ``answer``), which
    become one question; its check cell, and everything else, stays outside the questions."""
    checks = {answer: (question, checker) for question, checker, answer in questions(nb)}
    cells = [_raw(_CONFIG)]
    pending: list[dict] = []  # the markdown since the last question: the next exercise's prompt
    for cell in nb["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        if cell["cell_type"] == "code":
            cell = {**cell, "outputs": [], "execution_count": None}
        if cell["cell_type"] == "code" and "answer" in tags:
            defined = re.findall(r"^def (\w+)\(", _source(cell), flags=re.MULTILINE)
            answer = next((name for name in defined if name in checks), None)
            if answer is None:
                raise ValueError(f"an answer cell defines {defined}, none of which a check cell checks")
            question, checker = checks.pop(answer)
            start = next((i for i, c in enumerate(pending) if "{exercise}" in _source(c)), len(pending))
            cells += pending[:start]
            cells.append(_raw(f"# BEGIN QUESTION\nname: {question}\npoints: {POINTS}\n"))
            cells += pending[start:]
            cells += [_raw("# BEGIN SOLUTION"), cell, _raw("# END SOLUTION"),
                      _raw("# BEGIN TESTS"), _code(hidden_test(checker, answer)), _raw("# END TESTS"),
                      _raw("# END QUESTION")]
            pending = []
        elif cell["cell_type"] == "markdown":
            pending.append(cell)
        else:
            cells += pending + [cell]
            pending = []
    if checks:
        raise ValueError(f"check cells without an answer cell: {sorted(checks)}")
    return {**nb, "cells": _number_new_cells(cells + pending)}


def write_bundle(notebook: pathlib.Path, output: pathlib.Path = ROOT / OUTPUT) -> pathlib.Path:
    """Write ``<output>/<notebook>/`` (master, otter's output, questions.json) and return its ``autograder.zip``."""
    target = output / notebook.stem
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    master = target / "master.ipynb"
    nb = master_notebook(json.loads(notebook.read_text(encoding="utf-8")))
    master.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    otter = pathlib.Path(sys.executable).parent / "otter"
    # otter assign executes the master (its reference solutions and hidden tests) in the notebook's folder.
    subprocess.run([str(otter), "assign", "--no-pdfs", master.name, "otter-dist"], cwd=target, check=True)
    made = sorted((target / "otter-dist" / "autograder").glob("*.zip"))
    if len(made) != 1:
        raise RuntimeError(f"otter assign wrote {len(made)} zip files in {target / 'otter-dist' / 'autograder'}")
    bundle = target / "autograder.zip"
    shutil.copy2(made[0], bundle)
    (target / "questions.json").write_text(
        json.dumps({q: POINTS for q, _, _ in questions(json.loads(notebook.read_text(encoding="utf-8")))},
                   indent=1) + "\n", encoding="utf-8")
    return bundle


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="exercise notebooks by name (default: all)")
    parser.add_argument("--root", type=pathlib.Path, default=ROOT, help="checkout to work on (default: this one)")
    parser.add_argument("--output", type=pathlib.Path, default=None,
                        help="where to write the bundles (default: _build/instructor in the checkout)")
    args = parser.parse_args(argv)
    try:
        import otter  # noqa: F401
    except ImportError:
        sys.exit("otter-grader is not installed here: run `make instructor` (it installs .venv-instructor)")
    chosen = exercise_notebooks(args.root)
    if args.notebooks:
        wanted = {pathlib.Path(name).stem for name in args.notebooks}
        chosen = [path for path in chosen if path.stem in wanted]
        if len(chosen) != len(wanted):
            sys.exit(f"no such exercise notebook: {sorted(wanted - {p.stem for p in chosen})}")
    for notebook in chosen:
        start = time.perf_counter()
        bundle = write_bundle(notebook, args.output or args.root / OUTPUT)
        print(f"wrote {bundle} ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
