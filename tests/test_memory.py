"""Tests for bigmodel_lib.memory (chapter 1, section 1.4): counting and measuring tensor memory."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bigmodel_lib.memory import (
    TensorMemoryTracker,
    measure_peak_memory,
    saved_tensor_bytes,
    tensor_bytes,
    training_state,
)


def test_tensor_bytes_counts_shared_storage_once():
    x = torch.zeros(10, 20)  # 800 bytes
    assert tensor_bytes([x]) == 800
    assert tensor_bytes([x, x.t(), x.view(200), x[0]]) == 800  # views share the storage
    assert tensor_bytes([x, torch.zeros(5, dtype=torch.float64)]) == 840
    emb = nn.Embedding(7, 3)
    head = nn.Linear(3, 7, bias=False)
    head.weight = emb.weight  # tied weights
    assert tensor_bytes([emb.weight, head.weight]) == 7 * 3 * 4
    assert tensor_bytes([torch.empty(3, device="meta")]) == 0
    with pytest.raises(ValueError, match="expected tensors"):
        tensor_bytes([1.0])


def test_tracker_sees_allocations_and_frees_but_not_views_or_in_place():
    with TensorMemoryTracker() as tracker:
        a = torch.ones(1000)  # 4000 bytes
        b = a.view(10, 100)  # a view: no new memory
        a.mul_(2)  # in place: no new memory
        assert tracker.current_bytes == 4000
        del a, b
        assert tracker.current_bytes == 0
        c = torch.ones(500)  # 2000 bytes, after the first was freed
        assert tracker.current_bytes == 2000
    assert tracker.peak_bytes == 4000
    del c


def test_tracker_follows_held_tensors_until_they_are_freed():
    held = [torch.zeros(250)]  # 1000 bytes
    tracker = TensorMemoryTracker(held)
    assert tracker.current_bytes == tracker.peak_bytes == 1000
    with tracker:
        held.clear()  # the last reference goes away
        assert tracker.current_bytes == 0
        x = torch.zeros(100)
    assert tracker.current_bytes == 400 and tracker.peak_bytes == 1000
    del x


def test_training_state_lists_parameters_gradients_and_adam_moments():
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    opt = torch.optim.Adam(model.parameters())
    state = training_state(model, opt)
    assert len(state["parameters"]) == 4 and state["gradients"] == [] and state["optimizer state"] == []
    assert len(state["buffers"]) == 3  # running mean, running var, batches seen
    model(torch.randn(5, 4)).sum().backward()
    opt.step()
    state = training_state(model, opt)
    n = sum(p.numel() for p in model.parameters())
    assert tensor_bytes(state["gradients"]) == 4 * n
    moments = [t for t in state["optimizer state"] if t.dim() > 0]  # step counters are scalars
    assert tensor_bytes(moments) == 2 * 4 * n  # Adam: exp_avg and exp_avg_sq


def test_saved_tensor_bytes_of_an_mlp_is_its_layer_inputs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    x = torch.randn(5, 8)
    out, saved = saved_tensor_bytes(lambda: model(x), exclude=model.parameters())
    assert out.shape == (5, 4)
    # Linear 1 saves x; ReLU saves its output, which is also what Linear 2 saves.
    assert saved == 4 * 5 * (8 + 16)
    _, with_weights = saved_tensor_bytes(lambda: model(x))
    # Not excluded, the second layer's weight (16 x 4) counts too; the first layer's is not saved
    # at all: it is needed only for the gradient with respect to x, which does not require one.
    assert with_weights == saved + 4 * 16 * 4
    with torch.no_grad():
        _, nothing = saved_tensor_bytes(lambda: model(x))
    assert nothing == 0  # without autograd nothing is kept


def _mlp_step(device):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(128, 32, device=device)
    y = torch.randint(0, 10, (128,), device=device)

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # creates the gradients and Adam's state
    return model, opt, x, y, step


def test_measure_peak_memory_of_a_training_step_matches_the_formula():
    model, opt, x, y, step = _mlp_step("cpu")
    n = sum(p.numel() for p in model.parameters())
    activations = 4 * 128 * (32 + 256 + 256 + 10)  # inputs of the linear layers and the log-softmax
    state = training_state(model, opt)
    held = itertools.chain(*state.values(), (x, y))
    del state
    m = measure_peak_memory(step, held, device="cpu")
    assert m.method == "tensor tracker"
    assert m.held_bytes >= 16 * n  # parameters, gradients and two moments
    predicted = 16 * n + activations
    # Above the formula by transient buffers: a layer's output before its ReLU, Adam's temporaries.
    assert predicted <= m.peak_bytes <= 1.25 * predicted, (predicted, m.peak_bytes)


def test_measure_peak_memory_of_inference_holds_no_activations():
    model, opt, x, y, step = _mlp_step("cpu")
    params = list(model.parameters())

    def infer():
        with torch.inference_mode():
            model(x)

    m = measure_peak_memory(infer, params, device="cpu")
    # Parameters plus at most a few (B, 256) activations in flight at once.
    assert tensor_bytes(params) < m.peak_bytes <= tensor_bytes(params) + 3 * 4 * 128 * 256


@pytest.mark.cuda
def test_tracker_agrees_with_the_cuda_allocator():
    model, opt, x, y, step = _mlp_step("cuda")
    state = training_state(model, opt)
    by_allocator = measure_peak_memory(step, itertools.chain(*state.values(), (x, y)), device="cuda")
    tracker = TensorMemoryTracker(itertools.chain(*state.values(), (x, y)))
    del state
    with tracker:
        step()
    torch.cuda.synchronize()
    assert by_allocator.method == "CUDA allocator"
    # The allocator rounds every block up to 512 bytes and cuBLAS may take a workspace.
    assert abs(tracker.peak_bytes - by_allocator.peak_bytes) <= 0.05 * by_allocator.peak_bytes, (
        tracker.peak_bytes,
        by_allocator.peak_bytes,
    )
