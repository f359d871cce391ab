"""The benchmark results the notebooks load: their FLOP counts and shapes are checked here.

``benchmarks/lm_lstm_vs_gpt.py`` counts an LSTM language model's training FLOPs
by formula, because ``torch.utils.flop_counter`` does not see inside
``nn.LSTM``'s fused kernel; the formula is checked against the counter run on
the from-scratch LSTM of section 3.2, whose gates are plain matrix products.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
from importlib.resources import files

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from bigmodel_lib.models.gpt import GPT, GPTConfig
from bigmodel_lib.models.rnn import LSTM

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _benchmark_module(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_lstm_flop_formula_matches_the_flop_counter_on_the_from_scratch_lstm():
    bench = _benchmark_module("lm_lstm_vs_gpt")
    B, T, E, H, V = 3, 5, 8, 16, 11
    lstm, head = LSTM(E, H, batch_first=True), nn.Linear(H, V)
    x = torch.randn(B, T, E, requires_grad=True)  # the embeddings, which train too
    with FlopCounterMode(display=False) as counter:
        out, _ = lstm(x)
        head(out).sum().backward()
    # The formula counts the weights' matrix products, 6 per weight per token (the biases are additions).
    # Exactly one product is skipped: at t = 0 the initial state h_0 = 0 needs no gradient, so the
    # backward pass of h_0 W_hh^T computes only the weight's gradient (2 * 4H * H FLOPs per sequence fewer).
    assert counter.get_total_flops() == bench.lstm_flops_per_token(V, E, H) * B * T - 2 * 4 * H * H * B


def test_the_shipped_lstm_vs_gpt_results_are_consistent():
    bench = _benchmark_module("lm_lstm_vs_gpt")
    data = json.loads(files("bigmodel_lib").joinpath("results/lm_lstm_vs_gpt_cpu.json").read_text())
    settings = data["settings"]
    assert settings["lstm"] == bench.LSTM and settings["gpt"] == bench.GPT_SIZES
    V = 103  # the characters of Python 3.11's pydoc topics, as the notebooks print
    for row in data["rows"]:
        assert row["tokens"] == row["epochs"] * settings["train_windows"] * settings["block_size"]
        assert row["train_flops"] == row["flops_per_token"] * row["tokens"]
        assert row["val_loss"] == row["val_loss_per_epoch"][-1] and len(row["val_loss_per_epoch"]) == row["epochs"]
        if row["model"] == "LSTM":
            lstm = settings["lstm"]
            assert row["flops_per_token"] == bench.lstm_flops_per_token(V, lstm["embedding_dim"], lstm["hidden_size"])
        else:
            gpt = GPT(GPTConfig(block_size=settings["block_size"], vocab_size=V, n_layer=settings["gpt"]["n_layer"],
                                n_head=settings["gpt"]["n_head"], n_embd=settings["gpt"]["n_embd"]))
            assert row["flops_per_token"] == gpt.flops_per_token()
