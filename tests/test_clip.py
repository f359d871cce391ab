"""Tests for bigmodel_lib.models.clip (§8.3): the captions, the encoders, the symmetric contrastive loss.

The loss is checked against the formula written out with explicit sums (no ``cross_entropy``), and
against open_clip's ``ClipLoss`` computation as it reads in its source (logits both ways, the mean of two
cross-entropies), which is the same formula computed another way.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from bigmodel_lib.models.clip import (
    CAPTION_TEMPLATES,
    DIGIT_NAMES,
    CaptionEncoder,
    TinyCLIP,
    build_vocabulary,
    caption_tokens,
    contrastive_loss,
    encode_captions,
    train_digit_classifier,
    train_tiny_clip,
    zero_shot_predict,
)
from bigmodel_lib.models.image_classifiers import ConvClassifier


def loss_by_the_formula(u, v, log_scale):
    u, v = u / u.norm(dim=1, keepdim=True), v / v.norm(dim=1, keepdim=True)
    s = math.exp(log_scale) * (u @ v.T)
    B = s.size(0)
    image_to_text = -sum(s[i, i] - torch.log(torch.exp(s[i]).sum()) for i in range(B)) / B
    text_to_image = -sum(s[j, j] - torch.log(torch.exp(s[:, j]).sum()) for j in range(B)) / B
    return (image_to_text + text_to_image) / 2


def loss_as_open_clip(image_features, text_features, logit_scale):
    # open_clip.loss.ClipLoss on one device: features normalised by the model, logit_scale already exp()'d
    image_features, text_features = F.normalize(image_features, dim=-1), F.normalize(text_features, dim=-1)
    logits_per_image = logit_scale * image_features @ text_features.T
    logits_per_text = logit_scale * text_features @ image_features.T
    labels = torch.arange(logits_per_image.shape[0])
    return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2


@pytest.mark.parametrize("B, D, log_scale", [(1, 3, 0.0), (5, 8, math.log(1 / 0.07)), (16, 4, 2.0)])
def test_the_loss_equals_the_formula_and_open_clips_computation(B, D, log_scale):
    torch.manual_seed(B)
    u, v = torch.randn(B, D, dtype=torch.float64), torch.randn(B, D, dtype=torch.float64)
    got = contrastive_loss(u, v, log_scale)
    assert_close(got, loss_by_the_formula(u, v, log_scale))
    assert_close(got, loss_as_open_clip(u, v, math.exp(log_scale)))
    assert_close(got, contrastive_loss(v, u, torch.tensor(log_scale, dtype=torch.float64)))  # symmetric
    assert_close(contrastive_loss(3 * u, 0.5 * v, log_scale), got)  # only directions count


def test_the_loss_is_log_b_for_equal_scores_and_near_zero_when_pairs_match():
    B = 8
    assert_close(contrastive_loss(torch.ones(B, 4), torch.ones(B, 4), 1.0), torch.tensor(math.log(B)))
    eye = torch.eye(B)
    assert contrastive_loss(eye, eye, math.log(100)).item() < 1e-3


def test_the_loss_gradient_reaches_the_temperature():
    u, v = torch.randn(6, 5), torch.randn(6, 5)
    log_scale = torch.tensor(1.0, requires_grad=True)
    contrastive_loss(u, v, log_scale).backward()
    assert log_scale.grad is not None and log_scale.grad.abs() > 0


def test_captions_tokens_and_ids():
    assert caption_tokens("The number seven, written by hand") == ["the", "number", "seven", "written", "by", "hand"]
    assert caption_tokens("手写的数字七") == ["手", "写", "的", "数", "字", "七"]
    train = [t.format(en=en, zh=zh) for t in CAPTION_TEMPLATES[:5] for en, zh in DIGIT_NAMES]
    vocab = build_vocabulary(train)
    assert vocab["<pad>"] == 0 and vocab["<unk>"] == 1
    held_out = [CAPTION_TEMPLATES[5].format(en=en, zh=zh) for en, zh in DIGIT_NAMES]
    ids = encode_captions(held_out, vocab)
    assert ids.shape == (10, 6) and (ids != 1).all()  # the held-out template uses only known words
    assert encode_captions(["a zebra"], vocab).tolist() == [[vocab["a"], 1]]
    assert encode_captions(["a", "the number one"], vocab)[0, 1:].tolist() == [0, 0]


def test_shapes_and_zero_shot_prediction():
    torch.manual_seed(0)
    model = TinyCLIP(vocab_size=20, width=4, text_width=8, embed_dim=6)
    images, ids = torch.rand(5, 1, 28, 28), torch.randint(1, 20, (5, 7))
    img, txt = model(images, ids)
    assert img.shape == txt.shape == (5, 6)
    assert zero_shot_predict(model, images, torch.randint(1, 20, (10, 4))).shape == (5,)
    assert zero_shot_predict(model, images, torch.randint(1, 20, (3, 10, 4))).shape == (5,)
    padded = torch.cat([ids, torch.zeros(5, 3, dtype=torch.long)], 1)
    assert_close(model.text_encoder(padded), txt)  # padding does not change a caption's embedding
    assert_close(model.log_scale.exp().item(), 1 / 0.07)


def test_a_short_training_run_separates_two_digits():
    torch.manual_seed(0)
    images = torch.zeros(64, 1, 28, 28)
    labels = torch.tensor([0, 1] * 32)
    images[labels == 0, :, 4:24, 4:8] = 1.0     # a bar on the left for "zero", on the right for "one"
    images[labels == 1, :, 4:24, 20:24] = 1.0
    vocab = build_vocabulary(t.format(en=en, zh=zh) for t in CAPTION_TEMPLATES[:5] for en, zh in DIGIT_NAMES)
    model = TinyCLIP(len(vocab), width=4, text_width=8, embed_dim=8)
    losses = train_tiny_clip(model, images, labels, vocab, epochs=15, batch_size=16, lr=1e-2)
    assert sum(losses[-4:]) < sum(losses[:4])
    prompts = encode_captions([CAPTION_TEMPLATES[5].format(en=en, zh=zh) for en, zh in DIGIT_NAMES[:2]], vocab)
    assert (zero_shot_predict(model, images, prompts) == labels).float().mean() == 1.0
    classifier = ConvClassifier(4, num_classes=2)
    assert len(train_digit_classifier(classifier, images, labels, epochs=2, batch_size=16)) == 8


@pytest.mark.parametrize("call, words", [
    (lambda: contrastive_loss(torch.randn(4, 3), torch.randn(5, 3), 1.0), r"same shape \(B, D\)"),
    (lambda: contrastive_loss(torch.randn(4), torch.randn(4), 1.0), r"same shape \(B, D\)"),
    (lambda: contrastive_loss(torch.randn(4, 3), torch.randn(4, 3), torch.ones(2)), "one number"),
    (lambda: CaptionEncoder(10, 4, 4)(torch.tensor([[3, 12]])), r"\[0, 10\)"),
    (lambda: CaptionEncoder(10, 4, 4)(torch.rand(2, 3)), "integers"),
    (lambda: encode_captions([], {}), "at least one caption"),
    (lambda: encode_captions(["!!"], {}), "contain a word"),
    (lambda: caption_tokens(7), "str"),
    (lambda: zero_shot_predict(TinyCLIP(10, 4, 4, 4), torch.rand(1, 1, 28, 28), torch.ones(3, dtype=torch.long)),
     "prompt ids"),
    (lambda: train_tiny_clip(TinyCLIP(10, 4, 4, 4), torch.rand(3, 1, 28, 28), torch.zeros(2, dtype=torch.long),
                             {}), "one label per image"),
    (lambda: TinyCLIP(10, 4, 4, 4)(torch.rand(2, 3, 28, 28), torch.ones(2, 3, dtype=torch.long)), "channel"),
])
def test_bad_input_raises_a_clear_error(call, words):
    with pytest.raises(ValueError, match=words):
        call()
