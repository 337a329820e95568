"""One or two cells of the transfer evidence: an arm at a label fraction, over seeds, scored on test.

The evidence stage (``dvc repro evidence_transfer``) trains both arms at every fraction and seed;
on PneumoniaMNIST at full scale that is about 40 minutes on 2 CPU cores. The question it answers
is often narrower: does the fine-tuned arm at 10% of the labels reach the scratch arm at 100%?
This trains just the cells asked for, with the evidence's own code (``run_one``) and the composed
config (Hydra overrides, as for ``triad``), and prints each run and the mean and spread per cell.

Run:
  python bench/transfer_evidence_cell.py --cell fine-tuned:0.1 --cell scratch:1.0 \\
      experiment=pneumonia_cpu paths.mirror_dir=../shared/data paths.data_dir=/tmp/pneumonia-data
The data are prepared into ``<paths.data_dir>/transfer`` first when that folder holds none.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time

import numpy as np

from triad.config import compose, project_root
from triad.heads.transfer.data import prepare
from triad.heads.transfer.evidence import ARMS, load_evidence_data, run_one


def cell(text: str) -> tuple[str, float]:
    arm, _, fraction = text.rpartition(":")
    if arm not in ARMS:
        raise argparse.ArgumentTypeError(f"{text!r}: the arm must be one of {ARMS}, as in fine-tuned:0.1")
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
        "--cell", type=cell, action="append", required=True, help="ARM:FRACTION, e.g. fine-tuned:0.1 (repeatable)"
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
    data = load_evidence_data(data_dir, evidence, image_size, cfg.trainer.torch_device())
    print(
        f"frozen trunk cached for {len(data.pool) + len(data.val) + len(data.test)} images "
        f"in {data.cache_seconds:.1f} s"
    )
    for arm, fraction in args.cell:
        scores = []
        for seed in args.seeds or evidence.seeds:
            started = time.perf_counter()
            row = run_one(data, evidence, arm, fraction, seed)
            scores.append(row["test_score"])
            print(
                f"{arm} {fraction:g} seed {seed}: {row['n_labels']} labels, test score {row['test_score']:.4f} "
                f"(accuracy {row['test_accuracy']:.3f}), val score {row['val_score']:.4f} "
                f"at its best epoch {row['best_epoch']}, "
                f"{time.perf_counter() - started:.0f} s",
                flush=True,
            )
        spread = f" ± {np.std(scores, ddof=1):.4f}" if len(scores) > 1 else ""
        print(f"CELL {arm} {fraction:g}: test score {np.mean(scores):.4f}{spread} over {len(scores)} seeds")


if __name__ == "__main__":
    main(sys.argv[1:])
