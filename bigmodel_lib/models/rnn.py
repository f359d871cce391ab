"""Recurrent networks from their equations (chapter 3).

What is here, in the order the chapter builds it:

* ``RNNCell`` and ``RNN`` -- the vanilla recurrent network, one step and
  unrolled over time (multi-layer, optional output layer).
* ``LSTMCell`` and ``LSTM`` -- the long short-term memory with its gates and
  cell state; ``GRUCell`` in brief.
* ``input_gradient_norms`` -- how strongly the last output depends on each
  earlier input (vanishing and exploding gradients).
* ``SeedLSTMClassifier`` -- the source articles' LSTM classifier, with support
  for padded variable-length batches; ``seed_lstm_source`` shows the
  published code.
* ``CharLSTM`` and ``SequenceForecaster`` (with ``sliding_windows``) -- the two
  applications, built on ``nn.LSTM`` so that a GPU uses cuDNN's fused kernels.
  The from-scratch cells above are for understanding, not for speed.

The from-scratch modules name their parameters as PyTorch does, so copying
weights from ``nn.RNN``/``nn.LSTM``/``nn.GRUCell`` is a plain rename (see the
``from_torch`` class methods). Book notation -> parameter::

    W_xh (input-to-hidden)   -> weight_ih      PyTorch layer l: weight_ih_l{l}
    W_hh (hidden-to-hidden)  -> weight_hh                       weight_hh_l{l}
    b_h = b_ih + b_hh        -> bias_ih, bias_hh                bias_ih_l{l}, bias_hh_l{l}

PyTorch keeps two bias vectors where the book writes one ``b_h``; only their
sum matters. Shapes: ``B`` batch, ``T`` time steps, ``F`` input features,
``H`` hidden size, ``L`` layers, ``V`` vocabulary size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence

from bigmodel_lib.devices import evaluation_mode

__all__ = [
    "RNNCell",
    "RNN",
    "LSTMCell",
    "LSTM",
    "GRUCell",
    "input_gradient_norms",
    "SeedLSTMClassifier",
    "seed_lstm_source",
    "CharLSTM",
    "SequenceForecaster",
    "sliding_windows",
]


# ---------------------------------------------------------------------------
# Input checks shared by the modules
# ---------------------------------------------------------------------------


def _check_sequence(x: torch.Tensor, input_size: int, batch_first: bool, who: str) -> None:
    """Raise a ValueError unless x is a 3-D batch of sequences with input_size features."""
    layout = "(B, T, F)" if batch_first else "(T, B, F)"
    if x.dim() != 3:
        hint = ""
        if x.dim() == 2:
            hint = " (a single sequence? add a batch dimension with x.unsqueeze(0))" if batch_first else (
                " (a single sequence? add a batch dimension with x.unsqueeze(1))"
            )
        raise ValueError(
            f"{who} expects a 3-D input {layout} with F={input_size}, "
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

    Chapter 3, section 3.1 (the recurrent neural network).

    Parameters, named as in ``nn.RNNCell``: ``weight_ih`` = W_xh (H, F),
    ``weight_hh`` = W_hh (H, H), ``bias_ih + bias_hh`` = b_h (H,).
    ``nonlinearity`` is ``"tanh"`` (the book's) or ``"relu"``.
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
        # x_t (B, F), h_prev (B, H) -> h_t (B, H)
        pre = x_t @ self.weight_ih.T + self.bias_ih + h_prev @ self.weight_hh.T + self.bias_hh  # (B, H)
        return torch.tanh(pre) if self.nonlinearity == "tanh" else torch.relu(pre)


class RNN(nn.Module):
    """A vanilla RNN unrolled over time, with ``num_layers`` stacked cells.

    Chapter 3, section 3.1 (the recurrent neural network).

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
            x = x.transpose(0, 1)  # (T, B, F): loop over the first axis
        T, B, _ = x.shape
        if h0 is None:
            h0 = x.new_zeros(self.num_layers, B, self.hidden_size)
        _check_state(h0, (self.num_layers, B, self.hidden_size), "h0", "RNN")

        h = list(h0.unbind(0))  # L tensors of shape (B, H)
        outputs = []
        for t in range(T):
            inp = x[t]  # (B, F)
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

    Chapter 3, section 3.2 (long short-term memory).

    With ``[x_t; h_{t-1}]`` feeding every gate::

        i_t = sigmoid(W_xi x_t + W_hi h_{t-1} + b_i)    input gate
        f_t = sigmoid(W_xf x_t + W_hf h_{t-1} + b_f)    forget gate
        g_t = tanh   (W_xg x_t + W_hg h_{t-1} + b_g)    cell candidate
        o_t = sigmoid(W_xo x_t + W_ho h_{t-1} + b_o)    output gate
        c_t = f_t * c_{t-1} + i_t * g_t                 cell state
        h_t = o_t * tanh(c_t)                           hidden state

    The four input matrices are stacked in one ``weight_ih`` (4H, F) in the
    order i, f, g, o, as ``nn.LSTM`` stores them; likewise ``weight_hh``
    (4H, H), ``bias_ih`` and ``bias_hh`` (4H,).
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

    Chapter 3, section 3.2 (long short-term memory).

    Same interface as ``nn.LSTM``: ``forward(x, state=None)`` with ``x``
    (B, T, F) if ``batch_first`` else (T, B, F) and ``state = (h0, c0)``, each
    (L, B, H), zeros when omitted. Returns ``(out, (h_n, c_n))``. ``cells[l]``
    holds ``nn.LSTM``'s ``weight_ih_l{l}``, ``weight_hh_l{l}``,
    ``bias_ih_l{l}``, ``bias_hh_l{l}`` (:meth:`from_torch` copies them).
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
            x = x.transpose(0, 1)  # (T, B, F)
        T, B, _ = x.shape
        if state is None:
            zeros = x.new_zeros(self.num_layers, B, self.hidden_size)
            state = (zeros, zeros)
        for name, s in zip(("h0", "c0"), state):
            _check_state(s, (self.num_layers, B, self.hidden_size), name, "LSTM")

        h, c = list(state[0].unbind(0)), list(state[1].unbind(0))  # L tensors (B, H) each
        outputs = []
        for t in range(T):
            inp = x[t]  # (B, F)
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

    Chapter 3, section 3.3 (the GRU, a lighter gated cell).

    Two gates instead of three and no separate cell state::

        r_t = sigmoid(W_xr x_t + b_xr + W_hr h_{t-1} + b_hr)        reset gate
        z_t = sigmoid(W_xz x_t + b_xz + W_hz h_{t-1} + b_hz)        update gate
        n_t = tanh(W_xn x_t + b_xn + r_t * (W_hn h_{t-1} + b_hn))   candidate
        h_t = (1 - z_t) * n_t + z_t * h_{t-1}

    Parameters stacked in the order r, z, n as in ``nn.GRUCell`` (same names).
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


