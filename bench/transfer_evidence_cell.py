"""Cells of the transfer evidence: an arm at a label fraction, over seeds, scored on test.

The evidence stage (``dvc repro evidence_transfer``) trains every arm at every fraction and seed;
on PneumoniaMNIST at full scale that is about 40 minutes on 2 CPU cores for two arms. The question it
answers is often narrower: does an arm at 10% of the labels reach the scratch arm at 100%? This trains
just the cells asked for, with the evidence's own code (``run_one``) and the composed config (Hydra
overrides, as for ``triad``), and prints each run and the mean and spread per cell.

Arms: scratch, imagenet, ssl, imagenet+ssl. The ssl arms start from the pretrain step's networks in
``--pretrain-dir`` (default ``<paths.artifacts_dir>/transfer/pretrain``); when that folder holds none, the
pretraining runs first, once, with ``model.transfer.pretrain`` (its time and loss are printed).

Run:
  python bench/transfer_evidence_cell.py --cell imagenet+ssl:0.1 --cell scratch:1.0 \\
      experiment=pneumonia_cpu paths.mirror_dir=../shared/data paths.data_dir=/tmp/pneumonia-data \\
      paths.artifacts_dir=/tmp/pneumonia-artifacts
The data are prepared into ``<paths.data_dir>/transfer`` first when that folder holds none.
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
from triad.heads.transfer.data import prepare
from triad.heads.transfer.evidence import ARMS, load_evidence_data, run_one
from triad.heads.transfer.pretrain import ARM_STARTS, run_pretrain, weights_path


def cell(text: str) -> tuple[str, float]:
    arm, _, fraction = text.rpartition(":")
    if arm not in ARMS:
        raise argparse.ArgumentTypeError(f"{text!r}: the arm must be one of {ARMS}, as in imagenet+ssl:0.1")
    try:
        value = float(fraction)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: the fraction must be a number, as in scratch:1.0") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: the fraction must lie in (0, 1]")
    return arm, value


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], epilog="Other arguments are Hydra overrides, e.g. experiment=pneumonia_cpu."
    )
    parser.add_argument(
        "--cell", type=cell, action="append", required=True, help="ARM:FRACTION, e.g. imagenet+ssl:0.1 (repeatable)"
    )
    parser.add_argument(
        "--pretrain-dir",
        type=Path,
        default=None,
        help="the pretrain step's folder (default <paths.artifacts_dir>/transfer/pretrain); made when empty",
    )
    parser.add_argument(
        "--seeds",
        type=lambda text: [int(s) for s in text.split(",")],
        default=None,
        help="comma-separated, e.g. 0,1,2 (default: model.transfer.evidence.seeds)",
    )
    args, overrides = parser.parse_known_args(argv)
    print("command: python bench/transfer_evidence_cell.py " + shlex.join(argv))
    cfg = compose(overrides)
    if cfg.trainer.num_threads:  # as the stages do (1 is much faster than 2 on two cores others are using)
        torch.set_num_threads(cfg.trainer.num_threads)
    evidence, image_size = cfg.model.transfer.evidence, cfg.model.transfer.image_size
    data_dir = project_root() / cfg.paths.data_dir / "transfer"
    if not (data_dir / "meta.json").is_file():
        data_dir.mkdir(parents=True, exist_ok=True)
        print(f"preparing {cfg.data.transfer.task} into {data_dir}")
        prepare(cfg.data.transfer, data_dir, cfg.paths.mirror_dir)
    meta = json.loads((data_dir / "meta.json").read_text())
    task = meta["task"]
    if task != cfg.data.transfer.task:
        sys.exit(
            f"{data_dir} holds task {task}, not {cfg.data.transfer.task}: "
            f"pass another paths.data_dir, or delete that folder to prepare it again"
        )
    if meta["modality"] != "image":
        sys.exit(f"task {task} is {meta['modality']}; the evidence compares EfficientNet-lite arms on images")
    print(f"task {task}, image size {image_size}, evidence config {evidence.model_dump()}")
    arms = sorted({arm for arm, _ in args.cell})
    pretrain_dir = args.pretrain_dir or project_root() / cfg.paths.artifacts_dir / "transfer" / "pretrain"
    starts = sorted({ARM_STARTS[arm] for arm in arms if arm in ARM_STARTS})
    missing = [start for start in starts if not weights_path(pretrain_dir, start).is_file()]
    if missing:
        pretrain = cfg.model.transfer.pretrain.model_copy(update={"starts": missing})
        print(f"pretraining {missing} into {pretrain_dir}: {pretrain.model_dump()}")
        pretrain_dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        done = run_pretrain(data_dir, pretrain, image_size, pretrain_dir, cfg.seed, cfg.trainer.torch_device())
        print(f"PRETRAIN {time.perf_counter() - started:.0f} s: " + json.dumps(done), flush=True)
    data = load_evidence_data(data_dir, evidence, image_size, cfg.trainer.torch_device(), pretrain_dir, arms)
    print(
        f"frozen trunk cached for {len(data.pool) + len(data.val) + len(data.test)} images "
        f"in {data.cache_seconds:.1f} s"
    )
    for arm, fraction in args.cell:
        scores = []
        val_scores = []
        for seed in args.seeds or evidence.seeds:
            started = time.perf_counter()
            row = run_one(data, evidence, arm, fraction, seed)
            scores.append(row["test_score"])
            val_scores.append(row["val_score"])
            print(
                f"{arm} {fraction:g} seed {seed}: {row['n_labels']} labels, test score {row['test_score']:.4f} "
                f"(accuracy {row['test_accuracy']:.3f}), val score {row['val_score']:.4f} "
                f"at its best epoch {row['best_epoch']}, "
                f"{time.perf_counter() - started:.0f} s",
                flush=True,
            )
        spread = f" ± {np.std(scores, ddof=1):.4f}" if len(scores) > 1 else ""
        print(
            f"CELL {arm} {fraction:g}: test score {np.mean(scores):.4f}{spread} over {len(scores)} seeds "
            f"(val score {np.mean(val_scores):.4f})",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
