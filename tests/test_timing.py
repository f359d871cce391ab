"""Tests for bigmodel_lib.timing: every clock reading waits for the device, warm-up calls are
not timed, and bad arguments are named."""

from __future__ import annotations

import time

import pytest
import torch

from bigmodel_lib import Stopwatch, time_call, timing
from bigmodel_lib.timing import Timing, synchronize


def test_time_call_times_each_repeat_after_an_untimed_warmup():
    calls = []
    result = time_call(lambda x: calls.append(x) or len(calls), 7, repeats=3, warmup=2, device="cpu")
    assert calls == [7] * 5  # 2 warm-up calls + 3 timed ones
    assert isinstance(result, Timing) and len(result.times_s) == 3
    assert result.result == 5  # what the last call returned
    assert result.best_s <= result.median_s and result.best_ms == result.best_s * 1e3


def test_time_call_measures_the_work():
    slept = time_call(time.sleep, 0.02, repeats=2, warmup=0, device="cpu")
    assert slept.best_s >= 0.02  # a lower bound only: a busy machine makes any call slower


def test_every_clock_reading_waits_for_the_device(monkeypatch):
    """On CUDA the clock must wait for queued kernels: one synchronize before and one after each call."""
    log = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: log.append(("sync", str(device))))
    time_call(lambda: log.append(("call", None)), repeats=2, warmup=1, device=torch.device("cuda"))
    assert log == [("call", None)] + [("sync", "cuda"), ("call", None), ("sync", "cuda")] * 2
    log.clear()
    with Stopwatch(torch.device("cuda")) as watch:
        log.append(("call", None))
    assert log == [("sync", "cuda"), ("call", None), ("sync", "cuda")]
    assert watch.seconds >= 0 and watch.cpu_seconds >= 0


def test_cpu_needs_no_synchronize(monkeypatch):
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: pytest.fail("synchronized a CPU"))
    synchronize("cpu")
    with Stopwatch("cpu") as watch:
        sum(range(1000))
    assert watch.seconds > 0


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"expected repeats to be an integer >= 1, got 0"):
        time_call(sum, [1], repeats=0)
    with pytest.raises(ValueError, match=r"expected warmup to be an integer >= 0, got -1"):
        time_call(sum, [1], warmup=-1)
    with pytest.raises(ValueError, match=r"expected a device such as 'cpu'"):
        timing.synchronize("gpu")
