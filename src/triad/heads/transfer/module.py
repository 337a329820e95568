"""The transfer model, its fine-tuning strategies, and the LightningModule that trains it.

``TransferClassifier`` = a pretrained ``Backbone`` (features out) + a new linear head (in). The
strategy decides which layer groups train and at which rate (Howard & Ruder, 2018, ULMFiT):

- linear probe:  the backbone is frozen (weights *and* batch-norm statistics); only the head trains.
- partial:       the ``frozen_groups`` lowest backbone groups stay frozen; the groups above and the
                 head train from the first step (the evidence step's fine-tuned arm does the same).
- full:          every layer trains from the first step.
- gradual:       the head trains first; ``GradualUnfreezing`` opens one more backbone group every
                 ``unfreeze_every`` epochs, in ``unfreeze_order`` (default: from the output side down).
- lora:          the backbone is frozen and low-rank adapters (Hu et al., 2021) are injected into
                 its ``lora.targets`` layers with peft; the adapters and the head train.

Discriminative learning rates apply to all of them: the k-th group below the head trains at
``lr * layer_lr_decay**k``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from triad.errors import ConfigError
from triad.heads.transfer.backbones import Backbone, build_backbone
from triad.heads.transfer.config import LoraConfig, TransferModel
from triad.heads.transfer.pretrain import resolve_start, start_state

HEAD_GROUP = "classifier"
log = logging.getLogger(__name__)


class TransferClassifier(nn.Module):
    """Backbone + dropout + linear head: raw inputs -> (B, n_classes) logits.

    ``cfg`` gives the dropout and ``freeze_batchnorm``; the backbone is built from it by the caller
    (``build_classifier``, or from a saved spec when a registered model loads).
    ``groups`` are the trainable units, input side first, ending with ``classifier``; a frozen
    group has ``requires_grad=False`` and stays in eval mode (batch norm keeps its statistics) even
    while the rest of the model trains. With ``freeze_batchnorm`` every batch norm of the backbone
    normalises with its pretrained statistics, also in open groups: with few labels and small
    batches, batch statistics are noise (the usual advice for fine-tuning convolutional networks).
    """

    def __init__(self, backbone: Backbone, n_classes: int, cfg: TransferModel):
        super().__init__()
        self.backbone = backbone
        self.freeze_batchnorm = cfg.freeze_batchnorm
        self.dropout = nn.Dropout(cfg.dropout)
        self.classifier = nn.Linear(backbone.n_features, n_classes)
        self.frozen: set[str] = set()

    @property
    def groups(self) -> dict[str, nn.Module]:
        return {**self.backbone.layer_groups(), HEAD_GROUP: self.classifier}

    def group_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by group; any backbone parameter outside every group joins the lowest one."""
        owner = {}
        for name, group in self.groups.items():
            for p in group.parameters():
                owner.setdefault(id(p), name)
        lowest = next(iter(self.groups))
        params: dict[str, list[nn.Parameter]] = {name: [] for name in self.groups}
        for p in self.parameters():
            params[owner.get(id(p), lowest)].append(p)
        return params

    def set_frozen(self, names: set[str]) -> None:
        """Freeze exactly the groups in ``names`` (the others become trainable)."""
        unknown = names - set(self.groups)
        if unknown:
            raise ConfigError(f"unknown layer group(s) {sorted(unknown)}; the groups are {list(self.groups)}")
        self.frozen = set(names)
        for name, params in self.group_parameters().items():
            for p in params:
                p.requires_grad_(name not in self.frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> TransferClassifier:
        super().train(mode)
        for name, group in self.groups.items():
            if name in self.frozen:
                group.eval()
        if self.freeze_batchnorm:
            for module in self.backbone.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def features(self, raw) -> torch.Tensor:
        return self.backbone(raw)

    def forward(self, raw) -> torch.Tensor:
        return self.classifier(self.dropout(self.backbone(raw)))


def inject_lora(classifier: TransferClassifier, cfg: LoraConfig) -> None:
    """Add peft LoRA adapters to the backbone's ``cfg.targets`` layers; freeze the rest of it."""
    import peft

    lora = peft.LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=list(cfg.targets))
    try:
        peft.inject_adapter_in_model(lora, classifier.backbone)
    except ValueError as exc:  # peft: "Target modules ... not found in the base model"
        raise ConfigError(f"LoRA: {exc}. Set model.transfer.lora.targets to layer names of the backbone.") from exc
    for name, p in classifier.backbone.named_parameters():
        p.requires_grad_("lora_" in name)


