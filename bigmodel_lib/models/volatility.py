"""Forecasting tomorrow's variance of a return with an LSTM (section 6.5).

Shapes: ``B`` batch (windows), ``T`` window length (days), ``H`` hidden size.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from bigmodel_lib.devices import seed_everything
from bigmodel_lib.finance import lagged_returns, qlike
from bigmodel_lib.training.config import TrainConfig
from bigmodel_lib.training.trainer import Trainer

__all__ = ["LSTMVolatility", "lstm_variance_forecast"]


class LSTMVolatility(nn.Module):
    """An LSTM that reads the last ``T`` daily returns and outputs tomorrow's variance.

    ``forward(window)``: ``window`` (B, T) of returns in percent, oldest first; each day enters as two features,
    ``r`` and ``|r|`` (the sign lets it learn that falls raise volatility more than rises). Returns (B,), a
    variance in percent squared: ``softplus`` of a linear read-out of the last hidden state, plus ``min_variance``,
    so it is always positive. Raises ``ValueError`` for a window that is not (B, T).

    Introduced in §6.5.
    """

    def __init__(self, hidden_size: int = 16, min_variance: float = 1e-3):
        super().__init__()
        self.lstm = nn.LSTM(2, hidden_size, batch_first=True)
        self.head = nn.Linear(hidden_size, 1)
        self.min_variance = min_variance

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        if window.dim() != 2:
            raise ValueError(f"LSTMVolatility expects windows of returns (B, T), got shape {tuple(window.shape)}")
        features = torch.stack([window, window.abs()], dim=-1)  # (B, T, 2)
        out, _ = self.lstm(features)  # (B, T, H)
        return F.softplus(self.head(out[:, -1]).squeeze(-1)) + self.min_variance  # (B,)


def _mean_qlike(variance: torch.Tensor, squared_return: torch.Tensor) -> torch.Tensor:
    return qlike(variance, squared_return).mean()


def lstm_variance_forecast(train: torch.Tensor, history: torch.Tensor, window: int = 60, hidden_size: int = 16,
                           epochs: int = 10, batch_size: int = 128, lr: float = 3e-3, seed: int = 0) -> torch.Tensor:
    """A forecaster for :func:`bigmodel_lib.finance.walk_forward`: train an :class:`LSTMVolatility` on ``train``,
    forecast the variance of each later day of ``history``.

    Training pairs are every window of ``window`` training days and the next day's squared return; the loss is the
    mean QLIKE (:func:`bigmodel_lib.finance.qlike`), with the book's ``Trainer`` (AdamW, warmup and cosine decay,
    no weight decay), ``seed`` seeding the initialisation and the order of the windows. Returns
    (len(history) - len(train),) float64, each forecast from the ``window`` returns before its day. Raises
    ``ValueError`` if ``train`` has ``window`` days or fewer.

    Introduced in §6.5.
    """
    if train.shape[0] <= window:
        raise ValueError(f"expected more than window = {window} training days, got {train.shape[0]}")
    X, y = lagged_returns(train.float(), window)  # (n - window, window), (n - window,)
    seed_everything(seed)
    model = LSTMVolatility(hidden_size)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=0.0, device="cpu", seed=seed,
                         progress=False)
    Trainer(model, config, loss_fn=_mean_qlike, metric=None).fit(torch.utils.data.TensorDataset(X, y**2))
    test_windows = history[train.shape[0] - window:].float().unfold(0, window, 1)[:-1]  # (test days, window)
    model.eval()
    with torch.no_grad():
        return model(test_windows).to(torch.float64)
