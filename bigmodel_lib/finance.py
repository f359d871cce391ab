"""Daily S&P 500 returns: data, walk-forward evaluation, forecast losses and the GARCH recursion (section 6.5).

The prices are the ones that ship with the ``arch`` package (``arch.data.sp500``: 5,031 trading days, 1999-01-04
to 2018-12-31). Returns are in percent, ``r_t = 100 (log P_t - log P_{t-1})``: 5,030 of them.

A *forecaster* is a function ``forecaster(train, history) -> forecasts``: it may fit itself on ``train`` (the
returns of days ``0 .. s - 1``) and returns one forecast for each day ``t`` in ``s .. len(history) - 1``, computed
from ``history[:t]`` only. :func:`walk_forward` calls it block by block, so the fit for a block never sees the
block, and ``tests/test_finance.py`` checks that no forecast for day ``t`` changes when day ``t`` or any later day
does. Shapes: ``N`` days.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

__all__ = [
    "load_sp500_returns",
    "lagged_returns",
    "walk_forward",
    "zero_forecast",
    "linear_lag_forecast",
    "historical_variance_forecast",
    "rolling_variance_forecast",
    "ewma_variance",
    "ewma_variance_forecast",
    "garch_variance",
    "garch_forecast",
    "qlike",
    "r2_oos",
    "diebold_mariano",
]


def _check_returns(returns, what: str = "returns") -> torch.Tensor:
    if not isinstance(returns, torch.Tensor):
        raise TypeError(f"expected {what} as a torch.Tensor, got {type(returns).__name__}")
    if returns.dim() != 1 or not returns.is_floating_point():
        raise ValueError(f"expected {what} as a 1-D float tensor (N,), got shape {tuple(returns.shape)} {returns.dtype}")
    return returns


def load_sp500_returns() -> tuple[torch.Tensor, np.ndarray]:
    """Daily log returns of the S&P 500 in percent, and their dates.

    Returns ``(returns, dates)``: ``returns`` (5030,) float64, ``returns[i] = 100 (log P_{i+1} - log P_i)`` from
    the adjusted close of ``arch.data.sp500``; ``dates`` (5030,) ``datetime64[D]``, the day each return ends on.
    Offline: the prices are a file inside the ``arch`` package.

    Introduced in §6.5.
    """
    from arch.data import sp500

    prices = sp500.load()["Adj Close"]
    log_prices = np.log(prices.to_numpy(dtype=np.float64))
    returns = torch.from_numpy(100 * np.diff(log_prices))
    dates = prices.index.to_numpy()[1:].astype("datetime64[D]")
    return returns, dates


def lagged_returns(returns: torch.Tensor, lags: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Features ``X`` (N - lags, lags) and targets ``y`` (N - lags,): row ``i`` of ``X`` holds the ``lags`` returns
    before day ``i + lags``, oldest first (``returns[i : i + lags]``), and ``y[i] = returns[i + lags]``.

    Raises ``ValueError`` unless ``1 <= lags < N``.

    Introduced in §6.5.
    """
    _check_returns(returns)
    if isinstance(lags, bool) or not isinstance(lags, int) or not 1 <= lags < returns.shape[0]:
        raise ValueError(f"expected lags to be an integer in [1, N - 1 = {returns.shape[0] - 1}], got {lags!r}")
    return returns.unfold(0, lags, 1)[:-1], returns[lags:]  # (N - lags, lags), (N - lags,)


def walk_forward(returns: torch.Tensor, forecaster: Callable, first_test: int, refit_every: int) -> torch.Tensor:
    """Out-of-sample forecasts, refitting every ``refit_every`` days on all the days before (an expanding window).

    For each block ``[s, e)`` of test days (``s = first_test, first_test + refit_every, ...``) it calls
    ``forecaster(returns[:s], returns[:e])``, which must return ``e - s`` forecasts, the one for day ``t`` computed
    from days before ``t``. Returns (N,) float64, NaN before ``first_test``. Raises ``ValueError`` for a bad
    ``first_test`` (not in ``[1, N - 1]``), ``refit_every`` (not >= 1) or a forecaster's wrong output shape.

    Introduced in §6.5.
    """
    _check_returns(returns)
    n = returns.shape[0]
    if isinstance(first_test, bool) or not isinstance(first_test, int) or not 1 <= first_test < n:
        raise ValueError(f"expected first_test to be an integer in [1, N - 1 = {n - 1}], got {first_test!r}")
    if isinstance(refit_every, bool) or not isinstance(refit_every, int) or refit_every < 1:
        raise ValueError(f"expected refit_every to be an integer >= 1, got {refit_every!r}")
    forecasts = torch.full((n,), math.nan, dtype=torch.float64)
    for start in range(first_test, n, refit_every):
        end = min(start + refit_every, n)
        block = torch.as_tensor(forecaster(returns[:start], returns[:end]))
        if block.shape != (end - start,):
            raise ValueError(f"the forecaster returned shape {tuple(block.shape)} for days [{start}, {end}), "
                             f"expected ({end - start},)")
        forecasts[start:end] = block.to(torch.float64)
    return forecasts


