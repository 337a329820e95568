"""Self-training on top of the transfer evidence: do pseudo-labels on the unlabelled pool help an arm at few labels?

The evidence's arms use the unlabelled pool only through self-supervised pretraining. The other classic way to
use it is self-training: fine-tune a *teacher* on the labelled fraction (the evidence's own recipe, ``train_arm``
on the arm's cached frozen trunk), label the rest of the pool with it, keep the most confident share of each
predicted class, and fine-tune a *student* (the same network from the same start and seed) on the labels plus
those pseudo-labels. Epochs are chosen on the validation split for both, never on test. Teacher and student
are scored on test in the same run, per seed, so the comparison is paired.

Run (data and pretraining as for ``bench/transfer_evidence_cell.py``):
  python bench/transfer_self_training.py --arm imagenet+ssl --fraction 0.1 --seeds 0,1,2,3,4,5 \\
      --pretrain-dir /tmp/pn/pre100 experiment=pneumonia_cpu paths.mirror_dir=../shared/data \\
      paths.data_dir=/tmp/pn/data trainer.num_threads=1
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from triad.config import compose, project_root
from triad.heads.transfer.data import stratified_subset
from triad.heads.transfer.evaluate import classification_metrics
from triad.heads.transfer.evidence import (
    PRETRAINED_ARMS,
    UpperLayers,
    _probabilities,
    load_evidence_data,
    train_arm,
)


def pseudo_labels(probabilities: np.ndarray, keep: float) -> tuple[np.ndarray, np.ndarray]:
    """(positions, labels): per predicted class, the most confident ``keep`` share of the images predicted so."""
    predicted = probabilities.argmax(1)
    chosen = []
    for label in np.unique(predicted):
        members = np.flatnonzero(predicted == label)
        confidence = probabilities[members, label]
        count = int(round(keep * len(members)))
        chosen.append(members[np.argsort(-confidence, kind="stable")[:count]])
    positions = np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)
    return positions, predicted[positions]


def fit(data, cfg, arm: str, x: torch.Tensor, y: torch.Tensor, seed: int) -> tuple[torch.nn.Module, dict]:
    torch.manual_seed(seed)
    model = UpperLayers(data.pretrained[arm], cfg.frozen_groups, data.n_classes).to(data.device)
    result = train_arm(model, x, y, data.cached[arm]["val"], data.val.y, cfg, seed, data.n_classes)
    return model, result


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], epilog="Other arguments are Hydra overrides, e.g. experiment=pneumonia_cpu."
    )
    parser.add_argument("--arm", choices=PRETRAINED_ARMS, default="imagenet+ssl")
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--keep", type=float, default=0.5, help="share of each predicted class kept (default 0.5)")
    parser.add_argument("--seeds", type=lambda text: [int(s) for s in text.split(",")], default=[0, 1, 2])
    parser.add_argument("--pretrain-dir", type=Path, default=None)
    args, overrides = parser.parse_known_args(argv)
    print("command: python bench/transfer_self_training.py " + shlex.join(argv), flush=True)
    cfg = compose(overrides)
    if cfg.trainer.num_threads:
        torch.set_num_threads(cfg.trainer.num_threads)
    evidence = cfg.model.transfer.evidence
    data_dir = project_root() / cfg.paths.data_dir / "transfer"
    if not (data_dir / "meta.json").is_file():
        sys.exit(f"{data_dir} holds no prepared task: run bench/transfer_evidence_cell.py with the same data_dir first")
    pretrain_dir = args.pretrain_dir or project_root() / cfg.paths.artifacts_dir / "transfer" / "pretrain"
    data = load_evidence_data(data_dir, evidence, cfg.model.transfer.image_size, "cpu", pretrain_dir, [args.arm])
    cached = data.cached[args.arm]
    print(f"task {json.loads((data_dir / 'meta.json').read_text())['task']}, arm {args.arm}, pool {len(data.pool)}")
    teacher_scores, student_scores = [], []
    for seed in args.seeds:
        started = time.perf_counter()
        labelled = stratified_subset(data.pool.y, seed=seed, fraction=args.fraction)
        rest = np.setdiff1d(np.arange(len(data.pool)), labelled)
        y_labelled = torch.from_numpy(data.pool.y[labelled])
        teacher, taught = fit(data, evidence, args.arm, cached["pool"][labelled], y_labelled, seed)
        teacher_test = classification_metrics(_probabilities(teacher, cached["test"]), data.test.y)["score"]
        positions, labels = pseudo_labels(_probabilities(teacher, cached["pool"][rest]), args.keep)
        chosen = rest[positions]
        correct = float((labels == data.pool.y[chosen]).mean()) if len(chosen) else float("nan")
        x = torch.cat([cached["pool"][labelled], cached["pool"][chosen]])
        y = torch.cat([y_labelled, torch.from_numpy(labels.astype(y_labelled.numpy().dtype))])
        student, learned = fit(data, evidence, args.arm, x, y, seed)
        student_test = classification_metrics(_probabilities(student, cached["test"]), data.test.y)["score"]
        teacher_scores.append(teacher_test)
        student_scores.append(student_test)
        print(
            f"seed {seed}: {len(labelled)} labels + {len(chosen)} pseudo-labels ({correct:.3f} of them right); "
            f"test score teacher {teacher_test:.4f} (val {taught['val_scores'][taught['best_epoch'] - 1]:.4f}, "
            f"epoch {taught['best_epoch']}), student {student_test:.4f} "
            f"(val {learned['val_scores'][learned['best_epoch'] - 1]:.4f}, epoch {learned['best_epoch']}), "
            f"{time.perf_counter() - started:.0f} s",
            flush=True,
        )
    difference = np.subtract(student_scores, teacher_scores)
    spread = (lambda v: f" ± {np.std(v, ddof=1):.4f}") if len(args.seeds) > 1 else (lambda v: "")
    print(
        f"SELF-TRAINING {args.arm} {args.fraction:g}: teacher {np.mean(teacher_scores):.4f}{spread(teacher_scores)}, "
        f"student {np.mean(student_scores):.4f}{spread(student_scores)}, paired difference "
        f"{difference.mean():+.4f}{spread(difference)} over {len(args.seeds)} seeds",
        flush=True,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
