"""The autograder (`make instructor`, `make grade`): otter-grader bundles whose hidden tests are the checkers.

Grades a few submissions of chapter 1's exercise notebook with a freshly written bundle: the reference
solutions get full marks, the untouched student notebook zero, each planted mistake loses exactly its
question's point, and a submission that loops forever is cut off and reported as timed out.

Needs otter-grader (the `instructor` extra), which the ordinary install leaves out: the tests run with
`.venv-instructor` when `make instructor` has created it, or in an interpreter that has otter, and skip
otherwise (as in `make test` on a clean clone).
"""

from __future__ import annotations

import copy
import csv
import importlib.util
import json
import pathlib
import subprocess
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOK = "01_large_models_exercises"
QUESTIONS = ["softmax", "cross_entropy", "adamw_step"]
# (question, the checker module's list of mutants, the mutant planted in the reference solutions)
MISTAKES = [
    ("softmax", "SOFTMAX_MUTANTS", "no max-subtraction"),
    ("cross_entropy", "CROSS_ENTROPY_MUTANTS", "sum instead of mean"),
    ("adamw_step", "ADAMW_MUTANTS", "no bias correction"),
]


def _instructor_python() -> str | None:
    if importlib.util.find_spec("otter") is not None:
        return sys.executable
    candidate = ROOT / ".venv-instructor" / "bin" / "python"
    if candidate.exists() and subprocess.run([str(candidate), "-c", "import otter"],
                                             capture_output=True).returncode == 0:
        return str(candidate)
    return None


PYTHON = _instructor_python()
needs_otter = pytest.mark.skipif(PYTHON is None, reason="otter-grader (the instructor extra) is not installed: "
                                 "run `make instructor` to create .venv-instructor, then these tests run")


def _read(path: pathlib.Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _write(nb: dict, path: pathlib.Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb, indent=1), encoding="utf-8")


def _answer_cell(nb: dict, name: str) -> dict:
    return next(c for c in nb["cells"] if "answer" in c.get("metadata", {}).get("tags", [])
                and f"def {name}(" in "".join(c["source"]))


def with_mistake(nb: dict, question: str, mutants: str, mutant: str) -> dict:
    """The notebook with one answer replaced, after its definition, by one of its checker's mutants."""
    nb = copy.deepcopy(nb)
    cell = _answer_cell(nb, question)
    cell["source"] = "".join(cell["source"]) + (
        f"\n\nfrom bigmodel_lib.exercises.learning import {mutants}\n\n"
        f"{question} = next(m.fn for m in {mutants} if m.name == {mutant!r})\n")
    return nb


def looping(nb: dict, question: str) -> dict:
    """The student notebook with one answer that never returns."""
    nb = copy.deepcopy(nb)
    cell = _answer_cell(nb, question)
    source = "".join(cell["source"])
    assert "raise NotImplementedError" in source
    cell["source"] = source.replace("raise NotImplementedError", "while True:\n        pass  #", 1)
    return nb


def grade(submissions: pathlib.Path, bundles: pathlib.Path, timeout: float, jobs: int = 1) -> dict[str, dict]:
    output = submissions.parent / f"{submissions.name}.csv"
    subprocess.run([PYTHON, str(ROOT / "tools" / "grade.py"), str(submissions), "--output", str(output),
                    "--bundles", str(bundles), "--timeout", str(timeout), "--jobs", str(jobs)],
                   check=True, timeout=20 * timeout)
    with output.open(encoding="utf-8") as handle:
        return {row["submission"]: row for row in csv.DictReader(handle)}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> pathlib.Path:
    folder = tmp_path_factory.mktemp("instructor")
    subprocess.run([PYTHON, str(ROOT / "tools" / "instructor_edition.py"), NOTEBOOK, "--output", str(folder)],
                   check=True, timeout=600)
    return folder


@pytest.mark.slow
@needs_otter
def test_bundle_has_hidden_tests_that_call_the_checkers_strictly(bundles):
    assert json.loads((bundles / NOTEBOOK / "questions.json").read_text()) == {q: 1 for q in QUESTIONS}
    with zipfile.ZipFile(bundles / NOTEBOOK / "autograder.zip") as bundle:
        for question in QUESTIONS:
            test = bundle.read(f"tests/{question}.py").decode()
            assert "hidden=True" in test
            assert f"check_{question}({question}, strict=True)" in test


def test_student_edition_carries_no_otter_code():
    """Learners submit the student edition as it is: no otter import, no grader.check cells."""
    text = (ROOT / "student" / "notebooks" / f"{NOTEBOOK}.ipynb").read_text(encoding="utf-8")
    assert "otter" not in text and "grader." not in text


@pytest.mark.slow
@needs_otter
def test_grades(bundles, tmp_path):
    submissions = tmp_path / "submissions"
    reference = _read(ROOT / "notebooks" / f"{NOTEBOOK}.ipynb")
    _write(reference, submissions / f"reference_{NOTEBOOK}.ipynb")
    _write(_read(ROOT / "student" / "notebooks" / f"{NOTEBOOK}.ipynb"), submissions / f"untouched_{NOTEBOOK}.ipynb")
    for question, mutants, mutant in MISTAKES:  # renamed: graded by the checkers its cells call
        _write(with_mistake(reference, question, mutants, mutant), submissions / f"mistake_{question}.ipynb")
    rows = grade(submissions, bundles, timeout=300, jobs=2)

    assert len(rows) == 2 + len(MISTAKES)
    for row in rows.values():
        assert row["notebook"] == NOTEBOOK and row["status"] == "graded", row
        assert row["possible"] == str(len(QUESTIONS))
    assert [rows[f"reference_{NOTEBOOK}.ipynb"][q] for q in QUESTIONS] == ["1"] * len(QUESTIONS)
    assert rows[f"reference_{NOTEBOOK}.ipynb"]["score"] == str(len(QUESTIONS))
    assert [rows[f"untouched_{NOTEBOOK}.ipynb"][q] for q in QUESTIONS] == ["0"] * len(QUESTIONS)
    assert rows[f"untouched_{NOTEBOOK}.ipynb"]["score"] == "0"
    for question, _, mutant in MISTAKES:
        row = rows[f"mistake_{question}.ipynb"]
        assert {q: row[q] for q in QUESTIONS} == {q: "0" if q == question else "1" for q in QUESTIONS}, mutant
        assert row["score"] == str(len(QUESTIONS) - 1)


@pytest.mark.slow
@needs_otter
def test_a_submission_that_never_ends_is_cut_off(bundles, tmp_path):
    submissions = tmp_path / "looping"
    _write(looping(_read(ROOT / "student" / "notebooks" / f"{NOTEBOOK}.ipynb"), "softmax"),
           submissions / f"{NOTEBOOK}.ipynb")
    row = grade(submissions, bundles, timeout=20)[f"{NOTEBOOK}.ipynb"]
    assert row["status"] == "timed out after 20 s", row
    assert row["score"] == "0" and all(row[q] == "0" for q in QUESTIONS)
    assert float(row["seconds"]) < 40
