"""Evaluation of the diffusion head in the judge's feature space.

- FID (Heusel et al., 2017): Frechet distance between Gaussians fitted to the judge features of
  generated and of held-out real (test) images.
- Precision / recall (Kynkaanniemi et al., 2019): the share of generated images inside the real
  images' k-NN manifold, and of real images inside the generated images' manifold.
- Conditional accuracy: the share of samples the judge assigns to the class they were asked for.

Every figure is measured for each DDIM step count in ``eval_steps`` (a table and a plot); the
headline metrics are those at ``sample_steps``. ``fid_real`` (val vs test images) is the floor an
ideal generator would reach with this many images.

An unconditional model (a flat folder of the user's images, ``n_classes = 0``) has no class to ask for,
so there is no conditional accuracy. Its judge learned to tell the rotation of these images instead
(``judge.py``): FID, precision and recall are measured in that judge's features, and ``upright_rate``
(the share of samples the judge sees as not turned) stands where conditional accuracy stands, next to
``real_upright_rate``, the same share of the real test images. The gate uses FID alone for such a model
(``DiffusionHead.gate_passes``); ``upright_rate`` is reported, not barred.
"""

from __future__ import annotations

import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from triad.errors import DataError  # noqa: E402
from triad.heads.base import Evaluation  # noqa: E402
from triad.heads.diffusion.data import DiffusionDataModule, load_split, to_model_space  # noqa: E402
from triad.heads.diffusion.judge import ROTATIONS, load_judge, predict  # noqa: E402
from triad.heads.diffusion.module import DiffusionModule, image_grid  # noqa: E402
from triad.heads.diffusion.process import GaussianDiffusion  # noqa: E402


def psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """The symmetric square root of a covariance matrix (F, F), by eigendecomposition; eigenvalues that
    round-off leaves a hair below zero count as zero."""
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(values.clip(min=0))) @ vectors.T


def trace_sqrt_product(cov_a: np.ndarray, cov_b: np.ndarray) -> float:
    """Tr((A B)^1/2) for covariances A and B (F, F).

    A B is not symmetric, but it is similar to the symmetric PSD matrix A^1/2 B A^1/2, which has the
    same eigenvalues, so the trace is the sum of the square roots of that matrix's eigenvalues: real,
    with no imaginary part to discard (``scipy.linalg.sqrtm`` of A B can leave one).
    """
    root_a = psd_sqrt(cov_a)
    middle = root_a @ cov_b @ root_a
    return float(np.sqrt(np.linalg.eigvalsh((middle + middle.T) / 2).clip(min=0)).sum())


def frechet_distance(real: np.ndarray, fake: np.ndarray) -> float:
    """FID between two feature sets (N, F) and (M, F): |mu_r - mu_f|^2 + Tr(S_r + S_f - 2 (S_r S_f)^1/2).

    Non-finite features (a diverged generator) give NaN, which fails any gate.
    """
    real, fake = np.asarray(real, dtype=np.float64), np.asarray(fake, dtype=np.float64)
    if not (np.isfinite(real).all() and np.isfinite(fake).all()):
        return float("nan")
    mu_r, mu_f = real.mean(0), fake.mean(0)
    cov_r, cov_f = np.atleast_2d(np.cov(real, rowvar=False)), np.atleast_2d(np.cov(fake, rowvar=False))
    spread = np.trace(cov_r) + np.trace(cov_f) - 2 * trace_sqrt_product(cov_r, cov_f)
    distance = ((mu_r - mu_f) ** 2).sum() + spread
    return float(max(distance, 0.0))  # a distance; round-off can leave -1e-12 for identical sets


def knn_radii(features: torch.Tensor, k: int) -> torch.Tensor:
    """Distance of each point (N, F) to its k-th nearest other point: the radius of its manifold ball."""
    distances = torch.cdist(features, features)
    return distances.kthvalue(k + 1, dim=1).values  # +1 skips the point itself (distance 0)


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Kynkaanniemi et al.'s improved precision and recall of ``fake`` (M, F) against ``real`` (N, F)."""
    real_t, fake_t = torch.from_numpy(real), torch.from_numpy(fake)
    real_radii, fake_radii = knn_radii(real_t, k), knn_radii(fake_t, k)
    distances = torch.cdist(fake_t, real_t)  # (M, N)
    precision = (distances <= real_radii[None, :]).any(dim=1).float().mean()
    recall = (distances <= fake_radii[:, None]).any(dim=0).float().mean()
    return float(precision), float(recall)


