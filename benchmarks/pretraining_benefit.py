"""Pretraining pays off, measured: a small BERT pretrained on unlabelled tweets against the same model from scratch.

The task is chapter 5's tweet sentiment (``bigmodel_lib.sentiment``: negative, neutral, positive;
``split_tweets(load_tweets(), (0.8, 0.1, 0.1), seed=0)``). Every choice, the same for both models:

* Tokenizer: byte-pair encoding from Hugging Face ``tokenizers`` (lower-casing, the ``Whitespace``
  pre-tokenizer, ``BpeTrainer`` without an end-of-word suffix, which makes it deterministic: the script
  trains it twice and checks), with a vocabulary of ``VOCAB_SIZE`` learned on the TRAINING texts only.
  Special tokens ``[PAD]`` (id 0), ``[UNK]``, ``[MASK]``; no ``[CLS]``/``[SEP]``. Tweets are cut to ``MAX_LEN`` tokens.
* Model: ``BertEncoder(BertConfig(**BODY))`` of section 5.3: 2 post-norm GELU layers of width 128, 4 heads,
  feed-forward 512, dropout 0.1, with BERT's initialisation (weights N(0, 0.02)); 1.43M parameters, 1.02M of
  them the word embeddings. Two layers, not four, to fit the CPU budget (a 4-layer step took twice as
  long). The masked-LM head (pretraining only) is BERT's: dense, GELU, LayerNorm, then a linear layer to
  the vocabulary whose weight is the word-embedding table (tied). The classifier
  (fine-tuning) is mean pooling over the real tokens, dropout 0.1, and a linear layer to 3 classes.
* Pretraining ("pretrained" init): masked language modelling (``bigmodel_lib.objectives.mask_tokens``:
  15% of the real tokens; 80/10/10) on the training texts WITHOUT their labels, batches of
  ``PRETRAIN["batch_size"]`` tweets drawn by a seeded shuffle, epoch after epoch, AdamW (weight decay 0.01),
  peak learning rate ``PRETRAIN["lr"]``, 5% warmup then cosine decay to 10% (``warmup_cosine``), gradients
  clipped at norm 1, for ``--pretrain-steps`` steps. The head is applied at the masked positions only.
  The body is saved (safetensors, ``--weights``) and every fine-tuning run starts from that file. Recorded:
  the training MLM loss (mean over each ``--log-every`` steps) and the MLM loss and masked-token accuracy on
  ``VAL_SELECT`` validation texts (one fixed masking) at the same points; the speed excludes those evaluations.
  Python's documentation (``pydoc_text``) is not added: other text, other domain, and the budget is small.
* Fine-tuning (both inits): for each seed, the training tweets are put in a stratified nested order
  (within each class a seeded shuffle; tweet of rank r among N_c of its class gets the key (r + 0.5) / N_c;
  sorted by key), and the subset of size n is the first n, so every subset keeps the class proportions
  (within one tweet per class) and lies inside the larger ones. The seed also sets the classifier's
  initialisation (and the scratch body's), the dropout and the shuffling. Per (size, init, seed) and per
  learning rate of ``--lrs``: AdamW (weight decay 0.01), batches of 32, 10% warmup then cosine decay to
  10%, clipping at 1, for ``steps(n) = min(--max-steps, max(--min-steps, ceil(20 n / 32)))`` optimizer
  steps; accuracy on the first ``VAL_SELECT`` = 1,000 validation tweets (all choices use these; the split is
  already in a seeded random order) at ``FINETUNE["evals"]`` = 3 equally spaced steps; the weights of the
  best one are kept (early stopping by selection). The learning rate with the best validation accuracy is
  chosen (ties: the first in ``--lrs``) and its model's accuracy on the whole test split (3,479) is recorded.
  The same grid, steps, seeds and rule for both inits: only the body's initial weights differ.

A plain training loop, not ``Trainer``: the budget here is a number of optimizer steps with validation
accuracy checked at fixed steps (an "epoch" of 30 tweets is one step), while ``Trainer`` counts epochs
and stops on the validation loss.

Slow and not a test. Times depend on the machine and its load; the accuracies do not, given the same
number of threads (``--threads``, default 1, recorded: on the shared 2-core machine two threads ran a step
ten times slower while another process held a core). Chapter 5, section 5.4 loads
``bigmodel_lib/results/pretraining_benefit_cpu.json``, written on the 2-core CPU machine that runs the book's
tests by the reduced grid below (no ``all`` size: 3,000 labels is the largest; pretraining for 1,200 steps,
about 2.8 passes over the training texts), which took 34 minutes:

    python benchmarks/pretraining_benefit.py --sizes 30 100 300 1000 3000 --seeds 0 1 2 \\
        --pretrain-steps 1200 --log-every 200 --out bigmodel_lib/results/pretraining_benefit_cpu.json

The full grid, with every training tweet (``all``) as the last size for every seed, a wider learning-rate
grid and longer pretraining, on one GPU:

    python benchmarks/pretraining_benefit.py --sizes 30 100 300 1000 3000 all --seeds 0 1 2 \\
        --lrs 1e-4 3e-4 1e-3 --pretrain-steps 20000 --device cuda --out pretraining_benefit_gpu.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import time

import torch
import torch.nn.functional as F

from bigmodel_lib import get_device, seed_everything
from bigmodel_lib.models.bert import BertClassifier, BertConfig, BertEncoder, MaskedLMHead, init_bert_weights
from bigmodel_lib.objectives import IGNORE_INDEX, mask_tokens
from bigmodel_lib.sentiment import load_tweets, split_tweets, stratified_nested_order
from bigmodel_lib.tokenization import train_bpe_tokenizer
from bigmodel_lib.training.config import warmup_cosine

VOCAB_SIZE = 8000
MAX_LEN = 64
SPECIALS = ["[PAD]", "[UNK]", "[MASK]"]  # ids 0, 1, 2
BODY = dict(d_model=128, num_layers=2, num_heads=4, d_ff=512, max_len=MAX_LEN, type_vocab_size=1, dropout=0.1)
PRETRAIN = dict(batch_size=64, lr=1e-3, weight_decay=0.01, warmup_fraction=0.05, seed=0)
FINETUNE = dict(batch_size=32, epochs=20, weight_decay=0.01, warmup_fraction=0.1, evals=3, dropout=0.1)
VAL_SELECT = 1000  # validation tweets (the split's first, in its seeded order) used for every choice


# ---------------------------------------------------------------- tokenizer and tensors
# The tokenizer is bigmodel_lib.tokenization.train_bpe_tokenizer(texts, VOCAB_SIZE, SPECIALS).


def encode(tokenizer, texts: list[str], max_len: int = MAX_LEN) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids (N, max_len), padded with 0, and the lengths (N,); an empty tweet becomes one ``[UNK]``."""
    ids = torch.zeros(len(texts), max_len, dtype=torch.long)
    lengths = torch.zeros(len(texts), dtype=torch.long)
    for i, e in enumerate(tokenizer.encode_batch(texts)):
        row = e.ids[:max_len] or [SPECIALS.index("[UNK]")]
        ids[i, : len(row)] = torch.tensor(row)
        lengths[i] = len(row)
    return ids, lengths


