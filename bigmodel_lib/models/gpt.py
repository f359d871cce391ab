"""GPT: a decoder-only Transformer language model, in the layout of nanoGPT.

The layer names follow nanoGPT and GPT-2 (``transformer.wte``, ``transformer.h.0.attn.c_attn``,
``lm_head``, ...) so that weights of the same shapes load by a plain
state-dict copy. (GPT-2's own checkpoints store the linear layers as
``Conv1D``: their ``c_attn``, ``c_proj`` and ``c_fc`` weights must be transposed.)

The attention uses ``F.scaled_dot_product_attention(is_causal=True)``, which
picks a fused kernel (FlashAttention and the like) on GPU; set
``GPTConfig(fused_attention=False)`` to run the from-scratch
:func:`~bigmodel_lib.models.attention.scaled_dot_product_attention` instead.
Both go through :func:`~bigmodel_lib.models.attention.attend`, the one place
the choice is made, with the flag name that ``MultiHeadAttention`` and
``Seq2SeqConfig`` use too. The model also runs under
``torch.autocast(dtype=torch.bfloat16)`` and ``torch.compile``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from bigmodel_lib.devices import evaluation_mode
from bigmodel_lib.metrics import IGNORE_INDEX, check_class_indices
from bigmodel_lib.models.attention import attend, attention_weights

__all__ = ["GPTConfig", "GPT", "KVCache"]


class KVCache:
    """The keys and values of every token a :class:`GPT` has read so far, one pair per layer.

    ``layers[i]`` is layer i's ``(keys, values)``, each (B, nh, T, hs). During
    generation each new token's query attends to these, so the earlier tokens'
    keys and values are computed once instead of at every step: the work per
    new token grows linearly with the context instead of quadratically.
    Build an empty one and pass it to :meth:`GPT.forward_cached`.

    Introduced in §4.6.
    """

    def __init__(self) -> None:
        self.layers: list[tuple[torch.Tensor, torch.Tensor]] = []

    @property
    def length(self) -> int:
        """The number of tokens cached (0 when empty)."""
        return self.layers[0][0].size(2) if self.layers else 0


@dataclass
class GPTConfig:
    """Sizes of a :class:`GPT`. The defaults are a small character-level model that trains on a laptop CPU.

    GPT-2 small would be ``GPTConfig(block_size=1024, vocab_size=50257,
    n_layer=12, n_head=12, n_embd=768)``: another config, the same code.

    Introduced in §4.6.
    """

    block_size: int = 64  # longest context, the size of the position table
    vocab_size: int = 65  # e.g. the characters of Tiny Shakespeare
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True  # biases in the linear layers and layer norms, as in GPT-2
    fused_attention: bool = True  # F.scaled_dot_product_attention, else the from-scratch function


class CausalSelfAttention(nn.Module):
    """Masked multi-head self-attention with the three projections fused into one layer ``c_attn``.

    (B, T, C) -> (B, T, C).
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        if config.n_embd % config.n_head != 0:
            raise ValueError(
                f"expected n_embd divisible by n_head, got n_embd={config.n_embd} and n_head={config.n_head}"
            )
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout
        self.fused_attention = config.fused_attention
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # W^Q, W^K, W^V side by side
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)  # W^O
        self.resid_dropout = nn.Dropout(config.dropout)

    def _heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)  # 3 x (B, T, C)
        hs = C // self.n_head
        return tuple(z.view(B, T, self.n_head, hs).transpose(1, 2) for z in (q, k, v))  # 3 x (B, nh, T, hs)

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """The causal attention weights (B, nh, T, T) that ``forward(x)`` uses, e.g. to plot them."""
        q, k, _ = self._heads(x)
        return attention_weights(q, k, is_causal=True)

    def forward(self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None):
        """(B, T, C) -> (B, T, C). With ``past`` (the cached keys and values of P earlier tokens,
        each (B, nh, P, hs)), the T new tokens also attend to them, and the result is
        ``(y, (keys, values))`` with the P + T tokens' keys and values."""
        B, T, C = x.shape
        q, k, v = self._heads(x)  # (B, nh, T, hs) each
        dropout_p = self.dropout if self.training else 0.0
        if past is None:
            y = attend(q, k, v, is_causal=True, dropout_p=dropout_p, fused_attention=self.fused_attention)
        else:
            k, v = torch.cat((past[0], k), dim=2), torch.cat((past[1], v), dim=2)  # (B, nh, P + T, hs)
            P = k.size(2) - T
            # New token t sits at position P + t and may attend to keys 0 .. P + t (aligned bottom right).
            mask = torch.ones(T, P + T, dtype=torch.bool, device=x.device).tril(diagonal=P)
            y = attend(q, k, v, attn_mask=mask, dropout_p=dropout_p, fused_attention=self.fused_attention)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C): heads side by side again
        y = self.resid_dropout(self.c_proj(y))
        return y if past is None else (y, (k, v))


