"""Section 6.5's finance code: the data, the from-scratch pieces against arch, scikit-learn and statsmodels, bad
inputs, that no forecast uses the day it forecasts (or any later day), and the volatility benchmark on tiny inputs."""

from __future__ import annotations

import json
import math
import pathlib
from functools import partial

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from bigmodel_lib.finance import (
    diebold_mariano,
    ewma_variance,
    ewma_variance_forecast,
    garch_forecast,
    garch_variance,
    historical_variance_forecast,
    lagged_returns,
    linear_lag_forecast,
    load_sp500_returns,
    qlike,
    r2_oos,
    rolling_variance_forecast,
    walk_forward,
    zero_forecast,
)
from bigmodel_lib.models.forecaster import sliding_windows
from bigmodel_lib.models.volatility import LSTMVolatility, lstm_variance_forecast
from tests.conftest import load_benchmark

ROOT = pathlib.Path(__file__).resolve().parent.parent
tiny_lstm = partial(lstm_variance_forecast, window=10, hidden_size=4, epochs=1, batch_size=64)

# Every forecaster of the section; the LSTM at a tiny size (the same code path as the section's).
FORECASTERS = {
    "zero": zero_forecast,
    "linear": linear_lag_forecast,
    "historical": historical_variance_forecast,
    "rolling": rolling_variance_forecast,
    "ewma": ewma_variance_forecast,
    "garch": garch_forecast,
    "gjr_garch": partial(garch_forecast, asymmetric=True),
    "lstm": tiny_lstm,
}


@pytest.fixture(scope="module")
def data(one_thread):
    return load_sp500_returns()


@pytest.fixture(scope="module")
def short(data):
    return data[0][:400].clone()  # 1999 to mid-2000


def test_the_data_are_5030_daily_percent_log_returns(data):
    returns, dates = data
    assert returns.shape == (5030,) and returns.dtype == torch.float64 and dates.shape == (5030,)
    assert str(dates[0]) == "1999-01-05" and str(dates[-1]) == "2018-12-31"
    assert math.isclose(float(returns[0]), 100 * math.log(1244.780029 / 1228.099976), rel_tol=1e-7)
    assert bool(torch.isfinite(returns).all()) and bool((np.diff(dates) > np.timedelta64(0, "D")).all())


def test_lagged_returns_are_chapter_3s_sliding_windows(short):
    X, y = lagged_returns(short, 5)
    Xs, ys = sliding_windows(short, 5)
    assert torch.equal(X, Xs) and torch.equal(y, ys) and X.shape == (395, 5)
    assert torch.equal(X[0], short[:5]) and y[0] == short[5]


def test_the_linear_forecast_is_scikit_learns_least_squares(short):
    from sklearn.linear_model import LinearRegression

    train, history = short[:300], short
    X, y = lagged_returns(train, 5)
    reference = LinearRegression().fit(X.numpy(), y.numpy())
    windows = lagged_returns(history, 5)[0][295:]  # the 5 days before each of days 300..399
    assert_close(linear_lag_forecast(train, history), torch.from_numpy(reference.predict(windows.numpy())))


@pytest.mark.parametrize("asymmetric", [False, True])
def test_the_garch_recursion_is_archs_conditional_volatility(short, asymmetric):
    from arch import arch_model

    model = arch_model(short.numpy(), mean="Zero", vol="GARCH", p=1, o=int(asymmetric), q=1)
    fit = model.fit(disp="off")
    p = fit.params
    s2 = garch_variance(short, p["omega"], p["alpha[1]"], p["beta[1]"], float(model.volatility.backcast(short.numpy())),
                        gamma=p["gamma[1]"] if asymmetric else 0.0)
    assert s2.shape == (401,)
    assert_close(s2[:-1].sqrt(), torch.from_numpy(np.asarray(fit.conditional_volatility)))
    next_day = fit.forecast(horizon=1, reindex=False).variance.to_numpy()[0, 0]
    assert_close(s2[-1], torch.tensor(next_day, dtype=torch.float64))


