"""Tests for bigmodel_lib.models.rnn (chapter 3): RNN, LSTM and GRU from their
equations against PyTorch, gradients over time, and the LSTM applications."""

import random

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.testing import assert_close

from bigmodel_lib.articles import CorrectedLSTMClassifier
from bigmodel_lib.models.char_lstm import CharLSTM
from bigmodel_lib.models.forecaster import SequenceForecaster, sliding_windows
from bigmodel_lib.models.rnn import LSTM, RNN, GRUCell, LSTMCell, RNNCell
from bigmodel_lib.probes import input_gradient_norms


def _random_sizes(rng):
    return dict(
        input_size=rng.randint(1, 6),
        hidden_size=rng.randint(1, 7),
        B=rng.randint(1, 4),
        T=rng.randint(1, 7),
    )


# ---------------------------------------------------------------------------
# From-scratch cells against PyTorch, weights copied
# ---------------------------------------------------------------------------


def test_rnn_cell_matches_nn_rnn_cell():
    torch.manual_seed(0)
    for nonlinearity in ("tanh", "relu"):
        reference = nn.RNNCell(5, 4, nonlinearity=nonlinearity)
        ours = RNNCell(5, 4, nonlinearity)
        ours.load_state_dict(reference.state_dict())  # same parameter names
        x, h = torch.randn(3, 5), torch.randn(3, 4)
        assert_close(ours(x, h), reference(x, h))


@pytest.mark.parametrize("num_layers", [1, 3])
@pytest.mark.parametrize("batch_first", [False, True])
def test_rnn_matches_nn_rnn(num_layers, batch_first):
    torch.manual_seed(num_layers)
    rng = random.Random(10 * num_layers + batch_first)
    for _ in range(4):
        s = _random_sizes(rng)
        reference = nn.RNN(s["input_size"], s["hidden_size"], num_layers, batch_first=batch_first)
        ours = RNN.from_torch(reference)
        shape = (s["B"], s["T"], s["input_size"]) if batch_first else (s["T"], s["B"], s["input_size"])
        x = torch.randn(shape)
        h0 = torch.randn(num_layers, s["B"], s["hidden_size"])
        for state in (None, h0):
            out, h_n = ours(x, state)
            ref_out, ref_h_n = reference(x, state)
            assert_close(out, ref_out)
            assert_close(h_n, ref_h_n)


def test_rnn_from_torch_copies_named_weights():
    reference = nn.RNN(3, 5, num_layers=2)
    ours = RNN.from_torch(reference)
    assert_close(ours.cells[1].weight_hh, reference.weight_hh_l1)
    assert_close(ours.cells[0].bias_ih, reference.bias_ih_l0)
    assert ours.cells[1].weight_ih.shape == (5, 5)  # layer 1 reads layer 0's hidden state


def test_rnn_output_layer_applies_w_hy():
    torch.manual_seed(1)
    model = RNN(3, 5, num_layers=2, batch_first=True, output_size=2)
    plain = RNN(3, 5, num_layers=2, batch_first=True)
    plain.load_state_dict(model.state_dict(), strict=False)  # same cells, no output layer
    x = torch.randn(4, 6, 3)
    y, h_n = model(x)
    hidden, h_n_plain = plain(x)
    assert y.shape == (4, 6, 2)
    assert_close(y, hidden @ model.output.weight.T + model.output.bias)  # y_t = W_hy h_t + b_y
    assert_close(h_n, h_n_plain)


def test_lstm_cell_matches_nn_lstm_cell():
    torch.manual_seed(2)
    reference = nn.LSTMCell(4, 6)
    ours = LSTMCell(4, 6)
    ours.load_state_dict(reference.state_dict())
    x, h, c = torch.randn(3, 4), torch.randn(3, 6), torch.randn(3, 6)
    for got, expected in zip(ours(x, (h, c)), reference(x, (h, c))):
        assert_close(got, expected)


@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("batch_first", [False, True])
def test_lstm_matches_nn_lstm(num_layers, batch_first):
    torch.manual_seed(20 + num_layers)
    rng = random.Random(100 * num_layers + batch_first)
    for _ in range(3):
        s = _random_sizes(rng)
        reference = nn.LSTM(s["input_size"], s["hidden_size"], num_layers, batch_first=batch_first)
        ours = LSTM.from_torch(reference)
        shape = (s["B"], s["T"], s["input_size"]) if batch_first else (s["T"], s["B"], s["input_size"])
        x = torch.randn(shape)
        state = (torch.randn(num_layers, s["B"], s["hidden_size"]), torch.randn(num_layers, s["B"], s["hidden_size"]))
        for initial in (None, state):
            out, (h_n, c_n) = ours(x, initial)
            ref_out, (ref_h_n, ref_c_n) = reference(x, initial)
            assert_close(out, ref_out)
            assert_close(h_n, ref_h_n)
            assert_close(c_n, ref_c_n)


