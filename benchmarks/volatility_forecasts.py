"""Section 6.5's volatility forecasts: an LSTM against GARCH(1,1), GJR-GARCH and simple baselines, three seeds.

Data: the daily S&P 500 returns in percent of ``bigmodel_lib.finance.load_sp500_returns`` (5,030 days, 1999-2018).
Test days: every day from ``first_test_date`` (2011-01-03) on, 2,012 days; each forecaster is refitted every
``refit_every`` days on all the days before (``walk_forward``, an expanding window), so no fit sees the days it
forecasts. The target is the day's squared return; the losses are the mean QLIKE, ``log h + r^2 / h``, and the mean
squared error against ``r^2``; the Diebold-Mariano test compares the LSTM's daily QLIKE with GARCH's and GJR's.

Forecasters: the historical variance of the training days, the 20-day rolling variance, RiskMetrics' EWMA
(lambda 0.94), GARCH(1,1) and GJR-GARCH(1,1,1) fitted with ``arch`` (zero mean), and ``lstm_variance_forecast``
(``bigmodel_lib.models.volatility``: 60 days of returns in, hidden size 16, 10 epochs of mean QLIKE, batch 128,
learning rate 3e-3) for each seed, at each refit interval in ``refits``. The section runs one of these live
(seed 0, refit every 504 days) and checks it against this file.

Slow and not a test. The shipped run (one thread, the 2-core machine shared with other jobs, load average 4 to 5)
took 4.3 minutes: 18 to 33 s per seed refitting every 504 days, 46 to 76 s every 252 days (about 11 and 30 s on an
idle core). The seconds depend on the machine and its load; the losses, for one number of threads, only on the
CPU's float arithmetic (the section's live run, seed 0 every 504 days, reproduced the shipped QLIKE to 4 digits). Section 6.5 shows
``bigmodel_lib/results/volatility_forecasts_cpu.json``, written by:

    python benchmarks/volatility_forecasts.py --threads 1 --out bigmodel_lib/results/volatility_forecasts_cpu.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from functools import partial

import numpy as np
import torch

from bigmodel_lib.finance import (
    diebold_mariano,
    ewma_variance_forecast,
    garch_forecast,
    historical_variance_forecast,
    load_sp500_returns,
    qlike,
    rolling_variance_forecast,
    walk_forward,
)
from bigmodel_lib.models.volatility import lstm_variance_forecast


@dataclass
class VolatilityConfig:
    first_test_date: str = "2011-01-01"  # the test days: from the first trading day on or after this date
    refits: tuple = (504, 252)           # refit intervals (days) tried; the section's live run uses 504
    baseline_refit: int = 252            # refit interval of the historical variance, EWMA and the GARCHs
    seeds: tuple = (0, 1, 2)
    window: int = 60                     # the LSTM's days of returns
    hidden_size: int = 16
    epochs: int = 10
    batch_size: int = 128
    lr: float = 3e-3


def baselines(returns: torch.Tensor, first: int, refit: int) -> dict:
    """Each baseline's variance forecasts for the test days, (N - first,) each."""
    forecasters = {
        "historical": historical_variance_forecast,
        "rolling_20": rolling_variance_forecast,
        "ewma_0.94": ewma_variance_forecast,
        "garch": garch_forecast,
        "gjr_garch": partial(garch_forecast, asymmetric=True),
    }
    return {name: walk_forward(returns, f, first, refit)[first:] for name, f in forecasters.items()}


def scores(h: torch.Tensor, r2: torch.Tensor, years: np.ndarray) -> dict:
    """Mean QLIKE and MSE over the test days, and QLIKE per calendar year."""
    daily = qlike(h, r2)
    return {"qlike": round(float(daily.mean()), 5), "mse": round(float(((h - r2) ** 2).mean()), 5),
            "qlike_by_year": {str(y): round(float(daily[torch.from_numpy(years == y)].mean()), 5)
                              for y in np.unique(years)}}


def run(config: VolatilityConfig, returns: torch.Tensor, dates: np.ndarray) -> dict:
    first = int(np.searchsorted(dates, np.datetime64(config.first_test_date)))
    r2 = returns[first:] ** 2
    years = dates[first:].astype("datetime64[Y]").astype(int) + 1970
    base = baselines(returns, first, config.baseline_refit)
    out = {"first_test": first, "first_test_day": str(dates[first]), "test_days": len(r2),
           "baselines": {name: scores(h, r2, years) for name, h in base.items()}, "lstm": []}
    for refit in config.refits:
        for seed in config.seeds:
            start = time.perf_counter()
            forecaster = partial(lstm_variance_forecast, window=config.window, hidden_size=config.hidden_size,
                                 epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, seed=seed)
            h = walk_forward(returns, forecaster, first, refit)[first:]
            row = {"refit_every": refit, "seed": seed, **scores(h, r2, years),
                   "seconds": round(time.perf_counter() - start, 1)}
            for name in ("garch", "gjr_garch"):
                stat, p = diebold_mariano(qlike(h, r2), qlike(base[name], r2))
                row[f"dm_vs_{name}"] = {"statistic": round(stat, 4), "p_value": round(p, 5)}
            out["lstm"].append(row)
            print(f"refit {refit} seed {seed}: QLIKE {row['qlike']:.4f} MSE {row['mse']:.3f} ({row['seconds']} s)")
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="volatility_forecasts_cpu.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = VolatilityConfig()
    returns, dates = load_sp500_returns()
    load_before, start = os.getloadavg(), time.perf_counter()
    result = run(config, returns, dates)
    settings = {**asdict(config), "date": datetime.date.today().isoformat(),
                "minutes": round((time.perf_counter() - start) / 60, 1),
                "command": f"python benchmarks/volatility_forecasts.py --threads {args.threads} --out {args.out}"}
    import arch

    machine = {"python": platform.python_version(), "torch": torch.__version__, "arch": arch.__version__,
               "processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
               "torch_threads": torch.get_num_threads(), "loadavg_before": [round(x, 2) for x in load_before],
               "loadavg_after": [round(x, 2) for x in os.getloadavg()]}
    with open(args.out, "w") as f:
        json.dump({"settings": settings, "machine": machine, **result}, f, indent=1)
    print(f"wrote {args.out} in {settings['minutes']} minutes")


if __name__ == "__main__":
    main()
