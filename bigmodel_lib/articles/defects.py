"""The defects of the source articles' listings, in the order running them meets them.

Chapters 2.4, 3.2 and 4.7. Each :class:`Defect` says how running the listing
shows it; :func:`bigmodel_lib.articles.patched_source` applies the fixes of
the earlier ones, so each defect can be shown on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = []


@dataclass(frozen=True)
class Defect:
    """One defect of a published listing, and how running the code shows it.

    ``run`` is executed after the listing with the fixes of all *earlier*
    defects applied (see :func:`bigmodel_lib.articles.patched_source`). If ``error`` names an
    exception class, that exception is raised, with a message matching the
    regular expression ``match``; ``observed`` is the full message seen on
    torch 2.14. If ``error`` is None the defect is silent: ``run`` completes
    and its ``assert`` statements hold *because* of the defect. ``fix`` is a
    tuple of (old, new) text replacements (empty when the corrected class is
    the fix). ``code_upto`` stops the listing before that line (to skip a
    training loop that cannot run yet).
    """

    title: str
    run: str
    observed: str
    error: str | None = None
    match: str = ""
    fix: tuple[tuple[str, str], ...] = ()
    code_upto: str | None = None


_LOOP = "for epoch in range(10):\n"


def _define_train_loader(batch: str) -> tuple[tuple[str, str], ...]:
    """The fix for a training loop over a ``train_loader`` the article never defines: one batch."""
    return ((_LOOP, f"train_loader = [{batch}]  # one batch (data, target)\n" + _LOOP),)


_CNN_000 = (
    Defect(
        title="x.view(-1, 64 * 6 * 6) assumes 24x24 images: a batch of four 32x32 images raises",
        run="net(torch.randn(4, 3, 32, 32))",
        error="RuntimeError",
        match=r"shape '\[-1, 2304\]' is invalid for input of size 16384",
        observed="RuntimeError: shape '[-1, 2304]' is invalid for input of size 16384",
    ),
    Defect(
        title="... and a batch of nine 32x32 images silently comes out as 16 rows that mix images",
        run="out = net(torch.randn(9, 3, 32, 32))\nassert out.shape == (16, 10)  # 9 images in, 16 predictions out",
        observed="net(x) for x of shape (9, 3, 32, 32) returns shape (16, 10)",
    ),
)

_CNN_001 = (
    Defect(
        title="train_loader is never defined",
        run="",
        error="NameError",
        match="name 'train_loader' is not defined",
        observed="NameError: name 'train_loader' is not defined",
        fix=_define_train_loader("(torch.randn(4, 1, 28, 28), torch.randint(0, 10, (4,)))"),
    ),
    Defect(
        title="x.view(-1, 64 * 7 * 7) assumes 28x28 images: a batch of four 32x32 images raises",
        run="model(torch.randn(4, 1, 32, 32))",
        error="RuntimeError",
        match=r"shape '\[-1, 3136\]' is invalid for input of size 16384",
        observed="RuntimeError: shape '[-1, 3136]' is invalid for input of size 16384",
    ),
)

# One sequence of 3 steps, alone and padded with 2 zero steps: the prediction should not change.
_PADDING = (
    "{net}.eval()\na = torch.randn(1, 3, 10)\npadded = torch.cat([a, torch.zeros(1, 2, 10)], dim=1)\n"
    "assert not torch.allclose({net}(a), {net}(padded))  # out[:, -1, :] reads the padding"
)
_PADDING_TITLE = "out[:, -1, :] is the last column of the batch: in a padded batch it is padding"
_PADDING_OBSERVED = "the same sequence gives another prediction when padded with zeros"

_LSTM_000 = (Defect(title=_PADDING_TITLE, run=_PADDING.format(net="net"), observed=_PADDING_OBSERVED),)

_LSTM_001 = (
    Defect(
        title="train_loader is never defined",
        run="",
        error="NameError",
        match="name 'train_loader' is not defined",
        observed="NameError: name 'train_loader' is not defined",
        fix=_define_train_loader("(torch.randn(4, 6, 10), torch.randint(0, 2, (4,)))"),
    ),
    Defect(title=_PADDING_TITLE, run=_PADDING.format(net="model"), observed=_PADDING_OBSERVED),
)

_PE_FIX_000 = '''
    def positional_encoding(self, d_model, max_len=5000):
        position = torch.arange(max_len).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2) * (-torch.log(torch.tensor(10000.0)) / d_model))
        pe = torch.zeros(max_len, d_model)
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)
        return pe

    def forward(self, src):'''

_X = "x = torch.randint(0, 10, (4, 6))\n"  # a batch of 4 sequences of 6 tokens

_TRANSFORMER_000 = (
    Defect(
        title="self.positional_encoding is never defined",
        run="",
        error="AttributeError",
        match="has no attribute 'positional_encoding'",
        observed="AttributeError: 'Transformer' object has no attribute 'positional_encoding'",
        fix=(("\n    def forward(self, src):", _PE_FIX_000),),
    ),
    Defect(
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
    Defect(
        title="math is used but never imported",
        run=_X + "net(x)",
        error="NameError",
        match="name 'math' is not defined",
        observed="NameError: name 'math' is not defined",
        fix=(("import torch\n", "import math\nimport torch\n"),),
    ),
    Defect(
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
    Defect(
        title="the encoder is called with src as its mask: encoder(src, src)",
        run=_X + "net(x)",
        error="RuntimeError",
        match=r"shape of the 3D attn_mask is torch.Size\(\[6, 4, 8\]\), but should be \(8, 6, 6\)",
        observed="RuntimeError: The shape of the 3D attn_mask is torch.Size([6, 4, 8]), but should be (8, 6, 6).",
        fix=(("self.encoder(src, src)", "self.encoder(src)"),),
    ),
    Defect(
        title="fc(output[0]) keeps only the first time step: one prediction per sequence",
        run=_X + "out = net(x)\nassert out.shape == (4, 10)  # not (4, 6, 10)",
        observed="net(x) for x of shape (4, 6) returns shape (4, 10): logits for time step 0 only",
    ),
    Defect(
        title="the decoder is fed its own input as memory, with no target and no causal mask: it looks ahead",
        run=(
            _X
            + "net.eval()\ny = x.clone()\ny[:, -1] = (y[:, -1] + 1) % 10  # change only the last token\n"
            + "assert not torch.allclose(net(x), net(y))  # the prediction at step 0 changes"
        ),
        observed="changing the last token changes the output at time step 0",
    ),
    Defect(
        title="num_layers is stored but unused: one encoder layer and one decoder layer",
        run="assert sum(isinstance(m, nn.TransformerEncoderLayer) for m in net.modules()) == 1",
        observed="Transformer(num_layers=2) has 1 encoder layer and 1 decoder layer",
    ),
    Defect(
        title="the position table is a plain tensor attribute, not a buffer: it does not move with the model",
        run=_X + "assert 'pos_encoding' not in dict(net.named_buffers())\nnet.to(torch.bfloat16)\nnet(x)",
        error="RuntimeError",
        match="same dtype",
        observed="RuntimeError: expected m1 and m2 to have the same dtype, but got: float != c10::BFloat16",
    ),
)

_TRANSFORMER_001 = (
    Defect(
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
    Defect(
        title="train_loader is never defined",
        run="",
        error="NameError",
        match="name 'train_loader' is not defined",
        observed="NameError: name 'train_loader' is not defined",
        fix=_define_train_loader("(torch.randint(0, 10, (4, 6)),) * 2"),  # a copy task: target = data
    ),
    Defect(
        title="math is used but never imported",
        run="",
        error="NameError",
        match="name 'math' is not defined",
        observed="NameError: name 'math' is not defined",
        fix=(("import torch\n", "import math\nimport torch\n"),),
    ),
    Defect(
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
    Defect(
        title="the mask is a long-dtype tensor of zeros",
        run="",
        error="AssertionError",
        match="only bool and floating types of src_mask are supported",
        observed="AssertionError: only bool and floating types of src_mask are supported",
        fix=(("dtype=torch.long", "dtype=torch.bool"),),
    ),
    Defect(
        title="the mask has the shape of the input (B, T), not of an attention mask (T, T), and masks nothing",
        run="",
        error="RuntimeError",
        match=r"shape of the 2D attn_mask is torch.Size\(\[4, 6\]\), but should be \(6, 6\)",
        observed="RuntimeError: The shape of the 2D attn_mask is torch.Size([4, 6]), but should be (6, 6).",
        fix=(("output = layer(output, src_mask)", "output = layer(output)"),),
    ),
    Defect(
        title="the position embeddings overwrite the token embeddings: the output ignores the input",
        run=(
            "model.eval()\n"
            "assert torch.equal(model(torch.randint(0, 10, (4, 6))), model(torch.randint(0, 10, (4, 6))))"
        ),
        code_upto="criterion = nn.CrossEntropyLoss()",
        observed="two different random batches give exactly the same output",
    ),
    Defect(
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
    Defect(
        title="CrossEntropyLoss is given (B, T, V) logits: it wants the classes in dimension 1",
        run="",
        error="RuntimeError",
        match=r"Expected target size \[4, 10\], got \[4, 6\]",
        observed="RuntimeError: Expected target size [4, 10], got [4, 6]",
        fix=(("criterion(output, target)", "criterion(output.flatten(0, 1), target.flatten())"),),
    ),
    Defect(
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
    Defect(
        title="the embeddings are scaled by sqrt(hidden_size // num_heads) = 5, not sqrt(d_model) = 7.07",
        run="assert math.sqrt(torch.tensor(model.hidden_size // model.num_heads)) == 5.0",
        observed="the factor is sqrt(50 // 2) = 5.0 instead of sqrt(50) = 7.07",
    ),
    Defect(
        title="the position table is sized by the vocabulary (input_size=10), not by a maximum length",
        run="model(torch.randint(0, 10, (4, 11)))",
        error="IndexError",
        match="index out of range in self",
        observed="IndexError: index out of range in self",
    ),
)

DEFECTS = {
    ("000", "cnn"): _CNN_000,
    ("001", "cnn"): _CNN_001,
    ("000", "lstm"): _LSTM_000,
    ("001", "lstm"): _LSTM_001,
    ("000", "transformer"): _TRANSFORMER_000,
    ("001", "transformer"): _TRANSFORMER_001,
}
"""``{(article, model): defects}``, in the order running the listing meets them."""
