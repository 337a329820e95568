"""trainer.max_time_minutes ends a fit early, and the spine can tell that it did."""

from __future__ import annotations

import time

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from triad.config import compose
from triad.errors import ConfigError
from triad.train import _max_time_reached, build_trainer


class SlowRegression(L.LightningModule):
    """A linear model whose every step takes at least 20 ms, so that time runs out mid-epoch."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        time.sleep(0.02)
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _fit(tmp_path, max_time: str) -> L.Trainer:
    cfg = compose(
        ["model.translator.max_epochs=3", f"trainer.max_time_minutes={max_time}", "trainer.enable_progress_bar=false"]
    )
    trainer = build_trainer(cfg, "translator", tmp_path, logger=None)
    data = DataLoader(TensorDataset(torch.randn(40, 4), torch.randn(40, 1)), batch_size=2)  # 20 steps an epoch
    trainer.fit(SlowRegression(), train_dataloaders=data)
    return trainer


def test_max_time_stops_the_fit_and_is_reported(tmp_path):
    stopped = _fit(tmp_path / "a", "0.005")  # 0.3 s: about 15 of the 60 steps
    assert 0 < stopped.global_step < 60
    assert _max_time_reached(stopped)

    finished = _fit(tmp_path / "b", "null")
    assert finished.global_step == 60
    assert not _max_time_reached(finished)


def test_max_time_must_be_positive():
    with pytest.raises(ConfigError, match="max_time_minutes"):
        compose(["trainer.max_time_minutes=0"])