# ---------------------------------------------------------------------------
# Vanishing and exploding gradients
# ---------------------------------------------------------------------------


def input_gradient_norms(model: nn.Module, x: torch.Tensor, batch_first: bool = True) -> torch.Tensor:
    """``||d y_T / d x_t||`` for every step ``t``: how much the last output feels each input.

    Chapter 3, section 3.1 (vanishing and exploding gradients).

    ``model(x)`` may return a tensor or a tuple whose first element is the
    output (as ``nn.RNN``, ``nn.LSTM`` and this module's classes do). A 3-D
    output is a sequence and its last step is ``y_T``; a 2-D output (B, O), as
    from a classifier, is ``y_T`` already. For each step ``t`` this returns the
    Frobenius norm of the Jacobian ``d y_T / d x_t`` (O x F), averaged over the
    batch: a tensor of shape (T,). Index ``t`` is at distance ``T - 1 - t``
    from the output, so ``norms.flip(0)`` is ordered by distance.

    Costs one backward pass per output component; meant for small models.
    The model's train/eval mode is left as it is (on a GPU, cuDNN computes
    gradients of ``nn.RNN``/``nn.LSTM`` only in train mode).
    """
    if x.dim() != 3:
        raise ValueError(
            f"x must be a batch of sequences, {'(B, T, F)' if batch_first else '(T, B, F)'}, "
            f"got shape {tuple(x.shape)}"
        )
    x = x.detach().clone().requires_grad_(True)
    y = model(x)
    if isinstance(y, tuple):
        y = y[0]
    if y.dim() == 3:
        y = y[:, -1] if batch_first else y[-1]  # (B, O): the last step
    if y.dim() != 2:
        raise ValueError(f"expected the model's output to be (B, O) or a sequence of them, got {tuple(y.shape)}")

    squared = torch.zeros_like(x)  # accumulates (d y_T[k] / d x)^2 over output components k
    for k in range(y.shape[1]):
        # Sequences in a batch are independent, so the gradient of the batch sum
        # of y_T[:, k] holds every sequence's own gradient.
        (grad,) = torch.autograd.grad(y[:, k].sum(), x, retain_graph=k < y.shape[1] - 1)
        squared += grad**2
    per_step = squared.sum(dim=-1).sqrt()  # (B, T) or (T, B): Frobenius norm over (O, F)
    return per_step.mean(dim=0 if batch_first else 1).detach()  # (T,)


