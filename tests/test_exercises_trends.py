"""Chapter 8's exercise checkers (compute-optimal sizes, label flipping, the key-value cache): their references
equal the library's functions and independent formulas, correct answers written several ways pass, every modelled
mistake fails with its own hint (also when a learner writes it their own way), an unfinished answer is reported
as such, and strict mode raises."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from bigmodel_lib.data_quality import flip_labels
from bigmodel_lib.exercises.checking import CheckResult
from bigmodel_lib.exercises.trends import (
    CHINCHILLA_MUTANTS,
    FLIP_LABELS_MUTANTS,
    KV_CACHE_MUTANTS,
    _chinchilla_cases,
    _flip_cases,
    _kv_cases,
    check_chinchilla_optimal,
    check_flip_labels,
    check_kv_cache_bytes,
)
from bigmodel_lib.model_costs import kv_cache_bytes
from bigmodel_lib.scaling import chinchilla_optimal

pytestmark = pytest.mark.usefixtures("one_thread")

# ---------------------------------------------------------------------------
# Correct answers, written the ways learners write them


def chinchilla_chapter(compute_flops, tokens_per_param=20):  # the notebook's solution
    n = math.sqrt(compute_flops / (6 * tokens_per_param))
    return n, tokens_per_param * n


def chinchilla_numpy(compute_flops, tokens_per_param=20):
    d = np.sqrt(compute_flops * tokens_per_param / 6.0)  # D = sqrt(C r / 6)
    return float(d / tokens_per_param), float(d)


def chinchilla_powers(compute_flops, tokens_per_param=20):
    return (compute_flops / 6 / tokens_per_param) ** 0.5, (compute_flops / 6 * tokens_per_param) ** 0.5


def flip_chapter(labels, fraction, num_classes, generator):  # the notebook's solution: the library's draws
    count = round(fraction * len(labels))
    chosen = torch.randperm(len(labels), generator=generator)[:count]
    shift = torch.randint(1, num_classes, (count,), generator=generator)
    noisy = labels.clone()
    noisy[chosen] = (labels[chosen] + shift) % num_classes
    flipped = torch.zeros(len(labels), dtype=torch.bool)
    flipped[chosen] = True
    return noisy, flipped


def flip_numpy(labels, fraction, num_classes, generator):  # other draws: numpy, seeded from the generator
    rng = np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=generator)))
    y = labels.numpy()
    count = round(fraction * len(y))
    chosen = rng.choice(len(y), size=count, replace=False)
    noisy = y.copy()
    for i in chosen:
        noisy[i] = rng.choice([c for c in range(num_classes) if c != y[i]])
    flipped = np.zeros(len(y), dtype=bool)
    flipped[chosen] = True
    return torch.from_numpy(noisy), torch.from_numpy(flipped)


def flip_argsort(labels, fraction, num_classes, generator):  # random keys; new class by masking the old one
    count = round(fraction * len(labels))
    flipped = torch.zeros(len(labels), dtype=torch.bool)
    flipped[torch.rand(len(labels), generator=generator).argsort()[:count]] = True
    scores = torch.rand(len(labels), num_classes, generator=generator)
    scores[torch.arange(len(labels)), labels] = -1.0  # never the old class
    return torch.where(flipped, scores.argmax(1), labels), flipped


def kv_chapter(n_layers, n_kv_heads, head_dim, seq_len=1, batch=1, bytes_per=2):
    return int(2 * n_layers * n_kv_heads * head_dim * seq_len * batch * bytes_per)


def kv_per_token(n_layers, n_kv_heads, head_dim, seq_len=1, batch=1, bytes_per=2):
    per_token = n_layers * (n_kv_heads * head_dim) * 2  # numbers per token: K and V, every layer
    return round(per_token * bytes_per * seq_len * batch)


def kv_math_prod(*args):
    return int(math.prod([2, *args])) if len(args) == 6 else kv_math_prod(*args, *[1, 1, 2][len(args) - 3:])


CORRECT = {
    check_chinchilla_optimal: [chinchilla_optimal, chinchilla_chapter, chinchilla_numpy, chinchilla_powers],
    check_flip_labels: [flip_labels, flip_chapter, flip_numpy, flip_argsort],
    check_kv_cache_bytes: [kv_cache_bytes, kv_chapter, kv_per_token, kv_math_prod],
}
MUTANTS = {check_chinchilla_optimal: CHINCHILLA_MUTANTS, check_flip_labels: FLIP_LABELS_MUTANTS,
           check_kv_cache_bytes: KV_CACHE_MUTANTS}


@pytest.mark.parametrize(("check", "answer"), [(c, a) for c, answers in CORRECT.items() for a in answers],
                         ids=lambda v: getattr(v, "__name__", "?"))
def test_correct_answers_pass(check, answer):
    result = check(answer)
    assert result.passed and result.hint is None, str(result)
    assert check(answer, strict=True).passed


@pytest.mark.parametrize(("check", "mutant"), [(c, m) for c, ms in MUTANTS.items() for m in ms],
                         ids=lambda v: getattr(v, "name", getattr(v, "__name__", "?")))
def test_each_modelled_mistake_gets_its_own_hint(check, mutant):
    result = check(mutant.fn)
    assert not result.passed and (result.mistake, result.hint) == (mutant.name, mutant.hint), str(result)
    with pytest.raises(AssertionError, match="FAILED"):
        check(mutant.fn, strict=True)


# ---------------------------------------------------------------------------
# The references agree with independent formulas


def test_chinchilla_reference_solves_the_two_equations():
    for case in _chinchilla_cases():
        c, r = case.args["compute_flops"], case.args.get("tokens_per_param", 20)
        n, d = chinchilla_optimal(c, r)
        assert_close(torch.tensor([6 * n * d, d / n], dtype=torch.float64),
                     torch.tensor([c, r], dtype=torch.float64), rtol=1e-12, atol=0)
    n, d = chinchilla_optimal(5.76e23)
    assert 6.5e10 < n < 7.5e10 and 1.3e12 < d < 1.5e12  # Chinchilla: 70B parameters, 1.4T tokens


def test_kv_reference_is_the_product_and_llama_sizes():
    for case in _kv_cases():
        a = case.args
        full = [*a.values(), *[1, 1, 2][len(a) - 3:]]
        assert kv_cache_bytes(*full) == int(2 * math.prod(full))
    assert kv_cache_bytes(32, 32, 128) == 524288  # 0.5 MiB per token for Llama 2 7B in bf16
    assert kv_cache_bytes(32, 8, 128, 8192, 16) == 17179869184  # 16 GiB: grouped-query Llama 3 8B


def test_the_library_flip_labels_satisfies_the_properties_and_the_solution_reproduces_it():
    for case in _flip_cases():
        a = case.args
        noisy, flipped = flip_labels(a["labels"], a["fraction"], a["num_classes"],
                                     torch.Generator().manual_seed(a["seed"]))
        assert int(flipped.sum()) == round(a["fraction"] * len(a["labels"]))
        assert torch.equal(noisy != a["labels"], flipped)
        again = flip_chapter(a["labels"].clone(), a["fraction"], a["num_classes"],
                             torch.Generator().manual_seed(a["seed"]))
        assert torch.equal(again[0], noisy) and torch.equal(again[1], flipped)


# ---------------------------------------------------------------------------
# The same mistakes written the way a learner would


def learner_chinchilla_2nd(compute_flops, tokens_per_param=20):
    d = math.sqrt(compute_flops * tokens_per_param / 2)
    return d / tokens_per_param, d


def learner_flip_same_class(labels, fraction, num_classes, generator):
    count = round(fraction * len(labels))
    flipped = torch.zeros(len(labels), dtype=torch.bool)
    flipped[torch.randperm(len(labels), generator=generator)[:count]] = True
    new = torch.randint(0, num_classes, labels.shape, generator=generator)
    return torch.where(flipped, new, labels), flipped


def learner_flip_bernoulli(labels, fraction, num_classes, generator):
    flipped = torch.bernoulli(torch.full(labels.shape, float(fraction)), generator=generator).bool()
    shift = torch.randint(1, num_classes, labels.shape, generator=generator)
    return torch.where(flipped, (labels + shift) % num_classes, labels), flipped


def learner_kv_bits(n_layers, n_kv_heads, head_dim, seq_len=1, batch=1, bytes_per=2):
    return 2 * n_layers * n_kv_heads * head_dim * seq_len * batch * int(bytes_per * 8)


@pytest.mark.parametrize(("check", "answer", "words"), [
    (check_chinchilla_optimal, learner_chinchilla_2nd, "not 2 N D"),
    (check_flip_labels, learner_flip_same_class, "kept their class"),
    (check_flip_labels, learner_flip_bernoulli, "a random number of labels"),
    (check_kv_cache_bytes, learner_kv_bits, "bits rather than bytes"),
], ids=lambda v: getattr(v, "__name__", None))
def test_learner_mistakes_get_the_hint(check, answer, words):
    result = check(answer)
    assert not result.passed and result.hint and words in result.hint, str(result)


def test_unfinished_answers_and_wrong_structures_are_told_so():
    def todo(*args, **kwargs):
        raise NotImplementedError

    for check in CORRECT:
        result = check(todo)
        assert isinstance(result, CheckResult) and result.unfinished
        assert check(lambda *a, **k: None).unfinished
    result = check_flip_labels(lambda labels, fraction, num_classes, generator: labels)
    assert "expected (noisy, flipped), two tensors of shape (10,), got one tensor of shape (10,)" in result.message
    result = check_flip_labels(flip_argsort)
    assert result.passed
    message = check_flip_labels(FLIP_LABELS_MUTANTS[1].fn).message
    assert "property 'the number of labels flipped" in message and "element" not in message
