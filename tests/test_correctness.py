"""The kinds of bug that courses and libraries ship, each pinned by the right value (issue 11).

1. Averages weighted by the wrong count: every mean over batches is a mean over
   scored targets, so it does not depend on the batch size.
2. Low-precision logits reaching the loss: losses and metrics compute in float32.
3. Wrapped models in files: saving and loading unwrap ``torch.compile`` and
   ``DataParallel``; prefixed files still load.
4. Indices outside their range: every public function taking class indices or
   token ids raises ``ValueError`` naming the value and the range.
5-6. One ignore index; evaluation restores the training flag; the history
   records the learning rate each step used.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import TensorDataset

from bigmodel_lib import TrainConfig, Trainer, evaluation_mode
from bigmodel_lib.articles import CorrectedTransformer000, CorrectedTransformer001
from bigmodel_lib.checkpoint import (
    check_state_dict,
    load_checkpoint,
    load_weights,
    save_checkpoint,
    save_weights,
    unwrap_model,
)
from bigmodel_lib.g2p import G2PDataset, SymbolVocab, g2p_loader
from bigmodel_lib.metrics import IGNORE_INDEX, accuracy, confusion_matrix, perplexity
from bigmodel_lib.models.char_lstm import CharLSTM
from bigmodel_lib.models.gpt import GPT, GPTConfig
from bigmodel_lib.models.transformer import Seq2SeqConfig, Seq2SeqTransformer
from bigmodel_lib.plotting import plot_confusion_matrix, plot_images
from bigmodel_lib.text import CharVocab, TokenWindows
from bigmodel_lib.training import cross_entropy_loss
from bigmodel_lib.training.losses import scored_count

pytestmark = pytest.mark.usefixtures("one_thread")

V = 13  # vocabulary of the toy language model


def quiet(**kwargs) -> TrainConfig:
    return TrainConfig(progress=False, device="cpu", **kwargs)


class TinyLM(nn.Module):
    """Embedding -> linear: next-token logits (B, T, V), enough to have a loss that depends on the rows."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(V, 8)
        self.head = nn.Linear(8, V)
        nn.init.normal_(self.head.weight, std=1.0)  # confident, so per-token losses differ a lot

    def forward(self, idx):
        return self.head(self.embed(idx))


@pytest.fixture(scope="module")
def padded_lm_data():
    """10 sequences of length 12 whose targets end in padding after 1 to 12 scored tokens."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, V, (10, 12), generator=g)
    y = torch.randint(0, V, (10, 12), generator=g)
    lengths = torch.tensor([1, 12, 3, 12, 2, 7, 12, 1, 5, 9])
    y[torch.arange(12) >= lengths[:, None]] = IGNORE_INDEX
    return TensorDataset(x, y)


def _reference(model, data):
    """exp(total NLL / scored tokens) and accuracy over scored tokens, computed over the whole set at once."""
    x, y = data.tensors
    with torch.no_grad():
        logits = model(x).double()
    scored = y != IGNORE_INDEX
    nll = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum")
    loss = (nll / scored.sum()).item()
    acc = ((logits.argmax(-1) == y) & scored).sum().item() / scored.sum().item()
    return loss, acc


# ---------------------------------------------------------------------------
# 1. Averages weighted by what they average over


@pytest.mark.parametrize("metric", ["perplexity", "accuracy"])
def test_evaluation_is_a_mean_over_scored_tokens_for_every_batch_size(padded_lm_data, metric):
    torch.manual_seed(0)
    model = TinyLM()
    loss, acc = _reference(model, padded_lm_data)
    for batch_size in (1, 2, 3, 4, 7, 10):
        result = Trainer(model, quiet(batch_size=batch_size), metric=metric).evaluate(padded_lm_data)
        assert result["loss"] == pytest.approx(loss, abs=1e-6), batch_size
        expected = math.exp(loss) if metric == "perplexity" else acc
        assert result[metric] == pytest.approx(expected, rel=1e-6, abs=1e-6), batch_size
    # metrics.perplexity over the whole set agrees with the engine.
    x, y = padded_lm_data.tensors
    with torch.no_grad():
        assert perplexity(model(x), y) == pytest.approx(math.exp(loss), rel=1e-6)


def test_rows_weighted_mean_was_wrong_and_is_not_what_we_report(padded_lm_data):
    """The bug of issue 11: weighting each batch's mean by its rows gives another number."""
    torch.manual_seed(0)
    model = TinyLM()
    loss, _ = _reference(model, padded_lm_data)
    x, y = padded_lm_data.tensors
    with torch.no_grad():
        per_batch = [cross_entropy_loss(model(x[i : i + 2]), y[i : i + 2]).item() for i in range(0, 10, 2)]
    rows_weighted = sum(per_batch) / len(per_batch)  # every batch has 2 rows
    assert abs(rows_weighted - loss) > 0.01  # the data are built so that the two differ
    got = Trainer(model, quiet(batch_size=2), metric="perplexity").evaluate(padded_lm_data)["loss"]
    assert got == pytest.approx(loss, abs=1e-6)


