"""The diffusion head's own-data fixture for the end-to-end flow test: a FLAT folder of a user's images.

A flat folder (no class sub-folders) trains an unconditional model. That is the path the unit tests
(``test_diffusion_own_data.py``) cover least: they prepare both layouts, but only the flat one changes
what happens after prepare (the judge learns rotations instead of classes, the evaluation reports
``upright_rate`` instead of conditional accuracy, the gate uses FID alone, the served model samples
without a class), and none of that runs through the real judge, evaluate, register and serve steps
except here. The class-folder path trains, evaluates and gates as the built-in datasets do.

``make`` writes 90 pictures of a bright disk on a dark background (place and size vary) in mixed
formats (grey PNG, RGB JPEG, RGBA PNG, 16-bit PNG; 28x28 to 64x48), plus one empty file, which
``on_bad: skip`` leaves out and counts in the data report. ``check`` draws 4 images through
``triad predict`` and checks the PNG grid.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from tests.tiny import TINY

N_IMAGES = 90


def disk(seed: int, size: tuple[int, int]) -> np.ndarray:
    """A grey picture (H, W) of a bright disk on a dark, slightly noisy background."""
    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    cy, cx = rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width
    radius = rng.uniform(0.15, 0.3) * min(size)
    image = rng.integers(0, 30, (height, width)).astype(np.float64)
    image[(y - cy) ** 2 + (x - cx) ** 2 <= radius**2] = rng.uniform(180, 255)
    return image.astype(np.uint8)


def write_picture(folder: Path, i: int) -> None:
    kind = i % 4
    size = [(28, 28), (64, 48), (40, 40), (32, 30)][i // 4 % 4]
    grey = disk(1000 + i, size)
    if kind == 0:
        Image.fromarray(grey).save(folder / f"disk_{i:03d}.png")
    elif kind == 1:
        rgb = np.dstack([grey, grey, (grey * 0.8).astype(np.uint8)])
        Image.fromarray(rgb).save(folder / f"disk_{i:03d}.jpg", quality=92)
    elif kind == 2:
        rgba = np.dstack([grey, grey, grey, np.full_like(grey, 255)])
        Image.fromarray(rgba, mode="RGBA").save(folder / f"disk_{i:03d}.png")
    else:
        wide = grey.astype("<u2") * 257
        Image.frombytes("I;16", size, wide.tobytes()).save(folder / f"disk_{i:03d}.png")


def make(folder: Path) -> list[str]:
    """Write the user's flat folder of images under ``folder``; -> the Hydra overrides that train on it."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(N_IMAGES):
        write_picture(folder, i)
    (folder / "disk_broken.png").write_bytes(b"")  # an empty file: skipped and counted
    return [
        "data/diffusion=image_folder",
        f"data.diffusion.path={folder}",
        "data.diffusion.name=own-diffusion",
        "data.diffusion.on_bad=skip",
        "data.diffusion.val_fraction=0.2",
        "data.diffusion.test_fraction=0.2",
        *TINY["diffusion"],
    ]


def check(project: Path, folder: Path, out_dir: Path) -> None:
    """Draw 4 images from the registered unconditional model through the CLI; the grid is a 2x2 of 28x28.

    A class name is refused by the model itself (exit 2), since it was trained without classes.
    """
    from triad.cli import main

    out_dir.mkdir(parents=True, exist_ok=True)
    grid = out_dir / "samples.png"
    code = main(["predict", "--model", "own-diffusion/1", "diffusion", "--n", "4", "--steps", "2", "--out", str(grid)])
    assert code == 0, code
    with Image.open(grid) as image:
        assert image.format == "PNG" and image.size == (56, 56) and image.mode == "L", (image.format, image.size)
        assert np.asarray(image).std() > 0  # drawn, not blank
    refused = out_dir / "refused.png"
    code = main(["predict", "--model", "own-diffusion/1", "diffusion", "--class", "disk", "--out", str(refused)])
    assert code == 2 and not refused.exists(), code
