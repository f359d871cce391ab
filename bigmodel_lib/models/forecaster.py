"""Forecasting a time series with an LSTM (chapter 3, section 3.5).

Shapes: ``B`` batch (windows), ``T`` window length, ``I`` features per step.
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["SequenceForecaster", "sliding_windows"]


class SequenceForecaster(nn.Module):
    """An LSTM regressor that predicts the next value of a univariate series.

    ``forward(window)``: ``window`` (B, T) of past values, or (B, T, 1);
    returns (B,), the prediction of the value after each window: the LSTM's
    last hidden state through a linear layer. :func:`sliding_windows` cuts a
    series into (window, next value) pairs for training; :meth:`forecast`
    feeds predictions back in to look several steps ahead.

    Introduced in §3.5.
    """

    def __init__(self, hidden_size: int = 32, num_layers: int = 1):
        super().__init__()
        self.lstm = nn.LSTM(1, hidden_size, num_layers, batch_first=True)
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        if window.dim() == 3 and window.shape[-1] == 1:
            window = window.squeeze(-1)
        if window.dim() != 2:
            raise ValueError(
                "SequenceForecaster expects windows of a univariate series, (B, T) or (B, T, 1), "
                f"got shape {tuple(window.shape)}"
            )
        out, _ = self.lstm(window.unsqueeze(-1))  # (B, T, H)
        return self.head(out[:, -1]).squeeze(-1)  # (B,)

    @torch.no_grad()
    def forecast(self, window: torch.Tensor, steps: int) -> torch.Tensor:
        """Predict ``steps`` values after ``window`` (T,), each from the previous predictions."""
        if window.dim() != 1:
            raise ValueError(f"forecast expects one window of shape (T,), got {tuple(window.shape)}")
        history = window.clone()
        predictions = []
        for _ in range(steps):
            nxt = self(history.unsqueeze(0))  # (1,)
            predictions.append(nxt[0])
            history = torch.cat([history[1:], nxt])  # slide the window by one
        return torch.stack(predictions) if predictions else window.new_zeros(0)


def sliding_windows(series: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut a series (N,) into inputs (N - window, window) and next values (N - window,).

    Row ``i`` of the inputs is ``series[i : i + window]`` and its target is
    ``series[i + window]``.

    Introduced in §3.5.
    """
    if series.dim() != 1:
        raise ValueError(f"series must be 1-D (N,), got shape {tuple(series.shape)}")
    if not 1 <= window < series.shape[0]:
        raise ValueError(f"window must be between 1 and N - 1 = {series.shape[0] - 1}, got {window}")
    inputs = series.unfold(0, window, 1)[:-1]  # (N - window, window)
    targets = series[window:]  # (N - window,)
    return inputs, targets
