"""Devices and precision: the one place the course chooses where tensors live.

Everything that depends on the hardware is decided here and nowhere else:

* which device to compute on (CUDA, then Apple MPS, then CPU),
* which number format to train in (bf16 autocast, fp16 with gradient scaling, or fp32),
* how to seed every random number generator so that runs repeat,
* how to build DataLoaders and move batches so that copies overlap with compute.
"""

from __future__ import annotations

import contextlib
import os
import platform
import random

import numpy as np
import torch
from torch import nn

from bigmodel_lib._version import __version__

__all__ = ["get_device", "environment_report", "seed_everything", "evaluation_mode"]

#: Environment variable that overrides the automatic choice, e.g. ``BIGMODEL_DEVICE=cpu``.
DEVICE_ENV_VAR = "BIGMODEL_DEVICE"

#: The number formats a training run can use; ``"auto"`` picks one for the device.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def get_device(device: str | torch.device | None = None) -> torch.device:
    """Return the device to compute on: CUDA, then Apple MPS, then CPU.

    An explicit ``device`` argument wins, then the ``BIGMODEL_DEVICE`` environment
    variable, then the first available accelerator.

    Introduced in the preface.
    """
    choice = device if device is not None else os.environ.get(DEVICE_ENV_VAR) or None
    if choice is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        chosen = torch.device(choice)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"expected a device such as 'cpu', 'cuda', 'cuda:0' or 'mps', got {choice!r}"
        ) from exc
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {choice!r} was requested but this machine has no CUDA GPU")
    if chosen.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {choice!r} was requested but Apple MPS is not available here")
    return chosen


# ---------------------------------------------------------------------------
# Precision


