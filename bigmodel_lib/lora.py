"""LoRA: low-rank adaptation of a frozen network (Hu et al., 2021).

Fine-tuning changes every weight matrix :math:`W` (d_out, d_in) of a pretrained model. LoRA freezes
:math:`W` and learns a low-rank change instead, two small matrices :math:`B` (d_out, r) and
:math:`A` (r, d_in) with r much smaller than d_in and d_out:

.. math::

    h = x W^\\top + b + \\frac{\\alpha}{r}\\, x A^\\top B^\\top ,
    \\qquad W' = W + \\frac{\\alpha}{r} B A .

:math:`B` starts at zero, so the adapted model starts as the pretrained one exactly, and only
:math:`A` and :math:`B` receive gradients: r (d_in + d_out) trainable numbers per matrix instead of
d_in d_out. After training, :func:`merge_lora` folds :math:`\\frac{\\alpha}{r} BA` into :math:`W`, so
inference costs nothing extra; keeping the adapter apart instead lets one frozen model serve several
tasks, and switching the adapter off (:func:`set_lora_enabled`) gives the pretrained model back.

The names and initialisation are those of Hugging Face ``peft`` (``lora_A`` Kaiming-uniform as
``nn.Linear`` initialises its weights, ``lora_B`` zeros, scaling alpha / r), which
``tests/test_lora.py`` uses as the reference.

Shapes: ``...`` any leading dimensions (batch, time).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn as nn

__all__ = ["LoRALinear", "add_lora", "merge_lora", "set_lora_enabled"]


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank change: ``base(x) + (alpha / r) * dropout(x) A^T B^T``.

    ``base``: the pretrained layer, weight (d_out, d_in); its parameters are frozen (``requires_grad``
    set to False). ``r``: the rank, 1 <= r <= min(d_in, d_out). ``alpha``: the scale numerator (the change
    is multiplied by alpha / r, so changing r does not change the size of the update at initialisation).
    ``dropout``: applied to the adapter's input only. Input (..., d_in), output (..., d_out).
    Raises ``TypeError`` if ``base`` is not an ``nn.Linear`` and ``ValueError`` for a rank or alpha out of range.

    Introduced in §5.5.
    """

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float = 8.0, dropout: float = 0.0):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear adapts an nn.Linear, got {type(base).__name__}")
        d_out, d_in = base.weight.shape
        if not isinstance(r, int) or isinstance(r, bool) or not 1 <= r <= min(d_in, d_out):
            raise ValueError(f"expected an integer rank r with 1 <= r <= min(d_in, d_out) = {min(d_in, d_out)}, got {r!r}")
        if not alpha > 0:
            raise ValueError(f"expected alpha > 0, got {alpha!r}")
        self.base, self.r, self.alpha, self.scaling = base, r, alpha, alpha / r
        for p in base.parameters():
            p.requires_grad_(False)
        factory = dict(device=base.weight.device, dtype=base.weight.dtype)
        self.lora_A = nn.Parameter(torch.empty(r, d_in, **factory))  # (r, d_in)
        self.lora_B = nn.Parameter(torch.zeros(d_out, r, **factory))  # (d_out, r): zero, so the start is `base`
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear and peft initialise
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.enabled = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)  # (..., d_out)
        if not self.enabled:
            return y
        return y + (self.dropout(x) @ self.lora_A.T @ self.lora_B.T) * self.scaling  # never forms B A

    def delta_weight(self) -> torch.Tensor:
        """(alpha / r) B A, shape (d_out, d_in): what merging adds to the base weight."""
        return (self.lora_B @ self.lora_A) * self.scaling

    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` with weight W + (alpha / r) B A and the base's bias: the same outputs, no adapter."""
        base = self.base
        layer = nn.Linear(base.in_features, base.out_features, bias=base.bias is not None,
                          device=base.weight.device, dtype=base.weight.dtype)
        with torch.no_grad():
            layer.weight.copy_(base.weight + self.delta_weight())
            if base.bias is not None:
                layer.bias.copy_(base.bias)
        return layer

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha}, enabled={self.enabled}"


def add_lora(model: nn.Module, targets: Iterable[str] = ("w_q", "w_v"), r: int = 8, alpha: float = 8.0,
             dropout: float = 0.0) -> list[str]:
    """Freeze every parameter of ``model`` and wrap each ``nn.Linear`` whose attribute name is in ``targets``
    in a :class:`LoRALinear`, in place. Returns the full names of the wrapped layers.

    The default targets, the query and value projections of the library's ``MultiHeadAttention``,
    are those of the LoRA paper's main experiments and of ``peft`` for BERT. Parameters added to
    the model afterwards (a task head) stay trainable. Raises ``ValueError`` when no layer matches,
    naming the linear layers the model has.

    Introduced in §5.5.
    """
    targets = {targets} if isinstance(targets, str) else set(targets)
    found = [(name, module) for name, module in model.named_modules()
             if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in targets]
    if not found:
        linear = sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise ValueError(f"no nn.Linear named {sorted(targets)} in the model; its linear layers are named {linear}")
    for p in model.parameters():
        p.requires_grad_(False)
    for name, module in found:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear(module, r=r, alpha=alpha, dropout=dropout))
    return [name for name, _ in found]


def merge_lora(model: nn.Module) -> nn.Module:
    """Replace every :class:`LoRALinear` in ``model`` by its merged ``nn.Linear`` (in place); returns ``model``.

    The merged layers are frozen like the rest, so the model is ready for inference.

    Introduced in §5.5.
    """
    adapted = [(name, m) for name, m in model.named_modules() if isinstance(m, LoRALinear)]
    for name, module in adapted:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        layer = module.merged()
        layer.requires_grad_(False)
        setattr(parent, child, layer)
    return model


def set_lora_enabled(model: nn.Module, enabled: bool) -> int:
    """Switch every adapter of ``model`` on or off; off gives the frozen pretrained model back exactly.

    Returns the number of adapters switched.

    Introduced in §5.5.
    """
    count = 0
    for module in model.modules():
        if isinstance(module, LoRALinear):
            module.enabled = bool(enabled)
            count += 1
    return count