# ---------------------------------------------------------------- part 1: the return itself


def zero_forecast(train: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
    """The benchmark forecast of tomorrow's return: 0 (a random walk in log prices). Returns (len(history) - len(train),).

    Introduced in §6.5.
    """
    return history.new_zeros(history.shape[0] - train.shape[0])


def linear_lag_forecast(train: torch.Tensor, history: torch.Tensor, lags: int = 5) -> torch.Tensor:
    """Least squares on the last ``lags`` returns plus an intercept, fitted on ``train``.

    ``r_t ~ b + w . (r_{t-lags}, ..., r_{t-1})``; returns the forecasts for days ``len(train) .. len(history) - 1``
    (each from the ``lags`` returns before it). Raises ``ValueError`` if ``train`` has ``lags`` days or fewer.

    Introduced in §6.5.
    """
    if train.shape[0] <= lags:
        raise ValueError(f"expected more than lags = {lags} training days, got {train.shape[0]}")
    X, y = lagged_returns(train, lags)  # (n - lags, lags), (n - lags,)
    design = torch.cat([torch.ones(len(X), 1, dtype=X.dtype), X], dim=1)  # a column of ones for the intercept
    coef = torch.linalg.lstsq(design, y.unsqueeze(1)).solution.squeeze(1)  # (1 + lags,)
    windows = history[train.shape[0] - lags:].unfold(0, lags, 1)[:-1]  # (test days, lags): the lags before each
    return coef[0] + windows @ coef[1:]


# ---------------------------------------------------------------- part 2: the variance of the return


def historical_variance_forecast(train: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
    """The mean of ``train ** 2`` (the variance about a zero mean) for every test day. Returns (test days,).

    Introduced in §6.5.
    """
    return (train**2).mean().expand(history.shape[0] - train.shape[0]).clone()


def rolling_variance_forecast(train: torch.Tensor, history: torch.Tensor, window: int = 20) -> torch.Tensor:
    """The mean of the last ``window`` squared returns before each test day. Returns (test days,).

    Raises ``ValueError`` if ``train`` is shorter than ``window``.

    Introduced in §6.5.
    """
    if train.shape[0] < window:
        raise ValueError(f"expected at least window = {window} training days, got {train.shape[0]}")
    squares = history[train.shape[0] - window:] ** 2
    return squares.unfold(0, window, 1)[:-1].mean(dim=1)  # (test days,)


def ewma_variance(returns: torch.Tensor, lam: float, initial: float) -> torch.Tensor:
    """RiskMetrics' exponentially weighted variance, ``h_t = lam h_{t-1} + (1 - lam) r_{t-1}^2``, ``h_0 = initial``.

    Returns (N + 1,): entry ``t`` uses days before ``t`` only; the last is the forecast for the day after the sample.
    Raises ``ValueError`` unless ``0 < lam < 1``.

    Introduced in §6.5.
    """
    _check_returns(returns)
    if not 0 < lam < 1:
        raise ValueError(f"expected 0 < lam < 1, got {lam!r}")
    h = torch.empty(returns.shape[0] + 1, dtype=torch.float64)
    h[0] = initial
    for t, r in enumerate(returns.tolist()):
        h[t + 1] = lam * h[t] + (1 - lam) * r * r
    return h


def ewma_variance_forecast(train: torch.Tensor, history: torch.Tensor, lam: float = 0.94) -> torch.Tensor:
    """:func:`ewma_variance` (RiskMetrics, ``lam = 0.94``) started at the mean of ``train ** 2``. Returns (test days,).

    Introduced in §6.5.
    """
    return ewma_variance(history, lam, float((train**2).mean()))[train.shape[0]:history.shape[0]]


def garch_variance(returns: torch.Tensor, omega: float, alpha: float, beta: float, backcast: float,
                   gamma: float = 0.0) -> torch.Tensor:
    """The GARCH(1,1) conditional variance, ``s2_t = omega + (alpha + gamma [r_{t-1} < 0]) r_{t-1}^2 + beta s2_{t-1}``.

    ``gamma > 0`` is GJR-GARCH's extra weight on falls. Before the first day ``r^2`` and ``s2`` are ``backcast``
    (and the fall term ``backcast / 2``), as in ``arch``. Returns (N + 1,) float64: entry ``t`` uses days before
    ``t`` only; entry ``N`` is the forecast for the day after the sample.

    Introduced in §6.5.
    """
    _check_returns(returns)
    s2 = torch.empty(returns.shape[0] + 1, dtype=torch.float64)
    prev_s2, prev_r2, prev_fall = backcast, backcast, 0.5 * backcast
    for t, r in enumerate(returns.tolist() + [0.0]):  # the appended 0 is never read: s2[N] uses r[N - 1]
        s2[t] = prev_s2 = omega + alpha * prev_r2 + gamma * prev_fall + beta * prev_s2
        prev_r2, prev_fall = r * r, r * r * (r < 0)
    return s2


def garch_forecast(train: torch.Tensor, history: torch.Tensor, asymmetric: bool = False) -> torch.Tensor:
    """GARCH(1,1) (or GJR-GARCH with ``asymmetric=True``) with a zero mean, fitted on ``train`` by maximum
    likelihood with ``arch``, then run forward over ``history`` with :func:`garch_variance`. Returns (test days,).

    Introduced in §6.5.
    """
    from arch import arch_model

    train_np = train.detach().to(torch.float64).numpy()
    model = arch_model(train_np, mean="Zero", vol="GARCH", p=1, o=int(asymmetric), q=1)
    params = model.fit(disp="off").params
    backcast = float(model.volatility.backcast(train_np))  # from the first 75 training days only
    s2 = garch_variance(history, params["omega"], params["alpha[1]"], params["beta[1]"], backcast,
                        gamma=params["gamma[1]"] if asymmetric else 0.0)
    return s2[train.shape[0]:history.shape[0]]


# ---------------------------------------------------------------- losses and tests


def qlike(variance: torch.Tensor, squared_return: torch.Tensor) -> torch.Tensor:
    """Patton's QLIKE loss per day, ``log h + r^2 / h`` (the Gaussian negative log-likelihood up to constants).

    ``variance`` and ``squared_return`` have one shape (N,); returns (N,). Raises ``ValueError`` for different
    shapes or a variance that is not positive.

    Introduced in §6.5.
    """
    if variance.shape != squared_return.shape:
        raise ValueError(f"expected variance and squared_return of one shape, got {tuple(variance.shape)} "
                         f"and {tuple(squared_return.shape)}")
    if not bool((variance > 0).all()):
        raise ValueError("expected every variance forecast > 0 (QLIKE takes its log)")
    return torch.log(variance) + squared_return / variance


def r2_oos(forecast: torch.Tensor, actual: torch.Tensor, benchmark: torch.Tensor) -> float:
    """Out-of-sample R^2 against a benchmark forecast, ``1 - MSE(forecast) / MSE(benchmark)`` (Campbell and Thompson).

    All three (N,); positive when the forecast has the lower squared error. Raises ``ValueError`` for unequal shapes.

    Introduced in §6.5.
    """
    if not forecast.shape == actual.shape == benchmark.shape:
        raise ValueError(f"expected three tensors of one shape, got {tuple(forecast.shape)}, {tuple(actual.shape)} "
                         f"and {tuple(benchmark.shape)}")
    return 1 - float(((actual - forecast) ** 2).mean() / ((actual - benchmark) ** 2).mean())


def diebold_mariano(loss_a: torch.Tensor, loss_b: torch.Tensor, lags: int | None = None) -> tuple[float, float]:
    """The Diebold-Mariano test of equal expected loss: ``(statistic, two-sided p-value)``.

    ``d_t = loss_a - loss_b`` (N,); the statistic is ``mean(d) / sqrt(V / N)`` with ``V`` the Newey-West (Bartlett
    weights) long-run variance of ``d`` over ``lags`` autocovariances (default ``floor(4 (N / 100)^(2/9))``).
    Negative: ``a`` has the lower loss. The p-value is from the standard normal. Raises ``ValueError`` for
    unequal shapes or fewer than 3 days.

    Introduced in §6.5.
    """
    if loss_a.shape != loss_b.shape or loss_a.dim() != 1 or loss_a.shape[0] < 3:
        raise ValueError(f"expected two losses of one shape (N,) with N >= 3, got {tuple(loss_a.shape)} "
                         f"and {tuple(loss_b.shape)}")
    d = (loss_a - loss_b).to(torch.float64)
    n = d.shape[0]
    lags = int(4 * (n / 100) ** (2 / 9)) if lags is None else lags
    u = d - d.mean()
    variance = (u @ u) / n
    for j in range(1, lags + 1):
        variance += 2 * (1 - j / (lags + 1)) * (u[j:] @ u[:-j]) / n  # Bartlett weight times autocovariance j
    statistic = float(d.mean() / torch.sqrt(variance / n))
    return statistic, math.erfc(abs(statistic) / math.sqrt(2))
