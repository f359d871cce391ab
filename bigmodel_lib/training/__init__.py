"""The training engine every chapter uses: a small ``Trainer`` and a ``fit`` function.

One loop, written out so it can be read top to bottom (``Trainer._train_epoch``)::

    for inputs..., targets in loader:
        with autocast:                              # bf16 / fp16 / fp32, chosen in devices.py
            loss = loss_fn(model(*inputs), targets)
        scaler.scale(loss).backward()               # scaling is a no-op unless fp16
        clip_grad_norm_(model.parameters(), grad_clip)
        scaler.step(optimizer); scaler.update()
        scheduler.step()                            # warmup, then cosine decay

Around it: a progress bar per epoch, evaluation on a validation set, a history
of loss, metric and throughput, early stopping, checkpoints after every epoch
and resuming from them. Classification works out of the box (cross-entropy,
accuracy); language models pass ``metric="perplexity"`` and sequence models
their own ``loss_fn`` and ``metric``.

Taught in chapter 1 (training vs inference) and used in every chapter after it.

Modules, lowest first: ``config`` (``TrainConfig``, ``History``,
``warmup_cosine``), ``losses`` (``cross_entropy_loss``, ``scored_count``) and
``trainer`` (``Trainer``, ``fit``).
"""

from bigmodel_lib.training.config import History, TrainConfig, warmup_cosine
from bigmodel_lib.training.losses import cross_entropy_loss, scored_count
from bigmodel_lib.training.trainer import PROGRESS_ENV_VAR, Trainer, fit

__all__ = [
    "TrainConfig",
    "History",
    "warmup_cosine",
    "cross_entropy_loss",
    "scored_count",
    "Trainer",
    "fit",
    "PROGRESS_ENV_VAR",
]
