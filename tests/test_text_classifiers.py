"""bigmodel_lib.models.text_classifiers (section 7.4) against references: the Kim CNN's convolutions and
max-over-time against a loop and F.conv1d, the BiLSTM's two directions against nn.LSTM run each way on each
text, padding that changes nothing, the encoder's padding mask, and the errors; and metrics.wilson_interval and
tokenization.train_bpe_tokenizer, moved from the benchmarks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from bigmodel_lib.metrics import wilson_interval
from bigmodel_lib.models.text_classifiers import (
    BagOfEmbeddings,
    BiLSTMClassifier,
    KimCNN,
    TransformerEncoderClassifier,
    masked_mean,
)
from bigmodel_lib.tokenization import train_bpe_tokenizer

V, E = 30, 8


def models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {"bag": BagOfEmbeddings(V, E), "cnn": KimCNN(V, E, 5), "lstm": BiLSTMClassifier(V, E, 6),
            "transformer": TransformerEncoderClassifier(V, E, 16, num_layers=2, num_heads=2, max_len=32)}


def batch() -> torch.Tensor:
    """(3, 7) ids with lengths 7, 4 and 1 (shorter than every convolution), padded with 0 at the end."""
    ids = torch.randint(3, V, (3, 7), generator=torch.Generator().manual_seed(1))
    ids[1, 4:] = 0
    ids[2, 1:] = 0
    return ids


def test_kim_cnn_convolutions_and_max_over_time_equal_a_loop_over_windows():
    model = models()["cnn"].eval()
    ids = batch()
    lengths = (ids != 0).sum(1)
    x = model.embed(ids)  # (B, T, E)
    expected = []
    for b in range(ids.size(0)):
        real = x[b, : lengths[b]]  # (n, E): the text without its padding
        features = []
        for conv, k in zip(model.convs, (3, 4, 5)):
            padded = torch.cat([torch.zeros(k - 1, E), real, torch.zeros(k - 1, E)])  # "wide": k - 1 zeros each side
            windows = [padded[j: j + k] for j in range(len(real) + k - 1)]  # every window holds a real token
            responses = torch.stack([(conv.weight * w.T).sum((1, 2)) + conv.bias for w in windows])  # (windows, F)
            features.append(torch.relu(responses.max(0).values))
        expected.append(torch.cat(features))
    with torch.no_grad():
        assert_close(model.pool(ids, lengths), torch.stack(expected))
        # and F.conv1d on the unpadded text, padded k - 1 each side, then max over time
        one = ids[1:2, :4]
        reference = torch.cat([torch.relu(F.conv1d(model.embed(one).transpose(1, 2), c.weight, c.bias,
                                                   padding=c.padding[0]).amax(-1)) for c in model.convs], 1)
        assert_close(model.pool(one, torch.tensor([4])), reference)
    assert model.head.in_features == 3 * 5


def test_masked_mean_ignores_the_padded_positions():
    h = torch.randn(2, 5, 3)
    real = torch.tensor([[True] * 5, [True, True, False, False, False]])
    assert_close(masked_mean(h, real), torch.stack([h[0].mean(0), h[1, :2].mean(0)]))
    changed = h.clone()
    changed[1, 2:] = 1e6  # whatever sits at the padded positions
    assert_close(masked_mean(changed, real), masked_mean(h, real))


@pytest.mark.parametrize("family", ["bag", "cnn", "lstm", "transformer"])
def test_padding_a_batch_further_changes_no_output(family):
    model = models()[family].eval()
    ids = batch()
    with torch.no_grad():
        logits = model(ids)
        assert_close(model(F.pad(ids, (0, 9))), logits, rtol=1e-5, atol=1e-6)  # 9 more [PAD] per row
        for b, n in enumerate((ids != 0).sum(1).tolist()):
            assert_close(model(ids[b: b + 1, :n]), logits[b: b + 1], rtol=1e-5, atol=1e-6)  # alone, unpadded


def test_the_bilstm_reads_each_text_forward_and_backward_from_its_last_real_token():
    model = models()["lstm"].eval()
    ids = batch()
    forward = nn.LSTM(E, 6, batch_first=True)  # the two directions as two one-way LSTMs
    backward = nn.LSTM(E, 6, batch_first=True)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(forward, f"{name}_l0").copy_(getattr(model.lstm, f"{name}_l0"))
            getattr(backward, f"{name}_l0").copy_(getattr(model.lstm, f"{name}_l0_reverse"))
        lengths = (ids != 0).sum(1)
        states = model.hidden_states(ids, lengths)  # (B, T, 12)
        for b, n in enumerate(lengths.tolist()):
            x = model.embed(ids[b: b + 1, :n])  # (1, n, E)
            assert_close(states[b: b + 1, :n, :6], forward(x)[0])
            assert_close(states[b: b + 1, :n, 6:], backward(x.flip(1))[0].flip(1))
            assert states[b, n:].abs().sum() == 0
        bias = model.lstm.bias_ih_l0 + model.lstm.bias_hh_l0  # gates i, f, g, o: the forget gate starts open
        assert torch.equal(bias[6:12], torch.ones(6))


def test_the_encoders_padding_mask_keeps_the_real_positions_outputs_unchanged():
    model = models()["transformer"].eval()
    ids = batch()
    with torch.no_grad():
        states = model.hidden_states(ids)  # (B, T, E)
        for b, n in enumerate((ids != 0).sum(1).tolist()):
            assert_close(states[b: b + 1, :n], model.hidden_states(ids[b: b + 1, :n]), rtol=1e-5, atol=1e-5)
        other = ids.clone()
        other[1, 4:] = 0  # same padding; a different real token changes the real positions
        other[1, 0] = 3 if ids[1, 0] != 3 else 4
        assert not torch.allclose(model.hidden_states(other)[1, :4], states[1, :4])


def test_the_pad_row_of_the_embedding_table_is_zero_and_the_bag_has_only_a_classifier():
    for model in models().values():
        assert model.embed.weight[0].abs().sum() == 0 and model.embed.padding_idx == 0
    bag = models()["bag"]
    assert sum(p.numel() for p in bag.parameters()) - V * E == 3 * E + 3


@pytest.mark.parametrize("family", ["bag", "cnn", "lstm", "transformer"])
def test_bad_token_ids_are_refused_with_what_was_expected(family):
    model = models()[family]
    with pytest.raises(ValueError, match=r"shape \(B, T\) and an integer dtype, got shape \(2, 3\) and dtype "
                                         r"torch.float32"):
        model(torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"shape \(B, T\) and an integer dtype, got shape \(3,\)"):
        model(torch.tensor([4, 5, 6]))
    with pytest.raises(ValueError, match=r"ids in \[0, 30\), got values from 4 to 30"):
        model(torch.tensor([[4, 30]]))
    with pytest.raises(ValueError, match="every sequence, got an empty one"):
        model(torch.tensor([[5, 6], [0, 0]]))
    with pytest.raises(ValueError, match="padding .* only at the end .* padded on the left"):
        model(torch.tensor([[0, 5, 6]]))


def test_masked_mean_refuses_mismatched_shapes_and_empty_rows():
    with pytest.raises(ValueError, match=r"got h \(2, 5, 3\) and mask \(2, 4\)"):
        masked_mean(torch.randn(2, 5, 3), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="empty row"):
        masked_mean(torch.randn(2, 5, 3), torch.tensor([[True] * 5, [False] * 5]))


def test_wilson_interval_matches_the_formula_and_refuses_impossible_counts():
    low, high = wilson_interval(750, 1000)
    assert low < 0.75 < high and round(low, 4) == 0.7222 and round(high, 4) == 0.7758
    assert wilson_interval(0, 10)[0] == pytest.approx(0.0, abs=1e-15) and wilson_interval(10, 10)[1] == pytest.approx(1.0)
    p, n, z = 0.6, 200, 1.96  # the interval's ends are the roots of (p - q)^2 = z^2 q (1 - q) / n
    for q in wilson_interval(120, 200):
        assert math.isclose((p - q) ** 2, z * z * q * (1 - q) / n, rel_tol=1e-9)
    with pytest.raises(ValueError, match="0 <= correct <= n, got correct=11, n=10"):
        wilson_interval(11, 10)
    with pytest.raises(ValueError, match="n > 0"):
        wilson_interval(0, 0)


def test_train_bpe_tokenizer_is_deterministic_with_the_special_tokens_first():
    texts = ["the flight was late again", "great service, thanks!", "neutral news about the weather"] * 20
    tokenizer = train_bpe_tokenizer(texts, 120)
    assert tokenizer.to_str() == train_bpe_tokenizer(texts, 120).to_str()
    assert [tokenizer.token_to_id(t) for t in ("[PAD]", "[UNK]", "[MASK]")] == [0, 1, 2]
    assert tokenizer.encode("The FLIGHT").tokens == tokenizer.encode("the flight").tokens  # lower-cased
    with pytest.raises(ValueError, match="non-empty sequence of texts"):
        train_bpe_tokenizer([], 120)
    with pytest.raises(ValueError, match=r"vocab_size above the 3 special tokens .* got vocab_size=3"):
        train_bpe_tokenizer(texts, 3)
