"""Checkpoints: saving a training run so that it can stop and carry on exactly.

A checkpoint holds everything the next step of training depends on: the model's
weights, the optimizer's moments, the learning-rate schedule's position, the
gradient scaler, and the state of every random number generator. Two formats:

* :func:`save_checkpoint` / :func:`load_checkpoint`: the whole training state in
  one ``torch.save`` file, read back with ``torch.load(..., weights_only=True)``,
  which refuses to run code hidden in a file (plain pickle would run it).
* :func:`save_weights` / :func:`load_weights`: the model's weights alone in
  safetensors, the format models are shared in.

Files are written atomically: first to a temporary file in the same folder, then
renamed over the target, so an interrupted save never leaves half a checkpoint.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = ["save_weights", "load_weights"]

#: Written into every checkpoint so that a file from elsewhere is recognised as foreign.
CHECKPOINT_FORMAT = "bigmodel_lib.checkpoint/1"


def _atomic_write(path: str | os.PathLike, write) -> Path:
    """Call ``write(tmp_path)``, then rename ``tmp_path`` to ``path`` (atomic on one file system)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())  # the bytes are on disk before the name points at them
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


#: Prefixes that wrappers add to every key of a state dict: ``torch.compile``
#: (``_orig_mod.``), ``nn.DataParallel`` and ``DistributedDataParallel`` (``module.``).
WRAPPER_PREFIXES = ("_orig_mod.", "module.")


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain model inside ``torch.compile``, ``nn.DataParallel`` and ``DistributedDataParallel`` wrappers.

    Wrappers keep the original module as an attribute (``_orig_mod`` or
    ``module``) and prefix every key of their ``state_dict`` with its name, so a
    file saved from a wrapped model would not load into the plain one. Every
    save and load in this module goes through the unwrapped model, so files
    always carry the plain model's keys.
    """
    while True:
        if hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):  # torch.compile
            model = model._orig_mod
        elif isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        else:
            return model


def _strip_wrapper_prefixes(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` without the prefixes of :data:`WRAPPER_PREFIXES` when every key has one the model lacks."""
    expected = model.state_dict()
    changed = True
    while changed and state:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in state) and not any(k.startswith(prefix) for k in expected):
                state = {k[len(prefix):]: v for k, v in state.items()}
                changed = True
    return state


def _load_model_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into the plain model inside any wrapper, after stripping wrapper prefixes and checking it."""
    model = unwrap_model(model)
    state = _strip_wrapper_prefixes(model, state)
    check_state_dict(model, state, source=source)
    model.load_state_dict(state)


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Raise ``ValueError`` listing every key and shape where ``state`` does not fit ``model``.

    PyTorch's own message stops at the first problems it meets; this one names
    each missing key, each unexpected key and each shape mismatch (checkpoint
    shape vs model shape), which is what you need to see that, say, the
    checkpoint was trained with a wider hidden layer.
    """
    expected = model.state_dict()
    problems = [
        f"  {key}: {source} has shape {tuple(state[key].shape)}, model expects {tuple(expected[key].shape)}"
        for key in expected
        if key in state and tuple(state[key].shape) != tuple(expected[key].shape)
    ]
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    if missing:
        problems.append(f"  missing from {source}: {', '.join(missing)}")
    if unexpected:
        problems.append(f"  in {source} but not in the model: {', '.join(unexpected)}")
    if problems:
        prefixes = {p for p in WRAPPER_PREFIXES for k in unexpected if k.startswith(p)}
        hint = (
            f"\nThe file's keys start with {' / '.join(sorted(prefixes))}: it was saved from a wrapped model "
            "(torch.compile, DataParallel); save unwrap_model(model) instead."
            if prefixes
            else "\nWas it saved from a model built with a different configuration?"
        )
        raise ValueError(
            f"{source} does not fit this {type(model).__name__}; expected the model's keys and shapes, got:\n"
            + "\n".join(problems)
            + hint
        )


# ---------------------------------------------------------------------------
# Random number generators


def rng_state() -> dict:
    """The state of Python's, NumPy's and torch's random generators, as tensors and plain values.

    Saved in every checkpoint so that dropout masks and data shuffling after a
    resume are the ones the uninterrupted run would have drawn.
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore generators saved by :func:`rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------
# Whole training state


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler=None,
    scaler=None,
    **extra,
) -> Path:
    """Atomically write model, optimizer, scheduler, scaler and RNG states (plus ``extra``) to ``path``.

    ``extra`` holds plain values (numbers, strings, lists, dicts, tensors) such as
    the epoch and the history; :func:`load_checkpoint` returns them.
    """
    state = {
        "format": CHECKPOINT_FORMAT,
        "model": unwrap_model(model).state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": rng_state(),
        "extra": extra,
    }
    return _atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler=None,
    scaler=None,
    restore_rng: bool = True,
) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` into the given objects; return its ``extra``.

    The file is read with ``weights_only=True`` and checked against the model
    first: a model of another shape gets a ``ValueError`` naming every
    mismatched key and shape.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"expected a checkpoint file at {path}, got no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(
            f"expected a checkpoint written by bigmodel_lib.save_checkpoint at {path}, "
            f"got a file torch.load cannot read safely ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = sorted(state)[:8] if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"expected a checkpoint in format {CHECKPOINT_FORMAT!r} at {path}, got {found}; "
            "for a bare state_dict use model.load_state_dict(torch.load(path, weights_only=True))"
        )
    _load_model_state(model, state["model"], source=f"checkpoint {path.name}")
    for name, obj in (("optimizer", optimizer), ("scheduler", scheduler), ("scaler", scaler)):
        if obj is None:
            continue
        if state[name] is None:
            raise ValueError(f"expected checkpoint {path.name} to hold a {name} state, got none")
        obj.load_state_dict(state[name])
    if restore_rng:
        set_rng_state(state["rng"])
    return state["extra"]


# ---------------------------------------------------------------------------
# Weights alone, in safetensors


def save_weights(model: nn.Module, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """Atomically write the model's weights to a safetensors file (no code, only tensors).

    Tied weights (one tensor under two names, as in GPT's embedding and output
    layer) are stored once per name. A model wrapped by ``torch.compile`` or
    ``DataParallel`` is saved with the plain model's keys (:func:`unwrap_model`).

    Introduced in §2.5.
    """
    from safetensors.torch import save_file

    state = unwrap_model(model).state_dict()
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    return _atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def load_weights(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load weights saved by :func:`save_weights` into ``model``, checking every key and shape first.

    Either side may be wrapped (``torch.compile``, ``DataParallel``): a file whose
    keys all carry a wrapper's prefix (``_orig_mod.``, ``module.``) loads too.

    Introduced in §2.5.
    """
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"expected a safetensors file at {path}, got no such file")
    _load_model_state(model, load_file(path), source=f"weights file {path.name}")
    return model
