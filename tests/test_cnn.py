"""Tests for bigmodel_lib.models.cnn (chapter 2): convolution, pooling,
receptive fields and the source articles' CNNs."""

import math
import random
import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.testing import assert_close

from bigmodel_lib.models import cnn
from bigmodel_lib.models.cnn import (
    DCNN,
    SeedCNN,
    avg_pool2d,
    conv2d,
    conv2d_loops,
    conv_output_size,
    format_receptive_field_table,
    max_pool2d,
    pooling_shift_sensitivity,
    receptive_field_table,
    seed_cnn_class,
    seed_cnn_source,
    seed_cnn_view_rows,
    shift_image,
)


def _random_conv_configs(n, seed, max_size):
    """Random (shapes, stride, padding, dilation) with a non-empty output."""
    rng = random.Random(seed)
    configs = []
    while len(configs) < n:
        B, C_in, C_out = rng.randint(1, 3), rng.randint(1, 4), rng.randint(1, 5)
        H, W = rng.randint(3, max_size), rng.randint(3, max_size)
        kH, kW = rng.randint(1, 4), rng.randint(1, 4)
        stride = rng.choice([1, 2, 3, (1, 2), (2, 1)])
        padding = rng.choice([0, 1, 2, (0, 1), (2, 0)])
        dilation = rng.choice([1, 2, 3, (1, 2)])
        s, p, d = (cnn._pair(v, "") for v in (stride, padding, dilation))
        if H + 2 * p[0] < d[0] * (kH - 1) + 1 or W + 2 * p[1] < d[1] * (kW - 1) + 1:
            continue
        configs.append(((B, C_in, H, W), (C_out, C_in, kH, kW), stride, padding, dilation, rng.random() < 0.7))
    return configs


# ---------------------------------------------------------------------------
# Convolution
# ---------------------------------------------------------------------------


def test_conv_output_size_hand_values():
    assert conv_output_size(32, 3, padding=1) == 32  # "same" convolution
    assert conv_output_size(32, 2, stride=2) == 16  # 2x2 pooling halves
    assert conv_output_size(7, 3, stride=2) == 3  # floor((7 - 3) / 2) + 1
    assert conv_output_size(10, 3, dilation=2) == 6  # a dilated 3-kernel spans 5
    assert conv_output_size(5, 3, stride=2, padding=1, dilation=2) == 2  # floor((5 + 2 - 5) / 2) + 1


def test_conv_output_size_matches_torch_shapes():
    for x_shape, w_shape, stride, padding, dilation, _ in _random_conv_configs(30, seed=1, max_size=12):
        y = F.conv2d(torch.zeros(x_shape), torch.zeros(w_shape), stride=stride, padding=padding, dilation=dilation)
        s, p, d = (cnn._pair(v, "") for v in (stride, padding, dilation))
        assert y.shape[2] == conv_output_size(x_shape[2], w_shape[2], s[0], p[0], d[0])
        assert y.shape[3] == conv_output_size(x_shape[3], w_shape[3], s[1], p[1], d[1])


def test_conv2d_unfold_matches_torch_on_random_configs():
    torch.manual_seed(0)
    configs = _random_conv_configs(20, seed=2, max_size=16)
    for x_shape, w_shape, stride, padding, dilation, use_bias in configs:
        x, w = torch.randn(x_shape), torch.randn(w_shape)
        b = torch.randn(w_shape[0]) if use_bias else None
        expected = F.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation)
        assert_close(conv2d(x, w, b, stride, padding, dilation), expected)


def test_conv2d_loops_matches_torch_on_random_configs():
    torch.manual_seed(1)
    for x_shape, w_shape, stride, padding, dilation, use_bias in _random_conv_configs(20, seed=3, max_size=7):
        x, w = torch.randn(x_shape), torch.randn(w_shape)
        b = torch.randn(w_shape[0]) if use_bias else None
        expected = F.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation)
        assert_close(conv2d_loops(x, w, b, stride, padding, dilation), expected)


