"""Write the student edition: the notebooks without solutions, and a site built from them (`make student`).

What it writes:

- `student/notebooks/`: every notebook of `notebooks/`, with every `{solution}` removed (the chapters' too),
  every gated solution (`{solution-start}` ... `{solution-end}`, with the code cells between) removed, the
  lines from `# BEGIN SOLUTION` to `# END SOLUTION` of each answer cell (tagged `answer`) replaced by
  `raise NotImplementedError` (and shown on the site: no `hide-input`), the outputs of answer and check cells
  cleared, and cells tagged
  `solutions-only` dropped. Every other cell, and every other output, is kept as stored.
- `student/colab/`: their Colab edition (`tools/colab_edition.py`), for the student site's Colab button.
- `_build/student/source/`: the student book's sources (the student notebooks, `book/`, `_toc.yml` and a
  `_config.yml` whose `repository.path_to_book` is `student`, so that the launch buttons open
  `student/notebooks/...` and the Colab button `student/colab/...` in the repository, and whose
  sphinx-exercise `hide_solutions` is on as a second guard).
- with `--build`: the student site, built strictly (`jupyter-book build -W -n --keep-going`), in
  `_build/student/html`; its download buttons serve the student notebooks.

`student/` is committed (Colab and Binder open notebooks from the repository); `tests/test_student.py` fails
when it is out of date and searches the edition, and the site when it is built, for sentinel phrases of every
solution. Generating twice gives identical files.

Usage:
    python tools/student_edition.py                   # student/ (notebooks and Colab edition)
    python tools/student_edition.py --build           # and the site, in _build/student/html (make student)
    python tools/student_edition.py --check --build   # fail if student/ is stale, else build the site (make test)
"""

from __future__ import annotations

import argparse
import copy
import json
import pathlib
import re
import shutil
import subprocess
import sys

import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import colab_edition  # noqa: E402
from set_repository import NOTEBOOKS, ROOT, read_repository  # noqa: E402

FOLDER = "student"
BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
STUB = "raise NotImplementedError  # your code here"
_FENCE = re.compile(r"^ {0,3}(?P<fence>`{3,}|:{3,})\{(?P<name>solution|solution-start|solution-end)\}")
_CHECK_CELL = re.compile(r"^check_\w+\(\w+\)$")


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _closing(lines: list[str], start: int, fence: str) -> int:
    """The index of the line that closes the block opened at ``start`` (or the last line)."""
    end = start + 1
    while end < len(lines) and not re.fullmatch(rf" {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*", lines[end]):
        end += 1
    return min(end, len(lines) - 1)


def _tidy(lines: list[str]) -> str:
    """Join lines, with runs of blank lines (left where blocks were removed) collapsed to one."""
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines))
    return text.strip("\n")


def strip_markdown(text: str, in_gated: bool) -> tuple[str, bool]:
    """A Markdown cell without its solutions: (text left, whether a gated solution is still open after it)."""
    lines, kept, i = text.split("\n"), [], 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            if not in_gated:
                kept.append(lines[i])
            i += 1
            continue
        end = _closing(lines, i, match["fence"])
        if match["name"] == "solution-start":
            in_gated = True
        elif match["name"] == "solution-end":
            in_gated = False
        i = end + 1
    return _tidy(kept), in_gated


def strip_answer(source: str) -> str:
    """An answer cell with the lines from BEGIN to END SOLUTION replaced by one ``raise NotImplementedError``."""
    lines, out, inside = source.split("\n"), [], False
    for line in lines:
        if line.strip() == BEGIN:
            inside = True
            out.append(line[: len(line) - len(line.lstrip())] + STUB)
        elif line.strip() == END:
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"an answer cell has '{BEGIN}' without '{END}'")
    return "\n".join(out)