# ---------------------------------------------------------------------------
# The source articles' LSTM classifier
# ---------------------------------------------------------------------------


class SeedLSTMClassifier(nn.Module):
    """The source articles' ``RNN`` class: an LSTM whose last step feeds a classifier.

    Chapter 3, section 3.2 (long short-term memory: classifying sequences).

    Both seeds publish this class (seed 000 section 4.2, seed 001 section
    1.5.2) under the name ``RNN``, although it is an LSTM: a batch-first
    ``nn.LSTM`` started from zero states, whose output at the last time step,
    ``out[:, -1, :]``, goes through ``fc``. The parameter names (``lstm``,
    ``fc``) are the article's, so its ``state_dict`` loads as is.

    Defects and limits of the published code:

    * ``out[:, -1, :]`` is the state after the last *column* of the batch. In
      a padded batch of sequences of different lengths, the shorter sequences'
      last column is padding, so their prediction depends on how much padding
      the batch happened to need. Pass ``lengths`` to this class to fix that.
    * Seed 001's training loop iterates over ``train_loader``, which the
      article never defines: run as published, it stops with
      ``NameError: name 'train_loader' is not defined``.
    * Building ``h0``/``c0`` by hand with ``torch.zeros(...).to(x.device)`` is
      what ``nn.LSTM`` does anyway when no state is given; this class omits it.

    ``forward(x, lengths=None)``: ``x`` (B, T, input_size); ``lengths`` (B,)
    the real length of each sequence (1..T), padding after it. The sequences
    are then packed (``pack_padded_sequence``) so the LSTM stops at each
    sequence's last real step, and the top layer's final hidden state ``h_n``
    is that step's output. Returns logits (B, num_classes).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, num_classes: int):
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers, batch_first=True)
        self.fc = nn.Linear(hidden_size, num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | Sequence[int] | None = None) -> torch.Tensor:
        _check_sequence(x, self.input_size, True, "SeedLSTMClassifier")
        if lengths is None:
            out, _ = self.lstm(x)  # (B, T, H), zero initial states
            return self.fc(out[:, -1, :])  # the last column, as published
        lengths = _check_lengths(lengths, x.shape[0], x.shape[1])
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.lstm(packed)  # h_n (L, B, H), in the batch's original order
        return self.fc(h_n[-1])  # top layer, each sequence's last real step


def _check_lengths(lengths, batch_size: int, max_len: int) -> torch.Tensor:
    lengths = torch.as_tensor(lengths).detach().to("cpu")  # pack_padded_sequence wants them on the CPU
    if lengths.dim() != 1 or lengths.shape[0] != batch_size:
        raise ValueError(
            f"lengths must hold one length per sequence, shape ({batch_size},), got shape {tuple(lengths.shape)}"
        )
    if lengths.is_floating_point() or lengths.is_complex():
        raise ValueError(f"lengths must be integers, got dtype {lengths.dtype}")
    if lengths.min() < 1 or lengths.max() > max_len:
        raise ValueError(
            f"every length must be between 1 and the padded length T={max_len}, got {lengths.tolist()}"
        )
    return lengths.long()


_SOURCE_000_RNN = """\
import torch
import torch.nn as nn
import torch.optim as optim

