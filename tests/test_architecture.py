"""Imports point down: every import inside ``bigmodel_lib`` goes to a lower layer of the list
written in the package docstring. Checked on the real package and on planted violations."""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

import bigmodel_lib

PACKAGE = pathlib.Path(bigmodel_lib.__file__).resolve().parent
ROOT_LAYER = "the package root"


def layers_from_docstring(doc: str) -> dict[str, int]:
    """``{module: layer}`` from the numbered list of the docstring (``1. ``a``, ``b``: why``)."""
    layers = {}
    for line in doc.splitlines():
        match = re.match(r"\s*(\d+)\. (.*)", line)
        if not match:
            continue
        number, text = int(match.group(1)), match.group(2)
        names = re.findall(r"``([\w.]+)``", text.split(":")[0])
        if text.startswith(ROOT_LAYER):
            names = ["__init__"]
        for name in names:
            layers[name] = number
    return layers


def module_name(path: pathlib.Path, package_dir: pathlib.Path) -> str:
    parts = list(path.relative_to(package_dir).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts) or "__init__"


def imported_modules(path: pathlib.Path, package: str) -> list[tuple[int, str]]:
    """(line, module) for every import of the package in ``path``, including imports inside functions."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == package:
                found += [(node.lineno, "__init__" if not (path.parent / f"{a.name}.py").exists()
                           and not (path.parent / a.name).is_dir() else a.name) for a in node.names]
            elif node.module.startswith(package + "."):
                found.append((node.lineno, node.module[len(package) + 1:]))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name[len(package) + 1:]) for a in node.names if a.name.startswith(package + ".")]
    return found


def import_violations(package_dir: pathlib.Path, layers: dict[str, int]) -> list[str]:
    package = package_dir.name
    problems = []
    for path in sorted(package_dir.rglob("*.py")):
        importer = module_name(path, package_dir)
        if importer not in layers:
            problems.append(f"{importer}: not in the layer list of the package docstring")
            continue
        for line, target in imported_modules(path, package):
            if target not in layers:
                problems.append(f"{importer}:{line} imports {target}, which is not in the layer list")
            elif layers[target] >= layers[importer]:
                how = "the package root" if target == "__init__" else f"{target} (layer {layers[target]})"
                problems.append(f"{importer}:{line} (layer {layers[importer]}) imports {how}: not a lower layer")
    return problems


def test_every_import_of_the_library_points_down():
    layers = layers_from_docstring(bigmodel_lib.__doc__)
    assert layers["devices"] < layers["metrics"] < layers["models.attention"] < layers["models.transformer"]
    assert layers["training.config"] < layers["training.trainer"] < layers["training"] < layers["__init__"]
    assert import_violations(PACKAGE, layers) == []


def _plant(tmp_path: pathlib.Path, files: dict[str, str]) -> pathlib.Path:
    package = tmp_path / "toy"
    for name, text in files.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    return package


TOY_LAYERS = layers_from_docstring("""
1. ``low``
2. ``middle``, ``other``
3. the package root
""")


@pytest.mark.parametrize(
    "source, message",
    [
        ("from toy.middle import x\n", "low:1 (layer 1) imports middle (layer 2): not a lower layer"),
        ("def f():\n    from toy import y\n", "low:2 (layer 1) imports the package root: not a lower layer"),
        ("import toy.other\n", "low:1 (layer 1) imports other (layer 2): not a lower layer"),
    ],
)
def test_planted_upward_imports_are_found(tmp_path, source, message):
    package = _plant(tmp_path, {"__init__.py": "", "low.py": source, "middle.py": "", "other.py": ""})
    assert import_violations(package, TOY_LAYERS) == [message]


def test_planted_sideways_import_and_unlisted_module_are_found(tmp_path):
    package = _plant(tmp_path, {"__init__.py": "from toy.low import a\n", "low.py": "", "other.py": "",
                                "middle.py": "from toy.other import z\n", "stray.py": ""})
    assert import_violations(package, TOY_LAYERS) == [
        "middle:1 (layer 2) imports other (layer 2): not a lower layer",
        "stray: not in the layer list of the package docstring",
    ]


def test_a_clean_toy_package_passes(tmp_path):
    package = _plant(tmp_path, {"__init__.py": "from toy.middle import b\n", "low.py": "",
                                "middle.py": "from toy.low import a\n", "other.py": "import toy.low\n"})
    assert import_violations(package, TOY_LAYERS) == []
