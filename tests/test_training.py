"""Tests for bigmodel_lib.training and bigmodel_lib.checkpoint (chapter 1): the engine every chapter trains with."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from bigmodel_lib import TrainConfig, Trainer, load_dataset, seed_everything
from bigmodel_lib.checkpoint import load_checkpoint, save_checkpoint
from bigmodel_lib.training.config import History, warmup_cosine


def mlp(hidden: int = 128, dropout: float = 0.0) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 10))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", val_fraction=0.1, seed=0)


def quiet(**kwargs) -> TrainConfig:
    return TrainConfig(progress=False, device="cpu", **kwargs)


# ---------------------------------------------------------------------------
# The promise of issue 3: digits to >= 95% in seconds, on CPU


def test_mlp_on_digits_reaches_95_percent_test_accuracy(digits):
    seed_everything(0)
    trainer = Trainer(mlp(), quiet(epochs=10, lr=1e-2))
    history = trainer.fit(digits.train, digits.val)
    result = trainer.evaluate(digits.test)
    assert result["accuracy"] >= 0.95, result
    assert history.epochs == 10
    assert len(history.val_metric) == 10 and history.val_metric[-1] > 0.9
    assert len(history.step_loss) == 10 * math.ceil(len(digits.train) / 64)
    assert all(s > 0 for s in history.samples_per_s)
    assert history.train_loss[-1] < history.train_loss[0]


class Interrupting(Dataset):
    """Wraps a dataset and raises KeyboardInterrupt (as Ctrl-C would) after ``after`` items."""

    def __init__(self, data: Dataset, after: int):
        self.data, self.after, self.served = data, after, 0

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        self.served += 1
        if self.served > self.after:
            raise KeyboardInterrupt
        return self.data[i]


def test_resume_after_interrupt_reproduces_the_uninterrupted_losses(digits, tmp_path):
    # Dropout makes the run depend on the torch RNG; shuffling on the loader's generator.
    config = dict(epochs=4, lr=1e-2, batch_size=128, warmup_fraction=0.2)
    seed_everything(1)
    reference = Trainer(mlp(hidden=32, dropout=0.2), quiet(**config))
    expected = reference.fit(digits.train, digits.val)

    seed_everything(1)
    first = Trainer(mlp(hidden=32, dropout=0.2), quiet(checkpoint_dir=str(tmp_path), **config))
    interrupted_after = int(2.5 * len(digits.train))  # in the middle of epoch 3
    with pytest.raises(KeyboardInterrupt):
        first.fit(Interrupting(digits.train, interrupted_after), digits.val)
    assert torch.load(tmp_path / "last.pt", weights_only=True)["extra"]["epoch"] == 2

    seed_everything(123)  # a different process state: everything must come from the checkpoint
    resumed = Trainer(mlp(hidden=32, dropout=0.2), quiet(checkpoint_dir=str(tmp_path), **config))
    got = resumed.fit(digits.train, digits.val, resume_from=tmp_path / "last.pt")

    assert got.step_loss == expected.step_loss  # exactly, not approximately
    assert got.train_loss == expected.train_loss
    assert got.val_loss == expected.val_loss
    assert got.lr == expected.lr
    for a, b in zip(resumed.model.state_dict().values(), reference.model.state_dict().values()):
        assert torch.equal(a, b)


def test_checkpoint_round_trip_restores_model_optimizer_and_rng(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    path = save_checkpoint(tmp_path / "c.pt", model, opt, epoch=3, note="hi")
    after_save = torch.rand(3)

    other = nn.Linear(4, 3)
    other_opt = torch.optim.AdamW(other.parameters(), lr=0.5)
    torch.manual_seed(99)
    extra = load_checkpoint(path, other, other_opt)
    assert extra == {"epoch": 3, "note": "hi"}
    assert torch.equal(other.weight, model.weight)
    assert other_opt.param_groups[0]["lr"] == 0.1
    assert torch.equal(other_opt.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert torch.equal(torch.rand(3), after_save)  # the RNG continues where it was saved


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    model = nn.Linear(2, 2)
    path = save_checkpoint(tmp_path / "c.pt", model, epoch=1)
    before = path.read_bytes()

    def broken_save(obj, f):
        with open(f, "wb") as handle:
            handle.write(b"half a checkp")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model, epoch=2)
    assert path.read_bytes() == before  # the old checkpoint is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # and no temporary file is left


def test_safetensors_weights_round_trip(tmp_path):
    from bigmodel_lib.checkpoint import load_weights, save_weights

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 3))
    model[1].weight = nn.Parameter(model[0].weight.T.contiguous())  # not tied, but transposed copy
    path = save_weights(model, tmp_path / "w.safetensors")
    fresh = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 3))
    load_weights(fresh, path)
    for a, b in zip(fresh.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)


def test_safetensors_saves_tied_weights(tmp_path):
    from bigmodel_lib.checkpoint import load_weights, save_weights

    emb = nn.Embedding(5, 3)
    head = nn.Linear(3, 5, bias=False)
    head.weight = emb.weight  # GPT ties the token embedding and the output layer
    model = nn.ModuleDict({"emb": emb, "head": head})
    path = save_weights(model, tmp_path / "tied.safetensors")
    fresh = nn.ModuleDict({"emb": nn.Embedding(5, 3), "head": nn.Linear(3, 5, bias=False)})
    fresh["head"].weight = fresh["emb"].weight
    load_weights(fresh, path)
    assert torch.equal(fresh["head"].weight, emb.weight)
    assert fresh["head"].weight is fresh["emb"].weight  # still tied after loading


# ---------------------------------------------------------------------------
# Schedule, clipping, NaN, early stopping


def test_warmup_cosine_hand_values():
    assert warmup_cosine(0, warmup_steps=4, total_steps=14) == pytest.approx(0.25)
    assert warmup_cosine(3, warmup_steps=4, total_steps=14) == pytest.approx(1.0)
    assert warmup_cosine(4, warmup_steps=4, total_steps=14) == pytest.approx(1.0)  # cosine starts at its top
    assert warmup_cosine(9, warmup_steps=4, total_steps=14, min_lr_fraction=0.0) == pytest.approx(0.5)  # halfway
    assert warmup_cosine(14, warmup_steps=4, total_steps=14, min_lr_fraction=0.1) == pytest.approx(0.1)
    assert warmup_cosine(0, warmup_steps=0, total_steps=10) == pytest.approx(1.0)


def test_learning_rate_follows_the_schedule_during_fit():
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(64, 8), torch.randint(0, 2, (64,)))
    trainer = Trainer(nn.Linear(8, 2), quiet(epochs=4, batch_size=16, lr=0.1, warmup_fraction=0.25, min_lr_fraction=0.1))
    history = trainer.fit(data)
    # 16 steps: 4 of warmup, then cosine from 0.1 towards 0.01 (reached at step 16, one past the last).
    expected = [0.1 * warmup_cosine(step, 4, 16, 0.1) for step in range(16)]
    assert history.step_lr == pytest.approx(expected)  # the rate each update used, step 0 included
    assert history.step_lr[0] == pytest.approx(0.1 / 4) and max(history.step_lr) == pytest.approx(0.1)
    assert history.lr == pytest.approx(expected[3::4])  # per epoch: the rate of its last step
    # No warmup and no decay: every step uses the configured rate.
    flat = Trainer(nn.Linear(8, 2), quiet(epochs=1, batch_size=16, lr=0.03, warmup_fraction=0.0, min_lr_fraction=1.0))
    assert flat.fit(data).step_lr == pytest.approx([0.03] * 4)


def test_gradient_clipping_bounds_the_update():
    torch.manual_seed(0)
    x = torch.randn(32, 4) * 1000  # huge inputs, huge gradients
    data = TensorDataset(x, torch.randint(0, 2, (32,)))
    model = nn.Linear(4, 2)
    before = model.weight.detach().clone()
    config = quiet(epochs=1, batch_size=32, lr=1.0, warmup_fraction=0.0, weight_decay=0.0, grad_clip=1e-3)
    Trainer(model, config, optimizer=torch.optim.SGD(model.parameters(), lr=1.0)).fit(data)
    assert (model.weight.detach() - before).norm() <= 1e-3 * 1.0 + 1e-6  # ||lr * clipped grad|| <= lr * max_norm


def test_nan_loss_stops_training_naming_the_step():
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(80, 4), torch.randint(0, 2, (80,)))
    calls = {"n": 0}

    def loss_fn(outputs, targets):
        calls["n"] += 1
        loss = nn.functional.cross_entropy(outputs, targets)
        return loss * float("nan") if calls["n"] == 7 else loss

    trainer = Trainer(nn.Linear(4, 2), quiet(epochs=3, batch_size=8, log_every=4), loss_fn=loss_fn)
    with pytest.raises(FloatingPointError, match=r"got nan at step 7 \(epoch 1\)"):
        trainer.fit(data)


def test_infinite_loss_is_caught_at_the_end_of_an_epoch():
    data = TensorDataset(torch.randn(12, 4), torch.randint(0, 2, (12,)))
    trainer = Trainer(nn.Linear(4, 2), quiet(epochs=1, batch_size=4, log_every=50),
                      loss_fn=lambda o, t: o.sum() * 0 + float("inf"), metric=None)
    with pytest.raises(FloatingPointError, match="got inf at step 1"):
        trainer.fit(data)


def test_early_stopping_stops_when_validation_loss_stops_improving(tmp_path):
    torch.manual_seed(0)
    # Random labels: the model can only memorise, so validation loss soon rises.
    train = TensorDataset(torch.randn(64, 20), torch.randint(0, 4, (64,)))
    val = TensorDataset(torch.randn(64, 20), torch.randint(0, 4, (64,)))
    model = nn.Sequential(nn.Linear(20, 256), nn.ReLU(), nn.Linear(256, 4))
    config = quiet(epochs=40, batch_size=16, lr=1e-2, patience=2, checkpoint_dir=str(tmp_path))
    history = Trainer(model, config).fit(train, val)
    best = history.val_loss.index(min(history.val_loss))
    assert history.epochs == best + 1 + 2 < 40
    assert load_checkpoint(tmp_path / "best.pt", model, restore_rng=False)["epoch"] == best + 1


# ---------------------------------------------------------------------------
# Language models and sequence models: user-supplied loss and metric


class TinyLM(nn.Module):
    """Predicts the next token from the current one: (B, T) -> (B, T, V)."""

    def __init__(self, vocab: int = 11):
        super().__init__()
        self.emb = nn.Embedding(vocab, 32)
        self.head = nn.Linear(32, vocab)

    def forward(self, idx):
        return self.head(self.emb(idx))  # (B, T, V)


def counting_sequences(n: int = 256, length: int = 12, vocab: int = 11) -> TensorDataset:
    start = torch.randint(0, vocab, (n, 1))
    seq = (start + torch.arange(length + 1)) % vocab  # each token is the previous one + 1
    return TensorDataset(seq[:, :-1], seq[:, 1:])


def test_language_model_with_perplexity():
    torch.manual_seed(0)
    data = counting_sequences()
    trainer = Trainer(TinyLM(), quiet(epochs=6, batch_size=32, lr=3e-2), metric="perplexity")
    history = trainer.fit(data, data)
    assert history.metric_name == "perplexity"
    assert history.val_metric[0] < 11  # already better than guessing among 11 tokens
    assert history.val_metric[-1] == pytest.approx(math.exp(history.val_loss[-1]))
    assert history.val_metric[-1] < 1.2  # the rule is learnt


def test_seq2seq_batches_with_two_inputs_and_a_custom_metric():
    class Copy(nn.Module):  # a stand-in for an encoder-decoder: model(src, tgt_in) -> (B, T, V)
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(7, 16)
            self.out = nn.Linear(32, 7)

        def forward(self, src, tgt_in):
            return self.out(torch.cat([self.emb(src), self.emb(tgt_in)], dim=-1))

    def token_accuracy(outputs, targets):
        return (outputs.argmax(-1) == targets).float().mean()

    torch.manual_seed(0)
    src = torch.randint(0, 7, (64, 5))
    data = TensorDataset(src, torch.zeros_like(src), src)  # (src, tgt_in, tgt_out): learn to copy
    trainer = Trainer(Copy(), quiet(epochs=8, batch_size=16, lr=3e-2), metric=token_accuracy)
    history = trainer.fit(data, data)
    assert history.metric_name == "token_accuracy"
    assert history.val_metric[-1] > 0.95
    outputs, targets = trainer.predict(data)
    assert outputs.shape == (64, 5, 7) and torch.equal(targets, src)


def test_models_returning_logits_and_loss_train_with_the_defaults():
    class WithLoss(nn.Module):  # returns (logits, loss) like the chapter 4 models
        def __init__(self):
            super().__init__()
            self.net = mlp()

        def forward(self, x):
            return self.net(x), None

    seed_everything(0)
    data = load_dataset("digits", val_fraction=0.1, seed=0)
    trainer = Trainer(WithLoss(), quiet(epochs=5, lr=1e-2))  # default loss and accuracy read the logits
    history = trainer.fit(data.train, data.val)
    assert history.val_metric[-1] > 0.9
    outputs, targets = trainer.predict(data.test)
    assert outputs.shape == (len(data.test), 10)
    assert (outputs.argmax(-1) == targets).float().mean() > 0.9


def test_tensor_datasets_take_the_batched_fast_path_with_the_same_batches():
    class PerSample(Dataset):  # the same data, but only readable one sample at a time
        def __init__(self, data):
            self.data = data

        def __len__(self):
            return len(self.data)

        def __getitem__(self, i):
            return self.data[i]

    torch.manual_seed(0)
    data = TensorDataset(torch.randn(100, 3), torch.randint(0, 2, (100,)))
    histories = []
    for wrapped in (data, PerSample(data)):
        torch.manual_seed(1)
        trainer = Trainer(nn.Linear(3, 2), quiet(epochs=3, batch_size=16, seed=5))
        histories.append(trainer.fit(wrapped, wrapped))
    fast, slow = histories
    assert len(fast.step_loss) == 3 * 7
    assert fast.step_loss == slow.step_loss and fast.val_loss == slow.val_loss  # same batches, same order


def test_evaluate_without_a_metric_returns_only_the_loss():
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(32, 3), torch.randint(0, 2, (32,)))
    trainer = Trainer(nn.Linear(3, 2), quiet(epochs=1, batch_size=8), metric=None)
    history = trainer.fit(data, data)
    result = trainer.evaluate(data)
    assert set(result) == {"loss"} and result["loss"] == pytest.approx(history.val_loss[-1])
    assert history.val_metric == [None]


def test_outputs_that_are_not_tensors_get_a_clear_error():
    class Dict(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(3, 2)

        def forward(self, x):
            return {"logits": self.linear(x)}

    data = TensorDataset(torch.randn(8, 3), torch.randint(0, 2, (8,)))
    with pytest.raises(ValueError, match="expected the model to return a tensor or a tuple"):
        Trainer(Dict(), quiet(epochs=1, batch_size=8)).fit(data)


def test_history_round_trip():
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(32, 3), torch.randint(0, 2, (32,)))
    history = Trainer(nn.Linear(3, 2), quiet(epochs=2, batch_size=8)).fit(data, data)
    assert isinstance(history, History) and history.epochs == 2
    assert History.from_dict(history.to_dict()) == history


def test_bf16_autocast_on_cpu_when_asked():
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(64, 8), torch.randint(0, 2, (64,)))
    trainer = Trainer(nn.Linear(8, 2), quiet(epochs=2, batch_size=16, precision="bf16"))
    assert trainer.precision == "bf16" and not trainer.scaler.is_enabled()
    history = trainer.fit(data, data)
    assert all(math.isfinite(v) for v in history.step_loss)
    outputs, _ = trainer.predict(data)
    assert outputs.dtype == torch.float32  # predictions come back in full precision
    assert next(trainer.model.parameters()).dtype == torch.float32  # autocast leaves the weights in fp32


def test_compile_is_skipped_with_a_warning_off_cuda():
    with pytest.warns(UserWarning, match="CUDA only"):
        Trainer(nn.Linear(2, 2), quiet(compile=True))


# ---------------------------------------------------------------------------
# Progress bars


def test_progress_bars_show_loss_and_metric(capsys):
    data = TensorDataset(torch.randn(16, 3), torch.randint(0, 2, (16,)))
    Trainer(nn.Linear(3, 2), TrainConfig(epochs=2, batch_size=8, device="cpu", progress=True)).fit(data, data)
    err = capsys.readouterr().err
    assert "epoch 1/2" in err and "epoch 2/2" in err
    assert "accuracy=" in err and "val_loss=" in err and "samples/s=" in err


def test_progress_bars_can_be_switched_off_by_environment(capsys, monkeypatch):
    monkeypatch.setenv("BIGMODEL_PROGRESS", "0")
    data = TensorDataset(torch.randn(16, 3), torch.randint(0, 2, (16,)))
    Trainer(nn.Linear(3, 2), TrainConfig(epochs=1, batch_size=8, device="cpu")).fit(data)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_no_iprogress_warning_in_a_notebook_without_ipywidgets():
    pytest.importorskip("IPython")
    try:
        import ipywidgets  # noqa: F401

        pytest.skip("ipywidgets is installed: tqdm shows widgets and does not warn")
    except ImportError:
        pass
    # Pretend to be a Jupyter kernel, as tqdm.autonotebook detects it, then import the engine.
    code = textwrap.dedent(
        """
        import sys, types, warnings
        warnings.simplefilter("error")
        sys.modules["ipykernel.zmqshell"] = types.ModuleType("ipykernel.zmqshell")
        import IPython
        class ZMQInteractiveShell: pass
        IPython.get_ipython = lambda: ZMQInteractiveShell()
        import bigmodel_lib.training
        # tqdm.autonotebook took its "no ipywidgets" branch, the one that warns:
        print("imported", sys.modules["tqdm.autonotebook"].tqdm.__module__)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "imported tqdm.std" in result.stdout  # the text bar, and no TqdmWarning raised as an error


