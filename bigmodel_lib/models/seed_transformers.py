"""The two source articles' Transformer code, as published and corrected.

Chapter 4, section 4.7 (reading Transformer code critically) runs the code of
the two articles the course started from, the "4.3 使用PyTorch实现变压器"
snippet (seed 000) and the "1.5.3 使用PyTorch实现变压器" snippet (seed 001).
Neither runs. This module holds

* the published code as strings (:func:`seed_transformer_source`): the articles
  lost their line breaks and indentation, so the obvious Python layout is
  restored, but every token is kept, bugs included;
* the list of defects met by running it (:func:`seed_transformer_defects`), each with the
  minimal fix that lets execution reach the next one, and
  :func:`patched_seed_transformer_source` / :func:`run_seed_source` to replay the sequence;
* the corrected models :class:`Seed000Transformer` and :class:`Seed001Transformer`,
  whose docstrings list every defect with the error or wrong behaviour it
  produces (observed on torch 2.14).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from bigmodel_lib.metrics import check_class_indices
from bigmodel_lib.models.positional import PositionalEncoding

__all__ = [
    "seed_transformer_source",
    "SeedDefect",
    "seed_transformer_defects",
    "SEED_000_TRANSFORMER_DEFECTS",
    "SEED_001_TRANSFORMER_DEFECTS",
    "patched_seed_transformer_source",
    "run_seed_source",
    "Seed000Transformer",
    "Seed001Transformer",
]

# ---------------------------------------------------------------------------
# The published code

_SOURCE_000_TRANSFORMER = '''\
import torch
import torch.nn as nn
import torch.nn.functional as F

class Transformer(nn.Module):
    def __init__(self, input_size, hidden_size, num_layers):
        super(Transformer, self).__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.embedding = nn.Embedding(input_size, hidden_size)
        self.pos_encoding = self.positional_encoding(hidden_size)
        self.encoder = nn.TransformerEncoderLayer(d_model=hidden_size, nhead=8)
        self.decoder = nn.TransformerDecoderLayer(d_model=hidden_size, nhead=8)
        self.fc = nn.Linear(hidden_size, input_size)

    def forward(self, src):
        src = self.embedding(src) * math.sqrt(torch.tensor(self.hidden_size).float())
        src = src + self.pos_encoding[:src.size(0), :]
        src = src.transpose(0, 1)
        output = self.encoder(src, src)
        output = self.decoder(output, output)
        output = self.fc(output[0])
        return output

net = Transformer(input_size=10, hidden_size=8, num_layers=2)
'''

_SOURCE_001_TRANSFORMER = '''\
import torch
import torch.nn as nn
import torch.optim as optim

class Transformer(nn.Module):
    def __init__(self, input_size, hidden_size, num_layers, num_heads, dropout):
        super(Transformer, self).__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.dropout = dropout
        self.embedding = nn.Embedding(input_size, hidden_size)
        self.position_encoding = nn.Embedding(input_size, hidden_size)
        self.layers = nn.ModuleList([nn.TransformerEncoderLayer(hidden_size, num_heads, dropout) for _ in range(num_layers)])
        self.output = nn.Linear(hidden_size, input_size)

    def forward(self, src):
        src_mask = torch.zeros(src.size(0), src.size(1), dtype=torch.long).to(src.device)
        src = self.embedding(src) * math.sqrt(torch.tensor(self.hidden_size // self.num_heads))
        src = self.position_encoding(torch.arange(src.size(1), device=src.device))
        src = src + src.unsqueeze(1)
        output = self.layers(src, src_mask)
        output = self.output(output)
        return output

model = Transformer(input_size=10, hidden_size=50, num_layers=2, num_heads=2, dropout=0.1)
criterion = nn.CrossEntropyLoss()
optimizer = optim.Adam(model.parameters(), lr=0.01)
# 训练模型
for epoch in range(10):
    for data, target in train_loader:
        optimizer.zero_grad()
        output = model(data)
        loss = criterion(output, target)
        loss.backward()
        optimizer.step()
'''

_SOURCES = {"000": _SOURCE_000_TRANSFORMER, "001": _SOURCE_001_TRANSFORMER}


def _check_seed(seed: str) -> str:
    seed = str(seed).zfill(3)
    if seed not in _SOURCES:
        raise ValueError(f"expected seed '000' or '001', got {seed!r}")
    return seed


def seed_transformer_source(seed: str, include_training_loop: bool = True) -> str:
    """The source articles' Transformer code, every token as published, re-indented.

    ``seed="000"`` is section 4.3 (one line on the page: its line breaks and
    indentation are reconstructed), ``seed="001"`` section 1.5.3 (line breaks
    kept, indentation lost), which ends in a loss, an optimizer and a training
    loop; ``include_training_loop=False`` leaves those out. ``exec`` the code
    (or use :func:`run_seed_source`) to see the first error.
    Chapter 4, section 4.7 (reading Transformer code critically).
    """
    source = _SOURCES[_check_seed(seed)]
    if not include_training_loop:
        source = source.split("criterion = ")[0]
    return source


# ---------------------------------------------------------------------------
# The defects, in the order running the code meets them


@dataclass(frozen=True)
class SeedDefect:
    """One defect of a published snippet, and how running the code shows it.

    ``run`` is executed after the snippet with the fixes of all *earlier*
    defects applied (see :func:`patched_seed_transformer_source`). If ``error`` names an
    exception class, that exception is raised, with a message matching the
    regular expression ``match``; ``observed`` is the full message seen on
    torch 2.14. If ``error`` is None the defect is silent: ``run`` completes
    and its ``assert`` statements hold *because* of the defect. ``fix`` is a
    tuple of (old, new) text replacements (empty when the corrected class is
    the fix). ``code_upto`` stops the snippet before that line (to skip a
    training loop that cannot run yet). Chapter 4, section 4.7.
    """

    title: str
    run: str
    observed: str
    error: str | None = None
    match: str = ""
    fix: tuple[tuple[str, str], ...] = ()
    code_upto: str | None = None


_SEED_000_PE_FIX = '''
    def positional_encoding(self, d_model, max_len=5000):
        position = torch.arange(max_len).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2) * (-torch.log(torch.tensor(10000.0)) / d_model))
        pe = torch.zeros(max_len, d_model)
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)
        return pe

    def forward(self, src):'''

_X = "x = torch.randint(0, 10, (4, 6))\n"  # a batch of 4 sequences of 6 tokens

SEED_000_TRANSFORMER_DEFECTS = (
    SeedDefect(
        title="self.positional_encoding is never defined",
        run="",
        error="AttributeError",
        match="has no attribute 'positional_encoding'",
        observed="AttributeError: 'Transformer' object has no attribute 'positional_encoding'",
        fix=(("\n    def forward(self, src):", _SEED_000_PE_FIX),),
    ),
    SeedDefect(
        title="nhead=8 is hard-coded: head size 1 for hidden_size=8, a crash for widths not divisible by 8",
        run="Transformer(input_size=10, hidden_size=50, num_layers=2)",
        error="AssertionError",
        match="embed_dim must be divisible by num_heads",
        observed="AssertionError: embed_dim must be divisible by num_heads",
        fix=(
            (
                "def __init__(self, input_size, hidden_size, num_layers):",
                "def __init__(self, input_size, hidden_size, num_layers, num_heads=2):",
            ),
            ("nhead=8", "nhead=num_heads"),
        ),
    ),
    SeedDefect(
        title="math is used but never imported",
        run=_X + "net(x)",
        error="NameError",
        match="name 'math' is not defined",
        observed="NameError: name 'math' is not defined",
        fix=(("import torch\n", "import math\nimport torch\n"),),
    ),
    SeedDefect(
        title="the position table is sliced by the batch size, src.size(0), not the sequence length",
        run=_X + "net(x)",
        error="RuntimeError",
        match=r"size of tensor a \(6\) must match the size of tensor b \(4\)",
        observed=(
            "RuntimeError: The size of tensor a (6) must match the size of tensor b (4) "
            "at non-singleton dimension 1"
        ),
        fix=(("self.pos_encoding[:src.size(0), :]", "self.pos_encoding[:src.size(1), :]"),),
    ),
    SeedDefect(
        title="the encoder is called with src as its mask: encoder(src, src)",
        run=_X + "net(x)",
        error="RuntimeError",
        match=r"shape of the 3D attn_mask is torch.Size\(\[6, 4, 8\]\), but should be \(8, 6, 6\)",
        observed="RuntimeError: The shape of the 3D attn_mask is torch.Size([6, 4, 8]), but should be (8, 6, 6).",
        fix=(("self.encoder(src, src)", "self.encoder(src)"),),
    ),
    SeedDefect(
        title="fc(output[0]) keeps only the first time step: one prediction per sequence",
        run=_X + "out = net(x)\nassert out.shape == (4, 10)  # not (4, 6, 10)",
        observed="net(x) for x of shape (4, 6) returns shape (4, 10): logits for time step 0 only",
    ),
    SeedDefect(
        title="the decoder is fed its own input as memory, with no target and no causal mask: it looks ahead",
        run=(
            _X
            + "net.eval()\ny = x.clone()\ny[:, -1] = (y[:, -1] + 1) % 10  # change only the last token\n"
            + "assert not torch.allclose(net(x), net(y))  # the prediction at step 0 changes"
        ),
        observed="changing the last token changes the output at time step 0",
    ),
    SeedDefect(
        title="num_layers is stored but unused: one encoder layer and one decoder layer",
        run="assert sum(isinstance(m, nn.TransformerEncoderLayer) for m in net.modules()) == 1",
        observed="Transformer(num_layers=2) has 1 encoder layer and 1 decoder layer",
    ),
    SeedDefect(
        title="the position table is a plain tensor attribute, not a buffer: it does not move with the model",
        run=_X + "assert 'pos_encoding' not in dict(net.named_buffers())\nnet.to(torch.bfloat16)\nnet(x)",
        error="RuntimeError",
        match="same dtype",
        observed="RuntimeError: expected m1 and m2 to have the same dtype, but got: float != c10::BFloat16",
    ),
)

_SEED_001_LOOP = "for epoch in range(10):\n"

SEED_001_TRANSFORMER_DEFECTS = (
    SeedDefect(
        title="TransformerEncoderLayer(hidden_size, num_heads, dropout) passes dropout as dim_feedforward",
        run="",
        error="TypeError",
        # PyTorch 2.14 words it this way; 2.11 says "empty() received an invalid
        # combination of arguments": both are the float dim_feedforward reaching torch.empty.
        match="must be tuple of ints, but found element of type float|empty\\(\\) received an invalid combination of arguments",
        observed=(
            "TypeError: empty(): argument 'size' (position 1) must be tuple of ints, "
            "but found element of type float at pos 0"
        ),
        fix=(
            (
                "nn.TransformerEncoderLayer(hidden_size, num_heads, dropout)",
                "nn.TransformerEncoderLayer(hidden_size, num_heads, dropout=dropout)",
            ),
        ),
    ),
    SeedDefect(
        title="train_loader is never defined",
        run="",
        error="NameError",
        match="name 'train_loader' is not defined",
        observed="NameError: name 'train_loader' is not defined",
        fix=(
            (
                _SEED_001_LOOP,
                "train_loader = [(torch.randint(0, 10, (4, 6)),) * 2]  # one batch (data, target) of a copy task\n"
                + _SEED_001_LOOP,
            ),
        ),
    ),
    SeedDefect(
        title="math is used but never imported",
        run="",
        error="NameError",
        match="name 'math' is not defined",
        observed="NameError: name 'math' is not defined",
        fix=(("import torch\n", "import math\nimport torch\n"),),
    ),
    SeedDefect(
        title="nn.ModuleList is called like a module: self.layers(src, src_mask)",
        run="",
        error="NotImplementedError",
        match=r"Module \[ModuleList\] is missing the required \"forward\" function",
        observed='NotImplementedError: Module [ModuleList] is missing the required "forward" function',
        fix=(
            (
                "output = self.layers(src, src_mask)",
                "output = src\n        for layer in self.layers:\n            output = layer(output, src_mask)",
            ),
        ),
    ),
    SeedDefect(
        title="the mask is a long-dtype tensor of zeros",
        run="",
        error="AssertionError",
        match="only bool and floating types of src_mask are supported",
        observed="AssertionError: only bool and floating types of src_mask are supported",
        fix=(("dtype=torch.long", "dtype=torch.bool"),),
    ),
    SeedDefect(
        title="the mask has the shape of the input (B, T), not of an attention mask (T, T), and masks nothing",
        run="",
        error="RuntimeError",
        match=r"shape of the 2D attn_mask is torch.Size\(\[4, 6\]\), but should be \(6, 6\)",
        observed="RuntimeError: The shape of the 2D attn_mask is torch.Size([4, 6]), but should be (6, 6).",
        fix=(("output = layer(output, src_mask)", "output = layer(output)"),),
    ),
    SeedDefect(
        title="the position embeddings overwrite the token embeddings: the output ignores the input",
        run=(
            "model.eval()\n"
            "assert torch.equal(model(torch.randint(0, 10, (4, 6))), model(torch.randint(0, 10, (4, 6))))"
        ),
        code_upto="criterion = nn.CrossEntropyLoss()",
        observed="two different random batches give exactly the same output",
    ),
    SeedDefect(
        title="src + src.unsqueeze(1) broadcasts (T, C) + (T, 1, C) to (T, T, C): the batch dimension is lost",
        run="",
        error="ValueError",
        match=r"Expected input batch_size \(6\) to match target batch_size \(4\)",
        observed="ValueError: Expected input batch_size (6) to match target batch_size (4).",
        fix=(
            (
                "src = self.position_encoding(torch.arange(src.size(1), device=src.device))\n"
                "        src = src + src.unsqueeze(1)\n",
                "src = src + self.position_encoding(torch.arange(src.size(1), device=src.device))\n",
            ),
        ),
    ),
    SeedDefect(
        title="CrossEntropyLoss is given (B, T, V) logits: it wants the classes in dimension 1",
        run="",
        error="RuntimeError",
        match=r"Expected target size \[4, 10\], got \[4, 6\]",
        observed="RuntimeError: Expected target size [4, 10], got [4, 6]",
        fix=(("criterion(output, target)", "criterion(output.flatten(0, 1), target.flatten())"),),
    ),
    SeedDefect(
        title="batch-first data goes into seq-first layers: attention mixes a batch's sequences, not its time steps",
        run=(
            _X
            + "model.eval()\n"
            + "y = x.clone()\ny[1] = (y[1] + 1) % 10  # change sequence 1 only\n"
            + "assert not torch.allclose(model(x)[0], model(y)[0])  # ... and sequence 0's output changes\n"
            + "z = x.clone()\nz[0, 5] = (z[0, 5] + 1) % 10  # change the last token of sequence 0\n"
            + "torch.testing.assert_close(model(x)[0, 0], model(z)[0, 0])  # its first output does not see it"
        ),
        observed=(
            "changing sequence 1 changes the output for sequence 0, while changing the last token of "
            "sequence 0 leaves its first output unchanged"
        ),
    ),
    SeedDefect(
        title="the embeddings are scaled by sqrt(hidden_size // num_heads) = 5, not sqrt(d_model) = 7.07",
        run="assert math.sqrt(torch.tensor(model.hidden_size // model.num_heads)) == 5.0",
        observed="the factor is sqrt(50 // 2) = 5.0 instead of sqrt(50) = 7.07",
    ),
    SeedDefect(
        title="the position table is sized by the vocabulary (input_size=10), not by a maximum length",
        run="model(torch.randint(0, 10, (4, 11)))",
        error="IndexError",
        match="index out of range in self",
        observed="IndexError: index out of range in self",
    ),
)

_DEFECTS = {"000": SEED_000_TRANSFORMER_DEFECTS, "001": SEED_001_TRANSFORMER_DEFECTS}


def seed_transformer_defects(seed: str) -> tuple[SeedDefect, ...]:
    """The defects of seed ``seed``'s snippet, in the order running it meets them. Chapter 4, section 4.7."""
    return _DEFECTS[_check_seed(seed)]


