"""Tests for bigmodel_lib.objectives (chapter 5, section 5.2): BERT's masking statistics on a big
tensor, its invariants, equality with Hugging Face's DataCollatorForLanguageModeling under the same
seed (all-MiniLM-L6-v2's tokenizer, offline), next-token targets, and bad input."""

import math
import os

import pytest
import torch

from bigmodel_lib.metrics import IGNORE_INDEX as METRICS_IGNORE_INDEX
from bigmodel_lib.objectives import IGNORE_INDEX, causal_lm_targets, mask_tokens

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

VOCAB = 30_522  # BERT's
MASK, SPECIAL = 103, (0, 100, 101, 102, 103)  # [MASK]; [PAD], [UNK], [CLS], [SEP], [MASK]


def _ids(b=256, t=512, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1_000, VOCAB, (b, t), generator=g)
    ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP]
    ids[:, -40:-1] = 0  # padding
    return ids


def _within(observed, p, n, sds=4.0):
    sd = math.sqrt(p * (1 - p) / n)
    return abs(observed - p) < sds * sd, f"{observed:.5f} vs {p} +- {sds} * {sd:.5f} (n = {n})"


def test_ignore_index_is_the_one_of_metrics_and_cross_entropy():
    assert IGNORE_INDEX == METRICS_IGNORE_INDEX == -100
    logits, targets = torch.randn(3, 5), torch.tensor([1, IGNORE_INDEX, 4])
    torch.testing.assert_close(
        torch.nn.functional.cross_entropy(logits, targets),
        torch.nn.functional.cross_entropy(logits[[0, 2]], targets[[0, 2]]),
    )


def test_masking_statistics_are_berts_15_and_80_10_10():
    ids = _ids()
    inputs, labels = mask_tokens(
        ids, mask_id=MASK, vocab_size=VOCAB, special_ids=SPECIAL, generator=torch.Generator().manual_seed(0)
    )
    candidates = ~torch.isin(ids, torch.tensor(SPECIAL))
    chosen = labels != IGNORE_INDEX
    n = int(candidates.sum())
    ok, msg = _within(chosen.sum().item() / n, 0.15, n)
    assert ok, msg
    k = int(chosen.sum())
    as_mask = (inputs == MASK) & chosen
    kept = (inputs == ids) & chosen
    other = chosen & ~as_mask & ~kept
    # A random replacement equals [MASK] or the original id with probability 1 / VOCAB each: far below the bounds.
    for part, p in [(as_mask, 0.8), (other, 0.1), (kept, 0.1)]:
        ok, msg = _within(part.sum().item() / k, p, k)
        assert ok, msg
    # Random replacements are spread over the vocabulary, not stuck on a few ids.
    assert inputs[other].unique().numel() > 0.9 * other.sum().item()


def test_special_ids_are_never_chosen_and_unchosen_positions_are_untouched():
    ids = _ids(64, 128)
    before = ids.clone()
    inputs, labels = mask_tokens(
        ids, mask_id=MASK, vocab_size=VOCAB, special_ids=SPECIAL, generator=torch.Generator().manual_seed(3)
    )
    assert torch.equal(ids, before)  # the input is not modified
    chosen = labels != IGNORE_INDEX
    assert not chosen[torch.isin(ids, torch.tensor(SPECIAL))].any()
    assert torch.equal(labels[chosen], ids[chosen])
    assert torch.equal(inputs[~chosen], ids[~chosen])
    assert inputs.dtype == labels.dtype == torch.long and inputs.shape == labels.shape == ids.shape


def test_the_same_generator_gives_the_same_masks_and_edge_probabilities():
    ids = _ids(8, 64)
    a = mask_tokens(ids, mask_id=MASK, vocab_size=VOCAB, generator=torch.Generator().manual_seed(5))
    b = mask_tokens(ids, mask_id=MASK, vocab_size=VOCAB, generator=torch.Generator().manual_seed(5))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    inputs, labels = mask_tokens(
        ids, mask_id=MASK, vocab_size=VOCAB, mlm_probability=1.0, mask_replace_prob=1.0, random_replace_prob=0.0
    )
    assert torch.equal(labels, ids) and (inputs == MASK).all()
    inputs, labels = mask_tokens(ids, mask_id=MASK, vocab_size=VOCAB, mlm_probability=0.0)
    assert (labels == IGNORE_INDEX).all() and torch.equal(inputs, ids)


def test_equals_hugging_face_data_collator_with_the_same_seed():
    transformers = pytest.importorskip("transformers")
    from bigmodel_lib.pretrained import minilm_files

    tokenizer = transformers.BertTokenizerFast(tokenizer_file=str(minilm_files() / "tokenizer.json"))
    assert (len(tokenizer), tokenizer.mask_token_id) == (VOCAB, MASK)
    assert sorted(tokenizer.all_special_ids) == sorted(SPECIAL)
    collator = transformers.DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, return_tensors="pt")
    ids = _ids(32, 128)
    collator.generator = torch.Generator().manual_seed(0)
    theirs = collator.torch_mask_tokens(ids.clone())
    ours = mask_tokens(
        ids,
        mask_id=MASK,
        vocab_size=VOCAB,
        special_ids=tokenizer.all_special_ids,
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.equal(ours[0], theirs[0])
    assert torch.equal(ours[1], theirs[1])


def test_causal_lm_targets_are_the_next_tokens():
    ids = torch.arange(10).view(2, 5)
    x, y = causal_lm_targets(ids)
    assert x.tolist() == [[0, 1, 2, 3], [5, 6, 7, 8]]
    assert y.tolist() == [[1, 2, 3, 4], [6, 7, 8, 9]]


def test_bad_input_is_named():
    ids = _ids(2, 8)
    with pytest.raises(TypeError, match="dtype torch.long .* got torch.float32"):
        mask_tokens(ids.float(), mask_id=MASK, vocab_size=VOCAB)
    with pytest.raises(ValueError, match=r"shape \(B, T\), got \(16,\)"):
        mask_tokens(ids.flatten(), mask_id=MASK, vocab_size=VOCAB)
    with pytest.raises(ValueError, match="mlm_probability to be a probability in \\[0, 1\\], got 1.5"):
        mask_tokens(ids, mask_id=MASK, vocab_size=VOCAB, mlm_probability=1.5)
    with pytest.raises(ValueError, match="mask_replace_prob \\+ random_replace_prob <= 1"):
        mask_tokens(ids, mask_id=MASK, vocab_size=VOCAB, mask_replace_prob=0.9, random_replace_prob=0.2)
    with pytest.raises(ValueError, match="mask_id in \\[0, 100\\), got 103"):
        mask_tokens(ids, mask_id=MASK, vocab_size=100)
    with pytest.raises(TypeError, match="torch.Tensor, got list"):
        mask_tokens([[1, 2]], mask_id=MASK, vocab_size=VOCAB)
    with pytest.raises(ValueError, match="at least 2 positions"):
        causal_lm_targets(ids[:, :1])
