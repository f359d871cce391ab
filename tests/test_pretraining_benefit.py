"""The parts of ``benchmarks/pretraining_benefit.py`` on tiny inputs: subsets, tokenizer, heads, one fine-tuning run."""

from __future__ import annotations

import importlib.util
import pathlib
from collections import Counter

import pytest
import torch

from bigmodel_lib.models.bert import BertClassifier, MaskedLMHead
from bigmodel_lib.sentiment import stratified_nested_order
from bigmodel_lib.tokenization import train_bpe_tokenizer

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("pretraining_benefit", ROOT / "benchmarks" / "pretraining_benefit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_prefix_of_the_nested_order_keeps_the_class_shares():
    labels = [0] * 50 + [1] * 30 + [2] * 20
    order = stratified_nested_order(labels, seed=0)
    assert sorted(order) == list(range(100))  # a permutation: every subset lies inside the larger ones
    for n in range(1, 101):
        counts = Counter(labels[i] for i in order[:n])
        for c, share in ((0, 0.5), (1, 0.3), (2, 0.2)):
            assert abs(counts[c] - n * share) <= 1, (n, c, counts)
    assert order != stratified_nested_order(labels, seed=1)
    assert order == stratified_nested_order(labels, seed=0)


def test_the_fine_tuning_budget_rule(bench):
    epochs, batch_size = bench.FINETUNE["epochs"], bench.FINETUNE["batch_size"]
    assert bench.finetune_steps(30, min_steps=50, max_steps=200) == 50
    assert bench.finetune_steps(300, min_steps=50, max_steps=200) == -(-epochs * 300 // batch_size)
    assert bench.finetune_steps(3000, min_steps=50, max_steps=200) == 200


def test_the_tokenizer_is_deterministic_and_encode_pads_and_truncates(bench):
    texts = ["the flight was late again", "great service, thanks!", "neutral news about the weather"] * 20
    tokenizer = train_bpe_tokenizer(texts, 120, bench.SPECIALS)
    assert tokenizer.to_str() == train_bpe_tokenizer(texts, 120, bench.SPECIALS).to_str()
    assert [tokenizer.token_to_id(t) for t in bench.SPECIALS] == [0, 1, 2]
    ids, lengths = bench.encode(tokenizer, ["The flight", "", "late " * 100], max_len=8)
    assert ids.shape == (3, 8) and lengths.tolist() == [2, 1, 8]
    assert ids[0, 2:].eq(0).all() and ids[1, 0] == bench.SPECIALS.index("[UNK]")
    assert ids[0, :2].tolist() == tokenizer.encode("the flight").ids


def test_the_masked_lm_head_is_tied_to_the_word_embeddings(bench):
    torch.manual_seed(0)
    body = bench.new_body(50)
    head = MaskedLMHead(body)
    assert head.embeddings.weight is body.word_embeddings.weight
    h = torch.randn(7, body.config.d_model)
    expected = head.norm(torch.nn.functional.gelu(head.dense(h))) @ body.word_embeddings.weight.T + head.bias
    torch.testing.assert_close(head(h), expected)
    assert head(h).shape == (7, 50)
    assert body.word_embeddings.weight.std().item() == pytest.approx(0.02, rel=0.2)  # BERT's init, not N(0, 1)
    with pytest.raises(TypeError, match="expected the BertEncoder whose embeddings the head shares, got Linear"):
        MaskedLMHead(torch.nn.Linear(3, 3))
    with pytest.raises(ValueError, match="num_classes >= 2, got 1"):
        BertClassifier(body, 1)
    with pytest.raises(ValueError, match="stratified_nested_order: expected at least one label"):
        stratified_nested_order([], seed=0)


def test_one_fine_tuning_run_is_reproducible_and_starts_from_the_saved_body(bench, tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    vocab = bench.VOCAB_SIZE
    ids = torch.randint(3, vocab, (12, 6))
    lengths = torch.full((12,), 6)
    labels = torch.tensor([0, 1, 2] * 4)
    weights = str(tmp_path / "body.safetensors")
    body = bench.new_body(vocab)
    save_file({k: v.contiguous() for k, v in body.state_dict().items()}, weights)
    runs = [
        bench.finetune(
            "pretrained",
            weights,
            (ids, lengths, labels),
            (ids, lengths, labels),
            seed=3,
            lr=1e-3,
            steps=3,
            device="cpu",
        )
        for _ in range(2)
    ]
    assert runs[0]["val_acc"] == runs[1]["val_acc"] and 0 <= runs[0]["val_acc"] <= 1
    for a, b in zip(runs[0]["model"].parameters(), runs[1]["model"].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # lr so small that the body barely moves: it started from the file's weights, not a fresh draw
    tiny = bench.finetune(
        "pretrained", weights, (ids, lengths, labels), (ids, lengths, labels), seed=3, lr=1e-12, steps=1, device="cpu"
    )
    torch.testing.assert_close(tiny["model"].body.word_embeddings.weight, body.word_embeddings.weight)


def test_a_subset_size_below_3_is_refused(bench):
    with pytest.raises(SystemExit):
        bench.main(["--sizes", "2"])