def patched_seed_transformer_source(seed: str, upto: int = 0, skip: tuple[int, ...] = ()) -> str:
    """The published code of ``seed`` with the fixes of defects 0..upto-1 applied (except those in ``skip``).

    ``patched_seed_transformer_source(seed, upto=i)`` is the code on which defect i shows;
    with ``upto=len(seed_transformer_defects(seed))`` every fix is applied and the snippet
    runs, though it keeps the silent defects. Chapter 4, section 4.7.
    """
    code = seed_transformer_source(seed)
    defects = seed_transformer_defects(seed)
    if not 0 <= upto <= len(defects):
        raise ValueError(f"expected upto between 0 and {len(defects)} (the number of defects), got {upto}")
    for number, defect in enumerate(defects[:upto]):
        if number in skip:
            continue
        for old, new in defect.fix:
            if old not in code:
                raise ValueError(f"fix of defect {number} expected the text {old!r} in the code, but it is not there")
            code = code.replace(old, new)
    return code


def run_seed_source(code: str, run: str = "", code_upto: str | None = None) -> tuple[dict, BaseException | None]:
    """Execute seed ``code`` then ``run`` in a fresh namespace, with ``torch.manual_seed(0)`` first.

    Returns the namespace and the exception raised (None if everything ran),
    so a notebook can show the error without stopping. ``code_upto`` cuts
    the code before that line. Chapter 4, section 4.7.
    """
    if code_upto is not None:
        code = code.split(code_upto)[0]
    namespace: dict = {"__name__": "seed_snippet"}
    torch.manual_seed(0)
    try:
        exec(compile(code + "\n" + run, "<seed snippet>", "exec"), namespace)
    except Exception as error:  # the point is to show the error, whatever it is
        return namespace, error
    return namespace, None


