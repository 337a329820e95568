"""Classification metrics and pictures for the transfer head.

``test_score`` is the gate metric: ROC AUC for a binary task (threshold-free, and what the
PneumoniaMNIST literature reports), accuracy otherwise. A binary task's decision threshold is
chosen on the validation split (Youden's J, the point of the ROC curve farthest above chance) and
only then applied to the test split, so the test labels never tune anything.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, roc_auc_score, roc_curve
from tqdm.auto import tqdm

from triad.heads.base import Evaluation
from triad.heads.transfer.data import Split, TransferDataModule


@torch.no_grad()
def predict_proba(model: torch.nn.Module, split: Split, batch_size: int = 256, desc: str = "predict") -> np.ndarray:
    """Class probabilities (N, n_classes) of ``model`` (a module mapping raw inputs to logits)."""
    model.eval()
    probs = []
    for start in tqdm(range(0, len(split), batch_size), desc=desc, leave=False, disable=not sys.stderr.isatty()):
        chunk = split.x[start : start + batch_size]
        raw = torch.from_numpy(chunk) if isinstance(chunk, np.ndarray) else chunk
        probs.append(torch.softmax(model(raw).float(), dim=-1).cpu())
    return torch.cat(probs).numpy()


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """ECE (Guo et al., 2017): |accuracy - confidence| of the top class, averaged over equal-width
    confidence bins, weighted by how many predictions fall in each bin."""
    confidence = probs.max(1)
    correct = probs.argmax(1) == labels
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        in_bin = bins == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def youden_threshold(p_positive: np.ndarray, labels: np.ndarray) -> float:
    """The threshold on P(class 1) that maximises sensitivity + specificity - 1 (Youden's J)."""
    fpr, tpr, thresholds = roc_curve(labels, p_positive)
    best = int(np.argmax(tpr - fpr))
    return float(min(thresholds[best], 1.0))


def roc_auc(probs: np.ndarray, labels: np.ndarray) -> float:
    """Binary ROC AUC on P(class 1), or the macro one-vs-rest AUC when there are more classes."""
    if probs.shape[1] == 2:
        return float(roc_auc_score(labels, probs[:, 1]))
    return float(roc_auc_score(labels, probs, multi_class="ovr", average="macro", labels=np.arange(probs.shape[1])))


def decide(probs: np.ndarray, threshold: float | None) -> np.ndarray:
    """Predicted labels: argmax, or P(class 1) >= threshold for a binary task with a threshold."""
    if threshold is None:
        return probs.argmax(1)
    return (probs[:, 1] >= threshold).astype(np.int64)


def classification_metrics(probs: np.ndarray, labels: np.ndarray, threshold: float | None = None) -> dict[str, float]:
    predicted = decide(probs, threshold)
    auc = roc_auc(probs, labels)
    accuracy = float((predicted == labels).mean())
    return {
        "accuracy": accuracy,
        "auc": auc,
        "ece": expected_calibration_error(probs, labels),
        "score": auc if probs.shape[1] == 2 else accuracy,
    }


def per_class_table(
    probs: np.ndarray, labels: np.ndarray, class_names: list[str], threshold: float | None
) -> pd.DataFrame:
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, decide(probs, threshold), labels=np.arange(len(class_names)), zero_division=0
    )
    return pd.DataFrame({"class": class_names, "precision": precision, "recall": recall, "f1": f1, "support": support})


def plot_confusion(
    probs: np.ndarray, labels: np.ndarray, class_names: list[str], threshold: float | None, path: Path, title: str
) -> Path:
    """A row-normalised confusion matrix (rows: true class), with the counts written in."""
    counts = confusion_matrix(labels, decide(probs, threshold), labels=np.arange(len(class_names)))
    rates = counts / counts.sum(1, keepdims=True).clip(min=1)
    size = 2.5 + 0.5 * len(class_names)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            ax.text(
                j,
                i,
                str(counts[i, j]),
                ha="center",
                va="center",
                color="white" if rates[i, j] > 0.5 else "black",
                fontsize=8,
            )
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_reliability(probs: np.ndarray, labels: np.ndarray, path: Path, n_bins: int = 15) -> Path:
    """Reliability diagram: accuracy against confidence of the top class, per confidence bin."""
    confidence, correct = probs.max(1), probs.argmax(1) == labels
    edges = np.linspace(0, 1, n_bins + 1)
    centres, accuracy = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > lo) & (confidence <= hi)
        if in_bin.any():
            centres.append(confidence[in_bin].mean())
            accuracy.append(correct[in_bin].mean())
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.plot(centres, accuracy, "o-", label="model")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability (ECE {expected_calibration_error(probs, labels):.3f})")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def decision_threshold(val_probs: np.ndarray, datamodule: TransferDataModule) -> float | None:
    """Binary tasks: the decision threshold chosen on validation (never on test); None otherwise."""
    return youden_threshold(val_probs[:, 1], datamodule.val.y) if datamodule.n_classes == 2 else None


def evaluate(classifier: torch.nn.Module, datamodule: TransferDataModule, report_dir: Path) -> Evaluation:
    """Validation and test metrics (the threshold chosen on validation), a confusion matrix and a
    reliability diagram in ``report_dir``, and the per-class table."""
    names = datamodule.class_names
    val_probs = predict_proba(classifier, datamodule.val, desc="evaluate val")
    test_probs = predict_proba(classifier, datamodule.test, desc="evaluate test")
    threshold = decision_threshold(val_probs, datamodule)
    metrics = {f"val_{k}": v for k, v in classification_metrics(val_probs, datamodule.val.y, threshold).items()}
    metrics |= {f"test_{k}": v for k, v in classification_metrics(test_probs, datamodule.test.y, threshold).items()}
    if threshold is not None:
        metrics["threshold"] = threshold
        metrics["chance_score"] = 0.5
    else:
        metrics["chance_score"] = float(np.bincount(datamodule.test.y).max() / len(datamodule.test))
    images = [
        plot_confusion(
            test_probs,
            datamodule.test.y,
            names,
            threshold,
            report_dir / "confusion_matrix.png",
            f"{datamodule.task} test, accuracy {metrics['test_accuracy']:.3f}",
        ),
        plot_reliability(test_probs, datamodule.test.y, report_dir / "reliability.png"),
    ]
    tables = {"per_class": per_class_table(test_probs, datamodule.test.y, names, threshold)}
    return Evaluation(metrics=metrics, images=images, tables=tables)
