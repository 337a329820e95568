"""The line head: data step, Lightning modules, evaluation and the served model."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch
from torch.utils.data import TensorDataset

from triad.heads.base import Evaluation, Head, PyfuncBundle
from triad.nn.saved import load_network, save_network
from triad.resumable import ResumableLoader


class LineDataModule(L.LightningDataModule):
    def __init__(self, data_dir: Path, batch_size: int, seed: int):
        super().__init__()
        arrays = np.load(data_dir / "points.npz")
        self.splits = {
            name: TensorDataset(torch.from_numpy(arrays[f"{name}_x"]), torch.from_numpy(arrays[f"{name}_y"]))
            for name in ("train", "val", "test")
        }
        self.batch_size, self.seed = batch_size, seed

    def train_dataloader(self) -> ResumableLoader:  # ordered by (seed, epoch), so a killed run resumes exactly
        return ResumableLoader(self.splits["train"], seed=self.seed, batch_size=self.batch_size)

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(self.splits["val"], batch_size=len(self.splits["val"]))


class LineModule(L.LightningModule):
    """x (B, 1) -> y (B, 1) through one linear layer, trained on mean squared error."""

    def __init__(self, lr: float):
        super().__init__()
        self.net, self.lr = torch.nn.Linear(1, 1), lr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


class LinePyfunc(mlflow.pyfunc.PythonModel):
    """``predict([0.5, 1.0]) -> [y(0.5), y(1.0)]``"""

    def load_context(self, context) -> None:
        _, weights = load_network(context.artifacts)
        self.net = torch.nn.Linear(1, 1)
        self.net.load_state_dict(weights)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> list[float]:
        x = torch.tensor(np.asarray(model_input, dtype=np.float32).reshape(-1, 1))
        with torch.no_grad():
            return self.net(x).squeeze(1).tolist()


class LineHead(Head):
    name = "line"
    gate_metric = "test_mse"
    gate_mode = "min"

    def prepare(self, out_dir: Path) -> dict:
        cfg = self.data_cfg
        rng = np.random.default_rng(self.cfg.seed)
        x = rng.uniform(-1, 1, (cfg.points, 1)).astype(np.float32)
        y = (cfg.slope * x + cfg.intercept + cfg.noise * rng.standard_normal(x.shape)).astype(np.float32)
        n_train, n_val = int(0.8 * cfg.points), int(0.1 * cfg.points)
        edges = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, cfg.points)}
        np.savez(
            out_dir / "points.npz",
            **{
                f"{name}_{axis}": values[a:b] for name, (a, b) in edges.items() for axis, values in (("x", x), ("y", y))
            },
        )
        return {name: b - a for name, (a, b) in edges.items()}

    def datamodule(self, data_dir: Path) -> LineDataModule:
        return LineDataModule(data_dir, self.model_cfg.batch_size, self.cfg.seed)

    def module(self, datamodule: LineDataModule) -> LineModule:
        return LineModule(self.model_cfg.lr)

    def evaluate(self, module: LineModule, datamodule: LineDataModule, report_dir: Path) -> Evaluation:
        x, y = datamodule.splits["test"].tensors
        predicted = module(x)
        baseline = datamodule.splits["train"].tensors[1].mean()  # always answer the training mean
        metrics = {
            "test_mse": float(((predicted - y) ** 2).mean()),
            "test_baseline_mse": float(((baseline - y) ** 2).mean()),
        }
        table = pd.DataFrame(
            {"x": x.squeeze(1).numpy(), "y": y.squeeze(1).numpy(), "predicted": predicted.squeeze(1).numpy()}
        )
        return Evaluation(metrics, tables={"test_predictions": table})

    def pyfunc(self, module: LineModule, datamodule: LineDataModule, work_dir: Path) -> PyfuncBundle:
        return PyfuncBundle(LinePyfunc(), save_network(module.net, {}, work_dir), input_example=[0.5])

    def gate_passes(self, metrics: dict[str, float]) -> tuple[bool, str]:
        if metrics["test_mse"] >= metrics["test_baseline_mse"]:
            return False, "no better than always answering the training mean"
        return True, "beats always answering the training mean"


HEAD = LineHead  # what the head registry reads (triad.heads)
