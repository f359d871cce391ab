"""The Colab path: the notebooks' first cell installs the library, and Colab gets
notebooks it can render.

- The first code cell of a notebook, run in a fresh virtual environment against a
  local clone of the repository (its GitHub URL replaced by `git+file://`), installs
  the release tag set in `_config.yml` and imports that installed copy. Nothing is
  downloaded: the library's dependencies (torch, ...) and the build backend come
  from the environment running the tests, through a `.pth` file.
- The Colab edition (`colab/`, written by `tools/colab_edition.py`) is up to date,
  has no MyST left in its Markdown cells, and keeps every code cell exactly.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
import sysconfig

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import colab_edition  # noqa: E402
from set_repository import read_repository  # noqa: E402

REPO = read_repository(ROOT)
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# Distributions of this checkout that the fresh environment must not see: it installs its own.
_OWN = re.compile(r"^(bigmodel_lib|__editable__)|\.pth$", re.IGNORECASE)


def _first_code_cell(path: pathlib.Path) -> str:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return "".join(next(c for c in cells if c["cell_type"] == "code")["source"])


def _git(*args: str, cwd: pathlib.Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def _fresh_environment(tmp: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """A virtual environment without system site-packages, seeing this environment's
    packages (but not this checkout's library) read-only. Returns (python, site-packages)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp / "venv")], check=True)
    python = tmp / "venv" / "bin" / "python"
    site = pathlib.Path(
        subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                       check=True, capture_output=True, text=True).stdout.strip()
    )
    shared = tmp / "shared-site-packages"  # links to each installed package but ours
    shared.mkdir()
    for entry in pathlib.Path(sysconfig.get_path("purelib")).iterdir():
        if not _OWN.search(entry.name):
            (shared / entry.name).symlink_to(entry)
    (site / "shared.pth").write_text(f"{shared}\n")
    return python, site


