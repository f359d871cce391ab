"""Checkers for chapter 5's exercises: byte-pair counts, BERT's masking and mean pooling.

Each checker runs the learner's function on fixed and seeded cases against a
reference written here (the library's own versions live in higher layers) and,
when it fails, names the modelled mistake its output matches. BERT's random
draws are passed in as tensors, so the masking exercise is deterministic.
"""

from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F

from bigmodel_lib.exercises.checking import Case, CheckResult, Mutant, run_check

# ---------------------------------------------------------------------------
# Byte-pair encoding: counting adjacent pairs

_SENNRICH = {("l", "o", "w", "</w>"): 5, ("l", "o", "w", "e", "r", "</w>"): 2,
             ("n", "e", "w", "e", "s", "t", "</w>"): 6, ("w", "i", "d", "e", "s", "t", "</w>"): 3}


def _pair_cases() -> list[Case]:
    merged = {("l", "o", "w", "</w>"): 5, ("l", "o", "w", "e", "r", "</w>"): 2,
              ("n", "e", "w", "es", "t", "</w>"): 6, ("w", "i", "d", "es", "t", "</w>"): 3}  # after merging e, s
    corpora = [("Sennrich et al.'s corpus", _SENNRICH), ("after the merge (e, s) -> es", merged),
               ("a repeated pair in one word", {("a", "a", "a"): 3, ("a", "b"): 2}),
               ("a one-symbol word", {("a",): 4, ("b", "c"): 1}), ("no words", {})]
    # The symbols, for messages only: an entry (i, j) of the compared table is the pair (symbols[i], symbols[j]).
    return [Case(label, {"words": words, "rows and columns": " ".join(sorted({s for w in words for s in w}))})
            for label, words in corpora]


def _as_count(value, pair) -> int:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if not isinstance(value, numbers.Number) or isinstance(value, bool):
        raise TypeError(f"expected a count (a number) for the pair {pair!r}, got a {type(value).__name__}")
    if value != int(value):
        raise ValueError(f"expected whole-number counts, got {value!r} for the pair {pair!r}")
    return int(value)


def _counts_tensor(fn, case: Case):
    """Call ``fn`` on a copy of the words; its dict as a (V, V) long table over the case's V symbols, sorted."""
    words = case.args["words"]
    result = fn({tuple(word): count for word, count in words.items()})
    if result is None or result is Ellipsis:
        return result  # unfinished: run_check says so
    if not isinstance(result, dict):
        raise TypeError(f"expected a dict {{(a, b): count}}, got a {type(result).__name__}")
    symbols = sorted({s for word in words for s in word})
    index = {(a, b): (i, j) for i, a in enumerate(symbols) for j, b in enumerate(symbols)}
    counts = torch.zeros(len(symbols), len(symbols), dtype=torch.long)
    for pair, value in result.items():
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise TypeError(f"expected the dict's keys to be pairs of symbols, tuples such as ('l', 'o'); got the "
                            f"key {pair!r} (a {type(pair).__name__})")
        if pair not in index:
            raise ValueError(f"the key {pair!r} is not a pair of symbols of the words")
        counts[index[pair]] += _as_count(value, pair)
    return counts


def _pair_counts(words):
    counts = {}
    for word, freq in words.items():
        for a, b in zip(word[:-1], word[1:]):
            counts[a, b] = counts.get((a, b), 0) + freq
    return counts


def _unweighted(words):
    counts = {}
    for word in words:
        for pair in zip(word[:-1], word[1:]):
            counts[pair] = counts.get(pair, 0) + 1
    return counts


def _once_per_word(words):
    counts = {}
    for word, freq in words.items():
        for pair in set(zip(word[:-1], word[1:])):
            counts[pair] = counts.get(pair, 0) + freq
    return counts


def _wrap_around(words):
    counts = {}
    for word, freq in words.items():
        for i in range(len(word)):
            pair = word[i], word[(i + 1) % len(word)]
            counts[pair] = counts.get(pair, 0) + freq
    return counts


def _all_pairs(words):
    counts = {}
    for word, freq in words.items():
        for i in range(len(word)):
            for j in range(i + 1, len(word)):
                counts[word[i], word[j]] = counts.get((word[i], word[j]), 0) + freq
    return counts