def test_custom_metric_mean_or_sum_count_is_independent_of_batch_size(padded_lm_data):
    torch.manual_seed(0)
    model = TinyLM()
    _, acc = _reference(model, padded_lm_data)

    def token_accuracy(outputs, targets):  # a mean over the batch's scored tokens
        return accuracy(outputs, targets)

    def correct_and_counted(outputs, targets):  # an exact (sum, count) pair
        scored = targets != IGNORE_INDEX
        return ((outputs.argmax(-1) == targets) & scored).sum(), scored.sum()

    for fn in (token_accuracy, correct_and_counted):
        for batch_size in (1, 3, 10):
            result = Trainer(model, quiet(batch_size=batch_size), metric=fn).evaluate(padded_lm_data)
            assert result[fn.__name__] == pytest.approx(acc, abs=1e-6), (fn.__name__, batch_size)


def test_training_loss_of_an_epoch_is_a_mean_over_scored_tokens(padded_lm_data):
    """With a learning rate of 0 nothing changes, so the epoch's training loss must equal the evaluation loss."""
    torch.manual_seed(0)
    model = TinyLM()
    loss, acc = _reference(model, padded_lm_data)
    for batch_size in (2, 3):
        frozen = torch.optim.SGD(model.parameters(), lr=0.0)
        trainer = Trainer(model, quiet(epochs=1, batch_size=batch_size), optimizer=frozen)
        history = trainer.fit(padded_lm_data, padded_lm_data)
        assert history.train_loss[0] == pytest.approx(loss, abs=1e-6)
        assert history.train_metric[0] == pytest.approx(acc, abs=1e-6)
        assert history.val_loss[0] == pytest.approx(loss, abs=1e-6)


def test_a_batch_of_only_padding_is_skipped_not_averaged_as_nan(padded_lm_data):
    torch.manual_seed(0)
    model = TinyLM()
    loss, _ = _reference(model, padded_lm_data)
    x, y = padded_lm_data.tensors
    all_padding = TensorDataset(torch.cat([x, x[:2]]), torch.cat([y, torch.full_like(y[:2], IGNORE_INDEX)]))
    result = Trainer(model, quiet(batch_size=2), metric="perplexity").evaluate(all_padding)  # last batch: padding
    assert result["loss"] == pytest.approx(loss, abs=1e-6)
    with pytest.raises(ValueError, match="at least one scored target"):
        Trainer(model, quiet(batch_size=2)).evaluate(TensorDataset(x[:2], torch.full_like(y[:2], IGNORE_INDEX)))


def test_regression_losses_are_weighted_by_elements():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    x, y = torch.randn(7, 3), torch.randn(7, 2)
    with torch.no_grad():
        expected = F.mse_loss(model(x), y).item()
    for batch_size in (1, 2, 3, 7):
        got = Trainer(model, quiet(batch_size=batch_size), loss_fn=F.mse_loss, metric=None).evaluate(
            TensorDataset(x, y)
        )["loss"]
        assert got == pytest.approx(expected, abs=1e-6), batch_size
    assert scored_count(y).item() == 14 and scored_count(torch.tensor([1, IGNORE_INDEX, 2])).item() == 2


