"""Scaling laws: training compute, power-law fits and the compute-optimal model size.

* :func:`training_flops`: the ``C = 6 N D`` rule of chapter 1 (2 FLOPs per
  weight per token forward, 4 backward), for ``N`` parameters trained on ``D``
  tokens. A GPT's exact count adds attention: ``GPT.flops_per_token() * D``
  equals ``training_flops(gpt.num_parameters(non_embedding=True), D)`` plus
  ``12 n_layer n_embd block_size D``.
* :func:`non_embedding_parameters`: the ``N`` of Kaplan et al. (2020), every
  parameter except the embedding tables (and an output layer tied to one).
* :func:`fit_power_law`: ``L = a x^(-b)`` by least squares on the logarithms,
  or ``L = E + a x^(-b)`` with an irreducible loss ``E``.
* :func:`chinchilla_optimal`: the ``(N, D)`` that spend a compute budget at a
  fixed number of tokens per parameter (about 20, Hoffmann et al. 2022).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "CHINCHILLA_TOKENS_PER_PARAMETER",
    "PowerLaw",
    "training_flops",
    "non_embedding_parameters",
    "fit_power_law",
    "chinchilla_optimal",
]

CHINCHILLA_TOKENS_PER_PARAMETER = 20
"""Training tokens per parameter of a compute-optimal model, about 20 (Hoffmann et al. 2022, table 3).

Introduced in §8.1.
"""


def _positive(name: str, value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{where}: expected {name} to be a finite number > 0, got {value!r}")
    return float(value)


def training_flops(n_params: float, n_tokens: float) -> float:
    """Training FLOPs of a dense model by the 6ND rule: ``6 * n_params * n_tokens``.

    A weight used once per token costs 2 FLOPs forward (a multiply and an add)
    and 4 backward (the gradients of its input and of itself), so a training
    step costs 6 per weight per token. Attention's ``Q K^T`` and ``A V``
    products, which have no weights, are left out; they add
    ``12 n_layer d_model T`` per token at context ``T``
    (see ``GPT.flops_per_token``). ``n_params`` (count) and ``n_tokens``
    (count) are positive numbers (floats allowed, e.g. ``175e9``); returns
    FLOPs as a float. Raises ``ValueError`` for anything else.

    Introduced in §8.1.
    """
    n = _positive("n_params", n_params, "training_flops")
    d = _positive("n_tokens", n_tokens, "training_flops")
    return 6.0 * n * d


def non_embedding_parameters(model: nn.Module) -> int:
    """Parameters of ``model`` outside its ``nn.Embedding`` tables: the ``N`` of Kaplan et al. (2020).

    Token and position tables are looked up, not multiplied, and an output
    layer that shares its weight with the token table (weight tying, as in
    the book's GPT) is excluded with it: a tensor is counted once, and not
    at all if an embedding owns it. Returns an int (a count); raises
    ``ValueError`` if ``model`` is not an ``nn.Module``.

    Introduced in §8.1.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"non_embedding_parameters: expected an nn.Module, got {type(model).__name__}")
    embedded = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    return sum(p.numel() for p in model.parameters() if id(p) not in embedded)


@dataclass(frozen=True)
class PowerLaw:
    """A fitted ``L(x) = E + a * x**(-b)`` (``E = 0`` for the pure power law).

    Call it on a float or a tensor of ``x`` values to get the predicted loss
    (same shape). ``a`` is in the loss's units, ``b`` has none; ``E`` is the
    irreducible loss the fit assigns to an infinitely large ``x``.

    Introduced in §8.1.
    """

    a: float
    b: float
    E: float = 0.0

    def __call__(self, x):
        return self.E + self.a * x ** (-self.b)


def _as_positive_vector(name: str, values) -> torch.Tensor:
    t = torch.as_tensor(values, dtype=torch.float64)
    if t.dim() != 1:
        raise ValueError(f"fit_power_law: expected {name} to be 1-D, got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all() or not (t > 0).all():
        raise ValueError(f"fit_power_law: expected every {name} to be finite and > 0, got {t.tolist()}")
    return t


def fit_power_law(x: Sequence[float] | torch.Tensor, y: Sequence[float] | torch.Tensor,
                  irreducible: bool = False) -> PowerLaw:
    """Fit ``y = a * x**(-b)``, or ``y = E + a * x**(-b)`` with ``irreducible=True``.

    Without ``E`` the fit is exact least squares on the logarithms:
    ``log y = log a - b log x`` is a straight line, solved by
    ``torch.linalg.lstsq`` in float64. With ``E`` the model is no longer linear
    in its parameters; ``scipy.optimize.curve_fit`` fits it in the original
    units, started from the log-log line fitted to ``y - 0.9 min(y)``.
    ``x`` (e.g. parameters or FLOPs) and ``y`` (e.g. loss in nats) are 1-D, of
    equal length, finite and positive; at least 2 points (3 with ``E``) are
    needed. Returns a :class:`PowerLaw`. Raises ``ValueError`` otherwise, and
    ``ImportError`` if ``irreducible=True`` and SciPy is not installed.

    Introduced in §8.1.
    """
    xs, ys = _as_positive_vector("x", x), _as_positive_vector("y", y)
    if xs.shape != ys.shape:
        raise ValueError(f"fit_power_law: expected x and y of equal length, got {len(xs)} and {len(ys)}")
    needed = 3 if irreducible else 2
    if len(xs) < needed or len(set(xs.tolist())) < needed:
        raise ValueError(f"fit_power_law: expected at least {needed} distinct x values, got {xs.tolist()}")
    if not irreducible:
        design = torch.stack([torch.ones_like(xs), -xs.log()], dim=1)  # (n, 2): columns for log a and b
        log_a, b = torch.linalg.lstsq(design, ys.log().unsqueeze(1)).solution.squeeze(1).tolist()
        return PowerLaw(a=math.exp(log_a), b=b)
    try:
        from scipy.optimize import curve_fit
    except ImportError as error:  # pragma: no cover - scipy comes with scikit-learn
        raise ImportError("fit_power_law(irreducible=True) needs SciPy: pip install scipy") from error
    start = fit_power_law(xs, ys - 0.9 * ys.min())
    scale = float(xs.min())  # fit in x / min(x) so that a starts near the data's scale

    def model(u, E, a, b):
        return E + a * u ** (-b)

    a0 = start.a * scale ** (-start.b)
    (E, a, b), _ = curve_fit(model, (xs / scale).numpy(), ys.numpy(), p0=[0.9 * float(ys.min()), a0, start.b],
                             maxfev=20_000)
    return PowerLaw(a=float(a) * scale ** float(b), b=float(b), E=float(E))


def chinchilla_optimal(compute_flops: float,
                       tokens_per_param: float = CHINCHILLA_TOKENS_PER_PARAMETER) -> tuple[float, float]:
    """The compute-optimal ``(N, D)`` for a budget of ``compute_flops``: ``C = 6 N D`` with ``D = r N``.

    Substituting gives ``N = sqrt(C / (6 r))`` and ``D = r N``, with ``r`` =
    ``tokens_per_param`` (20 by default, Hoffmann et al. 2022). ``compute_flops``
    (FLOPs) and ``tokens_per_param`` are positive numbers; returns
    ``(parameters, tokens)`` as floats. Raises ``ValueError`` otherwise.

    Introduced in §8.1.
    """
    c = _positive("compute_flops", compute_flops, "chinchilla_optimal")
    r = _positive("tokens_per_param", tokens_per_param, "chinchilla_optimal")
    n = math.sqrt(c / (6.0 * r))
    return n, r * n
