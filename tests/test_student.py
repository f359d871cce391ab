"""The student edition (`make student`, tools/student_edition.py) carries no solution, anywhere.

- `student/` (the student notebooks and their Colab edition) is what the tool writes now, and writing it
  twice gives identical files.
- Sentinel phrases, one per solution (a line of it found nowhere else in its notebook), taken with this
  test's own reading of the notebooks (every `{solution}` block, every gated solution with its code cells,
  and the solution lines of every answer cell), occur in the original notebooks and in none of the student
  notebooks, their Colab edition, or, when it is built (`make student`), the student site: its pages, its
  `_sources` and its downloads.
- The answer cells of the student edition are stubs that each checker reports as "not finished yet", and the
  student site's launch buttons open the student notebooks.
"""

from __future__ import annotations

import functools
import html
import json
import os
import pathlib
import re
import sys

import pytest
from test_solutions import notebook_imports

from bigmodel_lib.exercises import CHECKERS

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import student_edition  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SITE = ROOT / "_build" / "student" / "html"
_BLOCK = re.compile(r"(?ms)^(?P<fence>`{3,}|:{3,})\{solution\}[^\n]*\n(?P<body>.*?)^(?P=fence)[ \t]*$")
_GATED_START = re.compile(r"(?ms)^(?P<fence>`{3,}|:{3,})\{solution-start\}.*?^(?P=fence)[ \t]*$")
_GATED_END = re.compile(r"(?m)^(`{3,}|:{3,})\{solution-end\}")


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _outputs(cell: dict) -> str:
    texts = []
    for out in cell.get("outputs", []):
        texts.append("".join(out.get("text", "")))
        for value in out.get("data", {}).values():
            texts.append("".join(value) if isinstance(value, list) else str(value))
    return "\n".join(texts)


def notebook_text(nb: dict) -> str:
    """Everything a reader of a notebook sees: every cell's source and every output's text."""
    return "\n".join(_source(c) + "\n" + _outputs(c) for c in nb["cells"])


def solutions(nb: dict) -> list[tuple[str, list[str]]]:
    """``[(where, [its text, per cell]), ...]``: every solution of a notebook, read independently of the tool."""
    found, gated = [], None
    for index, cell in enumerate(nb["cells"]):
        text = _source(cell)
        if gated is not None:
            end = _GATED_END.search(text) if cell["cell_type"] == "markdown" else None
            gated.append(text[: end.start()] if end else text)
            if end:
                found.append((f"gated solution ending in cell {index}", gated))
                gated = None
            continue
        if cell["cell_type"] == "markdown":
            found += [(f"cell {index}: {m['body'].splitlines()[0] if m['body'] else ''}", [m["body"]])
                      for m in _BLOCK.finditer(text)]
            start = _GATED_START.search(text)
            if start:
                gated = [text[start.end():]]
        elif "answer" in cell["metadata"].get("tags", []):
            body = text.split(student_edition.BEGIN, 1)[1].split(student_edition.END, 1)[0]
            found.append((f"answer cell {index}", [body]))
    assert gated is None, "a gated solution is never closed"
    return found


def _plain(text: str) -> str:
    return re.sub(r"[`*]", "", text)


@functools.cache
def outside_solutions() -> str:
    """The text of every notebook with every solution cut out: what the student edition may show."""
    texts = []
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text(encoding="utf-8"))
        text = _plain(notebook_text(nb))
        for _, parts in solutions(nb):
            for part in parts:
                text = text.replace(_plain(part), "")
        texts.append(text)
    return "\n".join(texts)


def sentinels(nb: dict) -> list[tuple[str, str]]:
    """One phrase per solution: its longest line that appears nowhere outside the book's solutions.

    Lines with math or roles are avoided where possible, so that the phrase reads the same on a web page."""
    found, outside = solutions(nb), outside_solutions()
    chosen = []
    for where, parts in found:
        lines = sorted({line.strip() for part in parts for line in part.splitlines() if len(line.strip()) >= 20},
                       key=len, reverse=True)
        unique = [line for line in lines if _plain(line) not in outside]
        plain = [line for line in unique if not re.search(r"[$\\{}\[\]<>&]", line)]
        assert unique, f"{where}: no line of this solution is unique to it, so no sentinel can find it"
        chosen.append((where, _plain((plain or unique)[0])))
    return chosen


@pytest.fixture(scope="module")
def edition(tmp_path_factory) -> dict[str, str]:
    return student_edition.build_edition(ROOT, source=tmp_path_factory.mktemp("student") / "source")