def test_g2p_validation_loss_does_not_depend_on_the_batch_size():
    entries = {
        "a": [("AH",), ("EY",)],
        "read": [("R", "EH", "D"), ("R", "IY", "D")],
        "speech": [("S", "P", "IY", "CH")],
        "strengths": [("S", "T", "R", "EH", "NG", "K", "TH", "S")],
        "cat": [("K", "AE", "T")],
    }
    letters = SymbolVocab(c for w in entries for c in w)
    phonemes = SymbolVocab(p for prons in entries.values() for pron in prons for p in pron)
    data = G2PDataset(entries, list(entries), letters, phonemes)
    assert (data.tgt_out == IGNORE_INDEX).any() and not (data.tgt_out == phonemes.pad_id).any()
    torch.manual_seed(0)
    model = Seq2SeqTransformer(Seq2SeqConfig(len(letters), len(phonemes), d_model=16, num_heads=2, d_ff=32,
                                             dropout=0.0, max_len=16))
    # The reference: total NLL over every real phoneme (and EOS) of every pair, divided by their number.
    with torch.no_grad():
        logits, _ = model(data.src, data.tgt_in)
    nll = F.cross_entropy(logits.reshape(-1, len(phonemes)), data.tgt_out.reshape(-1), reduction="sum",
                          ignore_index=IGNORE_INDEX)
    expected = (nll / (data.tgt_out != IGNORE_INDEX).sum()).item()
    for batch_size in (1, 2, 3, 8):
        got = Trainer(model, quiet(), metric=None).evaluate(g2p_loader(data, batch_size))["loss"]
        assert got == pytest.approx(expected, abs=1e-6), batch_size
    # The model's own loss is the same mean.
    with torch.no_grad():
        _, own = model(data.src, data.tgt_in, data.tgt_out)
    assert own.item() == pytest.approx(expected, abs=1e-6)


# ---------------------------------------------------------------------------
# 2. Losses and metrics in float32, whatever the model's dtype


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cross_entropy_of_half_precision_logits_is_computed_in_float32(dtype):
    torch.manual_seed(0)
    logits = (torch.randn(4, 16, 50) * 3).to(dtype)
    targets = torch.randint(0, 50, (4, 16))
    expected = F.cross_entropy(logits.float().reshape(-1, 50), targets.reshape(-1))
    got = cross_entropy_loss(logits, targets)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    assert perplexity(logits, targets) == pytest.approx(math.exp(expected.item()), rel=1e-6)


def test_a_bf16_model_is_evaluated_in_float32(padded_lm_data):
    torch.manual_seed(0)
    model = TinyLM().to(torch.bfloat16)
    x, y = padded_lm_data.tensors
    with torch.no_grad():
        logits = model(x).float()  # the model's bf16 outputs, then float32 arithmetic
    expected = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1), ignore_index=IGNORE_INDEX).item()
    result = Trainer(model, quiet(batch_size=4, precision="fp32"), metric="perplexity").evaluate(padded_lm_data)
    assert result["loss"] == pytest.approx(expected, abs=1e-6)


def test_models_own_losses_are_float32_for_bf16_models():
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=2, n_embd=16, dropout=0.0)).to(torch.bfloat16)
    idx = torch.randint(0, 11, (2, 8))
    logits, loss = gpt(idx, idx)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, F.cross_entropy(logits.float().flatten(0, 1), idx.flatten()))
    s2s = Seq2SeqTransformer(Seq2SeqConfig(7, 9, d_model=16, num_heads=2, d_ff=32, max_len=8)).to(torch.bfloat16)
    tgt = torch.randint(3, 9, (2, 5))
    logits, loss = s2s(torch.randint(3, 7, (2, 6)), tgt, tgt)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, F.cross_entropy(logits.float().flatten(0, 1), tgt.flatten()))


# ---------------------------------------------------------------------------
# 3. Wrapped models in files


def _mlp():
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


@pytest.mark.parametrize("wrap", [torch.compile, nn.DataParallel, lambda m: torch.compile(nn.DataParallel(m))])
def test_weights_saved_from_a_wrapped_model_carry_plain_keys(tmp_path, wrap):
    torch.manual_seed(0)
    model = _mlp()
    wrapped = wrap(model)
    assert unwrap_model(wrapped) is model
    assert any(k.startswith(("_orig_mod.", "module.")) for k in wrapped.state_dict())  # what used to be written
    save_weights(wrapped, tmp_path / "w.safetensors")
    plain = load_weights(_mlp(), tmp_path / "w.safetensors")
    for a, b in zip(plain.parameters(), model.parameters()):
        assert torch.equal(a, b)
    # ... and a wrapped model loads a plain file.
    other = _mlp()
    load_weights(wrap(other), tmp_path / "w.safetensors")
    assert torch.equal(other[0].weight, model[0].weight)


