"""The LightningModule that trains the spread network on Monte-Carlo answers.

Loss: binary cross-entropy of the predicted probability against the estimated one (a soft target);
it is minimised by the true probability, so noisy Monte-Carlo targets do not bias the fit. Logged:
``train_loss``, ``val_loss`` and ``val_mae`` (mean absolute error per node).
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F

from triad.heads.spread.batch import GraphBatch
from triad.heads.spread.config import SpreadModel
from triad.heads.spread.model import SpreadGNN


class SpreadModule(L.LightningModule):
    def __init__(self, cfg: SpreadModel):
        super().__init__()
        self.cfg = cfg
        self.model = SpreadGNN(cfg)
        self._threads_before: int | None = None

    def setup(self, stage: str) -> None:
        if self.cfg.num_threads:
            self._threads_before = torch.get_num_threads()
            torch.set_num_threads(self.cfg.num_threads)

    def teardown(self, stage: str) -> None:
        if self._threads_before is not None:
            torch.set_num_threads(self._threads_before)
            self._threads_before = None

    def forward(self, batch: GraphBatch) -> torch.Tensor:
        return self.model(batch)

    def _loss(self, batch: GraphBatch) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(batch)
        loss = F.binary_cross_entropy_with_logits(logits, batch.target)
        return loss, (torch.sigmoid(logits) - batch.target).abs().mean()

    def training_step(self, batch: GraphBatch, batch_idx: int) -> torch.Tensor:
        loss, _ = self._loss(batch)
        self.log("train_loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=batch.n_graphs)
        return loss

    def validation_step(self, batch: GraphBatch, batch_idx: int) -> None:
        loss, mae = self._loss(batch)
        self.log("val_loss", loss, on_epoch=True, prog_bar=True, batch_size=batch.n_nodes)
        self.log("val_mae", mae, on_epoch=True, batch_size=batch.n_nodes)

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        total = (
            self.trainer.max_epochs if self.trainer.max_epochs and self.trainer.max_epochs > 0 else self.cfg.max_epochs
        )
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total, 1))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
