"""Self-supervised pretraining of the image backbone on the task's own unlabelled images.

A user with many unlabelled scans and few labels can teach the network what their images look like
before any label is used: two random *views* of the same image (cropped, rotated, brighter or darker)
must map to nearby features, views of different images to distant ones. The network is the transfer
head's EfficientNet-lite0 (``model.py``), read through the same input adaptation as fine-tuning
(``adapt_images``: grey -> 3 channels, resize, [-1, 1] scaling); after pretraining only its backbone
is kept, and the evidence's ``ssl`` and ``imagenet+ssl`` arms and the training stage start from it.

Objectives (``model.transfer.pretrain.objective``):

- SimCLR (Chen et al., 2020): a projection MLP maps the pooled features to z; NT-Xent is the
  cross-entropy of picking each view's partner among the other 2B - 1 views of the batch, by cosine
  similarity / temperature.
- BYOL (Grill et al., 2020): an online network (backbone, projector, predictor) predicts a *target*
  network's projection of the other view; the target is an exponential moving average of the online
  backbone and projector and gets no gradient. No negative pairs, so small batches are fine.

The augmentations are written in torch (no torchvision) for grey radiographs and digits: a random
resized crop and a small rotation in one affine resampling, brightness and contrast jitter, no hue
(grey images have none), and a horizontal flip only where the task allows it. The pool is every
training image of the prepared task; val and test images are never seen.

Outputs of the step (``artifacts/transfer/pretrain/``): ``<start>.pt`` (the backbone's state_dict, one
per start: ``scratch``, ``imagenet``), ``loss.csv`` (the loss of every step) and ``loss.png``.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from triad.errors import ConfigError
from triad.heads.transfer.backbones import EfficientNetLite0Backbone, adapt_images, imagenet_lite0
from triad.heads.transfer.config import PretrainConfig
from triad.heads.transfer.data import load_split
from triad.heads.transfer.model import EfficientNetLite

log = logging.getLogger(__name__)

# Which pretrain start each evidence arm (and ``model.transfer.start``) reads.
ARM_STARTS = {"ssl": "scratch", "imagenet+ssl": "imagenet"}


# --- augmentations ----------------------------------------------------------------------------------
def augment(images: torch.Tensor, cfg: PretrainConfig, generator: torch.Generator) -> torch.Tensor:
    """One random view of each image: uint8 (B, H, W) grey or (B, H, W, 3) RGB -> uint8 of the same shape.

    Per image, drawn on the CPU from ``generator`` (the same views on every device):

    - a crop of a random share of the area in [crop_scale, 1] and aspect ratio in [3/4, 4/3], at a random
      place inside the image, resized back to H x W (``crop_scale`` 1: the whole image);
    - a rotation by an angle in [-rotation, rotation] degrees about the crop's centre (edges repeated);
    - a horizontal flip with probability 1/2, only if ``cfg.flip``;
    - contrast: the image's distance from its mean scaled by a factor in [1 - contrast, 1 + contrast];
    - brightness: a shift in [-brightness, brightness] of the full range.

    Crop, rotation and flip are one affine map, resampled once (bilinear); values are clipped to 0..255.
    """
    if images.dtype != torch.uint8 or images.dim() not in (3, 4):
        raise ValueError(f"augment takes uint8 (B, H, W) or (B, H, W, 3) images, not {images.dtype} {images.shape}")
    b, device = len(images), images.device

    def uniform(low: float, high: float) -> torch.Tensor:  # (B,)
        return torch.rand(b, generator=generator) * (high - low) + low

    area = uniform(cfg.crop_scale, 1.0)
    ratio = uniform(math.log(3 / 4), math.log(4 / 3)).exp() if cfg.crop_scale < 1 else torch.ones(b)
    half_w, half_h = (area * ratio).sqrt().clamp(max=1.0), (area / ratio).sqrt().clamp(max=1.0)  # of the side
    centre_x, centre_y = uniform(-1, 1) * (1 - half_w), uniform(-1, 1) * (1 - half_h)  # window stays inside
    angle = uniform(-1, 1) * math.radians(cfg.rotation)
    mirror = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0) if cfg.flip else torch.ones(b)
    cos, sin = angle.cos(), angle.sin()
    # output (x, y) in [-1, 1]^2 -> input (x', y'): rotate, scale to the window, move to its centre
    theta = torch.stack(
        [
            torch.stack([cos * half_w * mirror, -sin * half_h, centre_x], dim=1),
            torch.stack([sin * half_w * mirror, cos * half_h, centre_y], dim=1),
        ],
        dim=1,
    ).to(device)  # (B, 2, 3)
    x = images.float()
    x = x[:, None] if images.dim() == 3 else x.permute(0, 3, 1, 2)  # (B, C, H, W)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    contrast = uniform(1 - cfg.contrast, 1 + cfg.contrast).to(device).view(b, 1, 1, 1)
    brightness = (uniform(-cfg.brightness, cfg.brightness) * 255).to(device).view(b, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * contrast + mean + brightness).clamp(0, 255).round().to(torch.uint8)
    return x[:, 0] if images.dim() == 3 else x.permute(0, 2, 3, 1)


# --- networks ---------------------------------------------------------------------------------------
def mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    """The projector / predictor: (B, d_in) -> Linear -> BatchNorm -> ReLU -> Linear -> (B, d_out)."""
    return nn.Sequential(
        nn.Linear(d_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, d_out)
    )


class Encoder(nn.Module):
    """uint8 images (B, H, W[, 3]) -> adapted to (B, 3, size, size) -> backbone -> projector -> (B, projection_dim).

    ``backbone`` is an ``EfficientNetLite`` without classifier; only it is kept after pretraining.
    """

    def __init__(self, backbone: EfficientNetLite, cfg: PretrainConfig, image_size: int):
        super().__init__()
        self.backbone = backbone
        self.projector = mlp(backbone.n_features, cfg.hidden_dim, cfg.projection_dim)
        self.image_size = image_size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = adapt_images(images, self.image_size, EfficientNetLite0Backbone.MEAN, EfficientNetLite0Backbone.STD)
        return self.projector(self.backbone.features(x))


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss for projections z1, z2 (B, D) of two views of the same B images: a scalar.

    The 2B views' cosine similarities / temperature are the logits; each view's target is its partner,
    every other view of the batch is a negative.
    """
    b = len(z1)
    z = F.normalize(torch.cat([z1, z2]), dim=1)  # (2B, D)
    logits = z @ z.T / temperature  # (2B, 2B)
    logits = logits.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=z.device), float("-inf"))
    partner = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    return F.cross_entropy(logits, partner)