def test_student_edition_is_up_to_date_and_reproducible(edition, tmp_path):
    on_disk = {str(p.relative_to(ROOT)) for p in (ROOT / "student").glob("*/*.ipynb")}
    assert on_disk == set(edition), "run `make student`"
    stale = [name for name, text in edition.items() if (ROOT / name).read_text(encoding="utf-8") != text]
    assert not stale, f"the student edition is out of date ({stale}): run `make student`"
    assert student_edition.build_edition(ROOT, source=tmp_path / "again") == edition, "not reproducible"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_student_notebooks_carry_no_solution(notebook, edition):
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    original = _plain(notebook_text(nb))
    student = _plain(notebook_text(json.loads(edition[f"student/notebooks/{notebook.name}"])))
    colab = _plain(notebook_text(json.loads(edition[f"student/colab/{notebook.name}"])))
    for where, phrase in sentinels(nb):
        assert phrase in original  # so an edition that left this solution in would fail below
        assert phrase not in student, f"{notebook.name}, {where}: {phrase!r} is in the student notebook"
        assert phrase not in colab, f"{notebook.name}, {where}: {phrase!r} is in its Colab edition"


def test_stripping_on_planted_markdown():
    text = "\n".join(["Before.", "", "````{solution} ex-a", ":class: dropdown", "", "Secret.", "```python",
                      "x = 1", "```", "````", "", "Between.", "```{solution-start} ex-b", ":class: dropdown",
                      "```", "", "Gated secret."])
    kept, open_after = student_edition.strip_markdown(text, in_gated=False)
    assert kept == "Before.\n\nBetween." and open_after
    kept, open_after = student_edition.strip_markdown("More secret.\n\n```{solution-end}\n```\n\nAfter.", True)
    assert kept == "After." and not open_after
    stub = student_edition.strip_answer("def f(x):\n    # BEGIN SOLUTION\n    return x\n    # END SOLUTION")
    assert stub == "def f(x):\n    raise NotImplementedError  # your code here"
    with pytest.raises(ValueError, match="without"):
        student_edition.strip_answer("def f(x):\n    # BEGIN SOLUTION\n    return x")


@pytest.mark.parametrize("notebook", [p for p in NOTEBOOKS if p.stem.endswith("_exercises")], ids=lambda p: p.stem)
def test_student_answer_cells_are_unfinished_stubs(notebook, edition, tmp_path):
    path = tmp_path / notebook.name
    path.write_text(edition[f"student/notebooks/{notebook.name}"], encoding="utf-8")
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    answers = [c for c in cells if "answer" in c["metadata"].get("tags", [])]
    assert answers and all(not c["outputs"] and "hide-input" not in c["metadata"]["tags"] for c in answers)
    checks = [re.fullmatch(r"check_(\w+)\((\w+)\)", _source(c).strip()) for c in cells if c["cell_type"] == "code"]
    checks = [m for m in checks if m]
    assert len(checks) == len(answers)
    for answer, check in zip(answers, checks):
        namespace = dict(notebook_imports(path))
        exec(_source(answer), namespace)
        result = CHECKERS[check[1]](namespace[check[2]])
        assert result.unfinished and "not finished yet" in result.message, result


def _site():
    if not (SITE / "index.html").is_file():
        message = "no student site in _build/student/html: run `make student` first"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return SITE


def test_student_site_carries_no_solution():
    site = _site()
    texts = {}
    for path in site.rglob("*"):
        if path.suffix == ".html":
            texts[path] = html.unescape(re.sub(r"<[^>]+>", "", path.read_text(encoding="utf-8")))
        elif path.suffix == ".ipynb":
            texts[path] = notebook_text(json.loads(path.read_text(encoding="utf-8")))
        elif path.suffix in (".md", ".txt", ".js") and "_static" not in path.parts:
            texts[path] = path.read_text(encoding="utf-8")
    texts = {path: _plain(text) for path, text in texts.items()}
    assert any(p.name == "01_large_models_exercises.ipynb" for p in texts), "the site has no downloadable notebooks"
    for notebook in NOTEBOOKS:
        for where, phrase in sentinels(json.loads(notebook.read_text(encoding="utf-8"))):
            leaks = [str(p.relative_to(site)) for p, text in texts.items() if phrase in text]
            assert not leaks, f"{notebook.name}, {where}: {phrase!r} is in {leaks}"


def test_student_site_launches_and_downloads_student_notebooks():
    page = (_site() / "notebooks" / "03_rnn_exercises.html").read_text(encoding="utf-8")
    links = set(re.findall(r'href="([^"]*(?:colab\.research|mybinder|\.ipynb)[^"]*)"', page))
    assert any("colab.research.google.com" in link and link.endswith("/student/colab/03_rnn_exercises.ipynb")
               for link in links), links
    assert any("mybinder.org" in link and link.endswith("student/notebooks/03_rnn_exercises.ipynb") for link in links)
    assert "../_sources/notebooks/03_rnn_exercises.ipynb" in links
    assert all("/student/" in link or link.startswith("../_sources/") for link in links), links
