"""Self-supervised pretraining (``pretrain.py``): the views keep what fine-tuning relies on, each objective's
loss falls on a tiny input, its networks are made once and reused by every evidence arm and seed, and the
training stage starts from the arm the evidence's validation split prefers."""

import json

import numpy as np
import pytest
import torch

from tests.heads.conftest import write_tiny_image_task
from tests.profile import section
from triad.errors import ConfigError
from triad.heads.transfer.config import PretrainConfig
from triad.heads.transfer.evidence import load_evidence_data, run_evidence, trunk_activations
from triad.heads.transfer.model import EfficientNetLite
from triad.heads.transfer.pretrain import augment, pretrain, resolve_start, run_pretrain, weights_path


def pretrain_cfg(**overrides) -> PretrainConfig:
    """The default profile's ``model.transfer.pretrain`` with ``overrides``."""
    return section("model", "transfer", pretrain=overrides).pretrain


@pytest.mark.parametrize("shape", [(6, 28, 28), (6, 20, 20, 3)])
def test_views_keep_shape_dtype_and_range_and_differ_from_each_other(shape):
    images = torch.randint(0, 256, shape, dtype=torch.uint8)
    cfg = pretrain_cfg()
    generator = torch.Generator().manual_seed(0)
    view1, view2 = augment(images, cfg, generator), augment(images, cfg, generator)
    assert view1.shape == images.shape and view1.dtype == torch.uint8  # a view per image, in its slot
    assert not torch.equal(view1, view2) and not torch.equal(view1, images)


def test_a_view_without_jitter_is_the_image_itself():
    """Crop the whole image, no rotation, no jitter: the affine resampling must give back every pixel, each in
    its own image's slot (what ties a view to its image, and so to that image's label)."""
    images = torch.randint(0, 256, (4, 28, 28), dtype=torch.uint8)
    cfg = pretrain_cfg(crop_scale=1.0, rotation=0.0, brightness=0.0, contrast=0.0, flip=False)
    assert torch.equal(augment(images, cfg, torch.Generator().manual_seed(0)), images)
    rotated = augment(
        images, pretrain_cfg(crop_scale=1.0, rotation=10.0, brightness=0.0, contrast=0.0), torch.Generator()
    )
    assert not torch.equal(rotated, images)


def test_brightness_and_contrast_stay_in_range_on_extreme_images():
    images = torch.stack([torch.zeros(16, 16, dtype=torch.uint8), torch.full((16, 16), 255, dtype=torch.uint8)])
    cfg = pretrain_cfg(brightness=0.9, contrast=0.9)
    views = augment(images, cfg, torch.Generator().manual_seed(0))
    assert views.dtype == torch.uint8 and views.shape == images.shape  # clipped, not wrapped around


@pytest.mark.parametrize("objective", ["simclr", "byol"])
def test_the_pretraining_loss_falls_on_a_tiny_input(objective):
    torch.manual_seed(0)
    images = np.random.default_rng(0).integers(0, 256, (16, 16, 16), dtype=np.uint8)
    net = EfficientNetLite(n_classes=None, width=0.25, head_channels=64)
    cfg = pretrain_cfg(objective=objective, steps=16, batch_size=16, lr=0.01, hidden_dim=32, projection_dim=16)
    losses = pretrain(images, net, cfg, image_size=16, seed=0)
    assert len(losses) == 16
    assert np.mean(losses[-4:]) < 0.9 * np.mean(losses[:4]), losses


def _tiny_task(tmp_path):
    data = write_tiny_image_task(tmp_path / "data", {"pool": 24, "val": 8, "test": 8}, ["a", "b"], seed=0)
    out = tmp_path / "pretrain"
    out.mkdir()
    cfg = pretrain_cfg(steps=2, batch_size=8, hidden_dim=16, projection_dim=8)
    summary = run_pretrain(data, cfg, image_size=16, out_dir=out, seed=0)
    return data, out, summary


def test_the_pretrained_networks_are_made_once_and_reused_by_every_arm_and_seed(tmp_path):
    data, out, summary = _tiny_task(tmp_path)
    assert summary["images"] == 24 and (out / "loss.csv").is_file() and (out / "loss.png").is_file()
    stamps = {path.name: path.stat().st_mtime_ns for path in out.iterdir()}
    evidence = section(
        "model", "transfer", evidence={"fractions": [0.5, 1.0], "seeds": [0, 1], "max_epochs": 1, "frozen_groups": 7}
    ).evidence
    loaded = load_evidence_data(data, evidence, 16, pretrain_dir=out)
    for arm, start in (("ssl", "scratch"), ("imagenet+ssl", "imagenet")):
        saved = torch.load(weights_path(out, start), weights_only=True)
        assert all(torch.equal(saved[k], v) for k, v in loaded.pretrained[arm].state_dict().items())
        trunk = trunk_activations(loaded.pretrained[arm], 7, loaded.val.x, 16)
        assert torch.equal(loaded.cached[arm]["val"], trunk)  # every run of the arm reads this one cache
    assert not torch.equal(loaded.cached["ssl"]["val"], loaded.cached["imagenet"]["val"])

    report = tmp_path / "evidence"
    report.mkdir()
    result = run_evidence(data, evidence, 16, report, pretrain_dir=out)
    assert result["runs"] == 16  # 4 arms x 2 fractions x 2 seeds
    assert {path.name: path.stat().st_mtime_ns for path in out.iterdir()} == stamps  # nothing pretrained again
    assert set(result["val_preferred_start"].values()) <= {"imagenet", "ssl", "imagenet+ssl"}


def test_an_arm_without_its_pretrained_network_says_which_stage_makes_it(tmp_path):
    data = write_tiny_image_task(tmp_path / "data", {"pool": 12, "val": 4, "test": 4}, ["a", "b"], seed=0)
    evidence = section("model", "transfer", evidence={"arms": ["ssl"]}).evidence
    with pytest.raises(ConfigError, match="dvc repro pretrain_transfer"):
        load_evidence_data(data, evidence, 16, pretrain_dir=tmp_path / "empty")


def test_best_on_val_starts_from_the_preferred_arm_at_the_nearest_label_count(tmp_path):
    summary = {
        "val_preferred_start": {"0.01": "imagenet", "0.1": "ssl", "1": "imagenet+ssl"},
        "labels_per_fraction": {"0.01": 10.0, "0.1": 50.0, "1": 500.0},
    }
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    assert resolve_start("best_on_val", tmp_path, n_labels=100) == "ssl"  # 100 is 2x from 50, 5x from 500
    assert resolve_start("best_on_val", tmp_path, n_labels=400) == "imagenet+ssl"
    assert resolve_start("best_on_val", tmp_path, n_labels=12) == "imagenet"
    assert resolve_start("ssl", tmp_path / "nowhere", n_labels=12) == "ssl"
    with pytest.raises(ConfigError, match="evidence_transfer"):
        resolve_start("best_on_val", tmp_path / "nowhere", n_labels=12)