def byol_loss(p: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BYOL's loss: 2 - 2 cos(prediction p, target projection), both (B, D), averaged: a scalar in [0, 4]."""
    return (2 - 2 * F.cosine_similarity(p, target.detach(), dim=-1)).mean()


class SelfSupervised(nn.Module):
    """The pretraining objective around one backbone: two views (B, H, W[, 3]) each -> the loss (scalar)."""

    def __init__(self, backbone: EfficientNetLite, cfg: PretrainConfig, image_size: int):
        super().__init__()
        self.cfg = cfg
        self.online = Encoder(backbone, cfg, image_size)
        if cfg.objective == "byol":
            self.predictor = mlp(cfg.projection_dim, cfg.hidden_dim, cfg.projection_dim)
            self.target = copy.deepcopy(self.online).requires_grad_(False)

    @property
    def backbone(self) -> EfficientNetLite:
        return self.online.backbone

    def forward(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        if self.cfg.objective == "simclr":
            return nt_xent(self.online(view1), self.online(view2), self.cfg.temperature)
        p1, p2 = self.predictor(self.online(view1)), self.predictor(self.online(view2))
        with torch.no_grad():
            t1, t2 = self.target(view1), self.target(view2)
        return (byol_loss(p1, t2) + byol_loss(p2, t1)) / 2

    @torch.no_grad()
    def update_target(self) -> None:
        """BYOL: target <- ema * target + (1 - ema) * online (parameters); batch-norm statistics are copied."""
        if self.cfg.objective != "byol":
            return
        for t, o in zip(self.target.parameters(), self.online.parameters()):
            t.lerp_(o, 1 - self.cfg.ema)
        for t, o in zip(self.target.buffers(), self.online.buffers()):
            t.copy_(o)


# --- the step ---------------------------------------------------------------------------------------
def initial_backbone(start: str, width: float = 1.0) -> EfficientNetLite:
    """The network a start begins from: ``imagenet`` (the ImageNet weights) or ``scratch`` (random, seeded by
    the caller), without classifier."""
    if start == "imagenet":
        return imagenet_lite0(n_classes=None)
    return EfficientNetLite(n_classes=None, width=width)


def pretrain(
    images: np.ndarray,
    backbone: EfficientNetLite,
    cfg: PretrainConfig,
    image_size: int,
    seed: int,
    device: str = "cpu",
) -> list[float]:
    """Train ``backbone`` in place on uint8 ``images`` (N, H, W[, 3]) with ``cfg.objective`` for ``cfg.steps``
    steps; returns every step's loss. Batches are drawn without replacement, epoch after epoch, from a CPU
    generator seeded with ``seed`` (as are the views)."""
    if len(images) < 2:
        raise ConfigError(f"self-supervised pretraining needs at least 2 unlabelled images, got {len(images)}")
    torch.manual_seed(seed)
    model = SelfSupervised(backbone, cfg, image_size).to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.steps)
    generator = torch.Generator().manual_seed(seed)
    pool = torch.from_numpy(images).to(device)
    batch_size = min(cfg.batch_size, len(images))
    order, losses = torch.empty(0, dtype=torch.long), []
    model.train()
    for _ in range(cfg.steps):
        if len(order) < batch_size:  # a new epoch (the last partial batch of the old one is skipped)
            order = torch.randperm(len(images), generator=generator)
        idx, order = order[:batch_size], order[batch_size:]
        batch = pool[idx.to(device)]
        loss = model(augment(batch, cfg, generator), augment(batch, cfg, generator))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        model.update_target()
        losses.append(loss.item())
        if len(losses) % max(1, cfg.steps // 10) == 0:
            log.info("pretrain %s step %d/%d  loss %.3f", cfg.objective, len(losses), cfg.steps, losses[-1])
    backbone.eval()
    return losses


def weights_path(pretrain_dir: Path, start: str) -> Path:
    return Path(pretrain_dir) / f"{start}.pt"


def load_pretrained(pretrain_dir: Path, arm: str) -> EfficientNetLite:
    """The backbone the ``pretrain`` step made for an evidence arm (``ssl``, ``imagenet+ssl``), or raise a
    ConfigError that says how to make it."""
    start = ARM_STARTS[arm]
    path = weights_path(pretrain_dir, start)
    if not path.is_file():
        raise ConfigError(
            f"{arm} needs the self-supervised network pretrained from {start}, and {path} does not exist: run "
            f"`dvc repro pretrain_transfer` (or `triad stage pretrain transfer`) with {start!r} in "
            "model.transfer.pretrain.starts, or leave the arm out of model.transfer.evidence.arms"
        )
    net = EfficientNetLite(n_classes=None)
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return net.eval()


def resolve_start(start: str, evidence_dir: Path, n_labels: int) -> str:
    """The pretrained arm ``model.transfer.start`` names: itself (``ssl``, ``imagenet+ssl``) or, for
    ``best_on_val``, the arm the evidence's validation split preferred at the label fraction whose label count
    is nearest (in ratio) to ``n_labels``, the training split's. Raises a ConfigError when the evidence is
    missing or was skipped."""
    if start != "best_on_val":
        return start
    path = Path(evidence_dir) / "summary.json"
    summary = json.loads(path.read_text()) if path.is_file() else {}
    by_fraction, labels = summary.get("val_preferred_start"), summary.get("labels_per_fraction")
    if not by_fraction or not labels:
        raise ConfigError(
            f"model.transfer.start=best_on_val reads the evidence's choice from {path}, which "
            f"{'does not exist' if not path.is_file() else 'has none (skipped, or no pretrained arm ran)'}: run "
            "`dvc repro evidence_transfer` (or `triad stage evidence transfer`) first, or set model.transfer.start"
        )
    nearest = min(by_fraction, key=lambda f: abs(math.log(labels[f] / max(n_labels, 1))))
    log.info(
        "start: %s, the arm the validation split preferred at %s of the evidence's labels (%.0f labels; training "
        "uses %d)",
        by_fraction[nearest],
        nearest,
        labels[nearest],
        n_labels,
    )
    return by_fraction[nearest]


def start_state(arm: str, pretrain_dir: Path) -> dict[str, torch.Tensor]:
    """The backbone weights (EfficientNetLite state_dict, no classifier) a pretrained arm starts from."""
    if arm == "imagenet":
        return imagenet_lite0(n_classes=None).state_dict()
    if arm not in ARM_STARTS:
        raise ConfigError(f"unknown start {arm!r}: one of imagenet, {', '.join(ARM_STARTS)}")
    return load_pretrained(pretrain_dir, arm).state_dict()


def run_pretrain(
    data_dir: Path, cfg: PretrainConfig, image_size: int, out_dir: Path, seed: int, device: str = "cpu"
) -> dict[str, Any]:
    """The step: pretrain one backbone per ``cfg.starts`` on the prepared pool's images (labels unused);
    write ``<start>.pt``, ``loss.csv`` and ``loss.png`` to ``out_dir``. Text tasks are skipped."""
    meta = json.loads((Path(data_dir) / "meta.json").read_text())
    if meta["modality"] != "image":
        note = f"self-supervised pretraining is for the image backbone; task {meta['task']} is {meta['modality']}"
        (out_dir / "SKIPPED.txt").write_text(note + "\n")
        return {"skipped": note}
    images = load_split(Path(data_dir), "pool").x  # every training image; its labels are not read
    size = cfg.image_size or image_size
    rows, summary = [], {"objective": cfg.objective, "images": len(images), "view_size": size, "device": device}
    for start in cfg.starts:
        torch.manual_seed(seed)
        backbone = initial_backbone(start)
        started = time.perf_counter()
        losses = pretrain(images, backbone, cfg, size, seed, device)
        seconds = time.perf_counter() - started
        torch.save({k: v.cpu() for k, v in backbone.state_dict().items()}, weights_path(out_dir, start))
        rows += [{"start": start, "step": i + 1, "loss": loss} for i, loss in enumerate(losses)]
        k = max(1, min(5, len(losses) // 2))  # the mean of the first and last k steps (up to 5)
        first, last = float(np.mean(losses[:k])), float(np.mean(losses[-k:]))
        summary |= {f"{start}_loss_first": first, f"{start}_loss_last": last, f"{start}_seconds": seconds}
        log.info("pretrained from %s: loss %.3f -> %.3f in %d steps, %.0f s", start, first, last, len(losses), seconds)
    curve = pd.DataFrame(rows)
    curve.to_csv(out_dir / "loss.csv", index=False)
    plot_loss(curve, cfg, out_dir / "loss.png")
    return summary


def plot_loss(curve: pd.DataFrame, cfg: PretrainConfig, path: Path) -> Path:
    """The loss of every step, one line per start."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for start, rows in curve.groupby("start"):
        ax.plot(rows.step, rows.loss, label=f"from {start}")
    ax.set(xlabel="step", ylabel=f"{cfg.objective} loss", title=f"self-supervised pretraining ({cfg.objective})")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