def test_checkpoints_of_wrapped_models_resume_into_plain_ones(tmp_path):
    torch.manual_seed(0)
    model = _mlp()
    optimizer = torch.optim.AdamW(model.parameters())
    save_checkpoint(tmp_path / "c.pt", torch.compile(model), optimizer, epoch=3)
    state = torch.load(tmp_path / "c.pt", weights_only=True)
    assert all(not k.startswith("_orig_mod.") for k in state["model"])
    fresh = _mlp()
    assert load_checkpoint(tmp_path / "c.pt", fresh, torch.optim.AdamW(fresh.parameters()))["epoch"] == 3
    assert torch.equal(fresh[2].bias, model[2].bias)


@pytest.mark.parametrize("prefix", ["_orig_mod.", "module.", "module._orig_mod."])
def test_a_file_written_with_a_wrapper_prefix_still_loads(tmp_path, prefix):
    torch.manual_seed(0)
    model = _mlp()
    save_file({prefix + k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "p.safetensors")
    fresh = load_weights(_mlp(), tmp_path / "p.safetensors")
    assert torch.equal(fresh[0].weight, model[0].weight)


def test_a_mismatch_with_a_wrapper_prefix_names_the_prefix():
    state = {"_orig_mod." + k: v for k, v in _mlp().state_dict().items()}
    state.pop("_orig_mod.0.bias")  # not every key: the prefix cannot be stripped safely
    state["0.bias"] = torch.zeros(8)
    with pytest.raises(ValueError, match=r"start with _orig_mod\..*wrapped model"):
        check_state_dict(_mlp(), state)


# ---------------------------------------------------------------------------
# 4. Indices outside their range: one table


def _gpt():
    return GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=2, n_embd=16, dropout=0.0))


def _s2s():
    return Seq2SeqTransformer(Seq2SeqConfig(7, 9, d_model=16, num_heads=2, d_ff=32, max_len=8))


def _tiny_vocab():
    return SymbolVocab("abc")


OUT_OF_RANGE = {
    "accuracy: target == C": (lambda: accuracy(torch.randn(4, 10), torch.tensor([0, 1, 10, 2])), r"\[0, 10\).*got 10"),
    "accuracy: negative target": (lambda: accuracy(torch.randn(3, 10), torch.tensor([0, -1, 2])), r"got -1"),
    "perplexity: token id == V": (
        lambda: perplexity(torch.randn(2, 3, 50), torch.tensor([[0, 1, 50], [2, 3, 4]])), r"\[0, 50\).*got 50"),
    "cross_entropy_loss: negative target": (
        lambda: cross_entropy_loss(torch.randn(3, 5), torch.tensor([0, -5, 1])), r"got -5"),
    "confusion_matrix: prediction == num_classes": (
        lambda: confusion_matrix(torch.tensor([0, 10]), torch.tensor([0, 1]), num_classes=10), r"predictions.*got 10"),
    "confusion_matrix: negative target": (
        lambda: confusion_matrix(torch.tensor([0, 1]), torch.tensor([-1, 1])), r"targets.*got -1"),
    "plot_confusion_matrix: target beyond class_names": (
        lambda: plot_confusion_matrix([0, 5], [0, 1], class_names=["a", "b", "c"]), r"\[0, 3\).*got 5"),
    "plot_images: negative label": (
        lambda: plot_images(torch.rand(2, 4, 4), labels=[0, -1], class_names=["a", "b"]), r"labels.*got -1"),
    "Trainer.evaluate: target == C": (
        lambda: Trainer(nn.Linear(3, 4), quiet()).evaluate(TensorDataset(torch.randn(5, 3), torch.tensor([0, 1, 4, 2, 3]))),
        r"\[0, 4\).*got 4"),
    "Trainer accuracy with a custom loss: negative target": (
        lambda: Trainer(nn.Linear(3, 4), quiet(), loss_fn=lambda o, t: o.mean()).evaluate(
            TensorDataset(torch.randn(2, 3), torch.tensor([0, -3]))), r"got -3"),
    "GPT: token id == vocab_size": (lambda: _gpt()(torch.tensor([[1, 2, 11]])), r"\[0, 11\).*got 11"),
    "GPT: the old ignore index -1 as a target": (
        lambda: _gpt()(torch.tensor([[1, 2, 3]]), torch.tensor([[2, 3, -1]])), r"or -100 \(ignored\), got -1"),
    "Seq2SeqTransformer: source id == src_vocab_size": (
        lambda: _s2s()(torch.tensor([[3, 7]]), torch.tensor([[1, 4]])), r"src token ids in \[0, 7\).*got 7"),
    "Seq2SeqTransformer: target id == tgt_vocab_size": (
        lambda: _s2s()(torch.tensor([[3, 4]]), torch.tensor([[1, 4]]), torch.tensor([[4, 9]])), r"\[0, 9\).*got 9"),
    "Seq2SeqTransformer.beam_search: negative source id": (
        lambda: _s2s().beam_search(torch.tensor([[3, -2]])), r"got -2"),
    "CorrectedTransformer000: token id == input_size": (
        lambda: CorrectedTransformer000(10, 16, 1)(torch.tensor([[1, 10]]), torch.tensor([[1, 2]])), r"\[0, 10\).*got 10"),
    "CorrectedTransformer001: negative token id": (
        lambda: CorrectedTransformer001(10, 16, 1)(torch.tensor([[1, -4]])), r"got -4"),
    "CharLSTM: token id == vocab_size": (lambda: CharLSTM(5)(torch.tensor([[0, 5]])), r"\[0, 5\)"),
    "CharVocab.decode: negative id": (lambda: CharVocab("abc").decode([0, -1]), r"\[0, 3\).*-1"),
    "SymbolVocab.decode: id == len(vocab)": (lambda: _tiny_vocab().decode([3, 6]), r"6 out of range \[0, 6\)"),
    "TokenWindows: negative id": (lambda: TokenWindows(torch.tensor([0, 1, -2, 3]), block_size=2), r"got -2"),
}