def test_conv2d_gradients_match_torch():
    torch.manual_seed(2)
    x = torch.randn(2, 3, 9, 8, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    b = torch.randn(4, requires_grad=True)
    ours = torch.autograd.grad(conv2d(x, w, b, 2, 1, 2).square().sum(), (x, w, b))
    theirs = torch.autograd.grad(F.conv2d(x, w, b, 2, 1, 2).square().sum(), (x, w, b))
    for g_ours, g_theirs in zip(ours, theirs):
        assert_close(g_ours, g_theirs)


def test_conv2d_matches_nn_conv2d_layer():
    torch.manual_seed(3)
    layer = nn.Conv2d(3, 6, kernel_size=(3, 5), stride=(2, 1), padding=(1, 2), dilation=(1, 2))
    x = torch.randn(2, 3, 11, 13)
    assert_close(
        conv2d(x, layer.weight, layer.bias, layer.stride, layer.padding, layer.dilation), layer(x)
    )


# ---------------------------------------------------------------------------
# Pooling
# ---------------------------------------------------------------------------


def test_pooling_matches_torch_on_random_configs():
    torch.manual_seed(4)
    rng = random.Random(5)
    for _ in range(20):
        k = rng.choice([1, 2, 3, 4, (2, 3)])
        kH, kW = cnn._pair(k, "")
        stride = rng.choice([None, 1, 2, 3, (1, 2)])
        padding = (rng.randint(0, kH // 2), rng.randint(0, kW // 2))
        x = torch.randn(rng.randint(1, 3), rng.randint(1, 4), rng.randint(kH, 12), rng.randint(kW, 12))
        assert_close(max_pool2d(x, k, stride, padding), F.max_pool2d(x, k, stride, padding))
        assert_close(avg_pool2d(x, k, stride, padding), F.avg_pool2d(x, k, stride, padding))


def test_pooling_default_stride_is_kernel_size():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert_close(max_pool2d(x, 2), torch.tensor([[[[5.0, 7.0], [13.0, 15.0]]]]))
    assert_close(avg_pool2d(x, 2), torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]]))


def test_shift_image_moves_pixels_and_fills_zeros():
    x = torch.arange(1.0, 10.0).view(1, 1, 3, 3)
    assert_close(shift_image(x, dx=1), torch.tensor([[[[0.0, 1, 2], [0, 4, 5], [0, 7, 8]]]]))
    assert_close(shift_image(x, dy=-1), torch.tensor([[[[4.0, 5, 6], [7, 8, 9], [0, 0, 0]]]]))
    assert_close(shift_image(x, dx=-1, dy=1), torch.tensor([[[[0.0, 0, 0], [2, 3, 0], [5, 6, 0]]]]))


def test_pooling_shift_sensitivity_single_pixel():
    # A bright pixel at column 2: a 1-pixel shift keeps it inside the same 2x2
    # pooling window (columns 2-3), so the pooled image does not change at all,
    # while the raw image changes by sqrt(2) (one pixel off, one pixel on).
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 4, 2] = 1.0
    rows = pooling_shift_sensitivity(x, max_shift=2)
    assert [r["shift"] for r in rows] == [0, 1, 2]
    assert rows[0]["input_change"] == 0 and rows[0]["pooled_change"] == 0
    assert rows[1]["input_change"] == pytest.approx(math.sqrt(2))
    assert rows[1]["pooled_change"] == 0
    assert rows[2]["pooled_change"] == pytest.approx(math.sqrt(2))  # now it moved to the next window

    # With stride 1 there are no windows to hide in: a 1-pixel shift changes the output.
    rows = pooling_shift_sensitivity(x, pool=lambda t: max_pool2d(t, 2, stride=1), max_shift=1)
    assert rows[1]["pooled_change"] > 0


# ---------------------------------------------------------------------------
# Receptive fields
# ---------------------------------------------------------------------------


