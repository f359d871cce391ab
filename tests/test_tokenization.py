"""Tests for bigmodel_lib.tokenization (chapter 5, section 5.1): BPE merges checked by hand on
Sennrich et al.'s example, our tokenization equal to Hugging Face ``tokenizers`` with our merges on
held-out text, our merges equal to ``BpeTrainer``'s where its tie rule is ours, and bad input."""

import json
from collections import Counter

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from bigmodel_lib.text import pydoc_text
from bigmodel_lib.tokenization import (
    END_OF_WORD,
    bpe_tokenize,
    bpe_tokenize_text,
    bpe_tokenizer,
    split_words,
    train_bpe,
)

# Sennrich et al. (2016), section 3.2: {low: 5, lower: 2, newest: 6, widest: 3}.
SENNRICH = {"low": 5, "lower": 2, "newest": 6, "widest": 3}


@pytest.fixture(scope="module")
def pydoc_parts():
    text = pydoc_text()
    cut = int(0.9 * len(text))
    return text[:cut], text[cut:]


def test_sennrich_example_first_merges_by_hand():
    # Pair counts at the start: (e, s) = newest 6 + widest 3 = 9 and (s, t</w>) = 9 tie; (e, s) wins because
    # its left symbol 'e' comes before 's'. Then (es, t</w>) = 9, then (l, o) = low 5 + lower 2 = 7.
    merges = train_bpe(SENNRICH, 4)
    assert merges == [("e", "s"), ("es", "t</w>"), ("l", "o"), ("e", "w")]
    # Without the end-of-word marker 'est' is the same symbol wherever it is.
    assert train_bpe(SENNRICH, 2, end_of_word="") == [("e", "s"), ("es", "t")]


def test_unseen_word_uses_merges_in_learned_order():
    merges = train_bpe(SENNRICH, 10)
    assert bpe_tokenize("lowest", merges) == ["lo", "w", "est</w>"]
    assert bpe_tokenize("newest", merges) == ["newest</w>"]
    assert bpe_tokenize("x", merges) == ["x</w>"]
    assert "".join(bpe_tokenize("widower", merges)) == "widower" + END_OF_WORD


def test_ties_go_to_the_earliest_created_symbols_whatever_the_input_order():
    assert train_bpe({"cd": 1, "ab": 1}, 1, end_of_word="") == [("a", "b")]
    assert train_bpe({"ab": 1, "cd": 1}, 1, end_of_word="") == [("a", "b")]


def test_overlapping_pairs_merge_left_to_right_and_training_stops_when_nothing_is_left():
    assert train_bpe({"aaa": 1}, 5, end_of_word="") == [("a", "a"), ("aa", "a")]
    assert bpe_tokenize("aaaa", [("a", "a")], end_of_word="") == ["aa", "aa"]
    assert train_bpe({"a": 3}, 5) == []
    assert train_bpe(SENNRICH, 0) == []


def test_merge_counts_are_weighted_by_word_frequency():
    assert train_bpe({"ab": 1, "cd": 2}, 1, end_of_word="") == [("c", "d")]


def test_split_words_is_the_whitespace_pre_tokenizer(pydoc_parts):
    train, _ = pydoc_parts
    theirs = [w for w, _ in pre_tokenizers.Whitespace().pre_tokenize_str(train)]
    assert split_words(train) == theirs
    assert split_words("x = f(a, b)") == ["x", "=", "f", "(", "a", ",", "b", ")"]


@pytest.mark.parametrize("end_of_word", [END_OF_WORD, ""])
def test_our_tokenization_equals_tokenizers_with_our_merges_on_held_out_text(pydoc_parts, end_of_word):
    train, held_out = pydoc_parts
    counts = Counter(split_words(train))
    merges = train_bpe(counts, 500, end_of_word=end_of_word)
    assert len(merges) == 500
    alphabet = {c for w in counts for c in w}
    held_out = "".join(c for c in held_out if c in alphabet or c.isspace())
    ours = bpe_tokenize_text(held_out, merges, end_of_word=end_of_word)
    theirs = bpe_tokenizer(merges, alphabet, end_of_word=end_of_word).encode(held_out).tokens
    assert len(ours) > 5_000
    assert ours == theirs


def test_unknown_characters_become_the_unknown_token():
    tokenizer = bpe_tokenizer(train_bpe(SENNRICH, 3), "lowernstid")
    assert tokenizer.encode("lowest lo!").tokens == ["lo", "w", "est</w>", "l", "o</w>", "[UNK]"]


def _trainer_merges(text, num_merges, end_of_word):
    alphabet = set("".join(split_words(text)))
    suffix = {"end_of_word_suffix": end_of_word} if end_of_word else {}
    marked = {w[-1] for w in split_words(text)} if end_of_word else set()
    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]", **suffix))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(
        vocab_size=len(alphabet) + len(marked) + num_merges, min_frequency=0, show_progress=False, **suffix
    )
    tokenizer.train_from_iterator([text], trainer=trainer)
    return [tuple(m) for m in json.loads(tokenizer.to_str())["model"]["merges"]]


def test_merges_equal_bpe_trainers_without_a_marker(pydoc_parts):
    # Without a marker BpeTrainer numbers the characters by code point and merged tokens in order, and breaks
    # count ties by the smaller (left id, right id): our rule, so the merges agree one for one.
    train, _ = pydoc_parts
    ours = train_bpe(Counter(split_words(train)), 300, end_of_word="")
    assert _trainer_merges(train, 300, "") == ours


def test_merges_with_a_marker_are_bpe_trainers_up_to_ties(pydoc_parts):
    # With a marker BpeTrainer numbers the marked characters in hash order, so equal counts may come out in
    # another order: the most frequent merges (no ties among them here) agree, and the 300 as a set.
    train, _ = pydoc_parts
    ours = train_bpe(Counter(split_words(train)), 300)
    theirs = _trainer_merges(train, 300, END_OF_WORD)
    assert theirs[:100] == ours[:100]
    assert set(theirs) == set(ours)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="num_merges >= 0, got -1"):
        train_bpe(SENNRICH, -1)
    with pytest.raises(TypeError, match="num_merges as an int, got float"):
        train_bpe(SENNRICH, 2.0)
    with pytest.raises(ValueError, match="at least one word"):
        train_bpe({}, 3)
    with pytest.raises(TypeError, match="non-empty str, got 3"):
        train_bpe({3: 1}, 3)
    with pytest.raises(ValueError, match="positive int, got 0 for word 'low'"):
        train_bpe({"low": 0}, 3)
    with pytest.raises(TypeError, match="mapping word -> count, got list"):
        train_bpe(["low"], 3)
    with pytest.raises(ValueError, match="non-empty word"):
        bpe_tokenize("", [])
    with pytest.raises(TypeError, match="pairs of non-empty strings, got 'es' at index 0"):
        bpe_tokenize("best", ["es"])
    with pytest.raises(ValueError, match="uses 'zz', which no character or earlier merge makes"):
        bpe_tokenizer([("zz", "a")], "az")
    with pytest.raises(TypeError, match="text as a str, got bytes"):
        split_words(b"abc")