def balanced_labels(n: int, n_classes: int) -> torch.Tensor:
    """n labels cycling through the classes: 0, 1, ..., n_classes - 1, 0, 1, ...; all 0 (the null label)
    for an unconditional model (n_classes 0)."""
    return torch.arange(n) % n_classes if n_classes else torch.zeros(n, dtype=torch.long)


def agreement_name(n_classes: int) -> str:
    """The judge-agreement metric: conditional accuracy, or for an unconditional model the upright rate."""
    return "conditional_accuracy" if n_classes else "upright_rate"


def check_judge_fits(judge_config: dict, n_classes: int, judge_dir: Path) -> None:
    """The judge must have learned this data's task: its classes, or rotations for an unconditional model."""
    task = "classes" if n_classes else "rotation"
    if judge_config["task"] != task or (n_classes and judge_config["n_classes"] != n_classes):
        raise DataError(
            f"the judge in {judge_dir} learned {judge_config['task']} ({judge_config['n_classes']} outputs), but this "
            f"data needs a {task} judge{f' of {n_classes} classes' if n_classes else ''}: it was trained on other "
            f"data. Rerun the judge step (stage judge_diffusion) after prepare."
        )


def check_enough_test_images(count: int, neighbours: int) -> None:
    if count <= neighbours:
        raise DataError(
            f"the test split has {count} image(s); FID and precision/recall (pr_neighbours={neighbours}) need more "
            f"than {neighbours}. Add images, or raise data.diffusion.test_fraction."
        )


@torch.no_grad()
def generate_many(
    module: DiffusionModule, labels: torch.Tensor, steps: int, batch_size: int, seed: int
) -> torch.Tensor:
    """EMA samples for ``labels`` (N,) in batches; batch i is seeded ``seed + i``. -> (N, C, H, W) on CPU."""
    out = []
    for i, start in enumerate(range(0, len(labels), batch_size)):
        batch = labels[start : start + batch_size].to(module.device)
        out.append(module.generate(batch, steps=steps, seed=seed + i, progress=True).cpu())
    return torch.cat(out)