# ---------------------------------------------------------------------------
# The corrected models


class Seed000Transformer(nn.Module):
    """Seed 000's encoder-decoder Transformer, corrected. Chapter 4, section 4.7 (reading Transformer code critically).

    The article's section 4.3 builds an embedding, a sinusoidal positional
    encoding, an ``nn.TransformerEncoderLayer``, an ``nn.TransformerDecoderLayer``
    and an output layer over the vocabulary, with ``input_size=10`` (the
    vocabulary) and ``hidden_size=8``. Run as published (torch 2.14), in the
    order the errors appear (:data:`SEED_000_TRANSFORMER_DEFECTS`, each fixed before the next):

    1. ``self.positional_encoding(hidden_size)`` calls a method that is never
       defined: ``AttributeError: 'Transformer' object has no attribute
       'positional_encoding'`` at construction.
    2. ``nhead=8`` is hard-coded and ``num_layers`` cannot change it. With
       ``hidden_size=8`` each head has head size 1: its query and key are single
       numbers, so each head's attention can only rank keys by one scalar.
       Any width not divisible by 8 crashes: ``Transformer(input_size=10,
       hidden_size=50, num_layers=2)`` raises ``AssertionError: embed_dim must
       be divisible by num_heads``.
    3. ``math.sqrt`` is used but ``math`` is never imported: ``NameError: name
       'math' is not defined`` on the first forward pass.
    4. ``self.pos_encoding[:src.size(0), :]`` slices the table by ``src.size(0)``,
       the batch size B of the batch-first input (the ``transpose(0, 1)`` that
       follows shows the input is (B, T)); the input layouts are confused.
       Broadcasting lines the (B, C) slice up with the time axis of (B, T, C),
       so for B=4, T=6: ``RuntimeError: The size of tensor a (6) must match the
       size of tensor b (4) at non-singleton dimension 1``. It runs silently
       wrong when B == 1 (every token gets position 0's vector, so the model
       has no notion of order) and correct by accident when B == T.
    5. ``self.encoder(src, src)`` passes the input as the second argument,
       which is ``src_mask``: ``RuntimeError: The shape of the 3D attn_mask is
       torch.Size([6, 4, 8]), but should be (8, 6, 6).`` (for B=4, T=6, 2 heads
       after fix 2; the published 8 heads expect (32, 6, 6)).

    With those five fixed the snippet runs, and computes the wrong thing:

    6. ``self.fc(output[0])``: the layers are sequence-first, so ``output[0]``
       is time step 0 of every sequence. ``net(x)`` for x of shape (4, 6)
       returns shape (4, 10): logits for time step 0 only, not (4, 6, 10).
    7. ``self.decoder(output, output)`` feeds the decoder its own input as
       ``memory``: there is no target sequence, no causal ``tgt_mask``, so the
       "decoder" is a second encoder layer and sees the future: changing the
       last token changes the output at time step 0, so it cannot be trained
       to generate.
    8. ``num_layers`` is stored but unused: ``Transformer(num_layers=2)`` has
       1 encoder layer and 1 decoder layer.
    9. ``self.pos_encoding`` is a plain tensor attribute, not a registered
       buffer: it is not in ``named_buffers()`` or the state dict and stays in
       float32 on the CPU when the model moves. ``net.to(torch.bfloat16)``
       then fails with ``RuntimeError: expected m1 and m2 to have the same
       dtype, but got: float != c10::BFloat16``; ``net.to("cuda")`` likewise
       leaves the table on the CPU (a device-mismatch error; not run here).

    (``math.sqrt(torch.tensor(self.hidden_size).float())`` works, since a
    one-element tensor converts to a float, and gives the paper's sqrt(d_model).)

    The correction keeps the sizes, the sinusoidal encoding and PyTorch's
    encoder and decoder layers, and makes it a real encoder-decoder:
    ``forward(src, tgt_in)`` takes source ids (B, S) and the target shifted
    right (B, T) and returns logits (B, T, input_size) for every target
    position. ``num_layers`` layers are stacked, ``num_heads`` is an argument
    (default 2: head size 4), the decoder attends to the encoder output with a
    causal mask on its own input, the position table is a buffer sized by
    ``max_len``, and everything is batch-first. The feed-forward width is
    4 x ``hidden_size`` (PyTorch's default 2048 would be 256 x).
    """

    def __init__(
        self,
        input_size: int = 10,
        hidden_size: int = 8,
        num_layers: int = 2,
        num_heads: int = 2,
        dropout: float = 0.1,
        max_len: int = 512,
    ):
        super().__init__()
        if hidden_size % num_heads != 0:
            raise ValueError(
                f"expected hidden_size divisible by num_heads, got hidden_size={hidden_size} and num_heads={num_heads}"
            )
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.embedding = nn.Embedding(input_size, hidden_size)  # shared by source and target (one vocabulary)
        self.pos_encoding = PositionalEncoding(hidden_size, max_len=max_len, dropout=dropout)
        self.encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(hidden_size, num_heads, 4 * hidden_size, dropout, batch_first=True),
            num_layers,
            enable_nested_tensor=False,
        )
        self.decoder = nn.TransformerDecoder(
            nn.TransformerDecoderLayer(hidden_size, num_heads, 4 * hidden_size, dropout, batch_first=True),
            num_layers,
        )
        self.fc = nn.Linear(hidden_size, input_size)
        # The embeddings are multiplied by sqrt(hidden_size): start them at std 1/sqrt(hidden_size)
        # so that tokens do not drown the positions (nn.Embedding's default std is 1).
        nn.init.normal_(self.embedding.weight, std=hidden_size**-0.5)

    def _embed(self, ids: torch.Tensor, name: str) -> torch.Tensor:
        if ids.dim() != 2:
            raise ValueError(f"expected {name} token ids of shape (B, T) (batch first), got shape {tuple(ids.shape)}")
        check_class_indices(ids, self.input_size, "Seed000Transformer", name=f"{name} token ids")
        return self.pos_encoding(self.embedding(ids) * math.sqrt(self.hidden_size))  # (B, T, C)

    def forward(
        self,
        src: torch.Tensor,
        tgt_in: torch.Tensor,
        src_key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        memory = self.encoder(self._embed(src, "src"), src_key_padding_mask=src_key_padding_mask)  # (B, S, C)
        T = tgt_in.size(-1)
        # (T, T), True above the diagonal: in PyTorch's modules a True mask entry means "may NOT attend".
        causal = torch.ones(T, T, dtype=torch.bool, device=tgt_in.device).triu(diagonal=1)
        output = self.decoder(
            self._embed(tgt_in, "tgt_in"),
            memory,
            tgt_mask=causal,
            tgt_is_causal=True,
            memory_key_padding_mask=src_key_padding_mask,
        )  # (B, T, C)
        return self.fc(output)  # (B, T, input_size)


class Seed001Transformer(nn.Module):
    """Seed 001's encoder-only Transformer, corrected. Chapter 4, section 4.7 (reading Transformer code critically).

    The article's section 1.5.3 builds a token embedding, a learned position
    embedding, ``num_layers`` ``nn.TransformerEncoderLayer`` in an
    ``nn.ModuleList`` and an output layer over the vocabulary: a model that
    predicts one token per input position (``input_size=10`` tokens,
    ``hidden_size=50``, 2 layers, 2 heads, dropout 0.1), trained with
    ``CrossEntropyLoss`` and Adam. Run as published (torch 2.14), in the order
    the errors appear (:data:`SEED_001_TRANSFORMER_DEFECTS`, each fixed before the next;
    the batches are 4 sequences of 6 tokens):

    1. ``nn.TransformerEncoderLayer(hidden_size, num_heads, dropout)``: the
       third positional parameter is ``dim_feedforward``, so the feed-forward
       layer gets width 0.1: ``TypeError: empty(): argument 'size' (position 1)
       must be tuple of ints, but found element of type float at pos 0`` at
       construction (PyTorch 2.11 says ``empty() received an invalid combination
       of arguments``). (Passing ``dropout=dropout`` leaves PyTorch's default
       ``dim_feedforward=2048``, 41 x the width of 50.)
    2. The training loop uses ``train_loader``, which is never defined:
       ``NameError: name 'train_loader' is not defined``.
    3. ``math.sqrt`` is used but ``math`` is never imported: ``NameError: name
       'math' is not defined``.
    4. ``self.layers(src, src_mask)`` calls the ``nn.ModuleList`` as if it were a
       module; a ModuleList only holds layers: ``NotImplementedError: Module
       [ModuleList] is missing the required "forward" function``.
    5. ``src_mask`` is a ``torch.long`` tensor of zeros: ``AssertionError: only
       bool and floating types of src_mask are supported``.
    6. Its shape is the input's (B, T), not an attention mask's (T, T) (nor is
       it passed as ``src_key_padding_mask``), and zeros would mask nothing
       anyway: ``RuntimeError: The shape of the 2D attn_mask is
       torch.Size([4, 6]), but should be (6, 6).``
    7. ``src = self.position_encoding(...)`` overwrites the token embeddings
       with the position embeddings, so the output does not depend on the input
       at all: two different random batches give exactly the same output.
    8. ``src + src.unsqueeze(1)`` then adds (T, C) and (T, 1, C), which
       broadcasts to (T, T, C): the batch dimension is gone, the output has
       shape (6, 6, 10) for a batch of 4, and the loss fails with
       ``ValueError: Expected input batch_size (6) to match target batch_size (4).``
    9. ``criterion(output, target)`` gives ``CrossEntropyLoss`` logits of shape
       (B, T, V), but it expects the classes in dimension 1: ``RuntimeError:
       Expected target size [4, 10], got [4, 6]``.

    With those fixed the snippet trains, and computes the wrong thing:

    10. The layers are sequence-first (``batch_first=False``, the default) but
        the data is batch-first (B, T): each layer attends across the 4
        sequences of a batch at one time step instead of across the 6 time
        steps of a sequence: changing sequence 1 changes the output for
        sequence 0, while changing the last token of sequence 0 leaves its
        first output unchanged.
    11. The embeddings are scaled by ``sqrt(hidden_size // num_heads)``: the
        factor is sqrt(50 // 2) = 5.0 instead of sqrt(50) = 7.07, confusing the
        paper's sqrt(d_model) embedding scale with the sqrt(d_k) of attention.
    12. The position table is ``nn.Embedding(input_size, hidden_size)``, sized
        by the vocabulary (10) instead of a maximum length, so a sequence of 11
        tokens fails: ``IndexError: index out of range in self``.

    (``math.sqrt`` of an integer tensor works: a one-element tensor converts
    to a float. The ``dropout`` argument is stored and, after fix 1, used.)

    The correction keeps the sizes, the learned position embedding, the
    ``nn.ModuleList`` of ``nn.TransformerEncoderLayer`` and the output layer:
    the layers are batch-first with ``dropout=dropout`` and a feed-forward
    width of 4 x ``hidden_size``, the loop runs them one after the other, the
    token and position embeddings are added (the tokens scaled by
    sqrt(hidden_size)), the position table has ``max_len`` rows, and an
    optional boolean ``src_key_padding_mask`` (B, T) (True = padding) replaces
    the broken mask. ``forward(src)`` maps (B, T) ids to logits (B, T, input_size).
    """

    def __init__(
        self,
        input_size: int = 10,
        hidden_size: int = 50,
        num_layers: int = 2,
        num_heads: int = 2,
        dropout: float = 0.1,
        max_len: int = 64,
    ):
        super().__init__()
        if hidden_size % num_heads != 0:
            raise ValueError(
                f"expected hidden_size divisible by num_heads, got hidden_size={hidden_size} and num_heads={num_heads}"
            )
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.dropout = dropout
        self.max_len = max_len
        self.embedding = nn.Embedding(input_size, hidden_size)
        self.position_encoding = nn.Embedding(max_len, hidden_size)
        self.layers = nn.ModuleList(
            [
                nn.TransformerEncoderLayer(hidden_size, num_heads, 4 * hidden_size, dropout=dropout, batch_first=True)
                for _ in range(num_layers)
            ]
        )
        self.output = nn.Linear(hidden_size, input_size)
        # Tokens are multiplied by sqrt(hidden_size): start them at std 1/sqrt(hidden_size), the size
        # of the position vectors after scaling (nn.Embedding's default std is 1 for both).
        nn.init.normal_(self.embedding.weight, std=hidden_size**-0.5)

    def forward(self, src: torch.Tensor, src_key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        if src.dim() != 2:
            raise ValueError(f"expected src token ids of shape (B, T) (batch first), got shape {tuple(src.shape)}")
        if src.size(1) > self.max_len:
            raise ValueError(
                f"expected a sequence of at most max_len={self.max_len} tokens (the size of the position table), "
                f"got T={src.size(1)}"
            )
        check_class_indices(src, self.input_size, "Seed001Transformer", name="src token ids")
        positions = torch.arange(src.size(1), device=src.device)  # (T,)
        x = self.embedding(src) * math.sqrt(self.hidden_size) + self.position_encoding(positions)  # (B, T, C)
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=src_key_padding_mask)  # (B, T, C)
        return self.output(x)  # (B, T, input_size)
