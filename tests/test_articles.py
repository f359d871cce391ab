"""Tests for bigmodel_lib.articles (sections 2.4, 3.2, 4.7): the source articles' six listings
match an independent copy of the articles, fail exactly as their defect tables say, and the
corrected models do what the published ones were meant to."""

from __future__ import annotations

import dataclasses
import pathlib
import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.testing import assert_close

from bigmodel_lib import articles
from bigmodel_lib.articles import (
    CorrectedCNN,
    CorrectedDCNN,
    CorrectedLSTMClassifier,
    CorrectedTransformer000,
    CorrectedTransformer001,
    defects,
    published_class,
    published_text,
    published_view_rows,
    run_source,
    source,
)
from bigmodel_lib.articles.replay import ARTICLES, MODELS, listing, patched_source

pytestmark = pytest.mark.usefixtures("one_thread")

# A copy of the two articles as downloaded, kept apart from the library: the listings the
# library ships must be found in them word for word.
PAGES = {name: (pathlib.Path(__file__).parent / "fixtures" / "articles" / f"{name}.txt").read_text("utf-8")
         for name in ARTICLES}
LISTINGS = [(a, m) for a in ARTICLES for m in MODELS]
IDS = [f"{a}-{m}" for a, m in LISTINGS]


def _without_whitespace(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _prose(text: str) -> str:
    """Docstring text without reStructuredText backticks and line wrapping."""
    return re.sub(r"\s+", " ", text.replace("``", ""))


# ---------------------------------------------------------------------------
# The listings


@pytest.mark.parametrize(("article", "model"), LISTINGS, ids=IDS)
def test_listing_is_in_the_article_word_for_word_under_its_section(article, model):
    info = listing(article, model)
    page, text = PAGES[article], published_text(article, model)
    assert text.strip() in page  # verbatim, line breaks (or their absence) included
    heading = page.index(f"\n{info.section} ")  # the article's section heading comes just before it
    assert page.index(text.strip()) - heading < 80
    assert f"class {info.class_name}(nn.Module):" in text


@pytest.mark.parametrize(("article", "model"), LISTINGS, ids=IDS)
def test_reindented_source_keeps_every_token_and_is_python(article, model):
    code = source(article, model)
    assert _without_whitespace(code) == _without_whitespace(published_text(article, model))
    if article == "001":  # line breaks survived: the same lines, only indented
        assert [line.strip() for line in code.splitlines() if line.strip()] == published_text(
            article, model).splitlines()
    compile(code, f"{article} {model}", "exec")  # the restored layout is valid Python
    without_loop = source(article, model, include_training_loop=False)
    assert ("train_loader" in code) == (article == "001")
    assert "train_loader" not in without_loop and code.startswith(without_loop)


def test_the_article_pages_are_not_valid_python_as_published():
    for article, model in LISTINGS:
        with pytest.raises(SyntaxError):
            compile(published_text(article, model), "page", "exec")


def test_published_listings_fail_with_their_first_documented_error():
    _, error = run_source(source("000", "transformer"))
    assert isinstance(error, AttributeError)
    assert str(error) == "'Transformer' object has no attribute 'positional_encoding'"
    _, error = run_source(source("001", "transformer"))
    assert isinstance(error, TypeError)
    assert re.search(defects("001", "transformer")[0].match, str(error)), str(error)
    for model in ("cnn", "lstm"):
        namespace, error = run_source(source("001", model))
        assert isinstance(error, NameError) and str(error) == "name 'train_loader' is not defined"
        assert "model" in namespace and "optimizer" in namespace  # everything before the loop ran


CASES = [(a, m, i) for a, m in LISTINGS for i in range(len(defects(a, m)))]


@pytest.mark.parametrize(("article", "model", "number"), CASES, ids=[f"{a}-{m}-defect{i + 1}" for a, m, i in CASES])
def test_each_defect_shows_as_documented(article, model, number):
    """Defect i appears once the defects before it are fixed: the documented error, or a silent wrong result."""
    defect = defects(article, model)[number]
    _, error = run_source(patched_source(article, model, number), defect.run, defect.code_upto)
    if defect.error is None:
        assert error is None, f"silent defect {defect.title!r}: its demonstration raised {error!r}"
    else:
        assert type(error).__name__ == defect.error, f"{defect.title!r}: expected {defect.error}, got {error!r}"
        assert re.search(defect.match, str(error)), f"{defect.title!r}: message {str(error)!r}"
        assert re.search(defect.match, defect.observed), "the observed message must match its pattern"
    if model == "transformer":  # ... and the corrected class's docstring says so.
        corrected = listing(article, model).corrected
        assert defect.observed in _prose(corrected.__doc__), f"not in the docstring: {defect.observed!r}"


@pytest.mark.parametrize(("article", "model"), LISTINGS, ids=IDS)
def test_with_every_fix_the_listing_runs(article, model):
    namespace, error = run_source(patched_source(article, model, len(defects(article, model))))
    assert error is None
    if article == "001":
        assert torch.isfinite(namespace["loss"])  # the listing's own training loop ran


def test_a_fix_that_no_longer_applies_is_reported():
    with pytest.raises(ValueError, match=r"expected upto between 0 and 2 \(the number of defects\), got 3"):
        patched_source("000", "cnn", upto=3)


def test_api_names_what_it_expected():
    with pytest.raises(ValueError, match=r"expected article '000' or '001' \(a string\), got '002'"):
        source("002", "cnn")
    with pytest.raises(ValueError, match=r"expected article '000' or '001' \(a string\), got 0"):
        defects(0, "cnn")
    with pytest.raises(ValueError, match=r"expected model one of \('cnn', 'lstm', 'transformer'\), got 'rnn'"):
        published_class("000", "rnn")
    with pytest.raises(ValueError, match=r"expected article '000' \(CNN\) or '001' \(DCNN\), got '2'"):
        published_view_rows(32, 4, article="2")


@pytest.mark.parametrize(("article", "model"), LISTINGS, ids=IDS)
def test_published_class_and_corrected_model_share_parameter_names(article, model):
    """The corrected classes keep the article's layer names, so its state_dict loads as is."""
    kwargs = {"lstm": dict(input_size=10, hidden_size=8, num_layers=2, num_classes=2)}.get(model, {})
    corrected = listing(article, model).corrected(**kwargs)
    if model == "cnn":
        published = published_class(article, model)()
        corrected = listing(article, model).corrected(input_size=24 if article == "000" else 28)
        assert corrected.load_state_dict(published.state_dict()).missing_keys == []
    elif model == "lstm":
        published = published_class(article, model)(**kwargs)
        assert corrected.load_state_dict(published.state_dict()).missing_keys == []


# ---------------------------------------------------------------------------
# The CNNs (section 2.4)


def test_corrected_models_accept_their_stated_input_size():
    torch.manual_seed(6)
    assert CorrectedCNN()(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert CorrectedCNN(in_channels=1, num_classes=5, input_size=(20, 28))(torch.randn(3, 1, 20, 28)).shape == (3, 5)
    assert CorrectedDCNN()(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    # flatten size = 64 * (H // 4) * (W // 4)
    assert CorrectedCNN(input_size=32).fc1.in_features == 64 * 8 * 8
    assert CorrectedCNN(input_size=24).fc1.in_features == 64 * 6 * 6
    assert CorrectedCNN(input_size=(30, 18)).fc1.in_features == 64 * 7 * 4
    assert CorrectedDCNN().fc1.in_features == 64 * 7 * 7


def test_fixed_models_reproduce_published_ones_at_their_sizes():
    torch.manual_seed(7)
    published_cnn, published_dcnn = published_class("000", "cnn")(), published_class("001", "cnn")()
    fixed_cnn, fixed_dcnn = CorrectedCNN(input_size=24), CorrectedDCNN()
    fixed_cnn.load_state_dict(published_cnn.state_dict())  # same layer names, same shapes
    fixed_dcnn.load_state_dict(published_dcnn.state_dict())
    x = torch.randn(5, 3, 24, 24)
    assert_close(fixed_cnn(x), published_cnn(x))
    x = torch.randn(5, 1, 28, 28)
    assert_close(fixed_dcnn(x), published_dcnn(x))


def test_published_cnn_on_32x32_raises_or_changes_the_batch():
    torch.manual_seed(8)
    net = published_class("000", "cnn")()
    # batch of 4: 4 * 64 * 8 * 8 = 16384 numbers are not a multiple of 64 * 6 * 6 = 2304
    with pytest.raises(RuntimeError, match=re.escape("shape '[-1, 2304]' is invalid for input of size 16384")):
        net(torch.randn(4, 3, 32, 32))
    with pytest.raises(RuntimeError, match=re.escape("shape '[-1, 2304]' is invalid for input of size 4096")):
        net(torch.randn(1, 3, 32, 32))
    # batch of 9: 9 * 4096 = 16 * 2304, so view(-1, 2304) silently makes 16 "images"
    assert net(torch.randn(9, 3, 32, 32)).shape == (16, 10)
    # 48x48: side 12 after pooling, every image becomes 4 rows
    assert net(torch.randn(2, 3, 48, 48)).shape == (8, 10)
    # the size it was written for, and the sizes that round down to it
    for n in (24, 25, 26, 27):
        assert net(torch.randn(2, 3, n, n)).shape == (2, 10)


@pytest.mark.parametrize("article, channels", [("000", 3), ("001", 1)])
def test_published_view_rows_predicts_published_behaviour(article, channels):
    net = published_class(article, "cnn")()
    for n in (16, 24, 28, 32):
        for batch in (1, 4, 9):
            predicted = published_view_rows(n, batch, article)
            x = torch.zeros(batch, channels, n, n)
            if predicted is None:
                with pytest.raises(RuntimeError, match="is invalid for input of size"):
                    net(x)
            else:
                assert net(x).shape == (predicted, 10)
    assert published_view_rows(32, 49, "001") == 64


def test_corrected_cnn_wrong_image_size_names_expected_size():
    with pytest.raises(ValueError, match=r"built for 32x32 images \(B, 3, 32, 32\), got 28x28"):
        CorrectedCNN()(torch.zeros(2, 3, 28, 28))


def test_corrected_dcnn_wrong_image_size_names_expected_size():
    with pytest.raises(ValueError, match=r"CorrectedDCNN was built for 28x28 images \(B, 1, 28, 28\), got 32x32"):
        CorrectedDCNN()(torch.zeros(2, 1, 32, 32))


def test_corrected_cnn_wrong_channel_count():
    with pytest.raises(ValueError, match=r"built for 3-channel images .* got 1 channels"):
        CorrectedCNN()(torch.zeros(2, 1, 32, 32))


def test_corrected_cnn_single_image_without_batch():
    with pytest.raises(ValueError, match=r"got a 3-D tensor of shape \(3, 32, 32\).*unsqueeze\(0\)"):
        CorrectedCNN()(torch.zeros(3, 32, 32))


# ---------------------------------------------------------------------------
# The LSTM classifier (section 3.2)


def test_corrected_classifier_reproduces_published_model():
    torch.manual_seed(7)
    namespace = {}
    exec(source("000", "lstm"), namespace)
    published = namespace["net"]  # RNN(input_size=10, hidden_size=8, num_layers=2, num_classes=2)
    ours = CorrectedLSTMClassifier(input_size=10, hidden_size=8, num_layers=2, num_classes=2)
    ours.load_state_dict(published.state_dict())  # the article's names: lstm, fc
    x = torch.randn(3, 7, 10)
    assert_close(ours(x), published(x))
    assert_close(ours(x, lengths=[7, 7, 7]), published(x))  # full lengths: same as no lengths


def test_padding_never_changes_a_sequence_result_with_lengths():
    torch.manual_seed(8)
    model = CorrectedLSTMClassifier(input_size=3, hidden_size=5, num_layers=2, num_classes=4)
    lengths = [4, 7, 2, 5]
    sequences = [torch.randn(n, 3) for n in lengths]
    batch = nn.utils.rnn.pad_sequence(sequences, batch_first=True, padding_value=9.0)  # (4, 7, 3)
    padded_out = model(batch, lengths=torch.tensor(lengths))
    for i, seq in enumerate(sequences):
        alone = model(seq.unsqueeze(0))  # (1, 4): no padding at all
        assert_close(padded_out[i : i + 1], alone)
        # and the amount of padding does not matter either
        extra = torch.cat([seq, torch.full((3, 3), -5.0)]).unsqueeze(0)
        assert_close(model(extra, lengths=[len(seq)]), alone)


def test_published_last_column_depends_on_padding():
    # the defect the lengths argument fixes: without it, padding is read as data
    torch.manual_seed(9)
    model = CorrectedLSTMClassifier(input_size=3, hidden_size=5, num_layers=1, num_classes=2)
    seq = torch.randn(3, 3)
    padded = torch.cat([seq, torch.zeros(2, 3)]).unsqueeze(0)
    assert not torch.allclose(model(padded), model(seq.unsqueeze(0)), atol=1e-4)


def test_classifier_lengths_longer_than_sequence():
    model = CorrectedLSTMClassifier(3, 4, 1, 2)
    with pytest.raises(ValueError, match=r"between 1 and the padded length T=5, got \[5, 6\]"):
        model(torch.zeros(2, 5, 3), lengths=[5, 6])


def test_classifier_wrong_number_of_lengths():
    model = CorrectedLSTMClassifier(3, 4, 1, 2)
    with pytest.raises(ValueError, match=r"one length per sequence, shape \(2,\), got shape \(3,\)"):
        model(torch.zeros(2, 5, 3), lengths=[5, 4, 3])


def test_classifier_zero_length():
    model = CorrectedLSTMClassifier(3, 4, 1, 2)
    with pytest.raises(ValueError, match=r"between 1 and .* got \[0, 4\]"):
        model(torch.zeros(2, 5, 3), lengths=torch.tensor([0, 4]))


# ---------------------------------------------------------------------------
# The Transformers (section 4.7)


def test_article_000_with_a_batch_of_one_has_no_positions():
    """Defect 4's silent case: a single sequence gets position 0's vector at every token."""
    code = patched_source("000", "transformer", upto=5, skip=(3,))  # all fixes up to defect 5 but the slice
    run = (
        "net.eval()\n"
        "x = torch.tensor([[1, 2, 3, 4, 5, 6]])\n"
        "shuffled = torch.tensor([[1, 6, 4, 2, 5, 3]])  # same first token, the others shuffled\n"
        "torch.testing.assert_close(net(x), net(shuffled))"
    )
    _, error = run_source(code, run)
    assert error is None
    _, error = run_source(patched_source("000", "transformer", upto=5), run)  # with the fix, order matters
    assert isinstance(error, AssertionError)


# ---------------------------------------------------------------------------
# The corrected models


def test_article_000_corrected_is_an_encoder_decoder():
    torch.manual_seed(0)
    model = CorrectedTransformer000(input_size=10, hidden_size=8, num_layers=2).eval()
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


def test_article_001_corrected_keeps_sequences_apart_and_reads_the_tokens():
    torch.manual_seed(0)
    model = CorrectedTransformer001().eval()
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


def test_article_000_corrected_trains_on_reversal():
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = CorrectedTransformer000(input_size=10, hidden_size=8, num_layers=2, dropout=0.0)
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


def test_article_001_corrected_trains_on_reversal_with_the_articles_optimizer():
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = CorrectedTransformer001(input_size=10, hidden_size=50, num_layers=2, num_heads=2, dropout=0.1)
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
        CorrectedTransformer000(hidden_size=50, num_heads=8)
    with pytest.raises(ValueError, match=r"at most max_len=64 tokens.*got T=65"):
        CorrectedTransformer001()(torch.zeros(1, 65, dtype=torch.long))
    with pytest.raises(ValueError, match=r"src token ids of shape \(B, T\).*got shape \(6,\)"):
        CorrectedTransformer001()(torch.zeros(6, dtype=torch.long))
    with pytest.raises(ValueError, match=r"tgt_in token ids of shape \(B, T\).*got shape \(3,\)"):
        CorrectedTransformer000()(torch.zeros(1, 4, dtype=torch.long), torch.zeros(3, dtype=torch.long))


def test_replay_defects_shows_each_defect_and_fails_loudly_when_one_does_not(monkeypatch):
    rows = articles.replay_defects("001", "cnn")
    assert [number for number, _, _ in rows] == [1, 2]
    assert rows[0] == (1, "train_loader is never defined", "NameError: name 'train_loader' is not defined")
    assert rows[1][2].startswith("RuntimeError: shape '[-1, 3136]' is invalid")
    first, *rest = defects("001", "cnn")
    table = articles.defects.__globals__["DEFECTS"]  # the table the API reads
    monkeypatch.setitem(table, ("001", "cnn"), (dataclasses.replace(first, match="another message"), *rest))
    with pytest.raises(RuntimeError, match=r"defect 1 \(train_loader is never defined\): expected NameError"):
        articles.replay_defects("001", "cnn")
    monkeypatch.setitem(table, ("001", "cnn"), (first, dataclasses.replace(rest[0], error=None)))
    with pytest.raises(RuntimeError, match=r"defect 2 .* should run silently, but raised RuntimeError"):
        articles.replay_defects("001", "cnn")


# The articles' outline (the preface's map from sections to chapters).

def test_article_text_is_the_page_copy():
    for name in ARTICLES:
        assert articles.article_text(name) == PAGES[name]
    with pytest.raises(ValueError, match="expected article '000' or '001'.*got '002'"):
        articles.article_text("002")


def test_section_headings_are_the_articles_numbered_headings():
    # Written down by reading the pages, independently of the parser.
    expected = {
        "000": "1 2 2.1 2.2 2.3 3 3.1 3.1.1 3.1.2 3.1.3 3.2 3.2.1 3.2.2 3.3 3.3.1 3.3.2 4 4.1 4.2 4.3 "
               "5 5.1 5.2 6 6.1 6.2 7 7.1 7.2 8 8.1 8.2 8.3 8.4 8.5 9",
        "001": "1 1.1 1.2 1.3 1.4 1.4.1 1.4.2 1.4.3 1.5 1.5.1 1.5.2 1.5.3 1.6 1.7 1.8",
    }
    for name in ARTICLES:
        headings = articles.section_headings(name)
        assert list(headings) == expected[name].split()
        for number, title in headings.items():  # each title is on the page, right after its number
            assert re.search(rf"^{re.escape(number)}\.?\s*{re.escape(title)}$", PAGES[name], re.MULTILINE)
    assert articles.section_headings("000")["3.3"] == "变压器(Transformer)"


SECTION_MAP = {
    "000": {"1": [1], "2.1": [1], "2.2": [1], "2.3": [1], "3.1": [2], "3.2": [3], "3.3": [4], "4.1": [2],
            "4.2": [3], "4.3": [4], "5": [6], "6": [7], "7": [1], "8": [7], "9": ["bibliography"]},
    "001": {"1.1": [1], "1.2": [1], "1.3": [1], "1.4": [2, 3, 4], "1.5": [2, 3, 4], "1.6": [6], "1.7": [7],
            "1.8": [1]},
}


def test_check_section_map_accepts_a_complete_map_and_covers_subsections_by_their_parent():
    checked = articles.check_section_map(SECTION_MAP)
    assert "3.1.2" in checked["000"] and "3.1" not in checked["000"]  # leaves only
    assert "1.4.1" in checked["001"]


@pytest.mark.parametrize("article, number", [("000", "3.2"), ("000", "9"), ("001", "1.6"), ("001", "1.4")])
def test_check_section_map_fails_on_a_missing_section(article, number):
    planted = {a: {n: c for n, c in m.items() if (a, n) != (article, number)} for a, m in SECTION_MAP.items()}
    with pytest.raises(ValueError, match=rf"article {article}: sections not mapped.*'{re.escape(number)}"):
        articles.check_section_map(planted)


def test_check_section_map_fails_on_an_invented_or_empty_section():
    invented = {**SECTION_MAP, "001": {**SECTION_MAP["001"], "1.9": [7]}}
    with pytest.raises(ValueError, match=r"article 001 has no sections \['1.9'\]"):
        articles.check_section_map(invented)
    empty = {**SECTION_MAP, "000": {**SECTION_MAP["000"], "8": []}}
    with pytest.raises(ValueError, match=r"sections not mapped.*'8.1 问题1"):
        articles.check_section_map(empty)
    with pytest.raises(ValueError, match="expected a map for both articles"):
        articles.check_section_map({"000": SECTION_MAP["000"]})
