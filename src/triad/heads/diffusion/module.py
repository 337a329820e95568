"""The LightningModule: trains the UNet on the diffusion loss and keeps an EMA copy for sampling.

State (``state_dict``): ``net.*`` (the trained weights) and ``ema.*`` (their exponential moving
average, which sampling, evaluation and the pyfunc use). The noise schedule is rebuilt from config.
"""

from __future__ import annotations

import copy

import lightning as L
import numpy as np
import torch

from triad.heads.diffusion.config import DiffusionModel
from triad.heads.diffusion.data import to_model_space, to_pixels
from triad.heads.diffusion.model import UNet
from triad.heads.diffusion.process import GaussianDiffusion
from triad.heads.diffusion.sampling import ddim_sample
from triad.nn.schedule import warmup_cosine


def image_grid(images: torch.Tensor, rows: int) -> np.ndarray:
    """(rows * cols, C, H, W) in [-1, 1] -> one uint8 picture (rows * H, cols * W[, C]) for saving."""
    n, c, h, w = images.shape
    cols = n // rows
    pixels = to_pixels(images[: rows * cols]).reshape(rows, cols, c, h, w).permute(0, 3, 1, 4, 2)
    grid = pixels.reshape(rows * h, cols * w, c).cpu().numpy()
    return grid[..., 0] if c == 1 else grid


class DiffusionModule(L.LightningModule):
    """Class-conditional DDPM training with classifier-free label dropout and EMA weights.

    Batches are (uint8 images (B, C, H, W), labels (B,)). ``n_classes = 0`` is an unconditional model
    (a flat folder of the user's images): every label is the null label 0, label dropout changes nothing,
    and sampling ignores guidance (there is no class to guide towards).
    """

    def __init__(self, cfg: DiffusionModel, image_channels: int, image_size: int, n_classes: int, hflip: bool = False):
        super().__init__()
        self.cfg = cfg
        self.image_shape = (image_channels, image_size, image_size)
        self.n_classes = n_classes
        self.hflip = hflip
        self.net = UNet(cfg.unet, image_channels, image_size, n_classes)
        self.ema = copy.deepcopy(self.net).requires_grad_(False)
        self.diffusion = GaussianDiffusion(cfg.timesteps, cfg.schedule, cfg.prediction)

    # --- training ---------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        images, labels = batch
        x0 = to_model_space(images)
        if self.hflip:
            flip = torch.rand(x0.shape[0], device=x0.device) < 0.5
            x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        # classifier-free guidance: sometimes train on the null label instead of the true one
        dropped = torch.rand(labels.shape, device=labels.device) < self.cfg.label_drop_prob
        labels = torch.where(dropped, torch.full_like(labels, self.n_classes), labels)
        loss = self.diffusion.loss(self.net, x0, labels)
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        return loss

    def optimizer_step(self, *args, **kwargs) -> None:
        """The optimiser's step, then the EMA update.

        Here rather than in ``on_train_batch_end``: Lightning runs the callbacks' hooks before the
        module's, so a checkpoint written at the end of a step would hold the EMA before that step's
        update, and a resumed run would end one update short of an uninterrupted one.
        """
        super().optimizer_step(*args, **kwargs)
        self.update_ema(self.global_step + 1)  # Lightning counts this step only after this hook

    @torch.no_grad()
    def update_ema(self, steps_done: int) -> None:
        """ema <- decay * ema + (1 - decay) * net, decay = min(ema_decay, (1 + steps_done) / (10 + steps_done)):
        the usual warm-up, so that the average is not dominated by the random init."""
        decay = min(self.cfg.ema_decay, (1 + steps_done) / (10 + steps_done))
        for ema_param, param in zip(self.ema.parameters(), self.net.parameters()):
            ema_param.lerp_(param, 1 - decay)

    def validation_step(self, batch, batch_idx):
        """The EMA network's loss on held-out images, at timesteps and noise fixed per batch."""
        images, labels = batch
        generator = torch.Generator(device=self.device).manual_seed(batch_idx)
        loss = self.diffusion.loss(self.ema, to_model_space(images), labels, generator=generator)
        self.log("val_loss", loss, on_epoch=True, prog_bar=True)
        return loss

    def on_validation_epoch_end(self) -> None:
        """Log a grid of EMA samples (one row per class) to MLflow every ``grid_every_n_epochs``."""
        every = self.cfg.grid_every_n_epochs
        if self.trainer.sanity_checking or not every or (self.current_epoch + 1) % every:
            return
        experiment = getattr(self.logger, "experiment", None)
        if not self.trainer.is_global_zero or not hasattr(experiment, "log_image"):
            return
        # a progress picture, not a measurement: 6 samples per class at 10 DDIM steps keep it to a few
        # seconds per epoch on CPU (the evaluation's grid uses sample_steps)
        per_class = 6
        rows = max(1, self.n_classes)  # an unconditional model: one row of samples
        labels = torch.arange(rows, device=self.device).repeat_interleave(per_class) % max(1, self.n_classes)
        images = self.generate(labels, steps=min(10, self.cfg.timesteps), seed=0)
        grid = image_grid(images, rows=rows)
        experiment.log_image(self.logger.run_id, grid, f"samples/epoch_{self.current_epoch:03d}.png")

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.net.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = warmup_cosine(optimizer, total, self.cfg.warmup_steps, floor=0.1)  # down to a tenth of lr
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # --- sampling ---------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        labels: torch.Tensor,
        steps: int | None = None,
        guidance: float | None = None,
        seed: int = 0,
        eta: float | None = None,
        progress: bool = False,
    ) -> torch.Tensor:
        """DDIM samples of the EMA network: labels (B,) -> images (B, C, H, W) in [-1, 1].

        An unconditional model takes labels of 0 (the null label), one per image, and no guidance."""
        generator = torch.Generator(device=labels.device).manual_seed(seed)
        if not self.n_classes:
            guidance = 1.0
        return ddim_sample(
            self.ema,
            self.diffusion,
            labels,
            self.image_shape,
            steps=steps or self.cfg.sample_steps,
            eta=self.cfg.ddim_eta if eta is None else eta,
            guidance=self.cfg.guidance if guidance is None else guidance,
            generator=generator,
            progress=progress,
        )
