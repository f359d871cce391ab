"""What one layer costs on a sequence: Vaswani et al.'s Table 1, computed from the layer's sizes.

For one layer of width ``d`` (``d`` features in, ``d`` out) on a sequence of ``n``
positions, three numbers decide how the layer scales (Vaswani et al. 2017, Table 1):

* **forward FLOPs**, split into the part that grows with ``n**2`` and the part
  that grows with ``n`` (:class:`LayerFlops`). One multiply-add is 2 FLOPs;
  biases, activations, gates' element-wise products and softmax are left out:
  the convention of :mod:`bigmodel_lib.metrics` and of ``torch.utils.flop_counter``.
* **sequential operations**: how many steps must run one after another, however
  many processors there are.
* **maximum path length**: the fewest layers (or recurrent steps) a signal
  crosses from one position to the position farthest from it, in a stack of such
  layers; short paths make long-range dependencies easier to learn.

The layers are the book's: a causal 1-D convolution ``d -> d`` with kernel ``k``
(``nn.Conv1d`` after ``k - 1`` zeros of padding on the left, so ``n`` outputs),
either contiguous or dilated (dilation ``k**l`` in layer ``l``, as in WaveNet and
ByteNet); the recurrent cells of :mod:`bigmodel_lib.models.rnn` (1 gate for
``RNNCell``, 3 for ``GRUCell``, 4 for ``LSTMCell``); and self-attention,
:class:`bigmodel_lib.models.attention.MultiHeadAttention` with query, key and value
the same sequence. Counts are for one sequence: a batch of ``B`` costs ``B`` times
as much.
"""

from __future__ import annotations

from typing import NamedTuple

from bigmodel_lib.metrics import attention_flops, linear_flops

__all__ = [
    "LAYER_KINDS",
    "convolution_flops",
    "recurrent_flops",
    "self_attention_flops",
    "sequential_operations",
    "maximum_path_length",
    "layer_cost_table",
]

LAYER_KINDS = ("self-attention", "recurrent", "convolution", "dilated convolution")
"""The rows of Vaswani et al.'s Table 1 that :func:`layer_cost_table` computes, in its order.

Introduced in §7.1.
"""


class LayerFlops(NamedTuple):
    """Forward FLOPs of one layer on one sequence: ``quadratic`` grows with n^2, ``linear`` with n."""

    quadratic: int
    linear: int

    @property
    def total(self) -> int:
        return self.quadratic + self.linear


class LayerCost(NamedTuple):
    """One row of the table: a layer kind and its three costs for given (n, d, k)."""

    layer: str
    flops: LayerFlops
    sequential_operations: int
    maximum_path_length: int


