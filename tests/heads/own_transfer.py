"""The transfer head on a user's own image folder, for the end-to-end own-data flow test.

``make`` writes what a user would have: ``images/<class>/*.png``, three classes of simple grey patterns
(horizontal stripes, vertical stripes, a disc) at mixed sizes, plus one truncated PNG, and returns the
overrides that train on it (``on_bad=skip``, so the flow shows the skip path) in seconds under the name
``own-transfer``. ``check`` classifies the whole folder through ``triad predict ... --out`` and checks
that every file is a row, the truncated one with its error.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from tests.tiny import TINY

CLASSES = ("disc", "stripes_h", "stripes_v")
PER_CLASS = 20
BROKEN = "stripes_h/broken.png"


def pattern(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A (size, size) uint8 grey image of ``kind`` with a random phase and a little noise."""
    yy, xx = np.mgrid[:size, :size] / size
    phase = rng.uniform(0, 2 * np.pi)
    if kind == "stripes_h":
        base = np.sin(yy * 6 * np.pi + phase) > 0
    elif kind == "stripes_v":
        base = np.sin(xx * 6 * np.pi + phase) > 0
    else:
        cy, cx = rng.uniform(0.35, 0.65, 2)
        base = (yy - cy) ** 2 + (xx - cx) ** 2 < rng.uniform(0.04, 0.08)
    pixels = 40 + 170 * base + rng.normal(0, 12, base.shape)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def make(folder: Path) -> list[str]:
    """Write ``folder/images/<class>/*.png`` (60 images and one truncated file); -> the Hydra overrides."""
    rng = np.random.default_rng(0)
    root = folder / "images"
    for kind in CLASSES:
        (root / kind).mkdir(parents=True, exist_ok=True)
        for i in range(PER_CLASS):
            Image.fromarray(pattern(kind, int(rng.integers(32, 64)), rng)).save(root / kind / f"{kind}_{i:02d}.png")
    whole = (root / "stripes_h" / "stripes_h_00.png").read_bytes()
    (root / BROKEN).write_bytes(whole[: len(whole) // 2])  # a truncated PNG: skipped by prepare, an error row later
    model_keys = [o for o in TINY["transfer"] if o.startswith("model.")]
    return [
        "data/transfer=image_folder",
        f"data.transfer.path={root}",
        "data.transfer.name=own-transfer",
        "data.transfer.on_bad=skip",
        "data.transfer.image_size=32",
        "data.transfer.val_fraction=0.2",
        "data.transfer.test_fraction=0.2",
        *model_keys,
        "model.transfer.strategy=linear_probe",
        "model.transfer.max_epochs=3",
    ]


def check(project: Path, folder: Path, out_dir: Path) -> None:
    """Batch prediction on the whole folder through the CLI: one row per file, the broken one with its error."""
    from triad.cli import main

    root = folder / "images"
    out = out_dir / "predictions.csv"
    assert main(["predict", "--model", "own-transfer/1", "transfer", str(root), "--out", str(out)]) == 0
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    files = sorted(str(p) for p in root.rglob("*.png"))
    assert sorted(row["path"] for row in rows) == files  # one row per file, the broken one too
    assert list(rows[0]) == ["path", "class", *(f"p_{name}" for name in CLASSES), "error"]
    by_path = {row["path"]: row for row in rows}
    broken = by_path.pop(str(root / BROKEN))
    assert "corrupt" in broken["error"] or "truncated" in broken["error"], broken
    assert broken["class"] == ""
    for row in by_path.values():
        assert row["error"] == "" and row["class"] in CLASSES, row
        assert abs(sum(float(row[f"p_{name}"]) for name in CLASSES) - 1) < 1e-4