def batch(ids: torch.Tensor, lengths: torch.Tensor, rows: torch.Tensor, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The given rows, cut to their longest length: ids (b, T) and attention mask (b, T)."""
    T = int(lengths[rows].max())
    x = ids[rows, :T].to(device)  # (b, T)
    return x, (x != 0).long()


# ---------------------------------------------------------------- the model (the library's pieces of section 5.4)


def new_body(vocab_size: int) -> BertEncoder:
    """A body with BERT's initialisation: weights N(0, 0.02), biases 0, LayerNorms 1 and 0."""
    return init_bert_weights(BertEncoder(BertConfig(vocab_size=vocab_size, pad_id=0, **BODY)))


def _schedule(optimizer, total: int, warmup_fraction: float):
    warmup = max(1, round(warmup_fraction * total))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, warmup, total))


# ---------------------------------------------------------------- pretraining


@torch.no_grad()
def mlm_eval(body, head, ids, lengths, device, batch_size: int = 256) -> tuple[float, float]:
    """Mean MLM loss and masked-token accuracy on ``ids``, with one fixed masking (generator seed 1234)."""
    body.eval(), head.eval()
    generator = torch.Generator().manual_seed(1234)
    loss_sum, correct, count = 0.0, 0, 0
    for start in range(0, len(ids), batch_size):
        rows = torch.arange(start, min(start + batch_size, len(ids)))
        x, mask = batch(ids, lengths, rows, "cpu")
        inputs, labels = mask_tokens(
            x, mask_id=2, vocab_size=body.config.vocab_size, special_ids=[0], generator=generator
        )
        inputs, labels, mask = inputs.to(device), labels.to(device), mask.to(device)
        scored = labels != IGNORE_INDEX
        logits = head(body(inputs, mask)[scored])  # (masked, V)
        loss_sum += F.cross_entropy(logits, labels[scored], reduction="sum").item()
        correct += int((logits.argmax(-1) == labels[scored]).sum())
        count += int(scored.sum())
    body.train(), head.train()
    return loss_sum / count, correct / count