def resolve_precision(device: str | torch.device | None = None, precision: str = "auto") -> str:
    """Turn ``precision`` into the number format a run will use on ``device``.

    ``"auto"`` means bf16 autocast on GPUs that support it (Ampere and newer),
    fp16 with gradient scaling on older CUDA GPUs, and full precision (fp32)
    on CPU and Apple MPS. On CPU, bf16 must be asked for explicitly: it is
    slower than fp32 on most laptop CPUs.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"expected precision to be one of {PRECISIONS}, got {precision!r}")
    dev = get_device(device)
    if precision == "auto":
        if dev.type != "cuda":
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "fp16" and dev.type != "cuda":
        raise ValueError(
            f"expected a CUDA device for precision 'fp16' (it needs gradient scaling), got {dev}; "
            "use 'bf16' or 'fp32' there"
        )
    if precision == "bf16" and dev.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(
            f"expected a GPU with bf16 support for precision 'bf16', got {torch.cuda.get_device_name(dev)}; "
            "use 'fp16' (with gradient scaling) or 'fp32'"
        )
    if precision == "bf16" and dev.type == "mps":
        raise ValueError(f"expected device 'cuda' or 'cpu' for precision 'bf16', got {dev}; use 'fp32' on MPS")
    return precision


def autocast(device: str | torch.device | None = None, precision: str = "auto"):
    """A context manager that runs the forward pass in the chosen precision.

    Inside it, matrix multiplications and convolutions run in bf16 or fp16 while
    reductions such as softmax and losses stay in fp32 (``torch.autocast``).
    For fp32 it does nothing.
    """
    dev = get_device(device)
    chosen = resolve_precision(dev, precision)
    if chosen == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if chosen == "bf16" else torch.float16
    return torch.autocast(device_type=dev.type, dtype=dtype)


def grad_scaler(device: str | torch.device | None = None, precision: str = "auto"):
    """A gradient scaler, switched on only for fp16 training.

    fp16 has few exponent bits, so small gradients underflow to zero; the scaler
    multiplies the loss by a large factor before ``backward`` and divides the
    gradients again before the optimizer step. bf16 and fp32 need no scaling, and
    a disabled scaler passes everything through unchanged.
    """
    dev = get_device(device)
    enabled = resolve_precision(dev, precision) == "fp16"
    if not hasattr(torch.amp, "GradScaler"):  # torch < 2.3 has only the CUDA one
        return torch.cuda.amp.GradScaler(enabled=enabled)
    return torch.amp.GradScaler("cuda" if enabled else "cpu", enabled=enabled)


# ---------------------------------------------------------------------------
# Reproducibility


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python's ``random``, NumPy and torch (CPU and every GPU) with ``seed``.

    With ``deterministic=True`` torch is also asked to use deterministic
    algorithms where it has them (``torch.use_deterministic_algorithms`` with
    ``warn_only=True``, cuDNN without autotuning), so that two runs on the same
    machine give the same numbers. On a GPU that can cost speed: timing runs
    pass ``deterministic=False``.

    Introduced in §1.8.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ValueError(f"expected seed to be an integer in [0, 2**32), got {seed!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic:
        # cuBLAS needs this workspace setting for deterministic matmuls; it is read
        # when CUDA starts, so it only helps when set before the first CUDA call.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    else:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False


# ---------------------------------------------------------------------------
# Moving data


def dataloader_kwargs(device: str | torch.device | None = None) -> dict:
    """DataLoader settings that fit ``device``: ``pin_memory`` on CUDA, no worker processes.

    Pinned (page-locked) host memory lets a copy to the GPU run in the background
    (see :func:`move_to_device`). The course's datasets are tensors already in
    memory, so worker processes would only add start-up time, and on macOS and
    Windows they need an ``if __name__ == "__main__"`` guard that notebooks lack.
    """
    dev = get_device(device)
    return {"pin_memory": dev.type == "cuda", "num_workers": 0}


def move_to_device(batch, device: str | torch.device | None = None):
    """Move a tensor, or a tuple, list or dict of tensors, to ``device``.

    On CUDA the copies are ``non_blocking``: from pinned memory they overlap with
    the computation already queued on the GPU.
    """
    dev = device if isinstance(device, torch.device) else get_device(device)
    if isinstance(batch, torch.Tensor):
        return batch.to(dev, non_blocking=dev.type == "cuda")
    if isinstance(batch, (tuple, list)):
        return type(batch)(move_to_device(item, dev) for item in batch)
    if isinstance(batch, dict):
        return {key: move_to_device(value, dev) for key, value in batch.items()}
    raise ValueError(
        f"expected a tensor or a tuple, list or dict of tensors, got {type(batch).__name__}; "
        "a Dataset should return tensors (wrap NumPy arrays with torch.as_tensor)"
    )


# ---------------------------------------------------------------------------
# Report


def _memory_gib() -> str:
    try:
        return f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB RAM"
    except (AttributeError, ValueError, OSError):  # sysconf is missing on Windows
        return "RAM unknown"


def environment_report(device: str | torch.device | None = None) -> str:
    """One block of text naming the library, Python, PyTorch and device versions.

    Every notebook prints it in its first cell, so a bug report carries it:
    the chosen device with its memory, the precision a training run would use
    there, and the versions of the libraries the course relies on.

    Introduced in the preface.
    """
    dev = get_device(device)
    lines = [
        f"bigmodel_lib {__version__}",
        f"python       {platform.python_version()} ({platform.system()} {platform.machine()})",
        f"torch        {torch.__version__}",
    ]
    try:
        import torchvision

        lines.append(f"torchvision  {torchvision.__version__}")
    except Exception as exc:  # a broken torchvision install should not hide the rest
        lines.append(f"torchvision  unavailable ({type(exc).__name__}: {exc})")
    lines.append(f"numpy        {np.__version__}")
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        lines.append(f"device       cuda: {props.name}, {props.total_memory / 2**30:.1f} GiB")
        lines.append(f"cuda         {torch.version.cuda}, compute capability {props.major}.{props.minor}")
    elif dev.type == "mps":
        lines.append(f"device       mps: Apple silicon GPU (shares {_memory_gib()})")
    else:
        lines.append(
            f"device       cpu: {os.cpu_count()} logical cores, {torch.get_num_threads()} torch threads, "
            f"{_memory_gib()}"
        )
    lines.append(f"precision    {resolve_precision(dev)} (training default on this device)")
    return "\n".join(lines)


@contextlib.contextmanager
def evaluation_mode(model: nn.Module):
    """``with evaluation_mode(model):`` runs the block in eval mode (no dropout), then restores the training flag.

    Restoring matters: a model evaluated in the middle of training must carry on
    training with dropout, and a model the caller had put in eval mode must stay
    there. Every method that evaluates or decodes uses it.

    Introduced in §1.4.
    """
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