PAIR_COUNTS_MUTANTS = [
    Mutant("unweighted", _unweighted,
           "each pair counts 1 per word: weight it by the word's count in the corpus, counts[pair] += freq, since "
           "a word seen 6 times contributes its pairs 6 times."),
    Mutant("once per word", _once_per_word,
           "a pair that occurs twice in a word is counted once (a set of pairs?): count every occurrence, so "
           "('a', 'a', 'a') holds the pair ('a', 'a') twice."),
    Mutant("wrap-around pair", _wrap_around,
           "the last symbol is paired with the first (an index taken modulo the length?): only neighbours count, "
           "zip(word[:-1], word[1:]) gives the len(word) - 1 adjacent pairs."),
    Mutant("all pairs i < j", _all_pairs,
           "pairs of symbols that are not neighbours are counted: byte-pair encoding merges adjacent symbols only, "
           "(word[i], word[i + 1])."),
]


def check_pair_counts(fn, strict: bool = False) -> CheckResult:
    """Check ``fn(words)``, the counting step of byte-pair encoding: adjacent symbol pairs weighted by word counts.

    ``words`` is a dict mapping each word, a tuple of symbols such as
    ``("l", "o", "w", "</w>")``, to its count in the corpus. ``fn`` returns a dict
    ``{(a, b): count}`` with every adjacent pair of every word, each occurrence
    weighted by the word's count (a pair occurring twice in a word counts twice);
    pairs with count 0 may be present or absent. Anything but a dict with
    2-tuple keys and whole-number values is reported as such. Known mistakes:
    counts not weighted, a pair counted once per word, a wrap-around pair
    (last, first), non-adjacent pairs. ``strict=True`` raises ``AssertionError``
    on failure.

    Introduced in §5.1.
    """
    return run_check("pair_counts", fn, _pair_cases(), _pair_counts, PAIR_COUNTS_MUTANTS, strict=strict,
                     call=_counts_tensor)


# ---------------------------------------------------------------------------
# BERT's masked-language-model corruption

_CLS, _SEP, _PAD, _MASK = 101, 102, 0, 103


def _masking_case(label: str, lengths: list[int], T: int, gen: torch.Generator, mask_id: int = _MASK) -> Case:
    """A batch of [CLS] tokens [SEP] [PAD]... rows of the given lengths (tokens only), with seeded draws."""
    B = len(lengths)
    input_ids = torch.full((B, T), _PAD, dtype=torch.long)
    for b, n in enumerate(lengths):
        input_ids[b, 0], input_ids[b, n + 1] = _CLS, _SEP
        input_ids[b, 1:n + 1] = torch.randint(1000, 30522, (n,), generator=gen)
    special = (input_ids == _CLS) | (input_ids == _SEP) | (input_ids == _PAD)
    return Case(label, {"input_ids": input_ids, "special": special, "rand": torch.rand(B, T, generator=gen),
                        "action": torch.rand(B, T, generator=gen),
                        "random_ids": torch.randint(1000, 30522, (B, T), generator=gen), "mask_id": mask_id})


def _masking_cases() -> list[Case]:
    gen = torch.Generator().manual_seed(50)
    # Hand-built: row 0 only special tokens, drawn as if every position were chosen; row 1 on the thresholds.
    input_ids = torch.tensor([[_CLS, _SEP, _PAD, _PAD, _PAD, _PAD, _PAD],
                              [_CLS, 2001, 2002, 2003, 2004, 2005, _SEP]])
    special = torch.tensor([[True] * 7, [True] + [False] * 5 + [True]])
    rand = torch.tensor([[0.0] * 7, [0.0, 0.0, 0.0, 0.0, 0.1499, 0.15, 0.0]])
    action = torch.tensor([[0.0, 0.85, 0.95, 0.0, 0.85, 0.95, 0.0], [0.0, 0.0, 0.8, 0.9, 0.7999, 0.0, 0.85]])
    random_ids = torch.tensor([[3001, 3002, 3003, 3004, 3005, 3006, 3007], [3011, 3012, 3013, 3014, 3015, 3016, 3017]])
    return [
        _masking_case("2 sentences with padding", [12, 7], 16, gen),
        _masking_case("8 sentences of 64 tokens", [62, 40, 62, 25, 50, 62, 10, 33], 64, gen),
        _masking_case("mask_id = 4, a small vocabulary", [20, 20, 15], 24, gen, mask_id=4),
        Case("a row of special tokens only, draws on the thresholds",
             {"input_ids": input_ids, "special": special, "rand": rand, "action": action, "random_ids": random_ids,
              "mask_id": _MASK}),
    ]