def pretrain(ids, lengths, val_ids, val_lengths, steps: int, log_every: int, device, path: str) -> dict:
    """MLM pretraining of a new body; saves it to ``path`` (safetensors) and returns the curve and timings."""
    from safetensors.torch import save_file

    seed_everything(PRETRAIN["seed"])
    body = new_body(VOCAB_SIZE).to(device)
    head = MaskedLMHead(body).to(device)
    params = list(body.parameters()) + [p for n, p in head.named_parameters() if not n.startswith("embeddings.")]
    optimizer = torch.optim.AdamW(params, lr=PRETRAIN["lr"], weight_decay=PRETRAIN["weight_decay"])
    scheduler = _schedule(optimizer, steps, PRETRAIN["warmup_fraction"])
    generator = torch.Generator().manual_seed(PRETRAIN["seed"])
    order, position = torch.randperm(len(ids), generator=generator), 0
    curve, losses, tokens, start, eval_seconds = [], [], 0, time.perf_counter(), 0.0
    for step in range(1, steps + 1):
        if position + PRETRAIN["batch_size"] > len(ids):
            order, position = torch.randperm(len(ids), generator=generator), 0
        rows = order[position : position + PRETRAIN["batch_size"]]
        position += PRETRAIN["batch_size"]
        x, mask = batch(ids, lengths, rows, "cpu")
        inputs, labels = mask_tokens(x, mask_id=2, vocab_size=VOCAB_SIZE, special_ids=[0], generator=generator)
        inputs, labels, mask = inputs.to(device), labels.to(device), mask.to(device)
        scored = labels != IGNORE_INDEX  # the head runs on the masked positions only (15%: cheaper)
        loss = F.cross_entropy(head(body(inputs, mask)[scored]), labels[scored])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        tokens += int(mask.sum())
        if step % log_every == 0 or step == steps:
            eval_start = time.perf_counter()
            val_loss, val_acc = mlm_eval(body, head, val_ids, val_lengths, device)
            eval_seconds += time.perf_counter() - eval_start
            seconds = time.perf_counter() - start - eval_seconds  # training time only
            curve.append(
                dict(
                    step=step,
                    train_loss=round(sum(losses) / len(losses), 4),
                    val_loss=round(val_loss, 4),
                    val_masked_accuracy=round(val_acc, 4),
                    seconds=round(seconds, 1),
                )
            )
            print(
                f"pretrain step {step:>6} loss {curve[-1]['train_loss']:.3f} val loss {val_loss:.3f} "
                f"val masked acc {val_acc:.3f} ({tokens / seconds:,.0f} tokens/s)",
                flush=True,
            )
            losses = []
    seconds = time.perf_counter() - start - eval_seconds
    save_file({k: v.detach().cpu().contiguous() for k, v in body.state_dict().items()}, path)
    return dict(
        steps=steps,
        tokens=tokens,
        seconds=round(seconds, 1),
        eval_seconds=round(eval_seconds, 1),
        tokens_per_s=round(tokens / seconds),
        curve=curve,
        weights=path,
    )


# ---------------------------------------------------------------- fine-tuning


def finetune_steps(n: int, min_steps: int, max_steps: int) -> int:
    return min(max_steps, max(min_steps, math.ceil(FINETUNE["epochs"] * n / FINETUNE["batch_size"])))


