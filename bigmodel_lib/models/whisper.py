"""Whisper, the encoder-decoder speech recogniser (Radford et al., 2023), for the pretrained tiny.en weights.

Audio becomes (B, 80, 3000) log-mel features (:func:`bigmodel_lib.speech.log_mel_spectrogram`); two
1-D convolutions with GELU (the second with stride 2) turn them into 1,500 frames of width C, one per
20 ms; sinusoidal positions are added and a stack of pre-norm Transformer layers encodes them. The
decoder is a pre-norm Transformer decoder with learned positions: causal self-attention over the text
so far, cross-attention to the encoded audio, a GELU MLP; its output is multiplied with the token
embedding (tied weights) to give the logits of the next token. Query, value and output projections have
biases, the key projection has none.

Layer names are those of OpenAI's reference code (``blocks.0.attn.query``, ``cross_attn``, ``mlp``,
``ln_post``, ...); :meth:`Whisper.from_ctranslate2` maps the CTranslate2 file's names onto them.
Shapes: B batch, T text tokens, S audio frames (1,500), C width, nh heads, hs head size.
"""

from __future__ import annotations

import math
import pathlib
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from bigmodel_lib.models.attention import attend
from bigmodel_lib.speech import read_ctranslate2_model

__all__ = ["WhisperConfig", "whisper_sinusoids", "Whisper", "greedy_decode"]


@dataclass
class WhisperConfig:
    """The sizes of a Whisper model; the defaults are tiny.en's (4 + 4 layers, width 384, 6 heads).

    ``n_mels`` input bands, ``n_audio_ctx`` encoder frames (1,500 = 30 s), ``n_text_ctx`` decoder
    positions (448), ``n_vocab`` tokens (51,864 for the English-only models). ``fused_attention``
    picks PyTorch's fused attention kernel over the from-scratch one (same results; see
    :func:`~bigmodel_lib.models.attention.attend`).

    Introduced in §6.3.
    """

    n_mels: int = 80
    n_audio_ctx: int = 1500
    n_text_ctx: int = 448
    n_vocab: int = 51864
    d_model: int = 384
    n_heads: int = 6
    n_encoder_layers: int = 4
    n_decoder_layers: int = 4
    fused_attention: bool = True


def whisper_sinusoids(length: int, channels: int, max_timescale: float = 10_000.0) -> torch.Tensor:
    """Whisper's (length, channels) sinusoidal table: all sines first, then all cosines.

    Column i < C/2 is sin(t / max_timescale^(i / (C/2 - 1))), column C/2 + i the cosine of the same
    angle. Unlike :func:`~bigmodel_lib.models.positional.sinusoidal_table` the sines and cosines are not
    interleaved and the exponent runs to exactly 1.

    Introduced in §6.3.
    """
    if channels % 2 != 0:
        raise ValueError(f"expected an even number of channels (sines and cosines), got {channels}")
    increment = math.log(max_timescale) / (channels // 2 - 1)
    inv_timescales = torch.exp(-increment * torch.arange(channels // 2, dtype=torch.float32))  # (C/2,)
    angles = torch.arange(length, dtype=torch.float32)[:, None] * inv_timescales[None, :]  # (L, C/2)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)  # (L, C)


class WhisperAttention(nn.Module):
    """Multi-head attention with an optional key-value cache: self-attention, or cross-attention to ``source``.

    ``cache`` is a dict shared by the whole decoder. Self-attention appends this call's keys and values
    to the ones cached for this module, so one new token costs one query against all earlier keys;
    cross-attention computes the keys and values of the encoded audio once and reuses them.
    """

    def __init__(self, d_model: int, n_heads: int, causal: bool = False, fused_attention: bool = True):
        super().__init__()
        self.n_heads, self.causal, self.fused_attention = n_heads, causal, fused_attention
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model, bias=False)
        self.value = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        return x.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)  # (B, nh, T, hs)

    def forward(self, x: torch.Tensor, source: torch.Tensor | None = None, cache: dict | None = None) -> torch.Tensor:
        B, T, C = x.shape
        if source is None:  # self-attention over the positions so far
            k, v = self.key(x), self.value(x)  # (B, T, C)
            if cache is not None:
                if self in cache:
                    k, v = torch.cat([cache[self][0], k], dim=1), torch.cat([cache[self][1], v], dim=1)
                cache[self] = (k, v)  # (B, past + T, C)
        elif cache is not None and self in cache:
            k, v = cache[self]  # the encoded audio's keys and values, computed at the first step
        else:
            k, v = self.key(source), self.value(source)  # (B, S, C)
            if cache is not None:
                cache[self] = (k, v)
        mask = None
        if self.causal:  # the T new queries sit at positions past .. past + T - 1
            past = k.size(1) - T
            mask = torch.arange(k.size(1), device=x.device)[None, :] <= past + torch.arange(T, device=x.device)[:, None]
        y = attend(self._heads(self.query(x)), self._heads(k), self._heads(v), attn_mask=mask,
                   fused_attention=self.fused_attention)  # (B, nh, T, hs)
        return self.out(y.transpose(1, 2).reshape(B, T, C))


class ResidualAttentionBlock(nn.Module):
    """A pre-norm layer: x + attn(ln(x)), [x + cross_attn(ln(x), audio)], x + mlp(ln(x)); MLP C -> 4C -> C with GELU."""

    def __init__(self, d_model: int, n_heads: int, cross_attention: bool = False, fused_attention: bool = True):
        super().__init__()
        self.attn = WhisperAttention(d_model, n_heads, causal=cross_attention, fused_attention=fused_attention)
        self.attn_ln = nn.LayerNorm(d_model)
        self.cross_attn = WhisperAttention(d_model, n_heads, fused_attention=fused_attention) if cross_attention else None
        self.cross_attn_ln = nn.LayerNorm(d_model) if cross_attention else None
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))
        self.mlp_ln = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, audio: torch.Tensor | None = None, cache: dict | None = None) -> torch.Tensor:
        x = x + self.attn(self.attn_ln(x), cache=cache)
        if self.cross_attn is not None:
            x = x + self.cross_attn(self.cross_attn_ln(x), source=audio, cache=cache)
        return x + self.mlp(self.mlp_ln(x))  # (B, T, C)


