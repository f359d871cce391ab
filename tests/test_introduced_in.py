"""Every public name says where the book introduces it, and that is true.

A public name is one in a module's ``__all__``. Its docstring's last line is
``Introduced in §N.M.`` (or ``Introduced in the preface.``); the test checks that
notebook ``0N`` has a section headed ``## N.M`` and that the notebook's code uses
the name, imported from the library or read as an attribute of a library
module. Checked on the real package and on planted violations. Also: a name the
package root exports is imported from the root everywhere (notebooks, tests,
benchmarks, tools), and any other name from its own module, never the root.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import json
import pathlib
import pkgutil
import re

import pytest

import bigmodel_lib

REPO = pathlib.Path(__file__).resolve().parent.parent
FOOTER = re.compile(r"Introduced in (?:the preface|§(\d+)\.(\d+))\.")
HEADING = re.compile(r"^#{2,3} (\d+\.\d+) ", re.MULTILINE)


def _modules() -> list[str]:
    return ["bigmodel_lib"] + [m.name for m in pkgutil.walk_packages(bigmodel_lib.__path__, "bigmodel_lib.")]


def constant_docstring(module, name: str) -> str | None:
    """The string literal right after ``name = ...`` at the top level of ``module``, if any."""
    body = ast.parse(inspect.getsource(module)).body
    for node, following in zip(body, body[1:]):
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            if isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant):
                return inspect.cleandoc(str(following.value.value))
    return None


def public_names() -> dict[str, str | None]:
    """``{"module.name": docstring}`` for every public name, once, under the module that defines it."""
    found = {}
    for module_name in _modules():
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", []):
            if name.startswith("__"):
                continue  # __version__
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                home, doc = obj.__module__, inspect.getdoc(obj)
            else:
                home, doc = module_name, constant_docstring(module, name)
            found.setdefault(f"{home}.{name}", doc)
    return found


def notebook_index(notebook: dict) -> tuple[set[str], set[str]]:
    """(section numbers headed ``## N.M`` in markdown, names the code takes from the library)."""
    sections, imported, aliases, trees = set(), set(), set(), []
    for cell in notebook["cells"]:
        text = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            sections.update(HEADING.findall(text))
        elif cell["cell_type"] == "code":
            code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith(("%", "!")))
            try:
                trees.append(ast.parse(code))
            except SyntaxError:
                continue  # a cell that shows code that does not parse, on purpose
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "bigmodel_lib":
                for alias in node.names:
                    is_module = _is_submodule(node.module, alias.name)
                    (aliases if is_module else imported).add(alias.asname or alias.name)
            elif isinstance(node, ast.Import):
                aliases.update(a.asname or a.name.split(".")[0] for a in node.names if a.name.startswith("bigmodel_lib"))
    used = set(imported)
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
                used.add(node.attr)
    return sections, used


def _is_submodule(parent: str, name: str) -> bool:
    """Whether ``from parent import name`` imports a module (``parent`` must be a package to have one)."""
    spec = importlib.util.find_spec(parent)
    if spec is None or spec.submodule_search_locations is None:
        return False
    return importlib.util.find_spec(f"{parent}.{name}") is not None


def footer_problem(qualified: str, doc: str | None, notebooks: dict[str, dict]) -> str | None:
    """What is wrong with a public name's footer, or None. ``notebooks``: ``{"00": notebook JSON, "01": ...}``."""
    name = qualified.rsplit(".", 1)[1]
    lines = [line.strip() for line in (doc or "").splitlines() if line.strip()]
    match = FOOTER.fullmatch(lines[-1]) if lines else None
    if match is None:
        return f"{qualified}: the docstring's last line is not 'Introduced in §N.M.' or 'Introduced in the preface.'"
    chapter = f"{int(match.group(1)):02d}" if match.group(1) else "00"
    if chapter not in notebooks:
        return f"{qualified}: {lines[-1]} names chapter {int(chapter)}, which has no notebook"
    sections, used = notebook_index(notebooks[chapter])
    if match.group(1) and f"{match.group(1)}.{match.group(2)}" not in sections:
        return f"{qualified}: {lines[-1]} names a section that notebook {chapter} does not have"
    if name not in used:
        return f"{qualified}: {lines[-1]} but notebook {chapter}'s code never uses {name}"
    return None


def _notebooks(folder: pathlib.Path = REPO / "notebooks") -> dict[str, dict]:
    """``{"00": notebook, "01": ...}``: every notebook of a chapter, merged (the chapter's and its exercise
    notebook ``NN_<chapter>_exercises.ipynb``), so a name used only by the exercises is the chapter's code too."""
    merged: dict[str, dict] = {}
    for path in sorted(folder.glob("[0-9][0-9]_*.ipynb")):
        merged.setdefault(path.name[:2], {"cells": []})["cells"].extend(json.loads(path.read_text())["cells"])
    return merged


def test_every_public_name_ends_with_the_section_that_introduces_it():
    names = public_names()
    assert len(names) > 60 and "bigmodel_lib.models.attention.MultiHeadAttention" in names
    notebooks = _notebooks()
    problems = [p for q, doc in names.items() if (p := footer_problem(q, doc, notebooks))]
    assert problems == []


# ---------------------------------------------------------------------------
# Planted violations

