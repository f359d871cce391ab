"""Tests for bigmodel_lib.models.bert (chapter 5, section 5.3): all-MiniLM-L6-v2's weights in the book's
own encoder give the same token outputs as ``transformers.BertModel`` and the same sentence embeddings as
``sentence_transformers.SentenceTransformer``, loaded offline from the same files; the parameter count;
and clear errors for another architecture's weights, wrong shapes, missing keys, a tokenizer of another
model and bad inputs.

Tolerances (float32 on the CPU): token outputs atol 1e-5, rtol 1e-4 (measured: max abs difference
1.8e-6 at real tokens, whose values reach about 6); unit-length sentence embeddings atol 1e-6, rtol 1e-5
(measured: 1.1e-7).
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from tokenizers import Tokenizer
from tokenizers.models import WordPiece
from torch.testing import assert_close

from bigmodel_lib import count_parameters
from bigmodel_lib.models.bert import (
    BertConfig,
    BertEncoder,
    bert_weight_names,
    check_tokenizer_matches,
    encode_sentences,
    load_bert_weights,
    load_minilm,
    mean_pooling,
)
from bigmodel_lib.models.gpt import GPT, GPTConfig
from bigmodel_lib.pretrained import minilm_files

TOKENS = dict(atol=1e-5, rtol=1e-4)
EMBEDDINGS = dict(atol=1e-6, rtol=1e-5)

SENTENCES = [
    "A man is playing a guitar.",
    "Hi",
    "The quick brown fox jumps over the lazy dog near the river bank, twice, before breakfast.",
    "Transformers read every token at once, so padding must be hidden from attention.",
    "Unbelievably, the tokenizer splits rare words like 'floccinaucinihilipilification' into pieces.",
]
# Longer than the 256 tokens sentence-transformers keeps: both must truncate the same way.
LONG = " ".join(f"word{i} and its neighbour" for i in range(120))


@pytest.fixture(scope="module")
def minilm():
    return load_minilm("cpu")


@pytest.fixture(scope="module")
def reference_bert():
    from transformers import BertModel

    return BertModel.from_pretrained(str(minilm_files())).eval()


@pytest.fixture(scope="module")
def state_dict():
    from safetensors.torch import load_file

    return load_file(str(minilm_files() / "model.safetensors"))


@pytest.fixture(scope="module")
def padded_batch(minilm):
    _, tokenizer = minilm
    tok = Tokenizer.from_str(tokenizer.to_str())
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    encoded = tok.encode_batch(SENTENCES)
    ids = torch.tensor([e.ids for e in encoded])
    mask = torch.tensor([e.attention_mask for e in encoded])
    assert len(set(mask.sum(1).tolist())) == len(SENTENCES) and (mask == 0).any()  # all lengths differ
    return ids, mask


def test_config_from_the_model_folder():
    c = BertConfig.from_hf_config(minilm_files())
    assert (c.vocab_size, c.d_model, c.num_layers, c.num_heads, c.d_ff, c.max_len, c.type_vocab_size) == (
        30522, 384, 6, 12, 1536, 512, 2)
    assert (c.layer_norm_eps, c.dropout, c.pad_id) == (1e-12, 0.1, 0)


def test_token_outputs_equal_transformers_bert(minilm, reference_bert, padded_batch):
    model, _ = minilm
    ids, mask = padded_batch
    with torch.no_grad():
        ours = model(ids, mask)  # (B, T, C)
        theirs = reference_bert(input_ids=ids, attention_mask=mask).last_hidden_state
    real = mask.bool()
    assert_close(ours[real], theirs[real], **TOKENS)  # padded positions hold unused vectors in both


def test_padding_does_not_change_real_tokens(minilm, padded_batch):
    model, tokenizer = minilm
    ids, mask = padded_batch
    with torch.no_grad():
        batched = model(ids, mask)
        for b, sentence in enumerate(SENTENCES):
            alone = model(torch.tensor([tokenizer.encode(sentence).ids]))[0]  # (T_b, C), no mask
            assert_close(batched[b, : alone.size(0)], alone, **TOKENS)


def test_sentence_embeddings_equal_sentence_transformers(minilm):
    from sentence_transformers import SentenceTransformer

    model, tokenizer = minilm
    reference = SentenceTransformer(str(minilm_files()), device="cpu")
    assert reference.max_seq_length == 256
    sentences = SENTENCES + [LONG]
    assert len(tokenizer.encode(LONG).ids) > 256
    theirs = reference.encode(sentences, convert_to_tensor=True, normalize_embeddings=True)
    ours = encode_sentences(model, tokenizer, sentences, batch_size=4)
    assert ours.shape == (len(sentences), 384)
    assert_close(ours, theirs, **EMBEDDINGS)
    assert_close(ours.norm(dim=1), torch.ones(len(sentences)))


def test_encode_sentences_leaves_the_tokenizer_alone(minilm):
    model, tokenizer = minilm
    encode_sentences(model, tokenizer, ["one", "two words"])
    assert tokenizer.padding is None and tokenizer.truncation is None
    assert encode_sentences(model, tokenizer, []).shape == (0, 384)


def test_mean_pooling_averages_real_tokens_only():
    outputs = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])  # (1, 3, 2), the last is padding
    assert_close(mean_pooling(outputs, torch.tensor([[1, 1, 0]])), torch.tensor([[2.0, 3.0]]))


def test_parameter_count_equals_the_reference_without_its_pooler(minilm, reference_bert):
    model, reference = minilm[0], reference_bert
    pooler = count_parameters(reference.pooler)
    assert count_parameters(reference) == 22_713_216  # the published 22.7M
    assert pooler == 384 * 384 + 384
    assert count_parameters(model) == count_parameters(reference) - pooler == 22_565_376


def test_every_parameter_is_loaded_from_the_state_dict(minilm, state_dict):
    model, _ = minilm
    names = bert_weight_names(6)
    ours = dict(model.named_parameters())
    assert set(names.values()) == set(ours)
    assert set(state_dict) - set(names) == {"pooler.dense.weight", "pooler.dense.bias", "embeddings.position_ids"}
    for theirs, mine in names.items():
        assert torch.equal(ours[mine], state_dict[theirs]), mine


def test_the_bert_prefix_is_accepted(state_dict, minilm):
    model = BertEncoder(BertConfig.from_hf_config(minilm_files()))
    load_bert_weights(model, {f"bert.{k}": v for k, v in state_dict.items()})
    for (name, p), q in zip(model.named_parameters(), minilm[0].parameters()):
        assert torch.equal(p, q), name


# ---------------------------------------------------------------------------
# Bad input


def small_model(**overrides) -> BertEncoder:
    return BertEncoder(dataclasses.replace(BertConfig.from_hf_config(minilm_files()), **overrides))


def test_a_gpt_state_dict_is_refused():
    gpt = GPT(GPTConfig(n_layer=2, n_embd=384, n_head=12, vocab_size=30522, block_size=512)).state_dict()
    with pytest.raises(ValueError, match=r"missing keys: embeddings\..*unexpected keys: .*transformer\.h\.0\..*"
                                         r"another architecture"):
        load_bert_weights(small_model(), gpt)


def test_another_number_of_layers_is_refused(state_dict):
    with pytest.raises(ValueError, match=r"missing keys: none; unexpected keys: encoder\.layer\.4\..*"
                                         r"It has 6 encoder layers, the model 4"):
        load_bert_weights(small_model(num_layers=4), state_dict)


def test_another_width_is_refused_with_both_shapes(state_dict):
    with pytest.raises(ValueError, match=r"embeddings\.word_embeddings\.weight: expected \(30522, 192\), "
                                         r"got \(30522, 384\)"):
        load_bert_weights(small_model(d_model=192, d_ff=768), state_dict)


def test_one_tensor_of_the_wrong_shape_is_refused_and_nothing_is_copied(state_dict):
    bad = dict(state_dict)
    bad["encoder.layer.3.intermediate.dense.weight"] = torch.zeros(1000, 384)
    model = small_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"^1 tensor\(s\).*encoder\.layer\.3\.intermediate\.dense\.weight: "
                                         r"expected \(1536, 384\), got \(1000, 384\)$"):
        load_bert_weights(model, bad)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_a_missing_key_is_named(state_dict):
    bad = {k: v for k, v in state_dict.items() if k != "encoder.layer.2.attention.self.key.bias"}
    with pytest.raises(ValueError, match=r"missing keys: encoder\.layer\.2\.attention\.self\.key\.bias; "
                                         r"unexpected keys: none$"):
        load_bert_weights(small_model(), bad)


def wordpiece(vocab: dict[str, int]) -> Tokenizer:
    return Tokenizer(WordPiece(vocab, unk_token="[UNK]"))


def test_a_tokenizer_of_another_model_is_refused():
    config = BertConfig.from_hf_config(minilm_files())
    with pytest.raises(ValueError, match=r"vocabulary of 5 tokens, the model's embedding table has 30522 rows"):
        check_tokenizer_matches(wordpiece({"[UNK]": 0, "[PAD]": 1, "[CLS]": 2, "[SEP]": 3, "cat": 4}), config)
    same_size = {"[UNK]": 0, "[PAD]": 1} | {f"w{i}": i for i in range(2, 30522)}
    with pytest.raises(ValueError, match=r"\[PAD\] has id 1, the model's pad_id is 0"):
        check_tokenizer_matches(wordpiece(same_size), config)


def test_encode_sentences_refuses_a_mismatched_tokenizer_and_a_bare_string(minilm):
    model, tokenizer = minilm
    with pytest.raises(ValueError, match="vocabulary of 2 tokens"):
        encode_sentences(model, wordpiece({"[PAD]": 0, "[UNK]": 1}), ["a cat"])
    with pytest.raises(ValueError, match="a list of strings"):
        encode_sentences(model, tokenizer, "a single sentence")


@pytest.mark.parametrize(
    "ids, mask, message",
    [
        (torch.tensor([[101, 30522, 102]]), None, r"expected input_ids \(token ids\) in \[0, 30522\), got 30522"),
        (torch.tensor([[101, -1, 102]]), None, r"in \[0, 30522\), got -1"),
        (torch.tensor([101.0, 102.0]), None, r"expected input_ids of shape \(B, T\) and dtype torch.long, "
                                             r"got shape \(2,\) and dtype torch.float32"),
        (torch.zeros(1, 513, dtype=torch.long), None, r"at most max_len=512 tokens.*got T=513"),
        (torch.tensor([[101, 102]]), torch.tensor([[1, 1, 0]]), r"attention_mask of the same shape as input_ids "
                                                                 r"\(1, 2\), got \(1, 3\)"),
        (torch.tensor([[101, 102]]), torch.tensor([[1.0, 1.0]]), r"0s and 1s .* got dtype torch.float32"),
        (torch.tensor([[101, 102]]), torch.tensor([[1, 2]]), r"0s and 1s .* got the values \[1, 2\]"),
        (torch.tensor([[101, 102], [101, 0]]), torch.tensor([[1, 1], [0, 0]]), r"row 1 has no 1.*not True at padding"),
    ],
)
def test_bad_inputs_are_named(minilm, ids, mask, message):
    with pytest.raises(ValueError, match=message):
        minilm[0](ids, mask)


def test_bad_token_type_ids_are_named(minilm):
    with pytest.raises(ValueError, match=r"expected token_type_ids in \[0, 2\), got 2"):
        minilm[0](torch.tensor([[101, 102]]), token_type_ids=torch.tensor([[0, 2]]))


def test_configs_of_other_models_are_refused():
    hf = json.loads((minilm_files() / "config.json").read_text())
    assert BertConfig.from_hf_config(hf) == BertConfig.from_hf_config(minilm_files() / "config.json")
    with pytest.raises(ValueError, match=r"expected a BERT config \(model_type 'bert'\), got model_type 'gpt2'"):
        BertConfig.from_hf_config({"model_type": "gpt2", "n_layer": 12})
    incomplete = {k: v for k, v in hf.items() if k not in ("hidden_size", "intermediate_size")}
    with pytest.raises(ValueError, match=r"no field 'hidden_size', 'intermediate_size'"):
        BertConfig.from_hf_config(incomplete)
    with pytest.raises(ValueError, match=r"position_embedding_type='absolute' only, got 'relative_key'"):
        BertConfig.from_hf_config(hf | {"position_embedding_type": "relative_key"})
    with pytest.raises(ValueError, match=r"hidden_act='gelu' only, got 'gelu_new'"):
        BertConfig.from_hf_config(hf | {"hidden_act": "gelu_new"})


def test_fused_attention_gives_the_same_outputs(minilm, state_dict, padded_batch):
    fused = small_model(fused_attention=True).eval()
    load_bert_weights(fused, state_dict)
    ids, mask = padded_batch
    with torch.no_grad():
        assert_close(fused(ids, mask)[mask.bool()], minilm[0](ids, mask)[mask.bool()], **TOKENS)
