"""Memory: how many bytes of tensors a piece of code holds, and at its peak.

Training needs far more memory than inference because it keeps, all at once,
the parameters, their gradients, the optimizer's state and the activations
autograd saves for the backward pass. The book predicts that sum with a
formula and measures it with the tools here:

* :func:`tensor_bytes` adds up the bytes of tensors, counting shared storage once;
* :func:`training_state` lists the tensors a training run holds between steps
  (parameters, buffers, gradients, optimizer state);
* :func:`saved_tensor_bytes` counts what autograd saves for backward during a forward pass;
* :func:`measure_peak_memory` measures the peak bytes of tensors alive while a
  function runs: with CUDA's allocator on a GPU, and with
  :class:`TensorMemoryTracker` elsewhere (CPU, Apple MPS), so that the same
  notebook code runs everywhere.

Why a tracker on the CPU: Python's ``tracemalloc`` does not see PyTorch's
allocations, and the process's resident memory (RSS) includes the Python
interpreter, libraries and freed-but-cached pages. The tracker instead watches
every tensor operation (a ``TorchDispatchMode``), adds the bytes of each newly
allocated storage and subtracts them when the storage is freed.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from bigmodel_lib.devices import get_device

__all__ = ["training_state", "saved_tensor_bytes", "TensorMemoryTracker", "measure_peak_memory"]


def _storage_key(t: torch.Tensor) -> tuple | None:
    """(device, address) of a tensor's storage, or None if it has none (e.g. meta tensors)."""
    try:
        storage = t.untyped_storage()
    except (RuntimeError, NotImplementedError):  # sparse and other tensors without one storage
        return None
    if t.device.type == "meta" or storage.nbytes() == 0:
        return None
    return (t.device, storage.data_ptr())


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of memory behind ``tensors``, each storage counted once.

    Views share their base tensor's storage (``x.view(...)``, ``x.t()``), and a
    tied weight appears twice in a model, so adding ``t.numel() * t.element_size()``
    would count them twice.
    """
    seen: dict[tuple, int] = {}
    for t in tensors:
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"tensor_bytes: expected tensors, got {type(t).__name__}")
        key = _storage_key(t)
        if key is not None:
            seen[key] = t.untyped_storage().nbytes()
    return sum(seen.values())


def training_state(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> dict[str, list[torch.Tensor]]:
    """The tensors a training run keeps between steps, by kind.

    Returns ``{"parameters": [...], "buffers": [...], "gradients": [...],
    "optimizer state": [...]}``; gradients that are ``None`` (not yet computed,
    or freed by ``zero_grad(set_to_none=True)``) are left out. Adam's state is
    two tensors of each parameter's shape (``exp_avg`` and ``exp_avg_sq``) and a
    step counter.

    Introduced in §1.4.
    """
    params = list(model.parameters())
    state: list[torch.Tensor] = []
    if optimizer is not None:
        for per_param in optimizer.state.values():
            state.extend(v for v in per_param.values() if isinstance(v, torch.Tensor))
    return {
        "parameters": params,
        "buffers": list(model.buffers()),
        "gradients": [p.grad for p in params if p.grad is not None],
        "optimizer state": state,
    }


def saved_tensor_bytes(fn: Callable[[], object], exclude: Iterable[torch.Tensor] = ()) -> tuple[object, int]:
    """Run ``fn()`` and return ``(its result, bytes of the tensors autograd saved for backward)``.

    Every operation that needs its inputs or outputs to compute gradients hands
    them to autograd, which calls the pack hook of
    ``torch.autograd.graph.saved_tensors_hooks`` once per saved tensor. Storages
    are counted once (a ReLU's output is also the next layer's input), and
    tensors in ``exclude`` (pass the parameters: a linear layer saves its weight,
    which is memory the model holds anyway) are not counted.

    Introduced in §1.4.
    """
    excluded = {k for k in (_storage_key(t) for t in exclude) if k is not None}
    saved: dict[tuple, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = _storage_key(t)
        if key is not None and key not in excluded:
            saved[key] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        result = fn()
    return result, sum(saved.values())


class TensorMemoryTracker(TorchDispatchMode):
    """Follow the bytes of tensor storage alive while code runs inside ``with TensorMemoryTracker(held):``.

    Starts from the storages of ``held`` (tensors that exist already, such as
    the parameters: they are followed until freed, but not kept alive), then
    sees every PyTorch operation: an output whose storage is not one of the
    operation's inputs' (not a view, not an in-place result) is a new
    allocation, added to ``current_bytes`` and subtracted again when Python
    frees that storage. ``peak_bytes`` is the highest value reached. Works on
    every device, including the CPU, where PyTorch keeps no allocation
    statistics. Tensors that existed before and are not in ``held`` are not
    counted. With ``record=True``, ``timeline`` lists ``(operation name,
    current_bytes)`` after every operation, to plot memory over a training step.

    Introduced in §1.4.
    """

    def __init__(self, held: Iterable[torch.Tensor] = (), record: bool = False):
        super().__init__()
        self._live: dict[tuple, tuple[int, weakref.ref]] = {}
        self.current_bytes = 0
        self.peak_bytes = 0
        self.record = record
        self.timeline: list[tuple[str, int]] = []
        for t in held:
            self._follow(t)

    def _release(self, key: tuple) -> None:
        entry = self._live.pop(key, None)
        if entry is not None:
            self.current_bytes -= entry[0]

    def _follow(self, t: torch.Tensor) -> None:
        key = _storage_key(t)
        if key is None or key in self._live:
            return
        storage = t.untyped_storage()
        ref = weakref.ref(storage, lambda _, key=key: self._release(key))
        self._live[key] = (storage.nbytes(), ref)
        self.current_bytes += storage.nbytes()
        self.peak_bytes = max(self.peak_bytes, self.current_bytes)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = {_storage_key(t) for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and _storage_key(t) not in inputs:
                self._follow(t)
        if self.record:
            self.timeline.append((func.__name__, self.current_bytes))
        return out


@dataclass
class MemoryMeasurement:
    """The result of :func:`measure_peak_memory`; sizes in bytes."""

    peak_bytes: int  # held tensors plus the most that was allocated on top of them at any moment
    held_bytes: int  # the tensors passed as ``held``, before the call
    method: str  # "CUDA allocator" or "tensor tracker"

    @property
    def peak_mib(self) -> float:
        return self.peak_bytes / 2**20


def measure_peak_memory(
    fn: Callable[[], object],
    held: Iterable[torch.Tensor] = (),
    device: str | torch.device | None = None,
) -> MemoryMeasurement:
    """Peak bytes of tensors alive while ``fn()`` runs: the ``held`` tensors plus everything ``fn`` allocates.

    On a CUDA device the numbers come from PyTorch's allocator
    (``torch.cuda.max_memory_allocated`` minus what was allocated before the
    call); elsewhere from a :class:`TensorMemoryTracker`. Pass in ``held`` the
    tensors that exist before the call and count towards the peak (for a
    training step: ``training_state(model, optimizer)`` and the batch). Tensors
    ``held`` that ``fn`` frees (gradients set to ``None``) stop counting when
    they are freed, with both methods.

    Introduced in §1.4.
    """
    held = list(held)
    dev = device if isinstance(device, torch.device) else get_device(device)
    held_bytes = tensor_bytes(held)
    tracker = None if dev.type == "cuda" else TensorMemoryTracker(held)
    del held  # keep no reference: a held gradient that fn frees must stop counting
    if tracker is None:
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        before = torch.cuda.memory_allocated(dev)
        fn()
        torch.cuda.synchronize(dev)
        extra = torch.cuda.max_memory_allocated(dev) - before
        return MemoryMeasurement(held_bytes + extra, held_bytes, "CUDA allocator")
    with tracker:
        fn()
    return MemoryMeasurement(tracker.peak_bytes, held_bytes, "tensor tracker")
