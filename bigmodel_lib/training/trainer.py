"""``Trainer`` and ``fit``: the loop of :mod:`bigmodel_lib.training`, its evaluation,
prediction, early stopping and checkpoints."""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler, TensorDataset

from bigmodel_lib.checkpoint import load_checkpoint, save_checkpoint
from bigmodel_lib.devices import (
    autocast,
    dataloader_kwargs,
    evaluation_mode,
    get_device,
    grad_scaler,
    move_to_device,
    resolve_precision,
)
from bigmodel_lib.metrics import IGNORE_INDEX, _check_score_shape, check_class_indices
from bigmodel_lib.timing import Stopwatch
from bigmodel_lib.training.config import History, TrainConfig, warmup_cosine
from bigmodel_lib.training.losses import (
    _at_least_float32,
    _default_loss,
    _floats,
    _main_output,
    _Tally,
    scored_count,
)

__all__ = ["Trainer"]

with warnings.catch_warnings():
    # Without ipywidgets (the offline book has none) tqdm.auto falls back to the text
    # bar, which is what we want, after warning "IProgress not found" on import.
    warnings.filterwarnings("ignore", message=".*IProgress not found.*")
    from tqdm.auto import tqdm

#: Set to 0 to switch progress bars off, e.g. ``BIGMODEL_PROGRESS=0 pytest``.
PROGRESS_ENV_VAR = "BIGMODEL_PROGRESS"


def _describe(tensors) -> str:
    return ", ".join(f"{tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}" for t in tensors)