class AudioEncoder(nn.Module):
    """(B, n_mels, 2 * n_audio_ctx) log-mel features -> (B, n_audio_ctx, C) encoded frames."""

    def __init__(self, cfg: WhisperConfig):
        super().__init__()
        self.n_mels, self.n_frames = cfg.n_mels, 2 * cfg.n_audio_ctx
        self.conv1 = nn.Conv1d(cfg.n_mels, cfg.d_model, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(cfg.d_model, cfg.d_model, kernel_size=3, stride=2, padding=1)
        self.register_buffer("positional_embedding", whisper_sinusoids(cfg.n_audio_ctx, cfg.d_model))
        self.blocks = nn.ModuleList(
            ResidualAttentionBlock(cfg.d_model, cfg.n_heads, fused_attention=cfg.fused_attention)
            for _ in range(cfg.n_encoder_layers)
        )
        self.ln_post = nn.LayerNorm(cfg.d_model)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        if mel.dim() != 3 or mel.shape[1:] != (self.n_mels, self.n_frames):
            raise ValueError(
                f"expected log-mel features of shape (B, {self.n_mels}, {self.n_frames}) (30 s; see "
                f"log_mel_spectrogram), got shape {tuple(mel.shape)}"
            )
        x = F.gelu(self.conv1(mel))  # (B, C, 3000)
        x = F.gelu(self.conv2(x)).transpose(1, 2)  # (B, 1500, C): one frame per 20 ms
        x = x + self.positional_embedding
        for block in self.blocks:
            x = block(x)
        return self.ln_post(x)


class TextDecoder(nn.Module):
    """(B, T) token ids and (B, S, C) encoded audio -> (B, T, n_vocab) next-token logits."""

    def __init__(self, cfg: WhisperConfig):
        super().__init__()
        self.token_embedding = nn.Embedding(cfg.n_vocab, cfg.d_model)
        self.positional_embedding = nn.Parameter(torch.zeros(cfg.n_text_ctx, cfg.d_model))
        self.blocks = nn.ModuleList(
            ResidualAttentionBlock(cfg.d_model, cfg.n_heads, cross_attention=True, fused_attention=cfg.fused_attention)
            for _ in range(cfg.n_decoder_layers)
        )
        self.ln = nn.LayerNorm(cfg.d_model)

    def forward(self, tokens: torch.Tensor, audio: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        first = self.blocks[0].attn
        past = cache[first][0].size(1) if cache is not None and first in cache else 0  # tokens already cached
        if tokens.dim() != 2 or past + tokens.size(1) > self.positional_embedding.size(0):
            raise ValueError(
                f"expected tokens of shape (B, T) with at most {self.positional_embedding.size(0)} positions in all, "
                f"got shape {tuple(tokens.shape)} after {past} cached positions"
            )
        x = self.token_embedding(tokens) + self.positional_embedding[past : past + tokens.size(1)]  # (B, T, C)
        for block in self.blocks:
            x = block(x, audio, cache)
        return self.ln(x) @ self.token_embedding.weight.T  # (B, T, n_vocab): output tied to the embedding


class Whisper(nn.Module):
    """Whisper: ``encoder`` (:class:`AudioEncoder`) and ``decoder`` (:class:`TextDecoder`).

    ``model(mel, tokens)`` takes (B, 80, 3000) log-mel features and (B, T) token ids and returns the
    (B, T, n_vocab) logits of each next token. :meth:`from_ctranslate2` loads tiny.en.

    Introduced in §6.3.
    """

    def __init__(self, cfg: WhisperConfig | None = None):
        super().__init__()
        self.cfg = cfg or WhisperConfig()
        self.encoder = AudioEncoder(self.cfg)
        self.decoder = TextDecoder(self.cfg)

    def forward(self, mel: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return self.decoder(tokens, self.encoder(mel))

    @classmethod
    @torch.no_grad()
    def from_ctranslate2(
        cls,
        path: str | pathlib.Path | None = None,
        dtype: torch.dtype = torch.float32,
        fused_attention: bool = True,
        device: str | torch.device = "cpu",
    ) -> Whisper:
        """Build the model a CTranslate2 ``WhisperSpec`` file describes and copy its weights (``None``: tiny.en).

        The file stores float16 values; they are converted to ``dtype`` and the model is moved to ``device``
        (inference only: :func:`greedy_decode` runs wherever the model and the features are). Its names map onto ours:
        ``self_attention/linear_0`` holds query, key and value stacked (3C, C), of which the key bias is
        zero (Whisper has none, checked); the decoder's cross-attention ``attention/linear_0`` is the query
        and ``linear_1`` key and value stacked; ``ffn/linear_0``/``linear_1`` the MLP; ``gamma``/``beta`` a
        LayerNorm's weight and bias. The projection to the vocabulary is an alias of the token embedding.

        Raises:
            ValueError: the file is not a Whisper model, or a variable is missing or of the wrong shape.
        """
        ct2 = read_ctranslate2_model(path)
        var = ct2.variables
        if ct2.spec != "WhisperSpec":
            raise ValueError(f"expected a CTranslate2 WhisperSpec model, got {ct2.spec!r}")
        if ct2.aliases.get("decoder/projection/weight") != "decoder/embeddings/weight":
            raise ValueError("expected the output projection to be tied to the token embedding (an alias)")
        for flag, want in (("decoder/pre_norm", 1), ("decoder/activation", 3), ("decoder/scale_embeddings", 0)):
            if int(var[flag]) != want:  # pre-norm layers, exact (erf) GELU, embeddings not scaled by sqrt(C)
                raise ValueError(f"expected {flag} = {want} for Whisper, got {int(var[flag])}")
        n_layers = {part: sum(n.startswith(f"{part}/layer_") and n.endswith("ffn/linear_0/bias") for n in var)
                    for part in ("encoder", "decoder")}
        cfg = WhisperConfig(
            n_mels=var["encoder/conv1/weight"].size(1), n_audio_ctx=var["encoder/position_encodings/encodings"].size(0),
            n_text_ctx=var["decoder/position_encodings/encodings"].size(0), n_vocab=var["decoder/embeddings/weight"].size(0),
            d_model=var["decoder/embeddings/weight"].size(1), n_heads=int(var["decoder/num_heads"]),
            n_encoder_layers=n_layers["encoder"], n_decoder_layers=n_layers["decoder"], fused_attention=fused_attention,
        )
        model = cls(cfg)
        state = {}

        def linear(ours: str, theirs: str) -> None:
            state[f"{ours}.weight"], state[f"{ours}.bias"] = var[f"{theirs}/weight"], var[f"{theirs}/bias"]

        def norm(ours: str, theirs: str) -> None:
            state[f"{ours}.weight"], state[f"{ours}.bias"] = var[f"{theirs}/gamma"], var[f"{theirs}/beta"]

        def attention(ours: str, theirs: str, parts: dict[str, tuple[str, ...]]) -> None:
            for part, names in parts.items():  # a stored linear layer may hold several projections stacked
                ws = var[f"{theirs}/{part}/weight"].chunk(len(names))
                bs = var[f"{theirs}/{part}/bias"].chunk(len(names))
                for name, w, b in zip(names, ws, bs):
                    state[f"{ours}.{name}.weight"] = w
                    if name != "key":
                        state[f"{ours}.{name}.bias"] = b
                    elif b.abs().max() != 0:
                        raise ValueError(f"expected a zero key bias in {theirs}/{part} (Whisper has none)")

        def block(ours: str, theirs: str, cross: bool) -> None:
            attention(f"{ours}.attn", f"{theirs}/self_attention", {"linear_0": ("query", "key", "value")})
            linear(f"{ours}.attn.out", f"{theirs}/self_attention/linear_1")
            norm(f"{ours}.attn_ln", f"{theirs}/self_attention/layer_norm")
            if cross:
                attention(f"{ours}.cross_attn", f"{theirs}/attention", {"linear_0": ("query",), "linear_1": ("key", "value")})
                linear(f"{ours}.cross_attn.out", f"{theirs}/attention/linear_2")
                norm(f"{ours}.cross_attn_ln", f"{theirs}/attention/layer_norm")
            linear(f"{ours}.mlp.0", f"{theirs}/ffn/linear_0")
            linear(f"{ours}.mlp.2", f"{theirs}/ffn/linear_1")
            norm(f"{ours}.mlp_ln", f"{theirs}/ffn/layer_norm")

        linear("encoder.conv1", "encoder/conv1")
        linear("encoder.conv2", "encoder/conv2")
        state["encoder.positional_embedding"] = var["encoder/position_encodings/encodings"]
        for i in range(cfg.n_encoder_layers):
            block(f"encoder.blocks.{i}", f"encoder/layer_{i}", cross=False)
        norm("encoder.ln_post", "encoder/layer_norm")
        state["decoder.token_embedding.weight"] = var["decoder/embeddings/weight"]
        state["decoder.positional_embedding"] = var["decoder/position_encodings/encodings"]
        for i in range(cfg.n_decoder_layers):
            block(f"decoder.blocks.{i}", f"decoder/layer_{i}", cross=True)
        norm("decoder.ln", "decoder/layer_norm")
        ours = model.state_dict()
        wrong = [k for k in ours if k not in state or state[k].shape != ours[k].shape]
        if wrong or len(state) != len(ours):
            raise ValueError(f"expected every weight of the model in the file with its shape; missing or wrong: {wrong[:5]}")
        model.load_state_dict({k: v.to(dtype) for k, v in state.items()})
        return model.to(device=device, dtype=dtype).eval()


@torch.no_grad()
def greedy_decode(
    model: Whisper, mel: torch.Tensor, prompt: list[int], end_token: int, max_new_tokens: int = 224
) -> list[list[int]]:
    """Greedy decoding with a key-value cache: the most likely next token, until ``end_token`` or ``max_new_tokens``.

    ``mel`` (B, 80, 3000) is encoded once; the ``prompt`` ids (tiny.en: ``<|startoftranscript|>``,
    ``<|notimestamps|>``) go through the decoder together, then one new token per step, each step
    reading the cached keys and values of the tokens before it. Returns B lists of the new token ids,
    without the prompt and the end token.

    Introduced in §6.3.
    """
    if mel.dim() != 3:
        raise ValueError(f"expected log-mel features of shape (B, 80, 3000), got shape {tuple(mel.shape)}")
    audio = model.encoder(mel)  # (B, S, C)
    tokens = torch.tensor([prompt] * mel.size(0), device=mel.device)  # (B, len(prompt))
    cache: dict = {}
    done = torch.zeros(mel.size(0), dtype=torch.bool, device=mel.device)
    out = []
    for _ in range(max_new_tokens):
        logits = model.decoder(tokens, audio, cache)[:, -1]  # (B, n_vocab): only the last position matters
        tokens = logits.argmax(dim=-1, keepdim=True)  # (B, 1): the next input is just the new token
        tokens[done] = end_token
        out.append(tokens)
        done |= tokens[:, 0] == end_token
        if done.all():
            break
    ids = torch.cat(out, dim=1).tolist()  # (B, steps)
    return [row[: row.index(end_token)] if end_token in row else row for row in ids]
