"""Section 8.4: integrated gradients against Captum, completeness, occlusion, attention rollout, probes."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torch.testing import assert_close

from bigmodel_lib.attribution import (
    attention_rollout,
    integrated_gradients,
    linear_probe,
    occlusion_effects,
    record_outputs,
)


def small_net(seed: int = 0, out: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, out)).double()


def test_integrated_gradients_matches_captum_riemann_right():
    captum_attr = pytest.importorskip("captum.attr")
    net = small_net()
    x = torch.randn(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    base = torch.full_like(x, 0.3)
    target = torch.tensor([0, 2, 1, 2])
    ours, delta = integrated_gradients(net, x, base, target=target, steps=16, steps_per_batch=5, return_delta=True)
    theirs, their_delta = captum_attr.IntegratedGradients(net).attribute(
        x, base, target=target, n_steps=16, method="riemann_right", return_convergence_delta=True)
    assert_close(ours, theirs)
    assert_close(delta, their_delta)
    assert all(p.grad is None for p in net.parameters())


def test_completeness_error_shrinks_with_steps():
    net = small_net(out=1)
    forward = lambda t: net(t).squeeze(1)  # noqa: E731  (N,) scores: no target
    x = torch.randn(3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 2
    gaps = [integrated_gradients(forward, x, steps=m, return_delta=True)[1].abs().max().item() for m in (4, 16, 64)]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 0.3 * gaps[0]
    attributions = integrated_gradients(forward, x, steps=512)
    assert_close(attributions.sum(1), forward(x) - forward(torch.zeros_like(x)), atol=2e-3, rtol=0)


def test_integrated_gradients_of_a_linear_function_is_exact():
    w = torch.randn(5, dtype=torch.float64)
    x, base = torch.randn(2, 5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    attributions = integrated_gradients(lambda t: t @ w, x, base, steps=1)
    assert_close(attributions, (x - base) * w)  # the gradient is w everywhere


def test_integrated_gradients_bad_input():
    net = small_net()
    x = torch.randn(2, 6, dtype=torch.float64)
    with pytest.raises(TypeError, match="floating-point"):
        integrated_gradients(net, torch.ones(2, 6, dtype=torch.long), target=0)
    with pytest.raises(ValueError, match="steps"):
        integrated_gradients(net, x, target=0, steps=0)
    with pytest.raises(ValueError, match="pass target"):
        integrated_gradients(net, x)
    with pytest.raises(ValueError, match="classes in"):
        integrated_gradients(net, x, target=3)
    with pytest.raises(ValueError, match="broadcasts"):
        integrated_gradients(net, x, torch.zeros(3, 6, dtype=torch.float64), target=0)


def test_occlusion_effects_of_an_additive_score():
    weights = torch.tensor([0.0, 1.0, -2.0, 0.5, 3.0])
    score = lambda seqs: torch.stack([weights[s].sum() for s in map(torch.tensor, seqs)])  # noqa: E731
    deleted, replaced = (occlusion_effects(score, [[1, 2, 3], [4, 4]], replacement=r) for r in (None, 3))
    assert_close(deleted[0], torch.tensor([1.0, -2.0, 0.5]))  # a deleted token takes its weight with it
    assert_close(deleted[1], torch.tensor([3.0, 3.0]))
    assert_close(replaced[0], torch.tensor([0.5, -2.5, 0.0]))  # weight minus the replacement's 0.5
    with pytest.raises(ValueError, match="empty"):
        occlusion_effects(score, [[]])
    with pytest.raises(ValueError, match="token-id lists"):
        occlusion_effects(score, "abc")
    with pytest.raises(ValueError, match="expected score to return"):
        occlusion_effects(lambda seqs: torch.zeros(1), [[1, 2]])


def test_attention_rollout_against_a_loop():
    g = torch.Generator().manual_seed(0)
    maps = [torch.randn(2, 3, 4, 4, generator=g).softmax(-1) for _ in range(3)]
    rollout = attention_rollout(maps)
    for b in range(2):
        expected = torch.eye(4)
        for a in maps:
            layer = 0.5 * torch.eye(4) + 0.5 * sum(a[b, h] for h in range(3)) / 3
            expected = layer @ expected
        assert_close(rollout[b], expected)
    assert_close(rollout.sum(-1), torch.ones(2, 4))
    assert_close(attention_rollout(maps, residual=1.0), torch.eye(4).expand(2, 4, 4))
    with pytest.raises(ValueError, match="non-empty"):
        attention_rollout([])
    with pytest.raises(ValueError, match="shape"):
        attention_rollout([maps[0], maps[1][:, :, :3, :3]])
    with pytest.raises(ValueError, match="residual"):
        attention_rollout(maps, residual=1.5)


def test_record_outputs_and_hooks_removed():
    net = small_net()
    x = torch.randn(2, 6, dtype=torch.float64)
    with record_outputs(net[0], net[2]) as outputs:
        final = net(x)
    assert len(outputs) == 2 and outputs[0].shape == (2, 16)
    assert_close(outputs[1], final.detach())
    assert_close(outputs[0], net[0](x).detach())
    net(x)
    assert len(outputs) == 2  # no hook left behind
    with pytest.raises(TypeError, match="nn.Module"):
        with record_outputs(lambda t: t):
            pass


def test_linear_probe_reads_a_linear_property_and_not_noise():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 5, generator=g)
    y = (x[:, 2] > 0).long()
    readable = linear_probe(x[:300], y[:300], x[300:], y[300:])
    noise = linear_probe(x[:300], torch.randint(0, 2, (300,), generator=g), x[300:],
                         torch.randint(0, 2, (100,), generator=g))
    assert readable["accuracy"] > 0.95 and noise["accuracy"] < 0.7
    low, high = readable["ci95"]
    assert low < readable["accuracy"] <= high
    with pytest.raises(ValueError, match="one label per row"):
        linear_probe(x[:300], y[:200], x[300:], y[300:])
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        linear_probe(x[:300, 0], y[:300], x[300:], y[300:])
    with pytest.raises(ValueError, match="C > 0"):
        linear_probe(x[:300], y[:300], x[300:], y[300:], C=0)
    with pytest.raises(ValueError, match="need validation"):
        linear_probe(x[:300], y[:300], x[300:], y[300:], C=[0.1, 1.0])


def test_linear_probe_chooses_C_on_validation_as_sklearn_would():
    from sklearn.linear_model import LogisticRegression

    g = torch.Generator().manual_seed(1)
    x = torch.randn(300, 40, generator=g, dtype=torch.float64)
    y = (x[:, :3].sum(1) + 0.8 * torch.randn(300, generator=g, dtype=torch.float64) > 0).long()
    grid = [1e-3, 0.01, 0.1, 1.0, 10.0]
    probe = linear_probe(x[:150], y[:150], x[250:], y[250:], C=grid, validation=(x[150:250], y[150:250]))
    mean, std = x[:150].mean(0), x[:150].std(0, unbiased=False) + 1e-8
    z = lambda t: ((t - mean) / std).numpy()  # noqa: E731
    by_hand = {c: LogisticRegression(C=c, max_iter=3000).fit(z(x[:150]), y[:150].numpy()) for c in grid}
    val = {c: (m.predict(z(x[150:250])) == y[150:250].numpy()).mean() for c, m in by_hand.items()}
    best = max(grid, key=lambda c: (val[c], -c))
    assert probe["C"] == best
    assert probe["accuracy"] == (by_hand[best].predict(z(x[250:])) == y[250:].numpy()).mean()
    assert_close(torch.tensor(probe["classifier"].coef_), torch.tensor(by_hand[best].coef_))
