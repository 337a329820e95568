"""The transfer tasks: seeded stratified label sampling, deterministic validated preparation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from triad.errors import DataError
from triad.heads.transfer.config import TransferData
from triad.heads.transfer.data import TransferDataModule, prepare, stratified_subset

MIRROR = Path("/work/shared/data")


def test_label_fraction_sampler_is_stratified_and_seeded():
    labels = np.array([0] * 300 + [1] * 100 + [2] * 10)
    idx = stratified_subset(labels, seed=3, fraction=0.1)
    assert np.bincount(labels[idx]).tolist() == [30, 10, 1]  # the same share of every class
    assert np.array_equal(idx, stratified_subset(labels, seed=3, fraction=0.1))
    assert not np.array_equal(idx, stratified_subset(labels, seed=4, fraction=0.1))
    tiny = stratified_subset(labels, seed=0, fraction=0.01)
    assert np.bincount(labels[tiny]).tolist() == [3, 1, 1]  # never a class without labels
    capped = stratified_subset(labels, seed=0, per_class=20)
    assert np.bincount(labels[capped]).tolist() == [20, 20, 10] and len(set(capped)) == len(capped)


def test_mnist5k_fewlabel_is_deterministic_disjoint_and_few_label(tmp_path):
    cfg = TransferData(labels_per_class=3, val_per_class=5, test_per_class=10)
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    summary = prepare(cfg, first)
    prepare(cfg, second)
    for path in sorted(first.iterdir()):
        assert path.read_bytes() == (second / path.name).read_bytes(), path.name
    assert summary["class_counts"]["train"] == [3] * 10 and summary["sizes"]["test"] == 100
    dm = TransferDataModule(first, batch_size=8)
    assert dm.train.x.dtype == np.uint8 and dm.train.x.shape == (30, 28, 28)
    pool_keys = {row.tobytes() for row in dm.pool.x}
    assert not pool_keys & {row.tobytes() for row in dm.test.x}


@pytest.mark.skipif(not (MIRROR / "pneumoniamnist" / "pneumoniamnist.npz").is_file(), reason="no data mirror here")
def test_pneumoniamnist_from_the_mirror_keeps_the_official_splits(tmp_path):
    summary = prepare(TransferData(task="pneumoniamnist", labels_per_class=None), tmp_path, mirror_dir=str(MIRROR))
    assert summary["class_counts"]["test"] == [234, 390] and summary["sizes"]["val"] == 524


def test_a_corrupt_pneumoniamnist_file_is_refused(tmp_path):
    mirror = tmp_path / "mirror" / "pneumoniamnist"
    mirror.mkdir(parents=True)
    np.savez(mirror / "pneumoniamnist.npz", train_images=np.zeros((2, 28, 28), np.uint8))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DataError, match="neither the MedMNIST v2"):
        prepare(TransferData(task="pneumoniamnist"), out, mirror_dir=str(tmp_path / "mirror"))
