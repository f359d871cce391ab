"""What shapes a training run: ``TrainConfig``, the ``History`` it records, and the
learning-rate schedule ``warmup_cosine``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from bigmodel_lib.devices import PRECISIONS

__all__ = ["TrainConfig", "warmup_cosine"]


@dataclass
class TrainConfig:
    """Everything that shapes a training run, with defaults that run on a laptop CPU.

    A GPU-sized run is another instance, e.g.
    ``TrainConfig(batch_size=512, epochs=30, compile=True)``, not another code path.

    Introduced in §1.5.
    """

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3  # peak learning rate, reached at the end of warmup
    weight_decay: float = 0.01  # AdamW's default
    warmup_fraction: float = 0.05  # share of all steps spent ramping the learning rate up
    min_lr_fraction: float = 0.1  # the cosine decays to lr * min_lr_fraction
    grad_clip: float | None = 1.0  # max global gradient norm; None switches clipping off
    precision: str = "auto"  # "auto", "fp32", "bf16" or "fp16" (see devices.resolve_precision)
    compile: bool = False  # torch.compile the model (CUDA only)
    patience: int | None = None  # stop after this many epochs without a better validation loss
    checkpoint_dir: str | None = None  # write last.pt (and best.pt) here after every epoch
    device: str | None = None  # None: CUDA, then MPS, then CPU (or $BIGMODEL_DEVICE)
    seed: int = 0  # seeds the shuffling of the training set
    progress: bool | None = None  # None: on, unless $BIGMODEL_PROGRESS=0
    log_every: int = 10  # steps between progress-bar updates and NaN checks

    def __post_init__(self):
        for name in ("epochs", "batch_size", "log_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig: expected {name} to be an integer >= 1, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"TrainConfig: expected lr > 0, got {self.lr!r}")
        for name in ("warmup_fraction", "min_lr_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"TrainConfig: expected {name} in [0, 1], got {getattr(self, name)!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"TrainConfig: expected grad_clip > 0 or None, got {self.grad_clip!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"TrainConfig: expected precision to be one of {PRECISIONS}, got {self.precision!r}")
        if self.patience is not None and (not isinstance(self.patience, int) or self.patience < 1):
            raise ValueError(f"TrainConfig: expected patience to be an integer >= 1 or None, got {self.patience!r}")


@dataclass
class History:
    """What happened during training, one entry per epoch (``step_loss``: one per step).

    Plot it with :func:`bigmodel_lib.plot_history`.
    """

    metric_name: str | None = "accuracy"
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    train_metric: list[float | None] = field(default_factory=list)  # None when there is no metric
    val_metric: list[float | None] = field(default_factory=list)
    samples_per_s: list[float] = field(default_factory=list)  # training throughput
    lr: list[float] = field(default_factory=list)  # learning rate of each epoch's last step
    step_loss: list[float] = field(default_factory=list)  # every optimizer step
    step_lr: list[float] = field(default_factory=list)  # the learning rate every optimizer step used

    @property
    def epochs(self) -> int:
        return len(self.train_loss)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> History:
        return cls(**d)


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_lr_fraction: float = 0.1) -> float:
    """Learning-rate multiplier at ``step``: linear warmup, then cosine decay to ``min_lr_fraction``.

    Warmup keeps the first updates small while Adam's moment estimates are still
    noisy; the cosine then lowers the rate smoothly so training settles. ``step``
    counts from 0; the multiplier is ``(step + 1) / warmup_steps`` during warmup
    and reaches ``min_lr_fraction`` at ``step == total_steps``.

    Introduced in §1.5.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr_fraction + (1 - min_lr_fraction) * 0.5 * (1 + math.cos(math.pi * progress))
