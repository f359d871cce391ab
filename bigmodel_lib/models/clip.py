"""A tiny CLIP: digit images and short captions mapped to one space by a contrastive loss.

CLIP (Radford et al. 2021) trains an image encoder and a text encoder together so that an
image and its caption land close together and apart from the other captions of the batch. Here:

* the captions are built from templates (:data:`CAPTION_TEMPLATES`), in English and Chinese, around
  the digit's name (:data:`DIGIT_NAMES`); :func:`caption_tokens` splits English into words and Chinese
  into characters, :func:`build_vocabulary` and :func:`encode_captions` turn captions into padded ids;
* :class:`TinyCLIP` pairs chapter 7's ``ConvClassifier`` (its last layer projecting to the shared
  space instead of to 10 classes) with :class:`CaptionEncoder` (word embeddings, their mean, a linear
  projection), and a learned temperature;
* :func:`contrastive_loss` is the symmetric InfoNCE loss; :func:`train_tiny_clip` trains with it,
  drawing a template for every image at every step; :func:`zero_shot_predict` classifies images by the
  caption they are closest to, with no classifier trained on the labels.

Shapes: ``B`` batch, ``L`` caption length in tokens, ``D`` width of the shared space.
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import nn

from bigmodel_lib.models.image_classifiers import ConvClassifier

__all__ = [
    "DIGIT_NAMES",
    "CAPTION_TEMPLATES",
    "caption_tokens",
    "build_vocabulary",
    "encode_captions",
    "contrastive_loss",
    "CaptionEncoder",
    "TinyCLIP",
    "train_tiny_clip",
    "train_digit_classifier",
    "zero_shot_predict",
]

DIGIT_NAMES = (
    ("zero", "零"), ("one", "一"), ("two", "二"), ("three", "三"), ("four", "四"),
    ("five", "五"), ("six", "六"), ("seven", "七"), ("eight", "八"), ("nine", "九"),
)
"""The English and Chinese name of each digit 0-9, as ``(english, chinese)`` pairs.

Introduced in §8.3.
"""

CAPTION_TEMPLATES = (
    "a handwritten {en}",
    "a photo of the digit {en}",
    "the number {en}, written by hand",
    "手写的数字{zh}",
    "数字{zh}的照片",
    "a photo of the number {en}",
)
"""Caption templates, filled with :data:`DIGIT_NAMES` by ``str.format(en=..., zh=...)``.

The book trains on the first five and holds the last out: it uses only words the others use, in a
combination never seen in training.

Introduced in §8.3.
"""

PAD, UNKNOWN = 0, 1
_TOKEN = re.compile(r"[a-z0-9]+|[\u4e00-\u9fff]")


def caption_tokens(text: str) -> list[str]:
    """Split a caption into tokens: lower-case English words and single Chinese characters; the rest dropped.

    ``"The number seven, written by hand"`` -> ``["the", "number", "seven", "written", "by", "hand"]``;
    ``"手写的数字七"`` -> ``["手", "写", "的", "数", "字", "七"]``. Raises ValueError for a non-string.

    Introduced in §8.3.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected a caption as a str, got {type(text).__name__}")
    return _TOKEN.findall(text.lower())


def build_vocabulary(texts) -> dict[str, int]:
    """``{token: id}`` for every token of ``texts`` in order of first appearance; id 0 is padding, 1 unknown.

    Introduced in §8.3.
    """
    vocab = {"<pad>": PAD, "<unk>": UNKNOWN}
    for text in texts:
        for token in caption_tokens(text):
            vocab.setdefault(token, len(vocab))
    return vocab


