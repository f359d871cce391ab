"""Write the Colab edition: plain-Markdown copies of the notebooks (`make colab`).

The notebooks are written in MyST (citations, glossary terms, `{exercise}` and
`{solution}` directives), which Colab shows as raw markup. The copies in `colab/`
keep every code cell and output exactly as stored and rewrite the Markdown cells:

- ``{cite}`key` `` becomes author-year text, "[Vaswani et al., 2017]", with the
  full entries from `book/references.bib` listed under "References" at the end;
- ``{term}`word` `` becomes the plain word;
- ``{doc}`` links point at the Colab edition (notebooks) or the published site
  (other pages); ``{ref}`` / ``{numref}`` become "Exercise 15" or the target's text;
- an `{exercise}` becomes a bold "**Exercise 15**" heading (the site's numbers),
  its `{solution}` a collapsed `<details>` block;
- admonitions become block quotes, labelled math a numbered `$$` block, figures
  Markdown images.

A construct with no plain form here stops the tool with an error naming it.
The launch buttons of the site and the README's badges open these copies.

Usage (tests/test_colab.py fails when colab/ is out of date):
    python tools/colab_edition.py
"""

from __future__ import annotations

import argparse
import json
import pathlib
import posixpath
import re
import sys

import yaml
from pybtex.database import Entry, parse_file
from pybtex.plugin import find_plugin
from pybtex.richtext import Text

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from set_repository import NOTEBOOKS, ROOT, Repository, read_repository  # noqa: E402

FOLDER = "colab"
_FENCE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,}|:{3,})(?P<info>.*)$")
_DIRECTIVE = re.compile(r"^\{(?P<name>[\w:.-]+)\}\s*(?P<arg>.*)$")
_OPTION = re.compile(r"^:(?P<key>[\w-]+):\s*(?P<value>.*)$")
# A role, or an inline code span (kept verbatim, so `{term}` written as code stays code).
_INLINE = re.compile(r"\{(?P<role>[\w:.-]+)\}`(?P<content>[^`]+)`|(?P<ticks>`+)(?:.+?)(?<!`)(?P=ticks)(?!`)", re.S)
_TARGET = re.compile(r"^\((?P<label>[^)\s]+)\)=\s*$")
_LABELLED_MATH = re.compile(r"^\$\$\s*\((?P<label>[^)\s]+)\)\s*$")
_EXPLICIT = re.compile(r"^(?P<text>.*?)\s*<(?P<target>[^<>]+)>$", re.S)
_ADMONITIONS = {
    "note": "Note", "tip": "Tip", "hint": "Hint", "important": "Important", "warning": "Warning",
    "caution": "Caution", "attention": "Attention", "danger": "Danger", "error": "Error", "seealso": "See also",
}
_BLOCK_MYST = re.compile(r"^\s*(?:`{3,}|~{3,}|:{3,})\s*\{[^}\n]*\}|^\([^)\s]+\)=\s*$", re.M)


def myst_left(markdown: str) -> list[str]:
    """The MyST left in Markdown text: roles (outside inline code), directive fences, targets."""
    return [m[0] for m in _INLINE.finditer(markdown) if m["role"]] + _BLOCK_MYST.findall(markdown)


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _markdown_of(path: pathlib.Path) -> str:
    """A page's MyST text: a Markdown file, or a notebook's Markdown cells."""
    if path.suffix == ".md":
        return path.read_text(encoding="utf-8")
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return "\n\n".join(_source(c) for c in cells if c["cell_type"] == "markdown")


def _toc_docs(root: pathlib.Path) -> list[str]:
    """Every page of `_toc.yml`, in book order, as paths without suffix."""
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    found = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                found.append(entry["file"])
            walk(entry.get("sections"))
            walk(entry.get("chapters"))

    walk(toc.get("parts"))
    walk(toc.get("chapters"))
    return found


def _find_doc(root: pathlib.Path, doc: str) -> pathlib.Path:
    for suffix in (".ipynb", ".md"):
        if (root / f"{doc}{suffix}").exists():
            return root / f"{doc}{suffix}"
    raise ValueError(f"no page {doc!r} (looked for .ipynb and .md)")


def _first_heading(text: str) -> str:
    match = re.search(r"(?m)^# +(.+?)\s*$", text)
    return match[1] if match else ""


