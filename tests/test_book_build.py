"""The strict book build passes with tool caches and other hidden folders present.

`make test` leaves `.pytest_cache/README.md` behind; a second `make book` used
to read it and fail ("document isn't included in any toctree"). The build here
runs on a copy of the book's sources with such folders planted, so it checks
the exclusion patterns of `_config.yml` and never touches the real `_build/`.
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PLANTED = [
    ".pytest_cache/README.md",
    ".ruff_cache/README.md",
    ".some_tool/nested/notes.md",
    "book/.cache/README.md",
    "notebooks/.ipynb_checkpoints/00_preface-checkpoint.ipynb",
]


@pytest.mark.slow
def test_strict_build_ignores_hidden_folders(tmp_path):
    jupyter_book = pathlib.Path(sys.executable).parent / "jupyter-book"
    if not jupyter_book.exists():
        pytest.skip("jupyter-book is not installed (pip install -e '.[book]')")
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, tmp_path / name)
    for folder in ("book", "notebooks"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns(".*", "__pycache__"))
    for relative in PLANTED:
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".ipynb":
            shutil.copy(ROOT / "notebooks" / "00_preface.ipynb", path)
        else:
            path.write_text("# A file a tool left here\n\nNot part of the book.\n")
    result = subprocess.run(
        [str(jupyter_book), "build", "-W", "-n", "--keep-going", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    html = tmp_path / "_build" / "html"
    assert (html / "notebooks" / "04_transformer.html").is_file()
    assert not list(html.rglob("*checkpoint*.html")) and not (html / ".pytest_cache").exists()
