"""Read, run and repair the source articles' listings: one API for chapters 2, 3 and 4.

The listings are package data (``bigmodel_lib/articles/listings/``), read
verbatim, never re-typed: ``{article}_{model}.as_published.txt`` is the text as
the web page shows it, ``{article}_{model}.reindented.txt`` the same tokens
with the line breaks and indentation the page lost put back.
``tests/test_articles.py`` checks both against a separate copy of the two
articles.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.resources import files

import torch
import torch.nn as nn

from bigmodel_lib.articles.cnn import CorrectedCNN, CorrectedDCNN
from bigmodel_lib.articles.defects import DEFECTS, Defect
from bigmodel_lib.articles.lstm import CorrectedLSTMClassifier
from bigmodel_lib.articles.transformer import CorrectedTransformer000, CorrectedTransformer001

__all__ = ["published_text", "source", "published_class", "run_source", "defects", "replay_defects"]

ARTICLES = {
    "000": "第2章 大模型的基础知识 2.2.1 模型架构",
    "001": "AI大模型概述",
}
"""The two source articles the course started from, by their number."""

MODELS = ("cnn", "lstm", "transformer")
"""The three listings each article publishes."""

TRAINING_LOOP = "\n# 训练模型\n"  # "train the model": the comment before article 001's loops


@dataclass(frozen=True)
class Listing:
    """One published listing: where it is, what it defines and its corrected model.

    ``section`` is the article's own section number, ``class_name`` the class
    the listing defines, ``instance`` the variable it builds (``net`` or
    ``model``) and ``corrected`` the class that fixes it.
    """

    article: str
    model: str
    section: str
    class_name: str
    instance: str
    corrected: type[nn.Module]


_LISTINGS = {
    (entry.article, entry.model): entry
    for entry in (
        Listing("000", "cnn", "4.1", "CNN", "net", CorrectedCNN),
        Listing("001", "cnn", "1.5.1", "DCNN", "model", CorrectedDCNN),
        Listing("000", "lstm", "4.2", "RNN", "net", CorrectedLSTMClassifier),
        Listing("001", "lstm", "1.5.2", "RNN", "model", CorrectedLSTMClassifier),
        Listing("000", "transformer", "4.3", "Transformer", "net", CorrectedTransformer000),
        Listing("001", "transformer", "1.5.3", "Transformer", "model", CorrectedTransformer001),
    )
}


def listing(article: str, model: str) -> Listing:
    """The :class:`Listing` of ``model`` (``"cnn"``, ``"lstm"`` or ``"transformer"``) in ``article``.

    Raises ValueError naming the articles and models there are.
    """
    if article not in ARTICLES:
        raise ValueError(f"expected article '000' or '001' (a string), got {article!r}")
    if model not in MODELS:
        raise ValueError(f"expected model one of {MODELS}, got {model!r}")
    return _LISTINGS[article, model]


def _read(article: str, model: str, kind: str) -> str:
    listing(article, model)
    return files("bigmodel_lib.articles").joinpath(f"listings/{article}_{model}.{kind}.txt").read_text("utf-8")


def published_text(article: str, model: str) -> str:
    """The listing exactly as the article's web page shows it: line breaks or indentation lost.

    Article 000's listings are one line each; article 001's keep their line
    breaks but no indentation. Neither is valid Python.

    Introduced in §2.4.
    """
    return _read(article, model, "as_published")


def source(article: str, model: str, include_training_loop: bool = True) -> str:
    """The listing, every token as published, with its line breaks and indentation restored.

    Article 001's listings end in a training loop over a ``train_loader`` they
    never define; ``include_training_loop=False`` leaves the loop out (article
    000's listings have none). ``exec`` the code, or use :func:`run_source` to
    catch the first error.

    Introduced in §2.4.
    """
    code = _read(article, model, "reindented")
    if not include_training_loop:
        code = code.split(TRAINING_LOOP)[0]
    return code


def published_class(article: str, model: str) -> type[nn.Module]:
    """Execute the listing up to its class definition and return the class, unchanged.

    ``published_class("000", "cnn")`` is article 000's ``CNN``, hard-coded
    flatten size included.

    Introduced in §2.4.
    """
    info = listing(article, model)
    code = source(article, model).split(f"\n{info.instance} = ")[0]
    namespace: dict = {"__name__": f"article_{article}_{model}"}
    exec(compile(code, f"<article {article} {model}>", "exec"), namespace)
    return namespace[info.class_name]


def run_source(code: str, run: str = "", code_upto: str | None = None) -> tuple[dict, BaseException | None]:
    """Execute ``code`` then ``run`` in a fresh namespace, after ``torch.manual_seed(0)``.

    Returns the namespace and the exception raised (None if everything ran),
    so a notebook can show the error without stopping. ``code_upto`` cuts
    ``code`` before that line.

    Introduced in §3.2.
    """
    if code_upto is not None:
        code = code.split(code_upto)[0]
    namespace: dict = {"__name__": "article_listing"}
    torch.manual_seed(0)
    try:
        exec(compile(code + "\n" + run, "<article listing>", "exec"), namespace)
    except Exception as error:  # the point is to show the error, whatever it is
        return namespace, error
    return namespace, None


def defects(article: str, model: str) -> tuple[Defect, ...]:
    """The defects of a listing, in the order running it meets them.

    Introduced in §4.7.
    """
    listing(article, model)
    return DEFECTS[article, model]


def patched_source(article: str, model: str, upto: int = 0, skip: tuple[int, ...] = ()) -> str:
    """The listing with the fixes of defects ``0 .. upto-1`` applied, except those in ``skip``.

    ``patched_source(article, model, upto=i)`` is the code on which defect
    ``i`` shows. With ``upto=len(defects(article, model))`` every fix is
    applied; the code then runs, though it keeps the silent defects. Raises
    ValueError for an ``upto`` out of range or a fix whose text is missing.

    Introduced in §4.7.
    """
    code = source(article, model)
    found = defects(article, model)
    if not 0 <= upto <= len(found):
        raise ValueError(f"expected upto between 0 and {len(found)} (the number of defects), got {upto}")
    for number, defect in enumerate(found[:upto]):
        if number in skip:
            continue
        for old, new in defect.fix:
            if old not in code:
                raise ValueError(f"fix of defect {number} expected the text {old!r} in the code, but it is not there")
            code = code.replace(old, new)
    return code


def replay_defects(article: str, model: str) -> list[tuple[int, str, str]]:
    """Show every defect of a listing, in order, on the code with the earlier ones fixed.

    For defect ``i`` (numbered from 1) runs ``patched_source(article, model,
    i - 1)`` and the defect's demonstration, and checks that the documented
    error appears, or, for a silent defect, that the demonstration's asserts
    hold; then checks that the listing runs with every fix. Returns one row
    ``(number, title, what happened)`` per defect, e.g. to print as a table.
    Raises RuntimeError if a defect does not show as documented (another
    PyTorch version may word an error differently).

    Introduced in §2.4.
    """
    rows = []
    for number, defect in enumerate(defects(article, model)):
        _, error = run_source(patched_source(article, model, number), defect.run, defect.code_upto)
        if defect.error is None:  # silent: the demonstration's asserts hold because of the defect
            if error is not None:
                raise RuntimeError(f"defect {number + 1} ({defect.title}) should run silently, but raised {error!r}")
            shown = f"runs, and computes the wrong thing: {defect.observed}"
        else:
            if type(error).__name__ != defect.error or not re.search(defect.match, str(error)):
                raise RuntimeError(
                    f"defect {number + 1} ({defect.title}): expected {defect.error} matching {defect.match!r}, "
                    f"got {error!r}"
                )
            shown = f"{type(error).__name__}: {error}"
        rows.append((number + 1, defect.title, shown))
    _, error = run_source(patched_source(article, model, len(rows)))
    if error is not None:
        raise RuntimeError(f"with every fix applied the listing should run, but raised {error!r}")
    return rows
