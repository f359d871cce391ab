"""Measure how much each trained-quality claim of a chapter moves with the random seed.

For each seed offset, executes a copy of the notebook (the file in notebooks/ is only read;
it runs with cwd = notebooks/, like tools/run_notebooks.py) after a first cell that shifts
every seed by the offset:

* ``torch.manual_seed(s)`` becomes ``torch.manual_seed(s + offset)`` (``seed_everything`` and
  the notebooks call it: model initialisation, dropout, global-RNG shuffling, augmentation);
  ``np.random.seed`` and ``random.seed`` likewise;
* ``TrainConfig.seed`` (the Trainer's shuffling of the training set) and the ``seed`` of
  ``bigmodel_lib.g2p.g2p_loader`` (chapter 4's bucketed shuffling) get the offset added.

Data splits keep their own fixed generators (``load_dataset``, ``split_by_word``, the digits
test set: ``torch.Generator().manual_seed(...)`` is not shifted), and so does every other
explicit ``torch.Generator`` in a notebook (chapter 3's text sampling, chapter 4's reversal-task
batches and test sequences). Offset 0 reproduces the stored run.

Cells run with ``allow_errors=True``; cells that raise (except those tagged ``raises-exception``)
are recorded. A last cell evaluates the claims listed in CLAIMS below (the value each assert
compares and whether it holds), and the results are merged into the JSON file ``--out``.

Usage:
    python tools/seed_spread.py notebooks/04_transformer.ipynb --offsets 1 2
    python tools/seed_spread.py notebooks/01_large_models.ipynb --offsets 0 --out /tmp/s.json
"""

from __future__ import annotations

import argparse
import copy
import datetime
import hashlib
import json
import os
import pathlib
import platform
import re
import subprocess
import sys
import time

import nbformat
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parent.parent
MARK = "SEED_SPREAD_JSON "
ANSI = re.compile(r"\x1b\[[0-9;]*m")

SHIFT_CELL = """\
import functools, inspect, random
import numpy as np, torch
import bigmodel_lib.g2p, bigmodel_lib.training
OFFSET = {offset}

def _shifted(seed_fn):
    @functools.wraps(seed_fn)
    def shifted(seed=None, *args, **kwargs):
        return seed_fn(seed if seed is None else int(seed) + OFFSET, *args, **kwargs)
    return shifted

torch.manual_seed = torch.random.manual_seed = _shifted(torch.manual_seed)
np.random.seed, random.seed = _shifted(np.random.seed), _shifted(random.seed)
_post_init = bigmodel_lib.training.TrainConfig.__post_init__
def _post_init_shifted(self):
    _post_init(self)
    self.seed += OFFSET
bigmodel_lib.training.TrainConfig.__post_init__ = _post_init_shifted
_g2p_loader = bigmodel_lib.g2p.g2p_loader
@functools.wraps(_g2p_loader)
def _g2p_loader_shifted(*args, **kwargs):
    bound = inspect.signature(_g2p_loader).bind(*args, **kwargs)
    bound.apply_defaults()
    bound.arguments["seed"] += OFFSET
    return _g2p_loader(*bound.args, **bound.kwargs)
bigmodel_lib.g2p.g2p_loader = _g2p_loader_shifted
"""

