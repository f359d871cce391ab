"""Text as sequences of token ids: a character vocabulary, a corpus that ships with
Python, and the fixed-length windows a language model trains on.

* :class:`CharVocab` -- characters <-> integer ids (``encode``/``decode``).
* :func:`pydoc_text` -- Python's own reference pages on its statements, operators
  and types (the ``pydoc_data.topics`` module of the standard library): about
  465,000 characters of real English prose and code, offline everywhere.
* :class:`TokenWindows` -- a ``Dataset`` of ``(x, y)`` pairs, ``block_size``
  ids each, ``y`` being ``x`` shifted by one position (next-token targets).
* :func:`char_splits` -- text -> vocabulary, training and validation windows,
  split by position so that no character is in both.

The character-level GPT of chapter 4 trains on the same data. Shapes: ``N`` ids
in the text, ``T`` = ``block_size``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

__all__ = ["pydoc_text", "char_splits"]


class CharVocab:
    """A vocabulary of single characters, each with an integer id ``0 .. len - 1``.

    Ids follow the characters' sorted order, so the same set of characters
    always gives the same ids. ``encode("text")`` returns a ``torch.long``
    tensor (N,); ``decode(ids)`` turns ids (a tensor or a list) back into a
    string. A character outside the vocabulary, or an id out of range, raises a
    ``ValueError`` that names it.
    """

    def __init__(self, chars: Iterable[str]):
        chars = sorted(set(chars))
        bad = [c for c in chars if not isinstance(c, str) or len(c) != 1]
        if bad:
            raise ValueError(f"CharVocab expects single characters, got {bad[:5]!r}")
        if not chars:
            raise ValueError("CharVocab expects at least one character, got none")
        self.chars: list[str] = chars  # id -> character
        self.stoi: dict[str, int] = {c: i for i, c in enumerate(chars)}  # character -> id

    @classmethod
    def from_text(cls, text: str) -> CharVocab:
        """The vocabulary of every character that occurs in ``text``."""
        if not isinstance(text, str):
            raise ValueError(f"from_text expects a str, got {type(text).__name__}")
        return cls(text)

    def __len__(self) -> int:
        return len(self.chars)

    def __contains__(self, char: str) -> bool:
        return char in self.stoi

    def __repr__(self) -> str:
        return f"CharVocab({len(self)} characters)"

    def encode(self, text: str) -> torch.Tensor:
        """``text`` -> ids, a ``torch.long`` tensor of shape (len(text),)."""
        if not isinstance(text, str):
            raise ValueError(f"encode expects a str, got {type(text).__name__}")
        try:
            return torch.tensor([self.stoi[c] for c in text], dtype=torch.long)
        except KeyError:
            unknown = sorted({c for c in text if c not in self.stoi})
            raise ValueError(
                f"encode: {len(unknown)} character(s) are not in the vocabulary of {len(self)}: "
                f"{unknown[:10]!r}; build the vocabulary from a text that contains them"
            ) from None

    def decode(self, ids: torch.Tensor | Sequence[int]) -> str:
        """ids (a 1-D tensor or a list of ints) -> text."""
        ids = torch.as_tensor(ids)
        if ids.dim() != 1 or ids.is_floating_point():
            raise ValueError(f"decode expects a 1-D sequence of integer ids, got {ids.dtype} of shape {tuple(ids.shape)}")
        ids = ids.tolist()
        bad = [i for i in ids if not 0 <= i < len(self)]
        if bad:
            raise ValueError(f"decode: ids must be in [0, {len(self)}), got {bad[:10]}")
        return "".join(self.chars[i] for i in ids)


def pydoc_text() -> str:
    """Python's reference pages on its own language, as one string (no download).

    CPython ships the text that ``help("if")``, ``help("LISTS")`` and the like
    print in the standard-library module ``pydoc_data.topics`` (under the
    Python Software Foundation License). The topics are joined in sorted order
    of their names, separated by a blank line, so the result is the same on
    every run of one Python version (its length changes a little between
    versions).

    Introduced in §3.4.
    """
    from pydoc_data.topics import topics

    return "\n\n".join(topics[name].strip("\n") for name in sorted(topics)) + "\n"


class TokenWindows(Dataset):
    """Fixed-length windows of a 1-D tensor of token ids, with next-token targets.

    Window ``i`` starts at ``s = i * stride``: ``x = ids[s : s + block_size]``
    and ``y = ids[s + 1 : s + block_size + 1]``, so ``y[t]`` is the token after
    ``x[t]``. ``stride = block_size`` (the default) tiles the text without
    overlap; a smaller stride gives more, overlapping windows. Tokens after the
    last full window are not used.
    """

    def __init__(self, ids: torch.Tensor, block_size: int, stride: int | None = None):
        ids = torch.as_tensor(ids)
        if ids.dim() != 1 or ids.is_floating_point():
            raise ValueError(f"TokenWindows expects a 1-D tensor of integer ids, got {ids.dtype} of shape {tuple(ids.shape)}")
        if ids.numel() and ids.min() < 0:
            raise ValueError(f"TokenWindows expects token ids >= 0, got {ids.min().item()}")
        stride = block_size if stride is None else stride
        for name, value in (("block_size", block_size), ("stride", stride)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TokenWindows: {name} must be an integer >= 1, got {value!r}")
        if len(ids) < block_size + 1:
            raise ValueError(
                f"TokenWindows: a window needs block_size + 1 = {block_size + 1} ids (inputs and the "
                f"shifted targets), got only {len(ids)}; use a shorter block_size or more text"
            )
        self.ids, self.block_size, self.stride = ids.long(), block_size, stride

    def __len__(self) -> int:
        return (len(self.ids) - self.block_size - 1) // self.stride + 1

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"window {i} out of range for {len(self)} windows")
        s = (i % len(self)) * self.stride
        chunk = self.ids[s : s + self.block_size + 1]  # (T + 1,)
        return chunk[:-1], chunk[1:]  # x (T,), y (T,)


@dataclass
class TextSplits:
    """A text cut into training and validation windows, with its vocabulary.

    Unpacks as ``train, val, vocab = char_splits(text, block_size=64)``.
    ``train_ids`` and ``val_ids`` are the two parts of the encoded text.
    """

    train: TokenWindows
    val: TokenWindows
    vocab: CharVocab
    train_ids: torch.Tensor
    val_ids: torch.Tensor

    def __iter__(self):
        return iter((self.train, self.val, self.vocab))


def char_splits(
    text: str,
    block_size: int,
    val_fraction: float = 0.1,
    stride: int | None = None,
    vocab: CharVocab | None = None,
) -> TextSplits:
    """Encode ``text`` by character and cut it into training and validation windows.

    The first ``1 - val_fraction`` of the text (by position) trains and the
    rest validates, so no character and no window is shared: a model is
    judged on text it has never read. Random windows would leak, because
    neighbouring windows of one text overlap in content. ``stride`` applies to
    the training windows (default ``block_size``); validation windows tile
    their part without overlap, so each validation character is predicted
    once. The vocabulary defaults to every character of the whole ``text``, so
    that the validation part encodes.

    Introduced in §3.4.
    """
    if not isinstance(text, str):
        raise ValueError(f"char_splits expects a str, got {type(text).__name__}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"char_splits: val_fraction must be in (0, 1), got {val_fraction!r}")
    vocab = vocab if vocab is not None else CharVocab.from_text(text)
    ids = vocab.encode(text)  # (N,)
    n_train = int(len(ids) * (1 - val_fraction))
    train_ids, val_ids = ids[:n_train], ids[n_train:]
    for name, part in (("training", train_ids), ("validation", val_ids)):
        if len(part) < block_size + 1:
            raise ValueError(
                f"char_splits: the {name} part has {len(part)} characters, fewer than block_size + 1 = "
                f"{block_size + 1}; use more text, a shorter block_size or another val_fraction"
            )
    return TextSplits(
        TokenWindows(train_ids, block_size, stride), TokenWindows(val_ids, block_size), vocab, train_ids, val_ids
    )
