"""The repository URL, branch and release tag are set once, in _config.yml; everything
that names them (README badges, the notebooks' install line, the Colab edition, the
packaging metadata, the publishing workflow) must agree, and `tools/set_repository.py`
must move all of them to another repository and back."""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess
import sys

import pytest
import yaml

import bigmodel_lib

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
URL = CONFIG["repository"]["url"].rstrip("/")
BRANCH = CONFIG["repository"]["branch"]
RELEASE = CONFIG["repository"]["release"]
OWNER_REPO = URL.removeprefix("https://github.com/")
PAGES = "https://{}.github.io/{}/".format(*OWNER_REPO.split("/"))
_GITHUB = re.compile(r"github\.com/([\w.-]+/[\w.-]+?)(?:\.git)?(?=[/@?#)\s\"']|$)")
_COLAB = re.compile(r"https://colab\.research\.google\.com/github/([\w.-]+/[\w.-]+)/blob/([\w.-]+)/([\w./-]+)")


def test_config_names_a_github_repository_branch_and_release():
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", URL), URL
    assert BRANCH and BRANCH != "master"
    version = bigmodel_lib.__version__
    assert RELEASE == f"v{version}", (
        f"_config.yml's release {RELEASE} does not match the library's version {version} "
        f"(bigmodel_lib/_version.py): set both, then run `python tools/set_repository.py --release v{version}`"
    )


def test_readme_badges_use_the_configured_repository():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    repos = set(_GITHUB.findall(readme)) - {"jupyter-book/jupyter-book", "executablebooks/jupyter-book"}
    assert repos == {OWNER_REPO}, f"README names {repos}, _config.yml says {OWNER_REPO}"
    assert f"actions/workflows/book.yml/badge.svg?branch={BRANCH}" in readme
    assert PAGES in readme
    links = _COLAB.findall(readme)
    assert links, "the README has no Open in Colab badge"
    for repo, branch, path in links:  # Colab renders no MyST: badges open the Colab edition
        assert (repo, branch) == (OWNER_REPO, BRANCH) and path.startswith("colab/"), path
        assert (ROOT / path).is_file(), f"README opens {path} in Colab, which does not exist"


def test_notebook_install_lines_pin_the_release():
    expected = f"git+{URL}@{RELEASE}"
    wrong = []
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        first = next(c for c in nb["cells"] if c["cell_type"] == "code")
        if expected not in "".join(first["source"]):
            wrong.append(path.name)
    assert not wrong, f"{wrong}: install line should use {expected}; run `python tools/set_repository.py`"


def test_packaging_and_workflow_use_the_configured_repository():
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert f'Homepage = "{URL}"' in pyproject and f'Documentation = "{PAGES}"' in pyproject
    workflow = (ROOT / ".github" / "workflows" / "book.yml").read_text(encoding="utf-8")
    assert f"refs/heads/{BRANCH}" in workflow


# Everything set_repository.py reads or rewrites.
_COPIED = ["_config.yml", "_toc.yml", "README.md", "pyproject.toml", ".github/workflows/book.yml",
           "bigmodel_lib/_version.py", "notebooks", "book", "colab", "student"]


def _snapshot(root: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "_build" not in p.relative_to(root).parts}  # build outputs are not sources


def _set_repository(root: pathlib.Path, *args: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "tools" / "set_repository.py"), "--root", str(root), *args],
                   check=True, capture_output=True, text=True)


@pytest.mark.slow
def test_set_repository_moves_every_place_to_a_fork_and_back(tmp_path):
    for name in _COPIED:
        source, target = ROOT / name, tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns(".*", "__pycache__"))
        else:
            shutil.copy2(source, target)
    _set_repository(tmp_path)  # the configured values (the notebooks may still name a branch)
    before = _snapshot(tmp_path)
    _set_repository(tmp_path)
    assert _snapshot(tmp_path) == before, "a second run changed files: not idempotent"

    _set_repository(tmp_path, "--url", "https://github.com/someone/course-fork", "--branch", "trunk",
                    "--release", "v9.8.7")
    after = _snapshot(tmp_path)
    old_names = (URL, OWNER_REPO, PAGES.rstrip("/"), f"badge.svg?branch={BRANCH}", f"refs/heads/{BRANCH}")
    for name, data in after.items():
        if name.startswith("book/") or name == "bigmodel_lib/_version.py":
            assert data == before[name], f"{name} should not change"
            continue
        text = data.decode("utf-8")
        left = [old for old in old_names if old in text]
        assert not left, f"{name} still names {left}"
    for notebook in ("notebooks", "colab", "student/notebooks", "student/colab"):
        for path in (tmp_path / notebook).glob("*.ipynb"):
            assert "git+https://github.com/someone/course-fork@v9.8.7" in path.read_text(encoding="utf-8")
    config = yaml.safe_load((tmp_path / "_config.yml").read_text(encoding="utf-8"))["repository"]
    assert config == {"url": "https://github.com/someone/course-fork", "branch": "trunk", "release": "v9.8.7"}
    readme = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert "colab.research.google.com/github/someone/course-fork/blob/trunk/colab/" in readme
    assert "https://someone.github.io/course-fork/" in readme

    _set_repository(tmp_path, "--url", URL, "--branch", BRANCH, "--release", RELEASE)
    assert _snapshot(tmp_path) == before, "moving back did not restore every file byte for byte"


def test_set_repository_edits_only_the_install_line(tmp_path):
    """The notebook JSON keeps its layout: only the one string changes."""
    sys.path.insert(0, str(ROOT / "tools"))
    from set_repository import Repository, rewrite_notebook

    path = sorted((ROOT / "notebooks").glob("*.ipynb"))[0]
    pinned = rewrite_notebook(path.read_text(encoding="utf-8"), Repository(URL, BRANCH, RELEASE), path.name)
    assert rewrite_notebook(pinned, Repository(URL, BRANCH, RELEASE), path.name) == pinned
    moved = rewrite_notebook(pinned, Repository("https://github.com/a/b", BRANCH, "v1.2.3"), path.name)
    changed = [(a, b) for a, b in zip(pinned.splitlines(), moved.splitlines()) if a != b]
    assert len(changed) == 1 and len(pinned.splitlines()) == len(moved.splitlines())
    assert changed[0][1] == changed[0][0].replace(f"git+{URL}@{RELEASE}", "git+https://github.com/a/b@v1.2.3")
    with pytest.raises(ValueError, match="layout"):
        rewrite_notebook(json.dumps(json.loads(pinned), indent=2), Repository(URL, BRANCH, RELEASE), path.name)
