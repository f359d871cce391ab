"""Tests for bigmodel_lib.models.seed_transformers (chapter 4, section 4.7): the source
articles' Transformer code fails exactly as the docstrings say, defect by
defect, and the corrected models train."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.testing import assert_close

from bigmodel_lib.models.seed_transformers import (
    Seed000Transformer,
    Seed001Transformer,
    patched_seed_transformer_source,
    run_seed_source,
    seed_transformer_defects,
    seed_transformer_source,
)

SEEDS = ("000", "001")
CORRECTED = {"000": Seed000Transformer, "001": Seed001Transformer}


pytestmark = pytest.mark.usefixtures("one_thread")


# The code as it appears on the two pages (seed 000: one line; seed 001: no indentation).
PAGE_000 = (
    "import torchimport torch.nn as nnimport torch.nn.functional as Fclass Transformer(nn.Module):def __init__(self, "
    "input_size, hidden_size, num_layers):super(Transformer, self).__init__()self.input_size = input_sizeself.hidden_size"
    " = hidden_sizeself.num_layers = num_layersself.embedding = nn.Embedding(input_size, hidden_size)self.pos_encoding = "
    "self.positional_encoding(hidden_size)self.encoder = nn.TransformerEncoderLayer(d_model=hidden_size, nhead=8)self."
    "decoder = nn.TransformerDecoderLayer(d_model=hidden_size, nhead=8)self.fc = nn.Linear(hidden_size, input_size)def "
    "forward(self, src):src = self.embedding(src) * math.sqrt(torch.tensor(self.hidden_size).float())src = src + self."
    "pos_encoding[:src.size(0), :]src = src.transpose(0, 1)output = self.encoder(src, src)output = self.decoder(output, "
    "output)output = self.fc(output[0])return outputnet = Transformer(input_size=10, hidden_size=8, num_layers=2)"
)
PAGE_001 = """import torch
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
"""


def _without_whitespace(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _prose(text: str) -> str:
    """Docstring text without reStructuredText backticks and line wrapping."""
    return re.sub(r"\s+", " ", text.replace("``", ""))


# ---------------------------------------------------------------------------
# The published code


@pytest.mark.parametrize(("seed", "page"), [("000", PAGE_000), ("001", PAGE_001)])
def test_published_code_keeps_every_token(seed, page):
    source = seed_transformer_source(seed)
    assert _without_whitespace(source) == _without_whitespace(page)
    compile(source, f"seed {seed}", "exec")  # the restored layout is valid Python
    if seed == "001":
        assert seed_transformer_source(seed, include_training_loop=False).rstrip().endswith("dropout=0.1)")


def test_published_snippets_fail_with_the_first_documented_error():
    _, error = run_seed_source(seed_transformer_source("000"))
    assert isinstance(error, AttributeError)
    assert str(error) == "'Transformer' object has no attribute 'positional_encoding'"
    _, error = run_seed_source(seed_transformer_source("001"))
    assert isinstance(error, TypeError)
    assert re.search(seed_transformer_defects("001")[0].match, str(error)), str(error)


CASES = [(seed, i) for seed in SEEDS for i in range(len(seed_transformer_defects(seed)))]


@pytest.mark.parametrize(("seed", "number"), CASES, ids=[f"{s}-defect{i + 1}" for s, i in CASES])
def test_each_defect_shows_as_documented(seed, number):
    """Defect i appears once the defects before it are fixed: the documented error, or a silent wrong result."""
    defect = seed_transformer_defects(seed)[number]
    _, error = run_seed_source(patched_seed_transformer_source(seed, number), defect.run, defect.code_upto)
    if defect.error is None:
        assert error is None, f"silent defect {defect.title!r}: its demonstration raised {error!r}"
    else:
        assert type(error).__name__ == defect.error, f"{defect.title!r}: expected {defect.error}, got {error!r}"
        assert re.search(defect.match, str(error)), f"{defect.title!r}: message {str(error)!r}"
    # ... and the corrected class's docstring says so.
    assert defect.observed in _prose(CORRECTED[seed].__doc__), f"not in the docstring: {defect.observed!r}"


@pytest.mark.parametrize("seed", SEEDS)
def test_with_every_fix_the_snippet_runs(seed):
    defects = seed_transformer_defects(seed)
    namespace, error = run_seed_source(patched_seed_transformer_source(seed, len(defects)))
    assert error is None
    if seed == "001":
        assert torch.isfinite(namespace["loss"])  # the snippet's own training loop ran


def test_seed_000_with_a_batch_of_one_has_no_positions():
    """Defect 4's silent case: a single sequence gets position 0's vector at every token."""
    code = patched_seed_transformer_source("000", upto=5, skip=(3,))  # all fixes up to defect 5 but the slice
    run = (
        "net.eval()\n"
        "x = torch.tensor([[1, 2, 3, 4, 5, 6]])\n"
        "shuffled = torch.tensor([[1, 6, 4, 2, 5, 3]])  # same first token, the others shuffled\n"
        "torch.testing.assert_close(net(x), net(shuffled))"
    )
    _, error = run_seed_source(code, run)
    assert error is None
    _, error = run_seed_source(patched_seed_transformer_source("000", upto=5), run)  # with the fix, order matters
    assert isinstance(error, AssertionError)


# ---------------------------------------------------------------------------
# The corrected models


def test_seed_000_corrected_is_an_encoder_decoder():
    torch.manual_seed(0)
    model = Seed000Transformer(input_size=10, hidden_size=8, num_layers=2).eval()
    assert len(model.encoder.layers) == 2 and len(model.decoder.layers) == 2  # num_layers is used
    assert "pos_encoding.pe" in dict(model.named_buffers())  # the table moves with the model
    src, tgt_in = torch.randint(0, 10, (4, 7)), torch.randint(0, 10, (4, 6))
    logits = model(src, tgt_in)
    assert logits.shape == (4, 6, 10)  # one prediction per target position
    changed = tgt_in.clone()
    changed[:, 3:] = (changed[:, 3:] + 1) % 10
    assert_close(model(src, changed)[:, :3], logits[:, :3])  # the decoder never looks ahead
    changed_src = src.clone()
    changed_src[:, -1] = (changed_src[:, -1] + 1) % 10
    assert not torch.allclose(model(changed_src, tgt_in)[:, 0], logits[:, 0])  # it reads the whole source
    assert model.to(torch.bfloat16)(src, tgt_in).dtype == torch.bfloat16  # the table follows the model's dtype


def test_seed_001_corrected_keeps_sequences_apart_and_reads_the_tokens():
    torch.manual_seed(0)
    model = Seed001Transformer().eval()
    x = torch.randint(0, 10, (4, 6))
    out = model(x)
    assert out.shape == (4, 6, 10)
    y = x.clone()
    y[1] = (y[1] + 1) % 10
    assert_close(model(y)[0], out[0])  # another sequence of the batch does not matter
    z = x.clone()
    z[0, 5] = (z[0, 5] + 1) % 10
    assert not torch.allclose(model(z)[0, 0], out[0, 0])  # a later token of the same sequence does
    assert model(torch.randint(0, 10, (2, 64))).shape == (2, 64, 10)  # longer than the vocabulary size
    padded = model(x, src_key_padding_mask=torch.zeros(4, 6, dtype=torch.bool))
    assert_close(padded, out)


def _reversal(batch_size: int, generator: torch.Generator):
    x = torch.randint(1, 10, (batch_size, 6), generator=generator)
    return x, x.flip(1)


def test_seed_000_corrected_trains_on_reversal():
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = Seed000Transformer(input_size=10, hidden_size=8, num_layers=2, dropout=0.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(120):
        src, tgt = _reversal(32, generator)
        tgt_in = torch.cat([torch.zeros(32, 1, dtype=torch.long), tgt[:, :-1]], dim=1)  # token 0 as BOS
        loss = F.cross_entropy(model(src, tgt_in).flatten(0, 1), tgt.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) < 0.7 * sum(losses[:10])


def test_seed_001_corrected_trains_on_reversal_with_the_seeds_optimizer():
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = Seed001Transformer(input_size=10, hidden_size=50, num_layers=2, num_heads=2, dropout=0.1)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(40):
        data, target = _reversal(32, generator)
        loss = criterion(model(data).flatten(0, 1), target.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) < 0.2 * sum(losses[:5])


def test_corrected_models_bad_input():
    with pytest.raises(ValueError, match=r"hidden_size divisible by num_heads, got hidden_size=50 and num_heads=8"):
        Seed000Transformer(hidden_size=50, num_heads=8)
    with pytest.raises(ValueError, match=r"at most max_len=64 tokens.*got T=65"):
        Seed001Transformer()(torch.zeros(1, 65, dtype=torch.long))
    with pytest.raises(ValueError, match=r"src token ids of shape \(B, T\).*got shape \(6,\)"):
        Seed001Transformer()(torch.zeros(6, dtype=torch.long))
    with pytest.raises(ValueError, match=r"tgt_in token ids of shape \(B, T\).*got shape \(3,\)"):
        Seed000Transformer()(torch.zeros(1, 4, dtype=torch.long), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"expected seed '000' or '001', got '002'"):
        seed_transformer_source("002")
