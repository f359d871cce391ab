"""Plots the book draws again and again, in one style that reads at page width.

Learning curves from a training history, grids of images with their labels,
a CNN's feature maps and filters, attention weights with token labels, and
confusion matrices. Every function returns its ``matplotlib.figure.Figure``
and gives every plot a title and axis labels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from bigmodel_lib.metrics import confusion_matrix

__all__ = [
    "use_book_style",
    "plot_history",
    "plot_images",
    "plot_feature_maps",
    "plot_filters",
    "plot_confusion_matrix",
    "plot_attention",
]

#: Matplotlib settings for every figure of the book: about 700 px wide on the page.
BOOK_STYLE = {
    "figure.figsize": (7.0, 4.0),
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "figure.constrained_layout.use": True,
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "figure.titlesize": 13,
    "legend.fontsize": 10,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 2.0,
    "image.cmap": "viridis",
}

PAGE_WIDTH_IN = BOOK_STYLE["figure.figsize"][0]


def use_book_style() -> None:
    """Apply :data:`BOOK_STYLE` to every later figure, including a notebook's own plots.

    The library's plot functions use the style anyway; call this once at the top
    of a notebook so that hand-made plots match.

    Introduced in §1.1.
    """
    plt.rcParams.update(BOOK_STYLE)


def _as_array(x, what: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    try:
        return np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}: expected a tensor or array of numbers, got {type(x).__name__}") from exc


def _grid(n: int, ncols: int, cell: float, title: str) -> tuple[Figure, np.ndarray]:
    """A figure with ``n`` square image panels, ``ncols`` per row, axes hidden."""
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    width = min(PAGE_WIDTH_IN, cell * ncols)
    with plt.rc_context(BOOK_STYLE):
        fig, axes = plt.subplots(nrows, ncols, figsize=(width, width / ncols * nrows + 0.6), squeeze=False)
        fig.suptitle(title)
    for ax in axes.flat:
        ax.axis("off")
    return fig, axes.flat


# ---------------------------------------------------------------------------
# Learning curves


def plot_history(history, title: str = "Learning curves") -> Figure:
    """Loss (left) and metric (right) per epoch, training vs validation, from a training history.

    Accepts a :class:`bigmodel_lib.History` or its ``to_dict()``. The per-step
    training loss is drawn faintly behind the per-epoch means.

    Introduced in §2.5.
    """
    h = history.to_dict() if hasattr(history, "to_dict") else history
    if not isinstance(h, Mapping) or not h.get("train_loss"):
        raise ValueError("plot_history: expected a History with at least one epoch, got an empty history")
    epochs = np.arange(1, len(h["train_loss"]) + 1)
    name = h.get("metric_name")
    has_metric = name is not None and any(v is not None for v in h.get("train_metric", []))
    with plt.rc_context(BOOK_STYLE):
        fig, axes = plt.subplots(1, 2 if has_metric else 1, squeeze=False)
        fig.suptitle(title)
        ax = axes[0, 0]
        steps = h.get("step_loss") or []
        if steps:
            x = np.arange(1, len(steps) + 1) / (len(steps) / len(epochs))  # steps as fractional epochs
            ax.plot(x, steps, color="C0", alpha=0.25, linewidth=1, label="train (each step)")
        ax.plot(epochs, h["train_loss"], "o-", color="C0", label="train")
        if h.get("val_loss"):
            ax.plot(epochs[: len(h["val_loss"])], h["val_loss"], "s-", color="C1", label="validation")
        ax.set(title="Loss", xlabel="epoch", ylabel="loss")
        ax.legend()
        if has_metric:
            ax = axes[0, 1]
            ax.plot(epochs, h["train_metric"], "o-", color="C0", label="train")
            if h.get("val_metric"):
                ax.plot(epochs[: len(h["val_metric"])], h["val_metric"], "s-", color="C1", label="validation")
            ax.set(title=name.capitalize(), xlabel="epoch", ylabel=name)
            ax.legend()
    return fig


# ---------------------------------------------------------------------------
# Images, feature maps, filters, confusion matrices


def _image_panels(images, what: str) -> np.ndarray:
    """(N, C, H, W) or (N, H, W) tensor -> (N, H, W) or (N, H, W, 3) array ready for imshow."""
    x = _as_array(images, what)
    if x.ndim == 3:
        return x
    if x.ndim == 4 and x.shape[1] == 1:
        return x[:, 0]
    if x.ndim == 4 and x.shape[1] == 3:
        return x.transpose(0, 2, 3, 1)
    raise ValueError(
        f"{what}: expected images of shape (N, H, W), (N, 1, H, W) or (N, 3, H, W), got {tuple(x.shape)}"
    )


def plot_images(
    images,
    labels=None,
    predictions=None,
    class_names: Sequence[str] | None = None,
    ncols: int = 8,
    title: str = "Images",
) -> Figure:
    """A grid of images, each titled with its label (and prediction, red when wrong).

    ``images``: ``(N, C, H, W)`` with C = 1 or 3, or ``(N, H, W)``; pixel values in
    [0, 1]. ``class_names`` turns label indices into words.

    Introduced in §2.5.
    """
    panels = _image_panels(images, "plot_images")
    n = len(panels)
    for given, what in ((labels, "labels"), (predictions, "predictions")):
        if given is not None and len(given) != n:
            raise ValueError(f"plot_images: expected one of the {what} per image ({n}), got {len(given)}")

    if class_names is not None:  # a negative index would silently name another class
        for given, what in ((labels, "labels"), (predictions, "predictions")):
            bad = [int(v) for v in (given if given is not None else []) if not 0 <= int(v) < len(class_names)]
            if bad:
                raise ValueError(
                    f"plot_images: expected {what} in [0, {len(class_names)}) to index class_names, got {bad[0]}"
                )

    def name(i) -> str:
        i = int(i)
        return str(class_names[i]) if class_names is not None else str(i)

    fig, axes = _grid(n, ncols, cell=1.1, title=title)
    for i, (ax, img) in enumerate(zip(axes, panels)):
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
        if labels is not None and predictions is not None:
            wrong = int(labels[i]) != int(predictions[i])
            ax.set_title(f"{name(labels[i])} ({name(predictions[i])})", fontsize=9, color="C3" if wrong else "black")
        elif labels is not None:
            ax.set_title(name(labels[i]), fontsize=9)
    if labels is not None and predictions is not None:
        fig.supxlabel("above each image: label (prediction), red where they differ", fontsize=9)
    elif labels is not None:
        fig.supxlabel("above each image: its label", fontsize=9)
    return fig


def plot_feature_maps(feature_maps, ncols: int = 8, max_maps: int = 32, title: str = "Feature maps") -> Figure:
    """Each channel of one image's activations as a small heatmap.

    ``feature_maps``: ``(C, H, W)`` or ``(1, C, H, W)`` (one image's output of a
    convolution layer); the first ``max_maps`` channels are shown, each with its
    own colour scale.

    Introduced in §2.5.
    """
    x = _as_array(feature_maps, "plot_feature_maps")
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 3:
        raise ValueError(
            f"plot_feature_maps: expected one image's maps of shape (C, H, W) or (1, C, H, W), got {tuple(x.shape)}"
        )
    x = x[:max_maps]
    fig, axes = _grid(len(x), ncols, cell=1.0, title=title)
    for c, (ax, fmap) in enumerate(zip(axes, x)):
        ax.imshow(fmap, cmap="viridis")
        ax.set_title(f"ch {c}", fontsize=8)
    fig.supxlabel(
        f"channels 0-{len(x) - 1}, each {x.shape[1]}x{x.shape[2]} pixels (yellow = strong activation)", fontsize=9
    )
    return fig


def plot_filters(weight, ncols: int = 8, max_filters: int = 32, title: str = "Convolution filters") -> Figure:
    """The kernels of a convolution layer, one panel per output channel.

    ``weight``: ``(C_out, C_in, kH, kW)``, e.g. ``conv.weight``. With 3 input
    channels a filter is shown in colour (rescaled to [0, 1]); otherwise its
    first input channel is shown on a red-blue scale centred on zero (red
    positive, blue negative).

    Introduced in §2.5.
    """
    w = _as_array(weight, "plot_filters")
    if w.ndim != 4:
        raise ValueError(f"plot_filters: expected a weight of shape (C_out, C_in, kH, kW), got {tuple(w.shape)}")
    w = w[:max_filters]
    fig, axes = _grid(len(w), ncols, cell=0.9, title=title)
    for k, (ax, f) in enumerate(zip(axes, w)):
        if f.shape[0] == 3:
            rgb = f.transpose(1, 2, 0)
            rgb = (rgb - rgb.min()) / (rgb.max() - rgb.min() + 1e-12)
            ax.imshow(rgb)
        else:
            limit = np.abs(f[0]).max() + 1e-12
            ax.imshow(f[0], cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(f"{k}", fontsize=8)
    shown = "colour, rescaled" if w.shape[1] == 3 else "input channel 0; red > 0 > blue"
    fig.supxlabel(f"filters 0-{len(w) - 1}, each {w.shape[2]}x{w.shape[3]} ({shown})", fontsize=9)
    return fig


def plot_confusion_matrix(
    targets,
    predictions,
    class_names: Sequence[str] | None = None,
    normalize: bool = False,
    title: str = "Confusion matrix",
) -> Figure:
    """Counts of (true class, predicted class); the diagonal holds the correct answers.

    ``targets`` and ``predictions`` are class indices. With ``normalize=True``
    each row is divided by its total, so the diagonal shows per-class recall.

    Introduced in §2.5.
    """
    num_classes = len(class_names) if class_names is not None else None
    m = confusion_matrix(torch.as_tensor(predictions), torch.as_tensor(targets), num_classes).double().numpy()
    if normalize:
        m = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(m))]
    size = min(PAGE_WIDTH_IN, 2.5 + 0.45 * len(m))
    with plt.rc_context(BOOK_STYLE):
        fig, ax = plt.subplots(figsize=(size, size * 0.85))
        image = ax.imshow(m, cmap="Blues")
        fig.colorbar(image, ax=ax, label="fraction of the row" if normalize else "count")
        ax.set(title=title, xlabel="predicted class", ylabel="true class",
               xticks=range(len(m)), yticks=range(len(m)))
        long_names = max(map(len, names)) > 2
        ax.set_xticklabels(names, rotation=45 if long_names else 0, ha="right" if long_names else "center")
        ax.set_yticklabels(names)
        ax.grid(False)
        if len(m) <= 20:  # write the numbers in the cells while they still fit
            for i in range(len(m)):
                for j in range(len(m)):
                    text = f"{m[i, j]:.2f}" if normalize else f"{int(m[i, j])}"
                    dark = m[i, j] > m.max() / 2
                    ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")
    return fig


# ---------------------------------------------------------------------------
# Attention


def plot_attention(
    weights,
    query_tokens: Sequence[str] | None = None,
    key_tokens: Sequence[str] | None = None,
    title: str = "Attention weights",
    ncols: int = 4,
) -> Figure:
    """Heatmap of attention weights: row ``i`` shows how query token ``i`` spreads its attention over the keys.

    ``weights``: ``(T_q, T_k)`` for one head or ``(n_heads, T_q, T_k)`` for
    several (one panel per head); rows sum to 1 after the softmax.
    ``key_tokens`` defaults to ``query_tokens`` (self-attention).

    Introduced in §4.6.
    """
    w = _as_array(weights, "plot_attention")
    if w.ndim == 2:
        w = w[None]
    if w.ndim != 3:
        raise ValueError(
            f"plot_attention: expected weights of shape (T_q, T_k) or (n_heads, T_q, T_k), got {tuple(w.shape)}"
        )
    key_tokens = key_tokens if key_tokens is not None else query_tokens
    for tokens, axis, what in ((query_tokens, 1, "query_tokens"), (key_tokens, 2, "key_tokens")):
        if tokens is not None and len(tokens) != w.shape[axis]:
            raise ValueError(
                f"plot_attention: expected {w.shape[axis]} {what} for weights of shape {tuple(w.shape)}, "
                f"got {len(tokens)}"
            )
    heads, tq, tk = w.shape
    ncols = min(ncols, heads)
    nrows = math.ceil(heads / ncols)
    cell = min((PAGE_WIDTH_IN - 1.0) / ncols, 1.0 + 0.35 * max(tq, tk))  # 1 inch for the colour bar
    with plt.rc_context(BOOK_STYLE):
        fig, axes = plt.subplots(nrows, ncols, figsize=(cell * ncols + 1.0, cell * nrows + 0.6), squeeze=False)
        fig.suptitle(title)
        for ax in axes.flat[heads:]:
            ax.axis("off")
        for h, ax in enumerate(axes.flat[:heads]):
            image = ax.imshow(w[h], cmap="viridis", vmin=0, vmax=max(1e-12, float(w.max())))
            ax.grid(False)
            ax.set(title=f"head {h}" if heads > 1 else "", xlabel="key (attended to)", ylabel="query")
            if heads == 1:
                ax.set_title("rows sum to 1", fontsize=10)
            if key_tokens is not None:
                ax.set_xticks(range(tk), labels=list(key_tokens), rotation=90)
            if query_tokens is not None:
                ax.set_yticks(range(tq), labels=list(query_tokens))
        fig.colorbar(image, ax=list(axes.flat[:heads]), label="attention weight", shrink=0.8)
    return fig