class RNN(nn.Module):
    def __init__(self, input_size, hidden_size, num_layers, num_classes):
        super(RNN, self).__init__()
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers, batch_first=True)
        self.fc = nn.Linear(hidden_size, num_classes)

    def forward(self, x):
        h0 = torch.zeros(self.num_layers, x.size(0), self.hidden_size).to(x.device)
        c0 = torch.zeros(self.num_layers, x.size(0), self.hidden_size).to(x.device)
        out, (hn, cn) = self.lstm(x, (h0, c0))
        out = self.fc(out[:, -1, :])
        return out

net = RNN(input_size=10, hidden_size=8, num_layers=2, num_classes=2)
"""

# Seed 000, section 4.2, as the page shows it: one line, breaks and indents lost.
_PUBLISHED_000_RNN = (
    "import torchimport torch.nn as nnimport torch.optim as optimclass RNN(nn.Module):"
    "def __init__(self, input_size, hidden_size, num_layers, num_classes):super(RNN, self).__init__()"
    "self.hidden_size = hidden_sizeself.num_layers = num_layers"
    "self.lstm = nn.LSTM(input_size, hidden_size, num_layers, batch_first=True)"
    "self.fc = nn.Linear(hidden_size, num_classes)def forward(self, x):"
    "h0 = torch.zeros(self.num_layers, x.size(0), self.hidden_size).to(x.device)"
    "c0 = torch.zeros(self.num_layers, x.size(0), self.hidden_size).to(x.device)"
    "out, (hn, cn) = self.lstm(x, (h0, c0))out = self.fc(out[:, -1, :])return out"
    "net = RNN(input_size=10, hidden_size=8, num_layers=2, num_classes=2)"
)

_SOURCE_001_RNN_MODEL = """\
import torch
import torch.nn as nn
import torch.optim as optim

class RNN(nn.Module):
    def __init__(self, input_size, hidden_size, num_layers, num_classes):
        super(RNN, self).__init__()
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers, batch_first=True)
        self.fc = nn.Linear(hidden_size, num_classes)

    def forward(self, x):
        h0 = torch.zeros(self.num_layers, x.size(0), self.hidden_size).to(x.device)
        c0 = torch.zeros(self.num_layers, x.size(0), self.hidden_size).to(x.device)
        output, (hn, cn) = self.lstm(x, (h0, c0))
        output = self.fc(output[:, -1, :])
        return output

model = RNN(input_size=10, hidden_size=50, num_layers=2, num_classes=2)
criterion = nn.CrossEntropyLoss()
optimizer = optim.Adam(model.parameters(), lr=0.01)
"""

_SOURCE_001_RNN_LOOP = """\

# 训练模型
for epoch in range(10):
    for data, target in train_loader:
        optimizer.zero_grad()
        output = model(data)
        loss = criterion(output, target)
        loss.backward()
        optimizer.step()