class Book:
    """What every notebook's conversion needs from the whole book: the repository,
    the bibliography, page titles and the site's exercise numbers."""

    def __init__(self, root: pathlib.Path):
        self.root = root
        self.repo: Repository = read_repository(root)
        config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
        self.bib = {}
        for name in config.get("bibtex_bibfiles", []):
            self.bib.update(parse_file(str(root / name)).entries)
        self.titles: dict[str, str] = {}
        self.exercises: dict[str, int] = {}  # label -> number, as sphinx-exercise numbers them
        self.exercise_order: dict[str, list[int | None]] = {}  # page -> numbers in page order
        self.targets: dict[str, str] = {}  # (label)= target -> text of the heading below it
        count = 0
        for doc in _toc_docs(root):
            text = _markdown_of(_find_doc(root, doc))
            self.titles[doc] = _first_heading(text)
            order = self.exercise_order.setdefault(doc, [])
            for options in _exercise_options(text):
                number = None if "nonumber" in options else (count := count + 1)
                order.append(number)
                if "label" in options:
                    self.exercises[options["label"]] = number
            for match in re.finditer(r"(?m)^\(([^)\s]+)\)=\s*\n+#+ +(.+?)\s*$", text):
                self.targets[match[1]] = match[2]

    def link(self, doc: str) -> str:
        """Where a page opens from the Colab edition: a notebook in Colab, a page on the site."""
        if (self.root / f"{doc}.ipynb").exists() and doc.startswith(f"{NOTEBOOKS}/"):
            return self.repo.colab_url(f"{FOLDER}/{posixpath.basename(doc)}.ipynb")
        return f"{self.repo.pages_url}{doc}.html"

    def cite_label(self, key: str) -> tuple[str, str]:
        """('Vaswani et al.', '2017') for a bibliography key."""
        if key not in self.bib:
            raise ValueError(f"citation {key!r} is not in the bibliography")
        entry = self.bib[key]
        people = entry.persons.get("author") or entry.persons.get("editor") or []
        names = [str(Text.from_latex(" ".join(p.prelast_names + p.last_names))) for p in people]
        if not names:
            names = [key]
        author = names[0] if len(names) == 1 else " and ".join(names) if len(names) == 2 else f"{names[0]} et al."
        return author, entry.fields.get("year", "n.d.")

    def references(self, keys: list[str]) -> list[str]:
        """The full entries, formatted as the site formats them (pybtex's plain style)."""
        style = find_plugin("pybtex.style.formatting", "plain")()
        entries = []
        for key in keys:
            entry = self.bib[key]
            fields = {k: re.sub(r"\\url\{([^}]*)\}", r"\1", v) for k, v in entry.fields.items()}
            copy = Entry(entry.type, fields=fields, persons=entry.persons)
            copy.key = key
            entries.append(copy)
        lines = []
        for formatted in style.format_entries(entries):
            text = formatted.text.render_as("markdown").replace("\n", " ")
            # pybtex escapes all punctuation; keep the escapes Markdown needs (a bare
            # URL breaks with any, and Colab could read "\(" as the start of math).
            text = re.sub(r"(?<!\()https?://[^\s)\]]+", lambda m: m[0].replace("\\", ""), text)
            text = re.sub(r"\\([.,:;()\-'\"/?%&+=~])", r"\1", text)
            lines.append(f"- {text}")
        return lines