def encode_captions(texts, vocab: dict[str, int]) -> torch.Tensor:
    """Token ids ``(B, L)`` int64 of ``B`` captions, padded with 0 to the longest (``L``).

    Tokens missing from ``vocab`` get id 1. Raises ValueError for no captions or a caption with no
    tokens.

    Introduced in §8.3.
    """
    texts = list(texts)
    if not texts:
        raise ValueError("expected at least one caption, got none")
    ids = [[vocab.get(token, UNKNOWN) for token in caption_tokens(t)] for t in texts]
    for text, row in zip(texts, ids):
        if not row:
            raise ValueError(f"expected every caption to contain a word, got {text!r}")
    out = torch.zeros(len(ids), max(map(len, ids)), dtype=torch.long)
    for i, row in enumerate(ids):
        out[i, : len(row)] = torch.tensor(row)
    return out


def contrastive_loss(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor,
                     log_scale: torch.Tensor | float) -> torch.Tensor:
    """The symmetric contrastive (InfoNCE) loss of CLIP for ``B`` matching pairs; a scalar.

    Both inputs ``(B, D)`` are scaled to unit length; ``s_ij = exp(log_scale) * <u_i, v_j>`` (the
    cosine similarity over a temperature ``exp(-log_scale)``). Image ``i``'s caption is text ``i``:

    ``L = 1/2 [ -1/B sum_i log softmax_j(s_ij)_i  -  1/B sum_j log softmax_i(s_ij)_j ]``,

    the cross-entropy of picking the right caption for each image and the right image for each
    caption. Raises ValueError unless both are 2-D with the same shape and ``log_scale`` is a number or
    a one-element tensor.

    Introduced in §8.3.
    """
    if image_embeddings.dim() != 2 or image_embeddings.shape != text_embeddings.shape:
        raise ValueError(f"expected image and text embeddings of the same shape (B, D), got "
                         f"{tuple(image_embeddings.shape)} and {tuple(text_embeddings.shape)}")
    if isinstance(log_scale, torch.Tensor) and log_scale.numel() != 1:
        raise ValueError(f"expected log_scale as one number, got a tensor of shape {tuple(log_scale.shape)}")
    u = F.normalize(image_embeddings, dim=-1)
    v = F.normalize(text_embeddings, dim=-1)
    logits = torch.as_tensor(log_scale, dtype=u.dtype, device=u.device).exp() * u @ v.T  # (B, B): images x texts
    target = torch.arange(u.size(0), device=u.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


class CaptionEncoder(nn.Module):
    """Captions ``(B, L)`` token ids (0 = padding) -> ``(B, embed_dim)``: embeddings, their mean, a linear layer.

    The mean ignores word order; it is enough for captions that differ in one word, and it sees a
    new template as a new mixture of known words. Raises ValueError for ids that are not 2-D
    integers in ``[0, vocab_size)``.

    Introduced in §8.3.
    """

    def __init__(self, vocab_size: int, width: int, embed_dim: int):
        super().__init__()
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, width, padding_idx=PAD)
        self.proj = nn.Linear(width, embed_dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.dim() != 2 or ids.dtype not in (torch.long, torch.int32, torch.int64):
            raise ValueError(f"expected token ids (B, L) of integers, got {ids.dtype} of shape {tuple(ids.shape)}")
        if ids.numel() and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(f"expected token ids in [0, {self.vocab_size}), got ids from {ids.min().item()} "
                             f"to {ids.max().item()}")
        mask = (ids != PAD).unsqueeze(-1).float()  # (B, L, 1)
        mean = (self.embed(ids) * mask).sum(1) / mask.sum(1).clamp(min=1)  # (B, width)
        return self.proj(mean)  # (B, embed_dim)


class TinyCLIP(nn.Module):
    """An image encoder and a caption encoder into one ``embed_dim``-wide space, and a learned temperature.

    ``image_encoder`` is ``ConvClassifier(width, num_classes=embed_dim)``: chapter 7's CNN whose last
    layer projects to the shared space. ``log_scale`` starts at ``log(1 / 0.07)`` as in CLIP.
    ``model(images, ids)`` returns ``(image_embeddings, text_embeddings)``, ``(B, D)`` each, not yet
    normalised; :func:`contrastive_loss` normalises them.

    Introduced in §8.3.
    """

    def __init__(self, vocab_size: int, width: int = 16, text_width: int = 64, embed_dim: int = 64):
        super().__init__()
        self.image_encoder = ConvClassifier(width, channels=1, num_classes=embed_dim)
        self.text_encoder = CaptionEncoder(vocab_size, text_width, embed_dim)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(self, images: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.image_encoder(images), self.text_encoder(ids)


def train_tiny_clip(model: TinyCLIP, images: torch.Tensor, labels: torch.Tensor, vocab: dict[str, int],
                    templates=CAPTION_TEMPLATES[:5], epochs: int = 6, batch_size: int = 128, lr: float = 3e-3,
                    seed: int = 0) -> list[float]:
    """Train ``model`` on images ``(N, 1, 28, 28)`` and captions of ``labels``; returns every step's loss.

    At every step each image gets a caption from a template drawn at random from ``templates``. AdamW
    (weight decay 0.01 on the weights), ``lr`` with a cosine decay to 0, ``log_scale`` clamped to at
    most ``log(100)`` as in CLIP. Seeded by ``seed`` (initialisation is the caller's). Raises ValueError
    when images and labels differ in number.

    Introduced in §8.3.
    """
    if len(images) != len(labels):
        raise ValueError(f"expected one label per image, got {len(images)} images and {len(labels)} labels")
    gen = torch.Generator().manual_seed(seed)
    encoded = [encode_captions([t.format(en=en, zh=zh) for en, zh in DIGIT_NAMES], vocab) for t in templates]
    table = torch.zeros(len(templates), 10, max(e.size(1) for e in encoded), dtype=torch.long)
    for k, ids in enumerate(encoded):
        table[k, :, : ids.size(1)] = ids  # (templates, 10 digits, L): template k's caption of each digit
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    steps = epochs * math.ceil(len(images) / batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    losses = []
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=gen)
        for batch in order.split(batch_size):
            template = torch.randint(len(templates), (len(batch),), generator=gen)
            ids = table[template, labels[batch]]  # (B, L): a random template per image
            loss = contrastive_loss(*model(images[batch], ids), model.log_scale)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            with torch.no_grad():
                model.log_scale.clamp_(max=math.log(100))
            losses.append(loss.item())
    model.eval()
    return losses


def train_digit_classifier(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, epochs: int = 6,
                           batch_size: int = 128, lr: float = 3e-3, seed: int = 0) -> list[float]:
    """The supervised baseline of §8.3: :func:`train_tiny_clip`'s recipe with the cross-entropy on the labels.

    Same batches (the same ``seed`` draws the same order), AdamW, cosine decay; returns every step's
    loss. Raises ValueError when images and labels differ in number.

    Introduced in §8.3.
    """
    if len(images) != len(labels):
        raise ValueError(f"expected one label per image, got {len(images)} images and {len(labels)} labels")
    gen = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * math.ceil(len(images) / batch_size))
    losses = []
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(images), generator=gen).split(batch_size):
            loss = F.cross_entropy(model(images[batch]), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
    model.eval()
    return losses


@torch.no_grad()
def zero_shot_predict(model: TinyCLIP, images: torch.Tensor, prompt_ids: torch.Tensor) -> torch.Tensor:
    """Class of each image ``(N,)``: the index of the prompt ``(K, L)`` whose embedding is most similar.

    Pass one or more prompt sets as ``(T, K, L)`` to average their normalised embeddings per class
    first (CLIP's prompt ensembling). Raises ValueError for prompts that are not 2-D or 3-D.

    Introduced in §8.3.
    """
    if prompt_ids.dim() not in (2, 3):
        raise ValueError(f"expected prompt ids (K, L) or (T, K, L), got shape {tuple(prompt_ids.shape)}")
    sets = prompt_ids if prompt_ids.dim() == 3 else prompt_ids[None]
    texts = torch.stack([F.normalize(model.text_encoder(s), dim=-1) for s in sets]).mean(0)  # (K, D)
    u = F.normalize(model.image_encoder(images), dim=-1)  # (N, D)
    return (u @ F.normalize(texts, dim=-1).T).argmax(-1)
