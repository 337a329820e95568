"""Where should the backbone's weights start? Four EfficientNet-lite arms, by label fraction.

For each label fraction (of the labelled pool, stratified) and seed, every arm in ``evidence.arms``
trains on the same labelled examples and is scored on the same test split:

- ``scratch``:      a randomly initialised EfficientNet-lite0, the same network (``scratch_width`` 1.0;
                    narrower is an option, flagged in the caveats), every layer trained on the images.
- ``imagenet``:     the ImageNet weights.
- ``ssl``:          self-supervised on the task's own unlabelled training images from a random start
                    (the ``pretrain`` step, ``pretrain.py``; computed once, read here by every run).
- ``imagenet+ssl``: the ImageNet weights, then self-supervised the same way.

The three pretrained arms share one fine-tuning recipe: their lowest ``frozen_groups`` layer groups stay
frozen, so their outputs are computed once per arm for all images and cached ("frozen trunk"); the upper
groups and a new classifier are fine-tuned on those cached activations.

Every arm sees images through the same input adaptation (grey -> 3 channels, resize, [-1, 1] scaling),
trains with AdamW for ``max_epochs`` epochs, and is scored on test with the weights of the epoch
that scored best on validation. (Scored at their last epoch instead, a run that overfits a small
labelled set decides the comparison: over 3 seeds, the imagenet arm at 10% of PneumoniaMNIST
ended at test AUC 0.80 after 12 epochs against 0.92 after 6.) Compute is measured as wall seconds
(for a pretrained arm including its cached trunk's forward pass over its own training and
validation images; the pretraining itself is the ``pretrain`` stage's, paid once) and as the first
epoch whose validation accuracy reaches ``target_accuracy``.
Outputs: ``runs.csv`` (one row per run), ``summary.csv`` (mean and std per arm and fraction, with
how many runs reached the target and how many were still improving at their last epoch) and
``evidence.png``; the step's summary adds the verdicts, the arm the validation split prefers at each
fraction (``val_preferred``; the training stage's ``start: best_on_val`` reads ``val_preferred_start``)
and the caveats a reader needs before trusting them.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import sys
import time
from dataclasses import dataclass
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
from tqdm.auto import tqdm

from triad.heads.transfer.backbones import EfficientNetLite0Backbone, adapt_images, imagenet_lite0
from triad.heads.transfer.config import EvidenceConfig
from triad.heads.transfer.data import Split, load_split, stratified_subset
from triad.heads.transfer.evaluate import classification_metrics
from triad.heads.transfer.model import EfficientNetLite
from triad.heads.transfer.module import balanced_class_weights
from triad.heads.transfer.pretrain import ARM_STARTS, load_pretrained

log = logging.getLogger(__name__)


class UpperLayers(nn.Module):
    """The trainable top of a pretrained EfficientNet-lite: cached trunk activations -> logits.

    (B, C, h, w) activations of the frozen groups -> remaining groups -> global average pool ->
    dropout -> a new linear classifier -> (B, n_classes). The groups are copied, so every run
    starts from the ImageNet weights.
    """

    def __init__(self, net: EfficientNetLite, frozen_groups: int, n_classes: int, dropout: float = 0.2):
        super().__init__()
        self.groups = copy.deepcopy(nn.Sequential(*list(net.layer_groups().values())[frozen_groups:]))
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(net.n_features, n_classes)

    def forward(self, activations: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.groups(activations).mean(dim=(2, 3))))


class ScratchNet(nn.Module):
    """A randomly initialised EfficientNet-lite on uint8 images: (B, H, W) -> (B, n_classes)."""

    def __init__(self, n_classes: int, width: float, image_size: int):
        super().__init__()
        self.net = EfficientNetLite(n_classes=n_classes, width=width)
        self.image_size = image_size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(
            adapt_images(images, self.image_size, EfficientNetLite0Backbone.MEAN, EfficientNetLite0Backbone.STD)
        )


@torch.no_grad()
def trunk_activations(
    net: EfficientNetLite, frozen_groups: int, images: np.ndarray, image_size: int, batch_size: int = 256
) -> torch.Tensor:
    """The frozen lower groups' output for uint8 images (N, H, W): (N, C, h, w), computed in eval mode
    on the network's device and kept there."""
    net.eval()
    device = next(net.parameters()).device
    trunk = nn.Sequential(*list(net.layer_groups().values())[:frozen_groups])
    out = []
    for start in tqdm(
        range(0, len(images), batch_size), desc="cache frozen trunk", leave=False, disable=not sys.stderr.isatty()
    ):
        x = adapt_images(
            torch.from_numpy(images[start : start + batch_size]).to(device),
            image_size,
            EfficientNetLite0Backbone.MEAN,
            EfficientNetLite0Backbone.STD,
        )
        out.append(trunk(x))
    return torch.cat(out)