class MLP(nn.Module):
    """The feed-forward sublayer: widen 4x, GELU, project back. (B, T, C) -> (B, T, C)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))  # (B, T, C)


class Block(nn.Module):
    """A pre-norm Transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None):
        """(B, T, C) -> (B, T, C); with ``past``, ``(y, (keys, values))`` as in :class:`CausalSelfAttention`."""
        if past is None:
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))  # (B, T, C)
        a, present = self.attn(self.ln_1(x), past)
        x = x + a
        return x + self.mlp(self.ln_2(x)), present


class GPT(nn.Module):
    """The GPT language model: token + position embeddings, ``n_layer`` blocks, a final LayerNorm, a tied output layer.

    ``forward(idx, targets=None)`` maps token ids (B, T) to next-token logits
    (B, T, vocab_size) and, given ``targets`` (B, T), the cross-entropy loss
    (positions whose target is ``IGNORE_INDEX`` = -100 are ignored; ids
    outside ``[0, vocab_size)`` raise ``ValueError``). The output layer ``lm_head`` shares its
    weight with the token embedding ``transformer.wte`` (weight tying).

    Introduced in §4.6.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),  # token embeddings
                wpe=nn.Embedding(config.block_size, config.n_embd),  # learned position embeddings
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList(Block(config) for _ in range(config.n_layer)),
                ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying
        self.apply(self._init_weights)
        # GPT-2: scale the layers that write into the residual stream by 1/sqrt(2 * n_layer).
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_parameters(self, non_embedding: bool = False) -> int:
        """Number of parameters (the tied embedding counted once).

        With ``non_embedding=True`` the position table is left out, as in
        nanoGPT; the token table stays in because it is also the output layer.
        """
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.transformer.wpe.weight.numel()
        return n

    def flops_per_token(self) -> int:
        """Training FLOPs per token: 6 N (forward + backward matmuls) + 12 n_layer n_embd block_size (attention).

        The estimate of the PaLM paper (appendix B) used by nanoGPT's MFU;
        N = :meth:`num_parameters` (non_embedding).
        """
        c = self.config
        return 6 * self.num_parameters(non_embedding=True) + 12 * c.n_layer * c.n_embd * c.block_size

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        if idx.dim() != 2 or idx.dtype not in (torch.long, torch.int32):
            raise ValueError(
                f"expected token ids idx of shape (B, T) and an integer dtype, got shape {tuple(idx.shape)} "
                f"and dtype {idx.dtype}"
            )
        B, T = idx.shape
        if not torch.compiler.is_compiling():  # a data-dependent check would split the compiled graph
            check_class_indices(idx, self.config.vocab_size, "GPT", name="token ids idx")
        if T > self.config.block_size:
            raise ValueError(
                f"expected a sequence of at most block_size={self.config.block_size} tokens (the size of the "
                f"position table), got T={T}; crop the context to its last {self.config.block_size} tokens"
            )
        pos = torch.arange(T, dtype=torch.long, device=idx.device)  # (T,)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))  # (B, T, C)
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))  # (B, T, V)
        loss = None
        if targets is not None:
            if targets.shape != idx.shape:
                raise ValueError(
                    f"expected targets of the same shape as idx {tuple(idx.shape)}, got {tuple(targets.shape)}"
                )
            if not torch.compiler.is_compiling():
                check_class_indices(targets, self.config.vocab_size, "GPT", "targets", ignore_index=IGNORE_INDEX)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX)
        return logits, loss

    def forward_cached(self, idx: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Next-token logits (B, T, V) for new tokens ``idx`` (B, T) that follow the ``cache.length`` cached ones.

        The new tokens get positions ``cache.length`` to ``cache.length + T - 1``,
        attend to the cached keys and values and to each other (causally), and
        their keys and values are appended to ``cache``. From an empty cache it
        gives the same logits as ``forward(idx)``. Raises ``ValueError`` past
        ``block_size`` tokens in all (the position table ends there).
        """
        B, T = idx.shape
        start = cache.length
        if start + T > self.config.block_size:
            raise ValueError(
                f"expected at most block_size={self.config.block_size} tokens in cache and input together, "
                f"got {start} cached + {T} new; start a new cache from the last {self.config.block_size} tokens"
            )
        if cache.layers and cache.layers[0][0].size(0) != B:
            raise ValueError(f"expected a batch of {cache.layers[0][0].size(0)} (the cache's), got {B}")
        check_class_indices(idx, self.config.vocab_size, "GPT", name="token ids idx")
        pos = torch.arange(start, start + T, dtype=torch.long, device=idx.device)  # (T,)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))  # (B, T, C)
        if not cache.layers:  # an empty cache: zero earlier tokens in every layer
            nothing = x.new_zeros(B, self.config.n_head, 0, self.config.n_embd // self.config.n_head)
            cache.layers = [(nothing, nothing)] * self.config.n_layer
        for i, block in enumerate(self.transformer.h):
            x, cache.layers[i] = block(x, cache.layers[i])  # the layer's keys and values, now P + T long
        return self.lm_head(self.transformer.ln_f(x))  # (B, T, V)

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
        use_cache: bool = False,
    ) -> torch.Tensor:
        """Extend ``idx`` (B, T) by ``max_new_tokens`` sampled tokens, feeding each prediction back in.

        The logits are divided by ``temperature`` (below 1: sharper, above 1:
        flatter; 0 means always take the most likely token) and, with
        ``top_k``, all but the k most likely tokens are dropped before
        sampling. The context is cropped to the last ``block_size`` tokens.
        Runs in eval mode (no dropout). Returns (B, T + max_new_tokens).

        With ``use_cache=True`` each step feeds only the newest token and reads
        the earlier ones' keys and values from a :class:`KVCache`, as long as
        the whole sequence fits in ``block_size``. Past it the window slides and
        every token's position, hence its cached keys and values, changes (the
        positions are absolute), so those steps run the uncached forward pass on
        the cropped context, the tokens the uncached loop reads: the cache never
        makes a step slower. The logits are the same up to rounding, so greedy
        decoding gives the same tokens (the tests and section 4.6 check it).
        """
        if temperature < 0:
            raise ValueError(f"expected temperature >= 0, got {temperature}")
        if top_k is not None and not 1 <= top_k <= self.config.vocab_size:
            raise ValueError(f"expected top_k between 1 and vocab_size={self.config.vocab_size}, got {top_k}")
        cache = None
        with evaluation_mode(self):  # no dropout; the caller's mode is restored afterwards
            for _ in range(max_new_tokens):
                context = idx[:, -self.config.block_size :]  # (B, <= block_size)
                if not use_cache or idx.size(1) > self.config.block_size:  # the window slides: no cache
                    logits, _ = self(context)
                elif cache is None:  # first step: cache the prompt's keys and values
                    cache = KVCache()
                    logits = self.forward_cached(context, cache)
                else:
                    logits = self.forward_cached(idx[:, -1:], cache)  # only the newest token
                logits = logits[:, -1, :].float()  # (B, V): the prediction for the next token
                if temperature == 0:
                    next_id = logits.argmax(dim=-1, keepdim=True)  # (B, 1)
                else:
                    logits = logits / temperature
                    if top_k is not None:
                        kth_best = torch.topk(logits, top_k).values[:, [-1]]  # (B, 1)
                        logits = logits.masked_fill(logits < kth_best, float("-inf"))
                    probs = F.softmax(logits, dim=-1)
                    next_id = torch.multinomial(probs, num_samples=1, generator=generator)  # (B, 1)
                idx = torch.cat((idx, next_id), dim=1)
            return idx
