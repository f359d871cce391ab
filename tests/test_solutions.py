"""Every solution's code runs, so that no solution rots silently (issue 15, item 5).

The code of every ``{solution}`` block of every notebook in notebooks/ (the fenced ``python`` blocks inside
it) is executed here. Each runs in a fresh copy of its notebook's imports (every top-level ``import`` and
``from ... import`` of the notebook's code cells, run once per notebook) and nothing else, so this takes
seconds, not a run of every chapter: a solution that needs something the chapter computed must build it
itself. Gated solutions (``{solution-start}`` ... ``{solution-end}``) are code cells, which nbval runs with
their chapter.

The exercise notebooks (``NN_<chapter>_exercises.ipynb``) are checked further: each answer cell holds its
solution between ``# BEGIN SOLUTION`` and ``# END SOLUTION`` (what the student edition removes), the
solution dropdown shows the same code, that code passes the exercise's checker in strict mode, the stored
check outputs show it passing, and every checker of ``bigmodel_lib.exercises`` has its exercise.
"""

from __future__ import annotations

import ast
import functools
import json
import pathlib
import re

import matplotlib
import pytest
import torch

matplotlib.use("Agg")  # a solution that plots must not open a window
import matplotlib.pyplot as plt  # noqa: E402

from bigmodel_lib.exercises import CHECKERS  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
EXERCISE_NOTEBOOKS = [p for p in NOTEBOOKS if p.stem.endswith("_exercises")]
BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"