def test_lstm_gradients_match_nn_lstm():
    torch.manual_seed(3)
    reference = nn.LSTM(3, 4, num_layers=2, batch_first=True)
    ours = LSTM.from_torch(reference)
    x = torch.randn(2, 5, 3)
    ours(x)[0].square().sum().backward()
    reference(x)[0].square().sum().backward()
    assert_close(ours.cells[0].weight_ih.grad, reference.weight_ih_l0.grad)
    assert_close(ours.cells[1].weight_hh.grad, reference.weight_hh_l1.grad)


def test_gru_cell_matches_nn_gru_cell():
    torch.manual_seed(4)
    rng = random.Random(4)
    for _ in range(5):
        s = _random_sizes(rng)
        reference = nn.GRUCell(s["input_size"], s["hidden_size"])
        ours = GRUCell.from_torch(reference)
        x, h = torch.randn(s["B"], s["input_size"]), torch.randn(s["B"], s["hidden_size"])
        assert_close(ours(x, h), reference(x, h))
        assert_close(ours(x), reference(x))  # zero initial state


def test_gru_cell_unrolled_matches_nn_gru_layer_and_gate_order():
    # nn.GRU stacks its gates r, z, n and applies the reset gate to W_hn h + b_hn: a GRUCell holding
    # layer 0's weights, stepped over time, must give nn.GRU's outputs (checked in section 3.3).
    torch.manual_seed(5)
    reference = nn.GRU(3, 6, batch_first=True)
    cell = GRUCell(3, 6)
    cell.load_state_dict({name: getattr(reference, f"{name}_l0") for name in cell.state_dict()})
    x = torch.randn(2, 7, 3)
    h, states = None, []
    for t in range(x.shape[1]):
        h = cell(x[:, t], h)
        states.append(h)
    ref_out, ref_h_n = reference(x)
    assert_close(torch.stack(states, dim=1), ref_out)
    assert_close(h, ref_h_n[0])
    # Swapping the first two gate blocks (r <-> z) gives another function: the order matters.
    with torch.no_grad():
        for p in (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh):
            p.copy_(torch.cat([p[6:12], p[:6], p[12:]]))
    assert not torch.allclose(cell(x[:, 0]), ref_out[:, 0])


def test_bidirectional_lstm_is_two_one_way_lstms():
    # Section 3.3's picture: a bidirectional layer is a forward LSTM and one that reads the sequence reversed.
    torch.manual_seed(6)
    bi = nn.LSTM(4, 5, bidirectional=True, batch_first=True)
    forward_lstm, backward_lstm = nn.LSTM(4, 5, batch_first=True), nn.LSTM(4, 5, batch_first=True)
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    forward_lstm.load_state_dict({f"{n}_l0": getattr(bi, f"{n}_l0") for n in names})
    backward_lstm.load_state_dict({f"{n}_l0": getattr(bi, f"{n}_l0_reverse") for n in names})
    x = torch.randn(3, 6, 4)
    out, (h_n, _) = bi(x)
    expected = torch.cat([forward_lstm(x)[0], backward_lstm(x.flip(1))[0].flip(1)], dim=-1)
    assert out.shape == (3, 6, 10) and h_n.shape == (2, 3, 5)
    assert_close(out, expected)
    assert_close(h_n[1], out[:, 0, 5:])  # the backward direction ends at step 1


# ---------------------------------------------------------------------------
# Vanishing and exploding gradients
# ---------------------------------------------------------------------------


def test_gradient_norm_decays_with_distance_for_small_tanh_rnn():
    torch.manual_seed(5)
    model = RNN(3, 8, batch_first=True)
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-0.2, 0.2)
    norms = input_gradient_norms(model, torch.randn(4, 20, 3))
    by_distance = norms.flip(0)  # distance 0 = the last input
    assert norms.shape == (20,)
    assert (by_distance[1:] < by_distance[:-1]).all()  # strictly smaller at every larger distance
    assert by_distance[10] < 1e-4 * by_distance[0]  # and geometrically so


def test_gradient_norm_grows_with_distance_when_w_hh_is_large():
    # ReLU RNN with W_hh = 1.2 I and positive inputs and weights stays linear:
    # d h_T / d x_t = 1.2^(T-1-t) W_xh, so the norm grows by 1.2 per step of distance.
    model = RNN(2, 3, nonlinearity="relu", batch_first=True)
    with torch.no_grad():
        model.cells[0].weight_ih.fill_(0.5)
        model.cells[0].weight_hh.copy_(1.2 * torch.eye(3))
        model.cells[0].bias_ih.zero_()
        model.cells[0].bias_hh.zero_()
    norms = input_gradient_norms(model, torch.rand(2, 10, 2) + 0.1)
    by_distance = norms.flip(0)
    assert_close(by_distance[1:] / by_distance[:-1], torch.full((9,), 1.2))
    assert_close(by_distance[0], torch.tensor(0.5 * (3 * 2) ** 0.5))  # ||W_xh||_F


