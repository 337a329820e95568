"""The LightningModule that trains a ``Seq2SeqTransformer`` with teacher forcing."""

from __future__ import annotations

from dataclasses import asdict

import lightning as L
import torch
import torch.nn.functional as F

from triad.heads.translator.config import TranslatorModel, TranslatorNet
from triad.heads.translator.model import Seq2SeqTransformer, TransformerConfig
from triad.nn.schedule import warmup_cosine


def transformer_config(net: TranslatorNet, vocab_size: int, pad_id: int) -> TransformerConfig:
    """The translator's network: ``model.translator.net``, the vocabulary size and the padding id, with the
    paper's ReLU feed-forward sublayers."""
    return TransformerConfig(vocab_size=vocab_size, pad_id=pad_id, activation="relu", **net.model_dump())


class TranslatorModule(L.LightningModule):
    """Label-smoothed cross-entropy on next-token prediction, AdamW, linear warmup then cosine decay.

    A batch is ``{"src": (B, S), "tgt": (B, T)}`` with ``tgt`` = BOS y_1 .. y_n EOS; the model
    reads ``tgt[:, :-1]`` and predicts ``tgt[:, 1:]``. Logs ``train_loss`` per step, and
    ``val_loss`` and ``val_ppl`` (the corpus perplexity of val, without label smoothing) per epoch.
    """

    def __init__(self, cfg: TranslatorModel, vocab_size: int, pad_id: int):
        super().__init__()
        self.cfg = cfg
        self.pad_id = pad_id
        self.model = Seq2SeqTransformer(transformer_config(cfg.net, vocab_size, pad_id))
        self.save_hyperparameters({"architecture": asdict(self.model.config), "model": cfg.model_dump()})

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        return self.model(src, tgt_in)

    def _logits_and_targets(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing: (B*(T-1), V) float logits for tgt[:, :-1] and the (B*(T-1),) next tokens tgt[:, 1:]."""
        logits = self.model(batch["src"], batch["tgt"][:, :-1])
        return logits.flatten(0, 1).float(), batch["tgt"][:, 1:].flatten()

    def _loss(self, batch: dict[str, torch.Tensor], label_smoothing: float) -> torch.Tensor:
        logits, targets = self._logits_and_targets(batch)
        return F.cross_entropy(logits, targets, ignore_index=self.pad_id, label_smoothing=label_smoothing)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch, self.cfg.label_smoothing)
        self.log("train_loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=batch["src"].size(0))
        return loss

    def on_validation_epoch_start(self) -> None:
        self.val_nll = torch.zeros(2, device=self.device)  # summed NLL (no smoothing), target tokens

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits, targets = self._logits_and_targets(batch)
        loss = F.cross_entropy(logits, targets, ignore_index=self.pad_id, label_smoothing=self.cfg.label_smoothing)
        self.log(
            "val_loss",
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=batch["src"].size(0),
            sync_dist=True,
        )
        nll = F.cross_entropy(logits, targets, ignore_index=self.pad_id, reduction="sum")
        self.val_nll += torch.stack([nll, (targets != self.pad_id).sum().float()])

    def on_validation_epoch_end(self) -> None:
        """Corpus perplexity exp(sum NLL / tokens) over every process's batches, not a mean of per-batch
        perplexities (which overstates it: exp is convex)."""
        nll, tokens = self.trainer.strategy.reduce(self.val_nll, reduce_op="sum")
        self.log("val_ppl", torch.exp(nll / tokens.clamp(min=1)))

    def configure_optimizers(self):
        # Weight decay on matrices only, not on biases and LayerNorm gains (as in nanoGPT).
        decay = [p for p in self.parameters() if p.requires_grad and p.dim() >= 2]
        no_decay = [p for p in self.parameters() if p.requires_grad and p.dim() < 2]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=self.cfg.lr,
            betas=(0.9, 0.98),
            eps=1e-9,
        )
        scheduler = warmup_cosine(optimizer, int(self.trainer.estimated_stepping_batches), self.cfg.warmup_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
