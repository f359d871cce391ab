"""Tests for bigmodel_lib.text (chapter 3, section 3.4; reused by chapter 4):
character vocabulary, the pydoc corpus, next-token windows and the split."""

import pytest
import torch
from torch.utils.data import DataLoader

from bigmodel_lib.text import CharVocab, TokenWindows, char_splits, pydoc_text


def test_vocab_ids_are_sorted_characters_and_round_trip():
    vocab = CharVocab.from_text("hello, world")
    assert vocab.chars == [" ", ",", "d", "e", "h", "l", "o", "r", "w"]
    assert len(vocab) == 9 and "h" in vocab and "z" not in vocab
    ids = vocab.encode("hello")
    assert ids.dtype == torch.long and ids.tolist() == [4, 3, 5, 5, 6]
    assert vocab.decode(ids) == "hello"
    assert vocab.decode([8, 6, 7, 5, 2]) == "world"
    assert vocab.encode("").shape == (0,)


def test_vocab_is_the_same_for_any_order_of_the_same_characters():
    assert CharVocab("cab").chars == CharVocab.from_text("abcabc").chars


def test_encode_names_unknown_characters():
    vocab = CharVocab.from_text("abc")
    with pytest.raises(ValueError, match=r"2 character\(s\) are not in the vocabulary of 3: \['x', 'y'\]"):
        vocab.encode("axyb")


def test_decode_rejects_ids_out_of_range_and_wrong_shapes():
    vocab = CharVocab.from_text("abc")
    with pytest.raises(ValueError, match=r"ids must be in \[0, 3\), got \[3, -1\]"):
        vocab.decode([0, 3, -1])
    with pytest.raises(ValueError, match="1-D sequence of integer ids"):
        vocab.decode(torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="1-D sequence of integer ids"):
        vocab.decode(torch.tensor([0.0, 1.0]))


def test_vocab_rejects_empty_and_multi_character_entries():
    with pytest.raises(ValueError, match="at least one character"):
        CharVocab("")
    with pytest.raises(ValueError, match="single characters"):
        CharVocab(["ab", "c"])


def test_pydoc_text_is_real_and_deterministic():
    corpus = pydoc_text()
    assert corpus == pydoc_text()
    assert len(corpus) > 100_000
    assert "The \"if\" statement" in corpus or "The if statement" in corpus
    assert 60 <= len(CharVocab.from_text(corpus)) <= 200


def test_windows_hold_inputs_and_next_token_targets():
    ids = torch.arange(10)
    windows = TokenWindows(ids, block_size=4)  # starts 0, 4 (8 + 4 + 1 > 10)
    assert len(windows) == 2
    x, y = windows[1]
    assert x.tolist() == [4, 5, 6, 7] and y.tolist() == [5, 6, 7, 8]
    assert windows[-1][0].tolist() == [4, 5, 6, 7]
    with pytest.raises(IndexError):
        windows[2]


def test_windows_with_a_smaller_stride_overlap():
    windows = TokenWindows(torch.arange(10), block_size=4, stride=1)
    assert len(windows) == 6  # starts 0..5; start 5 uses ids 5..9
    assert [windows[i][0][0].item() for i in range(6)] == [0, 1, 2, 3, 4, 5]
    assert windows[5][1].tolist() == [6, 7, 8, 9]
    assert len(TokenWindows(torch.arange(5), block_size=4)) == 1  # exactly block_size + 1 ids


def test_windows_batch_in_a_dataloader():
    x, y = next(iter(DataLoader(TokenWindows(torch.arange(100), block_size=8), batch_size=3)))
    assert x.shape == y.shape == (3, 8)
    assert torch.equal(x[:, 1:], y[:, :-1])


def test_windows_reject_bad_arguments():
    with pytest.raises(ValueError, match=r"block_size \+ 1 = 11 ids .* got only 10"):
        TokenWindows(torch.arange(10), block_size=10)
    with pytest.raises(ValueError, match="block_size must be an integer >= 1, got 0"):
        TokenWindows(torch.arange(10), block_size=0)
    with pytest.raises(ValueError, match="stride must be an integer >= 1, got 0"):
        TokenWindows(torch.arange(10), block_size=3, stride=0)
    with pytest.raises(ValueError, match="1-D tensor of integer ids"):
        TokenWindows(torch.zeros(10), block_size=3)


def test_split_is_by_position_with_no_shared_character():
    corpus = "".join(chr(ord("a") + i % 26) for i in range(1000))
    splits = char_splits(corpus, block_size=16, val_fraction=0.1, stride=4)
    train, val, vocab = splits
    assert len(splits.train_ids) == 900 and len(splits.val_ids) == 100
    assert torch.equal(torch.cat([splits.train_ids, splits.val_ids]), vocab.encode(corpus))
    # Training windows (inputs and targets) stay inside the first 900 characters.
    last_x, last_y = train[len(train) - 1]
    assert (len(train) - 1) * 4 + 16 + 1 <= 900
    assert vocab.decode(last_y) == corpus[(len(train) - 1) * 4 + 1 : (len(train) - 1) * 4 + 17]
    # Validation windows start at character 900 and tile without overlap.
    assert vocab.decode(val[0][0]) == corpus[900:916]
    assert vocab.decode(val[1][0]) == corpus[916:932]
    assert len(val) == (100 - 17) // 16 + 1


def test_split_rejects_too_little_text_and_bad_fractions():
    with pytest.raises(ValueError, match="validation part has 10 characters"):
        char_splits("x" * 100, block_size=16, val_fraction=0.1)
    with pytest.raises(ValueError, match=r"val_fraction must be in \(0, 1\)"):
        char_splits("x" * 100, block_size=4, val_fraction=1.0)