"""

# Seed 001, section 1.5.2, as the page shows it: line breaks kept, indents lost.
_PUBLISHED_001_RNN = """\
import torch
import torch.nn as nn
import torch.optim as optim
class RNN(nn.Module):
def __init__(self, input_size, hidden_size, num_layers, num_classes):
super(RNN, self).__init__()
self.hidden_size = hidden_size
self.num_layers = num_layers
self.lstm = nn.LSTM(input_size, hidden_size, num_layers, batch_first=True)
self.fc = nn.Linear(hidden_size, num_classes)
def forward(self, x):
h0 = torch.zeros(self.num_layers, x.size(0), self.hidden_size).to(x.device)
c0 = torch.zeros(self.num_layers, x.size(0), self.hidden_size).to(x.device)
output, (hn, cn) = self.lstm(x, (h0, c0))
output = self.fc(output[:, -1, :])
return output
model = RNN(input_size=10, hidden_size=50, num_layers=2, num_classes=2)
criterion = nn.CrossEntropyLoss()
optimizer = optim.Adam(model.parameters(), lr=0.01)
# 训练模型
for epoch in range(10):
for data, target in train_loader:
optimizer.zero_grad()
output = model(data)
loss = criterion(output, target)
loss.backward()
optimizer.step()
"""


def seed_lstm_source(seed: str, include_training_loop: bool = True) -> str:
    """The source articles' LSTM classifier code, every token as published, re-indented.

    Chapter 3, section 3.2 (long short-term memory: classifying sequences).

    ``seed="000"`` (section 4.2) ends in
    ``net = RNN(input_size=10, hidden_size=8, num_layers=2, num_classes=2)``;
    the page lost its line breaks and indentation, which are reconstructed.
    ``seed="001"`` (section 1.5.2) builds ``RNN(input_size=10, hidden_size=50,
    num_layers=2, num_classes=2)`` with a loss, an optimizer and a training loop
    over ``train_loader``, which is never defined: executing the full source
    raises ``NameError: name 'train_loader' is not defined``.
    ``include_training_loop=False`` leaves the loop out (seed 000 has none).
    """
    if seed == "000":
        return _SOURCE_000_RNN
    if seed == "001":
        return _SOURCE_001_RNN_MODEL + (_SOURCE_001_RNN_LOOP if include_training_loop else "")
    raise ValueError(f"seed must be '000' or '001', got {seed!r}")


# ---------------------------------------------------------------------------
# Applications: character-level language model and forecasting
# ---------------------------------------------------------------------------


class CharLSTM(nn.Module):
    """A character-level language model: embedding -> LSTM -> next-character logits.

    Chapter 3, section 3.4 (generating text one character at a time).

    ``forward(idx, state=None)``: ``idx`` (B, T) character ids in
    ``[0, vocab_size)``; returns ``(logits, state)`` with logits (B, T, V), the
    prediction of the character after each position, and the LSTM state
    ``(h, c)`` (L, B, H) each, to continue from. Uses ``nn.LSTM`` (cuDNN on a
    GPU); :class:`LSTM` is the same computation written out.
    """

    def __init__(self, vocab_size: int, embedding_dim: int = 32, hidden_size: int = 128, num_layers: int = 1):
        super().__init__()
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.lstm = nn.LSTM(embedding_dim, hidden_size, num_layers, batch_first=True)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(
        self, idx: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        if idx.dim() != 2 or idx.is_floating_point():
            hint = " (a single sequence? use idx.unsqueeze(0))" if idx.dim() == 1 else ""
            raise ValueError(
                f"CharLSTM expects integer character ids of shape (B, T), got {idx.dtype} "
                f"of shape {tuple(idx.shape)}{hint}"
            )
        if idx.numel() and (idx.min() < 0 or idx.max() >= self.vocab_size):
            raise ValueError(
                f"character ids must be in [0, {self.vocab_size}), got ids from "
                f"{idx.min().item()} to {idx.max().item()}"
            )
        emb = self.embedding(idx)  # (B, T, E)
        out, state = self.lstm(emb, state)  # (B, T, H)
        return self.head(out), state  # (B, T, V)

    @torch.no_grad()
    def generate(
        self,
        start: Sequence[int] | torch.Tensor,
        length: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> list[int]:
        """Continue ``start`` (character ids) by ``length`` sampled characters.

        Samples from ``softmax(logits / temperature)``: below 1 sharper, above 1
        flatter; ``temperature=0`` picks the most likely character every time.
        Randomness comes from ``generator`` (a CPU ``torch.Generator``: sampling
        runs on the CPU) if given, else from the global seed,
        so ``torch.manual_seed(s)`` makes a run repeatable. Returns the ids of
        ``start`` followed by the new ones. The model is put in eval mode for
        the call and restored afterwards.
        """
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        device = self.head.weight.device
        ids = torch.as_tensor(list(start) if not torch.is_tensor(start) else start, dtype=torch.long)
        if ids.dim() != 1 or ids.numel() == 0:
            raise ValueError(f"start must be a non-empty 1-D sequence of character ids, got shape {tuple(ids.shape)}")
        with evaluation_mode(self):  # no dropout; the caller's mode is restored afterwards
            result = ids.tolist()
            logits, state = self(ids.to(device).unsqueeze(0))  # read the whole prompt: (1, T, V)
            for _ in range(length):
                last = logits[0, -1]  # (V,)
                if temperature == 0:
                    next_id = int(last.argmax())
                else:
                    probs = F.softmax(last / temperature, dim=-1)
                    next_id = int(torch.multinomial(probs.cpu(), 1, generator=generator))
                result.append(next_id)
                logits, state = self(torch.tensor([[next_id]], device=device), state)  # one step: (1, 1, V)
        return result


class SequenceForecaster(nn.Module):
    """An LSTM regressor that predicts the next value of a univariate series.

    Chapter 3, section 3.5 (forecasting a time series).

    ``forward(window)``: ``window`` (B, T) of past values, or (B, T, 1);
    returns (B,), the prediction of the value after each window: the LSTM's
    last hidden state through a linear layer. :func:`sliding_windows` cuts a
    series into (window, next value) pairs for training; :meth:`forecast`
    feeds predictions back in to look several steps ahead.
    """

    def __init__(self, hidden_size: int = 32, num_layers: int = 1):
        super().__init__()
        self.lstm = nn.LSTM(1, hidden_size, num_layers, batch_first=True)
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        if window.dim() == 3 and window.shape[-1] == 1:
            window = window.squeeze(-1)
        if window.dim() != 2:
            raise ValueError(
                "SequenceForecaster expects windows of a univariate series, (B, T) or (B, T, 1), "
                f"got shape {tuple(window.shape)}"
            )
        out, _ = self.lstm(window.unsqueeze(-1))  # (B, T, H)
        return self.head(out[:, -1]).squeeze(-1)  # (B,)

    @torch.no_grad()
    def forecast(self, window: torch.Tensor, steps: int) -> torch.Tensor:
        """Predict ``steps`` values after ``window`` (T,), each from the previous predictions."""
        if window.dim() != 1:
            raise ValueError(f"forecast expects one window of shape (T,), got {tuple(window.shape)}")
        history = window.clone()
        predictions = []
        for _ in range(steps):
            nxt = self(history.unsqueeze(0))  # (1,)
            predictions.append(nxt[0])
            history = torch.cat([history[1:], nxt])  # slide the window by one
        return torch.stack(predictions) if predictions else window.new_zeros(0)


def sliding_windows(series: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut a series (N,) into inputs (N - window, window) and next values (N - window,).

    Chapter 3, section 3.5 (forecasting a time series).

    Row ``i`` of the inputs is ``series[i : i + window]`` and its target is
    ``series[i + window]``.
    """
    if series.dim() != 1:
        raise ValueError(f"series must be 1-D (N,), got shape {tuple(series.shape)}")
    if not 1 <= window < series.shape[0]:
        raise ValueError(f"window must be between 1 and N - 1 = {series.shape[0] - 1}, got {window}")
    inputs = series.unfold(0, window, 1)[:-1]  # (N - window, window)
    targets = series[window:]  # (N - window,)
    return inputs, targets