def _offline_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV"))}
    # pip reads PIP_NO_BUILD_ISOLATION=0 as --no-build-isolation (the value sets `build_isolation`).
    env.update(PIP_NO_INDEX="1", PIP_NO_BUILD_ISOLATION="0", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def _clone(tmp: pathlib.Path, tag: bool) -> pathlib.Path:
    """A clone of this repository's committed state, with the release tag if `tag`."""
    clone = tmp / "clone"
    _git("clone", "--quiet", str(ROOT), str(clone))
    if tag and REPO.release not in _git("tag", "--list", cwd=clone).split():
        _git("tag", REPO.release, cwd=clone)
    return clone


def _local_cell(clone: pathlib.Path, notebook: pathlib.Path) -> str:
    """The notebook's first code cell with the GitHub URL replaced by the clone's."""
    cell = _first_code_cell(notebook)
    assert cell.count(f"git+{REPO.url}@") == 1, f"{notebook.name}: no install line for {REPO.url}"
    return cell.replace(f"git+{REPO.url}@", f"git+file://{clone}@")


# Appended to the cell: where the library was imported from, and what pip recorded.
_PROBE = """
import importlib.metadata, json
_dist = importlib.metadata.distribution("bigmodel-lib")
print("PROBE", json.dumps([bigmodel_lib.__file__, bigmodel_lib.__version__, _dist.version,
                           json.loads(_dist.read_text("direct_url.json"))]))
"""


@pytest.mark.slow
def test_first_cell_installs_the_release_into_a_fresh_environment(tmp_path):
    python, site = _fresh_environment(tmp_path)
    clone = _clone(tmp_path, tag=True)
    script = tmp_path / "first_cell.py"
    script.write_text(_local_cell(clone, NOTEBOOKS[0]) + _PROBE, encoding="utf-8")
    run = subprocess.run([python, script], cwd=tmp_path, env=_offline_env(), capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert "bigmodel_lib" in run.stdout and "torch" in run.stdout  # the cell's environment report

    probe = next(line for line in run.stdout.splitlines() if line.startswith("PROBE "))
    file, version, dist_version, direct_url = json.loads(probe.removeprefix("PROBE "))
    assert pathlib.Path(file).is_relative_to(site), f"imported from {file}, not the fresh environment"
    committed = re.search(r'__version__ = "(.+)"', _git("show", "HEAD:bigmodel_lib/_version.py", cwd=clone))[1]
    assert version == dist_version == committed
    ref = re.search(rf"git\+{re.escape(REPO.url)}@([^\s\"']+)", _first_code_cell(NOTEBOOKS[0]))[1]
    if ref == REPO.release:  # the tag names the version it installs
        assert version == REPO.release.removeprefix("v")
    assert direct_url["url"] == f"file://{clone}" and direct_url["vcs_info"]["requested_revision"] == ref


@pytest.mark.slow
def test_first_cell_fails_clearly_when_the_release_tag_is_missing(tmp_path):
    """A release that was never tagged must stop the cell, not install something else."""
    python, _ = _fresh_environment(tmp_path)
    clone = _clone(tmp_path, tag=False)
    if REPO.release in _git("tag", "--list", cwd=clone).split():
        pytest.skip(f"{REPO.release} is tagged in this repository")
    cell = re.sub(r"(git\+file://[^@\"']+)@[^\s\"']+", rf"\1@{REPO.release}", _local_cell(clone, NOTEBOOKS[0]))
    script = tmp_path / "first_cell.py"
    script.write_text(cell, encoding="utf-8")
    run = subprocess.run([python, script], cwd=tmp_path, env=_offline_env(), capture_output=True, text=True,
                         timeout=300)
    assert run.returncode != 0
    assert REPO.release in run.stderr and "CalledProcessError" in run.stderr


# -- the Colab edition ----------------------------------------------------------


def _cells(path: pathlib.Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def myst_left(cells: list[dict]) -> list[str]:
    """Every MyST role, directive fence or target left in the Markdown cells."""
    return [found for c in cells if c["cell_type"] == "markdown" for found in colab_edition.myst_left("".join(c["source"]))]


def test_colab_edition_is_up_to_date():
    edition = colab_edition.build_edition(ROOT)
    on_disk = {f"colab/{p.name}" for p in (ROOT / "colab").glob("*.ipynb")}
    assert on_disk == set(edition), "run `make colab`"
    stale = [name for name, text in edition.items() if (ROOT / name).read_text(encoding="utf-8") != text]
    assert not stale, f"the Colab edition is out of date ({stale}): run `make colab`"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_colab_edition_has_plain_markdown_and_the_same_code(notebook):
    copy = _cells(ROOT / "colab" / notebook.name)
    assert not myst_left(copy), f"MyST left in colab/{notebook.name}: {myst_left(copy)[:5]}"
    original = [c for c in _cells(notebook) if c["cell_type"] != "markdown"]
    assert [c for c in copy if c["cell_type"] != "markdown"] == original  # source, outputs, ids, in order
    text = "".join("".join(c["source"]) for c in copy if c["cell_type"] == "markdown")
    solutions = sum("".join(c["source"]).count("{solution}") for c in _cells(notebook) if c["cell_type"] == "markdown")
    assert text.count("<details>") == text.count("</details>") == solutions


def test_myst_check_finds_planted_markup():
    cells = _cells(ROOT / "colab" / NOTEBOOKS[0].name)
    planted = [
        "See {term}`attention`.", "```{note}\nHi\n```", ":::{tip}\nHi\n:::", "(sec-x)=\n# X", "{cite:p}`a`",
    ]
    for text in planted:
        cell = {"cell_type": "markdown", "id": "planted", "metadata": {}, "source": [text]}
        assert myst_left([*cells, cell]), text


def test_conversion_of_each_construct():
    """A page using every construct the tool knows comes out as plain Markdown."""
    book = colab_edition.Book(ROOT)
    key = next(iter(book.bib))
    author, year = book.cite_label(key)
    source = "\n".join([
        "(sec-demo)=",
        "## Demo",
        f"A {{term}}`gates <gate>` and a {{term}}`kernel`, cited {{cite}}`{key}`; `{{term}}` in code stays.",
        "",
        "$$",
        "x = 1",
        "$$ (eq-demo)",
        "",
        "See {eq}`eq-demo` and {doc}`the setup <../book/setup>`.",
        "",
        "````{exercise}",
        ":label: ex-demo",
        "",
        "Compute it.",
        "````",
        "",
        "````{solution} ex-demo",
        ":class: dropdown",
        "",
        "```python",
        "print({'a': 1})",
        "```",
        "````",
        "",
        ":::{warning}",
        "Careful.",
        ":::",
        "",
        "```{figure} ../book/images/jupyterlab_myst_exercises.png",
        ":alt: Exercises",
        "",
        "The caption.",
        "```",
    ])
    page = colab_edition.Page(book, "notebooks/" + NOTEBOOKS[0].stem, source)
    page.exercise_numbers, book.exercises["ex-demo"] = [7], 7
    out = page.convert(source)
    cell = {"cell_type": "markdown", "source": [out]}
    assert not myst_left([cell]), out
    assert "A gates and a kernel" in out and f"[{author}, {year}]" in out and "`{term}` in code" in out
    assert r"\tag{1}" in out and "See (1) and [the setup](" in out and "book/setup.html)" in out
    assert "**Exercise 7**\n\nCompute it." in out
    assert "<details>\n<summary>Solution to Exercise 7</summary>\n\n```python\nprint({'a': 1})\n```\n\n</details>" in out
    assert "> **Warning**\n>\n> Careful." in out
    assert "![Exercises](https://raw.githubusercontent.com/" in out and "*The caption.*" in out
    assert page.cited == [key]
    with pytest.raises(ValueError, match="glue"):
        page.convert("{glue}`x`")
