"""Byte-pair encoding (BPE) from its merge rule, and the same merges in Hugging Face ``tokenizers``.

* :func:`split_words` -- text -> words, the way ``tokenizers.pre_tokenizers.Whitespace``
  splits it (runs of letters, digits and ``_``; runs of other non-space characters).
* :func:`train_bpe` -- learn merges from word counts (Sennrich et al., 2016): start from
  characters, then repeatedly merge the most frequent adjacent pair of symbols.
* :func:`bpe_tokenize` -- split one word by applying learned merges in the order learned;
  :func:`bpe_tokenize_text` does a whole text.
* :func:`bpe_tokenizer` -- a ``tokenizers.Tokenizer`` with our merges, to check that our
  tokenization is the library's.
* :func:`train_bpe_tokenizer` -- the tokenizer of chapter 5's tweets at scale: ``tokenizers``'
  ``BpeTrainer``, lower-casing, with the special tokens ``[PAD]``, ``[UNK]``, ``[MASK]``.

Convention (the one of Sennrich's code and of ``tokenizers``' ``end_of_word_suffix``): a word
starts as its characters, the last one carrying the end-of-word marker ``</w>``, so ``"low"`` is
``["l", "o", "w</w>"]``. The marker lets a merge tell "est" at the end of a word from "est" inside
one; ``end_of_word=""`` drops it. Ties between equally frequent pairs go to the pair whose left
symbol was created first, then whose right symbol was: single characters in code-point order, then
(with a marker) marked characters in code-point order, then merged symbols in the order merged.
This is the order ``tokenizers.trainers.BpeTrainer`` uses for token ids, so without a marker its
merges are ours (with one, it numbers the marked characters in hash order, and some ties differ).
"""

from __future__ import annotations

import heapq
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence

__all__ = ["split_words", "train_bpe", "bpe_tokenize", "bpe_tokenize_text", "bpe_tokenizer", "train_bpe_tokenizer"]

END_OF_WORD = "</w>"  # the marker on a word's last character (Sennrich et al.'s, and tokenizers' end_of_word_suffix)
_WORD_PATTERN = re.compile(r"\w+|[^\w\s]+")


def split_words(text: str) -> list[str]:
    """Split ``text`` into words: runs of letters, digits and ``_``, and runs of other non-space characters.

    The same split as Hugging Face's ``tokenizers.pre_tokenizers.Whitespace`` (regex ``\\w+|[^\\w\\s]+``):
    ``"x = f(a, b)"`` -> ``["x", "=", "f", "(", "a", ",", "b", ")"]``.

    Raises:
        TypeError: ``text`` is not a string.

    Introduced in §5.1.
    """
    if not isinstance(text, str):
        raise TypeError(f"expected text as a str, got {type(text).__name__}")
    return _WORD_PATTERN.findall(text)


def _check_word_counts(word_counts: Mapping[str, int]) -> None:
    if not isinstance(word_counts, Mapping):
        raise TypeError(f"expected word_counts as a mapping word -> count, got {type(word_counts).__name__}")
    if not word_counts:
        raise ValueError("expected at least one word in word_counts, got an empty mapping")
    for word, count in word_counts.items():
        if not isinstance(word, str) or not word:
            raise TypeError(f"expected every word to be a non-empty str, got {word!r}")
        if isinstance(count, bool) or not isinstance(count, int) or count <= 0:
            raise ValueError(f"expected every count to be a positive int, got {count!r} for word {word!r}")


def _initial_symbols(word: str, end_of_word: str) -> list[str]:
    return [*word[:-1], word[-1] + end_of_word]


