"""The two source articles' full text and their section headings, for the preface's map.

The articles ship as package data (``bigmodel_lib/articles/text/000.txt`` and
``001.txt``, the text as the web pages show it). :func:`section_headings` parses
their numbered headings ("3.1 卷积神经网络(CNN)"), and :func:`check_section_map`
checks a map from sections to chapters against them, so a section the map
leaves out, or a section the articles do not have, fails loudly.
``tests/test_articles.py`` checks the text against a separate copy.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from importlib.resources import files

__all__ = ["article_text", "section_headings", "check_section_map"]

ARTICLE_NUMBERS = ("000", "001")

# A heading is a whole line: a section number ("3", "3.1", "1.4.2", with an optional
# trailing dot), then a short title that is not a sentence (no full stop or semicolon).
_HEADING = re.compile(r"(\d+(?:\.\d+)*)\.?\s*([^\s。,,:;].{0,39})")


def _check_article(article: str) -> None:
    if article not in ARTICLE_NUMBERS:
        raise ValueError(f"expected article '000' or '001' (a string), got {article!r}")


def article_text(article: str) -> str:
    """The full text of source article ``article`` (``"000"`` or ``"001"``), as published.

    Raises ValueError for any other article.

    Introduced in the preface.
    """
    _check_article(article)
    return files("bigmodel_lib.articles").joinpath("text", f"{article}.txt").read_text(encoding="utf-8")


def section_headings(article: str) -> dict[str, str]:
    """The numbered section headings of ``article``: ``{number: title}`` in reading order.

    A heading repeated on the page (article 000 prints "1. 背景介绍" twice) is
    kept once. Raises ValueError for an unknown article.

    Introduced in the preface.
    """
    headings: dict[str, str] = {}
    for line in article_text(article).splitlines():
        match = _HEADING.fullmatch(line.strip())
        if match and not re.search(r"[。;]", match[2]):
            headings.setdefault(match[1], match[2])
    return headings


def check_section_map(section_map: Mapping[str, Mapping[str, Sequence]]) -> dict[str, list[str]]:
    """Check a map ``{article: {section number: [chapters]}}`` against the articles' headings.

    Every heading without subsections (a leaf, such as "3.1.2 池化层") must be
    covered by its own number or by one of its parents' ("3.1"), with at least
    one chapter; every number in the map must be a heading of that article.
    Returns ``{article: [leaf headings]}`` (what was checked). Raises ValueError
    naming the sections left out or not found.

    Introduced in the preface.
    """
    checked = {}
    for article in ARTICLE_NUMBERS:
        if article not in section_map:
            raise ValueError(f"expected a map for both articles {ARTICLE_NUMBERS}, got keys {sorted(section_map)}")
        numbers = list(section_headings(article))
        mapped = {number for number, chapters in section_map[article].items() if len(chapters) > 0}
        unknown = sorted(set(section_map[article]) - set(numbers))
        if unknown:
            raise ValueError(f"article {article} has no sections {unknown}; its sections are {numbers}")
        leaves = [n for n in numbers if not any(other.startswith(n + ".") for other in numbers)]
        parts = {leaf: leaf.split(".") for leaf in leaves}
        missing = [leaf for leaf, p in parts.items()
                   if not any(".".join(p[:k]) in mapped for k in range(1, len(p) + 1))]
        if missing:
            titles = [f"{n} {section_headings(article)[n]}" for n in missing]
            raise ValueError(f"article {article}: sections not mapped to any chapter: {titles}")
        checked[article] = leaves
    return checked