def _exercise_options(text: str):
    """The options of every `{exercise}` directive in a page, in order."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        match = _FENCE.match(line)
        if match and re.match(r"\{exercise\}", match["info"].strip()):
            options = {}
            for option in lines[i + 1 :]:
                found = _OPTION.match(option.strip())
                if not found:
                    break
                options[found["key"]] = found["value"].strip()
            yield options


class Page:
    """Converts the Markdown cells of one notebook, in order."""

    def __init__(self, book: Book, doc: str, text: str):
        """`text`: all the page's Markdown, for numbering its labelled equations."""
        self.book, self.doc = book, doc
        self.cited: list[str] = []
        self.exercise_numbers = list(book.exercise_order.get(doc, []))
        self.equations: dict[str, int] = {}
        labels = re.findall(r"(?m)^\s*(?:`{3,}|:{3,})\{math\}.*\n(?::[\w-]+:.*\n)*?:label:\s*(\S+)|^\$\$\s*\((\S+)\)", text)
        for a, b in labels:
            self.equations[a or b] = len(self.equations) + 1

    # -- blocks ---------------------------------------------------------------
    def convert(self, text: str) -> str:
        return "\n".join(self._blocks(text.split("\n")))

    def _blocks(self, lines: list[str]) -> list[str]:
        out: list[str] = []
        prose: list[str] = []

        def flush():
            if prose:
                out.extend(self._inline("\n".join(prose)).split("\n"))
                prose.clear()

        i = 0
        while i < len(lines):
            line, fence = lines[i], _FENCE.match(lines[i])
            if fence:
                flush()
                mark, end = fence["fence"], i + 1
                while end < len(lines) and not re.fullmatch(rf" {{0,3}}{re.escape(mark[0])}{{{len(mark)},}}\s*", lines[end]):
                    end += 1
                directive = _DIRECTIVE.match(fence["info"].strip())
                if directive:
                    out.extend(self._directive(directive["name"], directive["arg"].strip(), lines[i + 1 : end]))
                else:  # a code block: verbatim
                    out.extend(lines[i : end + 1])
                i = end + 1
                continue
            if _TARGET.match(line):
                pass  # a cross-reference target: nothing to show
            elif match := _LABELLED_MATH.match(line):
                prose.extend([rf"\tag{{{self.equations[match['label']]}}}", "$$"])
            else:
                prose.append(line)
            i += 1
        flush()
        return out

    def _directive(self, name: str, arg: str, body: list[str]) -> list[str]:
        options = {}
        while body and (found := _OPTION.match(body[0].strip())):
            options[found["key"]] = found["value"].strip()
            body = body[1:]
        while body and not body[0].strip():
            body = body[1:]
        while body and not body[-1].strip():
            body = body[:-1]
        inner = self._blocks(body)
        if name == "exercise":
            number = self.exercise_numbers.pop(0)
            heading = "**Exercise**" if number is None else f"**Exercise {number}**"
            return [heading + (f" ({self._inline(arg)})" if arg else ""), "", *inner]
        if name == "solution":
            number = self.book.exercises.get(arg)
            what = f"Exercise {number}" if number else "the exercise"
            return ["<details>", f"<summary>Solution to {what}</summary>", "", *inner, "", "</details>"]
        if name == "solution-start":  # a gated solution: the cells down to {solution-end} belong to it
            number = self.book.exercises.get(arg)
            what = f"Exercise {number}" if number else "the exercise"
            return [f"**Solution to {what}** (down to *End of the solution*)", "", *inner]
        if name == "solution-end":
            return ["*End of the solution.*"]
        if name in _ADMONITIONS or name == "admonition":
            title = self._inline(arg) if name == "admonition" else _ADMONITIONS[name]
            return [f"> **{title}**", ">", *(f"> {line}" if line else ">" for line in inner)]
        if name == "math":
            tag = [rf"\tag{{{self.equations[options['label']]}}}"] if "label" in options else []
            return ["$$", *body, *tag, "$$"]
        if name in ("figure", "image"):
            alt = options.get("alt") or " ".join(inner).strip() or posixpath.basename(arg)
            caption = ["", f"*{' '.join(inner).strip()}*"] if name == "figure" and inner else []
            return [f"![{alt}]({self._image_url(arg)})", *caption]
        if name in ("code-block", "code", "sourcecode"):
            return [f"```{arg}", *body, "```"]
        raise ValueError(f"{self.doc}: no plain-Markdown form for the MyST directive {{{name}}}; add one to {__file__}")

    # -- inline ---------------------------------------------------------------
    def _inline(self, text: str) -> str:
        return _INLINE.sub(self._role, text)

    def _role(self, match: re.Match) -> str:
        if match["role"] is None:
            return match[0]  # inline code
        role, content = match["role"], match["content"]
        explicit = _EXPLICIT.match(content)
        text, target = (explicit["text"], explicit["target"]) if explicit else (None, content)
        if role in ("cite", "cite:p", "cite:t"):
            keys = [k.strip() for k in content.split(",") if k.strip()]
            self.cited.extend(k for k in keys if k not in self.cited)
            labels = [self.book.cite_label(k) for k in keys]
            if role == "cite:t":
                return ", ".join(f"{author} [{year}]" for author, year in labels)
            return "[" + "; ".join(f"{author}, {year}" for author, year in labels) + "]"
        if role == "term":
            return text or content
        if role == "doc":
            doc = posixpath.normpath(posixpath.join(posixpath.dirname(self.doc), target.removesuffix(".md")))
            if target.startswith("/"):
                doc = target.strip("/")
            return f"[{text or self.book.titles.get(doc, doc)}]({self.book.link(doc)})"
        if role in ("ref", "numref"):
            if text:
                return text
            if target in self.book.exercises:
                return f"Exercise {self.book.exercises[target]}"
            if target in self.book.targets:
                return self.book.targets[target]
            raise ValueError(f"{self.doc}: cannot resolve {{{role}}}`{content}`")
        if role == "eq":
            return f"({self.equations[target]})"
        if role == "math":
            return f"${content}$"
        raise ValueError(f"{self.doc}: no plain-Markdown form for the MyST role {{{role}}}; add one to {__file__}")

    def _image_url(self, path: str) -> str:
        """An image of the repository, as a URL that works from Colab."""
        if re.match(r"[a-z]+://", path):
            return path
        full = posixpath.normpath(posixpath.join(posixpath.dirname(self.doc), path))
        return f"https://raw.githubusercontent.com/{self.book.repo.owner_repo}/{self.book.repo.branch}/{full}"