def test_receptive_field_table_seed_cnn_by_hand():
    rows = receptive_field_table(SeedCNN(), (3, 32, 32))
    # by hand: r_out = r_in + (k - 1) j_in, j_out = j_in s
    # conv1 k3: r 3, j 1 | pool k2 s2: r 4, j 2 | conv2 k3: r 4 + 2*2 = 8 | pool: r 8 + 1*2 = 10, j 4
    expected = [
        ("input", (3, 32, 32), 0, (1, 1)),
        ("conv1", (32, 32, 32), 3 * 32 * 9 + 32, (3, 3)),
        ("pool", (32, 16, 16), 0, (4, 4)),
        ("conv2", (64, 16, 16), 32 * 64 * 9 + 64, (8, 8)),
        ("pool", (64, 8, 8), 0, (10, 10)),
        ("fc1", (128,), 64 * 8 * 8 * 128 + 128, (32, 32)),
        ("fc2", (10,), 128 * 10 + 10, (32, 32)),
    ]
    got = [(r["layer"], r["output_shape"], r["params"], r["receptive_field"]) for r in rows]
    assert got == expected
    assert sum(r["params"] for r in rows) == sum(p.numel() for p in SeedCNN().parameters())


def test_receptive_field_table_layer_list_with_stride_and_dilation():
    layers = [
        nn.Conv2d(1, 4, 3, stride=2),  # 15 -> 7;  r 3, j 2
        nn.ReLU(),
        nn.Conv2d(4, 8, 3, dilation=2),  # 7 -> 3;  r 3 + 2*2*2 = 11, j 2
        nn.MaxPool2d(3, stride=1),  # 3 -> 1;  r 11 + 2*2 = 15
    ]
    rows = receptive_field_table(layers, (1, 15, 15))
    got = [(r["type"], r["output_shape"], r["params"], r["receptive_field"]) for r in rows[1:]]
    assert got == [
        ("Conv2d", (4, 7, 7), 40, (3, 3)),
        ("ReLU", (4, 7, 7), 0, (3, 3)),
        ("Conv2d", (8, 3, 3), 4 * 8 * 9 + 8, (11, 11)),
        ("MaxPool2d", (8, 1, 1), 0, (15, 15)),
    ]
    text = format_receptive_field_table(rows)
    assert "15 x 15" in text and f"{40 + 296:,}" in text.splitlines()[-1]


# ---------------------------------------------------------------------------
# The source articles' networks
# ---------------------------------------------------------------------------


