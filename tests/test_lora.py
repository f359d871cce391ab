"""Tests for bigmodel_lib.lora (chapter 5, section 5.5): a LoRA layer starts as the frozen layer exactly,
only its A and B receive gradients, it computes W + (alpha/r) B A (checked against the formula and
against Hugging Face ``peft`` on a BERT model with the same weights), merging gives the same outputs,
switching it off gives the pretrained model back, and bad input gets clear errors.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.testing import assert_close

from bigmodel_lib.lora import LoRALinear, add_lora, merge_lora, set_lora_enabled
from bigmodel_lib.models.bert import BertClassifier, BertConfig, BertEncoder, load_bert_weights

CONFIG = BertConfig(vocab_size=100, d_model=32, num_layers=2, num_heads=4, d_ff=64, max_len=16, type_vocab_size=2,
                    dropout=0.0)


def _batch(seed=0, b=3, t=9):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, CONFIG.vocab_size, (b, t), generator=g)
    mask = torch.ones(b, t, dtype=torch.long)
    mask[1, 6:] = 0
    ids[1, 6:] = 0
    return ids, mask


def _randomise_b(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, LoRALinear):
                m.lora_B.normal_(0, 0.5)


def test_formula_and_zero_start():
    torch.manual_seed(0)
    base = nn.Linear(12, 7)
    x = torch.randn(4, 5, 12)
    before = base(x)
    layer = LoRALinear(base, r=3, alpha=6.0)
    assert layer.lora_A.shape == (3, 12) and layer.lora_B.shape == (7, 3) and layer.scaling == 2.0
    assert torch.equal(layer(x), before)  # B = 0: exactly the frozen layer
    with torch.no_grad():
        layer.lora_B.normal_()
    W = base.weight + 2.0 * layer.lora_B @ layer.lora_A
    assert_close(layer(x), x @ W.T + base.bias)  # h = x (W + (alpha/r) B A)^T + b
    assert_close(layer.merged()(x), layer(x))
    assert not base.weight.requires_grad and not base.bias.requires_grad


def test_only_a_and_b_get_gradients():
    torch.manual_seed(0)
    body = BertEncoder(CONFIG)
    names = add_lora(body, r=4, alpha=8)
    assert names == [f"layers.{i}.self_attn.{w}" for i in range(2) for w in ("w_q", "w_v")]
    model = BertClassifier(body, num_classes=3)  # the head is added afterwards: trainable
    ids, mask = _batch()
    F.cross_entropy(model(ids, mask), torch.tensor([0, 1, 2])).backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    expected = {f"body.{n}.lora_{ab}" for n in names for ab in "AB"} | {"head.weight", "head.bias"}
    assert trainable == with_grad == expected
    assert sum(p.numel() for n, p in model.named_parameters() if "lora_" in n) == 4 * 4 * (32 + 32)
    # B is zero at the start, so A's first gradient is zero too; B's is not
    assert all(p.grad.abs().sum() == 0 for n, p in model.named_parameters() if n.endswith("lora_A"))
    assert all(p.grad.abs().sum() > 0 for n, p in model.named_parameters() if n.endswith("lora_B"))


def test_starts_as_pretrained_merge_and_switch_off():
    torch.manual_seed(0)
    body = BertEncoder(CONFIG).eval()
    ids, mask = _batch()
    with torch.no_grad():
        pretrained = body(ids, mask)
        add_lora(body, targets=("w_q", "w_k", "w_v", "w_o", "linear1", "linear2"), r=2, alpha=4)
        assert torch.equal(body(ids, mask), pretrained)
        _randomise_b(body)
        adapted = body(ids, mask)
        assert (adapted - pretrained).abs().max() > 1e-2
        assert set_lora_enabled(body, False) == 12
        assert torch.equal(body(ids, mask), pretrained)
        set_lora_enabled(body, True)
        merge_lora(body)
        assert not any(isinstance(m, LoRALinear) for m in body.modules())
        assert_close(body(ids, mask), adapted, atol=1e-5, rtol=1e-5)
    assert not any(p.requires_grad for p in body.parameters())


def test_equals_peft_on_bert():
    """The same BERT weights and the same A, B in Hugging Face's BertModel + peft LoRA and in ours."""
    peft = pytest.importorskip("peft")
    from transformers import BertConfig as HFConfig
    from transformers import BertModel

    torch.manual_seed(0)
    hf = BertModel(HFConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=64, max_position_embeddings=16, type_vocab_size=2,
                            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
                   add_pooling_layer=False).eval()
    ours = load_bert_weights(BertEncoder(CONFIG), hf.state_dict()).eval()
    theirs = peft.get_peft_model(hf, peft.LoraConfig(r=4, lora_alpha=12, target_modules=["query", "value"],
                                                     lora_dropout=0.0))
    add_lora(ours, r=4, alpha=12)
    theirs_lora = {n: p for n, p in theirs.named_parameters() if "lora_" in n}
    assert len(theirs_lora) == 8 and all(p.requires_grad for p in theirs_lora.values())
    with torch.no_grad():
        for i in range(2):
            for hf_name, our_name in (("query", "w_q"), ("value", "w_v")):
                layer = ours.layers[i].self_attn.get_submodule(our_name)
                prefix = f"base_model.model.encoder.layer.{i}.attention.self.{hf_name}"
                layer.lora_A.copy_(theirs_lora[f"{prefix}.lora_A.default.weight"])
                theirs_lora[f"{prefix}.lora_B.default.weight"].normal_(0, 0.5)
                layer.lora_B.copy_(theirs_lora[f"{prefix}.lora_B.default.weight"])
        ids, mask = _batch()
        expected = theirs(input_ids=ids, attention_mask=mask).last_hidden_state
        got = ours(ids, mask)
    real = mask.bool()
    assert_close(got[real], expected[real], atol=1e-5, rtol=1e-4)
    trainable_theirs = sum(p.numel() for p in theirs.parameters() if p.requires_grad)
    assert trainable_theirs == sum(p.numel() for p in ours.parameters() if p.requires_grad) == 2 * 2 * 4 * (32 + 32)


def test_bad_input():
    with pytest.raises(TypeError, match="adapts an nn.Linear, got Conv1d"):
        LoRALinear(nn.Conv1d(3, 3, 1))
    with pytest.raises(ValueError, match=r"1 <= r <= min\(d_in, d_out\) = 4, got 5"):
        LoRALinear(nn.Linear(4, 9), r=5)
    with pytest.raises(ValueError, match="integer rank"):
        LoRALinear(nn.Linear(4, 9), r=2.0)
    with pytest.raises(ValueError, match="alpha > 0, got 0"):
        LoRALinear(nn.Linear(4, 9), r=2, alpha=0)
    with pytest.raises(ValueError, match=r"no nn.Linear named \['query'\].*'w_q'"):
        add_lora(BertEncoder(CONFIG), targets="query")
