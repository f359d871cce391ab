"""Tests for bigmodel_lib.devices (preface, chapter 1): device choice, precision, seeding, data movement."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import pytest
import torch

import bigmodel_lib
from bigmodel_lib import environment_report, get_device, seed_everything
from bigmodel_lib.devices import (
    DEVICE_ENV_VAR,
    autocast,
    dataloader_kwargs,
    grad_scaler,
    move_to_device,
    resolve_precision,
)

needs_no_gpu = pytest.mark.skipif(
    torch.cuda.is_available() or torch.backends.mps.is_available(), reason="checks the CPU fallback"
)


@needs_no_gpu
def test_cpu_is_chosen_when_there_is_no_accelerator(monkeypatch):
    monkeypatch.delenv(DEVICE_ENV_VAR, raising=False)
    assert get_device() == torch.device("cpu")


def test_environment_variable_overrides_and_argument_overrides_it(monkeypatch):
    monkeypatch.setenv(DEVICE_ENV_VAR, "cpu")
    assert get_device() == torch.device("cpu")
    assert get_device("cpu") == torch.device("cpu")
    monkeypatch.setenv(DEVICE_ENV_VAR, "")  # empty means unset
    assert get_device("cpu") == torch.device("cpu")
    assert get_device(torch.device("cpu")) == torch.device("cpu")


def test_environment_report_names_versions_device_and_precision():
    report = environment_report("cpu")
    for word in ("bigmodel_lib", "python", "torch", torch.__version__, "torchvision", "numpy", "device", "cpu:",
                 "precision    fp32"):
        assert word in report, word
    assert f"bigmodel_lib {bigmodel_lib.__version__}" in report  # the installed library's own version
    assert report.splitlines()[0] == f"bigmodel_lib {bigmodel_lib.__version__}"


def test_precision_defaults_to_fp32_on_cpu_and_bf16_when_asked():
    assert resolve_precision("cpu") == "fp32"
    assert resolve_precision("cpu", "bf16") == "bf16"
    assert resolve_precision("cpu", "fp32") == "fp32"


def test_autocast_on_cpu():
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    assert isinstance(autocast("cpu", "fp32"), contextlib.nullcontext)
    with autocast("cpu", "fp32"):
        assert (a @ b).dtype == torch.float32
    with autocast("cpu", "bf16"):
        assert (a @ b).dtype == torch.bfloat16


def test_grad_scaler_is_disabled_off_fp16():
    scaler = grad_scaler("cpu", "fp32")
    assert not scaler.is_enabled()
    loss = torch.tensor(2.0, requires_grad=True)
    assert scaler.scale(loss) is loss  # a disabled scaler passes everything through


def test_seed_everything_repeats_python_numpy_and_torch():
    seed_everything(42)
    first = (random.random(), np.random.rand(), torch.rand(3))
    seed_everything(42)
    second = (random.random(), np.random.rand(), torch.rand(3))
    assert first[0] == second[0] and first[1] == second[1] and torch.equal(first[2], second[2])
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    seed_everything(42, deterministic=False)
    assert not torch.are_deterministic_algorithms_enabled()
    seed_everything(0)  # leave the process as the other tests expect it


def test_dataloader_kwargs_on_cpu():
    assert dataloader_kwargs("cpu") == {"pin_memory": False, "num_workers": 0}


def test_move_to_device_walks_nested_batches():
    batch = {"x": torch.ones(2), "pair": (torch.zeros(1), [torch.ones(1)])}
    moved = move_to_device(batch, "cpu")
    assert moved["x"].device.type == "cpu"
    assert isinstance(moved["pair"], tuple) and isinstance(moved["pair"][1], list)


@pytest.mark.cuda
def test_cuda_is_chosen_first_and_reported(monkeypatch):
    monkeypatch.delenv(DEVICE_ENV_VAR, raising=False)
    assert get_device().type == "cuda"
    report = environment_report()
    assert "device       cuda:" in report and "GiB" in report and "compute capability" in report


@pytest.mark.cuda
def test_cuda_precision_scaler_and_data_movement():
    expected = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    assert resolve_precision("cuda") == expected
    assert grad_scaler("cuda", "fp16").is_enabled()
    assert not grad_scaler("cuda", "bf16").is_enabled() or not torch.cuda.is_bf16_supported()
    a = torch.randn(8, 8, device="cuda")
    with autocast("cuda", expected):
        assert (a @ a).dtype == (torch.bfloat16 if expected == "bf16" else torch.float16)
    assert dataloader_kwargs("cuda")["pin_memory"] is True
    moved = move_to_device((torch.ones(3).pin_memory(), torch.zeros(2)), "cuda")
    torch.cuda.synchronize()
    assert all(t.device.type == "cuda" for t in moved)