def _masking_variant(skip_special=True, labels="chosen", replace="80-10-10", random_where="chosen"):
    def bert_mask(input_ids, special, rand, action, random_ids, mask_id):
        chosen = rand < 0.15
        if skip_special:
            chosen = chosen & ~special
        inputs = input_ids.clone()
        if replace == "80-10-10":
            inputs[chosen & (action < 0.8)] = mask_id
            swap = (action >= 0.8) & (action < 0.9)
            swap = swap & chosen if random_where == "chosen" else swap
            inputs[swap] = random_ids[swap]
        else:
            inputs[chosen] = mask_id
        if labels == "chosen":
            out = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
        elif labels == "everywhere":
            out = input_ids.clone()
        elif labels == "swapped":
            out = torch.where(chosen, torch.full_like(input_ids, -100), input_ids)
        else:  # read from the corrupted inputs
            out = torch.where(chosen, inputs, torch.full_like(input_ids, -100))
        return inputs, out
    return bert_mask


MASKING_MUTANTS = [
    Mutant("special tokens chosen", _masking_variant(skip_special=False),
           "special tokens ([CLS], [SEP], [PAD]) were chosen too: a position is chosen only where rand < 0.15 "
           "and special is False, chosen = (rand < 0.15) & ~special."),
    Mutant("labels everywhere", _masking_variant(labels="everywhere"),
           "the labels hold the original id at every position: the loss is taken at the chosen positions only, "
           "so every other label is -100, the ignore index of F.cross_entropy."),
    Mutant("labels -100 swapped", _masking_variant(labels="swapped"),
           "-100 and the ids are swapped in the labels: the original id goes where a position was chosen, -100 "
           "everywhere else, torch.where(chosen, input_ids, -100)."),
    Mutant("labels from the corrupted ids", _masking_variant(labels="corrupted"),
           "the labels were read after the corruption (they hold [MASK] or random ids): take them from the "
           "original input_ids, and corrupt a copy, inputs = input_ids.clone()."),
    Mutant("every chosen position masked", _masking_variant(replace="all"),
           "every chosen position became [MASK]: BERT masks 80% of them (action < 0.8), puts random_ids in 10% "
           "(0.8 <= action < 0.9) and leaves the last 10% unchanged (action >= 0.9)."),
    Mutant("random ids at unchosen positions", _masking_variant(random_where="everywhere"),
           "random ids were written at positions that were not chosen: the 10% random replacement applies to "
           "chosen positions only, chosen & (action >= 0.8) & (action < 0.9)."),
]


def check_bert_masking(fn, strict: bool = False) -> CheckResult:
    """Check ``fn(input_ids, special, rand, action, random_ids, mask_id)``, BERT's masking, -> (inputs, labels).

    ``input_ids`` (B, T) long; ``special`` (B, T) bool, True at [CLS], [SEP] and
    [PAD], which are never chosen; ``rand`` and ``action`` (B, T) float32 in
    [0, 1); ``random_ids`` (B, T) long; ``mask_id`` an int. A position is chosen
    where ``rand < 0.15`` and not special; a chosen position becomes ``mask_id``
    where ``action < 0.8``, ``random_ids`` where ``0.8 <= action < 0.9``, and stays
    where ``action >= 0.9``. ``labels`` is the original id at chosen positions and
    -100 elsewhere. Both outputs (B, T) torch.long, compared exactly. Known
    mistakes: special tokens chosen, labels everywhere, -100 and ids swapped,
    labels read from the corrupted ids, every chosen position masked, random ids
    at unchosen positions. ``strict=True`` raises ``AssertionError`` on failure.

    Introduced in §5.2.
    """
    return run_check("bert_masking", fn, _masking_cases(), _masking_variant(), MASKING_MUTANTS, strict=strict,
                     exact_dtype=True)


