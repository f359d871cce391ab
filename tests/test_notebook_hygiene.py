"""Notebook hygiene: the real notebooks pass every check, and each fixture
notebook under tests/fixtures/hygiene/ proves its check catches the fault."""

from __future__ import annotations

import json
import pathlib

import pytest
from notebook_hygiene import MAX_NOTEBOOK_BYTES, ROOT, check_notebook, check_toc

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "hygiene"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no chapter notebooks"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_real_notebook_is_clean(path):
    problems = check_notebook(path)
    assert not problems, "\n".join(problems)


def test_real_toc_matches_notebooks():
    problems = check_toc(ROOT)
    assert not problems, "\n".join(problems)


def test_clean_fixture_passes():
    assert check_notebook(FIXTURES / "clean.ipynb") == []


def test_an_error_in_a_cell_tagged_raises_exception_is_allowed():
    # Running a seed's broken code as published is a lesson, not a fault.
    assert check_notebook(FIXTURES / "ok_tagged_error.ipynb") == []


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("fault_out_of_order.ipynb", "execution counts are [2, 1], expected [1, 2]"),
        ("fault_unexecuted_cell.ipynb", "execution counts are [1, None], expected [1, 2]"),
        ("fault_error_output.ipynb", "stores an error output (ZeroDivisionError)"),
        ("fault_no_colab_install.ipynb", "must install bigmodel_lib when it is missing"),
        ("fault_no_version_report.ipynb", "must print bigmodel_lib.environment_report()"),
        ("fault_absolute_path.ipynb", "contains an absolute path"),
    ],
)
def test_each_fault_is_caught(fixture, expected):
    problems = check_notebook(FIXTURES / fixture)
    assert len(problems) == 1, problems
    assert expected in problems[0]


def test_oversized_notebook_is_caught(tmp_path):
    nb = json.loads((FIXTURES / "clean.ipynb").read_text(encoding="utf-8"))
    big = "x" * 80 + "\n"
    nb["cells"][3]["outputs"][0]["text"] = big * (MAX_NOTEBOOK_BYTES // len(big) + 1)
    path = tmp_path / "oversized.ipynb"
    path.write_text(json.dumps(nb), encoding="utf-8")
    problems = check_notebook(path)
    assert len(problems) == 1 and "over the 2.00 MiB cap" in problems[0], problems


def test_toc_faults_are_caught():
    problems = check_toc(FIXTURES / "toc_project")
    assert problems == [
        "_toc.yml lists 'book/missing_page', but neither book/missing_page.ipynb nor book/missing_page.md exists",
        "notebooks/01_orphan.ipynb is not listed in _toc.yml: add '- file: notebooks/01_orphan'",
    ]


def test_recorded_run_times_are_for_existing_notebooks_and_complete():
    """The preface's table of run times (bigmodel_lib/results/notebook_times.json): every entry names a
    notebook that exists and has a CPU time with its machine; the preface itself is always recorded.
    A chapter without an entry shows as not recorded yet: record it with
    python tools/run_notebooks.py --record-times <notebook>, with nothing else running."""
    times = json.loads((ROOT / "bigmodel_lib" / "results" / "notebook_times.json").read_text(encoding="utf-8"))
    names = {path.stem for path in (ROOT / "notebooks").glob("*.ipynb")}
    assert set(times["notebooks"]) <= names, f"times for notebooks that do not exist: {set(times['notebooks']) - names}"
    assert "00_preface" in times["notebooks"]
    for name, entry in times["notebooks"].items():
        assert entry["cpu"]["wall_s"] > 0 and entry["cpu"]["machine"] and len(entry["cpu"]["loadavg_at_start"]) == 3, name