def _markdown_cell(cell_id: str, text: str) -> dict:
    return {"cell_type": "markdown", "id": cell_id, "metadata": {}, "source": text.splitlines(keepends=True)}


def convert_notebook(book: Book, path: pathlib.Path) -> str:
    """The Colab edition of one notebook, as the text of an .ipynb file."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    doc = f"{NOTEBOOKS}/{path.stem}"
    page = Page(book, doc, "\n\n".join(_source(c) for c in nb["cells"] if c["cell_type"] == "markdown"))
    cells = []
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            cell = {**cell, "source": page.convert(_source(cell)).splitlines(keepends=True)}
        cells.append(cell)
    note = (
        f"*The Colab edition of this chapter, written by `tools/colab_edition.py` from "
        f"[`{NOTEBOOKS}/{path.name}`]({book.repo.url}/blob/{book.repo.branch}/{NOTEBOOKS}/{path.name}): "
        f"the same code and outputs, with the book's markup as plain Markdown. "
        f"The [course site]({book.repo.pages_url}{doc}.html) has the same text with links "
        f"to the glossary and bibliography.*"
    )
    first = cells[0] if cells and cells[0]["cell_type"] == "markdown" else None
    if first and first["source"] and first["source"][0].startswith("# "):  # the note goes under the title
        title, rest = first["source"][0], first["source"][1:]
        gap = ["\n"] if rest and rest[0].strip() else []
        first["source"] = [title.rstrip("\n") + "\n", "\n", note + ("\n" if rest else ""), *gap, *rest]
    else:
        cells.insert(0, _markdown_cell("colab-edition-note", note))
    if page.cited:
        references = "\n".join(["## References", "", *book.references(page.cited)])
        cells.append(_markdown_cell("colab-edition-references", references))
    return json.dumps({**nb, "cells": cells}, indent=1, ensure_ascii=False) + "\n"


def build_edition(root: pathlib.Path = ROOT) -> dict[str, str]:
    """{'colab/02_cnn.ipynb': text, ...} for every notebook in notebooks/."""
    book = Book(root)
    return {
        f"{FOLDER}/{path.name}": convert_notebook(book, path) for path in sorted((root / NOTEBOOKS).glob("*.ipynb"))
    }


def write_edition(root: pathlib.Path = ROOT) -> list[pathlib.Path]:
    """Write the edition; remove copies whose notebook is gone. Returns what changed."""
    edition = build_edition(root)
    (root / FOLDER).mkdir(exist_ok=True)
    changed = []
    for stale in sorted((root / FOLDER).glob("*.ipynb")):
        if f"{FOLDER}/{stale.name}" not in edition:
            stale.unlink()
            changed.append(stale)
    for relative, text in edition.items():
        path = root / relative
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=pathlib.Path, default=ROOT, help="checkout to work on (default: this one)")
    args = parser.parse_args(argv)
    changed = write_edition(args.root)
    for path in changed:
        print(f"wrote {path.relative_to(args.root)}")
    print(f"{FOLDER}/ is up to date ({len(changed)} files written)")


if __name__ == "__main__":
    main()
