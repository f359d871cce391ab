"""Checkers for chapter 8's exercises: the compute-optimal model size, label noise for an experiment, and the
size of the key-value cache.

Each checker runs the learner's function on fixed and seeded cases against a
reference (``bigmodel_lib.scaling.chinchilla_optimal``; the properties of
``bigmodel_lib.data_quality.flip_labels``; ``bigmodel_lib.model_costs.kv_cache_bytes``,
all three checked in ``tests/test_exercises_trends.py``) and, when it fails,
names the modelled mistake its output matches. See ``bigmodel_lib.exercises``
for the result they return.
"""

from __future__ import annotations

import math
import re

import torch

from bigmodel_lib.data_quality import flip_labels
from bigmodel_lib.exercises.checking import Case, CheckResult, Mutant, run_check
from bigmodel_lib.model_costs import kv_cache_bytes
from bigmodel_lib.scaling import chinchilla_optimal

# ---------------------------------------------------------------------------
# The compute-optimal model size (section 8.1)


def _chinchilla_cases() -> list[Case]:
    return [
        Case("Chinchilla's budget, 5.76e23 FLOPs, 20 tokens per parameter",
             {"compute_flops": 5.76e23, "tokens_per_param": 20}),
        Case("1e21 FLOPs, the default ratio", {"compute_flops": 1e21}),
        Case("6 FLOPs, 1 token per parameter: N = D = 1", {"compute_flops": 6.0, "tokens_per_param": 1}),
        Case("1e24 FLOPs, 100 tokens per parameter", {"compute_flops": 1e24, "tokens_per_param": 100}),
        Case("2.4e19 FLOPs, 5 tokens per parameter", {"compute_flops": 2.4e19, "tokens_per_param": 5.0}),
    ]


def _chinchilla_reference(compute_flops, tokens_per_param=20):
    return chinchilla_optimal(compute_flops, tokens_per_param)


def _chinchilla_variant(compute_flops, tokens_per_param=20, factor=6.0, root=math.sqrt, swap=False, ratio=None):
    """The reference with its defaults; each keyword changed is one modelled mistake."""
    r = tokens_per_param if ratio is None else ratio
    n = root(compute_flops / (factor * r))
    return (r * n, n) if swap else (n, r * n)


CHINCHILLA_MUTANTS = [
    Mutant("C = 2 N D", lambda c, tokens_per_param=20: _chinchilla_variant(c, tokens_per_param, factor=2.0),
           "the parameters are sqrt(3) times too many: training costs about 6 FLOPs per parameter per token "
           "(2 in the forward pass, 4 in the backward pass), so C = 6 N D, not 2 N D (the cost of a forward "
           "pass alone)."),
    Mutant("the 6 forgotten", lambda c, tokens_per_param=20: _chinchilla_variant(c, tokens_per_param, factor=1.0),
           "the parameters are sqrt(6) times too many: the budget was written C = N D, without the 6 FLOPs per "
           "parameter per token. Substitute D = r N into C = 6 N D: N = sqrt(C / (6 r))."),
    Mutant("N and D swapped", lambda c, tokens_per_param=20: _chinchilla_variant(c, tokens_per_param, swap=True),
           "the result is (tokens, parameters): return (N, D), the parameters first, with D = r N the larger "
           "(20 tokens for each parameter)."),
    Mutant("square root missing",
           lambda c, tokens_per_param=20: _chinchilla_variant(c, tokens_per_param, root=lambda x: x),
           "N = C / (6 r) has no square root: C = 6 N D = 6 r N^2 is quadratic in N, so N = sqrt(C / (6 r)) "
           "and both N and D grow as the square root of the compute."),
    Mutant("tokens_per_param ignored",
           lambda c, tokens_per_param=20: _chinchilla_variant(c, tokens_per_param, ratio=20),
           "the answer is right only for 20 tokens per parameter: use the tokens_per_param argument (r) in "
           "N = sqrt(C / (6 r)) and D = r N, not the constant 20."),
]


