"""Chapter 3's LSTM against chapter 4's GPT on the same text: validation loss against training time and FLOPs.

Both character-level language models train on Python's documentation
(``bigmodel_lib.text.pydoc_text``), with the same split and windows of 64
characters, the same engine (``Trainer``: AdamW, warmup and cosine decay,
clipping) and each chapter's own CPU settings: the LSTM of section 3.4
(embedding 32, hidden 128, one layer, batches of 64, learning rate 1e-2) and the
GPT of section 4.6 (4 layers of width 128, 4 heads, batches of 16, learning
rate 2e-3). Each model trains once per epoch budget, so that the learning-rate
schedule ends where the budget ends (a run cut short mid-schedule would be
unfair to it). Per run it records the training seconds, the tokens seen, the
training FLOPs and the final validation loss.

Training FLOPs are counted as 6 per weight used per token (forward and
backward matrix products; chapter 1), plus, for the GPT, the attention term of
``GPT.flops_per_token``. For the LSTM the weights used per token are the four
gates' input and recurrent matrices, 4 H (E + H), and the output layer H V;
``torch.utils.flop_counter`` does not see inside ``nn.LSTM``'s fused kernel, so
``tests/test_benchmarks_data.py`` checks this count against the counter run
on the from-scratch LSTM of section 3.2.

Slow (about 6 minutes alone on a 2-core CPU) and not a test. Times depend on
the machine and its load; the FLOPs and losses do not (same seeds, same
order of batches). Chapter 4, section 4.6 (an honest comparison) shows
``bigmodel_lib/results/lm_lstm_vs_gpt_cpu.json``, written on the 2-core CPU
machine that runs the book's tests by:

    python benchmarks/lm_lstm_vs_gpt.py --out bigmodel_lib/results/lm_lstm_vs_gpt_cpu.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform

import torch

from bigmodel_lib import Stopwatch, TrainConfig, Trainer, get_device, seed_everything
from bigmodel_lib.models.char_lstm import CharLSTM
from bigmodel_lib.models.gpt import GPT, GPTConfig
from bigmodel_lib.text import char_splits, pydoc_text

BLOCK_SIZE = 64
LSTM = dict(embedding_dim=32, hidden_size=128, num_layers=1, batch_size=64, lr=1e-2)  # section 3.4
GPT_SIZES = dict(n_layer=4, n_head=4, n_embd=128, batch_size=16, lr=2e-3)  # section 4.6


def lstm_flops_per_token(vocab_size: int, embedding_dim: int, hidden_size: int) -> int:
    """6 x the weights a one-layer LSTM language model multiplies per token: 4 gates' W and U, and the output layer."""
    return 6 * (4 * hidden_size * (embedding_dim + hidden_size) + hidden_size * vocab_size)


def run(name: str, model: torch.nn.Module, flops_per_token: int, batch_size: int, lr: float, epochs: int,
        train, val, device: str | None) -> dict:
    trainer = Trainer(model, TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, device=device, progress=False),
                      metric=None)
    with Stopwatch(trainer.device) as watch:
        history = trainer.fit(train, val)
    tokens = epochs * len(train) * BLOCK_SIZE
    row = dict(model=name, epochs=epochs, steps=len(history.step_loss), tokens=tokens,
               parameters=sum(p.numel() for p in model.parameters()), flops_per_token=flops_per_token,
               train_flops=flops_per_token * tokens, train_seconds=round(watch.seconds, 1),
               val_loss=round(history.val_loss[-1], 4), val_loss_per_epoch=[round(v, 4) for v in history.val_loss])
    print(f"{name:>4} {epochs:>6} {row['steps']:>6} {tokens / 1e6:>7.2f}M {row['train_flops'] / 1e12:>8.2f} "
          f"{watch.seconds:>8.1f} {row['val_loss']:>8.3f}", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lstm-epochs", type=int, nargs="+", default=[1, 3, 6, 12])
    parser.add_argument("--gpt-epochs", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--device", default=None, help="cpu, cuda or mps (default: the best available)")
    parser.add_argument("--out", default=None, help="also write the results as JSON to this file")
    args = parser.parse_args()

    train, val, vocab = char_splits(pydoc_text(), block_size=BLOCK_SIZE)
    V = len(vocab)
    load_before = os.getloadavg()
    print(f"{'model':>4} {'epochs':>6} {'steps':>6} {'tokens':>8} {'TFLOPs':>8} {'train s':>8} {'val loss':>8}")
    rows = []
    for epochs in args.lstm_epochs:
        seed_everything(0)
        model = CharLSTM(V, embedding_dim=LSTM["embedding_dim"], hidden_size=LSTM["hidden_size"],
                         num_layers=LSTM["num_layers"])
        flops = lstm_flops_per_token(V, LSTM["embedding_dim"], LSTM["hidden_size"])
        rows.append(run("LSTM", model, flops, LSTM["batch_size"], LSTM["lr"], epochs, train, val, args.device))
    for epochs in args.gpt_epochs:
        seed_everything(0)
        model = GPT(GPTConfig(block_size=BLOCK_SIZE, vocab_size=V, n_layer=GPT_SIZES["n_layer"],
                              n_head=GPT_SIZES["n_head"], n_embd=GPT_SIZES["n_embd"]))
        rows.append(run("GPT", model, model.flops_per_token(), GPT_SIZES["batch_size"], GPT_SIZES["lr"], epochs,
                        train, val, args.device))

    if args.out:
        machine = dict(
            device=str(get_device(args.device)), cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(),
            torch=torch.__version__, python=platform.python_version(),
            loadavg_before=[round(x, 2) for x in load_before], loadavg_after=[round(x, 2) for x in os.getloadavg()],
        )
        settings = dict(block_size=BLOCK_SIZE, lstm=LSTM, gpt=GPT_SIZES, train_windows=len(train),
                        val_windows=len(val), date=datetime.date.today().isoformat(),
                        command="python benchmarks/lm_lstm_vs_gpt.py --out bigmodel_lib/results/lm_lstm_vs_gpt_cpu.json")
        with open(args.out, "w") as f:
            json.dump(dict(machine=machine, settings=settings, rows=rows), f, indent=1)
            f.write("\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
