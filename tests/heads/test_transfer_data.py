"""The transfer tasks: seeded stratified label sampling, deterministic validated preparation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.profile import section
from triad.errors import DataError
from triad.heads.transfer import data as transfer_data
from triad.heads.transfer.data import TaskData, TransferDataModule, drop_held_out_copies, prepare, stratified_subset

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
    cfg = section("data", "transfer", labels_per_class=3, val_per_class=5, test_per_class=10)
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
    cfg = section("data", "transfer", task="pneumoniamnist", labels_per_class=None)
    summary = prepare(cfg, tmp_path, mirror_dir=str(MIRROR))
    assert summary["class_counts"]["test"] == [234, 390] and summary["sizes"]["val"] == 524


def test_a_corrupt_pneumoniamnist_file_is_refused(tmp_path):
    mirror = tmp_path / "mirror" / "pneumoniamnist"
    mirror.mkdir(parents=True)
    np.savez(mirror / "pneumoniamnist.npz", train_images=np.zeros((2, 28, 28), np.uint8))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DataError, match="neither the MedMNIST v2"):
        prepare(section("data", "transfer", task="pneumoniamnist"), out, mirror_dir=str(tmp_path / "mirror"))


def tiny_task() -> TaskData:
    """Distinct 2x2 images (pixel value = example id): the pool's 1 is a copy of val's first image,
    its 2 (twice) of val's second, its 3 of test's first."""

    def images(ids):
        return np.repeat(np.array(ids, dtype=np.uint8), 4).reshape(-1, 2, 2)

    return TaskData(
        "image",
        ["even", "odd"],
        images([1, 2, 2, 3, 10, 11, 12, 13]),
        np.array([1, 0, 0, 1, 0, 1, 0, 1]),
        images([1, 2, 20, 21]),
        np.array([1, 0, 0, 1]),
        images([3, 30, 31]),
        np.array([1, 0, 1]),
        source="synthetic",
    )


def test_pool_copies_of_val_and_test_examples_are_dropped_and_counted(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(transfer_data, "load_task", lambda cfg, mirror_dir=None: tiny_task())
    with caplog.at_level("WARNING", logger=transfer_data.__name__):
        summary = prepare(section("data", "transfer", labels_per_class=None), tmp_path)
    assert summary["dropped_from_pool"] == {"val": 3, "test": 1}
    assert "dropped 4 pool example(s) identical to a held-out example (3 in val, 1 in test)" in caplog.text
    dm = TransferDataModule(tmp_path, batch_size=2)
    assert dm.pool.x[:, 0, 0].tolist() == [10, 11, 12, 13] and dm.pool.y.tolist() == [0, 1, 0, 1]
    assert summary["sizes"] == {"train": 4, "pool": 4, "val": 4, "test": 3}  # val and test are left whole


def test_text_pool_copies_are_dropped_and_a_clean_pool_is_left_alone():
    task = TaskData(
        "text",
        ["a", "b"],
        ["x", "y", "z", "w"],
        np.array([0, 1, 0, 1]),
        ["y"],
        np.array([1]),
        ["q"],
        np.array([0]),
        source="synthetic",
    )
    assert drop_held_out_copies(task) == {"val": 1, "test": 0}
    assert task.pool_x == ["x", "z", "w"] and task.pool_y.tolist() == [0, 0, 1]
    assert drop_held_out_copies(task) == {"val": 0, "test": 0} and task.pool_x == ["x", "z", "w"]