def build_classifier(cfg: TransferModel, n_classes: int, pretrained: bool | None = None) -> TransferClassifier:
    """The model for ``cfg``, with the strategy's initial frozen groups (LoRA adapters injected)."""
    classifier = TransferClassifier(build_backbone(cfg, pretrained), n_classes, cfg)
    backbone_groups = [name for name in classifier.groups if name != HEAD_GROUP]  # input side first
    if cfg.strategy == "lora":
        inject_lora(classifier, cfg.lora)
    elif cfg.strategy in ("linear_probe", "gradual"):
        classifier.set_frozen(set(backbone_groups))
    elif cfg.strategy == "partial":
        if cfg.frozen_groups > len(backbone_groups):
            raise ConfigError(
                f"model.transfer.frozen_groups={cfg.frozen_groups} but the backbone has "
                f"{len(backbone_groups)} layer groups ({backbone_groups}); use at most {len(backbone_groups)}"
            )
        classifier.set_frozen(set(backbone_groups[: cfg.frozen_groups]))
    return classifier


def unfreeze_order(classifier: TransferClassifier, cfg: TransferModel) -> list[str]:
    """The backbone groups in the order gradual unfreezing opens them (default: output side first)."""
    backbone_groups = [name for name in classifier.groups if name != HEAD_GROUP]
    order = cfg.unfreeze_order or backbone_groups[::-1]
    unknown = [name for name in order if name not in backbone_groups]
    if unknown:
        raise ConfigError(f"unfreeze_order names unknown group(s) {unknown}; the groups are {backbone_groups}")
    return list(order)


