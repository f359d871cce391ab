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
architecture), ``articles`` (the source articles' code, its defects and the
corrected models) and ``exercises`` (a checker per coding exercise, with hints
for the known mistakes).

Layers, lowest first. A module imports only from layers below its own: never
sideways within its layer, never upwards, never from the package root
(``tests/test_architecture.py`` reads this list and checks every import).

1. ``_version``, ``articles.defects``, ``articles.outline``, ``exercises.checking``: no imports from the package
2. ``devices``: where, in what precision and in which mode (train or eval) to compute
3. ``metrics``, ``data``, ``text``, ``memory``, ``checkpoint``, ``timing``, ``training.config``, ``pretrained``, ``tokenization``, ``objectives``, ``lora``, ``quantization``, ``finance``, ``peptides``, ``speech``, ``detection``, ``scaling``, ``model_costs``, ``compression``: numbers, data, files, clocks and settings, pretrained files, tokenizers, self-supervised objectives, low-rank adapters, 8-bit weights, prices, peptides, speech (audio, log-mel features, a CTranslate2 weights file), digits on a canvas with their boxes, scaling laws and the memory and compute arithmetic of published models, and distillation and pruning
4. ``plotting``, ``g2p``, ``sentiment``, ``models``, ``training.losses``, ``layer_costs``, ``attribution``: what is shown, a task's data, the models package, the loss, what a layer costs on a sequence, which inputs a prediction depends on (integrated gradients, occlusion, attention rollout, linear probes)
5. ``models.attention``, ``models.positional``, ``models.cnn``, ``models.resnet``, ``models.rnn``, ``models.char_lstm``, ``models.conv_lm``, ``models.forecaster``, ``models.detector``, ``training.trainer``, ``data_quality``: building blocks, small models (a one-stage detector among them), the engine, and label noise and near-duplicates
6. ``models.transformer``, ``models.gpt``, ``articles.cnn``, ``articles.lstm``, ``articles.transformer``, ``probes``, ``training``, ``exercises.learning``, ``exercises.convolution``, ``exercises.recurrent``, ``exercises.attention``, ``exercises.pretraining``, ``exercises.applications``, ``exercises.choosing``, ``exercises.trends``, ``models.volatility``, ``models.whisper``: models built on blocks, probes of them, the engine's package, the exercises' checkers, a volatility model trained by the engine, a pretrained speech recogniser
7. ``models.bert``, ``models.sequence_classifiers``, ``models.image_classifiers``, ``models.text_classifiers``, ``articles.replay``, ``exercises``: a pretrained encoder, and sequence, image and text classifiers built of layer-6 encoder layers; reading, running and repairing the articles' code; the checkers' package
8. ``articles``, ``models.clip``: the articles' package, which re-exports its modules; a contrastive image-text model built on layer 7's image classifier
9. the package root (this file), which re-exports what two or more chapters use
"""

from bigmodel_lib._version import __version__
from bigmodel_lib.data import dataset_tensors, load_dataset
from bigmodel_lib.devices import environment_report, evaluation_mode, get_device, seed_everything
from bigmodel_lib.metrics import attention_flops, count_parameters, estimate_flops, linear_flops
from bigmodel_lib.plotting import plot_history, use_book_style
from bigmodel_lib.timing import Stopwatch, time_call
from bigmodel_lib.training import TrainConfig, Trainer

# What two or more chapters use; everything else is imported from its module, the same way everywhere.
__all__ = [
    "__version__",
    "get_device",
    "environment_report",
    "seed_everything",
    "evaluation_mode",
    "time_call",
    "Stopwatch",
    "load_dataset",
    "dataset_tensors",
    "TrainConfig",
    "Trainer",
    "count_parameters",
    "linear_flops",
    "attention_flops",
    "estimate_flops",
    "use_book_style",
    "plot_history",
]
