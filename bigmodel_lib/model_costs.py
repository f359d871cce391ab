"""What a published model costs: its parameters, its memory for training and serving, its training compute.

Chapter 1 predicted and measured the memory of a small model (:mod:`bigmodel_lib.memory`) and
counted training compute with the 6ND rule. This module applies the same arithmetic to models
described only by their published sizes:

* :func:`decoder_parameters` counts a Llama-style decoder's parameters from its configuration
  (RMSNorm, SwiGLU feed-forward, grouped-query attention, no biases, optionally a mixture of
  experts): the total stored and the part active on each token;
* :func:`training_memory_bytes` is the 16 bytes per parameter of mixed-precision training with
  Adam or AdamW (Rajbhandari et al. 2020), item by item;
* :func:`kv_cache_bytes` is the key-value cache of autoregressive decoding: keys and values of
  every layer for every cached token, with ``n_kv_heads`` below ``n_heads`` under grouped-query
  attention;
* :func:`training_flops`, :func:`training_gpu_hours` and :func:`training_energy_kwh` turn a
  parameter and token count into FLOPs (6ND), GPU-hours at a model FLOPs utilisation (MFU) and
  energy at a power draw.

All sizes are plain numbers (bytes, FLOPs, hours, kWh), so a 70-billion-parameter model costs no
memory to describe. Activations are left out of the training memory: they depend on the batch,
the sequence length and on checkpointing, and §1.4 measures them.
"""

from __future__ import annotations

import math
from numbers import Real

__all__ = [
    "MIXED_PRECISION_ADAM_BYTES",
    "decoder_parameters",
    "training_memory_bytes",
    "kv_cache_bytes",
    "training_flops",
    "training_gpu_hours",
    "training_energy_kwh",
]

MIXED_PRECISION_ADAM_BYTES = {"weights": 2, "gradients": 2, "master weights": 4, "optimizer state": 8}
"""Bytes per parameter of mixed-precision training with Adam or AdamW, by item; 16 in all.

16-bit (bf16 or fp16) weights and gradients for the forward and backward passes, a 32-bit master
copy of the weights that the update is applied to, and Adam's two 32-bit moments (Rajbhandari et al.
2020, section 3.1: ``2 + 2 + 12`` bytes per parameter).

Introduced in §8.6.
"""


def _positive(value, name: str, integer: bool = False) -> None:
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    if ok and integer:
        ok = float(value).is_integer()
    if not ok:
        kind = "a positive whole number" if integer else "a positive number"
        raise ValueError(f"expected {name} as {kind}, got {value!r}")


def decoder_parameters(
    vocab_size: int,
    d_model: int,
    n_layers: int,
    n_heads: int,
    n_kv_heads: int,
    d_ff: int,
    n_experts: int = 1,
    experts_per_token: int = 1,
    tied_embeddings: bool = False,
) -> dict[str, int]:
    """Parameters of a Llama-style decoder: ``{"total": ..., "active": ...}``.

    Per layer: the query and output projections (``d_model x d_model`` each), the key and value
    projections (``d_model x n_kv_heads * head_dim`` each, ``head_dim = d_model // n_heads``), a
    SwiGLU feed-forward of three ``d_model x d_ff`` matrices per expert, a router of
    ``d_model x n_experts`` when ``n_experts > 1``, and two RMSNorm weights of ``d_model``. Then the
    token embedding, a final RMSNorm and the output layer (``vocab_size x d_model``, shared with the
    embedding when ``tied_embeddings``). No biases. ``"active"`` counts ``experts_per_token`` experts
    instead of all of them: the parameters that touch one token. Raises ValueError for sizes that are
    not positive whole numbers, ``d_model`` not divisible by ``n_heads``, ``n_heads`` not divisible by
    ``n_kv_heads``, or ``experts_per_token`` above ``n_experts``.

    Introduced in §8.6.
    """
    sizes = dict(vocab_size=vocab_size, d_model=d_model, n_layers=n_layers, n_heads=n_heads,
                 n_kv_heads=n_kv_heads, d_ff=d_ff, n_experts=n_experts, experts_per_token=experts_per_token)
    for name, value in sizes.items():
        _positive(value, name, integer=True)
    if d_model % n_heads:
        raise ValueError(f"expected d_model divisible by n_heads, got d_model={d_model} and n_heads={n_heads}")
    if n_heads % n_kv_heads:
        raise ValueError(f"expected n_heads divisible by n_kv_heads (each key-value head serves a group of query "
                         f"heads), got n_heads={n_heads} and n_kv_heads={n_kv_heads}")
    if experts_per_token > n_experts:
        raise ValueError(f"expected experts_per_token <= n_experts, got {experts_per_token} > {n_experts}")
    head_dim = d_model // n_heads
    attention = 2 * d_model * d_model + 2 * d_model * n_kv_heads * head_dim  # W^Q, W^O; W^K, W^V
    expert = 3 * d_model * d_ff  # SwiGLU: gate, up and down projections
    router = d_model * n_experts if n_experts > 1 else 0
    norms = 2 * d_model
    embeddings = vocab_size * d_model * (1 if tied_embeddings else 2) + d_model  # + the final norm
    total = n_layers * (attention + n_experts * expert + router + norms) + embeddings
    active = n_layers * (attention + experts_per_token * expert + router + norms) + embeddings
    return {"total": int(total), "active": int(active)}