def student_notebook(nb: dict) -> dict:
    """The student version of one notebook (a new object; ``nb`` is not changed)."""
    nb = copy.deepcopy(nb)
    cells, in_gated = [], False
    for cell in nb["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        if "solutions-only" in tags:
            continue
        if cell["cell_type"] == "markdown":
            text, in_gated_after = strip_markdown(_source(cell), in_gated)
            in_gated = in_gated_after
            if text.strip():
                cells.append({**cell, "source": text.splitlines(keepends=True)})
            continue
        if in_gated:
            continue  # a code cell of a gated solution
        if cell["cell_type"] == "code" and ("answer" in tags or _CHECK_CELL.match(_source(cell).strip())):
            source = strip_answer(_source(cell)) if "answer" in tags else _source(cell)
            metadata = {**cell["metadata"], "tags": [t for t in tags if t != "hide-input"]}  # show the stub
            if not metadata["tags"]:
                del metadata["tags"]
            cell = {**cell, "metadata": metadata, "source": source.splitlines(keepends=True), "outputs": [],
                    "execution_count": None}
        cells.append(cell)
    if in_gated:
        raise ValueError("a gated solution ({solution-start}) is never closed by {solution-end}")
    nb["cells"] = cells
    return nb


def _dump(nb: dict) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def _student_config(root: pathlib.Path) -> dict:
    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
    config["title"] = f"{config['title']} (student edition)"
    config["repository"]["path_to_book"] = FOLDER
    config["html"]["use_edit_page_button"] = False  # the pages are generated: edit the sources instead
    config["sphinx"].setdefault("config", {})["hide_solutions"] = True  # a second guard
    return config


def assemble_source(root: pathlib.Path, target: pathlib.Path, notebooks: dict[str, str]) -> None:
    """Write the student book's sources into ``target``: config, toc, book pages, the student notebooks."""
    if target.exists():
        shutil.rmtree(target)
    (target / NOTEBOOKS).mkdir(parents=True)
    shutil.copytree(root / "book", target / "book", ignore=shutil.ignore_patterns(".*", "__pycache__"))
    shutil.copy2(root / "_toc.yml", target / "_toc.yml")
    (target / "_config.yml").write_text(yaml.safe_dump(_student_config(root), sort_keys=False, allow_unicode=True),
                                        encoding="utf-8")
    for name, text in notebooks.items():
        (target / NOTEBOOKS / name).write_text(text, encoding="utf-8")


def _colab_edition(source: pathlib.Path) -> dict[str, str]:
    """The Colab edition of the student notebooks, its links pointing into student/ in the repository."""
    repo = read_repository(source)
    prefix = f"/blob/{repo.branch}/"
    edition = {}
    for relative, text in colab_edition.build_edition(source).items():
        for folder in (colab_edition.FOLDER, NOTEBOOKS):
            text = text.replace(f"{prefix}{folder}/", f"{prefix}{FOLDER}/{folder}/")
        edition[relative] = text
    return edition


def build_edition(root: pathlib.Path = ROOT, source: pathlib.Path | None = None) -> dict[str, str]:
    """{'student/notebooks/01_large_models.ipynb': text, 'student/colab/...': text, ...}.

    ``source``: where to assemble the student book's sources (default: ``_build/student/source``)."""
    source = source or root / "_build" / FOLDER / "source"
    notebooks = {
        path.name: _dump(student_notebook(json.loads(path.read_text(encoding="utf-8"))))
        for path in sorted((root / NOTEBOOKS).glob("*.ipynb"))
    }
    assemble_source(root, source, notebooks)
    edition = {f"{FOLDER}/{NOTEBOOKS}/{name}": text for name, text in notebooks.items()}
    edition.update({f"{FOLDER}/{relative}": text for relative, text in _colab_edition(source).items()})
    return edition


def write_edition(root: pathlib.Path = ROOT) -> list[pathlib.Path]:
    """Write student/; remove files whose notebook is gone. Returns what changed."""
    edition = build_edition(root)
    changed = []
    for stale in sorted((root / FOLDER).glob("*/*.ipynb")):
        if str(stale.relative_to(root)) not in edition:
            stale.unlink()
            changed.append(stale)
    for relative, text in edition.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    return changed


def build_site(root: pathlib.Path = ROOT) -> pathlib.Path:
    """Build the student site strictly from ``_build/student/source`` into ``_build/student/html``."""
    source, html = root / "_build" / FOLDER / "source", root / "_build" / FOLDER / "html"
    jupyter_book = pathlib.Path(sys.executable).parent / "jupyter-book"
    subprocess.run([str(jupyter_book), "build", "-W", "-n", "--keep-going", str(source)], check=True)
    if html.exists():
        shutil.rmtree(html)
    shutil.move(str(source / "_build" / "html"), str(html))
    return html


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=pathlib.Path, default=ROOT, help="checkout to work on (default: this one)")
    parser.add_argument("--build", action="store_true", help="also build the student site into _build/student/html")
    parser.add_argument("--check", action="store_true",
                        help=f"write nothing to {FOLDER}/; fail if it is out of date (make test)")
    args = parser.parse_args(argv)
    if args.check:
        edition = build_edition(args.root)
        on_disk = {str(p.relative_to(args.root)) for p in (args.root / FOLDER).glob("*/*.ipynb")}
        stale = sorted(set(edition) ^ on_disk) + sorted(
            name for name in set(edition) & on_disk if (args.root / name).read_text(encoding="utf-8") != edition[name])
        if stale:
            sys.exit(f"{FOLDER}/ is out of date ({', '.join(stale)}): run `make student` and commit it")
        print(f"{FOLDER}/ is up to date")
    else:
        changed = write_edition(args.root)
        for path in changed:
            print(f"wrote {path.relative_to(args.root)}")
        print(f"{FOLDER}/ is up to date ({len(changed)} files written)")
    if args.build:
        html = build_site(args.root)
        print(f"student site: {html.relative_to(args.root)}/index.html")


if __name__ == "__main__":
    main()