class GradualUnfreezing(L.Callback):
    """At the start of epoch e, opens the first ``e // every`` groups of ``order`` (the head is open).

    Backbone groups that ``order`` leaves out stay frozen.
    Stateless: the open groups follow from the epoch number, so a resumed run opens the same ones.
    ``history`` records (epoch, group) as groups open.
    """

    def __init__(self, order: list[str], every: int = 1):
        self.order, self.every = order, every
        self.history: list[tuple[int, str]] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: TransferModule) -> None:
        model = pl_module.model
        n_open = min(trainer.current_epoch // self.every, len(self.order))
        still_frozen = set(model.groups) - {HEAD_GROUP} - set(self.order[:n_open])
        for name in self.order[:n_open]:
            if name in model.frozen:
                self.history.append((trainer.current_epoch, name))
        if still_frozen != model.frozen:
            model.set_frozen(still_frozen)
        pl_module.log("open_groups", float(n_open))


def discriminative_param_groups(
    classifier: TransferClassifier, lr: float, decay: float, weight_decay: float
) -> list[dict]:
    """Optimiser parameter groups: the k-th layer group below the head gets ``lr * decay**k``.

    Frozen parameters are included too (they get no gradient, so AdamW skips them) so that
    gradual unfreezing needs no new optimiser.
    """
    groups = []
    for depth, (name, params) in enumerate(reversed(classifier.group_parameters().items())):
        if params:
            groups.append({"params": params, "lr": lr * decay**depth, "name": name, "weight_decay": weight_decay})
    return groups


def balanced_class_weights(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(n_classes,) loss weights n / (K * count_k), K the number of classes present: every class
    carries the same total weight, and the weights average to 1 over the training labels. A class
    absent from ``labels`` gets 0."""
    counts = torch.bincount(labels.long(), minlength=n_classes).float()
    weights = len(labels) / ((counts > 0).sum() * counts.clamp_min(1))
    return torch.where(counts > 0, weights, torch.zeros_like(weights))


@torch.compiler.disable  # data augmentation: stays eager when trainer.compile compiles the module around it
def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, H, W) or (B, H, W, C) images, each translated by its own offset in [-max_shift, max_shift]^2
    (edges repeated).

    The offsets are drawn on the CPU (from ``generator`` when given); the crop is one gather on the
    images' own device.
    """
    if max_shift == 0:
        return images
    b, h, w = images.shape[:3]
    channels_first = images[:, None] if images.dim() == 3 else images.permute(0, 3, 1, 2)  # (B, C, H, W)
    padded = F.pad(channels_first.float(), (max_shift,) * 4, mode="replicate").to(images.dtype)
    padded = padded.permute(0, 2, 3, 1)  # (B, H + 2s, W + 2s, C)
    offsets = torch.randint(0, 2 * max_shift + 1, (b, 2), generator=generator).to(images.device)
    rows = offsets[:, :1] + torch.arange(h, device=images.device)  # (B, H)
    cols = offsets[:, 1:] + torch.arange(w, device=images.device)  # (B, W)
    batch = torch.arange(b, device=images.device)[:, None, None]
    shifted = padded[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return shifted[..., 0] if images.dim() == 3 else shifted


class TransferModule(L.LightningModule):
    """Trains a ``TransferClassifier`` with cross-entropy; logs train_loss, val_loss, val_accuracy.

    With ``class_balance`` the training loss weights each class by its inverse frequency in the
    training split (validation loss stays unweighted); with ``shift_augment`` training images are
    randomly translated.

    ``cfg.start`` other than ``backbone`` loads the chosen start's weights into the backbone when fitting
    begins (``setup("fit")``, before Lightning restores a checkpoint to resume): the ``pretrain`` step's
    self-supervised network from ``artifacts_dir/pretrain`` or, for ``best_on_val``, the pretrained arm that
    the evidence in ``artifacts_dir/evidence`` preferred on validation. Evaluating a saved model reads neither;
    without ``artifacts_dir`` (a module built outside the head, as in a notebook) the backbone keeps its own.
    """

    def __init__(
        self, cfg: TransferModel, n_classes: int, pretrained: bool | None = None, artifacts_dir: Path | None = None
    ):
        super().__init__()
        self.cfg = cfg
        self.artifacts_dir = artifacts_dir
        self.start_used: str | None = None  # the arm whose weights fitting started from (cfg.start != backbone)
        self.model = build_classifier(cfg, n_classes, pretrained)
        self.class_weights: torch.Tensor | None = None  # set in setup when cfg.class_balance
        self.unfreezing = None
        if cfg.strategy == "gradual":
            self.unfreezing = GradualUnfreezing(unfreeze_order(self.model, cfg), cfg.unfreeze_every)

    def forward(self, raw) -> torch.Tensor:
        return self.model(raw)

    def configure_callbacks(self) -> list[L.Callback]:
        return [self.unfreezing] if self.unfreezing else []

    def load_start(self, n_labels: int) -> str:
        """Load ``cfg.start``'s backbone weights (for ``n_labels`` training labels); returns the arm used."""
        arm = resolve_start(self.cfg.start, self.artifacts_dir / "evidence", n_labels)
        self.model.backbone.net.load_state_dict(start_state(arm, self.artifacts_dir / "pretrain"))
        log.info("the backbone starts from the %s weights", arm)
        return arm

    def setup(self, stage: str) -> None:
        self.class_weights = None
        datamodule = self.trainer.datamodule
        own_weights = self.cfg.start == "backbone" or self.cfg.backbone != "efficientnet_lite0"  # see cfg.start
        if not own_weights and self.artifacts_dir is not None and stage == "fit" and datamodule is not None:
            self.start_used = self.load_start(len(datamodule.train))
            if self.logger is not None:
                self.logger.log_hyperparams({"start_used": self.start_used})
        if self.cfg.class_balance and stage == "fit" and datamodule is not None:
            self.class_weights = balanced_class_weights(
                torch.as_tensor(datamodule.train.y), self.model.classifier.out_features
            )
        # DDP registers gradient hooks only for the parameters trainable when it wraps the model: groups
        # opened later would train on each process's own gradients and drift apart, silently.
        if self.unfreezing and stage == "fit" and self.trainer.world_size > 1:
            raise ConfigError(
                f"model.transfer.strategy=gradual cannot run on {self.trainer.world_size} processes (DDP would not "
                "synchronise the groups it opens later); use strategy=full or linear_probe, or one device"
            )

    def on_train_epoch_start(self) -> None:
        # Lightning restores train mode itself; re-apply ours so frozen groups and, with
        # freeze_batchnorm, every backbone batch norm keep their running statistics.
        self.model.train()

    def training_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy, weighted by ``class_weights`` when ``class_balance`` set them in ``setup``."""
        weights = None if self.class_weights is None else self.class_weights.to(logits.device)
        return F.cross_entropy(logits, labels, weight=weights)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        if self.cfg.shift_augment and isinstance(x, torch.Tensor) and x.dim() in (3, 4):  # grey or RGB images
            x = random_shift(x, self.cfg.shift_augment)
        loss = self.training_loss(self.model(x), y)
        self.log("train_loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=len(y))
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        logits = self.model(x)
        self.log("val_loss", F.cross_entropy(logits, y), on_epoch=True, prog_bar=True, batch_size=len(y))
        self.log("val_accuracy", (logits.argmax(-1) == y).float().mean(), on_epoch=True, batch_size=len(y))

    def configure_optimizers(self):
        groups = discriminative_param_groups(self.model, self.cfg.lr, self.cfg.layer_lr_decay, self.cfg.weight_decay)
        optimizer = torch.optim.AdamW(groups)
        total = (
            self.trainer.max_epochs if self.trainer.max_epochs and self.trainer.max_epochs > 0 else self.cfg.max_epochs
        )
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total, 1))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