# Per notebook: code run first in the dump cell, then (assert as in the notebook, the value it
# compares, the condition to check when it is not the assert's own test).
_MEAN = '(lambda f: np.array([results[f, w][1] for w in SCALE.widths]).mean(axis=1))'
_FIT = f'(lambda f: fit_power_law(np.array([results[f, w][0] for w in SCALE.widths]), {_MEAN}(f)))'
CLAIMS = {
    "01_large_models": (f"_mean, _fit = {_MEAN}, {_FIT}", [
        ("assert last < 0.6 * first  # seeds 0-2 gave 0.39-0.43 of the start", "last / first", None),
        ("assert plain_curve[-1][1] < 0.01 and plain_curve[-1][2] > 2 * plain_best      # memorised, and it hurts",
         "[plain_curve[-1][1], plain_curve[-1][2] / plain_best]", None),
        ('assert final["weight decay 0.5"] < 0.9 * final["no regulariser"]',
         'final["weight decay 0.5"] / final["no regulariser"]', None),
        ('assert final["dropout 0.5"] < 0.6 * final["no regulariser"]', 'final["dropout 0.5"] / final["no regulariser"]', None),
        # Section 1.6: means over the notebook's own seeds 0-2 (plus the offset), one value per label budget.
        ("assert loss_ratio[50] < 1 and loss_ratio[None] < 1, loss_ratio", "loss_ratio", None),
        ("assert all(abs(gain) < 0.03 for gain in accuracy_gain.values()), accuracy_gain", "accuracy_gain", None),
        ("assert mean[-1] < 0.5 * mean[0]  # all training images", "_mean(1.0)[-1] / _mean(1.0)[0]", "_v < 0.5"),
        ("assert mean[-1] < 0.5 * mean[0]  # a quarter", "_mean(0.25)[-1] / _mean(0.25)[0]", "_v < 0.5"),
        ("assert alpha > 2 * 0.076  # all training images", "_fit(1.0)[2]", "_v > 2 * 0.076"),
        ("assert alpha > 2 * 0.076  # a quarter", "_fit(0.25)[2]", "_v > 2 * 0.076"),
        ("assert fits[0.25][0] > fits[1.0][0]", "[_fit(0.25)[0], _fit(1.0)[0]]", "_v[0] > _v[1]")]),
    "02_cnn": ("", [
        ("assert sgd_epoch_loss[-1] < sgd_epoch_loss[0]", "[sgd_epoch_loss[0], sgd_epoch_loss[-1]]", None),
        ("assert sgd_epoch_loss[-1] > 0.6 * math.log(10) and sgd_accuracy < 0.75",
         "[sgd_epoch_loss[-1] / math.log(10), sgd_accuracy]", None),
        ('assert test_accuracy >= cfg.min_test_accuracy, test_accuracy', "test_accuracy", None),
        ('assert min(equivariance["fully connected"]) > 0.5', 'equivariance["fully connected"]', None),
        ("assert strided_two < 1e-6 and strided_one > 0.1", "[strided_one, strided_two]", None),
        ("assert error < 0.02 and fit_loss[-1] < 1e-4 * fit_loss[0]", "[error, fit_loss[-1] / fit_loss[0]]", None),
        ("assert min(ablation[1:]) > 0.93 and ablation[1] > ablation[0] + 0.3", "ablation", None),
        ('assert first_layer_grad["plain"] < 1e-4 * min(v for k, v in first_layer_grad.items() if k != "plain")',
         "first_layer_grad", None),
        ('assert depth_loss["plain"] > 0.95 * math.log(10)', 'depth_loss["plain"] / math.log(10)', None),
        ('assert max(depth_loss["plain + batch norm"], depth_loss["residual"]) < 0.8 * math.log(10)',
         '[depth_loss["plain + batch norm"] / math.log(10), depth_loss["residual"] / math.log(10)]', None),
        ('assert depth_loss["residual + batch norm (ResNet)"] < 0.5 * min(depth_loss["plain + batch norm"], '
         'depth_loss["residual"])', "depth_loss", None),
        ('assert depth_accuracy["residual + batch norm (ResNet)"] > 0.93', "depth_accuracy", None)]),
    "03_rnn": ("_g, _m = grad_at_init, acc_mem", [
        ("assert open_ratio > 100, open_ratio", "open_ratio", None),
        ('assert grad_at_init["LSTM, forget bias 3"][digit_rows].mean() > 100 * grad_at_init["LSTM, default init"]'
         "[digit_rows].mean()", '_g["LSTM, forget bias 3"][digit_rows].mean() / _g["LSTM, default init"][digit_rows].mean()', None),
        ('assert grad_at_init["tanh RNN"][digit_rows].mean() < 1e-3 * grad_at_init["tanh RNN"][0]',
         '_g["tanh RNN"][digit_rows].mean() / _g["tanh RNN"][0]', None),
        ('assert grad_at_init["GRU, default init"][digit_rows].mean() < 1e-3 * grad_at_init["GRU, default init"][0]',
         '_g["GRU, default init"][digit_rows].mean() / _g["GRU, default init"][0]', None),
        # The memory task: every value is the list over the notebook's own seeds 0-2 (plus the offset).
        ('assert acc_mem["LSTM, forget bias 3"].min() >= 0.7', '_m["LSTM, forget bias 3"]', None),
        ('assert acc_mem["LSTM, default init"].max() <= 0.3', '_m["LSTM, default init"]', None),
        ('assert acc_mem["GRU, default init"].min() >= 0.7', '_m["GRU, default init"]', None),
        ('assert acc_mem["tanh RNN"].mean() <= acc_mem["LSTM, forget bias 3"].mean() - 0.3',
         '[_m["tanh RNN"], _m["LSTM, forget bias 3"]]', None),
        ("assert g_open[digit_rows].mean() > 0.1 * g_open[0]", "g_open[digit_rows].mean() / g_open[0]", None),
        ("assert rnn_radius_after > 1 > rnn_radius_before", "[rnn_radius_before, rnn_radius_after]", None),
        ("assert lstm_accuracy >= 0.93, lstm_accuracy", "lstm_accuracy", None),
        ("assert acc[\"seeds' LSTM\"][0] >= acc[\"bag of rows\"][0] + 0.1", "[acc[\"seeds' LSTM\"][0], acc[\"bag of rows\"][0]]", None),
        ('assert abs(acc["bag of rows"][1] - acc["bag of rows"][0]) <= 0.01', 'list(acc["bag of rows"])', None),
        ("assert acc[\"seeds' LSTM\"][1] <= acc[\"seeds' LSTM\"][0] - 0.3", "list(acc[\"seeds' LSTM\"])", None),
        ("assert lstm_ppl < bigram_ppl < unigram_ppl", "[lstm_ppl, bigram_ppl, unigram_ppl]", None),
        ("assert lstm_ppl < 0.6 * bigram_ppl and lstm_ppl < 0.25 * unigram_ppl, lstm_ppl",
         "[lstm_ppl / bigram_ppl, lstm_ppl / unigram_ppl]", None),
        ("assert candidate_gap > 1e-3, candidate_gap", "candidate_gap", None),
        ("assert carried_ppl < fresh_ppl", "[carried_ppl, fresh_ppl]", None),
        ("assert real_word_fraction[0.5] > real_word_fraction[1.5] + 0.2", "[real_word_fraction[0.5], real_word_fraction[1.5]]", None),
        ('assert rmse["LSTM"] < 0.75 * rmse["naive (last value)"]', 'rmse["LSTM"] / rmse["naive (last value)"]', None),
        ('assert rmse["linear AR(20)"] < 0.75 * rmse["naive (last value)"]', 'rmse["linear AR(20)"] / rmse["naive (last value)"]', None),
        ('assert abs(rmse["LSTM"] / rmse["linear AR(20)"] - 1) < 0.15', 'rmse["LSTM"] / rmse["linear AR(20)"]', None),
        ("assert (published - alone)[short].abs().max() > 0.1", "(published - alone)[short].abs().max()", None),
        ("assert plain[MAX_DIGITS] >= plain[4] + 0.5", "[plain[4], plain[MAX_DIGITS]]", None),
        ('assert mean_error["with attention"] <= mean_error["without attention"] - 0.4',
         '[mean_error["with attention"], mean_error["without attention"], attended[MAX_DIGITS]]', None),
        ("assert published_changed > 0.25", "published_changed", None)]),
    "04_transformer": ("", [
        ("assert difference > 0.05", "difference", None),
        ("assert g2p_history.val_loss[-1] < 0.15 * math.log(len(phonemes))", "g2p_history.val_loss[-1] / math.log(len(phonemes))", None),
        ("assert g2p_wer < 0.44, g2p_wer", "g2p_wer", None),
        ("assert g2p_per < 0.12, g2p_per", "g2p_per", None),
        ("assert at_least_as_likely >= 0.97", "at_least_as_likely", None),
        ("assert len(differ) < 0.2 * len(subset)", "len(differ) / len(subset)", None),
        ("assert beam_wer <= greedy_subset_wer + 0.02", "[beam_wer, greedy_subset_wer]", None),
        ("assert monotone > 0.9", "monotone", None),
        ('assert min(a / b for a, b in zip(post["at_init"], pre["at_init"])) > 1.3',
         'min(a / b for a, b in zip(post["at_init"], pre["at_init"]))', None),
        ('assert final["post-norm, lr 1e-2"] > unigram_entropy - 0.05 and max(post["after"][:4]) < 1e-3',
         '[final["post-norm, lr 1e-2"] - unigram_entropy, max(post["after"][:4])]', None),
        ('assert final["pre-norm, lr 1e-2"] < 2.7 and min(pre["after"]) > 0.01',
         '[final["pre-norm, lr 1e-2"], min(pre["after"])]', None),
        ('assert final["post-norm, lr 1e-3"] < 2.8 and min(post_slow["after"]) > 0.05',
         '[final["post-norm, lr 1e-3"], min(post_slow["after"])]', None),
        ("assert gpt_loss < bigram_loss - 0.3, (gpt_loss, bigram_loss)", "[gpt_loss, bigram_loss]", None),
        ('assert counts == {"000": (9, 3), "001": (12, 3)}', "counts", None),
        ("assert sum(losses000[-20:]) / 20 < 0.5 * losses000[0] and sum(losses001[-20:]) / 20 < 0.1 * losses001[0]",
         "[sum(losses000[-20:]) / 20 / losses000[0], sum(losses001[-20:]) / 20 / losses001[0]]", None),
        ("assert acc000 > 0.9 and acc001 > 0.95", "[acc000, acc001]", None)]),
}

