"""Distillation loss and magnitude pruning against PyTorch's own functions (bigmodel_lib.compression, §8.2)."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import prune
from torch.testing import assert_close

from bigmodel_lib.compression import (
    distillation_loss,
    global_magnitude_masks,
    magnitude_mask,
    shrink_linear_pair,
    sparse_bytes,
)


@pytest.mark.parametrize("temperature, alpha", [(1.0, 0.5), (4.0, 0.9), (8.0, 1.0), (2.0, 0.0)])
def test_distillation_loss_equals_kl_div_and_cross_entropy(temperature, alpha):
    g = torch.Generator().manual_seed(0)
    student, teacher = 3 * torch.randn(16, 10, generator=g), 3 * torch.randn(16, 10, generator=g)
    targets = torch.randint(0, 10, (16,), generator=g)
    # the formula by hand: KL(p_t || p_s) = sum p_t (log p_t - log p_s), averaged over the batch
    p_t = torch.softmax(teacher / temperature, dim=1)
    kl = (p_t * (p_t.log() - torch.log_softmax(student / temperature, dim=1))).sum(1).mean()
    expected = alpha * temperature**2 * kl + (1 - alpha) * F.cross_entropy(student, targets)
    assert_close(distillation_loss(student, teacher, targets, temperature, alpha), expected)
    reference = (alpha * temperature**2 * F.kl_div(F.log_softmax(student / temperature, 1),
                                                   F.softmax(teacher / temperature, 1), reduction="batchmean")
                 + (1 - alpha) * F.cross_entropy(student, targets))
    assert_close(distillation_loss(student, teacher, targets, temperature, alpha), reference)


def test_distillation_loss_is_zero_soft_term_when_student_equals_teacher_and_no_grad_to_teacher():
    logits = torch.randn(4, 5)
    teacher = logits.clone().requires_grad_()
    student = logits.clone().requires_grad_()
    loss = distillation_loss(student, teacher, torch.zeros(4, dtype=torch.long), 3.0, alpha=1.0)
    assert_close(loss, torch.tensor(0.0), atol=1e-6, rtol=0)
    distillation_loss(student, teacher, torch.zeros(4, dtype=torch.long), 3.0, alpha=0.5).backward()
    assert teacher.grad is None and student.grad is not None


@pytest.mark.parametrize("amount", [0.0, 0.3, 0.5, 0.9, 0.95, 1.0])
def test_magnitude_mask_equals_l1_unstructured(amount):
    torch.manual_seed(0)
    layer = nn.Linear(40, 30)
    ours = magnitude_mask(layer.weight, amount)
    prune.l1_unstructured(layer, "weight", amount=amount)
    assert_close(ours, layer.weight_mask)
    assert int((ours == 0).sum()) == round(amount * 1200)


def test_global_masks_equal_global_unstructured():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(30, 20), nn.ReLU(), nn.Linear(20, 10))
    model[2].weight.data *= 3  # a layer of larger weights keeps more of them under one global threshold
    ours = global_magnitude_masks([model[0].weight, model[2].weight], 0.8)
    prune.global_unstructured([(model[0], "weight"), (model[2], "weight")], prune.L1Unstructured, amount=0.8)
    assert_close(ours[0], model[0].weight_mask)
    assert_close(ours[1], model[2].weight_mask)
    assert ours[1].mean() > ours[0].mean()


def test_sparse_bytes_counts_csr_tensors():
    w = torch.zeros(8, 10)
    w[0, 1], w[3, 4], w[7, 9] = 1.0, -2.0, 0.5
    assert sparse_bytes(w) == 3 * 4 + 3 * 8 + 9 * 8
    assert sparse_bytes(w, torch.int32) == 3 * 4 + 3 * 4 + 9 * 4
    dense = torch.randn(100, 100)
    assert sparse_bytes(dense) > dense.numel() * dense.element_size()  # no zeros: CSR costs three times more


def test_shrink_linear_pair_equals_structured_pruned_pair():
    torch.manual_seed(2)
    first, second = nn.Linear(12, 16), nn.Linear(16, 3)
    prune.ln_structured(first, "weight", amount=0.75, n=2, dim=0)
    keep = first.weight_mask.any(dim=1).nonzero().squeeze(1)
    assert keep.numel() == 4
    small_first, small_second = shrink_linear_pair(first, second, keep)
    x = torch.randn(5, 12)
    with torch.no_grad():
        assert_close(small_second(torch.relu(small_first(x))), second(torch.relu(first(x))))
    assert small_first.weight.shape == (4, 12) and small_second.weight.shape == (3, 4)


def test_shrink_linear_pair_after_training_with_the_mask():
    torch.manual_seed(3)
    first, second = nn.Linear(12, 16), nn.Linear(16, 3)
    prune.ln_structured(first, "weight", amount=0.5, n=2, dim=0)
    optimizer = torch.optim.Adam([*first.parameters(), *second.parameters()], lr=0.1)
    x = torch.randn(5, 12)
    second(torch.relu(first(x))).square().mean().backward()
    optimizer.step()  # first.weight is now stale until the next forward pass
    keep = first.weight_mask.any(dim=1).nonzero().squeeze(1)
    small_first, small_second = shrink_linear_pair(first, second, keep)
    with torch.no_grad():
        assert_close(small_second(torch.relu(small_first(x))), second(torch.relu(first(x))))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="same shape|one shape"):
        distillation_loss(torch.randn(4, 3), torch.randn(4, 5), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="integer class"):
        distillation_loss(torch.randn(4, 3), torch.randn(4, 3), torch.zeros(4))
    with pytest.raises(ValueError, match="temperature"):
        distillation_loss(torch.randn(4, 3), torch.randn(4, 3), torch.zeros(4, dtype=torch.long), temperature=0)
    with pytest.raises(ValueError, match="alpha"):
        distillation_loss(torch.randn(4, 3), torch.randn(4, 3), torch.zeros(4, dtype=torch.long), alpha=1.5)
    with pytest.raises(ValueError, match="amount"):
        magnitude_mask(torch.randn(3, 3), 1.2)
    with pytest.raises(TypeError, match="floating-point"):
        magnitude_mask(torch.ones(3, 3, dtype=torch.long), 0.5)
    with pytest.raises(TypeError, match="list"):
        global_magnitude_masks([], 0.5)
    with pytest.raises(ValueError, match="2-D"):
        sparse_bytes(torch.randn(3, 3, 3))
    with pytest.raises(ValueError, match="keep"):
        shrink_linear_pair(nn.Linear(4, 6), nn.Linear(6, 2), torch.tensor([0, 6]))
    with pytest.raises(ValueError, match="in_features"):
        shrink_linear_pair(nn.Linear(4, 6), nn.Linear(5, 2), torch.tensor([0]))