def _notebook(*cells: tuple[str, str]) -> dict:
    return {"cells": [{"cell_type": kind, "source": text.splitlines(keepends=True)} for kind, text in cells]}


TOY = {
    "00": _notebook(("markdown", "# Preface"), ("code", "import bigmodel_lib\nbigmodel_lib.get_device()")),
    "02": _notebook(
        ("markdown", "## 2.1 The convolution layer"),
        ("code", "from bigmodel_lib.models.cnn import conv2d\nconv2d(x, w)"),
        ("markdown", "## 2.4 The source articles' networks"),
        ("code", "from bigmodel_lib import articles\nprint(articles.source('000', 'cnn'))"),
        ("code", "import torchimport torch.nn  # the published one-liner, which does not parse"),
    ),
}


@pytest.mark.parametrize(
    ("qualified", "doc", "problem"),
    [
        ("m.conv2d", "A convolution.\n\nIntroduced in §2.1.", None),
        ("m.source", "The listing.\n\nIntroduced in §2.4.", None),
        ("m.get_device", "Where to compute.\n\nIntroduced in the preface.", None),
        ("m.conv2d", "A convolution. Chapter 2, section 2.1.", "last line is not"),
        ("m.conv2d", None, "last line is not"),
        ("m.conv2d", "A convolution.\n\nIntroduced in §2.1.\n\nMore text after it.", "last line is not"),
        ("m.conv2d", "A convolution.\n\nIntroduced in §2.3.", "names a section that notebook 02 does not have"),
        ("m.conv2d", "A convolution.\n\nIntroduced in §5.1.", "names chapter 5, which has no notebook"),
        ("m.max_pool2d", "Pooling.\n\nIntroduced in §2.1.", "notebook 02's code never uses max_pool2d"),
        ("m.environment_report", "A report.\n\nIntroduced in the preface.", "notebook 00's code never uses"),
    ],
)
def test_planted_footer_problems_are_found(qualified, doc, problem):
    found = footer_problem(qualified, doc, TOY)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found, found


def test_an_exercise_notebook_counts_as_its_chapters_code(tmp_path):
    """The exercise notebook adds to its chapter's notebook; it does not replace it (both start with '02')."""
    for name, cells in {
        "02_cnn.ipynb": _notebook(("markdown", "## 2.1 The convolution layer"),
                                  ("code", "from bigmodel_lib.models.cnn import conv2d\nconv2d(x, w)")),
        "02_cnn_exercises.ipynb": _notebook(("markdown", "# Chapter 2 exercises"),
                                            ("code", "from bigmodel_lib.exercises import check_conv2d")),
    }.items():
        (tmp_path / name).write_text(json.dumps(cells))
    notebooks = _notebooks(tmp_path)
    assert list(notebooks) == ["02"]
    assert footer_problem("m.conv2d", "A convolution.\n\nIntroduced in §2.1.", notebooks) is None
    assert footer_problem("m.check_conv2d", "A check.\n\nIntroduced in §2.1.", notebooks) is None
    assert "never uses check_max_pool2d" in footer_problem("m.check_max_pool2d", "A check.\n\nIntroduced in §2.1.",
                                                            notebooks)


def test_a_constant_docstring_is_read_from_the_line_after_it():
    from bigmodel_lib import metrics

    assert constant_docstring(metrics, "IGNORE_INDEX").splitlines()[-1].startswith("Introduced in §")
    assert constant_docstring(metrics, "no_such_name") is None


# ---------------------------------------------------------------------------
# One way to import each name


def import_problems(source: str, where: str) -> list[str]:
    """``from bigmodel_lib.x import name`` for a root name, or ``from bigmodel_lib import name`` for another."""
    problems = []
    root = set(bigmodel_lib.__all__)
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "bigmodel_lib"):
            continue
        for alias in node.names:
            if node.module != "bigmodel_lib" and alias.name in root:
                problems.append(f"{where}: {alias.name} is exported by the root: import it from bigmodel_lib")
            elif node.module == "bigmodel_lib" and alias.name not in root and not _is_submodule("bigmodel_lib", alias.name):
                problems.append(f"{where}: {alias.name} is not exported by the root: import it from its module")
    return problems


def _sources():
    for folder in ("tests", "benchmarks", "tools"):
        for path in sorted((REPO / folder).glob("*.py")):
            yield str(path.relative_to(REPO)), path.read_text()
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        for number, cell in enumerate(json.loads(path.read_text())["cells"]):
            if cell["cell_type"] == "code":
                text = "".join(cell["source"])
                try:
                    ast.parse(text)
                except SyntaxError:
                    continue
                yield f"{path.relative_to(REPO)} cell {number}", text


def test_each_name_is_imported_the_same_way_everywhere():
    problems = [p for where, text in _sources() for p in import_problems(text, where)]
    assert problems == []


def test_planted_import_problems_are_found():
    assert import_problems("from bigmodel_lib.devices import get_device\n", "x") == [
        "x: get_device is exported by the root: import it from bigmodel_lib"]
    assert import_problems("from bigmodel_lib import IGNORE_INDEX, articles, get_device\n", "y") == [
        "y: IGNORE_INDEX is not exported by the root: import it from its module"]
    assert import_problems("from bigmodel_lib.metrics import IGNORE_INDEX\nimport bigmodel_lib\n", "z") == []
