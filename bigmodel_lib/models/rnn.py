"""Recurrent networks from their equations (chapter 3).

What is here, in the order the chapter builds it:

* ``RNNCell`` and ``RNN`` -- the vanilla recurrent network, one step and
  unrolled over time (multi-layer, optional output layer).
* ``LSTMCell`` and ``LSTM`` -- the long short-term memory with its gates and
  cell state; ``GRUCell`` in brief.

How strongly the last output depends on each earlier input (vanishing and
exploding gradients) is measured by :func:`bigmodel_lib.probes.input_gradient_norms`;
the source articles' LSTM classifier is in :mod:`bigmodel_lib.articles`; the
applications, built on ``nn.LSTM`` so that a GPU uses cuDNN's fused kernels,
are :mod:`bigmodel_lib.models.char_lstm` and :mod:`bigmodel_lib.models.forecaster`.
The from-scratch cells here are for understanding, not for speed.

The from-scratch modules name their parameters as PyTorch does, so copying
weights from ``nn.RNN``/``nn.LSTM``/``nn.GRUCell`` is a plain rename (see the
``from_torch`` class methods). Book notation -> parameter::

    W_xh (input-to-hidden)   -> weight_ih      PyTorch layer l: weight_ih_l{l}
    W_hh (hidden-to-hidden)  -> weight_hh                       weight_hh_l{l}
    b_h = b_ih + b_hh        -> bias_ih, bias_hh                bias_ih_l{l}, bias_hh_l{l}

PyTorch keeps two bias vectors where the book writes one ``b_h``; only their
sum matters. Shapes: ``B`` batch, ``T`` time steps, ``I`` input features,
``H`` hidden size, ``L`` layers, ``V`` vocabulary size.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

__all__ = [
    "RNNCell",
    "RNN",
    "LSTMCell",
    "LSTM",
    "GRUCell",
]


# ---------------------------------------------------------------------------
# Input checks shared by the modules
# ---------------------------------------------------------------------------


def _check_sequence(x: torch.Tensor, input_size: int, batch_first: bool, who: str) -> None:
    """Raise a ValueError unless x is a 3-D batch of sequences with input_size features."""
    layout = "(B, T, I)" if batch_first else "(T, B, I)"
    if x.dim() != 3:
        hint = ""
        if x.dim() == 2:
            hint = " (a single sequence? add a batch dimension with x.unsqueeze(0))" if batch_first else (
                " (a single sequence? add a batch dimension with x.unsqueeze(1))"
            )
        raise ValueError(
            f"{who} expects a 3-D input {layout} with I={input_size}, "
            f"got a {x.dim()}-D tensor of shape {tuple(x.shape)}{hint}"
        )
    if x.shape[-1] != input_size:
        raise ValueError(
            f"{who} was built for input_size={input_size} features {layout}, "
            f"got {x.shape[-1]} features in shape {tuple(x.shape)}"
        )


def _check_state(h: torch.Tensor, expected: tuple[int, ...], name: str, who: str) -> None:
    if tuple(h.shape) != expected:
        raise ValueError(f"{who}: {name} must have shape {expected} (L, B, H), got {tuple(h.shape)}")


def _init_uniform(module: nn.Module, hidden_size: int) -> None:
    # PyTorch's default for its recurrent layers: U(-1/sqrt(H), 1/sqrt(H)).
    bound = 1.0 / math.sqrt(hidden_size)
    for p in module.parameters():
        nn.init.uniform_(p, -bound, bound)


# ---------------------------------------------------------------------------
# Vanilla RNN
# ---------------------------------------------------------------------------


class RNNCell(nn.Module):
    """One step of a vanilla RNN: ``h_t = tanh(W_xh x_t + W_hh h_{t-1} + b_h)``.

    Parameters, named as in ``nn.RNNCell``: ``weight_ih`` = W_xh (H, I),
    ``weight_hh`` = W_hh (H, H), ``bias_ih + bias_hh`` = b_h (H,).
    ``nonlinearity`` is ``"tanh"`` (the book's) or ``"relu"``.

    Introduced in §3.1.
    """

    def __init__(self, input_size: int, hidden_size: int, nonlinearity: str = "tanh"):
        super().__init__()
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.input_size, self.hidden_size, self.nonlinearity = input_size, hidden_size, nonlinearity
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size))  # W_xh
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size))  # W_hh
        self.bias_ih = nn.Parameter(torch.empty(hidden_size))
        self.bias_hh = nn.Parameter(torch.empty(hidden_size))
        _init_uniform(self, hidden_size)

    def forward(self, x_t: torch.Tensor, h_prev: torch.Tensor) -> torch.Tensor:
        # x_t (B, I), h_prev (B, H) -> h_t (B, H)
        pre = x_t @ self.weight_ih.T + self.bias_ih + h_prev @ self.weight_hh.T + self.bias_hh  # (B, H)
        return torch.tanh(pre) if self.nonlinearity == "tanh" else torch.relu(pre)


class RNN(nn.Module):
    """A vanilla RNN unrolled over time, with ``num_layers`` stacked cells.

    Layer 0 reads the input ``x_t``; layer ``l > 0`` reads the hidden state of
    layer ``l - 1`` at the same step. ``cells[l]`` holds the parameters that
    ``nn.RNN`` calls ``weight_ih_l{l}``, ``weight_hh_l{l}``, ``bias_ih_l{l}``
    and ``bias_hh_l{l}`` (:meth:`from_torch` copies them).

    ``forward(x, h0=None)`` returns ``(out, h_n)`` like ``nn.RNN``: ``out`` is
    the top layer's hidden state at every step, (B, T, H) if ``batch_first``
    else (T, B, H), and ``h_n`` (L, B, H) the last step of every layer. With
    ``output_size`` set, the output layer ``y_t = W_hy h_t + b_y``
    (``self.output``, an ``nn.Linear``) is applied and ``out`` holds ``y_t``
    (..., output_size) instead.

    Introduced in §3.1.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        batch_first: bool = False,
        output_size: int | None = None,
    ):
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.batch_first = batch_first
        self.cells = nn.ModuleList(
            RNNCell(input_size if layer == 0 else hidden_size, hidden_size, nonlinearity)
            for layer in range(num_layers)
        )
        self.output = nn.Linear(hidden_size, output_size) if output_size is not None else None  # W_hy, b_y

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        _check_sequence(x, self.input_size, self.batch_first, "RNN")
        if self.batch_first:
            x = x.transpose(0, 1)  # (T, B, I): loop over the first axis
        T, B, _ = x.shape
        if h0 is None:
            h0 = x.new_zeros(self.num_layers, B, self.hidden_size)
        _check_state(h0, (self.num_layers, B, self.hidden_size), "h0", "RNN")

        h = list(h0.unbind(0))  # L tensors of shape (B, H)
        outputs = []
        for t in range(T):
            inp = x[t]  # (B, I)
            for layer, cell in enumerate(self.cells):
                h[layer] = cell(inp, h[layer])  # (B, H)
                inp = h[layer]  # the next layer reads this layer's state
            outputs.append(inp)
        out = torch.stack(outputs)  # (T, B, H)
        if self.output is not None:
            out = self.output(out)  # (T, B, output_size)
        if self.batch_first:
            out = out.transpose(0, 1)  # (B, T, ...)
        return out, torch.stack(h)  # h_n: (L, B, H)

    @classmethod
    def from_torch(cls, rnn: nn.RNN) -> RNN:
        """Build an ``RNN`` holding a copy of an ``nn.RNN``'s weights."""
        if rnn.bidirectional or not rnn.bias or rnn.dropout:
            raise ValueError("from_torch copies unidirectional nn.RNN layers with bias and no dropout")
        ours = cls(rnn.input_size, rnn.hidden_size, rnn.num_layers, rnn.nonlinearity, rnn.batch_first)
        _copy_layers(rnn, ours.cells)
        return ours