def test_the_ewma_recursion_is_archs_ewma_variance(short):
    from arch.univariate import EWMAVariance, ZeroMean

    fit = ZeroMean(short.numpy(), volatility=EWMAVariance(0.94)).fit(disp="off")
    h = ewma_variance(short, 0.94, float(fit.model.volatility.backcast(short.numpy())))
    assert_close(h[:-1].sqrt(), torch.from_numpy(np.asarray(fit.conditional_volatility)))


def test_the_diebold_mariano_statistic_is_statsmodels_hac_t_statistic():
    import statsmodels.api as sm

    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(500, generator=gen, dtype=torch.float64), torch.randn(500, generator=gen, dtype=torch.float64)
    a = a + 0.5 * torch.roll(a, 1)  # autocorrelated losses, so the Newey-West terms matter
    for lags in (0, 3, 7):
        stat, p = diebold_mariano(a, b, lags=lags)
        ols = sm.OLS((a - b).numpy(), np.ones(500)).fit(cov_type="HAC", cov_kwds={"maxlags": lags, "use_correction": False})
        assert math.isclose(stat, float(ols.tvalues[0]), rel_tol=1e-9)
        assert math.isclose(p, float(ols.pvalues[0]), rel_tol=1e-6)


def test_qlike_and_r2_oos_follow_their_formulas():
    h, r2 = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64), torch.tensor([1.0, 0.0, 2.0], dtype=torch.float64)
    assert_close(qlike(h, r2), torch.tensor([1.0, math.log(2.0), math.log(0.5) + 4.0], dtype=torch.float64))
    # QLIKE's expectation over r^2 is lowest at the true variance: log h + s2 / h has its minimum at h = s2
    grid = torch.linspace(0.5, 4, 351, dtype=torch.float64)
    assert math.isclose(float(grid[torch.argmin(qlike(grid, torch.full_like(grid, 2.0)))]), 2.0)
    actual, zero = torch.tensor([1.0, -1.0, 2.0]), torch.zeros(3)
    assert r2_oos(actual, actual, zero) == 1.0 and r2_oos(zero, actual, zero) == 0.0
    assert math.isclose(r2_oos(torch.tensor([0.5, -0.5, 1.0]), actual, zero), 1 - 0.5 / 2)  # MSE 0.5 against 2


# ---------------------------------------------------------------- no look-ahead


def test_the_walk_forward_fits_never_see_the_days_they_forecast(short):
    calls = []

    def spy(train, history):
        calls.append((train.shape[0], history.shape[0]))
        return zero_forecast(train, history)

    out = walk_forward(short, spy, first_test=300, refit_every=30)
    assert calls == [(300, 330), (330, 360), (360, 390), (390, 400)]  # fit on days < s, forecast days s .. e - 1
    assert bool(out[:300].isnan().all()) and bool((out[300:] == 0).all())


@pytest.mark.parametrize("name", list(FORECASTERS))
def test_no_forecast_uses_its_own_day_or_a_later_one(short, name):
    """Change the return of day t and of every later day: the features and forecasts of days up to t stay the same,
    through the whole walk-forward (the fits included), for t at the start of a block and inside one."""
    forecaster = FORECASTERS[name]
    original = walk_forward(short, forecaster, first_test=300, refit_every=50)
    for t in (350, 371):
        changed = short.clone()
        changed[t:] = 3 * changed[t:] + 1.0
        new = walk_forward(changed, forecaster, first_test=300, refit_every=50)
        assert torch.equal(new[300:t + 1], original[300:t + 1]), (name, t)
        assert not torch.equal(new[t + 1:], original[t + 1:]) or name in ("zero", "historical"), (name, t)
        if name == "linear":  # its features too
            assert torch.equal(lagged_returns(changed, 5)[0][: t - 4], lagged_returns(short, 5)[0][: t - 4])


def test_the_recursions_use_only_earlier_days(short):
    changed = short.clone()
    changed[200:] = -changed[200:] * 5
    assert torch.equal(garch_variance(changed, 0.02, 0.05, 0.05, 1.0, gamma=0.1)[:201],
                       garch_variance(short, 0.02, 0.05, 0.05, 1.0, gamma=0.1)[:201])
    assert torch.equal(ewma_variance(changed, 0.94, 1.0)[:201], ewma_variance(short, 0.94, 1.0)[:201])


