"""Reference models built from PyTorch's own modules, to check the library's from-scratch models against.

Not a test module (pytest collects only ``test_*.py``): the tests import it,
and so does ``benchmarks/bench_gpt.py``, which times the library's GPT against
:class:`ReferenceGPT`. As LLMs-from-scratch does, a from-scratch model is
trusted once it gives the reference's outputs and gradients with copied
weights (``torch.testing.assert_close``).
"""

from __future__ import annotations

import re

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["ReferenceGPT", "gpt_to_reference_state_dict"]


class ReferenceGPT(nn.Module):
    """The network of :class:`bigmodel_lib.models.gpt.GPT`, assembled from ``nn.TransformerEncoderLayer``.

    Token and position embeddings, ``n_layer`` pre-norm encoder layers run
    with a causal mask, a final LayerNorm and an output layer tied to the token
    embedding. ``config`` is a ``GPTConfig`` (any object with its fields).
    ``forward(idx, targets=None)`` maps ids (B, T) to logits (B, T, V) and,
    given targets (B, T), the float32 cross-entropy loss (-100 ignored), like
    ``GPT.forward``. The layer details are spelled out to match the library:
    LayerNorm eps 1e-5 and the exact (erf) GELU of ``nn.GELU()`` (GPT-2 itself
    used the tanh approximation). In eval mode, or with ``dropout=0``, it
    computes the library GPT's function; with dropout it differs, because
    ``nn.TransformerEncoderLayer`` also drops activations inside its
    feed-forward block.
    """

    layer_norm_eps = 1e-5

    def __init__(self, config):
        super().__init__()
        c = config
        self.wte = nn.Embedding(c.vocab_size, c.n_embd)
        self.wpe = nn.Embedding(c.block_size, c.n_embd)
        self.drop = nn.Dropout(c.dropout)
        layer = nn.TransformerEncoderLayer(
            c.n_embd,
            c.n_head,
            4 * c.n_embd,
            c.dropout,
            activation=nn.GELU(approximate="none"),
            layer_norm_eps=self.layer_norm_eps,
            batch_first=True,
            norm_first=True,
            bias=c.bias,
        )
        self.encoder = nn.TransformerEncoder(layer, c.n_layer, enable_nested_tensor=False)
        self.ln_f = nn.LayerNorm(c.n_embd, eps=self.layer_norm_eps, bias=c.bias)
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        self.wte.weight = self.lm_head.weight  # weight tying

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        T = idx.size(1)
        causal = nn.Transformer.generate_square_subsequent_mask(T, device=idx.device)  # (T, T) float, -inf above
        x = self.drop(self.wte(idx) + self.wpe(torch.arange(T, device=idx.device)))  # (B, T, C)
        x = self.encoder(x, mask=causal, is_causal=True)  # (B, T, C)
        logits = self.lm_head(self.ln_f(x))  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)
        return logits, loss


# The library GPT's names (nanoGPT's) -> ReferenceGPT's names, applied in order.
_GPT_TO_REFERENCE = (
    (r"^transformer\.h\.(\d+)\.", r"encoder.layers.\1."),
    (r"\.attn\.c_attn\.weight$", ".self_attn.in_proj_weight"),  # W^Q, W^K, W^V stacked, in the same order
    (r"\.attn\.c_attn\.bias$", ".self_attn.in_proj_bias"),
    (r"\.attn\.c_proj\.", ".self_attn.out_proj."),  # W^O
    (r"\.mlp\.c_fc\.", ".linear1."),
    (r"\.mlp\.c_proj\.", ".linear2."),
    (r"\.ln_1\.", ".norm1."),
    (r"\.ln_2\.", ".norm2."),
    (r"^transformer\.(wte|wpe|ln_f)\.", r"\1."),
)


def gpt_to_reference_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A library GPT's state dict under :class:`ReferenceGPT`'s names; no tensor needs a transpose.

    Load it with ``load_state_dict(..., strict=True)``: that fails on any key
    the renaming missed and on any shape that differs.
    """
    renamed = {}
    for name, tensor in state_dict.items():
        for pattern, replacement in _GPT_TO_REFERENCE:
            name = re.sub(pattern, replacement, name)
        renamed[name] = tensor
    return renamed
