"""Checkers for chapter 1's exercises: the softmax, the cross-entropy and one AdamW step.

Each checker runs the learner's function on fixed and seeded cases against
PyTorch's own function and, when it fails, names the modelled mistake its output
matches. See ``bigmodel_lib.exercises`` for the result they return.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bigmodel_lib.exercises.checking import Case, CheckResult, Mutant, NotFinished, run_check

# ---------------------------------------------------------------------------
# Softmax


def _softmax_cases() -> list[Case]:
    gen = torch.Generator().manual_seed(0)
    return [
        Case("random scores", {"z": 3 * torch.randn(4, 7, generator=gen)}),
        Case("a square batch", {"z": 2 * torch.randn(5, 5, generator=gen)}),
        Case("three dimensions", {"z": torch.randn(2, 3, 6, generator=gen)}),
        Case("one row", {"z": torch.randn(1, 6, generator=gen)}),
        Case("all equal", {"z": torch.zeros(3, 4)}),
        Case("large scores", {"z": torch.tensor([[1000.0, 0.0, -1000.0], [1000.0, 1000.0, 999.0]])}),
        Case("very negative scores", {"z": torch.tensor([[-1000.0, -1001.0, -1002.0]])}),
    ]


def _softmax_wrong_axis(z):
    return torch.softmax(z, dim=0)


def _softmax_no_max(z):
    e = z.exp()
    return e / e.sum(dim=-1, keepdim=True)


def _softmax_whole_sum(z):
    e = (z - z.max(dim=-1, keepdim=True).values).exp()
    return e / e.sum()


def _softmax_no_keepdim(z):
    e = (z - z.max(dim=-1, keepdim=True).values).exp()
    return e / e.sum(dim=-1)


SOFTMAX_MUTANTS = [
    Mutant("wrong axis", _softmax_wrong_axis,
           "softmax over the wrong axis: each row (the last dimension, dim=-1) must sum to 1, not each column."),
    Mutant("dim 1", lambda z: torch.softmax(z, dim=1),
           "softmax over dim=1: right for a (B, K) input, wrong for (B, T, K). Use dim=-1, the last dimension, so "
           "that it works for any number of leading dimensions."),
    Mutant("no max-subtraction", _softmax_no_max,
           "no max-subtraction, so exp overflows: e^1000 is inf in float32 and inf / inf is nan. Subtract each "
           "row's maximum first (z - z.max(dim=-1, keepdim=True).values); the result is the same in exact maths."),
    Mutant("whole-tensor sum", _softmax_whole_sum,
           "normalising by the wrong sum: divide by each row's own sum, e.sum(dim=-1, keepdim=True), "
           "not by the sum of the whole tensor."),
    Mutant("sum without keepdim", _softmax_no_keepdim,
           "the row sums lost their dimension: e.sum(dim=-1) has shape (B,), which broadcasts against the "
           "columns (an error, or a wrong answer for a square input). Use keepdim=True."),
]


def check_softmax(fn, strict: bool = False) -> CheckResult:
    """Check ``fn(z)``, the softmax over the last dimension: z of shape (..., K), float32 -> same shape.

    Each slice ``fn(z)[..., :]`` must be ``exp(z_k) / sum_j exp(z_j)``, finite
    even for scores of ±1000. Compared with ``torch.softmax(z, dim=-1)``. Known
    mistakes: the wrong axis, no max-subtraction (overflow), the wrong sum, a
    sum without ``keepdim``. ``strict=True`` raises ``AssertionError`` on failure.

    Introduced in §1.4.
    """
    return run_check("softmax", fn, _softmax_cases(), lambda z: torch.softmax(z, dim=-1), SOFTMAX_MUTANTS,
                     strict=strict)


# ---------------------------------------------------------------------------
# Cross-entropy


def _cross_entropy_cases() -> list[Case]:
    gen = torch.Generator().manual_seed(1)
    return [
        Case("random logits", {"logits": 3 * torch.randn(8, 10, generator=gen),
                               "targets": torch.randint(0, 10, (8,), generator=gen)}),
        Case("two classes", {"logits": torch.randn(6, 2, generator=gen), "targets": torch.tensor([0, 1, 1, 0, 1, 1])}),
        Case("one example", {"logits": torch.randn(1, 5, generator=gen), "targets": torch.tensor([3])}),
        Case("large logits", {"logits": torch.tensor([[1000.0, 0.0, -1000.0], [1000.0, 0.0, -1000.0]]),
                              "targets": torch.tensor([0, 2])}),
    ]


def _log_softmax(z):
    return z - z.logsumexp(dim=-1, keepdim=True)


def _picked(values, targets):
    return values[torch.arange(len(targets)), targets]


CROSS_ENTROPY_MUTANTS = [
    Mutant("sum instead of mean", lambda z, t: -_picked(_log_softmax(z), t).sum(),
           "the sum over the batch, not the mean: F.cross_entropy averages -log p_y over the B examples."),
    Mutant("no log", lambda z, t: -_picked(torch.softmax(z, dim=-1), t).mean(),
           "the log is missing: the loss is -log p_y, minus the log of the softmax probability, not -p_y."),
    Mutant("raw logits", lambda z, t: -_picked(z, t).mean(),
           "the log-softmax is missing: -z_y uses the raw logit as if it were a log-probability. Subtract "
           "logsumexp(z) (or use torch.log_softmax) before picking the target's entry."),
    Mutant("all pairs", lambda z, t: -_log_softmax(z)[:, t].mean(),
           "the wrong entries are picked: log_p[:, targets] takes every target's column for every example "
           "(a B x B matrix). Pick one entry per row: log_p[torch.arange(B), targets] or log_p.gather(1, ...)."),
    Mutant("log of softmax", lambda z, t: -_picked(torch.softmax(z, dim=-1).log(), t).mean(),
           "log(softmax(z)) underflows: a probability below about 1e-38 rounds to 0 in float32 and its log is "
           "-inf. Compute the log-softmax directly, z - z.logsumexp(dim=-1, keepdim=True)."),
    Mutant("naive exp", lambda z, t: -_picked((z.exp() / z.exp().sum(dim=-1, keepdim=True)).log(), t).mean(),
           "exp of the raw logits overflows (e^1000 is inf, inf / inf is nan): compute the log-softmax as "
           "z - z.logsumexp(dim=-1, keepdim=True), which subtracts the maximum for you."),
]


def check_cross_entropy(fn, strict: bool = False) -> CheckResult:
    """Check ``fn(logits, targets)``, the mean cross-entropy: logits (B, K) float32, targets (B,) int64 -> scalar.

    The result is ``mean_b(-log softmax(logits[b])[targets[b]])``, finite for
    logits of ±1000, compared with ``F.cross_entropy``. Known mistakes: the sum
    instead of the mean, no log, raw logits (no log-softmax), the wrong entries
    picked, log of an underflowing softmax, exp overflow. ``strict=True`` raises
    ``AssertionError`` on failure.

    Introduced in §1.4.
    """
    return run_check("cross_entropy", fn, _cross_entropy_cases(), F.cross_entropy, CROSS_ENTROPY_MUTANTS,
                     strict=strict)


# ---------------------------------------------------------------------------
# One AdamW step


def _adamw_cases() -> list[Case]:
    gen = torch.Generator().manual_seed(2)
    shapes = [(3, 4), (4,), (2, 2)]
    cases = []
    for label, lr, weight_decay, steps in [("no weight decay", 0.01, 0.0, 3), ("weight decay 0.5", 0.05, 0.5, 4),
                                           ("one step", 0.1, 0.1, 1)]:
        params = [torch.randn(*s, generator=gen) for s in shapes]
        scales = (1.0, 100.0, 0.01)  # gradients of very different sizes per parameter
        grads = [[c * torch.randn(*s, generator=gen) for s, c in zip(shapes, scales)] for _ in range(steps)]
        cases.append(Case(label, {"params": params, "grads per step": grads},
                          {"lr": lr, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": weight_decay}))
    return cases


def _run_steps(step_fn, case: Case):
    """Set each step's gradients and call ``step_fn(params, state, lr, ...)`` under no_grad; the final parameters."""
    params = [p.clone().requires_grad_() for p in case.args["params"]]
    before = [p.detach().clone() for p in params]
    state: dict = {}
    returned = None
    for grads in case.args["grads per step"]:
        for p, g in zip(params, grads):
            p.grad = g.clone()
        with torch.no_grad():
            returned = step_fn(params, state, **case.kwargs)
    after = tuple(p.detach().clone() for p in params)
    if all(torch.equal(a, b) for a, b in zip(after, before)):
        if returned is None or returned is Ellipsis:
            raise NotFinished("the parameters did not change")
        raise ValueError(f"expected the parameters updated in place (p -= ... or p.mul_(...)); they did not "
                         f"change, and your function returned a {type(returned).__name__} instead")
    return after