def check_chinchilla_optimal(fn, strict: bool = False) -> CheckResult:
    """Check ``fn(compute_flops, tokens_per_param=20)``, the compute-optimal number of parameters and tokens.

    ``compute_flops`` (FLOPs, a positive float) and ``tokens_per_param`` (the ratio
    ``r = D / N``, positive) -> ``(N, D)``, two numbers: parameters and training
    tokens with ``6 N D = C`` and ``D = r N``, so ``N = sqrt(C / (6 r))``. Compared
    with ``bigmodel_lib.scaling.chinchilla_optimal`` at a relative tolerance of
    1e-6, also with the default ratio. Known mistakes: ``C = 2 N D``, the 6
    forgotten, N and D swapped, the square root missing, ``tokens_per_param``
    ignored. ``strict=True`` raises ``AssertionError`` on failure.

    Introduced in §8.1.
    """
    return run_check("chinchilla_optimal", fn, _chinchilla_cases(), _chinchilla_reference, CHINCHILLA_MUTANTS,
                     strict=strict, rtol=1e-6, atol=0.0)


# ---------------------------------------------------------------------------
# Flipping labels for a noise experiment (section 8.5)

_FLIP_PROPERTIES = [
    "the number of labels flipped (0: round(fraction * N), as asked; 1: round(fraction * num_classes); "
    "2: another number)",
    "flipped labels that kept their class (0: none; 1: some)",
    "labels whose value changed where the mask says False, or the reverse (0: none; 1: some)",
    "the new classes uniform over the other classes (1: yes; 0: no, by a chi-square test)",
    "the flipped positions spread over the whole dataset (1: yes; 0: no, their mean position is off)",
]


def _flip_cases() -> list[Case]:
    gen = torch.Generator().manual_seed(85)

    def case(label, n, fraction, num_classes, seed):
        labels = torch.randint(0, num_classes, (n,), generator=gen)
        return Case(label, {"labels": labels, "fraction": fraction, "num_classes": num_classes, "seed": seed})

    return [
        case("10 labels of 3 classes, fraction 0.3", 10, 0.3, 3, 1),
        case("fraction 0: nothing flipped", 40, 0.0, 5, 2),
        case("fraction 1, 2 classes: every label swapped", 60, 1.0, 2, 3),
        case("1000 labels of 4 classes, fraction 0.37", 1000, 0.37, 4, 4),
        case("20000 labels of 10 classes, fraction 0.2", 20000, 0.2, 10, 5),
        case("12000 labels of 3 classes, fraction 0.9", 12000, 0.9, 3, 6),
    ]


def _flip_summary(fn, case: Case) -> tuple[int, ...]:
    """Run ``fn`` with a fresh generator seeded from the case; return its five properties (``_FLIP_PROPERTIES``)."""
    a = case.args
    labels, fraction, num_classes = a["labels"], a["fraction"], a["num_classes"]
    out = fn(labels.clone(), fraction, num_classes, torch.Generator().manual_seed(a["seed"]))
    if out is None or out is Ellipsis:
        return out
    n = len(labels)
    if not (isinstance(out, (tuple, list)) and len(out) == 2 and all(isinstance(t, torch.Tensor) for t in out)
            and all(t.shape == (n,) for t in out)):
        raise TypeError(f"expected (noisy, flipped), two tensors of shape ({n},), got {_shape_of(out)}")
    noisy, flipped = out[0].long().cpu(), out[1].cpu().bool()
    count = int(flipped.sum())
    target = round(fraction * n)
    category = 0 if count == target else (1 if count == round(fraction * num_classes) else 2)
    kept = int(bool((noisy[flipped] == labels[flipped]).any()))
    mismatch = int(bool(((noisy != labels) != flipped).any()))
    uniform = spread = 1
    shift = (noisy[flipped] - labels[flipped]) % num_classes
    if count >= 300:
        counts = torch.bincount(shift, minlength=num_classes)[1:].double()  # shifts 1 .. C - 1
        expected = count / (num_classes - 1)
        chi2 = float(((counts - expected) ** 2 / expected).sum())
        uniform = int(chi2 < 3.0 * (num_classes - 1) + 30.0)  # far beyond any seed's spread for C - 1 classes
        positions = flipped.nonzero().squeeze(1).double()
        sd = n / math.sqrt(12.0 * count) * math.sqrt(1.0 - count / n)  # of the mean of a random subset
        spread = int(abs(float(positions.mean()) - (n - 1) / 2.0) < 6.0 * sd + 1.0)
    return category, kept, mismatch, uniform, spread


