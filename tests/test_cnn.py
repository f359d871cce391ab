"""Tests for bigmodel_lib.models.cnn and bigmodel_lib.models.resnet (chapter 2): convolution,
pooling, receptive fields, the source articles' CNNs, residual blocks and a small ResNet."""

import math
import random

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.testing import assert_close

from bigmodel_lib import count_parameters
from bigmodel_lib.articles import CorrectedCNN
from bigmodel_lib.models import cnn
from bigmodel_lib.models.cnn import avg_pool2d, conv2d, conv2d_loops, conv_output_size, max_pool2d
from bigmodel_lib.models.resnet import ResidualBlock, ResNet
from bigmodel_lib.probes import (
    format_receptive_field_table,
    pooling_shift_sensitivity,
    receptive_field_table,
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


def test_receptive_field_table_of_the_articles_cnn_by_hand():
    rows = receptive_field_table(CorrectedCNN(), (3, 32, 32))
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
    assert sum(r["params"] for r in rows) == sum(p.numel() for p in CorrectedCNN().parameters())


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
# Bad input: ValueErrors that name what was expected and what was received
# ---------------------------------------------------------------------------


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
        receptive_field_table(CorrectedCNN(), (32, 32))




# ---------------------------------------------------------------------------
# Residual blocks and the small ResNet (section 2.7)
# ---------------------------------------------------------------------------


def _randomise_batch_norms(module):
    """Non-trivial scales, shifts and running statistics, so that eval mode is a real test."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)


@pytest.mark.parametrize("training", [True, False])
def test_residual_block_matches_torchvision_basic_block(training):
    from torchvision.models.resnet import BasicBlock

    torch.manual_seed(6)
    theirs = BasicBlock(8, 8)
    _randomise_batch_norms(theirs)
    ours = ResidualBlock(8)
    ours.load_state_dict(theirs.state_dict())  # the same names: a plain state-dict copy
    ours.train(training)
    theirs.train(training)
    x = torch.randn(4, 8, 7, 5, requires_grad=True)
    x_theirs = x.detach().clone().requires_grad_()
    out_ours, out_theirs = ours(x), theirs(x_theirs)
    assert_close(out_ours, out_theirs)
    out_ours.square().sum().backward()
    out_theirs.square().sum().backward()
    assert_close(x.grad, x_theirs.grad)
    for (name, a), b in zip(ours.named_parameters(), theirs.parameters()):
        assert_close(a.grad, b.grad, msg=name)
    for name, buffer in ours.state_dict().items():  # running statistics updated alike in training
        assert_close(buffer, theirs.state_dict()[name], msg=name)


def test_residual_block_variants_by_hand():
    torch.manual_seed(7)
    x = torch.randn(2, 3, 6, 6)
    plain = ResidualBlock(3, batch_norm=False, residual=False)
    f = plain.conv2(torch.relu(plain.conv1(x)))
    assert_close(plain(x), torch.relu(f))
    residual = ResidualBlock(3, batch_norm=False)
    residual.load_state_dict(plain.state_dict())
    assert_close(residual(x), torch.relu(x + f))
    # Batch normalisation cancels a bias, so the convolutions have none when it is on.
    assert plain.conv1.bias is not None and ResidualBlock(3).conv1.bias is None


def test_resnet_plain_and_residual_have_the_same_parameters():
    torch.manual_seed(8)
    residual = ResNet(num_blocks=3, width=4)
    plain = ResNet(num_blocks=3, width=4, residual=False)
    assert [(n, p.shape) for n, p in residual.named_parameters()] == [
        (n, p.shape) for n, p in plain.named_parameters()
    ]
    plain.load_state_dict(residual.state_dict())
    assert count_parameters(residual) == count_parameters(plain) == (
        4 * 9 + 2 * 4  # stem: conv without bias, batch norm
        + 3 * 2 * (4 * 4 * 9 + 2 * 4)  # three blocks of two convolutions and two batch norms
        + 4 * 10 + 10  # classifier
    )
    x = torch.randn(5, 1, 8, 8)
    assert residual(x).shape == plain(x).shape == (5, 10)
    assert not torch.allclose(residual(x), plain(x))  # the shortcuts change the function, not the weights


def test_resnet_matches_a_network_built_from_torch_modules():
    from torchvision.models.resnet import BasicBlock

    torch.manual_seed(9)
    ours = ResNet(num_blocks=2, width=6, in_channels=3, num_classes=5)
    _randomise_batch_norms(ours)
    reference = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU(),
        BasicBlock(6, 6), BasicBlock(6, 6),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5),
    )
    reference.load_state_dict(dict(zip(reference.state_dict(), ours.state_dict().values())))
    x = torch.randn(3, 3, 9, 9)
    for training in (True, False):
        ours.train(training)
        reference.train(training)
        assert_close(ours(x), reference(x))


def test_residual_block_and_resnet_bad_input():
    with pytest.raises(ValueError, match=r"\(B, 8, H, W\), got shape \(8, 5, 5\).*unsqueeze"):
        ResidualBlock(8)(torch.zeros(8, 5, 5))
    with pytest.raises(ValueError, match=r"ResNet expects .*\(B, 1, H, W\), got shape \(2, 3, 8, 8\)"):
        ResNet(2)(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="num_blocks, width"):
        ResNet(0)
    with pytest.raises(ValueError, match="channels >= 1"):
        ResidualBlock(0)
