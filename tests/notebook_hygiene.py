"""Checks every chapter notebook must pass before it is stored (used by
tests/test_notebook_hygiene.py, and handy on its own:
``python tests/notebook_hygiene.py``).

Each check returns a list of problems, as sentences naming the notebook and
what to do; an empty list means the notebook is clean.
"""

from __future__ import annotations

import json
import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
#: Largest notebook we store: outputs are kept, so oversized plots or printed
#: tensors bloat the repository and slow the site. Save figures at book size.
MAX_NOTEBOOK_BYTES = 2 * 1024 * 1024
#: Prefixes that only exist on one machine (and the Windows drive form).
_ABSOLUTE_PATH = re.compile(
    r"(?<![\w.:/])(/home/|/Users/|/root/|/work/|/tmp/|/mnt/|/opt/|/private/|/content/|/var/folders/"
    r"|[A-Za-z]:\\\\?[A-Za-z])"
)


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _output_texts(cell: dict):
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            yield "".join(out.get("text", ""))
        elif out.get("output_type") == "error":
            yield "\n".join(out.get("traceback", []))
        else:
            data = out.get("data", {})
            for mime in ("text/plain", "text/html", "text/markdown"):
                if mime in data:
                    value = data[mime]
                    yield "".join(value) if isinstance(value, list) else value


def toc_files(toc_path: pathlib.Path) -> list[str]:
    """Every ``file:`` (and the root) of a Jupyter Book ``_toc.yml``, without suffix."""
    toc = yaml.safe_load(toc_path.read_text(encoding="utf-8"))
    files = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({k: v for k, v in toc.items() if k != "root"})
    return [str(pathlib.PurePosixPath(f).with_suffix("")) for f in files]


def check_toc(root: pathlib.Path = ROOT) -> list[str]:
    """Every notebook in notebooks/ is in _toc.yml, and every toc entry exists."""
    problems = []
    entries = toc_files(root / "_toc.yml")
    for entry in entries:
        if not any((root / f"{entry}{suffix}").is_file() for suffix in (".ipynb", ".md")):
            problems.append(f"_toc.yml lists {entry!r}, but neither {entry}.ipynb nor {entry}.md exists")
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        stem = path.relative_to(root).with_suffix("").as_posix()
        if stem not in entries:
            problems.append(f"{path.relative_to(root)} is not listed in _toc.yml: add '- file: {stem}'")
    return problems


def check_notebook(path: pathlib.Path, max_bytes: int = MAX_NOTEBOOK_BYTES) -> list[str]:
    """Stored outputs from one clean top-to-bottom run, a Colab-ready first cell,
    no stored errors, no absolute paths, and a size cap."""
    name = path.name
    problems = []
    size = path.stat().st_size
    if size > max_bytes:
        problems.append(
            f"{name}: {size / 1024**2:.2f} MiB is over the {max_bytes / 1024**2:.2f} MiB cap "
            "(save smaller figures, print less)"
        )
    nb = json.loads(path.read_text(encoding="utf-8"))
    code_cells = [c for c in nb.get("cells", []) if c.get("cell_type") == "code"]
    executed = [c for c in code_cells if _source(c).strip()]

    counts = [c.get("execution_count") for c in executed]
    expected = list(range(1, len(executed) + 1))
    if counts != expected:
        problems.append(
            f"{name}: execution counts are {counts}, expected {expected}: "
            "outputs must come from one top-to-bottom run (make notebooks)"
        )

    for index, cell in enumerate(code_cells):
        if "raises-exception" in cell.get("metadata", {}).get("tags", []):
            continue  # the error is the lesson (running a seed's code as published)
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                problems.append(
                    f"{name}: code cell {index + 1} stores an error output ({out.get('ename')}); "
                    "fix the cell, or tag it raises-exception if the error is the lesson"
                )

    if not executed:
        problems.append(f"{name}: has no code cells; its first code cell must set up the library")
    else:
        first = _source(executed[0])
        if "import bigmodel_lib" not in first or "pip" not in first or "install" not in first:
            problems.append(
                f"{name}: the first code cell must install bigmodel_lib when it is missing "
                "(for Colab) and import it"
            )
        if "environment_report()" not in first:
            problems.append(
                f"{name}: the first code cell must print bigmodel_lib.environment_report() "
                "(library, torch and device versions)"
            )

    for index, cell in enumerate(nb.get("cells", [])):
        texts = [_source(cell), *(_output_texts(cell) if cell.get("cell_type") == "code" else [])]
        for text in texts:
            match = _ABSOLUTE_PATH.search(text)
            if match:
                line = text[max(0, match.start() - 30): match.end() + 30].replace("\n", " ")
                problems.append(
                    f"{name}: cell {index + 1} contains an absolute path ({line!r}); "
                    "use paths relative to the notebook"
                )
                break
    return problems


def main() -> int:
    problems = check_toc()
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        problems += check_notebook(path)
    print("\n".join(problems) or "all notebooks are clean")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
