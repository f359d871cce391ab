"""BERT: the chapter 4 encoder with learned embeddings, and pretrained weights loaded into it.

A BERT encoder is the post-norm :class:`~bigmodel_lib.models.transformer.EncoderLayer` of §4.4 with GELU,
stacked on the sum of three learned embeddings (word, position, token type) and a LayerNorm.
:func:`load_bert_weights` copies a Hugging Face BERT state dict into it, in the style of nanoGPT's
``from_pretrained``: the names correspond one to one (:func:`bert_weight_names`), every shape is
asserted, and a state dict of another architecture is refused with the keys and shapes that differ.
:func:`load_minilm` loads all-MiniLM-L6-v2 from the files that ship in a PyPI package, and
:func:`encode_sentences` turns sentences into its unit-length sentence embeddings (mean pooling,
then L2 normalisation, as sentence-transformers does for this model).

Shapes: B batch, T sequence length, C model width (``d_model``), N sentences.
"""

from __future__ import annotations

import json
import pathlib
import re
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from bigmodel_lib.devices import evaluation_mode, get_device
from bigmodel_lib.metrics import check_class_indices
from bigmodel_lib.models.transformer import EncoderLayer
from bigmodel_lib.pretrained import load_wordpiece_tokenizer, minilm_files

__all__ = [
    "BertConfig",
    "BertEncoder",
    "bert_weight_names",
    "load_bert_weights",
    "check_tokenizer_matches",
    "load_minilm",
    "mean_pooling",
    "encode_sentences",
    "MaskedLMHead",
    "BertClassifier",
    "init_bert_weights",
]

# Hugging Face config.json field -> BertConfig field; the first seven must be present.
_HF_FIELDS = {
    "vocab_size": "vocab_size", "hidden_size": "d_model", "num_hidden_layers": "num_layers",
    "num_attention_heads": "num_heads", "intermediate_size": "d_ff", "max_position_embeddings": "max_len",
    "type_vocab_size": "type_vocab_size", "layer_norm_eps": "layer_norm_eps", "hidden_dropout_prob": "dropout",
    "pad_token_id": "pad_id",
}
_HF_REQUIRED = list(_HF_FIELDS)[:7]


@dataclass
class BertConfig:
    """Sizes of a :class:`BertEncoder`. all-MiniLM-L6-v2 is ``BertConfig(30522, 384, 6, 12, 1536, 512, 2)``;
    BERT-base is ``BertConfig(30522, 768, 12, 12, 3072, 512, 2)``.

    ``dropout`` is used after the embeddings, on the attention weights and on each residual branch (Hugging
    Face has two rates, both 0.1 in these models). ``fused_attention`` as in :class:`Seq2SeqConfig`.

    Introduced in §5.3.
    """

    vocab_size: int
    d_model: int
    num_layers: int
    num_heads: int
    d_ff: int
    max_len: int  # the size of the position table: the longest input, in tokens
    type_vocab_size: int  # segments (sentence A / sentence B)
    layer_norm_eps: float = 1e-12
    dropout: float = 0.1
    pad_id: int = 0
    fused_attention: bool = False  # F.scaled_dot_product_attention, else the from-scratch function

    @classmethod
    def from_hf_config(cls, config: str | pathlib.Path | dict) -> BertConfig:
        """Read a Hugging Face ``config.json`` (a file, a folder holding one, or its dict) of a BERT model."""
        if not isinstance(config, dict):
            path = pathlib.Path(config)
            path = path / "config.json" if path.is_dir() else path
            config = json.loads(path.read_text())
        if config.get("model_type") != "bert":
            raise ValueError(f"expected a BERT config (model_type 'bert'), got model_type {config.get('model_type')!r}")
        missing = [name for name in _HF_REQUIRED if name not in config]
        if missing:
            raise ValueError(f"the BERT config has no field {', '.join(map(repr, missing))}; "
                             f"expected every one of {_HF_REQUIRED}")
        for field, needed in (("hidden_act", "gelu"), ("position_embedding_type", "absolute")):
            if config.get(field, needed) != needed:
                raise ValueError(f"BertEncoder supports {field}={needed!r} only, got {config[field]!r}")
        return cls(**{ours: config[theirs] for theirs, ours in _HF_FIELDS.items() if theirs in config})


