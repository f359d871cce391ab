"""Tests for bigmodel_lib.models.transformer (chapter 4, sections 4.4-4.5): encoder and
decoder layers against PyTorch's, causality, and the encoder-decoder model with
greedy decoding and beam search on a tiny string-reversal task, from-scratch
and fused attention giving the same outputs and gradients."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn as nn
from torch.testing import assert_close

from bigmodel_lib.metrics import IGNORE_INDEX
from bigmodel_lib.models.attention import MultiHeadAttention, causal_mask, padding_mask
from bigmodel_lib.models.transformer import DecoderLayer, EncoderLayer, Seq2SeqConfig, Seq2SeqTransformer

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------
# Layers against PyTorch


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("fused_attention", [False, True])
def test_encoder_layer_matches_nn_transformer_encoder_layer(norm_first, activation, fused_attention):
    torch.manual_seed(0)
    theirs = nn.TransformerEncoderLayer(
        16, 4, 32, dropout=0.0, activation=activation, batch_first=True, norm_first=norm_first
    ).eval()
    ours = EncoderLayer(16, 4, 32, dropout=0.0, norm_first=norm_first, activation=activation,
                        fused_attention=fused_attention).load_from_torch(theirs).eval()
    assert ours.self_attn.fused_attention is fused_attention
    x = torch.randn(3, 6, 16)
    key_padding = padding_mask([6, 4, 1], 6)
    assert_close(ours(x), theirs(x))
    assert_close(ours(x, key_padding_mask=key_padding), theirs(x, src_key_padding_mask=key_padding))


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("fused_attention", [False, True])
def test_decoder_layer_matches_nn_transformer_decoder_layer(norm_first, fused_attention):
    torch.manual_seed(0)
    theirs = nn.TransformerDecoderLayer(16, 4, 32, dropout=0.0, batch_first=True, norm_first=norm_first).eval()
    ours = DecoderLayer(16, 4, 32, dropout=0.0, norm_first=norm_first, fused_attention=fused_attention)
    ours.load_from_torch(theirs).eval()
    assert ours.self_attn.fused_attention is ours.cross_attn.fused_attention is fused_attention
    tgt, memory = torch.randn(3, 5, 16), torch.randn(3, 7, 16)
    memory_padding = padding_mask([7, 2, 5], 7)
    tgt_padding = padding_mask([5, 5, 3], 5)
    causal = ~causal_mask(5)  # PyTorch's boolean masks mean the opposite: True = may NOT attend
    expected = theirs(
        tgt,
        memory,
        tgt_mask=causal,
        tgt_is_causal=True,
        memory_key_padding_mask=memory_padding,
        tgt_key_padding_mask=tgt_padding,
    )
    got = ours(tgt, memory, memory_key_padding_mask=memory_padding, tgt_key_padding_mask=tgt_padding)
    assert_close(got, expected)


def test_layers_differ_between_post_norm_and_pre_norm():
    torch.manual_seed(0)
    post = EncoderLayer(8, 2, 16, dropout=0.0, norm_first=False).eval()
    pre = EncoderLayer(8, 2, 16, dropout=0.0, norm_first=True).eval()
    pre.load_state_dict(post.state_dict())
    x = 3 * torch.randn(2, 4, 8) + 1
    out_post, out_pre = post(x), pre(x)
    assert not torch.allclose(out_post, out_pre)
    # Post-norm ends in a LayerNorm (mean 0, std 1 per position); pre-norm keeps the residual's scale.
    assert_close(out_post.mean(-1), torch.zeros(2, 4), atol=1e-5, rtol=0)
    assert out_pre.std(-1).mean() > 2


def test_decoder_layer_never_looks_ahead():
    torch.manual_seed(0)
    layer = DecoderLayer(16, 4, 32, dropout=0.0).eval()
    tgt, memory = torch.randn(2, 6, 16), torch.randn(2, 4, 16)
    out = layer(tgt, memory)
    for t in range(5):
        changed = tgt.clone()
        changed[:, t + 1 :] = torch.randn(2, 5 - t, 16)  # change every position after t
        out_changed = layer(changed, memory)
        assert_close(out_changed[:, : t + 1], out[:, : t + 1])
        assert not torch.allclose(out_changed[:, t + 1 :], out[:, t + 1 :])


def test_layer_bad_input():
    with pytest.raises(ValueError, match=r"x of shape \(B, T, 16\).*got shape \(6, 16\)"):
        EncoderLayer(16, 4, 32)(torch.randn(6, 16))
    with pytest.raises(ValueError, match=r"memory \(the encoder output\) of shape \(B, T, 16\).*got shape \(2, 4, 8\)"):
        DecoderLayer(16, 4, 32)(torch.randn(2, 3, 16), torch.randn(2, 4, 8))
    with pytest.raises(ValueError, match=r"d_model divisible by num_heads, got d_model=16 and num_heads=3"):
        EncoderLayer(16, 3, 32)
    with pytest.raises(ValueError, match=r"norm_first=True, got norm_first=False"):
        EncoderLayer(16, 4, 32, norm_first=True).load_from_torch(nn.TransformerEncoderLayer(16, 4, 32))


# ---------------------------------------------------------------------------
# The encoder-decoder model on string reversal

PAD, BOS, EOS = 0, 1, 2
SYMBOLS = range(3, 8)  # five letters


def reversal_batch(batch_size: int, generator: torch.Generator, max_len: int = 4):
    """Source strings of 2..max_len letters, targets BOS + reversed string + EOS, padded with PAD."""
    lengths = torch.randint(2, max_len + 1, (batch_size,), generator=generator)
    src = torch.full((batch_size, max_len), PAD)
    tgt = torch.full((batch_size, max_len + 2), PAD)
    for b, n in enumerate(lengths.tolist()):
        letters = torch.randint(SYMBOLS.start, SYMBOLS.stop, (n,), generator=generator)
        src[b, :n] = letters
        tgt[b, 0], tgt[b, n + 1] = BOS, EOS
        tgt[b, 1 : n + 1] = letters.flip(0)
    return src, tgt


def tiny_config() -> Seq2SeqConfig:
    return Seq2SeqConfig(
        src_vocab_size=8,
        tgt_vocab_size=8,
        d_model=32,
        num_heads=4,
        num_encoder_layers=1,
        num_decoder_layers=1,
        d_ff=64,
        dropout=0.0,
        max_len=8,
    )


@pytest.fixture(scope="module")
def trained_reverser():
    torch.manual_seed(0)
    model = Seq2SeqTransformer(tiny_config())
    steps = 200
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)  # linear decay to 0
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(steps):
        src, tgt = reversal_batch(64, generator)
        targets = tgt[:, 1:].masked_fill(tgt[:, 1:] == PAD, IGNORE_INDEX)  # padded targets are not scored
        _, loss = model(src, tgt[:, :-1], targets=targets)  # teacher forcing: predict tgt[t+1] from tgt[..t]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    return model, losses


def _strip(rows: torch.Tensor) -> list[list[int]]:
    """Each row up to and including its first EOS."""
    out = []
    for row in rows.tolist():
        out.append(row[: row.index(EOS) + 1] if EOS in row else row)
    return out


def test_seq2seq_training_loss_falls(trained_reverser):
    _, losses = trained_reverser
    assert sum(losses[-10:]) / 10 < 0.1 * sum(losses[:10]) / 10


def test_greedy_and_beam_search_reverse_unseen_strings(trained_reverser):
    model, _ = trained_reverser
    src, tgt = reversal_batch(64, torch.Generator().manual_seed(123))
    expected = _strip(tgt)
    assert _strip(model.greedy_decode(src)) == expected
    assert _strip(model.beam_search(src, beam_size=3)) == expected


def test_beam_search_with_beam_one_is_greedy(trained_reverser):
    model, _ = trained_reverser
    src, _ = reversal_batch(16, torch.Generator().manual_seed(7))
    assert torch.equal(model.beam_search(src, beam_size=1), model.greedy_decode(src))
    # Also before training, when the outputs are long and arbitrary (cut at max_len).
    torch.manual_seed(1)
    untrained = Seq2SeqTransformer(tiny_config())
    greedy = untrained.greedy_decode(src, max_len=6)
    assert greedy.shape[1] <= 6
    assert torch.equal(untrained.beam_search(src, beam_size=1, max_len=6), greedy)


def test_decoding_restores_training_mode_and_output_format(trained_reverser):
    model, _ = trained_reverser
    model.train()
    src, _ = reversal_batch(4, torch.Generator().manual_seed(3))
    out = model.greedy_decode(src)
    assert model.training
    assert torch.all(out[:, 0] == BOS)
    for row in out.tolist():  # only PAD after the first EOS
        assert set(row[row.index(EOS) + 1 :]) <= {PAD}


class _ScriptedModel(Seq2SeqTransformer):
    """A model whose next-token probabilities are fixed by a table, to test the search itself.

    After BOS: A (0.6) or B (0.4). After A: EOS (0.3) or one of three others (0.7 / 3).
    After B: EOS (0.9). Greedy picks A then EOS: 0.6 * 0.3 = 0.18; beam search
    finds B, EOS: 0.4 * 0.9 = 0.36.
    """

    A, B = 3, 4

    def encode(self, src):
        return torch.zeros(src.size(0), 1, 1), torch.zeros(src.size(0), 1, dtype=torch.bool)

    def decode(self, tgt_in, memory, src_padding):
        probs = torch.full((tgt_in.size(0), tgt_in.size(1), 8), 1e-6)
        for i, row in enumerate(tgt_in.tolist()):
            last = row[-1]
            if last == BOS:
                probs[i, -1, self.A], probs[i, -1, self.B] = 0.6, 0.4
            elif last == self.A:
                probs[i, -1, EOS] = 0.3
                probs[i, -1, [5, 6, 7]] = 0.7 / 3
            else:
                probs[i, -1, EOS] = 0.9
                probs[i, -1, 5] = 0.1
        return probs.log()


def test_beam_search_finds_a_more_likely_output_than_greedy():
    model = _ScriptedModel(tiny_config())
    src = torch.full((1, 3), 5)
    assert model.greedy_decode(src).tolist() == [[BOS, model.A, EOS]]
    assert model.beam_search(src, beam_size=2).tolist() == [[BOS, model.B, EOS]]
    assert model.beam_search(src, beam_size=1).tolist() == [[BOS, model.A, EOS]]


def test_seq2seq_fused_attention_gives_the_same_outputs_and_gradients():
    """fused_attention=True runs every attention through F.scaled_dot_product_attention: same function, same weights."""
    torch.manual_seed(0)
    config = dataclasses.replace(tiny_config(), num_decoder_layers=2)
    assert not config.fused_attention  # the from-scratch attention by default
    scratch = Seq2SeqTransformer(config).eval()
    fused = Seq2SeqTransformer(dataclasses.replace(config, fused_attention=True)).eval()
    fused.load_state_dict(scratch.state_dict())
    attentions = [m for m in fused.modules() if isinstance(m, MultiHeadAttention)]
    assert len(attentions) == 1 + 2 * 2 and all(m.fused_attention for m in attentions)

    # Padded sources (encoder self-attention and cross-attention get a padding mask), causal decoder
    # self-attention, and a padded target so the decoder layer's own padding mask joins the causal one.
    src = torch.tensor([[3, 4, 5, 6], [7, 3, PAD, PAD], [4, PAD, PAD, PAD]])
    tgt_in = torch.tensor([[BOS, 6, 5, 4, 3], [BOS, 3, 7, EOS, PAD], [BOS, 4, EOS, PAD, PAD]])
    targets = torch.tensor([[6, 5, 4, 3, EOS], [3, 7, EOS, IGNORE_INDEX, IGNORE_INDEX], [4, EOS] + [IGNORE_INDEX] * 3])
    logits_scratch, loss_scratch = scratch(src, tgt_in, targets=targets)
    logits_fused, loss_fused = fused(src, tgt_in, targets=targets)
    assert_close(logits_fused, logits_scratch)
    assert_close(loss_fused, loss_scratch)
    loss_scratch.backward()
    loss_fused.backward()
    for (name, p_fused), p_scratch in zip(fused.named_parameters(), scratch.parameters()):
        assert_close(p_fused.grad, p_scratch.grad, msg=lambda m, name=name: f"gradient of {name}: {m}")
    memory, src_padding = scratch.encode(src)
    x = scratch.tgt_embed(tgt_in)
    tgt_padding = tgt_in == PAD
    layer, fused_layer = scratch.decoder_layers[0], fused.decoder_layers[0]
    assert_close(fused_layer(x, memory, src_padding, tgt_padding), layer(x, memory, src_padding, tgt_padding))


def test_seq2seq_bad_input():
    model = Seq2SeqTransformer(tiny_config())
    with pytest.raises(ValueError, match=r"src token ids of shape \(B, T\) and an integer dtype, got shape \(4,\)"):
        model(torch.tensor([3, 4, 5, 6]), torch.tensor([[BOS]]))
    with pytest.raises(ValueError, match=r"tgt_in token ids.*got shape \(1, 2\) and dtype torch.float32"):
        model(torch.tensor([[3, 4]]), torch.zeros(1, 2))
    with pytest.raises(ValueError, match=r"at most max_len=8 positions, got length T=9"):
        model(torch.full((1, 9), 3), torch.tensor([[BOS]]))
    with pytest.raises(ValueError, match=r"targets of the same shape as tgt_in \(1, 2\), got \(1, 3\)"):
        model(torch.tensor([[3, 4]]), torch.tensor([[BOS, 3]]), targets=torch.tensor([[3, 4, EOS]]))
    with pytest.raises(ValueError, match=r"beam_size >= 1, got 0"):
        model.beam_search(torch.tensor([[3, 4]]), beam_size=0)


# ---------------------------------------------------------------------------
# The whole encoder-decoder against nn.Transformer, with copied weights


@pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")  # PyTorch's note about its own fast path
def test_seq2seq_transformer_matches_nn_transformer_with_copied_weights():
    """Embeddings and positions are ours on both sides; everything between them and the output layer is PyTorch's."""
    torch.manual_seed(0)
    config = Seq2SeqConfig(src_vocab_size=9, tgt_vocab_size=11, d_model=16, num_heads=4, num_encoder_layers=2,
                           num_decoder_layers=3, d_ff=32, dropout=0.0, max_len=12)
    ours = Seq2SeqTransformer(config).eval()
    theirs = nn.Transformer(16, 4, num_encoder_layers=2, num_decoder_layers=3, dim_feedforward=32, dropout=0.0,
                            batch_first=True, norm_first=True).eval()
    for layer, torch_layer in zip(ours.encoder_layers, theirs.encoder.layers):
        layer.load_from_torch(torch_layer)
    for layer, torch_layer in zip(ours.decoder_layers, theirs.decoder.layers):
        layer.load_from_torch(torch_layer)
    ours.encoder_norm.load_state_dict(theirs.encoder.norm.state_dict())
    ours.decoder_norm.load_state_dict(theirs.decoder.norm.state_dict())

    src = torch.tensor([[3, 4, 5, 6, 2], [7, 8, 2, 0, 0]])  # the second source padded with PAD
    tgt_in = torch.tensor([[1, 3, 9, 10], [1, 4, 5, 0]])
    src_padding = src == config.pad_id
    scale = config.d_model**0.5
    with torch.no_grad():
        hidden = theirs(
            ours.pos_encoding(ours.src_embed(src) * scale),
            ours.pos_encoding(ours.tgt_embed(tgt_in) * scale),
            tgt_mask=nn.Transformer.generate_square_subsequent_mask(4, dtype=torch.bool),
            tgt_is_causal=True,
            src_key_padding_mask=src_padding,
            memory_key_padding_mask=src_padding,
        )  # (B, T, C)
        expected = ours.lm_head(hidden)  # (B, T, V)
        got, _ = ours(src, tgt_in)
    assert_close(got, expected)