class Trainer:
    """Train and evaluate one model: progress bars, history, schedule, checkpoints.

    ``loss_fn(outputs, targets)`` defaults to :func:`cross_entropy_loss`; a
    custom one must return the mean over the scored targets (those not equal to
    ``IGNORE_INDEX``, or every element of floating targets), as PyTorch's mean
    losses do: averages over many batches weight each batch by that count
    (:func:`scored_count`). bf16/fp16 outputs reach the loss and the metric as
    float32. A model may return a tensor or a tuple ``(logits, ...)`` (as the
    GPT and the encoder-decoder of chapter 4 do): the default loss, the metric
    and :meth:`predict` then read the first element.
    ``metric`` is ``"accuracy"`` (default), ``"perplexity"`` (exp of the mean
    loss per scored token), ``None``, or a function ``metric(outputs, targets)``
    returning either a mean over the batch's scored targets (weighted like the
    loss) or a pair ``(sum, count)`` (summed exactly, for any other unit).
    Batches are ``(inputs..., targets)``: the model is called as
    ``model(*inputs)``. ``optimizer`` defaults to AdamW.

    Introduced in §1.5.
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig | None = None,
        loss_fn: Callable | None = None,
        metric: str | Callable | None = "accuracy",
        optimizer: torch.optim.Optimizer | None = None,
    ):
        if not isinstance(model, nn.Module):
            raise ValueError(f"Trainer: expected an nn.Module, got {type(model).__name__}")
        if isinstance(metric, str) and metric not in ("accuracy", "perplexity"):
            raise ValueError(f"Trainer: expected metric 'accuracy', 'perplexity', None or a function, got {metric!r}")
        self.config = config = config or TrainConfig()
        self.device = get_device(config.device)
        self.precision = resolve_precision(self.device, config.precision)
        self.model = model.to(self.device)
        self.loss_fn = loss_fn or _default_loss
        self.metric = metric
        self.metric_name = metric if isinstance(metric, str) or metric is None else metric.__name__
        if optimizer is None and not any(p.requires_grad for p in model.parameters()):
            raise ValueError(
                f"Trainer: expected a model with trainable parameters, got a {type(model).__name__} with none"
            )
        self.optimizer = optimizer or torch.optim.AdamW(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.scaler = grad_scaler(self.device, self.precision)
        self._autocast = autocast(self.device, self.precision)  # re-entered every step
        self.scheduler = None  # built by fit(), once the number of steps is known
        self.history = History(metric_name=self.metric_name)
        self.step = 0  # optimizer steps taken so far
        self._forward = model
        if config.compile and self.device.type == "cuda":
            self._forward = torch.compile(model)
        elif config.compile:
            warnings.warn(f"TrainConfig.compile is used on CUDA only; running eagerly on {self.device}", stacklevel=2)
        # The training set's shuffling has its own generator, so that it is saved in checkpoints.
        self._shuffle = torch.Generator().manual_seed(config.seed)

    # -- data ---------------------------------------------------------------

    def _loader(self, data: Dataset | DataLoader, train: bool, what: str) -> DataLoader:
        if isinstance(data, DataLoader):
            return data
        if len(data) == 0:
            raise ValueError(f"expected a non-empty {what}, got a dataset of length 0")
        # DataLoader draws a seed from the generator every epoch, so both paths below pass it.
        kwargs = dict(generator=self._shuffle if train else None, **dataloader_kwargs(self.device))
        if isinstance(data, TensorDataset):
            # Index the tensors with a whole batch of indices at once instead of one sample at a
            # time and stacking: the same batches in the same order (the sampler is the one
            # DataLoader(shuffle=...) builds), faster for small models.
            order = RandomSampler(data, generator=self._shuffle) if train else SequentialSampler(data)
            batches = BatchSampler(order, self.config.batch_size, drop_last=False)
            return DataLoader(data, sampler=batches, batch_size=None, **kwargs)
        return DataLoader(data, batch_size=self.config.batch_size, shuffle=train, **kwargs)

    def _split(self, batch) -> tuple[tuple, torch.Tensor]:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            got = f"a {type(batch).__name__}" + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
            raise ValueError(f"expected each batch to be a tuple (inputs..., targets), got {got}")
        batch = move_to_device(batch, self.device)
        return tuple(batch[:-1]), batch[-1]

    # -- one step -------------------------------------------------------------

    def _loss(self, inputs: tuple, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with self._autocast:
            try:
                outputs = self._forward(*inputs)
            except torch.cuda.OutOfMemoryError:
                raise
            except RuntimeError as exc:
                params = next(self.model.parameters(), None)
                float64_inputs = any(x.dtype == torch.float64 for x in inputs)
                hint = ""
                if params is not None and float64_inputs and params.dtype != torch.float64:
                    hint = f"; the inputs are float64 but the model is {params.dtype}: convert the data with .float()"
                raise ValueError(
                    f"{type(self.model).__name__} could not take a batch of inputs with shape and dtype "
                    f"[{_describe(inputs)}] on {self.device}{hint}. PyTorch said: {exc}"
                ) from exc
            outputs = _at_least_float32(outputs)  # a bf16 model's logits: the loss and metric in float32
            loss = self.loss_fn(outputs, targets)
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            got = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise ValueError(f"expected loss_fn to return a scalar tensor (shape ()), got {got}")
        return loss, outputs

    def _batch_metric(self, outputs, targets: torch.Tensor):
        """What the metric needs from this batch, left on the device (reduced by ``_reduce_metric``)."""
        if self.metric is None or self.metric == "perplexity":
            return None  # perplexity comes from the mean loss; None has no metric
        outputs = _main_output(outputs, "metric")
        if self.metric == "accuracy":
            _check_score_shape(outputs, targets, "accuracy")
            # One small kernel per step (integers carry no gradient); the range check runs at the flush.
            return outputs.argmax(-1), targets, outputs.shape[-1]
        return self.metric(outputs.detach(), targets)

    def _reduce_metric(self, parts: tuple, weights: list[int]) -> tuple[float, float]:
        """(sum, count) of the metric over several batches."""
        if self.metric == "accuracy":
            predictions = torch.cat([p.flatten() for p, _, _ in parts])  # flatten: (B, T) token batches
            targets = torch.cat([t.flatten() for _, t, _ in parts])
            check_class_indices(targets, parts[0][2], "accuracy", ignore_index=IGNORE_INDEX)
            # Positions whose target is IGNORE_INDEX (padding) are never right and not among the scored.
            return (predictions == targets).sum().item(), sum(weights)
        if callable(self.metric):
            if all(isinstance(p, (tuple, list)) and len(p) == 2 for p in parts):  # (sum, count) pairs
                sums, counts = zip(*parts)
                return sum(_floats(list(sums))), sum(_floats(list(counts)))
            values = _floats(list(parts))  # means over each batch's scored targets
            return sum(v * n for v, n in zip(values, weights) if n), sum(weights)
        return 0.0, 0

    def _epoch_metric(self, tally: _Tally) -> float | None:
        if self.metric is None:
            return None
        if self.metric == "perplexity":
            return math.exp(min(tally.mean_loss, 700.0))  # exp overflows a float beyond ~709
        return tally.metric_sum / max(tally.metric_count, 1)

    # -- epochs ---------------------------------------------------------------

    def _train_epoch(self, loader: DataLoader, bar) -> tuple[float, float | None, float]:
        """One pass over the training set; returns mean loss, metric and samples/s."""
        self.model.train()
        cfg = self.config
        tally = _Tally(self._reduce_metric)
        with Stopwatch(self.device) as watch:  # waits for the GPU before reading the clock
            for batch in loader:
                inputs, targets = self._split(batch)
                loss, outputs = self._loss(inputs, targets)
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                if cfg.grad_clip is not None:
                    self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
                    nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                self.history.step_lr.append(self.optimizer.param_groups[0]["lr"])  # the rate this update uses
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.scheduler.step()
                self.step += 1
                # The numbers stay on the device: reading a GPU loss every step would stall the GPU.
                tally.add(loss, self._batch_metric(outputs, targets), scored_count(targets), targets.shape[0])
                bar.update()
                if len(tally.pending) == cfg.log_every:
                    self._flush(tally, bar)
            self._flush(tally, bar)
        return tally.mean_loss, self._epoch_metric(tally), tally.samples / watch.seconds

    def _flush(self, tally: _Tally, bar) -> None:
        """Move pending step losses into the history; stop on the first NaN or infinity."""
        first = self.step - len(tally.pending) + 1
        losses = tally.flush()
        for i, loss in enumerate(losses):
            if not math.isfinite(loss):
                raise FloatingPointError(
                    f"expected a finite loss, got {loss} at step {first + i} "
                    f"(epoch {self.history.epochs + 1}); lower the learning rate, check the inputs "
                    f"for NaN/inf, or use precision='fp32'"
                )
        self.history.step_loss.extend(losses)
        if tally.scored:
            bar.set_postfix(loss=f"{tally.mean_loss:.4f}", refresh=False)

    @torch.no_grad()
    def evaluate(self, data: Dataset | DataLoader) -> dict[str, float | None]:
        """Mean loss and metric over ``data``, with the model in eval mode (no dropout, no gradients).

        Means are per scored target (padding excluded), so they do not depend on
        the batch size. The model's training flag is restored afterwards.
        Returns ``{"loss": ..., <metric name>: ...}``, or ``{"loss": ...}`` when the
        trainer has no metric.
        """
        loader = self._loader(data, train=False, what="evaluation set")
        tally = _Tally(self._reduce_metric)
        with evaluation_mode(self.model):
            for batch in loader:
                inputs, targets = self._split(batch)
                loss, outputs = self._loss(inputs, targets)
                tally.add(loss, self._batch_metric(outputs, targets), scored_count(targets), targets.shape[0])
            tally.flush()
        if tally.samples == 0:
            raise ValueError("expected a non-empty evaluation set, got a loader with no batches")
        if tally.scored == 0:
            raise ValueError(f"expected at least one scored target, got only {IGNORE_INDEX} (ignored) targets")
        result = {"loss": tally.mean_loss}
        if self.metric is not None:
            result[self.metric_name] = self._epoch_metric(tally)
        return result

    @torch.no_grad()
    def predict(self, data: Dataset | DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
        """Model outputs and targets for every sample of ``data``, concatenated on the CPU.

        For a classifier, ``outputs.argmax(-1)`` are the predicted classes (e.g. for
        :func:`bigmodel_lib.plot_confusion_matrix`). A model that returns a tuple
        such as ``(logits, loss)`` contributes its first element. Runs in eval
        mode and restores the model's training flag.
        """
        loader = self._loader(data, train=False, what="prediction set")
        outputs, targets = [], []
        with evaluation_mode(self.model):
            for batch in loader:
                inputs, target = self._split(batch)
                with self._autocast:
                    outputs.append(_main_output(self._forward(*inputs), "predict").float().cpu())
                targets.append(target.cpu())
        return torch.cat(outputs), torch.cat(targets)

    # -- the run ----------------------------------------------------------------

    def fit(
        self,
        train_data: Dataset | DataLoader,
        val_data: Dataset | DataLoader | None = None,
        resume_from: str | os.PathLike | None = None,
    ) -> History:
        """Train for ``config.epochs`` epochs; return the :class:`History`.

        After each epoch: evaluate on ``val_data`` (if given), record the history,
        write ``last.pt`` (and ``best.pt`` when the validation loss improved) to
        ``config.checkpoint_dir``, and stop early after ``config.patience`` epochs
        without improvement. ``resume_from`` continues from a checkpoint: on CPU
        the losses that follow are exactly those of the uninterrupted run (give
        a Dataset rather than a DataLoader, so that the shuffling is restored too).
        Each call is a new run from the current weights, with a new schedule and
        history; to carry on a run, resume it from its checkpoint.
        """
        cfg = self.config
        loader = self._loader(train_data, train=True, what="training set")
        if len(loader) == 0:
            raise ValueError("expected a non-empty training set, got a loader with no batches")
        total = cfg.epochs * len(loader)
        warmup = int(cfg.warmup_fraction * total)
        schedule = partial(warmup_cosine, warmup_steps=warmup, total_steps=total, min_lr_fraction=cfg.min_lr_fraction)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        self.history, self.step, start = History(metric_name=self.metric_name), 0, 1
        if resume_from is not None:
            start = self._resume(resume_from) + 1

        for epoch in range(start, cfg.epochs + 1):
            h = self.history
            bar = _progress(len(loader), f"epoch {epoch}/{cfg.epochs}", cfg.progress)
            try:
                train_loss, train_metric, speed = self._train_epoch(loader, bar)
                h.train_loss.append(train_loss)
                h.train_metric.append(train_metric)
                h.samples_per_s.append(speed)
                h.lr.append(h.step_lr[-1])
                if val_data is not None:
                    result = self.evaluate(val_data)
                    h.val_loss.append(result["loss"])
                    h.val_metric.append(result.get(self.metric_name))
                bar.set_postfix(_postfix(h, self.metric_name))
            finally:
                bar.close()  # the bar's last state is the epoch's one-line summary
            improved = bool(h.val_loss) and h.val_loss[-1] == min(h.val_loss)
            if cfg.checkpoint_dir is not None:
                self.save(Path(cfg.checkpoint_dir) / "last.pt", epoch)
                if improved:
                    self.save(Path(cfg.checkpoint_dir) / "best.pt", epoch)
            if cfg.patience is not None and h.val_loss:
                since_best = len(h.val_loss) - 1 - h.val_loss.index(min(h.val_loss))
                if since_best >= cfg.patience:
                    if _progress_on(cfg.progress):
                        tqdm.write(f"early stopping after epoch {epoch}: "
                                   f"no better validation loss for {since_best} epochs")
                    break
        return self.history

    def save(self, path: str | os.PathLike, epoch: int) -> Path:
        """Write the whole training state after ``epoch`` to ``path`` (atomically)."""
        return save_checkpoint(
            path, self.model, self.optimizer, self.scheduler, self.scaler,
            epoch=epoch, step=self.step, history=self.history.to_dict(),
            config=dataclasses.asdict(self.config), shuffle_rng=self._shuffle.get_state(),
        )

    def _resume(self, path: str | os.PathLike) -> int:
        extra = load_checkpoint(path, self.model, self.optimizer, self.scheduler, self.scaler)
        changed = {
            k: (v, getattr(self.config, k)) for k, v in extra["config"].items()
            if k not in ("checkpoint_dir", "progress", "device") and getattr(self.config, k, v) != v
        }
        if changed:
            warnings.warn(f"resuming with a different config (checkpoint value, now): {changed}", stacklevel=3)
        self.history = History.from_dict(extra["history"])
        self.step = extra["step"]
        self._shuffle.set_state(extra["shuffle_rng"])
        return extra["epoch"]



def _progress_on(progress: bool | None) -> bool:
    if progress is not None:
        return progress
    return os.environ.get(PROGRESS_ENV_VAR, "1").strip().lower() not in ("0", "false", "no", "off")


def _progress(total: int, desc: str, progress: bool | None):
    return tqdm(total=total, desc=desc, disable=not _progress_on(progress), leave=True, unit="batch")


def _postfix(h: History, name: str | None) -> dict:
    """The epoch's numbers, shown at the end of its progress bar."""
    out = {"loss": f"{h.train_loss[-1]:.4f}"}
    if h.train_metric[-1] is not None:
        out[str(name)] = f"{h.train_metric[-1]:.4f}"
    if h.val_loss:
        out["val_loss"] = f"{h.val_loss[-1]:.4f}"
        if h.val_metric[-1] is not None:
            out[f"val_{name}"] = f"{h.val_metric[-1]:.4f}"
    out["samples/s"] = f"{h.samples_per_s[-1]:,.0f}"
    return out
