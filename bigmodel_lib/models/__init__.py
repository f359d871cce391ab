"""Models of the course, one concept per file: CNNs (chapter 2), RNNs and LSTMs
(chapter 3), attention, Transformers and GPT (chapter 4).

Import from the submodules, e.g. ``from bigmodel_lib.models.cnn import DCNN``.
"""
