"""Timing that is right on a GPU: one helper for every measurement of the book.

A GPU runs queued work asynchronously: ``time.perf_counter()`` read straight
after a CUDA call measures the queueing, not the work. Both helpers here wait
for the device before each clock reading (``torch.cuda.synchronize`` on CUDA,
``torch.mps.synchronize`` on Apple GPUs; nothing on a CPU).

* :func:`time_call` -- run a function several times after a warm-up and keep
  every time: for comparing implementations (the best time is the least
  disturbed by other work on a shared machine; the median is typical).
* :class:`Stopwatch` -- time one block once (a training run, a decoding pass),
  with wall-clock and CPU time.

Times are in seconds. The book prints them and explains them but never asserts
on them: on a shared machine they vary several-fold.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from bigmodel_lib.devices import get_device

__all__ = ["time_call", "Stopwatch"]


def _as_device(device: str | torch.device | None) -> torch.device:
    """A ``torch.device`` is taken as given; anything else goes through :func:`get_device`."""
    return device if isinstance(device, torch.device) else get_device(device)


def synchronize(device: str | torch.device | None = None) -> None:
    """Wait until every kernel queued on ``device`` has finished (a no-op on a CPU).

    ``device`` is anything :func:`bigmodel_lib.get_device` accepts; None means
    the default device (CUDA, then MPS, then CPU), as for the helpers below.
    """
    dev = _as_device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    elif dev.type == "mps":
        torch.mps.synchronize()


@dataclass
class Timing:
    """The times of repeated calls, in seconds, from :func:`time_call`.

    ``times_s`` holds one entry per timed call (warm-up calls excluded);
    ``result`` is what the last call returned.
    """

    times_s: list[float] = field(default_factory=list)
    result: object = None

    @property
    def best_s(self) -> float:
        """The fastest call: the one least disturbed by other work."""
        return min(self.times_s)

    @property
    def median_s(self) -> float:
        """The median call: a typical time."""
        return statistics.median(self.times_s)

    @property
    def best_ms(self) -> float:
        return self.best_s * 1e3

    @property
    def median_ms(self) -> float:
        return self.median_s * 1e3


def time_call(
    fn: Callable,
    *args,
    repeats: int = 5,
    warmup: int = 1,
    device: str | torch.device | None = None,
    **kwargs,
) -> Timing:
    """Call ``fn(*args, **kwargs)`` ``warmup`` times untimed, then ``repeats`` times timed.

    Before starting and after each call the clock waits for ``device``
    (:func:`synchronize`), so GPU work is measured, not its queueing. The
    warm-up absorbs one-off costs: kernel selection, memory allocation,
    compilation. Raises ValueError unless ``repeats >= 1`` and ``warmup >= 0``.

    >>> t = time_call(sum, range(1000), repeats=3)
    >>> len(t.times_s), t.result
    (3, 499500)

    Introduced in the preface.
    """
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"expected repeats to be an integer >= 1, got {repeats!r}")
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"expected warmup to be an integer >= 0, got {warmup!r}")
    dev = _as_device(device)
    result = None
    for _ in range(warmup):
        result = fn(*args, **kwargs)
    timing = Timing()
    for _ in range(repeats):
        synchronize(dev)
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        synchronize(dev)
        timing.times_s.append(time.perf_counter() - start)
    timing.result = result
    return timing


class Stopwatch:
    """Time one block of code: ``with Stopwatch(device) as watch: ...``, then ``watch.seconds``.

    Waits for ``device`` on entry and exit (see :func:`synchronize`).
    ``seconds`` is wall-clock time; ``cpu_seconds`` the CPU time of this
    process (on a busy machine it still counts only this process's work; with
    several threads it can exceed ``seconds``).

    Introduced in §1.8.
    """

    def __init__(self, device: str | torch.device | None = None):
        self.device = _as_device(device)
        self.seconds: float | None = None
        self.cpu_seconds: float | None = None

    def __enter__(self) -> Stopwatch:
        synchronize(self.device)
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        synchronize(self.device)
        self.seconds = time.perf_counter() - self._wall
        self.cpu_seconds = time.process_time() - self._cpu
