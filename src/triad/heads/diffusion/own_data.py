"""The diffusion head's own-data source: a folder of the user's PNG and JPEG images (``source: image_folder``).

Layouts (``triad.data.own.scan_image_folder``):
- ``DIR/<class>/*`` or ``DIR/{train,val,test}/<class>/*``: a class-conditional model. The classes are the
  folder names, sorted; label i is ``class_names[i]``, and ``triad predict diffusion --class NAME`` takes
  those names.
- a flat ``DIR/*``: an unconditional model. ``meta.json`` has ``class_names: []`` and every label is 0,
  which for a model of zero classes is the null label (``model.UNet``): the UNet learns no class, the
  sampler draws without one. The evaluation then has no class to check a sample against, so:
  the judge learns another signal from the same images, which of the four rotations (0, 90, 180, 270
  degrees) an image was turned by (Gidaris et al., 2018), and FID is measured in the features of that
  rotation judge; conditional accuracy is not measured, and the gate uses FID alone (see ``judge.py``,
  ``evaluate.py`` and ``DiffusionHead.gate_passes``).

Every file is decoded (any mode, 8 or 16 bits, any size) to ``image_size`` x ``image_size`` with ``channels``;
a file that cannot be (empty, truncated, not an image) is listed with its path (``on_bad: fail``) or left out
and counted (``on_bad: skip``). Splits come from a hash of each file's path under DIR (``split_of``), unless
the folder has its own train/val/test. Images with the same decoded pixels in two splits are kept in the
held-out split only (this includes byte-identical files under two names). The prepared folder has the
built-in sources' format (``{split}_images.npy`` uint8 (N, C, H, W), ``{split}_labels.npy`` int64 (N,),
``meta.json``) plus the data report (``data_report.{json,md}``, ``examples.png``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from triad.data.own import (
    FOLDER_LAYOUT,
    SPLITS,
    Problems,
    check_class_counts,
    drop_duplicates_across_splits,
    example_grid,
    image_folder_report,
    own_path,
    read_images,
    scan_image_folder,
    split_of,
    write_report,
)
from triad.errors import DataError
from triad.heads.diffusion.config import DiffusionData

KEY = "data.diffusion.path"


def check_flat_splits(splits: list[str], root: Path) -> None:
    """An unconditional folder still needs at least one image in each of train, val and test."""
    sizes = {s: splits.count(s) for s in SPLITS}
    if min(sizes.values()) == 0:
        raise DataError(
            f"{root}: {len(splits)} usable image(s) split as {sizes}; each of train, val and test needs at least "
            f"one. Add images or raise data.diffusion.val_fraction/test_fraction."
        )


def prepare_folder(cfg: DiffusionData, out_dir: Path) -> dict:
    """Read, check and split the user's images under ``cfg.path``; write the prepared splits, ``meta.json``
    and the data report into ``out_dir``. -> the summary (also what ``summary.json`` holds)."""
    root = own_path(cfg.path, KEY, FOLDER_LAYOUT)
    folder = scan_image_folder(root, KEY, allow_flat=True)
    conditional = folder.layout != "flat"
    problems = Problems()
    read = read_images(folder.files, cfg.image_size, cfg.channels, problems, desc="reading your images")
    problems.settle(cfg.on_bad, f"the images under {root}")
    problems.skipped = len(problems)  # on_bad: skip (fail has raised): every problem is a file left out

    files = [folder.files[i] for i in read.kept]
    splits = [f.split or split_of(f.rel, cfg.val_fraction, cfg.test_fraction) for f in files]
    # the same decoded pixels in two splits would let the evaluation score memorised training images
    pixel_digests = [hashlib.sha256(image.tobytes()).hexdigest() for image in read.pixels]
    keep, dropped = drop_duplicates_across_splits(pixel_digests, splits)
    pixels = read.pixels[keep]
    files = [f for f, k in zip(files, keep) if k]
    splits = [s for s, k in zip(splits, keep) if k]
    if conditional:
        check_class_counts([f.label for f in files], splits, folder.class_names, f"the class folders under {root}")
        labels = np.array([folder.class_names.index(f.label) for f in files], dtype=np.int64)
    else:
        check_flat_splits(splits, root)
        labels = np.zeros(len(files), dtype=np.int64)

    images = pixels[:, None] if cfg.channels == 1 else pixels.transpose(0, 3, 1, 2)  # -> (N, C, H, W)
    split_array = np.array(splits)
    for name in SPLITS:
        chosen = split_array == name
        np.save(out_dir / f"{name}_images.npy", np.ascontiguousarray(images[chosen]))
        np.save(out_dir / f"{name}_labels.npy", np.ascontiguousarray(labels[chosen]))
    meta = {
        "source": cfg.source,
        "class_names": folder.class_names,
        "conditional": conditional,
        "channels": cfg.channels,
        "image_size": cfg.image_size,
    }
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")

    labels_read = [f.label for f in files]
    report = image_folder_report(
        f"diffusion {cfg.source}", folder, labels_read, splits, read, cfg.image_size, cfg.channels, dropped, problems
    )
    report["model"] = "class-conditional" if conditional else "unconditional (flat folder: no classes)"
    grid = example_grid(pixels, labels if conditional else None)
    write_report(out_dir, report, grid)
    return {
        **meta,
        "sizes": {name: int((split_array == name).sum()) for name in SPLITS},
        "counts": report["counts"],
        "problems": len(problems),
        "skipped": problems.skipped,
        "duplicates_dropped": dropped,
    }
