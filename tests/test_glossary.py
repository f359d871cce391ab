"""The glossary (术语表) gives every term in English and in Chinese."""

from __future__ import annotations

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
_CJK = re.compile(r"[\u4e00-\u9fff]")


def glossary_entries(text: str) -> list[list[str]]:
    """The term lines of each entry of the ```{glossary} block."""
    block = text.split("```{glossary}", 1)[1].split("```", 1)[0]
    entries, terms = [], []
    for line in block.splitlines():
        if not line.strip():
            continue
        if line.startswith(" "):  # definition text closes the entry's term lines
            if terms:
                entries.append(terms)
                terms = []
        else:
            terms.append(line.strip())
    if terms:
        entries.append(terms)
    return entries


def test_every_entry_has_an_english_and_a_chinese_term():
    entries = glossary_entries((ROOT / "book" / "glossary.md").read_text(encoding="utf-8"))
    assert len(entries) >= 20
    for terms in entries:
        english = [t for t in terms if not _CJK.search(t)]
        chinese = [t for t in terms if _CJK.search(t)]
        assert english and chinese, f"glossary entry {terms} needs an English and a Chinese term"


def test_entries_are_in_alphabetical_order():
    entries = glossary_entries((ROOT / "book" / "glossary.md").read_text(encoding="utf-8"))
    english = [terms[0].lower() for terms in entries]
    assert english == sorted(english)


def test_parser_reads_terms_and_definitions():
    text = "```{glossary}\nattention\n注意力\n  A definition.\n\nbias\n  Only English.\n```\n"
    assert glossary_entries(text) == [["attention", "注意力"], ["bias"]]
