"""Instant feedback on the coding exercises: one check function per exercise.

Write the function an exercise asks for, then pass it (not its result) to the
exercise's checker::

    from bigmodel_lib.exercises import check_softmax

    def softmax(z):
        ...

    check_softmax(softmax)          # green when right; red, with a hint, when not

A checker runs your function on fixed edge cases and seeded random inputs,
compares the results with PyTorch's own function (``torch.testing.assert_close``)
and, when they differ, runs the modelled wrong implementations ("mutants") on the
same inputs: if yours matches one, the hint says which mistake it looks like.
An unfinished answer (raising ``NotImplementedError``, returning None or ``...``)
is reported as "not finished yet"; an answer that raises another exception gets
a message naming it and the inputs that triggered it. Everything is seeded and
runs on the CPU in well under a second, offline: it needs only the library and
torch, in Colab, JupyterLab, VS Code or a renamed copy of a notebook.

Each checker returns a ``CheckResult`` (``passed``, ``message``, ``hint``,
``mistake``) and takes ``strict=False``; ``strict=True`` raises
``AssertionError`` with the message instead, as an autograder wants.

The checkers, by chapter:

- chapter 1: ``check_softmax``, ``check_cross_entropy``, ``check_adamw_step``
- chapter 2: ``check_conv2d``, ``check_max_pool2d``, ``check_conv_output_size``
- chapter 3: ``check_clip_grad_norm``, ``check_lstm_cell``, ``check_gru_cell``
- chapter 4: ``check_attention``, ``check_causal_mask``, ``check_positional_encoding``,
  ``check_layer_norm``
- chapter 5: ``check_pair_counts``, ``check_bert_masking``, ``check_mean_pooling``
- chapter 6: ``check_box_iou``, ``check_sampling_probs``, ``check_whisper_scale``
- chapter 7: ``check_patch_embedding``, ``check_causal_conv1d``, ``check_int8_linear``
- chapter 8: ``check_chinchilla_optimal``, ``check_flip_labels``, ``check_kv_cache_bytes``

``CHECKERS`` maps each exercise's name (``"softmax"``) to its checker.
"""

from __future__ import annotations

from bigmodel_lib.exercises.applications import check_box_iou, check_sampling_probs, check_whisper_scale
from bigmodel_lib.exercises.attention import (
    check_attention,
    check_causal_mask,
    check_layer_norm,
    check_positional_encoding,
)
from bigmodel_lib.exercises.checking import CheckResult as CheckResult  # re-exported
from bigmodel_lib.exercises.choosing import check_causal_conv1d, check_int8_linear, check_patch_embedding
from bigmodel_lib.exercises.convolution import check_conv2d, check_conv_output_size, check_max_pool2d
from bigmodel_lib.exercises.learning import check_adamw_step, check_cross_entropy, check_softmax
from bigmodel_lib.exercises.pretraining import check_bert_masking, check_mean_pooling, check_pair_counts
from bigmodel_lib.exercises.recurrent import check_clip_grad_norm, check_gru_cell, check_lstm_cell
from bigmodel_lib.exercises.trends import check_chinchilla_optimal, check_flip_labels, check_kv_cache_bytes

# Each checker is called by its chapter's exercise notebook (notebooks/NN_<chapter>_exercises.ipynb), which
# tests/test_introduced_in.py counts as that chapter's code; CheckResult is what every check cell shows.
# CHECKERS is for tools (an autograder), not the book.
__all__ = [
    "CheckResult",
    "check_softmax",
    "check_cross_entropy",
    "check_adamw_step",
    "check_conv2d",
    "check_max_pool2d",
    "check_conv_output_size",
    "check_clip_grad_norm",
    "check_lstm_cell",
    "check_gru_cell",
    "check_attention",
    "check_causal_mask",
    "check_positional_encoding",
    "check_layer_norm",
    "check_pair_counts",
    "check_bert_masking",
    "check_mean_pooling",
    "check_box_iou",
    "check_sampling_probs",
    "check_whisper_scale",
    "check_patch_embedding",
    "check_causal_conv1d",
    "check_int8_linear",
    "check_chinchilla_optimal",
    "check_flip_labels",
    "check_kv_cache_bytes",
]

CHECKERS = {
    "softmax": check_softmax,
    "cross_entropy": check_cross_entropy,
    "adamw_step": check_adamw_step,
    "conv2d": check_conv2d,
    "max_pool2d": check_max_pool2d,
    "conv_output_size": check_conv_output_size,
    "clip_grad_norm": check_clip_grad_norm,
    "lstm_cell": check_lstm_cell,
    "gru_cell": check_gru_cell,
    "attention": check_attention,
    "causal_mask": check_causal_mask,
    "positional_encoding": check_positional_encoding,
    "layer_norm": check_layer_norm,
    "pair_counts": check_pair_counts,
    "bert_masking": check_bert_masking,
    "mean_pooling": check_mean_pooling,
    "box_iou": check_box_iou,
    "sampling_probs": check_sampling_probs,
    "whisper_scale": check_whisper_scale,
    "patch_embedding": check_patch_embedding,
    "causal_conv1d": check_causal_conv1d,
    "int8_linear": check_int8_linear,
    "chinchilla_optimal": check_chinchilla_optimal,
    "flip_labels": check_flip_labels,
    "kv_cache_bytes": check_kv_cache_bytes,
}