def training_memory_bytes(n_params: float, bytes_per_parameter: dict[str, float] | None = None) -> dict[str, float]:
    """Bytes held between steps when training ``n_params`` parameters, by item, and their ``"total"``.

    ``bytes_per_parameter`` maps each item to its bytes per parameter; the default is
    :data:`MIXED_PRECISION_ADAM_BYTES` (2 + 2 + 4 + 8 = 16 bytes). Activations are not included.
    Returns ``{item: bytes, ..., "total": bytes}``. Raises ValueError for a non-positive ``n_params``
    or a negative or non-numeric entry.

    Introduced in §8.6.
    """
    _positive(n_params, "n_params")
    items = MIXED_PRECISION_ADAM_BYTES if bytes_per_parameter is None else bytes_per_parameter
    for name, b in items.items():
        if not isinstance(b, Real) or isinstance(b, bool) or not math.isfinite(b) or b < 0:
            raise ValueError(f"expected bytes per parameter >= 0 for {name!r}, got {b!r}")
    breakdown = {name: n_params * b for name, b in items.items()}
    breakdown["total"] = sum(breakdown.values())
    return breakdown


def kv_cache_bytes(
    n_layers: int, n_kv_heads: int, head_dim: int, seq_len: int = 1, batch: int = 1, bytes_per: float = 2
) -> int:
    """Bytes of the key-value cache: ``2 * n_layers * n_kv_heads * head_dim * seq_len * batch * bytes_per``.

    Each layer keeps a key and a value of ``n_kv_heads * head_dim`` numbers for every cached token of
    every sequence. ``seq_len=1, batch=1`` gives the bytes per token; ``batch=1`` the bytes per
    sequence. Under grouped-query attention ``n_kv_heads`` is smaller than the number of query heads;
    with ordinary multi-head attention it equals it. ``bytes_per`` is 2 for bf16 or fp16, 4 for fp32.
    Raises ValueError for sizes that are not positive whole numbers or a non-positive ``bytes_per``.

    Introduced in §8.6.
    """
    for name, value in dict(n_layers=n_layers, n_kv_heads=n_kv_heads, head_dim=head_dim, seq_len=seq_len,
                            batch=batch).items():
        _positive(value, name, integer=True)
    _positive(bytes_per, "bytes_per")
    return int(2 * n_layers * n_kv_heads * head_dim * seq_len * batch * bytes_per)


def training_flops(n_params: float, n_tokens: float) -> float:
    """Training compute by the 6ND rule: ``6 * n_params * n_tokens`` FLOPs.

    2 FLOPs per parameter per token in the forward pass and 4 in the backward pass (Kaplan et al.
    2020); attention's own FLOPs are left out. For a mixture of experts pass the active parameters.
    Raises ValueError for non-positive inputs.

    Introduced in §8.6.
    """
    _positive(n_params, "n_params")
    _positive(n_tokens, "n_tokens")
    return 6.0 * n_params * n_tokens


def training_gpu_hours(n_params: float, n_tokens: float, gpu_flops: float, mfu: float) -> float:
    """GPU-hours to train: ``6 N D / (gpu_flops * mfu) / 3600``.

    ``gpu_flops`` is one GPU's peak in FLOP/s at the training precision (312e12 for an A100 in bf16),
    ``mfu`` the model FLOPs utilisation: the fraction of that peak the run sustains, counting only the
    6ND FLOPs. Raises ValueError for non-positive inputs or ``mfu`` above 1.

    Introduced in §8.6.
    """
    _positive(gpu_flops, "gpu_flops")
    _positive(mfu, "mfu")
    if mfu > 1:
        raise ValueError(f"expected mfu as a fraction of the peak in (0, 1], got {mfu!r}")
    return training_flops(n_params, n_tokens) / (gpu_flops * mfu) / 3600.0


def training_energy_kwh(gpu_hours: float, watts_per_gpu: float) -> float:
    """Energy in kWh of ``gpu_hours`` at ``watts_per_gpu``: ``gpu_hours * watts_per_gpu / 1000``.

    Use the power the source states (Touvron et al. 2023 give each GPU's peak power, adjusted for the
    data centre's power usage effectiveness). Raises ValueError for non-positive inputs.

    Introduced in §8.6.
    """
    _positive(gpu_hours, "gpu_hours")
    _positive(watts_per_gpu, "watts_per_gpu")
    return gpu_hours * watts_per_gpu / 1000.0