def train_bpe(
    word_counts: Mapping[str, int], num_merges: int, *, end_of_word: str = END_OF_WORD
) -> list[tuple[str, str]]:
    """Learn up to ``num_merges`` BPE merges from word frequencies (Sennrich et al., 2016).

    Each word starts as its characters, the last one marked with ``end_of_word``. Each step
    counts every adjacent pair of symbols, weighted by the word's count, merges the most
    frequent pair everywhere (left to right, so ``a a a`` -> ``aa a``) and records it. Ties go
    to the pair whose left symbol, then right symbol, was created first (characters by code
    point, then marked characters by code point, then merged symbols in merge order). Pair
    counts are updated only in the words that contain the merged pair, and a heap finds the
    most frequent pair, so 2,000 merges on a 70,000-word corpus take about a second.

    Args:
        word_counts: word -> number of occurrences (e.g. ``Counter(split_words(text))``).
        num_merges: how many merges to learn; fewer are returned if every word is one symbol.
        end_of_word: the marker on each word's last character (``""`` for none).

    Returns:
        The merges as ``(left, right)`` pairs, most frequent first: ``left + right`` is the new symbol.

    Raises:
        TypeError: ``word_counts`` is not a mapping of non-empty strings, or ``num_merges`` not an int.
        ValueError: ``num_merges < 0``, no words, or a count that is not a positive int.

    Introduced in §5.1.
    """
    if isinstance(num_merges, bool) or not isinstance(num_merges, int):
        raise TypeError(f"expected num_merges as an int, got {type(num_merges).__name__}")
    if num_merges < 0:
        raise ValueError(f"expected num_merges >= 0, got {num_merges}")
    _check_word_counts(word_counts)
    words = [_initial_symbols(w, end_of_word) for w in word_counts]
    counts = list(word_counts.values())
    chars = sorted({c for w in word_counts for c in w})
    rank = {c: i for i, c in enumerate(chars)}  # creation order of symbols, for ties
    for c in chars:
        rank.setdefault(c + end_of_word, len(rank))

    pair_counts: Counter[tuple[str, str]] = Counter()
    where: defaultdict[tuple[str, str], set[int]] = defaultdict(set)  # pair -> words holding it
    for i, (symbols, count) in enumerate(zip(words, counts)):
        for pair in zip(symbols, symbols[1:]):
            pair_counts[pair] += count
            where[pair].add(i)
    heap = [(-n, rank[a], rank[b], a, b) for (a, b), n in pair_counts.items()]
    heapq.heapify(heap)

    merges: list[tuple[str, str]] = []
    while len(merges) < num_merges and heap:
        neg, _, _, a, b = heapq.heappop(heap)
        if pair_counts[(a, b)] != -neg:  # stale entry: the pair's count changed since it was pushed
            if pair_counts[(a, b)] > 0:
                heapq.heappush(heap, (-pair_counts[(a, b)], rank[a], rank[b], a, b))
            continue
        merges.append((a, b))
        new = a + b
        rank.setdefault(new, len(rank))
        changed = set()
        for i in where.pop((a, b)):
            old = words[i]
            for pair in zip(old, old[1:]):  # take the word's pairs out ...
                pair_counts[pair] -= counts[i]
            merged, j = [], 0
            while j < len(old):
                if j + 1 < len(old) and old[j] == a and old[j + 1] == b:
                    merged.append(new)
                    j += 2
                else:
                    merged.append(old[j])
                    j += 1
            words[i] = merged
            for pair in zip(merged, merged[1:]):  # ... and put the merged word's pairs back
                pair_counts[pair] += counts[i]
                where[pair].add(i)
                changed.add(pair)
        del pair_counts[(a, b)]
        for pair in changed:  # a count that went up needs a new heap entry; ones that went down are fixed lazily
            if pair_counts[pair] > 0:
                heapq.heappush(heap, (-pair_counts[pair], rank[pair[0]], rank[pair[1]], *pair))
    return merges


def _check_merges(merges: Sequence[tuple[str, str]]) -> None:
    for k, merge in enumerate(merges):
        if not (isinstance(merge, tuple | list) and len(merge) == 2 and all(isinstance(s, str) and s for s in merge)):
            raise TypeError(f"expected merges as (left, right) pairs of non-empty strings, got {merge!r} at index {k}")


def bpe_tokenize(word: str, merges: Sequence[tuple[str, str]], *, end_of_word: str = END_OF_WORD) -> list[str]:
    """Split one word into BPE tokens by applying ``merges`` in the order they were learned.

    Start from the word's characters (the last one marked with ``end_of_word``); while some
    adjacent pair is a merge, merge every occurrence of the earliest-learned such pair (its
    rank). This is how a trained BPE tokenizer splits new text, and what ``tokenizers`` does.

    Args:
        word: a non-empty string without spaces (one output of :func:`split_words`).
        merges: the output of :func:`train_bpe` (trained with the same ``end_of_word``).

    Returns:
        The tokens; ``"".join(tokens)`` is ``word + end_of_word``.

    Raises:
        TypeError: ``word`` is not a string, or a merge is not a pair of strings.
        ValueError: ``word`` is empty.

    Introduced in §5.1.
    """
    if not isinstance(word, str):
        raise TypeError(f"expected word as a str, got {type(word).__name__}")
    if not word:
        raise ValueError("expected a non-empty word, got ''")
    return _apply_merges(word, _ranks(merges), end_of_word)


