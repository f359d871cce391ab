"""The three sequence classifiers of chapter 7 against independent computations: PyTorch's own
layers with the same weights, an explicit loop over positions for the dilated convolution, and the
exact reach of the convolution; plus bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
from torch.testing import assert_close

from bigmodel_lib.models.attention import causal_mask
from bigmodel_lib.models.positional import sinusoidal_table
from bigmodel_lib.models.sequence_classifiers import (
    CausalConvClassifier,
    CausalTransformerClassifier,
    RecurrentClassifier,
)

V, CLASSES = 11, 5


def tokens(b=3, t=9, seed=0):
    return torch.randint(0, V, (b, t), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_the_recurrent_classifier_reads_the_final_hidden_state(cell):
    torch.manual_seed(0)
    model = RecurrentClassifier(cell, V, CLASSES, embedding_dim=6, hidden_size=7)
    x = tokens()
    _, state = model.rnn(model.embed(x))
    h_n = state[0] if cell == "lstm" else state  # (1, B, H)
    assert_close(model(x), model.head(h_n[0]))


def test_the_lstm_starts_with_its_forget_gate_open():
    model = RecurrentClassifier("lstm", V, CLASSES, embedding_dim=4, hidden_size=6, forget_bias=2.0)
    bias = model.rnn.bias_ih_l0 + model.rnn.bias_hh_l0  # gates i, f, g, o
    assert torch.equal(bias[6:12], torch.full((6,), 2.0))


def test_the_dilated_convolution_equals_a_loop_over_positions():
    torch.manual_seed(0)
    model = CausalConvClassifier(V, CLASSES, channels=4, num_layers=3)
    x = tokens(b=2, t=10)
    h = model.embed(x)  # (B, T, C)
    for conv in model.convs:  # h_t + relu(W_0 h_{t-d} + W_1 h_t + b), with h_{t-d} = 0 before the start
        d, w, b = conv.dilation[0], conv.weight, conv.bias  # w: (C_out, C_in, 2)
        before = torch.cat([torch.zeros_like(h[:, :d]), h[:, :-d]], dim=1)
        h = h + torch.relu(before @ w[:, :, 0].T + h @ w[:, :, 1].T + b)
    assert_close(model(x), model.head(h[:, -1]))


def test_the_convolution_sees_exactly_its_receptive_field():
    torch.manual_seed(0)
    model = CausalConvClassifier(V, CLASSES, channels=8, num_layers=4).eval()
    assert model.receptive_field() == 2**4

    def first_token_matters(length):
        x = tokens(b=8, t=length, seed=length)
        changed = x.clone()
        changed[:, 0] = (changed[:, 0] + 1) % V
        with torch.no_grad():
            return not torch.equal(model(x), model(changed))

    assert first_token_matters(16) and not first_token_matters(17)


def test_the_transformer_classifier_equals_pytorchs_encoder_with_the_same_weights():
    torch.manual_seed(0)
    d, layers = 16, 2
    ours = CausalTransformerClassifier(V, CLASSES, d_model=d, max_len=12, num_layers=layers, num_heads=4).eval()
    theirs = nn.ModuleList(nn.TransformerEncoderLayer(d, 4, 4 * d, dropout=0.0, batch_first=True, norm_first=True)
                           for _ in range(layers)).eval()
    for layer, torch_layer in zip(ours.layers, theirs):
        layer.load_from_torch(torch_layer)
    x = tokens(t=12)
    with torch.no_grad():
        h = ours.embed(x) * math.sqrt(d) + sinusoidal_table(12, d)
        for torch_layer in theirs:
            h = torch_layer(h, src_mask=~causal_mask(12), is_causal=True)  # PyTorch: True = may NOT attend
        assert_close(ours(x), ours.head(ours.norm(h[:, -1])))


def test_the_fused_and_from_scratch_attention_give_the_same_classifier():
    torch.manual_seed(0)
    fused = CausalTransformerClassifier(V, CLASSES, d_model=8, max_len=10, fused_attention=True).eval()
    scratch = CausalTransformerClassifier(V, CLASSES, d_model=8, max_len=10, fused_attention=False).eval()
    scratch.load_state_dict(fused.state_dict())
    with torch.no_grad():
        assert_close(fused(tokens(t=10)), scratch(tokens(t=10)))


def test_the_transformers_weights_do_not_depend_on_its_length():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(CausalTransformerClassifier(V, CLASSES, 8, max_len=10)) == count(
        CausalTransformerClassifier(V, CLASSES, 8, max_len=1000))


@pytest.mark.parametrize(
    ("model", "x", "message"),
    [
        (RecurrentClassifier("lstm", V, CLASSES, 4, 4), torch.rand(2, 5), "dtype torch.long, got (2, 5) torch.float32"),
        (CausalConvClassifier(V, CLASSES, 4, 2), torch.zeros(2, 3, 4, dtype=torch.long), "of shape (batch, length)"),
        (CausalConvClassifier(V, CLASSES, 4, 2), torch.full((1, 3), V), f"ids in [0, {V}), got values from {V}"),
        (CausalTransformerClassifier(V, CLASSES, 8, max_len=6), torch.zeros(1, 7, dtype=torch.long),
         "at most 6 positions (max_len), got a sequence of 7"),
    ],
)
def test_bad_input_is_named(model, x, message):
    with pytest.raises(ValueError) as error:
        model(x)
    assert message in str(error.value)


def test_an_unknown_cell_is_refused():
    with pytest.raises(ValueError, match=r"expected cell to be one of \['gru', 'lstm', 'rnn'\], got 'mamba'"):
        RecurrentClassifier("mamba", V, CLASSES, 4, 4)