def _check_int(name: str, value, minimum: int, who: str) -> None:
    """Raise ValueError unless ``value`` is an integer (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{who}: expected {name} to be an integer >= {minimum}, got {value!r}")


def _check_kind(layer: str, who: str) -> None:
    if layer not in LAYER_KINDS:
        raise ValueError(f"{who}: expected layer to be one of {', '.join(map(repr, LAYER_KINDS))}, got {layer!r}")


def convolution_flops(n: int, d: int, k: int) -> LayerFlops:
    """FLOPs of a 1-D convolution ``d -> d`` with kernel ``k`` producing ``n`` positions: ``2 n k d^2``.

    Each of the ``n * d`` outputs is a dot product over ``k`` positions of ``d``
    channels. Dilation does not change the count, only which inputs are read.
    Nothing grows with ``n**2``. Raises ``ValueError`` unless ``n, d >= 1`` and
    ``k >= 1``.

    Introduced in §7.1.
    """
    for name, value in (("n", n), ("d", d), ("k", k)):
        _check_int(name, value, 1, "convolution_flops")
    return LayerFlops(quadratic=0, linear=2 * n * k * d * d)


def recurrent_flops(n: int, d: int, gates: int = 1) -> LayerFlops:
    """FLOPs of a recurrent layer of ``gates`` gates, ``d`` inputs and ``d`` hidden units, over ``n`` steps.

    Every step multiplies the input ``x_t`` (d,) by ``W_ih`` (gates*d, d) and the
    previous state ``h_{t-1}`` (d,) by ``W_hh`` (gates*d, d), even at the first
    step, where ``h_0 = 0``: ``4 * gates * n * d^2`` in all. ``gates`` is 1 for
    the vanilla RNN, 3 for the GRU and 4 for the LSTM. Raises ``ValueError``
    unless ``n, d, gates >= 1``.

    Introduced in §7.1.
    """
    for name, value in (("n", n), ("d", d), ("gates", gates)):
        _check_int(name, value, 1, "recurrent_flops")
    return LayerFlops(quadratic=0, linear=2 * linear_flops(d, gates * d, n))  # W_ih x_t and W_hh h_{t-1}


def self_attention_flops(n: int, d: int) -> LayerFlops:
    """FLOPs of multi-head self-attention of width ``d`` over ``n`` positions.

    The projections ``W^Q, W^K, W^V, W^O`` (each d x d, on n positions) cost
    ``8 n d^2``; ``Q K^T`` and multiplying the weights by ``V`` cost ``2 n^2 d``
    each, ``4 n^2 d`` (:func:`bigmodel_lib.attention_flops`), whatever the number
    of heads. A causal mask hides half the scores but the matrix products still
    compute them all. Raises ``ValueError`` unless ``n, d >= 1``.

    Introduced in §7.1.
    """
    for name, value in (("n", n), ("d", d)):
        _check_int(name, value, 1, "self_attention_flops")
    return LayerFlops(quadratic=attention_flops(n, d), linear=4 * linear_flops(d, d, n))


def sequential_operations(layer: str, n: int) -> int:
    """How many operations of one layer must run one after another on ``n`` positions.

    A recurrent layer needs ``h_{t-1}`` before it can compute ``h_t``: ``n``
    steps. A convolution or self-attention computes every position at once: 1.
    ``layer`` is one of :data:`LAYER_KINDS`. Raises ``ValueError`` for another
    kind or ``n < 1``.

    Introduced in §7.1.
    """
    _check_kind(layer, "sequential_operations")
    _check_int("n", n, 1, "sequential_operations")
    return n if layer == "recurrent" else 1


def maximum_path_length(layer: str, n: int, k: int | None = None) -> int:
    """The most layers (or recurrent steps) between two of ``n`` positions, in a stack of ``layer``.

    * self-attention: every position reads every other in one layer: 1 (0 when
      ``n == 1``);
    * recurrent: input 0 reaches output ``n - 1`` through ``n - 1`` updates
      of the hidden state;
    * convolution (causal, contiguous, kernel ``k``): each layer widens the
      window by ``k - 1`` positions, so ``ceil((n - 1) / (k - 1))`` layers;
    * dilated convolution (dilation ``k**l`` in layer ``l``): ``L`` layers see
      ``k**L`` positions, so the smallest ``L`` with ``k**L >= n``, i.e.
      ``ceil(log_k n)``, computed in integers.

    ``k`` is needed, and must be >= 2, for the two convolutions (with ``k == 1``
    no stack connects two positions). Raises ``ValueError`` otherwise.

    Introduced in §7.1.
    """
    who = "maximum_path_length"
    _check_kind(layer, who)
    _check_int("n", n, 1, who)
    if layer == "self-attention":
        return min(1, n - 1)
    if layer == "recurrent":
        return n - 1
    if k is None:
        raise ValueError(f"{who}: expected a kernel size k >= 2 for a {layer} layer, got k=None")
    _check_int("k", k, 2, who)
    if layer == "convolution":
        return -(-(n - 1) // (k - 1))  # ceil without floating point
    layers = 0
    while k**layers < n:
        layers += 1
    return layers


def layer_cost_table(n: int, d: int, k: int = 3, gates: int = 4) -> list[LayerCost]:
    """Vaswani et al.'s Table 1 for ``n`` positions, width ``d`` and kernel ``k``: one row per layer kind.

    Returns a list of :class:`LayerCost` ``(layer, flops, sequential_operations,
    maximum_path_length)`` in the order of :data:`LAYER_KINDS`; ``flops`` is a
    :class:`LayerFlops` ``(quadratic, linear)`` with ``.total``. The recurrent row
    has ``gates`` gates (4: the book's LSTM). Raises ``ValueError`` unless
    ``n, d, gates >= 1`` and ``k >= 2``.

    Introduced in §7.1.
    """
    for name, value, minimum in (("n", n, 1), ("d", d, 1), ("k", k, 2), ("gates", gates, 1)):
        _check_int(name, value, minimum, "layer_cost_table")
    flops = {
        "self-attention": self_attention_flops(n, d),
        "recurrent": recurrent_flops(n, d, gates),
        "convolution": convolution_flops(n, d, k),
        "dilated convolution": convolution_flops(n, d, k),
    }
    return [
        LayerCost(kind, flops[kind], sequential_operations(kind, n), maximum_path_length(kind, n, k))
        for kind in LAYER_KINDS
    ]