@torch.no_grad()
def accuracy(model, ids, lengths, labels, device, batch_size: int = 512) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(ids), batch_size):
        rows = torch.arange(start, min(start + batch_size, len(ids)))
        x, mask = batch(ids, lengths, rows, device)
        correct += int((model(x, mask).argmax(-1).cpu() == labels[rows]).sum())
    model.train()
    return correct / len(ids)


def finetune(init: str, weights: str, train, val, seed: int, lr: float, steps: int, device) -> dict:
    """One fine-tuning run; returns the best validation accuracy, its step, and the model at that step."""
    from safetensors.torch import load_file

    ids, lengths, labels = train
    seed_everything(seed)  # the scratch body, the head, the dropout
    body = new_body(VOCAB_SIZE)
    if init == "pretrained":
        body.load_state_dict(load_file(weights))
    model = BertClassifier(body, 3, dropout=FINETUNE["dropout"]).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=FINETUNE["weight_decay"])
    scheduler = _schedule(optimizer, steps, FINETUNE["warmup_fraction"])
    generator = torch.Generator().manual_seed(seed)
    checks = {round(steps * (k + 1) / FINETUNE["evals"]) for k in range(FINETUNE["evals"])}
    order, position, best = torch.randperm(len(ids), generator=generator), 0, dict(val_acc=-1.0)
    bs = min(FINETUNE["batch_size"], len(ids))
    for step in range(1, steps + 1):
        if position + bs > len(ids):
            order, position = torch.randperm(len(ids), generator=generator), 0
        rows = order[position : position + bs]
        position += bs
        x, mask = batch(ids, lengths, rows, device)
        loss = F.cross_entropy(model(x, mask), labels[rows].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        if step in checks:
            val_acc = accuracy(model, *val, device)
            if val_acc > best["val_acc"]:
                best = dict(
                    val_acc=val_acc,
                    best_step=step,
                    state={k: v.detach().clone() for k, v in model.state_dict().items()},
                )
    model.load_state_dict(best.pop("state"))
    return dict(best, model=model)


# ---------------------------------------------------------------- the experiment


def run(sizes, seeds, lrs, pretrain_steps, log_every, min_steps, max_steps, device, weights, save=None) -> dict:
    """The whole experiment; ``save(results)`` (if given) is called after pretraining and after every row."""
    tweets = load_tweets()
    train, val, test = split_tweets(tweets, (0.8, 0.1, 0.1), seed=0)
    tokenizer = train_bpe_tokenizer(train.texts, VOCAB_SIZE, SPECIALS)
    again = train_bpe_tokenizer(train.texts, VOCAB_SIZE, SPECIALS)
    assert tokenizer.to_str() == again.to_str(), "the BPE training is not deterministic"
    assert tokenizer.token_to_id("[PAD]") == 0 and tokenizer.token_to_id("[MASK]") == 2
    data = {}
    for name, part in (("train", train), ("val", val), ("test", test)):
        ids, lengths = encode(tokenizer, part.texts)
        data[name] = (ids, lengths, torch.tensor(part.labels))
    val = tuple(t[:VAL_SELECT] for t in data["val"])
    settings = dict(
        vocab_size=tokenizer.get_vocab_size(),
        max_len=MAX_LEN,
        body=BODY,
        pretrain=PRETRAIN,
        finetune=FINETUNE,
        val_select=len(val[0]),
        sizes=sizes,
        seeds=seeds,
        lrs=lrs,
        pretrain_steps=pretrain_steps,
        min_steps=min_steps,
        max_steps=max_steps,
        split_sizes=[len(train), len(data["val"][0]), len(test)],
        train_tokens=int(data["train"][1].sum()),
        mean_tokens_per_tweet=round(float(data["train"][1].float().mean()), 2),
        truncated_train_tweets=int((data["train"][1] == MAX_LEN).sum()),
    )
    print(
        f"vocabulary {settings['vocab_size']}, splits {settings['split_sizes']}, "
        f"{settings['mean_tokens_per_tweet']} tokens per training tweet",
        flush=True,
    )
    results = dict(settings=settings, complete=False)
    results["pretraining"] = pretrain(
        data["train"][0], data["train"][1], val[0], val[1], pretrain_steps, log_every, device, weights
    )
    results["rows"] = rows = []
    if save:
        save(results)
    for seed in seeds:
        order = torch.tensor(stratified_nested_order(train.labels, seed))
        for size in sizes:
            n = len(order) if size == "all" else int(size)
            subset = order[:n]
            part = tuple(t[subset] for t in data["train"])
            steps = finetune_steps(n, min_steps, max_steps)
            for init in ("pretrained", "scratch"):
                start = time.perf_counter()
                tried, best = [], None
                for lr in lrs:
                    result = finetune(init, weights, part, val, seed, lr, steps, device)
                    tried.append(dict(lr=lr, val_acc=round(result["val_acc"], 4), best_step=result["best_step"]))
                    if best is None or result["val_acc"] > best["val_acc"]:
                        best = dict(result, lr=lr)
                test_acc = accuracy(best["model"], *data["test"], device)
                row = dict(
                    size=n,
                    init=init,
                    seed=seed,
                    class_counts=torch.bincount(part[2], minlength=3).tolist(),
                    steps=steps,
                    lr=best["lr"],
                    best_step=best["best_step"],
                    val_acc=round(best["val_acc"], 4),
                    test_acc=round(test_acc, 4),
                    lrs_tried=tried,
                    seconds=round(time.perf_counter() - start, 1),
                )
                rows.append(row)
                print(
                    f"size {n:>6} {init:>10} seed {seed} lr {best['lr']:.0e} steps {steps:>4} "
                    f"val {row['val_acc']:.3f} test {row['test_acc']:.3f} ({row['seconds']:.0f} s)",
                    flush=True,
                )
                if save:
                    save(results)
    results["complete"] = True
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes",
        nargs="+",
        default=["30", "100", "300", "1000", "3000", "all"],
        help="labelled subset sizes; 'all' is the whole training split",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--lrs", type=float, nargs="+", default=[3e-4, 1e-3])
    parser.add_argument("--pretrain-steps", type=int, default=2000)
    parser.add_argument("--log-every", type=int, default=250, help="pretraining steps between curve points")
    parser.add_argument("--min-steps", type=int, default=50, help="fine-tuning steps for the smallest subsets")
    parser.add_argument("--max-steps", type=int, default=200, help="fine-tuning steps at most")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch.set_num_threads; accuracies depend on it. 1 on the shared 2-core machine, where "
        "2 threads ran a step 10 times slower while another process held a core",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or mps")
    parser.add_argument(
        "--weights", default="/tmp/pretraining_benefit_body.safetensors", help="where the pretrained body is saved"
    )
    parser.add_argument("--out", default=None, help="also write the results as JSON to this file (after every row)")
    args = parser.parse_args(argv)
    for size in args.sizes:
        if size != "all" and not (size.isdigit() and int(size) >= 3):
            parser.error(f"expected each size to be an integer >= 3 or 'all', got {size!r}")

    torch.set_num_threads(args.threads)
    device = get_device(args.device)
    load_before, start = os.getloadavg(), time.perf_counter()
    command = "python benchmarks/pretraining_benefit.py " + " ".join(argv if argv is not None else sys.argv[1:])

    def save(results: dict) -> None:
        if not args.out:
            return
        machine = dict(
            device=str(device),
            cpu_count=os.cpu_count(),
            torch_threads=torch.get_num_threads(),
            torch=torch.__version__,
            python=platform.python_version(),
            platform=platform.platform(),
            loadavg_before=[round(x, 2) for x in load_before],
            loadavg_now=[round(x, 2) for x in os.getloadavg()],
        )
        results["settings"].update(
            date=datetime.date.today().isoformat(), command=command, total_seconds=round(time.perf_counter() - start, 1)
        )
        with open(args.out, "w") as f:
            json.dump(dict(machine=machine, **results), f, indent=1)
            f.write("\n")

    results = run(
        args.sizes,
        args.seeds,
        args.lrs,
        args.pretrain_steps,
        args.log_every,
        args.min_steps,
        args.max_steps,
        device,
        args.weights,
        save,
    )
    save(results)
    print(f"total {(time.perf_counter() - start) / 60:.1f} min" + (f"; wrote {args.out}" if args.out else ""))


if __name__ == "__main__":
    main()