# ---------------------------------------------------------------- the LSTM


def test_the_lstm_outputs_a_positive_variance_and_is_deterministic(short):
    model = LSTMVolatility(hidden_size=4)
    h = model(torch.randn(3, 20) * 10)
    assert h.shape == (3,) and bool((h >= model.min_variance).all())
    a = walk_forward(short, tiny_lstm, first_test=300, refit_every=100)
    b = walk_forward(short, tiny_lstm, first_test=300, refit_every=100)
    assert torch.equal(a[300:], b[300:]) and bool((a[300:] > 0).all()) and bool(a[:300].isnan().all())


# ---------------------------------------------------------------- bad inputs


def test_bad_inputs_raise_clear_errors(short):
    with pytest.raises(TypeError, match="torch.Tensor"):
        lagged_returns(short.numpy(), 5)
    with pytest.raises(ValueError, match="1-D float tensor"):
        lagged_returns(short.view(20, 20), 5)
    with pytest.raises(ValueError, match="lags"):
        lagged_returns(short, 400)
    with pytest.raises(ValueError, match="first_test"):
        walk_forward(short, zero_forecast, first_test=400, refit_every=10)
    with pytest.raises(ValueError, match="refit_every"):
        walk_forward(short, zero_forecast, first_test=300, refit_every=0)
    with pytest.raises(ValueError, match="expected \\(10,\\)"):
        walk_forward(short, lambda train, history: torch.zeros(3), first_test=390, refit_every=10)
    with pytest.raises(ValueError, match="training days"):
        rolling_variance_forecast(short[:10], short, window=20)
    with pytest.raises(ValueError, match="lam"):
        ewma_variance(short, 1.0, 1.0)
    with pytest.raises(ValueError, match="> 0"):
        qlike(torch.zeros(3), torch.ones(3))
    with pytest.raises(ValueError, match="one shape"):
        qlike(torch.ones(3), torch.ones(4))
    with pytest.raises(ValueError, match="one shape"):
        r2_oos(torch.ones(3), torch.ones(3), torch.ones(2))
    with pytest.raises(ValueError, match="N >= 3"):
        diebold_mariano(torch.ones(3), torch.ones(4))
    with pytest.raises(ValueError, match="\\(B, T\\)"):
        LSTMVolatility()(torch.ones(2, 5, 2))
    with pytest.raises(ValueError, match="window"):
        lstm_variance_forecast(short[:10], short, window=20)


# ---------------------------------------------------------------- the benchmark


def test_the_benchmark_runs_on_tiny_inputs(data):
    bench = load_benchmark("volatility_forecasts")
    returns, dates = data[0][:700], data[1][:700]
    config = bench.VolatilityConfig(first_test_date="2001-06-01", refits=(100,), baseline_refit=100, seeds=(0,),
                                    window=10, hidden_size=4, epochs=1, batch_size=64)
    out = bench.run(config, returns, dates)
    assert out["first_test_day"] == "2001-06-01" and out["test_days"] == 700 - out["first_test"]
    assert set(out["baselines"]) == {"historical", "rolling_20", "ewma_0.94", "garch", "gjr_garch"}
    assert len(out["lstm"]) == 1 and out["lstm"][0]["qlike"] > 0 and set(out["lstm"][0]["qlike_by_year"]) == {"2001"}


def test_the_shipped_results_are_complete():
    results = json.loads((ROOT / "bigmodel_lib/results/volatility_forecasts_cpu.json").read_text())
    assert results["first_test_day"] == "2011-01-03" and results["test_days"] == 2012
    assert results["machine"]["torch_threads"] == 1
    rows = results["lstm"]
    assert sorted((r["refit_every"], r["seed"]) for r in rows) == [(252, 0), (252, 1), (252, 2), (504, 0), (504, 1), (504, 2)]
    for row in rows:
        assert len(row["qlike_by_year"]) == 8 and 0 < row["qlike"] < 1.1
