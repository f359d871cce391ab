"""The repository URL and branch are set once, in _config.yml; everything that
names them (README badges, the notebooks' Colab install line, the packaging
metadata, the publishing workflow) must agree."""

from __future__ import annotations

import json
import pathlib
import re

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
URL = CONFIG["repository"]["url"].rstrip("/")
BRANCH = CONFIG["repository"]["branch"]
OWNER_REPO = URL.removeprefix("https://github.com/")
_GITHUB = re.compile(r"github\.com/([\w.-]+/[\w.-]+?)(?:\.git)?(?=[/@?#)\s\"']|$)")


def test_config_names_a_github_repository_and_branch():
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", URL), URL
    assert BRANCH and BRANCH != "master"


def test_readme_badges_use_the_configured_repository():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    repos = set(_GITHUB.findall(readme)) - {"jupyter-book/jupyter-book", "executablebooks/jupyter-book"}
    assert repos == {OWNER_REPO}, f"README names {repos}, _config.yml says {OWNER_REPO}"
    assert f"colab.research.google.com/github/{OWNER_REPO}/blob/{BRANCH}/" in readme
    assert f"actions/workflows/book.yml/badge.svg?branch={BRANCH}" in readme


def test_notebook_install_lines_use_the_configured_repository():
    expected = f"git+{URL}@{BRANCH}"
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        first = next(c for c in nb["cells"] if c["cell_type"] == "code")
        assert expected in "".join(first["source"]), f"{path.name}: install line should use {expected}"


def test_packaging_and_workflow_use_the_configured_repository():
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert f'Homepage = "{URL}"' in pyproject
    workflow = (ROOT / ".github" / "workflows" / "book.yml").read_text(encoding="utf-8")
    assert f"refs/heads/{BRANCH}" in workflow
