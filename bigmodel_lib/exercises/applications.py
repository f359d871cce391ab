"""Checkers for chapter 6's exercises: the IoU of two sets of boxes, the probabilities of temperature and
top-k sampling, and the scaling of Whisper's log-mel features.

Each checker runs the learner's function on fixed and seeded cases against a
reference (``torchvision.ops.box_iou``; the lines of ``GPT.generate``; the lines
of ``log_mel_spectrogram``, both checked in ``tests/test_exercises_applications.py``)
and, when it fails, names the modelled mistake its output matches. See
``bigmodel_lib.exercises`` for the result they return.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F

from bigmodel_lib.exercises.checking import Case, CheckResult, Mutant, run_check

# ---------------------------------------------------------------------------
# Intersection over union of boxes (section 6.1)


def _box_iou_cases() -> list[Case]:
    gen = torch.Generator().manual_seed(61)

    def case(label, boxes1, boxes2):
        return Case(label, {"boxes1": torch.tensor(boxes1, dtype=torch.float32),
                            "boxes2": torch.tensor(boxes2, dtype=torch.float32)})

    def random_boxes(n):
        corner = 48 * torch.rand(n, 2, generator=gen)
        return torch.cat([corner, corner + 1 + 23 * torch.rand(n, 2, generator=gen)], dim=1)  # (n, 4)

    same = [[0, 0, 10, 10], [5, 5, 15, 25], [2, 3, 7, 4]]
    return [
        case("identical boxes", same, same),
        case("disjoint boxes", [[0, 0, 4, 4]], [[10, 10, 14, 14], [6, 0, 9, 4], [0, 8, 4, 12]]),
        case("boxes that touch along an edge or at a corner", [[0, 0, 4, 4]],
             [[4, 0, 8, 4], [0, 4, 4, 8], [4, 4, 6, 6]]),
        case("one box inside another", [[0, 0, 20, 20]], [[5, 5, 10, 10], [0, 0, 20, 10]]),
        case("partial overlaps", [[0, 0, 10, 10], [20, 20, 30, 40]], [[5, 5, 15, 15], [25, 0, 35, 30], [8, 2, 26, 24]]),
        case("a zero-width box (a line)", [[2, 2, 2, 6]], [[0, 0, 4, 4], [1, 3, 5, 8]]),
        Case("random boxes, fractional coordinates", {"boxes1": random_boxes(5), "boxes2": random_boxes(7)}),
    ]


def _box_iou_reference(boxes1, boxes2):
    from torchvision.ops import box_iou  # imported here: torchvision takes a moment to load

    return box_iou(boxes1, boxes2)  # (N, M)


def _area(boxes, plus=0.0):
    return (boxes[:, 2] - boxes[:, 0] + plus) * (boxes[:, 3] - boxes[:, 1] + plus)  # (N,)


def _iou(boxes1, boxes2, clamp=True, plus=0.0, union="union", swapped=False):
    """IoU with its defaults; each keyword changed is one modelled mistake."""
    pick_lt, pick_rb = (torch.minimum, torch.maximum) if swapped else (torch.maximum, torch.minimum)
    lt = pick_lt(boxes1[:, None, :2], boxes2[None, :, :2])  # (N, M, 2): the overlap's top-left corner
    rb = pick_rb(boxes1[:, None, 2:], boxes2[None, :, 2:])  # (N, M, 2): its bottom-right corner
    wh = rb - lt + plus
    if clamp:
        wh = wh.clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]  # (N, M)
    area1, area2 = _area(boxes1, plus)[:, None], _area(boxes2, plus)[None, :]
    if union == "sum":
        return inter / (area1 + area2)
    if union == "min":
        return inter / torch.minimum(area1, area2)
    return inter / (area1 + area2 - inter)


_iou_unclamped = partial(_iou, clamp=False)
_iou_inclusive = partial(_iou, plus=1.0)
_iou_overlap_twice = partial(_iou, union="sum")
_iou_over_min = partial(_iou, union="min")
_iou_corners_swapped = partial(_iou, swapped=True)


def _iou_xywh(boxes1, boxes2):
    def corners(b):  # (x, y, w, h) -> (x1, y1, x2, y2)
        return torch.cat([b[:, :2], b[:, :2] + b[:, 2:]], dim=1)
    return _iou(corners(boxes1), corners(boxes2))


def _iou_transposed(boxes1, boxes2):
    return _iou(boxes2, boxes1)  # (M, N)


BOX_IOU_MUTANTS = [
    Mutant("intersection not clamped", _iou_unclamped,
           "boxes that do not overlap get a non-zero IoU: when x2 - x1 or y2 - y1 of the overlap is negative, "
           "the product is negative (or, with both negative, positive). Clamp the overlap's width and height "
           "at 0 before multiplying, (rb - lt).clamp(min=0)."),
    Mutant("inclusive (+1) coordinates", _iou_inclusive,
           "widths and heights have + 1, PASCAL VOC's old convention of inclusive pixel indices: here corners "
           "lie on pixel edges (torchvision's convention), so a box's width is x2 - x1, and boxes that only "
           "touch overlap by 0."),
    Mutant("union counts the overlap twice", _iou_overlap_twice,
           "the union is area1 + area2, which counts the overlap twice: subtract it once, "
           "union = area1 + area2 - intersection (identical boxes must give 1, not 0.5)."),
    Mutant("intersection over the smaller box", _iou_over_min,
           "this divides by the smaller box's area (intersection over minimum): IoU divides by the union, so a "
           "small box inside a large one scores its share of the large one, not 1."),
    Mutant("min and max swapped", _iou_corners_swapped,
           "the overlap's corners use min and max the wrong way round, which gives the box enclosing both: the "
           "overlap starts at the larger x1 and y1 (torch.maximum) and ends at the smaller x2 and y2 "
           "(torch.minimum)."),
    Mutant("boxes read as (x, y, w, h)", _iou_xywh,
           "the boxes were read as (x, y, width, height): they are (x1, y1, x2, y2), two corners, so the width "
           "is x2 - x1 (torchvision.ops.box_convert converts between the formats)."),
    Mutant("result transposed", _iou_transposed,
           "the result is (M, N): row i must belong to boxes1[i] and column j to boxes2[j], so broadcast "
           "boxes1[:, None] against boxes2[None, :]."),
]


def check_box_iou(fn, strict: bool = False) -> CheckResult:
    """Check ``fn(boxes1, boxes2)``, the intersection over union of every pair of two sets of boxes.

    ``boxes1`` (N, 4) and ``boxes2`` (M, 4) float32 are ``(x1, y1, x2, y2)`` in
    pixels with corners on pixel edges (``x1 <= x2``, ``y1 <= y2``; a box's width
    is ``x2 - x1``); the result is (N, M), entry ``(i, j)`` the area of the overlap
    of ``boxes1[i]`` and ``boxes2[j]`` divided by the area of their union, in [0, 1]
    (no unit). Compared with ``torchvision.ops.box_iou``, also on disjoint and
    touching boxes and a zero-width box. Known mistakes: the intersection not
    clamped at 0, VOC's inclusive (+1) coordinates, the overlap counted twice in
    the union, intersection over the smaller box, min and max swapped, boxes read
    as (x, y, w, h), the result transposed. ``strict=True`` raises ``AssertionError``
    on failure.

    Introduced in §6.1.
    """
    return run_check("box_iou", fn, _box_iou_cases(), _box_iou_reference, BOX_IOU_MUTANTS, strict=strict,
                     rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------
# Temperature and top-k sampling (section 6.2)


def _sampling_cases() -> list[Case]:
    gen = torch.Generator().manual_seed(62)

    def case(label, logits, temperature, top_k):
        return Case(label, {"logits": logits, "temperature": temperature, "top_k": top_k})

    tie = torch.tensor([[2.0, 1.0, 1.0, 0.5, -1.0, 1.0], [0.0, 3.0, 2.0, 2.0, 2.0, -2.0]])
    return [
        case("temperature 1, every token kept", torch.randn(3, 10, generator=gen), 1.0, None),
        case("temperature 0.5: sharper", torch.randn(2, 12, generator=gen), 0.5, None),
        case("temperature 2 and top-k 3", torch.randn(4, 10, generator=gen), 2.0, 3),
        case("a tie at the k-th largest logit, top-k 2", tie, 0.5, 2),
        case("top-k 1: only the most likely token", torch.randn(3, 8, generator=gen), 0.7, 1),
        case("large logits, top-k 10", 30 * torch.randn(1, 50, generator=gen), 0.8, 10),
        case("top-k = V: nothing dropped", torch.randn(2, 6, generator=gen), 1.5, 6),
    ]


def _sampling_reference(logits, temperature, top_k):  # GPT.generate's lines (section 4.6)
    logits = logits / temperature
    if top_k is not None:
        kth_best = torch.topk(logits, top_k).values[:, [-1]]  # (B, 1)
        logits = logits.masked_fill(logits < kth_best, float("-inf"))
    return F.softmax(logits, dim=-1)  # (B, V)


def _sampling_variant(logits, temperature, top_k, multiply=False, dropped=torch.lt, fill=float("-inf")):
    """The reference with its defaults; each keyword changed is one modelled mistake."""
    logits = logits * temperature if multiply else logits / temperature
    if top_k is not None:
        kth_best = torch.topk(logits, top_k).values[:, [-1]]
        logits = logits.masked_fill(dropped(logits, kth_best), fill)
    return F.softmax(logits, dim=-1)


_sampling_multiplied = partial(_sampling_variant, multiply=True)
_sampling_kth_dropped = partial(_sampling_variant, dropped=torch.le)  # only those above the k-th: k - 1 kept
_sampling_zero_filled = partial(_sampling_variant, fill=0.0)


def _sampling_cut_after_softmax(logits, temperature, top_k):
    probs = F.softmax(logits / temperature, dim=-1)
    if top_k is None:
        return probs
    kth_best = torch.topk(logits, top_k).values[:, [-1]]
    return probs.masked_fill(logits < kth_best, 0.0)  # not renormalised


def _sampling_k_plus_one(logits, temperature, top_k):
    logits = logits / temperature
    if top_k is not None:
        kth_best = torch.sort(logits, dim=-1, descending=True).values[:, top_k, None]  # index k: the (k + 1)-th
        logits = logits.masked_fill(logits < kth_best, float("-inf"))
    return F.softmax(logits, dim=-1)


def _sampling_exactly_k(logits, temperature, top_k):
    logits = logits / temperature
    if top_k is not None:
        keep = torch.zeros_like(logits, dtype=torch.bool).scatter(1, torch.topk(logits, top_k).indices, True)
        logits = logits.masked_fill(~keep, float("-inf"))
    return F.softmax(logits, dim=-1)


def _sampling_power(logits, temperature, top_k):
    return _sampling_reference(logits, 1.0, top_k) ** (1.0 / temperature)  # not renormalised


def _sampling_top_k_ignored(logits, temperature, top_k):
    return F.softmax(logits / temperature, dim=-1)


SAMPLING_MUTANTS = [
    Mutant("temperature multiplies", _sampling_multiplied,
           "the logits were multiplied by the temperature: divide them, logits / T, so that T < 1 sharpens the "
           "distribution and T > 1 flattens it."),
    Mutant("top-k ignored", _sampling_top_k_ignored,
           "every token keeps a non-zero probability: with top_k, set the logits below the k-th largest of each "
           "row to -inf before the softmax, so that only the k best can be drawn."),
    Mutant("cut after the softmax", _sampling_cut_after_softmax,
           "the probabilities do not sum to 1: the tokens were dropped after the softmax and the rest not "
           "renormalised. Set the dropped logits to -inf before the softmax (or divide by the sum that is left)."),
    Mutant("dropped logits set to 0", _sampling_zero_filled,
           "the dropped tokens still get probability: a logit of 0 is not 'impossible', exp(0) = 1. Fill them "
           "with float('-inf'), which the softmax turns into exactly 0."),
    Mutant("k - 1 kept", _sampling_kth_dropped,
           "the k-th largest logit was dropped too (logits <= kth): keep every logit at or above it, "
           "masked_fill(logits < kth, -inf), so that top-k 1 keeps the best token."),
    Mutant("k + 1 kept", _sampling_k_plus_one,
           "one token too many is kept: sorted in descending order, the k-th largest logit is at index k - 1 "
           "(torch.topk(logits, k).values[:, [-1]]), not at index k."),
    Mutant("exactly k kept at a tie", _sampling_exactly_k,
           "at a tie with the k-th largest logit only k tokens were kept: GPT.generate keeps every token whose "
           "logit is not below the k-th largest value (logits < kth is dropped), so tied tokens are all kept; "
           "which of them torch.topk's indices pick is arbitrary."),
    Mutant("temperature on the probabilities", _sampling_power,
           "the temperature was applied to the probabilities as p ** (1 / T) and not renormalised: divide the "
           "logits by T before the softmax (p ** (1 / T) divided by its sum is the same thing)."),
]


def check_sampling_probs(fn, strict: bool = False) -> CheckResult:
    """Check ``fn(logits, temperature, top_k)``, the distribution that temperature and top-k sampling draw from.

    ``logits`` (B, V) float32 (one row of next-token scores per sequence),
    ``temperature`` a float > 0, ``top_k`` an int in [1, V] or None -> (B, V)
    probabilities, each row summing to 1: the logits divided by the temperature,
    those below the k-th largest of their row set to -inf (ties with it kept), then
    the softmax over the vocabulary, as ``GPT.generate`` computes them before
    ``torch.multinomial`` draws a token (the reference is those lines). Known
    mistakes: the temperature multiplying, top-k ignored, the cut after the softmax
    without renormalising, dropped logits set to 0, k - 1 or k + 1 tokens kept,
    exactly k kept at a tie, the temperature applied to the probabilities.
    ``strict=True`` raises ``AssertionError`` on failure.

    Introduced in §6.2.
    """
    return run_check("sampling_probs", fn, _sampling_cases(), _sampling_reference, SAMPLING_MUTANTS,
                     strict=strict, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------
# Whisper's log-mel scaling (section 6.3)


def _whisper_cases() -> list[Case]:
    gen = torch.Generator().manual_seed(63)

    def powers(n_frames, low, high):  # power spread evenly over decades, from 10**low to 10**high
        return 10.0 ** (low + (high - low) * torch.rand(80, n_frames, generator=gen))

    whistle, click = powers(25, -9, -4), powers(25, -9, -4)
    whistle[20] = powers(25, 1, 2)[0]  # one loud band, every frame
    click[:, 7] = powers(1, 1, 2)[:, 0]  # one loud frame, every band
    return [
        Case("14 decades of power, 40 frames", {"mel_power": powers(40, -12, 2)}),
        Case("silence: all zeros", {"mel_power": torch.zeros(80, 10)}),
        Case("quiet: all below 1e-6", {"mel_power": powers(30, -12, -6)}),
        Case("one loud band (a whistle)", {"mel_power": whistle}),
        Case("one loud frame (a click)", {"mel_power": click}),
        Case("a single frame", {"mel_power": powers(1, -10, 1)}),
    ]


def _whisper_reference(mel_power):  # log_mel_spectrogram's last three lines, for one example
    log_spec = torch.clamp(mel_power, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)  # at most 80 dB below the loudest value
    return (log_spec + 4.0) / 4.0


def _whisper_variant(mel_power, log=torch.log10, peak_dim=None, floor=True, rescale=True):
    """The reference with its defaults; each keyword changed is one modelled mistake."""
    log_spec = log(torch.clamp(mel_power, min=1e-10))
    peak = log_spec.max() if peak_dim is None else log_spec.amax(dim=peak_dim, keepdim=True)
    if floor:
        log_spec = torch.maximum(log_spec, peak - 8.0)
    return (log_spec + 4.0) / 4.0 if rescale else log_spec


_whisper_natural_log = partial(_whisper_variant, log=torch.log)
_whisper_no_floor = partial(_whisper_variant, floor=False)
_whisper_per_frame = partial(_whisper_variant, peak_dim=0)  # (1, T): each frame's loudest band
_whisper_per_band = partial(_whisper_variant, peak_dim=1)  # (80, 1): each band's loudest frame
_whisper_not_rescaled = partial(_whisper_variant, rescale=False)


def _whisper_precedence(mel_power):
    log_spec = torch.clamp(mel_power, min=1e-10).log10()
    return torch.maximum(log_spec, log_spec.max() - 8.0) + 4.0 / 4.0  # x + 1


def _whisper_log_of_zero(mel_power):
    log_spec = mel_power.log10()  # log10(0) = -inf
    return (torch.maximum(log_spec, log_spec.max() - 8.0) + 4.0) / 4.0


def _whisper_epsilon_added(mel_power):
    log_spec = (mel_power + 1e-10).log10()
    return (torch.maximum(log_spec, log_spec.max() - 8.0) + 4.0) / 4.0


def _whisper_ceiling(mel_power):
    log_spec = torch.clamp(mel_power, min=1e-10).log10()
    return (torch.minimum(log_spec, log_spec.max() - 8.0) + 4.0) / 4.0


def _whisper_floor_on_the_log(mel_power):
    log_spec = mel_power.log10().clamp(min=1e-10)  # the 1e-10 floor applied to the log, not to the power
    return (torch.maximum(log_spec, log_spec.max() - 8.0) + 4.0) / 4.0


WHISPER_SCALE_MUTANTS = [
    Mutant("natural logarithm", _whisper_natural_log,
           "this is the natural logarithm: Whisper uses log10, so that the floor max - 8 is 80 dB (8 factors of "
           "10) below the loudest value; use torch.log10."),
    Mutant("no 80 dB floor", _whisper_no_floor,
           "values more than 8 below the maximum were kept: raise them to max - 8, "
           "torch.maximum(log_spec, log_spec.max() - 8.0), so that silence and near-silence look the same."),
    Mutant("floor from each frame's maximum", _whisper_per_frame,
           "the floor was taken from each frame's loudest band (a maximum over dim 0): Whisper takes one maximum "
           "over the whole spectrogram, log_spec.max(), so a quiet frame keeps its detail."),
    Mutant("floor from each band's maximum", _whisper_per_band,
           "the floor was taken from each band's loudest frame (a maximum over dim 1): Whisper takes one maximum "
           "over the whole spectrogram, log_spec.max()."),
    Mutant("not rescaled", _whisper_not_rescaled,
           "the values were not rescaled: finish with (x + 4) / 4, which brings them to about [-1, 1], the range "
           "the model was trained on."),
    Mutant("x + 4 / 4", _whisper_precedence,
           "the result is x + 1: division binds tighter than addition, so x + 4.0 / 4.0 is x + 1.0. Write "
           "(x + 4.0) / 4.0."),
    Mutant("log of 0", _whisper_log_of_zero,
           "the power was not floored before the logarithm, so silence gives log10(0) = -inf: clamp it first, "
           "torch.clamp(mel_power, min=1e-10).log10()."),
    Mutant("1e-10 added", _whisper_epsilon_added,
           "1e-10 was added to the power: Whisper clamps it, max(power, 1e-10), which changes nothing above "
           "1e-10 (adding changes every value, visibly in a quiet recording)."),
    Mutant("floor as a ceiling", _whisper_ceiling,
           "values were lowered to max - 8 (torch.minimum, a ceiling): the floor raises the values below "
           "max - 8 to it, torch.maximum(log_spec, log_spec.max() - 8.0)."),
    Mutant("1e-10 floor on the log", _whisper_floor_on_the_log,
           "the 1e-10 floor was applied after the logarithm, to log10(power): it belongs before it, on the "
           "power, torch.clamp(mel_power, min=1e-10).log10(); after it, every negative log becomes 1e-10."),
]


def check_whisper_scale(fn, strict: bool = False) -> CheckResult:
    """Check ``fn(mel_power)``, the scaling that turns a mel power spectrogram into Whisper's input features.

    ``mel_power`` (80, T) float32, non-negative (power per mel band and 10-ms frame)
    -> (80, T): ``log10`` of the power floored at 1e-10, values more than 8 (80 dB)
    below the spectrogram's maximum raised to that maximum minus 8, then
    ``(x + 4) / 4``; the reference is the last lines of
    ``bigmodel_lib.speech.log_mel_spectrogram``, which equals Hugging Face's
    ``WhisperFeatureExtractor`` (``tests/test_whisper.py``). Known mistakes: the
    natural logarithm, no 80 dB floor, the floor from each frame's or each band's
    maximum, no rescaling, ``x + 4 / 4``, the log of 0, 1e-10 added instead of a
    floor, the floor as a ceiling, the 1e-10 floor applied after the logarithm.
    ``strict=True`` raises ``AssertionError`` on failure.

    Introduced in §6.3.
    """
    return run_check("whisper_scale", fn, _whisper_cases(), _whisper_reference, WHISPER_SCALE_MUTANTS,
                     strict=strict, rtol=1e-5, atol=1e-5)