def _copy_layers(torch_rnn: nn.RNNBase, cells: nn.ModuleList) -> None:
    """cells[l].weight_ih <- weight_ih_l{l}, and so on for weight_hh, bias_ih, bias_hh."""
    with torch.no_grad():
        for layer, cell in enumerate(cells):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                source = getattr(torch_rnn, f"{name}_l{layer}")
                target = getattr(cell, name)
                assert source.shape == target.shape, (name, layer, source.shape, target.shape)
                target.copy_(source)


# ---------------------------------------------------------------------------
# LSTM and GRU
# ---------------------------------------------------------------------------


class LSTMCell(nn.Module):
    """One step of an LSTM: four gates and a cell state.

    With ``[x_t; h_{t-1}]`` feeding every gate::

        i_t = sigmoid(W_xi x_t + W_hi h_{t-1} + b_i)    input gate
        f_t = sigmoid(W_xf x_t + W_hf h_{t-1} + b_f)    forget gate
        g_t = tanh   (W_xg x_t + W_hg h_{t-1} + b_g)    cell candidate
        o_t = sigmoid(W_xo x_t + W_ho h_{t-1} + b_o)    output gate
        c_t = f_t * c_{t-1} + i_t * g_t                 cell state
        h_t = o_t * tanh(c_t)                           hidden state

    The four input matrices are stacked in one ``weight_ih`` (4H, I) in the
    order i, f, g, o, as ``nn.LSTM`` stores them; likewise ``weight_hh``
    (4H, H), ``bias_ih`` and ``bias_hh`` (4H,).

    Introduced in §3.2.
    """

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(4 * hidden_size))
        self.bias_hh = nn.Parameter(torch.empty(4 * hidden_size))
        _init_uniform(self, hidden_size)

    def forward(
        self, x_t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h_prev, c_prev = state  # (B, H) each
        gates = x_t @ self.weight_ih.T + self.bias_ih + h_prev @ self.weight_hh.T + self.bias_hh  # (B, 4H)
        i, f, g, o = gates.chunk(4, dim=1)  # (B, H) each
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        c = f * c_prev + i * g  # forget part of the old memory, write part of the new
        h = o * torch.tanh(c)  # expose part of the memory
        return h, c


class LSTM(nn.Module):
    """An LSTM unrolled over time, with ``num_layers`` stacked cells.

    Same interface as ``nn.LSTM``: ``forward(x, state=None)`` with ``x``
    (B, T, I) if ``batch_first`` else (T, B, I) and ``state = (h0, c0)``, each
    (L, B, H), zeros when omitted. Returns ``(out, (h_n, c_n))``. ``cells[l]``
    holds ``nn.LSTM``'s ``weight_ih_l{l}``, ``weight_hh_l{l}``,
    ``bias_ih_l{l}``, ``bias_hh_l{l}`` (:meth:`from_torch` copies them).

    Introduced in §3.2.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, batch_first: bool = False):
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.batch_first = batch_first
        self.cells = nn.ModuleList(
            LSTMCell(input_size if layer == 0 else hidden_size, hidden_size) for layer in range(num_layers)
        )

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        _check_sequence(x, self.input_size, self.batch_first, "LSTM")
        if self.batch_first:
            x = x.transpose(0, 1)  # (T, B, I)
        T, B, _ = x.shape
        if state is None:
            zeros = x.new_zeros(self.num_layers, B, self.hidden_size)
            state = (zeros, zeros)
        for name, s in zip(("h0", "c0"), state):
            _check_state(s, (self.num_layers, B, self.hidden_size), name, "LSTM")

        h, c = list(state[0].unbind(0)), list(state[1].unbind(0))  # L tensors (B, H) each
        outputs = []
        for t in range(T):
            inp = x[t]  # (B, I)
            for layer, cell in enumerate(self.cells):
                h[layer], c[layer] = cell(inp, (h[layer], c[layer]))
                inp = h[layer]
            outputs.append(inp)
        out = torch.stack(outputs)  # (T, B, H)
        if self.batch_first:
            out = out.transpose(0, 1)  # (B, T, H)
        return out, (torch.stack(h), torch.stack(c))  # (L, B, H) each

    @classmethod
    def from_torch(cls, lstm: nn.LSTM) -> LSTM:
        """Build an ``LSTM`` holding a copy of an ``nn.LSTM``'s weights."""
        if lstm.bidirectional or not lstm.bias or lstm.dropout or lstm.proj_size:
            raise ValueError("from_torch copies unidirectional nn.LSTM layers with bias, no dropout, no projection")
        ours = cls(lstm.input_size, lstm.hidden_size, lstm.num_layers, lstm.batch_first)
        _copy_layers(lstm, ours.cells)
        return ours


class GRUCell(nn.Module):
    """One step of a gated recurrent unit (GRU), in brief.

    Two gates instead of three and no separate cell state::

        r_t = sigmoid(W_xr x_t + b_xr + W_hr h_{t-1} + b_hr)        reset gate
        z_t = sigmoid(W_xz x_t + b_xz + W_hz h_{t-1} + b_hz)        update gate
        n_t = tanh(W_xn x_t + b_xn + r_t * (W_hn h_{t-1} + b_hn))   candidate
        h_t = (1 - z_t) * n_t + z_t * h_{t-1}

    Parameters stacked in the order r, z, n as in ``nn.GRUCell`` (same names).

    Introduced in §3.3.
    """

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = nn.Parameter(torch.empty(3 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(3 * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(3 * hidden_size))
        self.bias_hh = nn.Parameter(torch.empty(3 * hidden_size))
        _init_uniform(self, hidden_size)

    def forward(self, x_t: torch.Tensor, h_prev: torch.Tensor | None = None) -> torch.Tensor:
        if x_t.dim() != 2 or x_t.shape[1] != self.input_size:
            raise ValueError(f"GRUCell expects x_t of shape (B, {self.input_size}), got {tuple(x_t.shape)}")
        if h_prev is None:
            h_prev = x_t.new_zeros(x_t.shape[0], self.hidden_size)
        xr, xz, xn = (x_t @ self.weight_ih.T + self.bias_ih).chunk(3, dim=1)  # (B, H) each
        hr, hz, hn = (h_prev @ self.weight_hh.T + self.bias_hh).chunk(3, dim=1)  # (B, H) each
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)  # the reset gate scales the hidden part only
        return (1 - z) * n + z * h_prev  # (B, H)

    @classmethod
    def from_torch(cls, cell: nn.GRUCell) -> GRUCell:
        """Build a ``GRUCell`` holding a copy of an ``nn.GRUCell``'s weights."""
        ours = cls(cell.input_size, cell.hidden_size)
        ours.load_state_dict(cell.state_dict())  # same names, same shapes
        return ours