_OPENING = re.compile(r"^ {0,3}(?P<fence>`{3,}|:{3,})\{solution\}\s*(?P<label>\S*)\s*$")
_CODE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})\s*(?:\{code(?:-block)?\}\s*)?(?P<lang>python3?|py|ipython3?)\s*$")
_CHECK_CELL = re.compile(r"^(?P<checker>check_\w+)\((?P<fn>\w+)\)$")


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _cells(path: pathlib.Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _closes(line: str, fence: str) -> bool:
    """Whether ``line`` closes a block opened by ``fence`` (the same character, at least as many)."""
    return re.fullmatch(rf" {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*", line) is not None


def solution_blocks(markdown: str) -> list[tuple[str, list[str]]]:
    """``[(label, [code of each fenced python block]), ...]`` for every ``{solution}`` directive, in order."""
    lines, found, i = markdown.splitlines(), [], 0
    while i < len(lines):
        opening = _OPENING.match(lines[i])
        if not opening:
            i += 1
            continue
        end = i + 1
        while end < len(lines) and not _closes(lines[end], opening["fence"]):
            end += 1
        body, codes, j = lines[i + 1 : end], [], 0
        while j < len(body):
            code = _CODE.match(body[j])
            if code:
                k = j + 1
                while k < len(body) and not _closes(body[k], code["fence"]):
                    k += 1
                block = [line for line in body[j + 1 : k] if not re.match(r"^:[\w-]+:", line)]  # directive options
                codes.append("\n".join(block) + "\n")
                j = k
            j += 1
        found.append((opening["label"], codes))
        i = end + 1
    return found


def _solutions(path: pathlib.Path) -> list[tuple[str, list[str]]]:
    return [s for c in _cells(path) if c["cell_type"] == "markdown" for s in solution_blocks(_source(c))]


CASES = [(path, label, index, code) for path in NOTEBOOKS for label, codes in _solutions(path)
         for index, code in enumerate(codes)]
#: Solutions that train several small models (10 to 40 s each on a busy 2-core CPU): they run in every
#: full test run, and ``-m "not slow"`` leaves them out of a quick one.
SLOW = {"ex-cnn-depth", "ex-large-models-depth"}


@functools.cache
def notebook_imports(path: pathlib.Path) -> dict:
    """The namespace a notebook's import statements make (all of them, from every code cell, in order)."""
    statements = []
    for cell in _cells(path):
        if cell["cell_type"] != "code":
            continue
        code = "\n".join(line for line in _source(cell).splitlines() if not line.lstrip().startswith(("%", "!")))
        try:
            tree = ast.parse(code)
        except SyntaxError:
            continue  # a cell that shows code which does not parse, on purpose
        statements += [ast.unparse(node) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
                       and getattr(node, "module", None) != "__future__"]
    namespace: dict = {"__name__": "__solution__"}
    exec(compile("\n".join(statements), f"{path.name}: its imports", "exec"), namespace)
    return namespace


def run_solution(path: pathlib.Path, label: str, code: str) -> dict:
    """Execute one solution's code in a fresh copy of its notebook's imports; return the namespace."""
    namespace = dict(notebook_imports(path))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the solutions' models are tiny: one thread is faster (chapter 1, section 1.8)
    try:
        exec(compile(code, f"{path.name}: solution to {label}", "exec"), namespace)
    except Exception as error:
        pytest.fail(
            f"the solution to {label} (notebooks/{path.name}) raised {type(error).__name__}: {error}. "
            "A solution's code runs with its notebook's imports only: define in the solution's code whatever "
            "else it uses (data, models, helpers), or fix the code.",
            pytrace=True,
        )
    finally:
        torch.set_num_threads(threads)
        plt.close("all")
    return namespace


def test_solutions_are_found():
    """The parser sees the solutions' code: at least one block in each chapter with code solutions."""
    labels = {label for _, label, _, _ in CASES}
    for expected in ("ex-large-models-neuron", "ex-cnn-output-size", "ex-transformer-window",
                     "ex-large-models-code-softmax", "ex-transformer-code-attention"):
        assert expected in labels, f"no code found in the solution to {expected}"


def test_the_parser_on_planted_markdown():
    markdown = "\n".join([
        "````{exercise}", ":label: ex-a", "", "```python", "not_a_solution()", "```", "````", "",
        "````{solution} ex-a", ":class: dropdown", "", "Words.", "", "```python", "x = 1", "```", "",
        "```text", "not code", "```", "", "```py", "y = 2", "```", "````", "",
        "```{solution} ex-b", ":class: dropdown", "", "Only words.", "```", "",
        ":::{solution} ex-c", "```{code-block} python", ":linenos:", "z = 3", "```", ":::",
    ])
    assert solution_blocks(markdown) == [("ex-a", ["x = 1\n", "y = 2\n"]), ("ex-b", []), ("ex-c", ["z = 3\n"])]


@pytest.mark.parametrize(("path", "label", "index", "code"), [
    pytest.param(*case, marks=[pytest.mark.slow] if case[1] in SLOW else [], id=f"{case[0].stem}-{case[1]}-{case[2]}")
    for case in CASES])
def test_solution_code_runs(path, label, index, code):
    run_solution(path, label, code)


def test_a_failing_solution_fails_the_test(tmp_path):
    """A solution that uses the chapter's state without building it must fail, naming the solution."""
    path = tmp_path / "99_demo.ipynb"
    path.write_text(json.dumps({"cells": [{"cell_type": "code", "source": ["import math\n"]}]}), encoding="utf-8")
    assert run_solution(path, "ex-demo", "r = math.sqrt(4)\n")["r"] == 2.0
    with pytest.raises(pytest.fail.Exception, match=r"the solution to ex-demo .* raised NameError: name 'X_train'"):
        run_solution(path, "ex-demo", "X_train.shape\n")


# -- the exercise notebooks -------------------------------------------------------------------------------------


def _exercise_parts(path: pathlib.Path) -> tuple[list[str], list[tuple[str, str]], list[dict]]:
    """(answer cells' sources, (checker, function) of each check cell, the check cells), in order."""
    answers, checks, check_cells = [], [], []
    for cell in _cells(path):
        if cell["cell_type"] != "code":
            continue
        if "answer" in cell["metadata"].get("tags", []):
            answers.append(_source(cell))
        elif match := _CHECK_CELL.match(_source(cell).strip()):
            checks.append((match["checker"], match["fn"]))
            check_cells.append(cell)
    return answers, checks, check_cells


def without_markers(answer: str) -> str:
    return "\n".join(line for line in answer.splitlines() if line.strip() not in (BEGIN, END)) + "\n"


def exercise_notebook_problems(path: pathlib.Path) -> list[str]:
    """What is wrong with an exercise notebook's answers, checks and solutions (an empty list when nothing is)."""
    answers, checks, check_cells = _exercise_parts(path)
    solutions = _solutions(path)
    if not len(answers) == len(checks) == len(solutions) >= 3:
        return [f"{path.name}: expected at least 3 exercises, each with one answer cell (tagged 'answer'), one check "
                f"cell and one solution; found {len(answers)}, {len(checks)} and {len(solutions)}"]
    problems = []
    for answer, (checker, fn), (label, codes), cell in zip(answers, checks, solutions, check_cells):
        lines = [line.strip() for line in answer.splitlines()]
        if not (lines.count(BEGIN) == lines.count(END) == 1 and lines.index(BEGIN) < lines.index(END)):
            problems.append(f"{label}: the answer cell must hold its solution between one '{BEGIN}' and one "
                            f"'{END}' line")
        if codes != [without_markers(answer)]:
            problems.append(f"{label}: the solution's code differs from the answer cell's (markers removed)")
            continue
        namespace = dict(notebook_imports(path))
        try:
            exec(compile(codes[0], f"{path.name}: solution to {label}", "exec"), namespace)
            result = CHECKERS[checker.removeprefix("check_")](namespace[fn])
        except Exception as error:
            problems.append(f"{label}: the solution raised {type(error).__name__}: {error}")
            continue
        if not result.passed:
            problems.append(f"{label}: the solution does not pass {checker}: {result}")
        stored = "".join("".join(o.get("data", {}).get("text/plain", "")) for o in cell["outputs"])
        if "PASSED" not in stored:
            problems.append(f"{label}: the stored check output does not show it passing ({stored!r}): "
                            "re-execute the notebook (tools/run_notebooks.py)")
    return problems


@pytest.mark.parametrize("path", EXERCISE_NOTEBOOKS, ids=lambda p: p.stem)
def test_exercise_notebook_answers_checks_and_solutions_agree(path):
    assert exercise_notebook_problems(path) == []


def _planted(tmp_path: pathlib.Path, old: str, new: str, where: str = "both") -> pathlib.Path:
    """A copy of chapter 3's exercise notebook with ``old`` replaced in its answer cells, solutions or both."""
    source = ROOT / "notebooks" / "03_rnn_exercises.ipynb"
    nb = json.loads(source.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        is_answer = "answer" in cell["metadata"].get("tags", [])
        is_solution = cell["cell_type"] == "markdown" and "{solution}" in _source(cell)
        if (where in ("both", "answer") and is_answer) or (where in ("both", "solution") and is_solution):
            cell["source"] = _source(cell).replace(old, new)
    path = tmp_path / source.name
    path.write_text(json.dumps(nb), encoding="utf-8")
    return path


def test_planted_exercise_notebook_problems_are_found(tmp_path):
    swapped = _planted(tmp_path, "(1 - z) * n + z * h_prev", "z * n + (1 - z) * h_prev")
    (problem,) = exercise_notebook_problems(swapped)
    assert "ex-rnn-code-gru: the solution does not pass check_gru_cell" in problem and "z and 1 - z" in problem
    (problem,) = exercise_notebook_problems(_planted(tmp_path, "return h, c", "return c, h", where="answer"))
    assert problem == "ex-rnn-code-lstm: the solution's code differs from the answer cell's (markers removed)"
    missing_end = exercise_notebook_problems(_planted(tmp_path, "# END SOLUTION", "", where="answer"))
    assert sum("the answer cell must hold its solution between" in p for p in missing_end) == 3, missing_end
    (problem,) = exercise_notebook_problems(_planted(tmp_path, "norm.item()", "norm.itm()"))
    assert problem.startswith("ex-rnn-code-clip: the solution does not pass check_clip_grad_norm")
    assert "raised AttributeError" in problem


def test_every_checker_has_an_exercise():
    used = [checker for path in EXERCISE_NOTEBOOKS for checker, _ in _exercise_parts(path)[1]]
    assert sorted(used) == sorted(f.__name__ for f in CHECKERS.values())
