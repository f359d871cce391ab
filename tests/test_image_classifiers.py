"""The image classifiers of chapter 7 (§7.3) against independent computations: the patch embedding against a
strided convolution, the whole Vision Transformer against one assembled from PyTorch's own layers with the same
weights, the row reader against a loop over rows with ``nn.LSTMCell``; plus shapes and bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.testing import assert_close

from bigmodel_lib.models.image_classifiers import (
    ConvClassifier,
    PatchEmbedding,
    PixelMLP,
    RowRecurrentClassifier,
    VisionTransformer,
)


def images(b=3, c=1, side=28, seed=0):
    return torch.rand(b, c, side, side, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("channels", "patch", "height", "width"), [(1, 7, 28, 28), (3, 4, 16, 24), (2, 1, 3, 5)])
def test_the_patch_embedding_equals_a_strided_convolution_with_copied_weights(channels, patch, height, width):
    torch.manual_seed(0)
    ours = PatchEmbedding(patch, d_model=10, channels=channels)
    conv = nn.Conv2d(channels, 10, patch, stride=patch)
    with torch.no_grad():
        conv.weight.copy_(ours.proj.weight.view(10, channels, patch, patch))
        conv.bias.copy_(ours.proj.bias)
    x = torch.randn(2, channels, height, width)
    expected = conv(x).flatten(2).transpose(1, 2)  # (B, d, H/p, W/p) -> (B, N, d), patches row by row
    assert ours(x).shape == (2, (height // patch) * (width // patch), 10)
    assert_close(ours(x), expected)


class TorchViT(nn.Module):
    """The same network from PyTorch's layers: Conv2d patches, nn.TransformerEncoderLayer(norm_first=True)."""

    def __init__(self, ours: VisionTransformer):
        super().__init__()
        d = ours.head.in_features
        p, c = ours.patch_embed.patch_size, ours.channels
        self.patches = nn.Conv2d(c, d, p, stride=p)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(d, ours.layers[0].self_attn.num_heads, ours.layers[0].feed_forward.linear1.out_features,
                                       dropout=0.0, batch_first=True, norm_first=True)
            for _ in ours.layers)
        with torch.no_grad():
            self.patches.weight.copy_(ours.patch_embed.proj.weight.view(d, c, p, p))
            self.patches.bias.copy_(ours.patch_embed.proj.bias)
        for layer, theirs in zip(ours.layers, self.layers):
            # copy theirs into ours: load_from_torch is the library's tested path (tests/test_transformer.py)
            layer.load_from_torch(theirs)
        self.cls_token, self.pos_embed, self.norm, self.head = ours.cls_token, ours.pos_embed, ours.norm, ours.head

    def forward(self, x):
        h = self.patches(x).flatten(2).transpose(1, 2)
        h = torch.cat([self.cls_token.expand(len(h), -1, -1), h], dim=1) + self.pos_embed
        for layer in self.layers:
            h = layer(h)
        return self.head(self.norm(h[:, 0]))


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize(("channels", "side", "patch", "classes"), [(1, 28, 7, 10), (3, 32, 8, 5)])
def test_the_vision_transformer_equals_one_built_from_pytorchs_layers(fused, channels, side, patch, classes):
    torch.manual_seed(0)
    ours = VisionTransformer(16, patch, side, d_ff=24, channels=channels, num_classes=classes, num_layers=3,
                             num_heads=4, fused_attention=fused).eval()
    theirs = TorchViT(ours).eval()
    x = images(2, channels, side)
    with torch.no_grad():
        got = ours(x)
        assert got.shape == (2, classes)
        assert_close(got, theirs(x))
    assert ours.num_patches == (side // patch) ** 2 and ours.pos_embed.shape == (1, ours.num_patches + 1, 16)


def test_the_vision_transformer_reads_every_patch_through_the_class_token():
    torch.manual_seed(0)
    model = VisionTransformer(8, 7, 28, num_heads=2).eval()
    x = images(1)
    x.requires_grad_(True)
    model(x)[0, 3].backward()
    grad = x.grad[0, 0].reshape(4, 7, 4, 7).abs().sum(dim=(1, 3))  # (4, 4): one entry per patch
    assert (grad > 0).all()


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_the_row_reader_reads_the_rows_as_steps(cell):
    torch.manual_seed(0)
    model = RowRecurrentClassifier(cell, hidden_size=6, image_size=28)
    x = images(2)
    with torch.no_grad():
        out, _ = model.rnn(x[:, 0])  # 28 steps of 28 pixels
        assert_close(model(x), model.fc(out[:, -1]))


def test_the_row_reader_equals_a_loop_over_rows_with_an_lstm_cell():
    torch.manual_seed(0)
    model = RowRecurrentClassifier("lstm", hidden_size=5, image_size=12, channels=2, num_classes=4)
    cell = nn.LSTMCell(2 * 12, 5)
    cell.load_state_dict({name: getattr(model.rnn, f"{name}_l0") for name in
                          ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
    x = torch.rand(3, 2, 9, 12)  # 9 rows of 2 channels x 12 pixels
    h = c = torch.zeros(3, 5)
    with torch.no_grad():
        for row in range(9):
            h, c = cell(torch.cat([x[:, 0, row], x[:, 1, row]], dim=1), (h, c))  # channel 0's pixels, then 1's
        assert_close(model(x), model.fc(h))


def test_the_lstm_starts_with_its_forget_gate_open():
    model = RowRecurrentClassifier("lstm", 6, forget_bias=2.0)
    bias = model.rnn.bias_ih_l0 + model.rnn.bias_hh_l0  # gates i, f, g, o
    assert torch.equal(bias[6:12], torch.full((6,), 2.0))


def test_the_cnn_is_two_conv_blocks_and_a_linear_layer():
    torch.manual_seed(0)
    model = ConvClassifier(4, channels=3, num_classes=7)
    x = images(2, 3)
    maps = F.max_pool2d(F.relu(model.conv2(F.max_pool2d(F.relu(model.conv1(x)), 2))), 2)  # (2, 8, 7, 7)
    assert_close(model(x), model.fc(maps.flatten(1)))
    assert model(images(2, 3, 56)).shape == (2, 7)  # larger images reuse the same weights


def test_the_mlp_sees_every_pixel():
    torch.manual_seed(0)
    model = PixelMLP(5, image_size=6, channels=2, num_classes=3)
    x = images(4, 2, 6)
    assert_close(model(x), model.out(torch.relu(model.hidden(x.reshape(4, 72)))))


@pytest.mark.parametrize(("model", "bad", "message"), [
    (PatchEmbedding(7, 8), images(1, 1, 30), "divisible by the patch size 7"),
    (PatchEmbedding(7, 8, channels=3), images(1, 1, 28), "expects 3 channel"),
    (PatchEmbedding(7, 8), torch.rand(28, 28), r"shape \(B, 1, H, W\)"),
    (VisionTransformer(8, 7, 28), torch.rand(1, 28, 28), "add a batch dimension"),
    (VisionTransformer(8, 7, 28), images(1, 3), "expects 1 channel"),
    (VisionTransformer(8, 7, 28), images(1, 1, 56), "built for 28 x 28 images, got 56 x 56"),
    (VisionTransformer(8, 7, 28), torch.zeros(1, 1, 28, 28, dtype=torch.long), "float batch of images"),
    (ConvClassifier(4), images(1, 3), "expects 1 channel"),
    (RowRecurrentClassifier("gru", 4), images(1, 1, 20), "rows of 28 pixels, got 20"),
    (PixelMLP(4), images(1, 1, 14), "built for 28 x 28 images"),
])
def test_bad_images_are_refused_with_what_was_expected_and_received(model, bad, message):
    with pytest.raises(ValueError, match=message):
        model(bad)


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="image_size divisible by patch_size"):
        VisionTransformer(8, 5, 28)
    with pytest.raises(ValueError, match="d_model divisible by num_heads"):
        VisionTransformer(10, 7, 28, num_heads=4)
    with pytest.raises(ValueError, match="cell to be one of"):
        RowRecurrentClassifier("mamba", 4)
    with pytest.raises(ValueError, match="patch_size, d_model and channels >= 1"):
        PatchEmbedding(0, 8)
