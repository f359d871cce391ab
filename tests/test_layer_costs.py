"""Tests for bigmodel_lib.layer_costs (§7.1): Vaswani et al.'s Table 1, computed.

Every FLOP formula equals what ``torch.utils.flop_counter.FlopCounterMode`` counts
on the real layer; the sequential operations and the maximum path lengths are
measured independently, on autograd graphs and gradients.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from bigmodel_lib.layer_costs import (
    LAYER_KINDS,
    convolution_flops,
    layer_cost_table,
    maximum_path_length,
    recurrent_flops,
    self_attention_flops,
    sequential_operations,
)
from bigmodel_lib.models.attention import MultiHeadAttention
from bigmodel_lib.models.rnn import LSTM, RNN, GRUCell

SIZES = [(1, 4, 2), (7, 8, 3), (16, 12, 4), (33, 16, 5)]  # (n, d, k)


def _sdpa_formula(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


# PyTorch's fused attention on a CPU runs an operator the counter has no formula for
# (it counts 0 FLOPs there); give it PyTorch's own formula for the GPU kernels.
CPU_SDPA = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_formula}


def counted(fn, *args, custom_mapping=None) -> int:
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=custom_mapping) as counter:
        fn(*args)
    return counter.get_total_flops()


class CausalConv1d(nn.Module):
    """(B, d, n) -> (B, d, n): ``k - 1`` zeros of left padding (times the dilation), so position t reads t and before."""

    def __init__(self, d: int, k: int, dilation: int = 1):
        super().__init__()
        self.pad = (k - 1) * dilation
        self.conv = nn.Conv1d(d, d, k, dilation=dilation)

    def forward(self, x):
        return self.conv(F.pad(x, (self.pad, 0)))


# ---------------------------------------------------------------------------
# FLOPs: the formulas equal PyTorch's counts on the real layers


@pytest.mark.parametrize(("n", "d", "k"), SIZES)
def test_convolution_flops_equal_the_counted_flops(n, d, k):
    torch.manual_seed(0)
    x = torch.randn(2, d, n)  # a batch of two costs twice as much
    expected = 2 * convolution_flops(n, d, k).total
    assert convolution_flops(n, d, k).quadratic == 0
    assert counted(CausalConv1d(d, k), x) == expected
    assert counted(CausalConv1d(d, k, dilation=k), x) == expected  # dilation reads other inputs, as many
    if k % 2:  # a centred kernel, k // 2 zeros on each side: as many outputs, as many FLOPs
        assert counted(nn.Conv1d(d, d, k, padding=k // 2), x) == expected


@pytest.mark.parametrize(("n", "d", "k"), SIZES)
def test_recurrent_flops_equal_the_counted_flops_of_the_books_cells(n, d, k):
    torch.manual_seed(0)
    x = torch.randn(n, 2, d)  # (T, B, I)
    assert counted(RNN(d, d), x) == 2 * recurrent_flops(n, d, gates=1).total
    assert counted(LSTM(d, d), x) == 2 * recurrent_flops(n, d, gates=4).total
    assert counted(nn.RNN(d, d), x) == 2 * recurrent_flops(n, d, gates=1).total  # PyTorch's loop of addmm

    gru = GRUCell(d, d)

    def gru_loop(x):
        h = x.new_zeros(x.shape[1], d)
        for x_t in x:
            h = gru(x_t, h)

    assert counted(gru_loop, x) == 2 * recurrent_flops(n, d, gates=3).total  # the zero h_0 is multiplied too
    assert recurrent_flops(n, d, gates=4).quadratic == 0


def test_pytorchs_fused_lstm_kernel_is_not_seen_by_the_counter_on_a_cpu():
    """Why the book counts its own LSTM: ``nn.LSTM`` runs one fused operator the counter has no formula for
    (0 FLOPs in torch 2.14). Should a later PyTorch count it, it must agree with the formula."""
    lstm, x = nn.LSTM(8, 8), torch.randn(5, 1, 8)
    assert counted(lstm, x) in (0, recurrent_flops(5, 8, gates=4).total)


@pytest.mark.parametrize(("n", "d", "k"), SIZES)
@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("is_causal", [False, True])
def test_self_attention_flops_equal_the_counted_flops(n, d, k, fused, is_causal):
    torch.manual_seed(0)
    attention = MultiHeadAttention(d, num_heads=4, fused_attention=fused)
    x = torch.randn(2, n, d)
    expected = self_attention_flops(n, d)
    assert expected.quadratic == 4 * n * n * d and expected.linear == 8 * n * d * d
    flops = counted(lambda x: attention(x, x, x, is_causal=is_causal), x, custom_mapping=CPU_SDPA)
    assert flops == 2 * expected.total  # a causal mask saves no multiply-adds in either path


def test_without_the_formula_the_counter_sees_only_the_projections_of_fused_attention_on_a_cpu():
    """torch 2.14 counts the projections and not the fused CPU kernel; should a later PyTorch count it too,
    the count must agree with the formula."""
    attention, x = MultiHeadAttention(16, 4, fused_attention=True), torch.randn(1, 10, 16)
    expected = self_attention_flops(10, 16)
    assert counted(lambda x: attention(x, x, x), x) in (expected.linear, expected.total)


def test_the_number_of_heads_does_not_change_the_flops():
    x = torch.randn(1, 9, 24)
    for heads in (1, 2, 3, 6, 24):
        attention = MultiHeadAttention(24, heads)
        assert counted(attention, x, x, x) == self_attention_flops(9, 24).total


# ---------------------------------------------------------------------------
# Sequential operations: the longest chain of dependent operations in the autograd graph


def longest_chain(output: torch.Tensor) -> int:
    """Autograd nodes on the longest path from ``output`` back to the inputs: operations that must run in turn."""
    memo: dict = {}

    def depth(node) -> int:
        if node is None:
            return 0
        if node not in memo:
            memo[node] = 1 + max((depth(child) for child, _ in node.next_functions), default=0)
        return memo[node]

    return depth(output.grad_fn)


def _chain(kind: str, n: int, d: int = 4) -> int:
    torch.manual_seed(0)
    x = torch.randn(1, n, d, requires_grad=True)
    if kind == "recurrent":
        out = RNN(d, d, batch_first=True)(x)[0]
    elif kind == "self-attention":
        out = MultiHeadAttention(d, 2)(x, x, x)
    else:
        dilation = 3 if kind == "dilated convolution" else 1
        out = CausalConv1d(d, 3, dilation)(x.transpose(1, 2))
    return longest_chain(out)


@pytest.mark.parametrize("kind", LAYER_KINDS)
def test_only_recurrence_has_a_chain_of_operations_that_grows_with_n(kind):
    chains = [_chain(kind, n) for n in (4, 8, 16)]
    if sequential_operations(kind, 16) == 1:
        assert chains[0] == chains[1] == chains[2]
    else:  # one more step of the recurrence for each position: the chain grows in proportion to n
        assert sequential_operations(kind, 16) == 16
        per_step = (chains[1] - chains[0]) / 4
        assert per_step >= 1 and chains[2] - chains[1] == 8 * per_step


# ---------------------------------------------------------------------------
# Maximum path length, from gradients


def _reaches(stack: nn.Module, n: int, d: int = 3) -> bool:
    """Whether the last output position of ``stack`` depends on the first input position."""
    x = torch.randn(1, d, n, dtype=torch.float64, requires_grad=True)
    stack(x)[..., -1].sum().backward()
    return bool(x.grad[..., 0].abs().sum() > 0)


@pytest.mark.parametrize(("n", "k"), [(2, 2), (5, 2), (9, 3), (10, 3), (16, 4), (17, 5), (30, 7)])
def test_a_contiguous_convolution_stack_connects_the_ends_at_exactly_the_formulas_depth(n, k):
    torch.manual_seed(0)
    layers = maximum_path_length("convolution", n, k)
    assert layers == -(-(n - 1) // (k - 1))
    for depth, connected in ((layers - 1, False), (layers, True)):
        stack = nn.Sequential(*(CausalConv1d(3, k) for _ in range(depth))).double()
        assert _reaches(stack, n) is connected, (n, k, depth)


@pytest.mark.parametrize(("n", "k"), [(2, 2), (8, 2), (9, 2), (9, 3), (10, 3), (27, 3), (28, 3), (17, 4)])
def test_a_dilated_convolution_stack_connects_the_ends_at_exactly_the_formulas_depth(n, k):
    torch.manual_seed(0)
    layers = maximum_path_length("dilated convolution", n, k)
    assert k ** (layers - 1) < n <= k**layers  # ceil(log_k n)
    for depth, connected in ((layers - 1, False), (layers, True)):
        stack = nn.Sequential(*(CausalConv1d(3, k, dilation=k**layer) for layer in range(depth))).double()
        assert _reaches(stack, n) is connected, (n, k, depth)


@pytest.mark.parametrize("is_causal", [False, True])
def test_one_attention_layer_connects_every_pair_of_positions(is_causal):
    torch.manual_seed(0)
    n, d = 6, 8
    attention = MultiHeadAttention(d, 2).double()
    x = torch.randn(1, n, d, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda x: attention(x, x, x, is_causal=is_causal), x)  # (1,n,d,1,n,d)
    linked = jac[0, :, :, 0].abs().sum(dim=(1, 3)) > 0  # (n out, n in)
    allowed = torch.ones(n, n, dtype=torch.bool)
    assert torch.equal(linked, allowed.tril() if is_causal else allowed)  # causal: every earlier position
    assert maximum_path_length("self-attention", n) == 1 and maximum_path_length("self-attention", 1) == 0


@pytest.mark.parametrize("n", [1, 2, 5, 12])
def test_recurrence_reaches_the_last_output_through_n_minus_1_hidden_state_updates(n):
    """In the linear regime (ReLU, positive weights and inputs) d y_{n-1} / d x_0 = W_hh^(n-1) W_ih: doubling
    W_hh multiplies it by 2^(path length), which counts the updates on every path from x_0 to y_{n-1}."""
    torch.manual_seed(0)
    rnn = RNN(3, 4, nonlinearity="relu").double()
    with torch.no_grad():
        for p in rnn.parameters():
            p.uniform_(0.05, 0.3)
    x = torch.rand(n, 1, 3, dtype=torch.float64) + 0.1

    def gradient():
        xi = x.clone().requires_grad_(True)
        rnn(xi)[0][-1].sum().backward()
        return xi.grad[0]

    before = gradient()
    with torch.no_grad():
        rnn.cells[0].weight_hh.mul_(2)
    after = gradient()
    assert (before > 0).all()
    updates = maximum_path_length("recurrent", n)
    assert updates == n - 1
    torch.testing.assert_close(after, before * 2.0**updates, rtol=1e-12, atol=0)


# ---------------------------------------------------------------------------
# The table


def test_the_table_has_vaswanis_rows_and_orders_of_growth():
    n, d, k = 64, 32, 3
    rows = {row.layer: row for row in layer_cost_table(n, d, k)}
    assert list(rows) == list(LAYER_KINDS)
    assert rows["self-attention"].flops == self_attention_flops(n, d)
    assert rows["recurrent"].flops == recurrent_flops(n, d, gates=4)  # the book's LSTM by default
    assert rows["convolution"].flops == rows["dilated convolution"].flops == convolution_flops(n, d, k)
    assert [r.sequential_operations for r in rows.values()] == [1, n, 1, 1]
    assert [r.maximum_path_length for r in rows.values()] == [1, 63, 32, 4]  # 1, n-1, ceil(63/2), ceil(log_3 64)
    assert layer_cost_table(n, d, k, gates=1)[1].flops.total == 4 * n * d * d
    # Doubling n: quadratic terms x4, linear ones x2; doubling d: n^2 d x2, n d^2 x4.
    big_n, big_d = layer_cost_table(2 * n, d, k), layer_cost_table(n, 2 * d, k)
    for row, row_n, row_d in zip(rows.values(), big_n, big_d):
        assert row_n.flops.quadratic == 4 * row.flops.quadratic and row_n.flops.linear == 2 * row.flops.linear
        assert row_d.flops.quadratic == 2 * row.flops.quadratic and row_d.flops.linear == 4 * row.flops.linear


def test_attentions_quadratic_part_overtakes_its_linear_part_beyond_n_equals_2d():
    for d in (8, 64, 512):
        assert self_attention_flops(2 * d, d).quadratic == self_attention_flops(2 * d, d).linear
        assert self_attention_flops(2 * d + 1, d).quadratic > self_attention_flops(2 * d + 1, d).linear
        # and self-attention as a whole costs more than the LSTM beyond the same length
        assert self_attention_flops(2 * d, d).total == recurrent_flops(2 * d, d, gates=4).total


# ---------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: convolution_flops(0, 8, 3), "convolution_flops: expected n to be an integer >= 1, got 0"),
        (lambda: convolution_flops(4, 8, 0), "expected k to be an integer >= 1, got 0"),
        (lambda: recurrent_flops(4, 8, gates=0), "recurrent_flops: expected gates to be an integer >= 1, got 0"),
        (lambda: self_attention_flops(4, 2.5), "expected d to be an integer >= 1, got 2.5"),
        (lambda: self_attention_flops(True, 8), "expected n to be an integer >= 1, got True"),
        (lambda: sequential_operations("transformer", 4), "expected layer to be one of 'self-attention'"),
        (lambda: sequential_operations("recurrent", -1), "expected n to be an integer >= 1, got -1"),
        (lambda: maximum_path_length("convolution", 8), "expected a kernel size k >= 2 for a convolution layer"),
        (lambda: maximum_path_length("dilated convolution", 8, 1), "expected k to be an integer >= 2, got 1"),
        (lambda: maximum_path_length("self-attention", 0), "expected n to be an integer >= 1, got 0"),
        (lambda: layer_cost_table(8, 16, k=1), "layer_cost_table: expected k to be an integer >= 2, got 1"),
        (lambda: layer_cost_table(0, 16), "layer_cost_table: expected n to be an integer >= 1, got 0"),
    ],
)
def test_bad_input_names_what_was_expected_and_what_came(call, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        call()