def forward_process_strip(images: torch.Tensor, timesteps: int, path: Path, seed: int = 0, columns: int = 10) -> Path:
    """One image (C, H, W) in [-1, 1] noised by q(x_t | x_0) at evenly spaced t, one row per schedule."""
    ts = torch.linspace(0, timesteps - 1, columns).round().long()
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn((columns, *images.shape), generator=generator)
    rows = []
    for schedule in ("linear", "cosine"):
        process = GaussianDiffusion(timesteps, schedule)
        rows.append(process.q_sample(images.expand(columns, *images.shape), ts, noise))
    strip = image_grid(torch.cat(rows), rows=2)
    fig, ax = plt.subplots(figsize=(columns * 1.1, 2.8))
    ax.imshow(strip, cmap="gray" if strip.ndim == 2 else None)
    size = images.shape[-1]
    ax.set_xticks([(i + 0.5) * size for i in range(columns)], [f"t={int(t)}" for t in ts], fontsize=8)
    ax.set_yticks([size / 2, 1.5 * size], ["linear", "cosine"])
    ax.set_title("forward process q(x_t | x_0): an image dissolving into noise")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def save_grid(images: torch.Tensor, rows: int, class_names: list[str], path: Path, title: str) -> Path:
    grid = image_grid(images, rows=rows)
    size = images.shape[-1]
    fig, ax = plt.subplots(figsize=(grid.shape[1] / size * 0.8 + 1.5, grid.shape[0] / size * 0.8 + 0.6))
    ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None)
    ax.set_xticks([])
    ax.set_yticks([(i + 0.5) * size for i in range(rows)], class_names, fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_steps(table: pd.DataFrame, path: Path, agreement: str = "conditional_accuracy") -> Path:
    fig, (ax_fid, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax_fid.plot(table["steps"], table["fid"], "o-")
    ax_fid.set(xscale="log", xlabel="DDIM steps", ylabel="FID (judge features)", title="quality against steps")
    ax_acc.plot(table["steps"], table[agreement], "o-", label=agreement.replace("_", " "))
    ax_acc.plot(table["steps"], table["precision"], "s--", label="precision")
    ax_acc.plot(table["steps"], table["recall"], "^--", label="recall")
    ax_acc.set(xscale="log", xlabel="DDIM steps", ylim=(0, 1.02), title="judge agreement")
    ax_acc.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def evaluate(
    module: DiffusionModule, datamodule: DiffusionDataModule, judge_dir: Path, report_dir: Path, seed: int = 0
) -> Evaluation:
    cfg = module.cfg
    n_classes = datamodule.n_classes
    judge, judge_config = load_judge(judge_dir)
    check_judge_fits(judge_config, n_classes, judge_dir)
    judge.to(module.device)
    test_images, test_labels = load_split(datamodule.data_dir, "test")
    check_enough_test_images(len(test_images), cfg.pr_neighbours)
    agreement = agreement_name(n_classes)  # the judge's labels: classes, or for no classes rotations (0: upright)
    val_images, _ = load_split(datamodule.data_dir, "val")
    real_features, real_predicted = predict(judge, to_model_space(torch.from_numpy(test_images)))
    val_features, _ = predict(judge, to_model_space(torch.from_numpy(val_images)))

    labels = balanced_labels(cfg.eval_samples, n_classes)
    rows, headline_samples = [], None
    for steps in sorted(cfg.eval_steps):
        started = time.perf_counter()
        samples = generate_many(module, labels, steps, cfg.eval_batch_size, seed)
        seconds = time.perf_counter() - started
        features, predicted = predict(judge, samples)
        precision, recall = precision_recall(real_features, features, cfg.pr_neighbours)
        rows.append(
            {
                "steps": steps,
                "fid": frechet_distance(real_features, features),
                "precision": precision,
                "recall": recall,
                agreement: float((predicted == labels.numpy()).mean()),
                "images_per_second": len(labels) / seconds,
            }
        )
        if steps == cfg.sample_steps:
            headline_samples = samples
    table = pd.DataFrame(rows)
    headline = table.set_index("steps").loc[cfg.sample_steps]

    report_dir.mkdir(parents=True, exist_ok=True)
    if n_classes:
        per_class = min(10, cfg.eval_samples // n_classes)
        # labels cycle through the classes, so sample i * n_classes + c is the i-th sample of class c
        order = torch.arange(per_class * n_classes).reshape(per_class, n_classes).T.reshape(-1)
        grid_rows, row_names = n_classes, datamodule.class_names
    else:  # unconditional: up to 4 rows of 10 samples
        grid_rows = min(4, cfg.eval_samples // 10)
        order, row_names = torch.arange(grid_rows * 10), [""] * grid_rows
    images = [
        save_grid(
            headline_samples[order],
            grid_rows,
            row_names,
            report_dir / "samples.png",
            f"EMA samples: DDIM {cfg.sample_steps} steps, guidance {cfg.guidance}",
        ),
        forward_process_strip(
            to_model_space(torch.from_numpy(test_images[0])), cfg.timesteps, report_dir / "forward_process.png"
        ),
        plot_steps(table, report_dir / "quality_vs_steps.png", agreement),
    ]
    metrics = {
        "fid": float(headline["fid"]),
        "precision": float(headline["precision"]),
        "recall": float(headline["recall"]),
        agreement: float(headline[agreement]),
        "sample_images_per_second": float(headline["images_per_second"]),
        "fid_real": frechet_distance(real_features, val_features),
        # the real test images' judge agreement: class accuracy, or their upright rate (their labels are 0)
        "judge_test_accuracy" if n_classes else "real_upright_rate": float((real_predicted == test_labels).mean()),
        # the judge's own test accuracy (classes, or all four rotations) and what guessing would score
        "judge_accuracy": float(judge_config["test_accuracy"]),
        "judge_chance": 1.0 / (n_classes or ROTATIONS),
    }
    return Evaluation(metrics=metrics, images=images, tables={"quality_vs_steps": table})


def rescore_fid(
    champion: DiffusionModule,
    datamodule: DiffusionDataModule,
    judge_dir: Path,
    eval_samples: int,
    batch_size: int,
    seed: int,
) -> float:
    """FID of ``champion``'s EMA samples (balanced labels, its own DDIM steps) against ``datamodule``'s
    test images, in the feature space of the judge in ``judge_dir``."""
    judge, judge_config = load_judge(judge_dir)
    check_judge_fits(judge_config, datamodule.n_classes, judge_dir)
    test_images, _ = load_split(datamodule.data_dir, "test")
    real, _ = predict(judge, to_model_space(torch.from_numpy(test_images)))
    labels = balanced_labels(eval_samples, datamodule.n_classes)
    samples = generate_many(champion.eval(), labels, champion.cfg.sample_steps, batch_size, seed)
    fake, _ = predict(judge, samples)
    return frechet_distance(real, fake)
