"""The source articles' code: the published listings, their defects and the corrected models.

The course grew out of two Chinese articles (the preface cites them as
``seed000`` and ``seed001``); each publishes a CNN, an LSTM classifier and a
Transformer in PyTorch, and none of the six listings is right as printed.
Chapters 2.4, 3.2 and 4.7 run them through one API::

    from bigmodel_lib import articles
    print(articles.source("000", "cnn"))            # the listing, re-indented
    articles.run_source(articles.source("001", "cnn"))  # -> (namespace, NameError(...))
    for d in articles.defects("001", "transformer"):  # each defect, and its fix
        print(d.title)
    model = articles.CorrectedCNN(input_size=32)     # the corrected model

An article is named by its number, the string ``"000"`` or ``"001"``; a model
by ``"cnn"``, ``"lstm"`` or ``"transformer"``.

Modules, lowest first: ``defects`` (the defect tables), ``outline`` (the
articles' full text and section headings, for the preface's map), ``cnn``, ``lstm`` and
``transformer`` (the corrected models), ``replay`` (reading, running and
patching the listings).
"""

from bigmodel_lib.articles.cnn import CorrectedCNN, CorrectedDCNN, published_view_rows
from bigmodel_lib.articles.lstm import CorrectedLSTMClassifier
from bigmodel_lib.articles.outline import article_text, check_section_map, section_headings
from bigmodel_lib.articles.replay import (
    defects,
    patched_source,
    published_class,
    published_text,
    replay_defects,
    run_source,
    source,
)
from bigmodel_lib.articles.transformer import CorrectedTransformer000, CorrectedTransformer001

__all__ = [
    "article_text",
    "section_headings",
    "check_section_map",
    "published_text",
    "source",
    "published_class",
    "run_source",
    "defects",
    "patched_source",
    "replay_defects",
    "CorrectedCNN",
    "CorrectedDCNN",
    "published_view_rows",
    "CorrectedLSTMClassifier",
    "CorrectedTransformer000",
    "CorrectedTransformer001",
]
