"""Self-supervised objectives: the targets come from the text itself, not from labels.

* :func:`causal_lm_targets` -- next-token prediction (GPT): inputs ``ids[:, :-1]``, targets ``ids[:, 1:]``.
* :func:`mask_tokens` -- masked language modelling as BERT defines it (Devlin et al., 2019):
  choose 15% of the non-special positions; of those, 80% become ``[MASK]``, 10% a random token,
  10% stay as they are; the targets are the original ids at the chosen positions and
  :data:`IGNORE_INDEX` elsewhere.

Shapes: ``B`` sequences of ``T`` token ids.
"""

from __future__ import annotations

from collections.abc import Collection

import torch

__all__ = ["IGNORE_INDEX", "causal_lm_targets", "mask_tokens"]

IGNORE_INDEX = -100
"""The label of a position with nothing to predict: PyTorch's ``F.cross_entropy`` default, and the
value of ``bigmodel_lib.metrics.IGNORE_INDEX`` (a module of the same layer, so it is not imported
here; ``tests/test_objectives.py`` checks that the two are equal).

Introduced in §5.2.
"""


def _check_ids(ids: torch.Tensor, name: str) -> None:
    if not isinstance(ids, torch.Tensor):
        raise TypeError(f"expected {name} as a torch.Tensor, got {type(ids).__name__}")
    if ids.dtype != torch.long:
        raise TypeError(f"expected {name} of dtype torch.long (token ids), got {ids.dtype}")
    if ids.dim() != 2:
        raise ValueError(f"expected {name} of shape (B, T), got {tuple(ids.shape)}")


def causal_lm_targets(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-token targets for causal language modelling: ``(ids[:, :-1], ids[:, 1:])``.

    Args:
        ids: (B, T) ``torch.long`` token ids, ``T >= 2``.

    Returns:
        ``(x, y)``, both (B, T - 1): the model reads ``x[:, :t+1]`` and predicts ``y[:, t]``.

    Raises:
        TypeError: ``ids`` is not a ``torch.long`` tensor.
        ValueError: ``ids`` is not 2-D or has fewer than 2 positions.

    Introduced in §5.2.
    """
    _check_ids(ids, "ids")
    if ids.shape[1] < 2:
        raise ValueError(f"expected at least 2 positions to predict a next token, got shape {tuple(ids.shape)}")
    return ids[:, :-1], ids[:, 1:]


def _check_probability(p: float, name: str) -> None:
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 <= p <= 1.0:
        raise ValueError(f"expected {name} to be a probability in [0, 1], got {p!r}")


def mask_tokens(
    input_ids: torch.Tensor,
    *,
    mask_id: int,
    vocab_size: int,
    special_ids: Collection[int] = (),
    mlm_probability: float = 0.15,
    mask_replace_prob: float = 0.8,
    random_replace_prob: float = 0.1,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masked-language-model corruption: inputs with some tokens hidden, and the targets to recover.

    Each position whose id is not in ``special_ids`` is chosen with probability
    ``mlm_probability``. A chosen position becomes ``mask_id`` with probability
    ``mask_replace_prob``, a uniformly random id in ``[0, vocab_size)`` with probability
    ``random_replace_prob``, and is left unchanged otherwise (BERT: 15%; 80/10/10).
    The random draws are made in the order of Hugging Face's ``DataCollatorForLanguageModeling``,
    so with generators seeded alike the two give the same tensors.

    Args:
        input_ids: (B, T) ``torch.long`` token ids; not modified.
        mask_id: the id of ``[MASK]``.
        vocab_size: random replacements are drawn from ``0 .. vocab_size - 1``.
        special_ids: ids never chosen (``[CLS]``, ``[SEP]``, ``[PAD]``).
        generator: the random source (``None``: PyTorch's global one).

    Returns:
        ``(inputs, labels)``, both (B, T) ``torch.long``: ``labels`` holds the original id at
        chosen positions and :data:`IGNORE_INDEX` (-100) elsewhere; ``inputs`` equals
        ``input_ids`` wherever ``labels`` is -100.

    Raises:
        TypeError: ``input_ids`` is not a ``torch.long`` tensor.
        ValueError: ``input_ids`` is not 2-D; a probability outside [0, 1];
            ``mask_replace_prob + random_replace_prob > 1``; ``mask_id`` outside ``[0, vocab_size)``.

    Introduced in §5.2.
    """
    _check_ids(input_ids, "input_ids")
    for p, name in [
        (mlm_probability, "mlm_probability"),
        (mask_replace_prob, "mask_replace_prob"),
        (random_replace_prob, "random_replace_prob"),
    ]:
        _check_probability(p, name)
    if mask_replace_prob + random_replace_prob > 1.0:
        raise ValueError(
            f"expected mask_replace_prob + random_replace_prob <= 1, got {mask_replace_prob} + {random_replace_prob}"
        )
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
        raise ValueError(f"expected vocab_size as a positive int, got {vocab_size!r}")
    if not 0 <= mask_id < vocab_size:
        raise ValueError(f"expected mask_id in [0, {vocab_size}), got {mask_id!r}")
    labels = input_ids.clone()
    inputs = input_ids.clone()
    probability = torch.full(labels.shape, mlm_probability)  # (B, T)
    special = torch.isin(labels.cpu(), torch.tensor(sorted(special_ids), dtype=torch.long))
    probability.masked_fill_(special, 0.0)
    chosen = torch.bernoulli(probability, generator=generator).bool().to(labels.device)
    labels[~chosen] = IGNORE_INDEX
    replaced = torch.bernoulli(torch.full(labels.shape, mask_replace_prob), generator=generator).bool()
    replaced = replaced.to(labels.device) & chosen
    inputs[replaced] = mask_id
    if mask_replace_prob == 1.0 or random_replace_prob == 0.0:
        return inputs, labels
    scaled = random_replace_prob / (1.0 - mask_replace_prob)  # P(random | chosen, not [MASK])
    randomised = torch.bernoulli(torch.full(labels.shape, scaled), generator=generator).bool()
    randomised = randomised.to(labels.device) & chosen & ~replaced
    random_ids = torch.randint(vocab_size, labels.shape, dtype=torch.long, generator=generator).to(labels.device)
    inputs[randomised] = random_ids[randomised]
    return inputs, labels