# ---------------------------------------------------------------------------
# GPU (skipped on CPU machines)


@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["bf16", "fp16", "fp32"])
def test_training_on_cuda_in_each_precision(digits, precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    seed_everything(0)
    trainer = Trainer(mlp(), TrainConfig(epochs=10, lr=1e-2, device="cuda", precision=precision, progress=False))
    assert trainer.precision == precision
    assert trainer.scaler.is_enabled() == (precision == "fp16")
    trainer.fit(digits.train, digits.val)
    assert trainer.evaluate(digits.test)["accuracy"] >= 0.95
    assert next(trainer.model.parameters()).device.type == "cuda"


@pytest.mark.cuda
def test_compiled_training_on_cuda(digits, tmp_path):
    seed_everything(0)
    config = TrainConfig(epochs=3, lr=1e-2, device="cuda", compile=True, progress=False, checkpoint_dir=str(tmp_path))
    trainer = Trainer(mlp(), config)
    trainer.fit(digits.train, digits.val)
    assert trainer.evaluate(digits.test)["accuracy"] > 0.9
    load_checkpoint(tmp_path / "last.pt", mlp(), restore_rng=False)  # keys have no "_orig_mod." prefix


@pytest.mark.cuda
def test_resume_on_cuda_continues_the_run(digits, tmp_path):
    config = dict(epochs=3, lr=1e-2, device="cuda", progress=False, checkpoint_dir=str(tmp_path))
    seed_everything(0)
    Trainer(mlp(), TrainConfig(**{**config, "epochs": 3})).fit(digits.train, digits.val)
    resumed = Trainer(mlp(), TrainConfig(**{**config, "epochs": 4}))
    with pytest.warns(UserWarning, match="different config"):
        history = resumed.fit(digits.train, digits.val, resume_from=tmp_path / "last.pt")
    assert history.epochs == 4


def test_the_engine_computes_the_plain_training_loop_of_section_1_5():
    """Trainer == AdamW + warmup/cosine + global-norm clipping written out (chapter 1, section 1.5), step by step."""
    import copy

    from torch.utils.data import DataLoader

    torch.manual_seed(0)
    data = TensorDataset(torch.randn(200, 12), torch.randint(0, 5, (200,)))
    start = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 5))
    cfg = quiet(epochs=3, batch_size=32, lr=1e-2, weight_decay=0.05, warmup_fraction=0.2, min_lr_fraction=0.05,
                grad_clip=0.5, precision="fp32", seed=3)

    model = copy.deepcopy(start)
    loader = DataLoader(data, batch_size=cfg.batch_size, shuffle=True, generator=torch.Generator().manual_seed(cfg.seed))
    total, optimizer, plain = cfg.epochs * len(loader), torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay), []
    warmup = int(cfg.warmup_fraction * total)
    for _ in range(cfg.epochs):
        for x, y in loader:
            t = len(plain)
            if t < warmup:
                factor = (t + 1) / warmup
            else:
                factor = cfg.min_lr_fraction + (1 - cfg.min_lr_fraction) * 0.5 * (
                    1 + math.cos(math.pi * min(1.0, (t - warmup) / (total - warmup))))
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * factor
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            plain.append(loss.item())

    engine = Trainer(copy.deepcopy(start), cfg)
    history = engine.fit(data)
    assert history.step_loss == plain  # exactly: the same operations in the same order
    assert len(plain) == 21 and plain[-1] < plain[0]
    for a, b in zip(engine.model.parameters(), model.parameters()):
        assert torch.equal(a, b)
