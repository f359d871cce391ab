"""benchmarks/image_constraints.py (chapter 7, §7.6) on a tiny run: the schema, int8 sizes, the shipped-run check."""

import json

import pytest
from conftest import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("image_constraints")


def test_kept_learning_rates_cover_the_families(bench):
    lrs = bench.kept_learning_rates()
    assert set(lrs) == set(bench.fam.DEFAULT_FAMILIES)
    assert all(lr in bench.fam.ImageConfig().learning_rates for lr in lrs.values())


def test_tiny_run(bench, tmp_path, one_thread):
    out = tmp_path / "constraints.json"
    assert bench.main(["--families", "mlp", "lstm", "--sizes", "6000", "--epochs", "1", "--threads", "1",
                       "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["settings"]["epochs"] == 1 and result["settings"]["sizes"] == [6000]
    assert [r["family"] for r in result["rows"]] == ["mlp", "lstm"]
    for r in result["rows"]:
        assert abs(r["parameters"] - 6000) < 0.1 * 6000  # one unit of the MLP is 795 weights
        assert r["int8"]["bytes"] < 0.6 * r["fp32"]["bytes"]  # 1-byte weights; biases and the file's structure stay
        assert 0 <= r["int8"]["test_accuracy"] <= 1 and abs(r["int8"]["test_accuracy"] - r["fp32"]["test_accuracy"]) < 0.1
        assert r["fp32"]["batch1_ms"] > 0 and r["int8"]["batch_large_ms"] > 0
    bench.fam.CONFIG = bench.fam.ImageConfig()  # main changed the module's configuration


def test_check_against_shipped_fails_on_a_different_run(bench):
    shipped = {"family": "mlp", "target": 50_000, "parameters": 50095}
    bench.check_against_shipped([{**shipped, "validation_accuracy": 0.926}])  # image_families' seed-0 MLP
    with pytest.raises(RuntimeError, match="differs from image_families"):
        bench.check_against_shipped([{**shipped, "validation_accuracy": 0.5}])
