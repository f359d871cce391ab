"""Tests for bigmodel_lib.plotting (chapters 1, 2, 4): every plot returns a Figure with titles and labels."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display in CI

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from bigmodel_lib import plot_history, use_book_style
from bigmodel_lib.plotting import (  # noqa: E402
    BOOK_STYLE,
    PAGE_WIDTH_IN,
    plot_attention,
    plot_confusion_matrix,
    plot_feature_maps,
    plot_filters,
    plot_images,
)
from bigmodel_lib.training.config import History


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def check_readable(fig: Figure) -> None:
    """A title on the figure, and on every plot with data axis labels too; no wider than the page."""
    assert isinstance(fig, Figure)
    assert fig.get_suptitle() or any(ax.get_title() for ax in fig.axes)
    assert fig.get_figwidth() <= PAGE_WIDTH_IN + 1.0 + 1e-9
    colorbars = {getattr(ax, "_colorbar", None) and ax for ax in fig.axes} - {None}
    for ax in fig.axes:
        has_data = ax.lines or ax.collections or ax.patches or ax.images
        if not ax.axison or not has_data or ax in colorbars:
            continue  # image panels with their axes switched off, empty grid cells, colour bars
        assert ax.get_xlabel() and ax.get_ylabel(), f"axes {ax.get_title()!r} without axis labels"
    fig.canvas.draw()  # rendering must not fail


def history(epochs: int = 3, steps: int = 4) -> History:
    h = History(metric_name="accuracy")
    for e in range(epochs):
        h.train_loss.append(1.0 / (e + 1))
        h.val_loss.append(1.2 / (e + 1))
        h.train_metric.append(0.5 + 0.1 * e)
        h.val_metric.append(0.45 + 0.1 * e)
        h.samples_per_s.append(1000.0)
        h.lr.append(1e-3)
        h.step_loss.extend([1.0 / (e + 1)] * steps)
    return h


def test_plot_history_draws_loss_and_metric_with_labels():
    fig = plot_history(history())
    check_readable(fig)
    loss_ax, metric_ax = fig.axes
    assert loss_ax.get_title() == "Loss" and loss_ax.get_xlabel() == "epoch" and loss_ax.get_ylabel() == "loss"
    assert metric_ax.get_ylabel() == "accuracy"
    labels = [t.get_text() for t in loss_ax.get_legend().get_texts()]
    assert labels == ["train (each step)", "train", "validation"]


def test_plot_history_without_metric_or_validation():
    h = history()
    h.metric_name, h.train_metric, h.val_metric, h.val_loss = None, [None] * 3, [], []
    fig = plot_history(h.to_dict())
    check_readable(fig)
    assert len(fig.axes) == 1


def test_plot_images_marks_wrong_predictions():
    images = torch.rand(6, 1, 8, 8)
    fig = plot_images(images, labels=[0, 1, 2, 3, 4, 5], predictions=[0, 1, 2, 3, 4, 0],
                      class_names=list("abcdef"), ncols=3, title="Digits")
    check_readable(fig)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["a (a)", "b (b)", "c (c)", "d (d)", "e (e)", "f (a)"]
    assert fig.axes[-1].title.get_color() != fig.axes[0].title.get_color()
    assert fig.get_suptitle() == "Digits"


def test_plot_images_in_colour_and_without_labels():
    fig = plot_images(torch.rand(4, 3, 16, 16))
    check_readable(fig)
    assert fig.axes[0].get_images()[0].get_array().shape == (16, 16, 3)


def test_plot_feature_maps_and_filters():
    check_readable(plot_feature_maps(torch.randn(1, 10, 6, 6)))
    fig = plot_filters(torch.randn(16, 1, 5, 5))
    check_readable(fig)
    assert len([ax for ax in fig.axes if ax.get_images()]) == 16
    check_readable(plot_filters(torch.randn(4, 3, 3, 3)))


def test_plot_attention_labels_tokens():
    tokens = ["the", "cat", "sat"]
    weights = torch.softmax(torch.randn(3, 3), dim=-1)
    fig = plot_attention(weights, tokens)
    check_readable(fig)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == tokens
    assert [t.get_text() for t in ax.get_yticklabels()] == tokens
    assert ax.get_xlabel() and ax.get_ylabel()


def test_plot_attention_for_several_heads_and_cross_attention():
    fig = plot_attention(torch.rand(4, 2, 5), ["a", "b"], list("vwxyz"), ncols=2)
    check_readable(fig)
    assert [ax.get_title() for ax in fig.axes[:4]] == ["head 0", "head 1", "head 2", "head 3"]


def test_plot_confusion_matrix_counts_and_normalises():
    targets, predictions = [0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2]
    fig = plot_confusion_matrix(targets, predictions, class_names=["cat", "dog", "bird"])
    check_readable(fig)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class"
    assert [t.get_text() for t in ax.texts] == ["1", "1", "0", "0", "1", "0", "1", "0", "2"]
    fig = plot_confusion_matrix(targets, predictions, normalize=True)
    assert fig.axes[0].texts[-1].get_text() == "0.67"


def test_use_book_style_sets_the_shared_style():
    with matplotlib.rc_context():
        use_book_style()
        assert plt.rcParams["font.size"] == BOOK_STYLE["font.size"]
        assert tuple(plt.rcParams["figure.figsize"]) == BOOK_STYLE["figure.figsize"]


def test_the_readability_check_catches_a_plot_without_axis_labels():
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    ax.set_title("no axis labels")
    with pytest.raises(AssertionError, match="without axis labels"):
        check_readable(fig)
    ax.set(xlabel="x (units)", ylabel="y (units)")
    check_readable(fig)
