"""Chapter 6's exercise checkers (box IoU, sampling probabilities, Whisper's feature scaling): their references
equal well-kept implementations (torchvision, the GPT's own sampling, Hugging Face's logits warpers, the library's
log-mel front end), correct answers written several ways pass, every modelled mistake fails with its own hint
(also when a learner writes it their own way), an unfinished answer is reported as such, and strict mode raises."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from bigmodel_lib.exercises.applications import (
    BOX_IOU_MUTANTS,
    SAMPLING_MUTANTS,
    WHISPER_SCALE_MUTANTS,
    _box_iou_cases,
    _sampling_cases,
    _sampling_reference,
    _whisper_reference,
    check_box_iou,
    check_sampling_probs,
    check_whisper_scale,
)
from bigmodel_lib.exercises.checking import CheckResult

pytestmark = pytest.mark.usefixtures("one_thread")

# ---------------------------------------------------------------------------
# Correct answers, written the ways learners write them


def box_iou_chapter(boxes1, boxes2):  # the notebook's solution
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])  # (N,)
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])  # (M,)
    lt = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])  # (N, M, 2)
    rb = torch.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])  # (N, M, 2)
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]  # (N, M)
    return inter / (area1[:, None] + area2[None, :] - inter)


def box_iou_loops(boxes1, boxes2):
    rows = []
    for a in boxes1.tolist():
        row = []
        for b in boxes2.tolist():
            w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
            h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
            union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
            row.append(w * h / union)
        rows.append(row)
    return torch.tensor(rows).reshape(len(boxes1), len(boxes2))


def box_iou_unbound(boxes1, boxes2):
    x1, y1, x2, y2 = (c[:, None] for c in boxes1.unbind(1))  # (N, 1) each
    u1, v1, u2, v2 = (c[None, :] for c in boxes2.unbind(1))  # (1, M) each
    inter = (torch.min(x2, u2) - torch.max(x1, u1)).clamp(min=0) * (torch.min(y2, v2) - torch.max(y1, v1)).clamp(min=0)
    return inter / ((x2 - x1) * (y2 - y1) + (u2 - u1) * (v2 - v1) - inter)


def box_iou_torchvision(boxes1, boxes2):
    from torchvision.ops import box_iou

    return box_iou(boxes1, boxes2)


def sampling_chapter(logits, temperature, top_k):  # the notebook's solution: GPT.generate's lines
    logits = logits / temperature
    if top_k is not None:
        kth_best = torch.topk(logits, top_k).values[:, [-1]]  # (B, 1)
        logits = logits.masked_fill(logits < kth_best, float("-inf"))
    return F.softmax(logits, dim=-1)


def sampling_transformers(logits, temperature, top_k):  # Hugging Face's logits warpers
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper

    scores = TemperatureLogitsWarper(temperature)(None, logits)
    if top_k is not None:
        scores = TopKLogitsWarper(top_k)(None, scores)
    return scores.softmax(dim=-1)


def sampling_sorted(logits, temperature, top_k):
    scaled = logits / temperature
    if top_k is not None:
        threshold = scaled.sort(dim=-1, descending=True).values[:, top_k - 1 : top_k]  # (B, 1)
        scaled = torch.where(scaled >= threshold, scaled, torch.full_like(scaled, -math.inf))
    return scaled.softmax(-1)


def sampling_renormalised(logits, temperature, top_k):  # the cut after the softmax, then renormalised
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_k is not None:
        probs = probs * (logits >= logits.topk(top_k).values[:, -1:])
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return probs


def sampling_power_renormalised(logits, temperature, top_k):  # p ** (1 / T), renormalised: the same thing
    probs = sampling_chapter(logits, 1.0, top_k) ** (1 / temperature)
    return probs / probs.sum(dim=-1, keepdim=True)


def whisper_scale_chapter(mel_power):  # the notebook's solution: OpenAI's lines
    log_spec = torch.clamp(mel_power, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0


def whisper_scale_numpy(mel_power):
    log_spec = np.log10(np.maximum(mel_power.numpy(), 1e-10))
    return torch.from_numpy((np.maximum(log_spec, log_spec.max() - 8.0) + 4.0) / 4.0)


def whisper_scale_natural_log_converted(mel_power):
    log_spec = mel_power.clamp(min=1e-10).log() / math.log(10)
    return (log_spec.clamp(min=log_spec.max().item() - 8) + 4) / 4


def whisper_scale_decibels(mel_power):  # in dB: 10 log10, an 80 dB floor, then back to units of log10
    db = 10 * torch.log10(mel_power.clamp(min=1e-10))
    db = torch.maximum(db, db.max() - 80.0)
    return (db / 10 + 4) / 4


BOX_IOU_ANSWERS = [box_iou_chapter, box_iou_loops, box_iou_unbound, box_iou_torchvision]
SAMPLING_ANSWERS = [sampling_chapter, sampling_transformers, sampling_sorted, sampling_renormalised,
                    sampling_power_renormalised]
WHISPER_SCALE_ANSWERS = [whisper_scale_chapter, whisper_scale_numpy, whisper_scale_natural_log_converted,
                         whisper_scale_decibels]
CHECKS = [(check_box_iou, BOX_IOU_ANSWERS, BOX_IOU_MUTANTS), (check_sampling_probs, SAMPLING_ANSWERS, SAMPLING_MUTANTS),
          (check_whisper_scale, WHISPER_SCALE_ANSWERS, WHISPER_SCALE_MUTANTS)]


@pytest.mark.parametrize(("check", "answer"), [(c, a) for c, answers, _ in CHECKS for a in answers],
                         ids=lambda v: v.__name__)
def test_correct_answers_pass(check, answer):
    result = check(answer)
    assert isinstance(result, CheckResult) and result.passed, str(result)
    assert result.hint is None and result.mistake is None
    assert check(answer, strict=True).passed


# ---------------------------------------------------------------------------
# The references equal well-kept implementations


def test_box_iou_cases_hold_the_edge_cases():
    cases = {case.label: box_iou_loops(**case.args) for case in _box_iou_cases()}
    assert torch.equal(cases["identical boxes"].diagonal(), torch.ones(3))
    assert torch.equal(cases["disjoint boxes"], torch.zeros(1, 3))
    assert torch.equal(cases["boxes that touch along an edge or at a corner"], torch.zeros(1, 3))
    assert_close(cases["one box inside another"], torch.tensor([[25 / 400, 0.5]]))
    assert torch.equal(cases["a zero-width box (a line)"], torch.zeros(1, 2))
    random = cases["random boxes, fractional coordinates"]
    assert random.shape == (5, 7) and (random > 0).any()


def test_sampling_reference_is_what_gpt_generate_draws_from(monkeypatch):
    from bigmodel_lib.models.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=8, vocab_size=12, n_layer=1, n_head=2, n_embd=16)).eval()
    idx = torch.randint(0, 12, (3, 5), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        last = model(idx)[0][:, -1, :].float()  # (B, V): the logits the next token is drawn from
    drawn_from, multinomial = [], torch.multinomial

    def spy(probs, *args, **kwargs):
        drawn_from.append(probs.clone())
        return multinomial(probs, *args, **kwargs)

    monkeypatch.setattr(torch, "multinomial", spy)
    for temperature, top_k in [(1.0, None), (0.5, 3), (2.0, 1), (0.8, 12)]:
        model.generate(idx, 1, temperature=temperature, top_k=top_k)
        assert_close(drawn_from[-1], _sampling_reference(last, temperature, top_k), rtol=1e-5, atol=1e-6)


def test_sampling_reference_equals_hugging_face_on_every_case():
    for case in _sampling_cases():
        assert_close(sampling_transformers(**case.args), _sampling_reference(**case.args), rtol=0, atol=0)


def test_sampling_tie_case_keeps_every_tied_token():
    case = next(c for c in _sampling_cases() if c.label.startswith("a tie"))
    kept = (_sampling_reference(**case.args) > 0).sum(dim=-1)
    assert kept.tolist() == [4, 4]  # top-k 2, but the k-th largest value is shared by three tokens of each row


def _mel_power(audio: torch.Tensor) -> torch.Tensor:
    """log_mel_spectrogram's steps before the scaling, written out: (N,) -> (80, 3000) mel power."""
    from bigmodel_lib.speech import mel_filterbank

    audio = F.pad(audio, (0, 480_000 - audio.numel()))  # 30 s at 16 kHz
    stft = torch.stft(audio, 400, 160, window=torch.hann_window(400), return_complex=True)  # (201, 3001)
    return mel_filterbank() @ stft[:, :-1].abs() ** 2  # (80, 3000)


