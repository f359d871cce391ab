"""The training engine: a small ``Trainer`` and a ``fit`` function.

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

Modules, lowest first: ``config`` (``TrainConfig``, ``History``,
``warmup_cosine``), ``losses`` (``cross_entropy_loss``, ``scored_count``) and
``trainer`` (``Trainer``). ``History`` (what ``Trainer.fit`` returns),
``warmup_cosine`` and ``scored_count`` are the engine's parts, imported from
their modules; the book has not yet taught them on their own.
"""

from bigmodel_lib.training.config import TrainConfig
from bigmodel_lib.training.losses import cross_entropy_loss
from bigmodel_lib.training.trainer import Trainer

__all__ = ["TrainConfig", "Trainer", "cross_entropy_loss"]