@pytest.mark.parametrize("case", list(OUT_OF_RANGE))
def test_out_of_range_indices_raise_a_value_error_naming_value_and_range(case):
    call, pattern = OUT_OF_RANGE[case]
    with pytest.raises(ValueError, match=pattern):
        call()


def test_in_range_values_and_the_ignore_index_still_work():
    """The checks above reject only what is wrong: the boundary values and -100 pass."""
    assert accuracy(torch.eye(3), torch.tensor([0, 1, IGNORE_INDEX])) == 1.0
    assert confusion_matrix(torch.tensor([9, 0]), torch.tensor([9, 9]), num_classes=10)[9].tolist() == [1] + [0] * 8 + [1]
    _, loss = _gpt()(torch.tensor([[0, 10, 3]]), torch.tensor([[10, 3, IGNORE_INDEX]]))
    assert torch.isfinite(loss)


# ---------------------------------------------------------------------------
# 5-6. One ignore index; modes restored; the rate each step used


def test_one_ignore_index_everywhere():
    assert IGNORE_INDEX == -100 == nn.CrossEntropyLoss().ignore_index
    logits, targets = torch.randn(5, 4), torch.tensor([0, IGNORE_INDEX, 3, IGNORE_INDEX, 1])
    expected = F.cross_entropy(logits, targets)
    torch.testing.assert_close(cross_entropy_loss(logits, targets), expected)
    assert perplexity(logits, targets) == pytest.approx(math.exp(expected.item()))
    gpt = _gpt()
    idx = torch.tensor([[1, 2, 3, 4]])
    full_logits, _ = gpt(idx)
    _, loss = gpt(idx, torch.tensor([[2, 3, IGNORE_INDEX, IGNORE_INDEX]]))
    torch.testing.assert_close(loss, F.cross_entropy(full_logits[0, :2], torch.tensor([2, 3])))


@pytest.mark.parametrize("start_in_training_mode", [True, False])
def test_evaluate_and_predict_restore_the_training_flag(padded_lm_data, start_in_training_mode):
    model = nn.Sequential(TinyLM(), nn.Dropout(0.5))
    trainer = Trainer(model, quiet(batch_size=4), metric="perplexity")
    for call in (trainer.evaluate, trainer.predict):
        model.train(start_in_training_mode)
        call(padded_lm_data)
        assert model.training is start_in_training_mode
        assert all(m.training is start_in_training_mode for m in model.modules())
    model.train()
    with evaluation_mode(model):
        assert not model.training and not model[1].training
    assert model.training


def test_mode_is_restored_when_evaluation_fails():
    model = nn.Linear(3, 4).train()
    with pytest.raises(ValueError):
        Trainer(model, quiet()).evaluate(TensorDataset(torch.randn(2, 3), torch.tensor([0, 9])))
    assert model.training


def test_range_checks_let_shape_only_meta_tensors_through():
    """Chapter 1 counts FLOPs of full-size models on the meta device, where tensors have no values to check."""
    with torch.device("meta"):
        logits, loss = _gpt()(torch.zeros(2, 5, dtype=torch.long), torch.zeros(2, 5, dtype=torch.long))
    assert logits.shape == (2, 5, 11) and logits.is_meta and loss.is_meta
