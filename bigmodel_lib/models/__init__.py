"""Models of the course, one concept per file: convolution and pooling (``cnn``)
and residual networks (``resnet``) (chapter 2), recurrent cells and networks
(``rnn``), a character-level language model (``char_lstm``) and a forecaster
(``forecaster``) (chapter 3), attention,
positional encodings, the encoder-decoder Transformer and the GPT (chapter 4), the BERT encoder
that loads pretrained weights (``bert``, chapter 5), and a recurrent, a convolutional and a
Transformer classifier of token sequences compared at matched sizes (``sequence_classifiers``, chapter 7),
four classifiers of images, a CNN, a row-by-row LSTM, a Vision Transformer and an MLP (``image_classifiers``,
chapter 7), and four classifiers of whole texts, a bag of embeddings, a Kim CNN, a BiLSTM and a Transformer
encoder (``text_classifiers``, chapter 7), a causal dilated convolutional language model (``conv_lm``,
chapter 7), and an LSTM that forecasts tomorrow's variance of returns (``volatility``, chapter 6).

Import from the submodules, e.g. ``from bigmodel_lib.models.rnn import LSTM``.
The source articles' models, corrected, are in :mod:`bigmodel_lib.articles`.
"""