def test_whisper_reference_is_log_mel_spectrograms_scaling():
    from bigmodel_lib.speech import log_mel_spectrogram, speech_samples

    audio = speech_samples()[0].audio
    expected = log_mel_spectrogram(audio)
    assert_close(_whisper_reference(_mel_power(audio)), expected, rtol=1e-5, atol=1e-5)
    assert expected.min() == expected.max() - 2  # the 80 dB floor is reached: (max - 8 + 4) / 4 = max' - 2
    quiet = 1e-4 * audio  # 80 dB quieter: the floors differ, the 1e-10 one is reached too
    assert_close(_whisper_reference(_mel_power(quiet)), log_mel_spectrogram(quiet), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------
# Every modelled mistake is rejected with its own hint


@pytest.mark.parametrize(("check", "mutant"), [(c, m) for c, _, mutants in CHECKS for m in mutants],
                         ids=lambda v: getattr(v, "name", getattr(v, "__name__", "?")))
def test_each_modelled_mistake_gets_its_own_hint(check, mutant):
    result = check(mutant.fn)
    assert not result.passed and not result.unfinished, str(result)
    assert (result.mistake, result.hint) == (mutant.name, mutant.hint), str(result)
    assert "Hint: " + mutant.hint in str(result)
    with pytest.raises(AssertionError, match="FAILED"):
        check(mutant.fn, strict=True)


@pytest.mark.parametrize("mutants", [m for _, _, m in CHECKS], ids=["box_iou", "sampling", "whisper"])
def test_the_mistakes_are_several_with_distinct_hints(mutants):
    assert len(mutants) >= 5
    assert len({m.hint for m in mutants}) == len({m.name for m in mutants}) == len(mutants)


# The same mistakes written the way a learner would, not by the checker's own mutants


def learner_iou_unclamped(boxes1, boxes2):
    out = torch.zeros(len(boxes1), len(boxes2))
    for i, a in enumerate(boxes1):
        for j, b in enumerate(boxes2):
            inter = (min(a[2], b[2]) - max(a[0], b[0])) * (min(a[3], b[3]) - max(a[1], b[1]))
            out[i, j] = inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
    return out


def learner_iou_voc(boxes1, boxes2):
    x1 = torch.max(boxes1[:, None, 0], boxes2[:, 0])
    y1 = torch.max(boxes1[:, None, 1], boxes2[:, 1])
    x2 = torch.min(boxes1[:, None, 2], boxes2[:, 2])
    y2 = torch.min(boxes1[:, None, 3], boxes2[:, 3])
    inter = (x2 - x1 + 1).clamp(min=0) * (y2 - y1 + 1).clamp(min=0)
    area1 = (boxes1[:, 2] - boxes1[:, 0] + 1) * (boxes1[:, 3] - boxes1[:, 1] + 1)
    area2 = (boxes2[:, 2] - boxes2[:, 0] + 1) * (boxes2[:, 3] - boxes2[:, 1] + 1)
    return inter / (area1[:, None] + area2 - inter)


def learner_iou_sum(boxes1, boxes2):
    from torchvision.ops import box_area

    lt = torch.max(boxes1[:, None, :2], boxes2[:, :2])
    wh = (torch.min(boxes1[:, None, 2:], boxes2[:, 2:]) - lt).clamp(min=0)
    return wh.prod(-1) / (box_area(boxes1)[:, None] + box_area(boxes2))


def learner_iou_xywh(boxes1, boxes2):
    rows = []
    for x, y, w, h in boxes1.tolist():
        row = []
        for u, v, s, t in boxes2.tolist():
            iw = max(0.0, min(x + w, u + s) - max(x, u))
            ih = max(0.0, min(y + h, v + t) - max(y, v))
            row.append(iw * ih / (w * h + s * t - iw * ih))
        rows.append(row)
    return torch.tensor(rows)


def learner_sampling_multiplies(logits, temperature, top_k):
    scaled = temperature * logits
    if top_k:
        values, _ = torch.topk(scaled, top_k, dim=-1)
        scaled[scaled < values[:, -1:]] = -float("inf")
    return torch.softmax(scaled, -1)


def learner_sampling_zero_filled(logits, temperature, top_k):
    scaled = logits / temperature
    if top_k is not None:
        kth = scaled.topk(top_k).values.min(dim=-1, keepdim=True).values
        scaled = torch.where(scaled >= kth, scaled, torch.zeros_like(scaled))
    return scaled.softmax(-1)


def learner_sampling_scatter(logits, temperature, top_k):
    scaled = logits / temperature
    if top_k is None:
        return scaled.softmax(-1)
    values, indices = scaled.topk(top_k)
    kept = torch.full_like(scaled, float("-inf")).scatter(-1, indices, values)
    return kept.softmax(-1)


def learner_sampling_strictly_above(logits, temperature, top_k):
    scaled = logits / temperature
    if top_k is not None:
        kth = torch.sort(scaled, descending=True).values[:, top_k - 1].unsqueeze(1)
        scaled = scaled.masked_fill(~(scaled > kth), -torch.inf)
    return scaled.softmax(dim=1)


def learner_sampling_k_index(logits, temperature, top_k):
    scaled = logits / temperature
    if top_k is not None:
        kth = torch.sort(scaled, descending=True).values[:, top_k].unsqueeze(1)  # index k: one too many
        scaled = scaled.masked_fill(scaled < kth, -torch.inf)
    return scaled.softmax(dim=1)


def learner_whisper_ln(mel_power):
    log_spec = np.log(np.clip(mel_power.numpy(), 1e-10, None))
    return torch.from_numpy((np.maximum(log_spec, log_spec.max() - 8) + 4) / 4)


def learner_whisper_per_frame(mel_power):
    log_spec = mel_power.clamp(min=1e-10).log10()
    frames = [torch.maximum(frame, frame.max() - 8) for frame in log_spec.T]  # each frame's own maximum
    return (torch.stack(frames, dim=1) + 4) / 4


def learner_whisper_precedence(mel_power):
    log_spec = torch.log10(torch.clamp(mel_power, min=1e-10))
    log_spec = torch.clamp(log_spec, min=log_spec.max() - 8)
    return log_spec + 4 / 4


def learner_whisper_epsilon(mel_power):
    log_spec = torch.log10(mel_power + 1e-10)
    return (torch.clamp(log_spec, min=log_spec.max() - 8) + 4) / 4


def learner_whisper_no_floor(mel_power):
    return (torch.log10(torch.clamp(mel_power, min=1e-10)) + 4) / 4


LEARNER_MISTAKES = [
    (check_box_iou, learner_iou_unclamped, "Clamp the overlap's width and height"),
    (check_box_iou, learner_iou_voc, "inclusive pixel indices"),
    (check_box_iou, learner_iou_sum, "counts the overlap twice"),
    (check_box_iou, learner_iou_xywh, "(x, y, width, height)"),
    (check_sampling_probs, learner_sampling_multiplies, "multiplied by the temperature"),
    (check_sampling_probs, learner_sampling_zero_filled, "exp(0) = 1"),
    (check_sampling_probs, learner_sampling_scatter, "only k tokens were kept"),
    (check_sampling_probs, learner_sampling_strictly_above, "was dropped too"),
    (check_sampling_probs, learner_sampling_k_index, "one token too many"),
    (check_whisper_scale, learner_whisper_ln, "natural logarithm"),
    (check_whisper_scale, learner_whisper_per_frame, "each frame's loudest band"),
    (check_whisper_scale, learner_whisper_precedence, "division binds tighter"),
    (check_whisper_scale, learner_whisper_epsilon, "1e-10 was added"),
    (check_whisper_scale, learner_whisper_no_floor, "raise them to max - 8"),
]


@pytest.mark.parametrize(("check", "answer", "phrase"), LEARNER_MISTAKES,
                         ids=lambda v: v if isinstance(v, str) else getattr(v, "__name__", "?"))
def test_mistakes_written_by_a_learner_get_the_right_hint(check, answer, phrase):
    result = check(answer)
    assert not result.passed, str(result)
    assert result.hint is not None and phrase in result.hint, str(result)


# ---------------------------------------------------------------------------
# Unfinished answers, messages, strict mode


@pytest.mark.parametrize("check", [c for c, _, _ in CHECKS], ids=lambda c: c.__name__)
def test_an_unfinished_answer_is_not_finished_yet(check):
    def unfinished(*args):
        raise NotImplementedError

    result = check(unfinished)
    assert not result.passed and result.unfinished and "not finished yet" in str(result)
    assert check(None).unfinished
    with pytest.raises(AssertionError, match="not finished yet"):
        check(unfinished, strict=True)


def test_a_wrong_shape_is_named():
    result = check_box_iou(lambda boxes1, boxes2: box_iou_chapter(boxes1, boxes2).T)  # (M, N)
    assert result.message == ("on case 'disjoint boxes' (boxes1 (1, 4) float32, boxes2 (3, 4) float32): "
                              "expected shape (1, 3), got (3, 1)."), result.message
    assert result.mistake == "result transposed"


def test_the_messages_name_the_case_and_its_inputs():
    result = check_sampling_probs(learner_sampling_multiplies)
    assert result.message.startswith("on case 'temperature 0.5: sharper' (logits (2, 12) float32, temperature 0.5, "
                                     "top_k None): values differ from the reference"), result.message
    result = check_whisper_scale(learner_whisper_epsilon)
    assert result.message.startswith("on case 'quiet: all below 1e-6' (mel_power (80, 30) float32)"), result.message
    result = check_sampling_probs(learner_sampling_k_index)
    assert result.message.startswith("your function raised IndexError: index 6 is out of bounds"), result.message


def test_silence_without_the_power_floor_is_reported_as_infinite():
    result = check_whisper_scale(lambda mel_power: (torch.clamp(mel_power.log10(), min=mel_power.log10().max() - 8)
                                                    + 4) / 4)
    assert "your result contains" in result.message and "silence" in result.message, str(result)
    assert result.mistake == "log of 0"
