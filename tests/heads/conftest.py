"""Helpers shared by the head tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def write_tiny_image_task(folder: Path, sizes: dict[str, int], class_names: list[str], seed: int) -> Path:
    """A prepared transfer-head data folder of random 28x28 'images' with alternating labels.

    ``sizes`` maps split (pool, val, test) -> count; the whole pool is the training set.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name, n in sizes.items():
        np.save(folder / f"{name}_x.npy", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        np.save(folder / f"{name}_y.npy", np.arange(n) % len(class_names))
    np.save(folder / "train_idx.npy", np.arange(sizes["pool"]))
    (folder / "meta.json").write_text(json.dumps({"task": "tiny", "modality": "image", "class_names": class_names}))
    return folder
