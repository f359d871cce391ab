"""The shipped results of ``benchmarks/minilm_probe.py``: consistent with the script, and what they show."""

from __future__ import annotations

import importlib.util
import json
import pathlib
from importlib.resources import files

REPO = pathlib.Path(__file__).resolve().parent.parent


def _script():
    spec = importlib.util.spec_from_file_location("minilm_probe", REPO / "benchmarks" / "minilm_probe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _data() -> dict:
    return json.loads(files("bigmodel_lib").joinpath("results/minilm_probe_cpu.json").read_text())


def test_the_shipped_probe_results_are_consistent_with_the_script():
    script, data = _script(), _data()
    assert data["settings"]["C_grid"] == list(script.C_GRID) and data["settings"]["limit"] is None
    assert data["settings"]["sizes"] == {"train": 27_838, "val": 3_479, "test": 3_479}
    n = data["settings"]["sizes"]["test"]
    for row in data["rows"]:
        low, high = row["ci95"]
        assert (low, high) == script.wilson(round(row["test_accuracy"] * n), n)
        assert low < row["test_accuracy"] < high
        if "chosen_C" in row:  # chosen on validation accuracy, inside the grid (not at an edge)
            by_c = {float(c): acc for c, acc in row["val_accuracy_by_C"].items()}
            assert by_c[row["chosen_C"]] == max(by_c.values())
            assert min(script.C_GRID) < row["chosen_C"] < max(script.C_GRID)


def test_every_classifier_beats_the_majority_class_far_outside_the_intervals():
    rows = {row["method"]: row for row in _data()["rows"]}
    majority = rows.pop("majority class")
    assert len(rows) == 3
    for row in rows.values():  # measured: 0.744 to 0.766 against 0.430
        assert row["ci95"][0] > majority["ci95"][1] + 0.25