def test_seed_models_accept_their_stated_input_size():
    torch.manual_seed(6)
    assert SeedCNN()(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert SeedCNN(in_channels=1, num_classes=5, input_size=(20, 28))(torch.randn(3, 1, 20, 28)).shape == (3, 5)
    assert DCNN()(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    # flatten size = 64 * (H // 4) * (W // 4)
    assert SeedCNN(input_size=32).fc1.in_features == 64 * 8 * 8
    assert SeedCNN(input_size=24).fc1.in_features == 64 * 6 * 6
    assert SeedCNN(input_size=(30, 18)).fc1.in_features == 64 * 7 * 4
    assert DCNN().fc1.in_features == 64 * 7 * 7


def test_fixed_models_reproduce_published_ones_at_their_sizes():
    torch.manual_seed(7)
    published_cnn, published_dcnn = seed_cnn_class("000")(), seed_cnn_class("001")()
    fixed_cnn, fixed_dcnn = SeedCNN(input_size=24), DCNN()
    fixed_cnn.load_state_dict(published_cnn.state_dict())  # same layer names, same shapes
    fixed_dcnn.load_state_dict(published_dcnn.state_dict())
    x = torch.randn(5, 3, 24, 24)
    assert_close(fixed_cnn(x), published_cnn(x))
    x = torch.randn(5, 1, 28, 28)
    assert_close(fixed_dcnn(x), published_dcnn(x))


def test_published_cnn_on_32x32_raises_or_changes_the_batch():
    torch.manual_seed(8)
    net = seed_cnn_class("000")()
    # batch of 4: 4 * 64 * 8 * 8 = 16384 numbers are not a multiple of 64 * 6 * 6 = 2304
    with pytest.raises(RuntimeError, match=re.escape("shape '[-1, 2304]' is invalid for input of size 16384")):
        net(torch.randn(4, 3, 32, 32))
    with pytest.raises(RuntimeError, match=re.escape("shape '[-1, 2304]' is invalid for input of size 4096")):
        net(torch.randn(1, 3, 32, 32))
    # batch of 9: 9 * 4096 = 16 * 2304, so view(-1, 2304) silently makes 16 "images"
    assert net(torch.randn(9, 3, 32, 32)).shape == (16, 10)
    # 48x48: side 12 after pooling, every image becomes 4 rows
    assert net(torch.randn(2, 3, 48, 48)).shape == (8, 10)
    # the size it was written for, and the sizes that round down to it
    for n in (24, 25, 26, 27):
        assert net(torch.randn(2, 3, n, n)).shape == (2, 10)


@pytest.mark.parametrize("seed, channels", [("000", 3), ("001", 1)])
def test_seed_cnn_view_rows_predicts_published_behaviour(seed, channels):
    net = seed_cnn_class(seed)()
    for n in (16, 24, 28, 32):
        for batch in (1, 4, 9):
            predicted = seed_cnn_view_rows(n, batch, seed)
            x = torch.zeros(batch, channels, n, n)
            if predicted is None:
                with pytest.raises(RuntimeError, match="is invalid for input of size"):
                    net(x)
            else:
                assert net(x).shape == (predicted, 10)
    assert seed_cnn_view_rows(32, 49, "001") == 64


def test_published_sources_keep_every_token():
    def no_space(s):
        return re.sub(r"\s+", "", s)

    # seed 000 lost every line break: compare with all whitespace removed
    assert no_space(seed_cnn_source("000")) == no_space(cnn._PUBLISHED_000)
    # seed 001 kept its lines but lost indentation: compare line by line
    lines = [line.strip() for line in seed_cnn_source("001").splitlines() if line.strip()]
    assert lines == cnn._PUBLISHED_001.splitlines()
    assert "train_loader" in seed_cnn_source("001")
    assert "train_loader" not in seed_cnn_source("001", include_training_loop=False)


def test_published_dcnn_training_loop_uses_undefined_train_loader():
    namespace = {}
    with pytest.raises(NameError, match="name 'train_loader' is not defined"):
        exec(seed_cnn_source("001"), namespace)
    assert "model" in namespace and "optimizer" in namespace  # everything before the loop ran


# ---------------------------------------------------------------------------
# Bad input: ValueErrors that name what was expected and what was received
# ---------------------------------------------------------------------------


def test_seed_cnn_wrong_image_size_names_expected_size():
    with pytest.raises(ValueError, match=r"built for 32x32 images \(B, 3, 32, 32\), got 28x28"):
        SeedCNN()(torch.zeros(2, 3, 28, 28))


def test_dcnn_wrong_image_size_names_expected_size():
    with pytest.raises(ValueError, match=r"DCNN was built for 28x28 images \(B, 1, 28, 28\), got 32x32"):
        DCNN()(torch.zeros(2, 1, 32, 32))


def test_seed_cnn_wrong_channel_count():
    with pytest.raises(ValueError, match=r"built for 3-channel images .* got 1 channels"):
        SeedCNN()(torch.zeros(2, 1, 32, 32))


def test_seed_cnn_single_image_without_batch():
    with pytest.raises(ValueError, match=r"got a 3-D tensor of shape \(3, 32, 32\).*unsqueeze\(0\)"):
        SeedCNN()(torch.zeros(3, 32, 32))


def test_conv2d_channel_mismatch():
    with pytest.raises(ValueError, match=r"expects 3 input channels .* x has 4"):
        conv2d(torch.zeros(1, 4, 8, 8), torch.zeros(2, 3, 3, 3))


def test_conv2d_wrong_rank():
    with pytest.raises(ValueError, match=r"\(B, C, H, W\), got a 2-D tensor of shape \(8, 8\)"):
        conv2d_loops(torch.zeros(8, 8), torch.zeros(2, 1, 3, 3))


def test_conv_output_size_empty_output():
    with pytest.raises(ValueError, match="kernel spans 5 positions .* padded input has only 4"):
        conv_output_size(4, kernel=3, dilation=2)


def test_pooling_padding_too_large():
    with pytest.raises(ValueError, match=r"at most half the kernel size, got padding=\(2, 2\)"):
        max_pool2d(torch.zeros(1, 1, 8, 8), kernel_size=2, padding=2)


def test_receptive_field_table_bad_input_size():
    with pytest.raises(ValueError, match=r"\(C, H, W\).*got \(32, 32\)"):
        receptive_field_table(SeedCNN(), (32, 32))


def test_every_public_name_names_its_chapter_section():
    for name in cnn.__all__:
        assert "Chapter 2, section" in (getattr(cnn, name).__doc__ or ""), name