def _shape_of(out) -> str:
    if isinstance(out, torch.Tensor):
        return f"one tensor of shape {tuple(out.shape)}"
    if isinstance(out, (tuple, list)):
        return f"a {type(out).__name__} of {len(out)}: " + ", ".join(
            f"shape {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__ for t in out)
    return type(out).__name__


def _flip_reference(labels, fraction, num_classes, generator):
    return flip_labels(labels, fraction, num_classes, generator)


def _flip_any_class(labels, fraction, num_classes, generator):
    count = round(fraction * len(labels))
    chosen = torch.randperm(len(labels), generator=generator)[:count]
    noisy, flipped = labels.clone(), torch.zeros(len(labels), dtype=torch.bool)
    noisy[chosen] = torch.randint(0, num_classes, (count,), generator=generator)  # may draw the same class
    flipped[chosen] = True
    return noisy, flipped


def _flip_fraction_of_classes(labels, fraction, num_classes, generator):
    count = round(fraction * num_classes)
    chosen = torch.randperm(len(labels), generator=generator)[:count]
    noisy, flipped = labels.clone(), torch.zeros(len(labels), dtype=torch.bool)
    noisy[chosen] = (labels[chosen] + torch.randint(1, num_classes, (count,), generator=generator)) % num_classes
    flipped[chosen] = True
    return noisy, flipped


def _flip_random_count(labels, fraction, num_classes, generator):
    flipped = torch.rand(len(labels), generator=generator) < fraction  # each label with probability fraction
    shift = torch.randint(1, num_classes, (len(labels),), generator=generator)
    noisy = torch.where(flipped, (labels + shift) % num_classes, labels)
    return noisy, flipped


def _flip_first(labels, fraction, num_classes, generator):
    count = round(fraction * len(labels))
    noisy, flipped = labels.clone(), torch.zeros(len(labels), dtype=torch.bool)
    noisy[:count] = (labels[:count] + torch.randint(1, num_classes, (count,), generator=generator)) % num_classes
    flipped[:count] = True
    return noisy, flipped


def _flip_next_class(labels, fraction, num_classes, generator):
    count = round(fraction * len(labels))
    chosen = torch.randperm(len(labels), generator=generator)[:count]
    noisy, flipped = labels.clone(), torch.zeros(len(labels), dtype=torch.bool)
    noisy[chosen] = (labels[chosen] + 1) % num_classes  # always the next class: not uniform
    flipped[chosen] = True
    return noisy, flipped


FLIP_LABELS_MUTANTS = [
    Mutant("the same class can be drawn", _flip_any_class,
           "some flipped labels kept their class: drawing the new class from all num_classes classes picks the "
           "old one with probability 1 / num_classes. Add a shift k drawn from 1 .. num_classes - 1, "
           "(y + k) % num_classes, which is uniform over the other classes and never y."),
    Mutant("fraction of the classes", _flip_fraction_of_classes,
           "the number flipped is round(fraction * num_classes): fraction is a share of the examples, so flip "
           "round(fraction * len(labels)) of them."),
    Mutant("a random number flipped", _flip_random_count,
           "a random number of labels was flipped (each one with probability fraction): the exercise asks for "
           "exactly round(fraction * N), so that every seed has the same noise rate. Choose the positions with "
           "torch.randperm(N, generator=generator)[:count]."),
    Mutant("the first labels flipped", _flip_first,
           "the flipped positions are the first ones: choose a uniformly random subset, "
           "torch.randperm(N, generator=generator)[:count], or the noise lands on whatever the dataset's order "
           "puts first (often one class)."),
    Mutant("always the next class", _flip_next_class,
           "every flipped label became the next class, (y + 1) % num_classes: the new class must be uniform over "
           "the other classes, a shift k drawn from 1 .. num_classes - 1 with torch.randint."),
]


def check_flip_labels(fn, strict: bool = False) -> CheckResult:
    """Check ``fn(labels, fraction, num_classes, generator)``, which gives a share of the labels a wrong class.

    ``labels`` (N,) int64 classes in ``0 .. num_classes - 1``, ``fraction`` in
    [0, 1], ``num_classes`` >= 2 and a seeded ``torch.Generator`` -> ``(noisy,
    flipped)``: an (N,) integer tensor and an (N,) bool mask. This is a property
    check, so that any correct way of drawing passes: exactly ``round(fraction *
    N)`` positions are flipped, no flipped label keeps its class, labels change
    exactly where the mask is True, and on the large cases the new classes are
    uniform over the other classes (a chi-square test) and the flipped positions
    are spread over the data (their mean position). It does not demand equality
    with ``bigmodel_lib.data_quality.flip_labels``; an answer that draws as it does
    (``torch.randperm`` for the positions, then ``torch.randint(1, num_classes)``
    for the shifts, from ``generator``) also reproduces it exactly, which
    ``tests/test_exercises_trends.py`` checks. Known mistakes: the same class
    drawable, the fraction taken of the classes, a random number flipped, the
    first labels flipped, always the next class. ``strict=True`` raises
    ``AssertionError`` on failure.

    Introduced in §8.5.
    """
    result = run_check("flip_labels", fn, _flip_cases(), _flip_reference, FLIP_LABELS_MUTANTS, strict=False,
                       call=_flip_summary)

    def name(match):
        return f"property '{_FLIP_PROPERTIES[int(match.group(1))]}'"

    result.message = re.sub(r"element (\d) of the result", name, result.message)
    if strict:
        result.raise_if_failed()
    return result


# ---------------------------------------------------------------------------
# The size of the key-value cache (section 8.6)


def _kv_cases() -> list[Case]:
    def case(label, *values):
        names = ["n_layers", "n_kv_heads", "head_dim", "seq_len", "batch", "bytes_per"]
        return Case(label, dict(zip(names, values)))

    return [
        case("one token of a 7B model with 32 key-value heads (defaults: 1 token, 1 sequence, 2 bytes)", 32, 32, 128),
        case("Llama 2 7B shape, 4096 tokens, bf16", 32, 32, 128, 4096, 1, 2),
        case("grouped-query: 8 key-value heads, 8192 tokens, batch 16", 32, 8, 128, 8192, 16, 2),
        case("fp32, 3 layers, batch 4", 3, 4, 64, 100, 4, 4),
        case("int8 values, 80 layers, batch 2", 80, 8, 128, 32768, 2, 1),
        case("4-bit values (half a byte)", 40, 8, 128, 1000, 3, 0.5),
    ]


def _kv_reference(n_layers, n_kv_heads, head_dim, seq_len=1, batch=1, bytes_per=2):
    return kv_cache_bytes(n_layers, n_kv_heads, head_dim, seq_len, batch, bytes_per)


def _kv_variant(n_layers, n_kv_heads, head_dim, seq_len=1, batch=1, bytes_per=2, kv=2, layers=True, per_batch=True,
                bits=False):
    """The reference with its defaults; each keyword changed is one modelled mistake."""
    return int(kv * (n_layers if layers else 1) * n_kv_heads * head_dim * seq_len * (batch if per_batch else 1)
               * bytes_per * (8 if bits else 1))


KV_CACHE_MUTANTS = [
    Mutant("keys only", lambda *a: _kv_variant(*a, kv=1),
           "the result is half the size: the cache holds a key and a value for every token, head and layer, so "
           "the product starts with 2."),
    Mutant("layers forgotten", lambda *a: _kv_variant(*a, layers=False),
           "the result is the cache of one layer: every layer keeps its own keys and values, so multiply by "
           "n_layers."),
    Mutant("batch forgotten", lambda *a: _kv_variant(*a, per_batch=False),
           "the result is the cache of one sequence: each of the batch's sequences keeps its own keys and values, "
           "so multiply by batch."),
    Mutant("bits, not bytes", lambda *a: _kv_variant(*a, bits=True),
           "the result is 8 times too large, bits rather than bytes: bytes_per is already in bytes (2 for bf16), "
           "so do not multiply by 8."),
]


def check_kv_cache_bytes(fn, strict: bool = False) -> CheckResult:
    """Check ``fn(n_layers, n_kv_heads, head_dim, seq_len=1, batch=1, bytes_per=2)``, the key-value cache in bytes.

    Positive whole numbers ``n_layers``, ``n_kv_heads`` (the key-value heads; fewer
    than the query heads under grouped-query attention), ``head_dim``,
    ``seq_len`` (cached tokens per sequence) and ``batch`` (sequences), and
    ``bytes_per`` (bytes per stored number: 2 for bf16, 1 for int8, 0.5 for 4-bit)
    -> the bytes of the cache, ``2 * n_layers * n_kv_heads * head_dim * seq_len *
    batch * bytes_per``, an int (or a number equal to it). The arguments are passed
    by position, with the defaults used in one case. Compared exactly with
    ``bigmodel_lib.model_costs.kv_cache_bytes``. Known mistakes: keys only (no
    factor 2), the layers forgotten, the batch forgotten, bits instead of bytes.
    ``strict=True`` raises ``AssertionError`` on failure.

    Introduced in §8.6.
    """
    return run_check("kv_cache_bytes", fn, _kv_cases(), _kv_reference, KV_CACHE_MUTANTS, strict=strict)