def _ranks(merges: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
    _check_merges(merges)
    return {tuple(m): r for r, m in enumerate(merges)}


def _apply_merges(word: str, ranks: Mapping[tuple[str, str], int], end_of_word: str) -> list[str]:
    symbols = _initial_symbols(word, end_of_word)
    while len(symbols) > 1:
        ranked = [(ranks[p], p) for p in zip(symbols, symbols[1:]) if p in ranks]
        if not ranked:
            break
        _, (a, b) = min(ranked)  # the earliest-learned merge present
        merged, j = [], 0
        while j < len(symbols):
            if j + 1 < len(symbols) and symbols[j] == a and symbols[j + 1] == b:
                merged.append(a + b)
                j += 2
            else:
                merged.append(symbols[j])
                j += 1
        symbols = merged
    return symbols


def bpe_tokenize_text(text: str, merges: Sequence[tuple[str, str]], *, end_of_word: str = END_OF_WORD) -> list[str]:
    """Split a whole text into BPE tokens: :func:`split_words`, then :func:`bpe_tokenize` on each word.

    Each distinct word is split once (a cache), so a 50,000-character text takes a fraction of a second.

    Raises:
        TypeError: ``text`` is not a string, or a merge is not a pair of strings.

    Introduced in §5.1.
    """
    ranks = _ranks(merges)
    cache: dict[str, list[str]] = {}
    tokens = []
    for word in split_words(text):
        if word not in cache:
            cache[word] = _apply_merges(word, ranks, end_of_word)
        tokens.extend(cache[word])
    return tokens


def bpe_tokenizer(
    merges: Sequence[tuple[str, str]],
    alphabet: Iterable[str],
    *,
    end_of_word: str = END_OF_WORD,
    unk_token: str = "[UNK]",
):
    """A Hugging Face ``tokenizers.Tokenizer`` that applies our ``merges``: ``models.BPE`` + ``Whitespace``.

    The vocabulary is ``unk_token`` (id 0), then every character of ``alphabet`` in code-point
    order, the same characters with ``end_of_word``, then each merge's result in merge order.
    A character outside ``alphabet`` becomes ``unk_token``. ``encode(text).tokens`` then equals
    :func:`bpe_tokenize_text` ``(text, merges)`` for text over ``alphabet``.

    Args:
        merges: the output of :func:`train_bpe`.
        alphabet: the characters the tokenizer knows (e.g. every character of the training words).

    Returns:
        ``tokenizers.Tokenizer``.

    Raises:
        TypeError: a merge is not a pair of strings, or ``alphabet`` holds something other than single characters.
        ValueError: a merge uses a symbol that neither ``alphabet`` nor an earlier merge makes.

    Introduced in §5.1.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers

    _check_merges(merges)
    alphabet = sorted(set(alphabet))
    bad = [c for c in alphabet if not isinstance(c, str) or len(c) != 1]
    if bad:
        raise TypeError(f"expected alphabet as single characters, got {bad[:5]!r}")
    vocab = {unk_token: 0}
    for symbol in [*alphabet, *(c + end_of_word for c in alphabet)]:
        vocab.setdefault(symbol, len(vocab))
    for k, (a, b) in enumerate(merges):
        for s in (a, b):
            if s not in vocab:
                raise ValueError(f"merge {k} {(a, b)!r} uses {s!r}, which no character or earlier merge makes")
        vocab.setdefault(a + b, len(vocab))
    suffix = {"end_of_word_suffix": end_of_word} if end_of_word else {}
    model = models.BPE(vocab, [tuple(m) for m in merges], unk_token=unk_token, **suffix)
    tokenizer = Tokenizer(model)
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return tokenizer


def train_bpe_tokenizer(texts: Sequence[str], vocab_size: int,
                        special_tokens: Sequence[str] = ("[PAD]", "[UNK]", "[MASK]")):
    """A lower-casing BPE ``tokenizers.Tokenizer`` of ``vocab_size`` tokens learned on ``texts``.

    NFKC then lower-casing, the ``Whitespace`` split of :func:`split_words`, and
    ``BpeTrainer`` without an end-of-word marker (so its merges are :func:`train_bpe`'s);
    ``special_tokens`` get ids 0, 1, ... in order, so by default ``[PAD]`` is 0, ``[UNK]``
    1 and ``[MASK]`` 2. The recipe of chapter 5's pretraining (§5.4); training twice on
    the same texts gives the same tokenizer. Raises ValueError for an empty ``texts``, a
    ``vocab_size`` not above the number of special tokens, or special tokens without
    ``[UNK]``.

    Introduced in §7.4.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    specials = list(special_tokens)
    if isinstance(texts, str) or not len(texts):
        raise ValueError(f"expected a non-empty sequence of texts, got {type(texts).__name__} of length {len(texts)}")
    if vocab_size <= len(specials) or "[UNK]" not in specials:
        raise ValueError(f"expected vocab_size above the {len(specials)} special tokens and [UNK] among them, got "
                         f"vocab_size={vocab_size} and special_tokens={specials}")
    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer
