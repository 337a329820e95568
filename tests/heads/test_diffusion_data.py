"""Data: prepare is deterministic and valid; corrupt or invalid inputs raise DataError."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from tests.profile import section
from triad.errors import DataError
from triad.heads.diffusion.data import (
    FASHION_MNIST_FILES,
    prepare,
    read_idx,
    read_mnist5k_csv,
    stratified_split,
    validate_splits,
)

DEBIAN_MIRROR = Path("/usr/share/datasets")


def test_prepare_mnist5k_is_deterministic_stratified_and_disjoint(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    summary = prepare(section("data", "diffusion"), first, None)
    prepare(section("data", "diffusion"), second, None)
    assert summary["sizes"] == {"train": 4000, "val": 500, "test": 500}
    assert summary["class_counts"]["test"] == [50] * 10
    for path in sorted(first.iterdir()):
        assert path.read_bytes() == (second / path.name).read_bytes(), path.name
    train, test = np.load(first / "train_images.npy"), np.load(first / "test_images.npy")
    assert train.dtype == np.uint8 and train.shape[1:] == (1, 28, 28)
    assert not {row.tobytes() for row in train} & {row.tobytes() for row in test}


def test_prepare_pads_to_32(tmp_path):
    summary = prepare(section("data", "diffusion", image_size=32), tmp_path, None)
    images = np.load(tmp_path / "val_images.npy")
    assert images.shape[1:] == (1, 32, 32) and summary["image_size"] == 32
    assert (images[:, :, :2] == 0).all() and (images[:, :, -2:] == 0).all()


def test_stratified_split_keeps_class_shares():
    labels = np.repeat(np.arange(4), 50)
    parts = stratified_split(labels, {"val": 0.1, "test": 0.2}, seed=1)
    assert [np.bincount(labels[parts[name]]).tolist() for name in ("train", "val", "test")] == [
        [35] * 4,
        [5] * 4,
        [10] * 4,
    ]
    assert sum(len(p) for p in parts.values()) == len(np.unique(np.concatenate(list(parts.values()))))


def test_corrupt_or_invalid_mnist_csv_raises_data_error(tmp_path):
    not_gzip = tmp_path / "broken.csv.gz"
    not_gzip.write_bytes(b"this is not gzip")
    with pytest.raises(DataError, match="not a readable gzip"):
        read_mnist5k_csv(not_gzip)
    short_rows = tmp_path / "short.csv.gz"
    short_rows.write_bytes(gzip.compress(b"1,2,3\n4,5,6\n"))
    with pytest.raises(DataError, match="785"):
        read_mnist5k_csv(short_rows)
    bad_pixels = tmp_path / "pixels.csv.gz"
    bad_pixels.write_bytes(gzip.compress((",".join(["300"] * 784 + ["1"]) + "\n").encode()))
    with pytest.raises(DataError, match=r"\[0, 255\]"):
        read_mnist5k_csv(bad_pixels)


def test_truncated_idx_raises_data_error():
    header = bytes([0, 0, 8, 3]) + (10).to_bytes(4, "big") + (28).to_bytes(4, "big") + (28).to_bytes(4, "big")
    with pytest.raises(DataError, match="truncated"):
        read_idx(header + bytes(100), "images")
    with pytest.raises(DataError, match="magic"):
        read_idx(b"\x01\x02\x03\x04", "images")


def test_validation_catches_bad_labels_empty_splits_and_overlap():
    images = np.arange(6 * 4, dtype=np.uint8).reshape(6, 1, 2, 2)
    labels = np.array([0, 1, 0, 1, 0, 1])
    good = {"train": (images[:4], labels[:4]), "val": (images[4:5], labels[4:5]), "test": (images[5:], labels[5:])}
    validate_splits(good, 1, 2, 2)
    with pytest.raises(DataError, match="labels range"):
        validate_splits({**good, "test": (images[5:], np.array([7]))}, 1, 2, 2)
    with pytest.raises(DataError, match="empty"):
        validate_splits({**good, "val": (images[:0], labels[:0])}, 1, 2, 2)
    with pytest.raises(DataError, match="appear in both"):
        validate_splits({**good, "test": (images[:1], labels[:1])}, 1, 2, 2)
    with pytest.raises(DataError, match="dtype"):
        validate_splits({**good, "train": (images[:4].astype(np.float32), labels[:4])}, 1, 2, 2)


def test_fashion_mnist_mirror_with_a_corrupt_file_raises_data_error(tmp_path):
    mirror = tmp_path / "mirror" / "fashion-mnist"
    mirror.mkdir(parents=True)
    for name in FASHION_MNIST_FILES:
        (mirror / name).write_bytes(gzip.compress(b"\x00\x00\x08\x01" + (3).to_bytes(4, "big") + b"\x01\x02\x03"))
    with pytest.raises(DataError, match="decompressed sha256"):
        prepare(section("data", "diffusion", source="fashion_mnist"), tmp_path, str(tmp_path / "mirror"))


@pytest.mark.slow
@pytest.mark.skipif(not (DEBIAN_MIRROR / "fashion-mnist").is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_prepare_fashion_mnist_from_the_debian_mirror(tmp_path):
    cfg = section("data", "diffusion", source="fashion_mnist", val_fraction=0.05)
    summary = prepare(cfg, tmp_path, str(DEBIAN_MIRROR))
    assert summary["sizes"] == {"train": 57000, "val": 3000, "test": 10000}
    assert json.loads((tmp_path / "meta.json").read_text())["class_names"][9] == "Ankle boot"