def _torch_adamw(params, state, lr, betas, eps, weight_decay):
    if "optimizer" not in state:
        state["optimizer"] = torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    state["optimizer"].step()


def _adam_variant(l2=False, bias_correction=True, decay_lr=True, keep_state=True, decay=True):
    def step(params, state, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        b1, b2 = betas
        for p in params:
            t, m, v = state.get(p, (0, torch.zeros_like(p), torch.zeros_like(p))) if keep_state else \
                (0, torch.zeros_like(p), torch.zeros_like(p))
            t += 1
            g = p.grad + weight_decay * p if l2 else p.grad
            if decay and not l2:
                p.mul_(1 - (lr if decay_lr else 1.0) * weight_decay)
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            m_hat, v_hat = (m / (1 - b1**t), v / (1 - b2**t)) if bias_correction else (m, v)
            p -= lr * m_hat / (v_hat.sqrt() + eps)
            state[p] = (t, m, v)
    return step


ADAMW_MUTANTS = [
    Mutant("Adam with L2", _adam_variant(l2=True),
           "the weight decay was added to the gradient (g + λθ), which is Adam with L2 regularisation: the "
           "division by √v̂ then weakens it. AdamW decouples it: shrink the weights, p.mul_(1 - lr * weight_decay), "
           "and use the plain gradient in m and v."),
    Mutant("no bias correction", _adam_variant(bias_correction=False),
           "the bias correction is missing: m and v start at 0, so divide them by (1 - β1^t) and (1 - β2^t), "
           "with t the step number counted from 1."),
    Mutant("decay not scaled by lr", _adam_variant(decay_lr=False),
           "the weight decay is not scaled by the learning rate: AdamW shrinks by θ ← (1 - ηλ) θ, not (1 - λ) θ."),
    Mutant("no weight decay", _adam_variant(decay=False),
           "weight_decay is ignored: AdamW shrinks the weights, θ ← (1 - ηλ) θ, before the Adam step."),
    Mutant("state not kept", _adam_variant(keep_state=False),
           "the running averages restart at every call: keep m, v and the step count t in ``state`` (for example "
           "state[p] = (t, m, v)) and read them back at the next step."),
]


def check_adamw_step(fn, strict: bool = False) -> CheckResult:
    """Check ``fn(params, state, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)``, one AdamW update in place.

    ``params`` is a list of float32 tensors, each with its gradient in ``p.grad``;
    ``state`` is a dict, empty at the first step, in which the function keeps
    what it needs between calls (m, v and the step count t per parameter, keyed
    by the parameter). The function updates each ``p`` in place and returns
    nothing; the checker calls it under ``torch.no_grad()`` for several steps and
    compares the parameters with ``torch.optim.AdamW``'s. Known mistakes: weight
    decay added to the gradient (Adam with L2), no bias correction, decay not
    scaled by the learning rate, decay ignored, state not kept between steps.
    ``strict=True`` raises ``AssertionError`` on failure.

    Introduced in §1.5.
    """
    return run_check("adamw_step", fn, _adamw_cases(), _torch_adamw, ADAMW_MUTANTS, strict=strict, call=_run_steps)
