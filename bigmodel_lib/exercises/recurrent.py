"""Checkers for chapter 3's exercises: gradient clipping, an LSTM step and a GRU step.

Each checker runs the learner's function on fixed and seeded cases against
PyTorch's own function (``nn.utils.clip_grad_norm_``, ``nn.LSTMCell`` and
``nn.GRUCell`` with the same weights) and, when it fails, names the modelled
mistake its output matches. See ``bigmodel_lib.exercises`` for the result.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from bigmodel_lib.exercises.checking import Case, CheckResult, Mutant, run_check

# ---------------------------------------------------------------------------
# Gradient clipping by global norm


def _clip_cases() -> list[Case]:
    gen = torch.Generator().manual_seed(20)
    shapes = [(4, 3), (3,), (2, 2, 2)]
    return [
        Case("large gradients", {"grads": [5 * torch.randn(*s, generator=gen) for s in shapes], "max_norm": 1.0}),
        Case("already small", {"grads": [0.01 * torch.randn(*s, generator=gen) for s in shapes], "max_norm": 1.0}),
        Case("one tensor", {"grads": [torch.randn(10, generator=gen)], "max_norm": 0.5}),
        Case("one large among small ones", {"grads": [torch.randn(3, generator=gen), 50 * torch.randn(3, generator=gen),
                                                      0.1 * torch.randn(2, 3, generator=gen)], "max_norm": 2.0}),
    ]


def _clip_reference(grads, max_norm):
    params = [torch.zeros_like(g, requires_grad=True) for g in grads]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    norm = nn.utils.clip_grad_norm_(params, max_norm)
    return [p.grad for p in params], norm


def _global_norm(grads):
    return torch.sqrt(sum((g**2).sum() for g in grads))


def _clip_per_tensor(grads, max_norm):
    clipped = [g * min(1.0, max_norm / (g.norm().item() + 1e-6)) for g in grads]
    return clipped, _global_norm(grads)


def _clip_always(grads, max_norm):
    norm = _global_norm(grads)
    return [g * max_norm / (norm + 1e-6) for g in grads], norm


def _clip_sum_of_norms(grads, max_norm):
    norm = sum(g.norm() for g in grads)
    return [g * min(1.0, max_norm / (norm.item() + 1e-6)) for g in grads], norm


def _clip_norm_after(grads, max_norm):
    norm = _global_norm(grads)
    clipped = [g * min(1.0, max_norm / (norm.item() + 1e-6)) for g in grads]
    return clipped, _global_norm(clipped)


CLIP_MUTANTS = [
    Mutant("per tensor", _clip_per_tensor,
           "each gradient is clipped by its own norm: the bound is on the norm of all gradients together, "
           "sqrt(sum over every tensor of (g ** 2).sum()), and every tensor is scaled by the same factor."),
    Mutant("always scaled", _clip_always,
           "small gradients are scaled up: scale by min(1, max_norm / norm), so gradients whose norm is already "
           "below the bound are left alone."),
    Mutant("sum of norms", _clip_sum_of_norms,
           "the global norm is not the sum of the tensors' norms: it is sqrt(sum of every entry squared), the "
           "norm of all gradients concatenated into one vector."),
    Mutant("norm after clipping", _clip_norm_after,
           "the norm returned is the one after clipping: return the norm before clipping, as "
           "nn.utils.clip_grad_norm_ does (it is what you want to log)."),
]


def check_clip_grad_norm(fn, strict: bool = False) -> CheckResult:
    """Check ``fn(grads, max_norm)``, gradient clipping by global norm: -> (clipped grads, norm before clipping).

    ``grads`` is a list of float32 tensors of any shapes and ``max_norm`` a float;
    the result is a list of tensors of the same shapes, each scaled by
    ``min(1, max_norm / (norm + 1e-6))``, and the global norm
    ``sqrt(sum of every entry squared)`` before clipping (a 0-d tensor or a float).
    Compared with ``nn.utils.clip_grad_norm_``. Known mistakes: clipping each
    tensor by its own norm, scaling small gradients up, the sum of the norms,
    returning the norm after clipping. ``strict=True`` raises ``AssertionError``.

    Introduced in §3.1.
    """
    return run_check("clip_grad_norm", fn, _clip_cases(), _clip_reference, CLIP_MUTANTS, strict=strict,
                     rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------
# Recurrent cells


def _cell_cases(gates: int, with_cell: bool) -> list[Case]:
    gen = torch.Generator().manual_seed(21 + gates)
    cases = []
    sizes = [("random state", 3, 5, 4, False), ("zero state (the first step)", 2, 3, 6, True),
             ("one example", 1, 4, 4, False)]
    for label, B, n_in, H, zero_state in sizes:  # n_in: the input features, I in the chapter
        args = {"x_t": torch.randn(B, n_in, generator=gen)}
        args["h_prev"] = torch.zeros(B, H) if zero_state else torch.randn(B, H, generator=gen)
        if with_cell:
            args["c_prev"] = torch.zeros(B, H) if zero_state else 2 * torch.randn(B, H, generator=gen)
        args["W_x"] = torch.randn(gates * H, n_in, generator=gen) / n_in**0.5
        args["W_h"] = torch.randn(gates * H, H, generator=gen) / H**0.5
        if with_cell:
            args["b"] = torch.randn(gates * H, generator=gen)
        else:
            args["b_x"], args["b_h"] = torch.randn(gates * H, generator=gen), torch.randn(gates * H, generator=gen)
        cases.append(Case(label, args))
    return cases


def _lstm_reference(x_t, h_prev, c_prev, W_x, W_h, b):
    cell = nn.LSTMCell(W_x.shape[1], W_h.shape[1])
    with torch.no_grad():
        cell.weight_ih.copy_(W_x)
        cell.weight_hh.copy_(W_h)
        cell.bias_ih.copy_(b)
        cell.bias_hh.zero_()
        return cell(x_t, (h_prev, c_prev))


def _lstm_variant(order="ifgo", swap_activations=False, use_cell=True, tanh_on_c=True, swap_outputs=False):
    def step(x_t, h_prev, c_prev, W_x, W_h, b):
        parts = dict(zip(order, (x_t @ W_x.T + h_prev @ W_h.T + b).chunk(4, dim=1)))
        gate, squash = (torch.tanh, torch.sigmoid) if swap_activations else (torch.sigmoid, torch.tanh)
        i, f, g, o = gate(parts["i"]), gate(parts["f"]), squash(parts["g"]), gate(parts["o"])
        c = (f * c_prev if use_cell else 0) + i * g
        h = o * torch.tanh(c) if tanh_on_c else o * c
        return (c, h) if swap_outputs else (h, c)
    return step


LSTM_MUTANTS = [
    Mutant("gates in the wrong order", _lstm_variant(order="ifog"),
           "the gates are taken in the wrong order: nn.LSTM stacks the rows of W_x, W_h and b as input gate i, "
           "forget gate f, candidate g, output gate o (chunk(4, dim=1) gives them in that order)."),
    Mutant("tanh and sigmoid swapped", _lstm_variant(swap_activations=True),
           "tanh and sigmoid are swapped: the gates i, f and o use the sigmoid (values between 0 and 1), the "
           "candidate g uses tanh."),
    Mutant("cell state not used", _lstm_variant(use_cell=False),
           "the previous cell state is not used: c = f * c_prev + i * g; the forget gate decides how much of the "
           "old memory to keep."),
    Mutant("no tanh on the cell", _lstm_variant(tanh_on_c=False),
           "h = o * c is missing the tanh: the hidden state is h = o * tanh(c)."),
    Mutant("outputs swapped", _lstm_variant(swap_outputs=True),
           "the outputs are swapped: return (h, c), the hidden state first, as nn.LSTMCell does."),
]


def check_lstm_cell(fn, strict: bool = False) -> CheckResult:
    """Check ``fn(x_t, h_prev, c_prev, W_x, W_h, b)``, one LSTM step: -> (h, c), called positionally.

    ``x_t`` (B, I), ``h_prev`` and ``c_prev`` (B, H), ``W_x`` (4H, I), ``W_h``
    (4H, H) and ``b`` (4H,), all float32, with rows stacked as nn.LSTM's gates
    i, f, g, o; returns ``h`` and ``c``, each (B, H). Compared with
    ``nn.LSTMCell`` holding the same weights (``bias_ih = b``, ``bias_hh = 0``).
    Known mistakes: gates in the wrong order, tanh and sigmoid swapped, the old
    cell state unused, no tanh on the cell, (c, h) returned. ``strict=True``
    raises ``AssertionError`` on failure.

    Introduced in §3.2.
    """
    return run_check("lstm_cell", fn, _cell_cases(4, True), _lstm_reference, LSTM_MUTANTS, strict=strict,
                     rtol=1e-5, atol=1e-5)


def _gru_reference(x_t, h_prev, W_x, W_h, b_x, b_h):
    cell = nn.GRUCell(W_x.shape[1], W_h.shape[1])
    with torch.no_grad():
        for param, value in zip((cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh), (W_x, W_h, b_x, b_h)):
            param.copy_(value)
        return cell(x_t, h_prev)


def _gru_variant(order="rzn", reset_before=False, bias_outside=False, swap_z=False):
    def step(x_t, h_prev, W_x, W_h, b_x, b_h):
        xs = dict(zip(order, (x_t @ W_x.T + b_x).chunk(3, dim=1)))
        W_hs, b_hs = dict(zip(order, W_h.chunk(3, dim=0))), dict(zip(order, b_h.chunk(3)))
        r = torch.sigmoid(xs["r"] + h_prev @ W_hs["r"].T + b_hs["r"])
        z = torch.sigmoid(xs["z"] + h_prev @ W_hs["z"].T + b_hs["z"])
        if reset_before:
            n = torch.tanh(xs["n"] + (r * h_prev) @ W_hs["n"].T + b_hs["n"])
        elif bias_outside:
            n = torch.tanh(xs["n"] + r * (h_prev @ W_hs["n"].T) + b_hs["n"])
        else:
            n = torch.tanh(xs["n"] + r * (h_prev @ W_hs["n"].T + b_hs["n"]))
        return z * n + (1 - z) * h_prev if swap_z else (1 - z) * n + z * h_prev
    return step


GRU_MUTANTS = [
    Mutant("reset before the matrix", _gru_variant(reset_before=True),
           "the reset gate is applied before the matrix product, W_hn (r * h_prev), as in the GRU's first paper; "
           "PyTorch (and chapter 3) apply it after: r * (W_hn h_prev + b_hn)."),
    Mutant("z and 1 - z swapped", _gru_variant(swap_z=True),
           "z and 1 - z are swapped: h = (1 - z) * n + z * h_prev, so z near 1 copies the old state."),
    Mutant("r and z swapped", _gru_variant(order="zrn"),
           "the gates are taken in the wrong order: nn.GRU stacks the rows of W_x, W_h, b_x and b_h as reset "
           "gate r, update gate z, candidate n."),
    Mutant("b_hn outside the reset", _gru_variant(bias_outside=True),
           "the hidden bias b_hn sits outside the reset gate: the candidate is tanh(W_xn x + b_xn + "
           "r * (W_hn h_prev + b_hn)), the reset gate scales b_hn too."),
]


def check_gru_cell(fn, strict: bool = False) -> CheckResult:
    """Check ``fn(x_t, h_prev, W_x, W_h, b_x, b_h)``, one GRU step: -> h (B, H), called positionally.

    ``x_t`` (B, I), ``h_prev`` (B, H), ``W_x`` (3H, I), ``W_h`` (3H, H), ``b_x`` and
    ``b_h`` (3H,), all float32, with rows stacked as nn.GRU's r, z, n. Compared
    with ``nn.GRUCell`` holding the same weights. Known mistakes: the reset gate
    before the matrix product, z and 1 - z swapped, r and z swapped, b_hn outside
    the reset gate. ``strict=True`` raises ``AssertionError`` on failure.

    Introduced in §3.3.
    """
    return run_check("gru_cell", fn, _cell_cases(3, False), _gru_reference, GRU_MUTANTS, strict=strict,
                     rtol=1e-5, atol=1e-5)