class BertEncoder(nn.Module):
    """The BERT encoder: embeddings, then ``num_layers`` post-norm GELU encoder layers of §4.4.

    ``forward(input_ids, attention_mask=None, token_type_ids=None)`` maps token ids (B, T) to one output
    vector per token (B, T, C). ``attention_mask`` (B, T) is 1 at real tokens and 0 at padding, as
    tokenizers return it (the opposite of the layers' ``key_padding_mask``, True at padding).

    Introduced in §5.3.
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = c = config
        self.word_embeddings = nn.Embedding(c.vocab_size, c.d_model, padding_idx=c.pad_id)
        self.position_embeddings = nn.Embedding(c.max_len, c.d_model)  # learned, as in §4.3
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.d_model)
        self.embedding_norm = nn.LayerNorm(c.d_model, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.dropout)
        self.layers = nn.ModuleList(
            EncoderLayer(c.d_model, c.num_heads, c.d_ff, dropout=c.dropout, norm_first=False, activation="gelu",
                         layer_norm_eps=c.layer_norm_eps, fused_attention=c.fused_attention)
            for _ in range(c.num_layers)
        )

    def _check_inputs(self, input_ids, attention_mask, token_type_ids) -> None:
        c = self.config
        if not isinstance(input_ids, torch.Tensor):
            raise ValueError(f"expected input_ids as a torch.long tensor (B, T), got {type(input_ids).__name__}")
        if input_ids.dim() != 2 or input_ids.dtype not in (torch.long, torch.int32):
            raise ValueError(f"expected input_ids of shape (B, T) and dtype torch.long, got shape "
                             f"{tuple(input_ids.shape)} and dtype {input_ids.dtype}")
        if input_ids.size(1) > c.max_len:
            raise ValueError(f"expected at most max_len={c.max_len} tokens per sequence (the position table's size), "
                             f"got T={input_ids.size(1)}: truncate the input")
        check_class_indices(input_ids, c.vocab_size, "BertEncoder", name="input_ids (token ids)")
        for name, t in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids)):
            if t is not None and (not isinstance(t, torch.Tensor) or t.shape != input_ids.shape):
                got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(f"expected {name} of the same shape as input_ids {tuple(input_ids.shape)}, got {got}")
        if token_type_ids is not None:
            check_class_indices(token_type_ids, c.type_vocab_size, "BertEncoder", name="token_type_ids")
        if attention_mask is not None:
            if attention_mask.is_floating_point():
                raise ValueError(f"expected attention_mask of 0s and 1s (1 = token, 0 = padding) in an integer or "
                                 f"bool dtype, got dtype {attention_mask.dtype}")
            if not ((attention_mask == 0) | (attention_mask == 1)).all():
                raise ValueError(f"expected attention_mask of 0s and 1s (1 = token, 0 = padding), got the values "
                                 f"{attention_mask.unique().tolist()[:5]}")
            empty = (attention_mask == 0).all(dim=1)
            if empty.any():
                raise ValueError(f"attention_mask row {int(empty.nonzero()[0])} has no 1: a sequence of padding only. "
                                 "attention_mask is 1 at real tokens and 0 at padding (not True at padding)")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        self._check_inputs(input_ids, attention_mask, token_type_ids)
        B, T = input_ids.shape
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)  # every token in segment 0 (sentence A)
        positions = torch.arange(T, device=input_ids.device)  # (T,)
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)  # (B, T, C)
        x = x + self.position_embeddings(positions)  # (B, T, C) + (T, C)
        x = self.dropout(self.embedding_norm(x))
        key_padding_mask = None if attention_mask is None else attention_mask == 0  # (B, T), True = padding
        for layer in self.layers:
            x = layer(x, key_padding_mask=key_padding_mask)
        return x  # (B, T, C): one vector per token; padding positions hold vectors too, ignore them


def bert_weight_names(num_layers: int) -> dict[str, str]:
    """``{Hugging Face BERT name: BertEncoder name}`` for every parameter, in the model's order.

    The correspondence is one to one and no tensor needs changing: Hugging Face's BERT stores its
    projections as ``nn.Linear`` (weight (out, in), like ours; GPT-2's ``Conv1D`` stores (in, out) and
    must be transposed) and keeps query, key and value apart (like ``MultiHeadAttention``'s ``w_q``,
    ``w_k``, ``w_v``; ``nn.MultiheadAttention`` stacks them in one ``in_proj_weight``). Per layer::

        attention.self.query / key / value  -> self_attn.w_q / w_k / w_v
        attention.output.dense              -> self_attn.w_o
        attention.output.LayerNorm          -> norm1   (post-norm: after the attention's residual)
        intermediate.dense                  -> feed_forward.linear1   (C -> d_ff, then GELU)
        output.dense                        -> feed_forward.linear2   (d_ff -> C)
        output.LayerNorm                    -> norm2

    Introduced in §5.3.
    """
    names = {"embeddings.word_embeddings.weight": "word_embeddings.weight",
             "embeddings.position_embeddings.weight": "position_embeddings.weight",
             "embeddings.token_type_embeddings.weight": "token_type_embeddings.weight",
             "embeddings.LayerNorm.weight": "embedding_norm.weight",
             "embeddings.LayerNorm.bias": "embedding_norm.bias"}
    per_layer = {"attention.self.query": "self_attn.w_q", "attention.self.key": "self_attn.w_k",
                 "attention.self.value": "self_attn.w_v", "attention.output.dense": "self_attn.w_o",
                 "attention.output.LayerNorm": "norm1", "intermediate.dense": "feed_forward.linear1",
                 "output.dense": "feed_forward.linear2", "output.LayerNorm": "norm2"}
    for i in range(num_layers):
        for theirs, ours in per_layer.items():
            for kind in ("weight", "bias"):
                names[f"encoder.layer.{i}.{theirs}.{kind}"] = f"layers.{i}.{ours}.{kind}"
    return names


# Keys a BERT checkpoint may hold that the encoder does not use:
# pooler.*: a dense + tanh on the [CLS] vector, trained for next-sentence prediction; the sentence
#   embeddings here mean-pool the token outputs instead, and sentence-transformers skips it too.
# embeddings.position_ids: a saved buffer holding 0 .. max_len-1, not a weight; forward builds it.
# cls.*: pretraining heads (masked-LM, next-sentence) that sit on top of the encoder.
_IGNORED = re.compile(r"^(pooler\.|cls\.|embeddings\.position_ids$)")


def _few(names, n: int = 4) -> str:
    names = sorted(names)
    return ", ".join(names[:n]) + (f" (and {len(names) - n} more)" if len(names) > n else "")


@torch.no_grad()
def load_bert_weights(model: BertEncoder, state_dict: dict[str, torch.Tensor]) -> BertEncoder:
    """Copy a Hugging Face BERT state dict (with or without the ``bert.`` prefix) into ``model``.

    Names are mapped by :func:`bert_weight_names`; ``pooler.*``, ``cls.*`` and ``embeddings.position_ids``
    are skipped (see the comment above). Raises ``ValueError``, before copying anything, when keys are
    missing or unexpected (naming a few of each, and the layer counts) or when shapes differ (naming the
    expected and received shapes). Returns ``model``.

    Introduced in §5.3.
    """
    theirs = {k.removeprefix("bert."): v for k, v in state_dict.items()}
    theirs = {k: v for k, v in theirs.items() if not _IGNORED.match(k)}
    names = bert_weight_names(model.config.num_layers)
    ours = model.state_dict()
    assert set(names.values()) == set(ours), "bert_weight_names must cover every parameter of BertEncoder"
    missing, unexpected = set(names) - set(theirs), set(theirs) - set(names)
    if missing or unexpected:
        layers = {int(m.group(1)) for k in theirs if (m := re.match(r"encoder\.layer\.(\d+)\.", k))}
        message = (f"the state dict is not a BERT encoder with {model.config.num_layers} layers: "
                   f"missing keys: {_few(missing) or 'none'}; unexpected keys: {_few(unexpected) or 'none'}")
        if layers and len(layers) != model.config.num_layers:
            message += f". It has {len(layers)} encoder layers, the model {model.config.num_layers}"
        elif not layers:
            message += ". It has no encoder.layer.* keys: is it another architecture (e.g. a GPT)?"
        raise ValueError(message)
    wrong = [f"{k}: expected {tuple(ours[names[k]].shape)}, got {tuple(theirs[k].shape)}"
             for k in names if theirs[k].shape != ours[names[k]].shape]
    if wrong:
        raise ValueError(f"{len(wrong)} tensor(s) of the state dict have another shape than the model's "
                         f"(d_model={model.config.d_model}, d_ff={model.config.d_ff}, "
                         f"vocab_size={model.config.vocab_size}): " + "; ".join(wrong[:4]))
    for k, ours_name in names.items():
        ours[ours_name].copy_(theirs[k])  # same (out, in) layout: a plain copy
    return model


def check_tokenizer_matches(tokenizer, config: BertConfig) -> None:
    """Raise ``ValueError`` unless ``tokenizer`` (a ``tokenizers.Tokenizer``) has the model's vocabulary size
    and its ``[PAD]`` token has id ``config.pad_id``: a tokenizer of another model gives ids that index the
    wrong rows of the embedding table, and nothing else would fail.

    Introduced in §5.3.
    """
    size, pad = tokenizer.get_vocab_size(), tokenizer.token_to_id("[PAD]")
    if size != config.vocab_size:
        raise ValueError(f"the tokenizer does not match the model: vocabulary of {size} tokens, "
                         f"the model's embedding table has {config.vocab_size} rows")
    if pad != config.pad_id:
        raise ValueError(f"the tokenizer does not match the model: [PAD] has id {pad}, the model's pad_id is "
                         f"{config.pad_id}")


def load_minilm(device=None) -> tuple[BertEncoder, object]:
    """all-MiniLM-L6-v2 in a :class:`BertEncoder`, in eval mode on ``device``, and its WordPiece tokenizer.

    Reads ``config.json`` and ``model.safetensors`` from :func:`~bigmodel_lib.pretrained.minilm_files`
    (offline) and checks that the tokenizer matches. ``device=None`` picks :func:`get_device`'s.

    Introduced in §5.3.
    """
    from safetensors.torch import load_file

    folder = minilm_files()
    config = BertConfig.from_hf_config(folder / "config.json")
    model = load_bert_weights(BertEncoder(config), load_file(str(folder / "model.safetensors")))
    tokenizer = load_wordpiece_tokenizer(folder)
    check_tokenizer_matches(tokenizer, config)
    return model.to(get_device(device)).eval(), tokenizer


def mean_pooling(token_outputs: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The mean of each sequence's token outputs over its real tokens: (B, T, C) and (B, T) -> (B, C).

    Padding positions (mask 0) are left out of both the sum and the count.

    Introduced in §5.3.
    """
    if token_outputs.dim() != 3 or attention_mask.shape != token_outputs.shape[:2]:
        raise ValueError(f"expected token_outputs (B, T, C) and attention_mask (B, T), got shapes "
                         f"{tuple(token_outputs.shape)} and {tuple(attention_mask.shape)}")
    mask = attention_mask[..., None].to(token_outputs.dtype)  # (B, T, 1)
    return (token_outputs * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)  # (B, C)


@torch.no_grad()
def encode_sentences(model: BertEncoder, tokenizer, sentences: list[str], batch_size: int = 64,
                     max_length: int = 256) -> torch.Tensor:
    """Unit-length sentence embeddings (N, C), as sentence-transformers computes them for all-MiniLM-L6-v2.

    Each sentence is tokenized (truncated to ``max_length`` tokens, 256 in the model's
    ``sentence_bert_config.json``), encoded, mean-pooled over its real tokens (:func:`mean_pooling`) and
    scaled to length 1, so the dot product of two embeddings is their cosine similarity. Sentences are
    batched in order of length, to pad little. ``tokenizer`` is not modified. Runs in eval mode.

    Introduced in §5.3.
    """
    from tokenizers import Tokenizer

    if isinstance(sentences, str) or not all(isinstance(s, str) for s in sentences):
        raise ValueError("expected sentences as a list of strings (a single sentence goes in a list of one)")
    if not 2 <= max_length <= model.config.max_len:
        raise ValueError(f"expected max_length in [2, {model.config.max_len}] (the model's max_len), got {max_length}")
    check_tokenizer_matches(tokenizer, model.config)
    device = next(model.parameters()).device
    tok = Tokenizer.from_str(tokenizer.to_str())  # a copy: padding and truncation are set on it only
    tok.enable_truncation(max_length)
    tok.enable_padding(pad_id=model.config.pad_id, pad_token=tokenizer.id_to_token(model.config.pad_id))
    lengths = [len(e.ids) for e in tokenizer.encode_batch(sentences)]
    order = sorted(range(len(sentences)), key=lambda i: -lengths[i])
    out = torch.empty(len(sentences), model.config.d_model, device=device, dtype=model.word_embeddings.weight.dtype)
    with evaluation_mode(model):
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            encoded = tok.encode_batch([sentences[i] for i in batch])
            ids = torch.tensor([e.ids for e in encoded], device=device)  # (b, T)
            mask = torch.tensor([e.attention_mask for e in encoded], device=device)  # (b, T)
            types = torch.tensor([e.type_ids for e in encoded], device=device)  # (b, T)
            pooled = mean_pooling(model(ids, mask, types), mask)  # (b, C)
            out[batch] = F.normalize(pooled, p=2, dim=1)
    return out  # (N, C)


class MaskedLMHead(nn.Module):
    """BERT's masked-language-modelling head: dense, GELU, LayerNorm, then logits over the vocabulary.

    The last linear layer's weight is the encoder's word-embedding table (tied, as in §4.5's GPT), plus a
    bias of its own: hidden states (..., C) -> logits (..., V). Pretraining applies it at the masked
    positions only (§5.2's ``mask_tokens`` marks the others with the ignore index).

    Introduced in §5.4.
    """

    def __init__(self, body: BertEncoder):
        super().__init__()
        if not isinstance(body, BertEncoder):
            raise TypeError(f"expected the BertEncoder whose embeddings the head shares, got {type(body).__name__}")
        c = body.config
        self.dense, self.norm = nn.Linear(c.d_model, c.d_model), nn.LayerNorm(c.d_model, eps=c.layer_norm_eps)
        self.embeddings = body.word_embeddings  # tied: (V, C)
        self.bias = nn.Parameter(torch.zeros(c.vocab_size))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:  # (..., C) -> (..., V)
        return self.norm(F.gelu(self.dense(hidden))) @ self.embeddings.weight.T + self.bias


class BertClassifier(nn.Module):
    """A sentence classifier on a :class:`BertEncoder`: mean pooling over real tokens, dropout, one linear layer.

    ``forward(input_ids, attention_mask)``: (B, T) token ids and (B, T) mask (1 at tokens) -> (B, num_classes)
    logits. The same head serves a pretrained body and one from random initialisation (§5.4) and a body
    with LoRA adapters (§5.5).

    Introduced in §5.4.
    """

    def __init__(self, body: BertEncoder, num_classes: int, dropout: float = 0.1):
        super().__init__()
        if not isinstance(body, BertEncoder):
            raise TypeError(f"expected a BertEncoder as the body, got {type(body).__name__}")
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"expected num_classes >= 2, got {num_classes!r}")
        self.body, self.dropout = body, nn.Dropout(dropout)
        self.head = nn.Linear(body.config.d_model, num_classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pooled = mean_pooling(self.body(input_ids, attention_mask), attention_mask)  # (B, C)
        return self.head(self.dropout(pooled))  # (B, num_classes)


def init_bert_weights(model: nn.Module, std: float = 0.02) -> nn.Module:
    """BERT's initialisation, in place: every linear and embedding weight N(0, std²), linear biases 0.

    LayerNorms keep weight 1 and bias 0. PyTorch's default N(0, 1) for ``nn.Embedding`` would make the
    tied masked-LM logits (:class:`MaskedLMHead`) huge at the start. Returns ``model``.

    Introduced in §5.4.
    """
    for module in model.modules():
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
    return model