@torch.no_grad()
def _probabilities(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    model.eval()
    return torch.cat(
        [torch.softmax(model(x[i : i + batch_size]), -1).cpu() for i in range(0, len(x), batch_size)]
    ).numpy()


def batches(order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """``order`` cut into batches of ``batch_size``; a last batch of one joins the one before it
    (batch norm in training mode cannot normalise a single example at 1x1 resolution)."""
    chunks = list(order.split(batch_size))
    if len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks[-2:] = [torch.cat(chunks[-2:])]
    return chunks


def train_arm(
    model: nn.Module,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: np.ndarray,
    cfg: EvidenceConfig,
    seed: int,
    n_classes: int,
) -> dict[str, Any]:
    """AdamW on cross-entropy (weighted by inverse class frequency if cfg.class_balance) for
    cfg.max_epochs epochs, then back to the weights of the epoch with the best validation score (the
    task's gate score: AUC for two classes, accuracy otherwise; chosen on val, never on test).
    Returns wall seconds, the epoch and second the target accuracy was first reached, the best epoch
    and every epoch's validation score. Trains where ``x_train`` lies; the batch order is drawn on
    the CPU with ``seed``, the same on every device."""
    device = x_train.device
    y_train = y_train.to(device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed)
    weight = balanced_class_weights(y_train, n_classes) if cfg.class_balance else None
    start, hit_epoch, hit_seconds = time.perf_counter(), math.nan, math.nan
    val_scores, val_accuracy, best_epoch, best_state = [], [], 0, None
    for epoch in range(1, cfg.max_epochs + 1):
        model.train()
        for idx in batches(torch.randperm(len(y_train), generator=generator).to(device), cfg.batch_size):
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx], weight=weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        probabilities = _probabilities(model, x_val)
        val_accuracy.append(float((probabilities.argmax(1) == y_val).mean()))
        val_scores.append(classification_metrics(probabilities, y_val)["score"])
        if best_state is None or val_scores[-1] > val_scores[best_epoch - 1]:
            best_epoch, best_state = epoch, copy.deepcopy(model.state_dict())
        if math.isnan(hit_epoch) and val_accuracy[-1] >= cfg.target_accuracy:
            hit_epoch, hit_seconds = epoch, time.perf_counter() - start
    model.load_state_dict(best_state)
    return {
        "train_seconds": time.perf_counter() - start,
        "epochs_to_target": hit_epoch,
        "seconds_to_target": hit_seconds,
        "best_epoch": best_epoch,
        "val_accuracy": val_accuracy[best_epoch - 1],
        "val_scores": val_scores,
    }


ARMS = ("scratch", "imagenet", "ssl", "imagenet+ssl")
PRETRAINED_ARMS = ARMS[1:]  # fine-tuned on a frozen, cached trunk; what the training stage can start from


@dataclass
class EvidenceData:
    """What every run of the evidence shares: the splits, each pretrained arm's network and its frozen
    trunk's cached activations of every pool, val and test image (``cached[arm][split]``; and the seconds
    that caching took, all arms together), and the device every run trains on (the networks and the cached
    activations live there)."""

    pool: Split
    val: Split
    test: Split
    n_classes: int
    image_size: int
    pretrained: dict[str, EfficientNetLite]
    cached: dict[str, dict[str, torch.Tensor]]
    cache_seconds: float
    device: str = "cpu"

    @property
    def seconds_per_image(self) -> float:
        """One arm's trunk pass, per image."""
        n_images = len(self.pool) + len(self.val) + len(self.test)
        return self.cache_seconds / max(len(self.pretrained), 1) / n_images


def arm_network(arm: str, pretrain_dir: Path | None) -> EfficientNetLite:
    """The starting network of a pretrained arm (``imagenet``, ``ssl``, ``imagenet+ssl``), without classifier."""
    if arm == "imagenet":
        return imagenet_lite0(n_classes=None)
    if arm in ARM_STARTS:
        if pretrain_dir is None:
            raise ValueError(f"the {arm} arm needs the pretrain step's folder (pretrain_dir)")
        return load_pretrained(pretrain_dir, arm)
    raise ValueError(f"unknown pretrained evidence arm {arm!r}: choose one of {PRETRAINED_ARMS}")


def load_evidence_data(
    data_dir: Path,
    cfg: EvidenceConfig,
    image_size: int,
    device: str = "cpu",
    pretrain_dir: Path | None = None,
    arms: list[str] | None = None,
) -> EvidenceData:
    """Read a prepared image task (``triad stage prepare transfer``) and cache each pretrained arm's frozen
    trunk outputs on ``device``. ``arms`` (default ``cfg.arms``) says which; the ``ssl`` arms read their
    networks from ``pretrain_dir`` (``artifacts/transfer/pretrain``), made once by the pretrain step."""
    meta = json.loads((data_dir / "meta.json").read_text())
    pool = load_split(data_dir, "pool")
    if cfg.pool_per_class is not None:
        pool = pool.subset(stratified_subset(pool.y, seed=0, per_class=cfg.pool_per_class))
    val, test = load_split(data_dir, "val"), load_split(data_dir, "test")
    torch.manual_seed(0)
    wanted = [arm for arm in (arms or cfg.arms) if arm != "scratch"]
    networks = {arm: arm_network(arm, pretrain_dir).to(device) for arm in PRETRAINED_ARMS if arm in wanted}
    started = time.perf_counter()
    cached = {
        arm: {
            name: trunk_activations(net, cfg.frozen_groups, split.x, image_size)
            for name, split in (("pool", pool), ("val", val), ("test", test))
        }
        for arm, net in networks.items()
    }
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()  # the caching's wall time, not just its launch
    return EvidenceData(
        pool, val, test, len(meta["class_names"]), image_size, networks, cached, time.perf_counter() - started, device
    )


def run_one(data: EvidenceData, cfg: EvidenceConfig, arm: str, fraction: float, seed: int) -> dict[str, Any]:
    """Train one arm on a stratified ``fraction`` of the pool (drawn with ``seed``); score it on test."""
    idx = stratified_subset(data.pool.y, seed=seed, fraction=fraction)
    y_train = torch.from_numpy(data.pool.y[idx])
    torch.manual_seed(seed)
    if arm in data.pretrained:
        model = UpperLayers(data.pretrained[arm], cfg.frozen_groups, data.n_classes).to(data.device)
        cached = data.cached[arm]
        x_train, x_val, x_test = cached["pool"][idx], cached["val"], cached["test"]
        overhead = data.seconds_per_image * (len(idx) + len(data.val))  # its share of its trunk's pass
    elif arm == "scratch":
        model = ScratchNet(data.n_classes, cfg.scratch_width, data.image_size).to(data.device)
        x_train, x_val, x_test = (
            torch.from_numpy(data.pool.x[idx]).to(data.device),
            torch.from_numpy(data.val.x).to(data.device),
            torch.from_numpy(data.test.x).to(data.device),
        )
        overhead = 0.0
    elif arm in ARMS:
        raise ValueError(f"the {arm} arm was not loaded: pass it in load_evidence_data's arms")
    else:
        raise ValueError(f"unknown evidence arm {arm!r}: choose one of {ARMS}")
    result = train_arm(model, x_train, y_train, x_val, data.val.y, cfg, seed, data.n_classes)
    scores = classification_metrics(_probabilities(model, x_test), data.test.y)
    return {
        "arm": arm,
        "fraction": fraction,
        "seed": seed,
        "n_labels": len(idx),
        "test_score": scores["score"],
        "test_accuracy": scores["accuracy"],
        "test_auc": scores["auc"],
        "wall_seconds": result["train_seconds"] + overhead,
        "epochs_to_target": result["epochs_to_target"],
        "seconds_to_target": result["seconds_to_target"] + overhead,
        "best_epoch": result["best_epoch"],
        "val_accuracy": result["val_accuracy"],
        "val_score": result["val_scores"][result["best_epoch"] - 1],
        "still_improving": result["best_epoch"] == cfg.max_epochs,
    }


def run_evidence(
    data_dir: Path,
    cfg: EvidenceConfig,
    image_size: int,
    out_dir: Path,
    device: str = "cpu",
    pretrain_dir: Path | None = None,
) -> dict[str, Any]:
    """Train every arm of ``cfg.arms`` for every fraction and seed on ``device``; write runs.csv, summary.csv
    and evidence.png. The ``ssl`` arms start from the pretrain step's networks in ``pretrain_dir``."""
    meta = json.loads((data_dir / "meta.json").read_text())
    if meta["modality"] != "image":
        note = f"the evidence compares EfficientNet-lite arms on images; task {meta['task']} is {meta['modality']}"
        (out_dir / "SKIPPED.txt").write_text(note + "\n")
        return {"skipped": note}
    data = load_evidence_data(data_dir, cfg, image_size, device, pretrain_dir)
    runs = [(f, s) for f in cfg.fractions for s in cfg.seeds]
    rows = [
        run_one(data, cfg, arm, fraction, seed)
        for fraction, seed in tqdm(runs, desc="evidence runs", disable=not sys.stderr.isatty())
        for arm in ARMS
        if arm in cfg.arms
    ]
    runs_table = pd.DataFrame(rows)
    summary = summarise(runs_table)
    runs_table.to_csv(out_dir / "runs.csv", index=False)
    summary.to_csv(out_dir / "summary.csv", index=False)
    plot_evidence(runs_table, summary, cfg, out_dir / "evidence.png")
    notes = fraction_caveats(data.pool.y, cfg.fractions) + caveats(summary, cfg)
    for note in notes:
        log.warning("evidence: %s", note)
    return {
        "cache_seconds": data.cache_seconds,
        "runs": len(rows),
        "device": device,
        "scratch_width": cfg.scratch_width,
        "summary": summary.round(4).to_dict(orient="records"),
        "verdicts": verdicts(summary),
        "val_preferred": preferred(summary, ARMS),
        "val_preferred_start": preferred(summary, PRETRAINED_ARMS),
        "labels_per_fraction": {
            f"{row.fraction:g}": float(row.n_labels) for row in summary.drop_duplicates("fraction").itertuples()
        },
        "caveats": notes,
    }


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per arm and fraction: mean labels, test score (mean, std), val score, wall seconds, and
    how many runs reached the target accuracy (epochs_to_target_mean averages only those) and how many
    were still improving at their last epoch (best val epoch == max_epochs)."""
    return (
        runs.groupby(["arm", "fraction"])
        .agg(
            n_labels=("n_labels", "mean"),
            runs=("seed", "count"),
            test_score_mean=("test_score", "mean"),
            test_score_std=("test_score", "std"),
            val_score_mean=("val_score", "mean"),
            wall_seconds_mean=("wall_seconds", "mean"),
            runs_reaching_target=("epochs_to_target", lambda e: int(e.notna().sum())),
            epochs_to_target_mean=("epochs_to_target", "mean"),
            runs_still_improving=("still_improving", "sum"),
        )
        .reset_index()
    )


def caveats(summary: pd.DataFrame, cfg: EvidenceConfig) -> list[str]:
    """What a reader must know before trusting the verdicts: a scratch arm narrower than the
    pretrained network, and cells whose runs were still improving when the epochs ran out (an
    under-trained arm makes the comparison say more about the budget than about transfer)."""
    notes = []
    if cfg.scratch_width < 1.0:
        notes.append(
            f"the scratch arm is {cfg.scratch_width:g}x as wide as the pretrained network, not the same "
            "architecture: set model.transfer.evidence.scratch_width=1.0 for a like-for-like comparison"
        )
    for row in summary.itertuples():
        if row.runs_still_improving > row.runs / 2:
            notes.append(
                f"{row.arm} at {row.fraction:g} of the labels was still improving at its last epoch in "
                f"{int(row.runs_still_improving)} of {int(row.runs)} runs: raise "
                f"model.transfer.evidence.max_epochs (now {cfg.max_epochs}) before trusting a verdict against it"
            )
    return notes


def fraction_caveats(pool_y: np.ndarray, fractions: list[float]) -> list[str]:
    """Label fractions that a small pool cannot honour: one that rounds a class to no example (the sampler
    takes one anyway, so the run uses more labels than the fraction says), and fractions that draw the same
    number of labels as a smaller one (the pool is too small to tell them apart)."""
    notes, seen = [], {}
    counts = np.bincount(pool_y)
    counts = counts[counts > 0]
    for fraction in sorted(fractions):
        rounded = [max(1, round(fraction * n)) for n in counts]
        short = int(sum(round(fraction * n) == 0 for n in counts))
        if short:
            per_class = f"{counts.min()}" if counts.min() == counts.max() else f"{counts.min()} to {counts.max()}"
            notes.append(
                f"fraction {fraction:g} of a pool with {per_class} examples per class leaves "
                f"{short} class(es) with no example; each got one, so the runs at {fraction:g} use "
                f"{sum(rounded)} labels ({sum(rounded) / counts.sum():.2g} of the pool)"
            )
        if sum(rounded) in seen:
            notes.append(
                f"fractions {seen[sum(rounded)]:g} and {fraction:g} both draw {sum(rounded)} labels: the pool is too "
                "small to tell them apart (add data or choose fractions further apart)"
            )
        seen.setdefault(sum(rounded), fraction)
    return notes


def verdicts(summary: pd.DataFrame) -> dict[str, bool]:
    """For each pretrained arm and fraction f below the largest: does the arm at f match or beat the scratch
    arm at the largest fraction (``<arm>_<f>_ge_scratch_full``), and does it come within one standard
    deviation of the scratch arm's runs there (``<arm>_<f>_within_1sd_of_scratch_full``)?"""
    largest = summary.fraction.max()
    scratch_full = summary[(summary.arm == "scratch") & (summary.fraction == largest)]
    if scratch_full.empty:
        return {}
    bar = float(scratch_full.test_score_mean.iloc[0])
    spread = float(np.nan_to_num(scratch_full.test_score_std.iloc[0]))
    out = {}
    for row in summary[(summary.arm != "scratch") & (summary.fraction < largest)].itertuples():
        name = f"{row.arm.replace('+', '_')}_{row.fraction:g}"
        out[f"{name}_ge_scratch_full"] = bool(row.test_score_mean >= bar)
        out[f"{name}_within_1sd_of_scratch_full"] = bool(row.test_score_mean >= bar - spread)
    return out


def preferred(summary: pd.DataFrame, arms: tuple[str, ...]) -> dict[str, str]:
    """Per fraction (as text, e.g. "0.1"), the arm among ``arms`` with the best mean validation score (never test)."""
    rows = summary[summary.arm.isin(arms)]
    best = rows.loc[rows.groupby("fraction").val_score_mean.idxmax()]
    return {f"{row.fraction:g}": str(row.arm) for row in best.itertuples()}


def plot_evidence(runs: pd.DataFrame, summary: pd.DataFrame, cfg: EvidenceConfig, path: Path) -> Path:
    """Three panels: test score vs labels, test score vs wall seconds, epochs to the target vs labels."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    colours = {"scratch": "tab:orange", "imagenet": "tab:blue", "ssl": "tab:green", "imagenet+ssl": "tab:purple"}
    for arm, colour in colours.items():
        if arm not in set(summary.arm):
            continue
        s, r = summary[summary.arm == arm], runs[runs.arm == arm]
        axes[0].errorbar(
            s.n_labels,
            s.test_score_mean,
            yerr=s.test_score_std.fillna(0),
            marker="o",
            capsize=3,
            color=colour,
            label=arm,
        )
        axes[1].scatter(r.wall_seconds, r.test_score, color=colour, label=arm, alpha=0.8)
        axes[2].plot(s.n_labels, s.epochs_to_target_mean, "o-", color=colour, label=arm)
    axes[0].set(xscale="log", xlabel="labelled training examples", ylabel="test score", title="score vs labels")
    axes[1].set(xscale="log", xlabel="training wall seconds (per run)", ylabel="test score", title="score vs compute")
    axes[2].set(
        xscale="log",
        xlabel="labelled training examples",
        ylabel=f"epochs to val acc >= {cfg.target_accuracy}",
        title="epochs to target (missing: not reached)",
    )
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
