"""The book's int8 arithmetic against PyTorch's dynamic quantization (bigmodel_lib.quantization, §7.6)."""

import warnings

import pytest
import torch
import torch.nn as nn
from torch.testing import assert_close

from bigmodel_lib.quantization import (
    dynamic_int8_linear,
    quantize_dynamic_int8,
    quantize_weight_int8,
    serialized_bytes,
)

REDUCE_RANGE = torch.backends.quantized.engine in ("x86", "fbgemm")


def test_weights_equal_pytorchs_int8_weights():
    torch.manual_seed(0)
    linear = nn.Linear(64, 32)
    quantized = quantize_dynamic_int8(nn.Sequential(linear))[0]
    q, scale = quantize_weight_int8(linear.weight)
    assert torch.equal(q, quantized.weight().int_repr())
    assert_close(scale.item(), quantized.weight().q_scale(), rtol=1e-6, atol=0)
    assert quantized.weight().q_zero_point() == 0
    # every weight within half a step of its original
    assert (scale * q.float() - linear.weight).abs().max() <= scale / 2 + 1e-8


@pytest.mark.parametrize("shape", [(5, 64), (3, 7, 64), (1, 64)])
def test_linear_equals_pytorchs_dynamic_kernel(shape):
    torch.manual_seed(1)
    linear = nn.Linear(64, 48)
    quantized = quantize_dynamic_int8(nn.Sequential(linear))[0]
    x = torch.randn(shape) * 3 + 0.5
    with torch.no_grad():
        expected = quantized(x)
        ours = dynamic_int8_linear(x, linear.weight, linear.bias, reduce_range=REDUCE_RANGE)
        exact = linear(x)
    assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    # and the quantization error is real but small: not the float result
    assert 0 < (ours - exact).abs().max() < 0.05 * exact.abs().max()


def test_all_positive_inputs_and_no_bias():
    torch.manual_seed(2)
    linear = nn.Linear(16, 8, bias=False)
    quantized = quantize_dynamic_int8(nn.Sequential(linear))[0]
    x = torch.rand(4, 16)  # min > 0: the range is widened to include 0
    with torch.no_grad():
        assert_close(dynamic_int8_linear(x, linear.weight, None, REDUCE_RANGE), quantized(x), rtol=1e-5, atol=1e-5)


def test_quantized_copy_leaves_the_model_alone_and_shrinks_it():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.LSTM(256, 64, batch_first=True))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    quantized = quantize_dynamic_int8(model)
    assert model.training and not quantized.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert type(model[0]) is nn.Linear and type(quantized[0]) is not nn.Linear
    fp32, int8 = serialized_bytes(model), serialized_bytes(quantized)
    weights = sum(p.numel() for p in model.parameters())
    assert fp32 > 4 * weights  # 4 bytes a weight plus the file's structure
    assert int8 < 0.35 * fp32  # 1 byte a weight (biases stay float)


def test_no_warnings_leak():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quantize_dynamic_int8(nn.Sequential(nn.Linear(4, 4)))


def test_bad_input():
    with pytest.raises(ValueError, match=r"expected x of shape \(\.\.\., 8\)"):
        dynamic_int8_linear(torch.randn(2, 5), torch.randn(3, 8))
    with pytest.raises(TypeError, match="floating-point weight"):
        quantize_weight_int8(torch.ones(3, 3, dtype=torch.int64))
    model = nn.Linear(2, 2).to(torch.device("meta"))
    with pytest.raises(ValueError, match="on the CPU"):
        quantize_dynamic_int8(model)
