"""Interpretability: which inputs a prediction depends on, and what a hidden layer encodes.

* :func:`integrated_gradients` -- the attribution of Sundararajan et al. (2017): the input minus a baseline,
  times the gradient averaged along the straight path between them (a right Riemann sum with ``steps`` points).
  Its attributions add up to ``F(x) - F(baseline)`` up to the sum's error (*completeness*).
* :func:`occlusion_effects` -- how much a score changes when one token at a time is deleted (or replaced).
* :func:`attention_rollout` -- attention maps of all layers multiplied through, with the residual connection
  counted as half of each layer (Abnar and Zuidema, 2020).
* :func:`record_outputs` -- the outputs of chosen modules while a model runs, e.g. every layer of an encoder.
* :func:`linear_probe` -- a logistic regression on frozen features: how linearly readable a property is from a
  layer (Alain and Bengio, 2016).

Shapes: ``B`` batch, ``T`` tokens, ``C`` features, ``nh`` heads, ``L`` layers; ``*S`` the shape of one input.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn as nn

from bigmodel_lib.metrics import wilson_interval

__all__ = ["integrated_gradients", "occlusion_effects", "attention_rollout", "record_outputs", "linear_probe"]


def _selected(output: torch.Tensor, target, batch: int, repeats: int, who: str) -> torch.Tensor:
    """The score of each of ``repeats * batch`` inputs: output (N,) as it is, or output (N, K) at ``target``."""
    n = repeats * batch
    if not isinstance(output, torch.Tensor) or output.dim() not in (1, 2) or output.size(0) != n:
        got = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise ValueError(f"{who}: expected forward to return scores (N,) or (N, K) for N={n} inputs, got {got}")
    if output.dim() == 1:
        if target is not None:
            raise ValueError(f"{who}: forward returns one score per input (N,), so target must be None")
        return output
    if target is None:
        raise ValueError(f"{who}: forward returns (N, K={output.size(1)}) scores: pass target, the class to explain")
    index = torch.as_tensor(target, device=output.device).long().reshape(-1)
    if index.numel() == 1:
        index = index.expand(batch)
    if index.numel() != batch or not ((0 <= index) & (index < output.size(1))).all():
        raise ValueError(f"{who}: expected target as one class or {batch} classes in [0, {output.size(1)}), "
                         f"got {target!r}")
    return output.gather(1, index.repeat(repeats)[:, None]).squeeze(1)  # inputs are ordered (repeat, batch)


def integrated_gradients(forward: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor,
                         baseline: torch.Tensor | None = None, target=None, steps: int = 50,
                         steps_per_batch: int | None = None, return_delta: bool = False):
    """Integrated gradients of ``forward``'s score at ``inputs`` (B, *S), against ``baseline``: (B, *S).

    With ``x' = baseline`` and ``m = steps``, each input number ``i`` gets

        IG_i(x) = (x_i - x'_i) * (1/m) * sum_{k=1..m} dF(x' + (k/m)(x - x')) / dx_i

    (Sundararajan et al., 2017), the right Riemann sum of the path integral, as Captum's
    ``IntegratedGradients(..., method="riemann_right")``. The attributions of one example add up to
    ``F(x) - F(x')`` up to the Riemann sum's error, which shrinks as ``steps`` grows.

    ``forward`` maps a batch (N, *S) to scores (N,), or to (N, K) with ``target`` the class to explain (one
    int, or (B,) ints). ``baseline``: None for zeros, or a tensor that broadcasts to ``inputs`` (e.g. (*S)).
    The path points are run ``steps_per_batch`` at a time (all at once when None), each a batch of B inputs.
    With ``return_delta=True`` returns ``(attributions, delta)``, ``delta`` (B,) =
    ``sum of attributions - (F(x) - F(x'))``, Captum's convergence delta. Gradients flow to ``inputs`` only
    inside this function; ``forward``'s parameters get no ``.grad``. Raises TypeError for ``inputs`` that is not
    a floating-point tensor, ValueError for ``steps < 1``, a baseline of another shape or scores of the wrong
    shape.

    Introduced in §8.4.
    """
    who = "integrated_gradients"
    if not isinstance(inputs, torch.Tensor) or not inputs.is_floating_point():
        got = f"a tensor of dtype {inputs.dtype}" if isinstance(inputs, torch.Tensor) else type(inputs).__name__
        raise TypeError(f"{who}: expected inputs as a floating-point tensor (B, *S), got {got}")
    if inputs.dim() < 1 or inputs.size(0) == 0:
        raise ValueError(f"{who}: expected inputs (B, *S) with B >= 1, got shape {tuple(inputs.shape)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"{who}: expected steps as an int >= 1, got {steps!r}")
    if baseline is None:
        baseline = torch.zeros_like(inputs)
    if not isinstance(baseline, torch.Tensor):
        raise TypeError(f"{who}: expected baseline as a tensor or None, got {type(baseline).__name__}")
    try:
        baseline = torch.broadcast_to(baseline.to(inputs), inputs.shape)
    except RuntimeError:
        raise ValueError(f"{who}: expected a baseline that broadcasts to the inputs' shape {tuple(inputs.shape)}, "
                         f"got shape {tuple(baseline.shape)}") from None
    chunk = steps if steps_per_batch is None else int(steps_per_batch)
    if chunk < 1:
        raise ValueError(f"{who}: expected steps_per_batch >= 1 or None, got {steps_per_batch!r}")
    B = inputs.size(0)
    x, x0 = inputs.detach(), baseline.detach()
    alphas = torch.arange(1, steps + 1, dtype=x.dtype, device=x.device) / steps  # (m,): k/m, k = 1..m
    grad_sum = torch.zeros_like(x)
    for part in alphas.split(chunk):
        a = part.view(-1, 1, *([1] * (x.dim() - 1)))  # (c, 1, 1, ...)
        path = (x0 + a * (x - x0)).reshape(-1, *x.shape[1:]).requires_grad_(True)  # (c B, *S)
        with torch.enable_grad():
            score = _selected(forward(path), target, B, len(part), who)  # (c B,)
            (grad,) = torch.autograd.grad(score.sum(), path)  # each score depends on its own input only
        grad_sum += grad.view(len(part), *x.shape).sum(0)
    attributions = (x - x0) * grad_sum / steps  # (B, *S)
    if not return_delta:
        return attributions
    with torch.no_grad():
        ends = _selected(forward(torch.cat([x, x0])), target, B, 2, who)  # (2 B,): F(x), then F(x')
    return attributions, attributions.reshape(B, -1).sum(1) - (ends[:B] - ends[B:])


@torch.no_grad()
def occlusion_effects(score: Callable[[list[list[int]]], torch.Tensor], sequences: Sequence[Sequence[int]],
                      replacement: int | None = None) -> list[torch.Tensor]:
    """How much ``score`` falls when each token of each sequence is deleted (or replaced), one at a time.

    ``sequences``: token-id lists. For a sequence of ``T`` tokens, its ``T`` variants each lack one token
    (``replacement=None``) or have it replaced by the id ``replacement`` (e.g. ``[MASK]``), and the effect of
    token ``t`` is ``score(original) - score(variant t)``: positive when the token raised the score. ``score``
    maps a list of N id lists (of any lengths) to an (N,) tensor; it is called once per sequence, with the
    original first. Returns one (T,) tensor per sequence. Raises ValueError for an empty sequence or scores of
    the wrong shape.

    Introduced in §8.4.
    """
    if isinstance(sequences, (str, torch.Tensor)) or not all(isinstance(s, (list, tuple)) for s in sequences):
        raise ValueError("occlusion_effects: expected sequences as a list of token-id lists")
    effects = []
    for ids in sequences:
        ids = [int(i) for i in ids]
        if not ids:
            raise ValueError("occlusion_effects: got an empty sequence: it has no token to occlude")
        variants = [ids] + [ids[:t] + ([] if replacement is None else [replacement]) + ids[t + 1:]
                            for t in range(len(ids))]
        scores = torch.as_tensor(score(variants))
        if scores.shape != (len(variants),):
            raise ValueError(f"occlusion_effects: expected score to return ({len(variants)},) for "
                             f"{len(variants)} sequences, got shape {tuple(scores.shape)}")
        effects.append(scores[0] - scores[1:])  # (T,)
    return effects


def attention_rollout(attentions: Sequence[torch.Tensor], residual: float = 0.5) -> torch.Tensor:
    """Attention rollout (Abnar and Zuidema, 2020): how much each output position draws on each input token.

    ``attentions``: one (B, nh, T, T) weight tensor per layer, first layer first (rows: queries, summing to 1),
    as :func:`bigmodel_lib.probes.record_attention` records them. Each layer's map is averaged over heads and
    mixed with the identity for the residual connection, ``A' = residual I + (1 - residual) A`` (rows still sum
    to 1), and the maps are multiplied from the last layer down: ``R = A'_L ... A'_2 A'_1``, (B, T, T). Row
    ``i`` of ``R`` sums to 1. Raises ValueError for an empty list, maps of different or non-square shapes, or
    ``residual`` outside [0, 1].

    Introduced in §8.4.
    """
    if isinstance(attentions, torch.Tensor) or len(attentions) == 0:
        raise ValueError("attention_rollout: expected a non-empty list of (B, nh, T, T) attention maps, one per layer")
    shape = tuple(attentions[0].shape)
    for a in attentions:
        if a.dim() != 4 or a.shape[-1] != a.shape[-2] or tuple(a.shape) != shape:
            raise ValueError(f"attention_rollout: expected every map of shape (B, nh, T, T) = {shape}, "
                             f"got {tuple(a.shape)}")
    if not 0 <= residual <= 1:
        raise ValueError(f"attention_rollout: expected residual in [0, 1], got {residual!r}")
    T = shape[-1]
    eye = torch.eye(T, dtype=attentions[0].dtype, device=attentions[0].device)
    rollout = eye.expand(shape[0], T, T)
    for a in attentions:
        mixed = residual * eye + (1 - residual) * a.mean(dim=1)  # (B, T, T)
        rollout = mixed @ rollout  # the later layer on the left
    return rollout


@contextmanager
def record_outputs(*modules: nn.Module) -> Iterator[list[torch.Tensor]]:
    """``with record_outputs(m1, m2) as outputs: model(x)`` leaves each call's output, detached, in ``outputs``.

    Outputs are appended in call order (for an encoder: the embedding norm, then layer 1, 2, ...), each the
    tensor the module returned (e.g. (B, T, C)). The hooks are removed on exit, also after an error. Raises
    TypeError for anything that is not an ``nn.Module``.

    Introduced in §8.4.
    """
    for module in modules:
        if not isinstance(module, nn.Module):
            raise TypeError(f"record_outputs: expected nn.Module objects, got {type(module).__name__}")
    outputs: list[torch.Tensor] = []
    handles = [m.register_forward_hook(lambda module, args, output: outputs.append(output.detach()))
               for m in modules]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


def linear_probe(train_features, train_labels, test_features, test_labels, C: float | Sequence[float] = 1.0,
                 validation: tuple | None = None) -> dict:
    """Fit a logistic regression on frozen features and score it: how linearly a property can be read off them.

    ``train_features`` (N, C) and ``test_features`` (M, C) (tensors or arrays) are standardised with the
    training set's mean and standard deviation, then scikit-learn's ``LogisticRegression(C=C)`` (L2 penalty,
    multinomial for more than two classes) is fitted on ``train_labels`` (N,). ``C`` (the inverse regularisation
    strength) is one positive number, or several: then ``validation=(features (V, C), labels (V,))`` is required
    and the ``C`` with the best validation accuracy is used (ties go to the smallest, the strongest
    regularisation). Returns ``{"accuracy": ..., "ci95": (low, high), "C": the C used, "classifier": the fitted
    model, "mean": ..., "std": ...}``: the accuracy on ``test_labels`` (M,) with its Wilson interval. Raises
    ValueError for mismatched lengths, features that are not 2-D or of different widths, a ``C`` that is not
    positive, or several ``C`` without ``validation``.

    Introduced in §8.4.
    """
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    def as_arrays(features, labels, part):
        x = np.asarray(torch.as_tensor(features).detach().cpu(), dtype=np.float64)
        y = np.asarray(torch.as_tensor(labels).cpu()).reshape(-1)
        if x.ndim != 2:
            raise ValueError(f"linear_probe: expected {part} features (N, C), got shape {x.shape}")
        if len(x) != len(y):
            raise ValueError(f"linear_probe: expected one label per row, got {len(x)} rows and {len(y)} labels "
                             f"({part})")
        return x, y

    x_tr, y_tr = as_arrays(train_features, train_labels, "train")
    x_te, y_te = as_arrays(test_features, test_labels, "test")
    if x_tr.shape[1] != x_te.shape[1]:
        raise ValueError(f"linear_probe: expected features (N, C) and (M, C) of one width, got shapes "
                         f"{x_tr.shape} and {x_te.shape}")
    grid = [C] if isinstance(C, (int, float)) else list(C)
    if not grid or not all(isinstance(c, (int, float)) and c > 0 for c in grid):
        raise ValueError(f"linear_probe: expected C > 0 (inverse regularisation strength), or a list of them, "
                         f"got {C!r}")
    if len(grid) > 1 and validation is None:
        raise ValueError(f"linear_probe: {len(grid)} values of C need validation=(features, labels) to choose one")
    mean, std = x_tr.mean(0), x_tr.std(0) + 1e-8
    fits = {c: LogisticRegression(C=c, max_iter=3000).fit((x_tr - mean) / std, y_tr) for c in sorted(grid)}
    chosen = min(grid)
    if len(grid) > 1:
        x_va, y_va = as_arrays(*validation, "validation")
        score = {c: (fits[c].predict((x_va - mean) / std) == y_va).mean() for c in fits}
        chosen = max(sorted(fits), key=lambda c: (score[c], -c))
    correct = int((fits[chosen].predict((x_te - mean) / std) == y_te).sum())
    return {"accuracy": correct / len(y_te), "ci95": wilson_interval(correct, len(y_te)), "C": chosen,
            "classifier": fits[chosen], "mean": mean, "std": std}