def test_gradient_norms_equal_explicit_jacobian_and_accept_torch_modules():
    torch.manual_seed(6)
    model = nn.LSTM(3, 4, batch_first=False)
    x = torch.randn(6, 1, 3)  # (T, B, I)
    jac = torch.autograd.functional.jacobian(lambda inp: model(inp)[0][-1], x)  # (1, 4, T, 1, 3)
    expected = jac[0].permute(1, 0, 2, 3).reshape(6, -1).norm(dim=1)
    assert_close(input_gradient_norms(model, x, batch_first=False), expected)
    # a classifier's 2-D output is y_T itself
    assert input_gradient_norms(CorrectedLSTMClassifier(3, 4, 1, 2), torch.randn(2, 5, 3)).shape == (5,)


# ---------------------------------------------------------------------------
# The source articles' LSTM classifier
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# Applications
# ---------------------------------------------------------------------------


def test_char_lstm_shapes_and_training_reduces_loss():
    torch.manual_seed(10)
    text = torch.tensor([0, 1, 2, 3] * 12)  # "abcdabcd..."
    inputs, targets = text[:-1].unsqueeze(0), text[1:].unsqueeze(0)  # (1, 47)
    model = CharLSTM(vocab_size=4, embedding_dim=8, hidden_size=16)
    logits, (h, c) = model(inputs)
    assert logits.shape == (1, 47, 4) and h.shape == c.shape == (1, 1, 16)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(40):
        loss = F.cross_entropy(model(inputs)[0].reshape(-1, 4), targets.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0]
    # greedy decoding has learned the cycle
    assert model.generate([0], length=7, temperature=0) == [0, 1, 2, 3, 0, 1, 2, 3]


def test_char_lstm_generation_is_deterministic_under_a_seed():
    torch.manual_seed(11)
    model = CharLSTM(vocab_size=10, embedding_dim=4, hidden_size=8)
    model.train()
    torch.manual_seed(123)
    first = model.generate([1, 2, 3], length=20, temperature=1.5)
    torch.manual_seed(123)
    second = model.generate(torch.tensor([1, 2, 3]), length=20, temperature=1.5)
    third = model.generate([1, 2, 3], length=20, temperature=1.5, generator=torch.Generator().manual_seed(123))
    fourth = model.generate([1, 2, 3], length=20, temperature=1.5, generator=torch.Generator().manual_seed(123))
    assert first == second and third == fourth
    assert len(first) == 23 and first[:3] == [1, 2, 3] and all(0 <= i < 10 for i in first)
    assert model.training  # mode restored


def test_sliding_windows_values():
    inputs, targets = sliding_windows(torch.arange(6.0), window=3)
    assert_close(inputs, torch.tensor([[0.0, 1, 2], [1, 2, 3], [2, 3, 4]]))
    assert_close(targets, torch.tensor([3.0, 4, 5]))


def test_sequence_forecaster_shapes_and_training_reduces_loss():
    torch.manual_seed(12)
    series = torch.sin(torch.arange(80) * 0.3)
    inputs, targets = sliding_windows(series, window=10)  # (70, 10), (70,)
    model = SequenceForecaster(hidden_size=16)
    assert model(inputs).shape == (70,)
    assert model(inputs.unsqueeze(-1)).shape == (70,)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(40):
        loss = F.mse_loss(model(inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]
    assert model.forecast(series[:10], steps=5).shape == (5,)


# ---------------------------------------------------------------------------
# Bad input: ValueErrors that name what was expected and what was received
# ---------------------------------------------------------------------------


def test_rnn_wrong_feature_size():
    with pytest.raises(ValueError, match=r"built for input_size=3 features \(B, T, I\), got 5 features"):
        RNN(3, 4, batch_first=True)(torch.zeros(2, 6, 5))


def test_rnn_wrong_rank():
    with pytest.raises(ValueError, match=r"3-D input \(T, B, I\) with I=3, got a 2-D tensor of shape \(6, 3\)"):
        RNN(3, 4)(torch.zeros(6, 3))


def test_rnn_wrong_initial_state_shape():
    with pytest.raises(ValueError, match=r"h0 must have shape \(2, 5, 4\) .* got \(1, 5, 4\)"):
        RNN(3, 4, num_layers=2)(torch.zeros(6, 5, 3), torch.zeros(1, 5, 4))


def test_lstm_wrong_feature_size():
    with pytest.raises(ValueError, match=r"LSTM was built for input_size=4 .* got 2 features"):
        LSTM(4, 4)(torch.zeros(3, 2, 2))


def test_char_lstm_rejects_float_and_out_of_vocabulary_input():
    model = CharLSTM(vocab_size=5, embedding_dim=2, hidden_size=3)
    with pytest.raises(ValueError, match=r"integer character ids of shape \(B, T\), got torch.float32"):
        model(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"ids must be in \[0, 5\), got ids from 0 to 7"):
        model(torch.tensor([[0, 7]]))


def test_forecaster_wrong_shape():
    with pytest.raises(ValueError, match=r"\(B, T\) or \(B, T, 1\), got shape \(2, 5, 3\)"):
        SequenceForecaster()(torch.zeros(2, 5, 3))


def test_gru_cell_wrong_feature_size():
    with pytest.raises(ValueError, match=r"x_t of shape \(B, 4\), got \(2, 3\)"):
        GRUCell(4, 2)(torch.zeros(2, 3))