# ---------------------------------------------------------------------------
# Mean pooling over the real tokens


def _pooling_cases() -> list[Case]:
    gen = torch.Generator().manual_seed(51)

    def mask(lengths, T, dtype=torch.long):
        return (torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]).to(dtype)  # (B, T): 1 = token

    def outputs(B, T, C):
        return 2 * torch.randn(B, T, C, generator=gen) + 0.5  # padding positions hold non-zero outputs too

    return [
        Case("no padding", {"token_outputs": outputs(2, 5, 8), "attention_mask": mask([5, 5], 5)}),
        Case("padding of different lengths", {"token_outputs": outputs(3, 6, 8), "attention_mask": mask([6, 4, 2], 6)}),
        Case("a one-token sequence", {"token_outputs": outputs(2, 4, 6), "attention_mask": mask([1, 3], 4)}),
        Case("a bool mask", {"token_outputs": outputs(3, 7, 5), "attention_mask": mask([7, 3, 5], 7, torch.bool)}),
        Case("384 features, as all-MiniLM-L6-v2", {"token_outputs": outputs(2, 9, 384),
                                                   "attention_mask": mask([9, 6], 9)}),
    ]


def _mean_pooling(token_outputs, attention_mask):
    m = attention_mask.to(token_outputs.dtype).unsqueeze(-1)  # (B, T, 1)
    return (token_outputs * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)


def _mask_not_unsqueezed(token_outputs, attention_mask):
    return (token_outputs * attention_mask).sum(dim=1) / attention_mask.sum(dim=1, keepdim=True)


MEAN_POOLING_MUTANTS = [
    Mutant("padding averaged in", lambda x, mask: x.mean(dim=1),
           "the padding positions are averaged in: multiply by the mask (attention_mask[..., None]) and divide by "
           "the number of real tokens, mask.sum(dim=1), so padding changes nothing."),
    Mutant("masked sum", lambda x, mask: (x * mask[..., None]).sum(dim=1),
           "this is the sum over the real tokens: divide it by their number, attention_mask.sum(dim=1, "
           "keepdim=True), to get the mean."),
    Mutant("masked sum divided by T", lambda x, mask: (x * mask[..., None]).sum(dim=1) / x.shape[1],
           "the masked sum is divided by T, the padded length: divide by each sequence's number of real tokens, "
           "attention_mask.sum(dim=1, keepdim=True)."),
    Mutant("L2-normalised", lambda x, mask: F.normalize(_mean_pooling(x, mask), dim=-1),
           "the mean was L2-normalised: the exercise asks for the pooling only; normalisation "
           "(F.normalize(..., dim=-1)) is the next, separate step of the sentence-transformers pipeline."),
    Mutant("mask not unsqueezed", _mask_not_unsqueezed,
           "attention_mask is (B, T) and token_outputs (B, T, C): give the mask a feature axis before multiplying, "
           "attention_mask[..., None] or attention_mask.unsqueeze(-1), which broadcasts to (B, T, C)."),
]


def check_mean_pooling(fn, strict: bool = False) -> CheckResult:
    """Check ``fn(token_outputs, attention_mask)``, the mean of each sequence's outputs over its real tokens.

    ``token_outputs`` (B, T, C) float32; ``attention_mask`` (B, T), 1 for a token
    and 0 for padding, torch.long as tokenizers give it (one case passes bool)
    -> (B, C): the sum over the tokens with mask 1 divided by their number, as
    sentence-transformers pools all-MiniLM-L6-v2 before normalising. Every
    sequence has at least one token. Known mistakes: padding averaged in, the
    masked sum without dividing, divided by T, the mean L2-normalised, the mask
    not given a feature axis. ``strict=True`` raises ``AssertionError`` on
    failure.

    Introduced in §5.3.
    """
    return run_check("mean_pooling", fn, _pooling_cases(), _mean_pooling, MEAN_POOLING_MUTANTS, strict=strict,
                     rtol=1e-5, atol=1e-5)
