"""bigmodel_lib.models.conv_lm (section 7.5): the causal convolution against a loop, causality, the exact receptive
field, the FLOP count against PyTorch's counter, and clear errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close
from torch.utils.flop_counter import FlopCounterMode

from bigmodel_lib.models.conv_lm import CausalConv1d, CausalConvLM


def loop_causal_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, dilation: int) -> torch.Tensor:
    """y[:, :, t] = bias + sum_j W[:, :, j] x[:, :, t - (k - 1 - j) d], zeros before the start: one position at a time."""
    B, _, T = x.shape
    k = weight.size(-1)
    y = bias[None, :, None].expand(B, -1, T).clone()  # (B, C_out, T)
    for t in range(T):
        for j in range(k):
            s = t - (k - 1 - j) * dilation
            if s >= 0:
                y[:, :, t] += x[:, :, s] @ weight[:, :, j].T
    return y


@pytest.mark.parametrize("kernel_size, dilation", [(2, 1), (2, 4), (3, 2)])
def test_the_causal_convolution_is_the_loop_of_its_formula(kernel_size, dilation):
    torch.manual_seed(0)
    conv = CausalConv1d(3, 5, kernel_size, dilation)
    x = torch.randn(2, 3, 11)
    y = conv(x)
    assert y.shape == (2, 5, 11) and conv.reach == (kernel_size - 1) * dilation
    assert_close(y, loop_causal_conv(x, conv.weight, conv.bias, dilation))
    # and PyTorch's convolution of the input padded with (k - 1) d zeros on the left
    assert_close(y, F.conv1d(F.pad(x, (conv.reach, 0)), conv.weight, conv.bias, dilation=dilation))


def changed_outputs(model: CausalConvLM, T: int, position: int) -> torch.Tensor:
    """Which positions' logits (T,) change at all when the input at ``position`` changes (float64: the farthest
    position's dependence runs through one kernel tap per layer and is small at initialisation)."""
    ids = torch.randint(0, model.vocab_size, (1, T), generator=torch.Generator().manual_seed(1))
    other = ids.clone()
    other[0, position] = (other[0, position] + 1) % model.vocab_size
    with torch.no_grad():
        return (model(ids)[0] - model(other)[0]).abs().amax(-1)[0] > 0


@pytest.mark.parametrize("kernel_size, dilations", [(2, (1, 2, 4)), (3, (1, 2)), (2, (1, 2, 4, 8, 16, 32))])
def test_each_output_sees_exactly_its_receptive_field_and_nothing_later(kernel_size, dilations):
    torch.manual_seed(0)
    model = CausalConvLM(11, channels=8, dilations=dilations, kernel_size=kernel_size).double().eval()
    R = model.receptive_field()
    assert R == 1 + (kernel_size - 1) * sum(dilations)
    T = R + 6
    for s in range(T):
        changed = changed_outputs(model, T, s)
        expected = (torch.arange(T) >= s) & (torch.arange(T) < s + R)  # positions t with t - R < s <= t
        assert torch.equal(changed, expected), (s, changed.nonzero().flatten().tolist())


def test_the_logits_have_the_language_model_shape_and_any_length_runs():
    model = CausalConvLM(7, channels=6, dilations=(1, 2))
    for T in (1, 5, 40):
        logits, extra = model(torch.zeros(3, T, dtype=torch.long))
        assert logits.shape == (3, T, 7) and extra is None


def test_the_flops_per_token_are_six_per_multiplied_weight_as_pytorchs_counter_counts_them():
    torch.manual_seed(0)
    model = CausalConvLM(13, channels=10, dilations=(1, 2, 4), kernel_size=2)
    x, y = torch.randint(0, 13, (3, 8)), torch.randint(0, 13, (3, 8))
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x)[0].flatten(0, 1), y.flatten()).backward()
    assert counter.get_total_flops() == model.flops_per_token() * x.numel()
    assert model.weights_per_token() == 3 * (2 * 10 * 10 + 10 * 10) + 10 * 13


def test_bad_inputs_are_refused_with_what_was_expected():
    model = CausalConvLM(5, channels=4, dilations=(1, 2))
    with pytest.raises(ValueError, match=r"shape \(B, T\) and an integer dtype, got shape \(2, 3\) and dtype torch.float32"):
        model(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"got shape \(4,\)"):
        model(torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"ids in \[0, 5\), got ids from 0 to 5"):
        model(torch.tensor([[0, 5]]))
    with pytest.raises(ValueError, match="kernel_size >= 2"):
        CausalConvLM(5, kernel_size=1)
    with pytest.raises(ValueError, match="dilations >= 1, got \\(\\)"):
        CausalConvLM(5, dilations=())
    with pytest.raises(ValueError, match=r"expects an input of shape \(B, 4, T\), got \(2, 3, 5\)"):
        CausalConv1d(4, 4, 2)(torch.zeros(2, 3, 5))
