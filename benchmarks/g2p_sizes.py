"""How big a spelling-to-pronunciation Transformer can a CPU train, and what word error does it reach?

Trains the encoder-decoder of chapter 4, section 4.5 on CMUdict (the
notebook's data, split and training engine) at one or more sizes and prints,
per size: parameters, training seconds, words per second, and the greedy word
and phoneme error rates on every third validation word (2,082 words; the test
words stay untouched, as in the notebook). This is how the notebook's CPU
configuration was chosen; it is slow (1-3 minutes per size on a 2-core CPU)
and not a test. With ``--out`` it also writes the rows as JSON; the notebook
shows ``bigmodel_lib/results/g2p_sizes_cpu.json``, written this way on the
2-core CPU machine that runs the book's tests. Run it by hand:

    python benchmarks/g2p_sizes.py                                     # the notebook's CPU configuration
    python benchmarks/g2p_sizes.py --sizes 96:2:2:2:1 96:3:2:2:2 128:2:2:2:2
    python benchmarks/g2p_sizes.py --sizes 96:2:2:4:1 96:2:2:2:1 128:2:2:2:1 96:2:2:2:2 96:2:2:2:3 \\
        128:2:2:2:2 96:4:2:2:2 96:3:2:2:2 96:3:2:2:3 --out bigmodel_lib/results/g2p_sizes_cpu.json
    python benchmarks/g2p_sizes.py --sizes 256:2:2:4:50 --batch-size 512 --lr 1.5e-3 --dropout 0.1   # the GPU config

A size is ``d_model:encoder_layers:decoder_layers:ff_multiple:epochs``.
Chapter 4, section 4.5 (choosing the model's size).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform

import torch

from bigmodel_lib import Stopwatch, TrainConfig, Trainer, get_device, seed_everything
from bigmodel_lib.g2p import (
    G2PDataset,
    SymbolVocab,
    closest_references,
    g2p_loader,
    load_cmudict,
    pronounce,
    split_by_word,
)
from bigmodel_lib.metrics import sequence_error_rate, token_error_rate
from bigmodel_lib.models.transformer import Seq2SeqConfig, Seq2SeqTransformer


def parse_size(text: str) -> tuple[int, int, int, int, int]:
    try:
        d_model, enc, dec, ff, epochs = (int(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a size d_model:encoder_layers:decoder_layers:ff_multiple:epochs such as 96:3:2:2:2, got {text!r}"
        ) from None
    return d_model, enc, dec, ff, epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=parse_size, nargs="+", default=[parse_size("96:3:2:2:2")])
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--device", default=None, help="cpu, cuda or mps (default: the best available)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads on CPU (default: torch's choice)")
    parser.add_argument("--out", default=None, help="also write the results as JSON to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    cmu = load_cmudict(stress=False)
    train_words, val_words, _ = split_by_word(cmu, fractions=(0.9, 0.05, 0.05), seed=0)
    letters = SymbolVocab(ch for word in cmu for ch in word)
    phonemes = SymbolVocab(p for prons in cmu.values() for pron in prons for p in pron)
    train = G2PDataset(cmu, train_words, letters, phonemes)  # the validation words are scored by decoding them
    scored = val_words[::3]
    references = [cmu[w] for w in scored]

    print(f"{'d_model':>7} {'enc':>3} {'dec':>3} {'d_ff':>5} {'epochs':>6} {'params':>9} {'train s':>8} "
          f"{'words/s':>8} {'val WER':>8} {'val PER':>8}")
    rows = []
    for d_model, enc, dec, ff, epochs in args.sizes:
        seed_everything(0)
        config = Seq2SeqConfig(
            src_vocab_size=len(letters), tgt_vocab_size=len(phonemes), d_model=d_model, num_heads=args.heads,
            num_encoder_layers=enc, num_decoder_layers=dec, d_ff=ff * d_model, dropout=args.dropout, max_len=32,
        )
        model = Seq2SeqTransformer(config)
        trainer = Trainer(
            model,
            TrainConfig(epochs=epochs, batch_size=args.batch_size, lr=args.lr, device=args.device, progress=False),
            metric=None,  # the default loss: cross-entropy of the logits, padded targets (-100) skipped
        )
        with Stopwatch(trainer.device) as watch:
            trainer.fit(g2p_loader(train, args.batch_size, shuffle=True))
        seconds = watch.seconds
        outputs = pronounce(model, scored, letters, phonemes)
        closest = closest_references(outputs, references)
        params = sum(p.numel() for p in model.parameters())
        wer, per = sequence_error_rate(outputs, closest), token_error_rate(outputs, closest)
        print(f"{d_model:>7} {enc:>3} {dec:>3} {ff * d_model:>5} {epochs:>6} {params:>9,} {seconds:>8.0f} "
              f"{epochs * len(train) / seconds:>8,.0f} {wer:>8.1%} {per:>8.1%}", flush=True)
        rows.append(dict(d_model=d_model, encoder_layers=enc, decoder_layers=dec, d_ff=ff * d_model, epochs=epochs,
                         parameters=params, train_seconds=round(seconds, 1), val_wer=round(wer, 4),
                         val_per=round(per, 4)))

    if args.out:
        machine = dict(
            device=str(get_device(args.device)), cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(),
            torch=torch.__version__, python=platform.python_version(), processor=platform.processor() or platform.machine(),
        )
        settings = dict(heads=args.heads, batch_size=args.batch_size, lr=args.lr, dropout=args.dropout,
                        scored_words=len(scored), date=datetime.date.today().isoformat())
        with open(args.out, "w") as f:
            json.dump(dict(machine=machine, settings=settings, rows=rows), f, indent=1)
            f.write("\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
