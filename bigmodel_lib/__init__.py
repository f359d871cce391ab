"""bigmodel_lib: the helper library of *Foundations of Large Models*.

Every public name's docstring ends with the section of the book that
introduces it (``Introduced in §4.2.``); ``tests/test_introduced_in.py`` checks
that the section exists and that its chapter's code uses the name. The
notebooks build each piece from its formula first, check it against PyTorch,
and only then import the library's version.

Organised by concept: ``devices`` (where and in what precision to compute),
``timing``, ``data`` (datasets by name), ``training`` (the engine),
``checkpoint``, ``metrics`` (quality, parameters, FLOPs), ``plotting``,
``probes`` (measurements inside a network), ``models`` (one file per
architecture) and ``articles`` (the source articles' code, its defects and the
corrected models).

Layers, lowest first. A module imports only from layers below its own: never
sideways within its layer, never upwards, never from the package root
(``tests/test_architecture.py`` reads this list and checks every import).

1. ``_version``, ``articles.defects``: no imports from the package
2. ``devices``: where, in what precision and in which mode (train or eval) to compute
3. ``metrics``, ``data``, ``text``, ``memory``, ``checkpoint``, ``timing``, ``training.config``: numbers, data, files, clocks and settings
4. ``plotting``, ``g2p``, ``models``, ``training.losses``: what is shown, a task's data, the models package, the loss
5. ``models.attention``, ``models.positional``, ``models.cnn``, ``models.rnn``, ``models.char_lstm``, ``models.forecaster``, ``training.trainer``: building blocks, small models and the engine
6. ``models.transformer``, ``models.gpt``, ``articles.cnn``, ``articles.lstm``, ``articles.transformer``, ``probes``, ``training``: models built on blocks, probes of them, the engine's package
7. ``articles.replay``: reading, running and repairing the articles' code
8. ``articles``: the articles' package, which re-exports its modules
9. the package root (this file), which re-exports what two or more chapters use
"""

from bigmodel_lib._version import __version__
from bigmodel_lib.checkpoint import (
    check_state_dict,
    load_checkpoint,
    load_weights,
    save_checkpoint,
    save_weights,
    unwrap_model,
)
from bigmodel_lib.data import (
    DatasetInfo,
    DatasetSplits,
    DatasetUnavailableError,
    ImageTensorDataset,
    available_datasets,
    load_dataset,
    register_dataset,
)
from bigmodel_lib.devices import (
    autocast,
    dataloader_kwargs,
    environment_report,
    evaluation_mode,
    get_device,
    grad_scaler,
    move_to_device,
    resolve_precision,
    seed_everything,
)
from bigmodel_lib.metrics import (
    IGNORE_INDEX,
    accuracy,
    attention_flops,
    confusion_matrix,
    conv2d_flops,
    count_parameters,
    count_parameters_by_module,
    edit_distance,
    estimate_flops,
    linear_flops,
    perplexity,
    sequence_error_rate,
    token_error_rate,
)
from bigmodel_lib.plotting import (
    plot_attention,
    plot_confusion_matrix,
    plot_feature_maps,
    plot_filters,
    plot_history,
    plot_images,
    use_book_style,
)
from bigmodel_lib.training import (
    History,
    TrainConfig,
    Trainer,
    cross_entropy_loss,
    fit,
    scored_count,
    warmup_cosine,
)

__all__ = [
    "__version__",
    # devices (preface, chapter 1)
    "get_device",
    "environment_report",
    "resolve_precision",
    "autocast",
    "grad_scaler",
    "seed_everything",
    "dataloader_kwargs",
    "move_to_device",
    # data (chapters 1, 2)
    "load_dataset",
    "available_datasets",
    "register_dataset",
    "DatasetSplits",
    "DatasetInfo",
    "DatasetUnavailableError",
    "ImageTensorDataset",
    # training (chapter 1)
    "TrainConfig",
    "Trainer",
    "History",
    "fit",
    "warmup_cosine",
    "cross_entropy_loss",
    "scored_count",
    "evaluation_mode",
    # checkpoints (chapters 1, 5)
    "save_checkpoint",
    "load_checkpoint",
    "save_weights",
    "load_weights",
    "check_state_dict",
    "unwrap_model",
    # metrics and counting (chapters 1-4)
    "IGNORE_INDEX",
    "accuracy",
    "perplexity",
    "confusion_matrix",
    "edit_distance",
    "token_error_rate",
    "sequence_error_rate",
    "count_parameters",
    "count_parameters_by_module",
    "linear_flops",
    "conv2d_flops",
    "attention_flops",
    "estimate_flops",
    # plots (chapters 1, 2, 4)
    "use_book_style",
    "plot_history",
    "plot_images",
    "plot_feature_maps",
    "plot_filters",
    "plot_confusion_matrix",
    "plot_attention",
]