DUMP_CELL = """\
import ast as _ast, json as _json
def _plain(v):
    v = v.tolist() if hasattr(v, "tolist") else v
    return {{str(k): _plain(x) for k, x in v.items()}} if isinstance(v, dict) else [_plain(x) for x in v] if isinstance(v, (list, tuple)) else v
_out = {{}}
try:
    exec({prelude!r})
except Exception as e:
    _out["prelude error"] = repr(e)
for _label, _value, _check in {claims!r}:
    try:
        _v = eval(_value)
        _holds = eval(_check or _ast.unparse(_ast.parse(_label.split("  #")[0]).body[0].test))
        _out[_label] = {{"value": _plain(_v), "holds": bool(_holds)}}
    except Exception as e:
        _out[_label] = {{"error": repr(e)}}
print({mark!r} + _json.dumps(_out))
"""


def run_offset(nb, name: str, offset: int, timeout: int) -> dict:
    nb = copy.deepcopy(nb)
    prelude, claims = CLAIMS[name]
    nb.cells.insert(0, nbformat.v4.new_code_cell(SHIFT_CELL.format(offset=offset)))
    nb.cells.append(nbformat.v4.new_code_cell(DUMP_CELL.format(prelude=prelude, claims=claims, mark=MARK)))
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(ROOT / "notebooks")}}, record_timing=False)
    start, load, failure = time.perf_counter(), os.getloadavg(), None
    try:
        client.execute()
    except Exception as exc:  # a timeout or a dead kernel stops the run; keep what was recorded
        failure = f"{type(exc).__name__}: {exc}"[:500]
    raised, dump = [], {}
    for index, cell in enumerate(nb.cells[1:-1]):
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if out.output_type == "error" and "raises-exception" not in cell.metadata.get("tags", []):
                lines = [ANSI.sub("", line) for line in "\n".join(out.traceback).splitlines()]
                where = [line.strip() for line in lines if re.match(r"\s*-+> ", line)]  # the line that raised
                raised.append({"cell": index, "error": f"{out.ename}: {out.evalue}"[:300], "line": where[:1]})
    for out in nb.cells[-1].get("outputs", []):
        if out.output_type == "stream" and MARK in out.text:
            dump = json.loads(out.text.split(MARK, 1)[1])
    return {"wall_s": round(time.perf_counter() - start, 1), "loadavg_at_start": [round(x, 2) for x in load],
            "date": datetime.datetime.now().isoformat(timespec="seconds"), "raised_cells": raised,
            "stopped": failure, "claims": dump}


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=pathlib.Path, help=f"one of notebooks/{{{','.join(CLAIMS)}}}.ipynb")
    parser.add_argument("--offsets", type=int, nargs="+", default=[1, 2], help="seed offsets to run (0: as stored)")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "benchmarks/results/seed_spread_cpu.json")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds allowed per cell")
    args = parser.parse_args(argv)
    name = args.notebook.stem
    if name not in CLAIMS:
        parser.error(f"no claims listed for {name!r}; expected one of {sorted(CLAIMS)}")
    import torch  # the kernel's torch: this script runs in the same environment

    source = args.notebook.read_bytes()  # read once, so every offset runs the same version
    edited = bool(git("status", "--porcelain", "--", str(args.notebook.resolve())))
    nb = nbformat.reads(source.decode(), as_version=4)
    result = json.loads(args.out.read_text()) if args.out.exists() else {}
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if pathlib.Path("/proc/cpuinfo").exists() else platform.processor()
    result.update(torch=torch.__version__, python=platform.python_version(),
                  machine=f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} logical cores, "
                          f"{torch.get_num_threads()} torch threads, no GPU used" if not torch.cuda.is_available()
                  else torch.cuda.get_device_name(0),
                  date=datetime.date.today().isoformat())
    entry = result.setdefault("notebooks", {}).setdefault(name, {"runs": {}, "claims": {}})
    for offset in args.offsets:
        print(f"{name}: seed offset {offset} ...", flush=True)
        # The library as the kernel will import it, and the notebook as read above.
        state = dict(notebook_sha256=hashlib.sha256(source).hexdigest()[:16], notebook_uncommitted=edited,
                     git_head=git("rev-parse", "HEAD")[:12],
                     uncommitted_library=git("status", "--porcelain", "--", "bigmodel_lib").splitlines())
        run = {**run_offset(nb, name, offset, args.timeout), **state}
        claims = run.pop("claims")
        entry["runs"][str(offset)] = run
        for label, value in claims.items():
            entry["claims"].setdefault(label, {})[str(offset)] = value
        failed = [label for label, v in claims.items() if not v.get("holds", False)]
        print(f"  {run['wall_s']:.0f} s; cells raised: {[r['cell'] for r in run['raised_cells']]}; "
              f"claims not holding: {failed}; stopped: {run['stopped']}", flush=True)
        offsets = sorted({int(o) for nb_entry in result["notebooks"].values() for o in nb_entry["runs"]})
        result["offsets"] = offsets
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")  # after every offset
    return 0


if __name__ == "__main__":
    sys.exit(main())
