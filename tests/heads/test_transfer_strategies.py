"""Fine-tuning strategies: what is frozen stays bit-identical, and groups open in the configured order."""

from __future__ import annotations

import copy

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.profile import section
from triad.heads.transfer.data import TransferDataModule
from triad.heads.transfer.module import (
    HEAD_GROUP,
    TransferModule,
    balanced_class_weights,
    discriminative_param_groups,
    random_shift,
)


@pytest.fixture(scope="module")
def tiny_images(tmp_path_factory):
    """A prepared folder of 10 random 'digits' (2 classes x 5), 4 val and 4 test images."""
    from tests.heads.conftest import write_tiny_image_task

    return write_tiny_image_task(
        tmp_path_factory.mktemp("tiny_transfer"), {"pool": 10, "val": 4, "test": 4}, ["a", "b"], seed=0
    )


def fit(module: TransferModule, data_dir, epochs: int) -> None:
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=1,
    )
    trainer.fit(module, TransferDataModule(data_dir, batch_size=10))


def group_of(key: str) -> str:
    """backbone.net.stages.6.0.project.0.weight -> stages.6; backbone.net.stem.0.weight -> stem."""
    parts = key.split(".")
    return f"stages.{parts[3]}" if parts[2] == "stages" else parts[2]


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


@pytest.mark.slow
def test_linear_probe_leaves_the_backbone_bit_identical_and_trains_the_head(tiny_images):
    cfg = section("model", "transfer", strategy="linear_probe", image_size=32, freeze_batchnorm=False, max_epochs=1)
    module = TransferModule(cfg, n_classes=2)
    backbone_before, head_before = snapshot(module.model.backbone), snapshot(module.model.classifier)
    fit(module, tiny_images, epochs=1)
    backbone_after = module.model.backbone.state_dict()
    assert all(torch.equal(backbone_before[k], backbone_after[k]) for k in backbone_before)  # weights and BN statistics
    head_after = module.model.classifier.state_dict()
    assert not torch.equal(head_before["weight"], head_after["weight"])


@pytest.mark.slow
def test_freeze_batchnorm_keeps_running_statistics_while_fine_tuning_everything(tiny_images):
    cfg = section("model", "transfer", strategy="full", image_size=32, freeze_batchnorm=True, max_epochs=1)
    module = TransferModule(cfg, n_classes=2)
    before = snapshot(module.model.backbone)
    fit(module, tiny_images, epochs=1)
    after = module.model.backbone.state_dict()
    statistics = [k for k in before if k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    weights = [k for k in before if k.endswith("weight")]
    assert statistics and all(torch.equal(before[k], after[k]) for k in statistics)
    assert any(not torch.equal(before[k], after[k]) for k in weights)  # while the weights did train


@pytest.mark.slow
def test_gradual_unfreezing_opens_groups_in_the_configured_order(tiny_images):
    order = ["stages.6", "stem", "head"]
    cfg = section(
        "model", "transfer", strategy="gradual", unfreeze_order=order, unfreeze_every=1, image_size=32, max_epochs=3
    )
    module = TransferModule(cfg, n_classes=2)
    callback = module.unfreezing
    before = snapshot(module.model)
    fit(module, tiny_images, epochs=3)
    assert callback.history == [(1, "stages.6"), (2, "stem")]
    assert module.model.frozen == {name for name in module.model.groups if name not in {HEAD_GROUP, "stages.6", "stem"}}
    after = module.model.state_dict()
    changed = {group_of(k) for k in after if k.startswith("backbone.") and not torch.equal(before[k], after[k])}
    assert changed == {"stages.6", "stem"}  # "head", third in the order, never opened


def test_discriminative_learning_rates_shrink_by_depth_below_the_classifier():
    cfg = section("model", "transfer", strategy="full", image_size=32, lr=1.0, layer_lr_decay=0.5)
    module = TransferModule(cfg, n_classes=3)
    groups = discriminative_param_groups(module.model, cfg.lr, cfg.layer_lr_decay, weight_decay=0.0)
    rates = {g["name"]: g["lr"] for g in groups}
    assert rates["classifier"] == 1.0 and rates["head"] == 0.5 and rates["stages.6"] == 0.25 and rates["stem"] == 0.5**9
    n_params = sum(len(g["params"]) for g in groups)
    assert n_params == len(list(module.model.parameters()))  # every parameter in exactly one group


def test_an_unknown_group_in_unfreeze_order_is_a_config_error():
    from triad.errors import ConfigError

    with pytest.raises(ConfigError, match="stages.9"):
        cfg = section("model", "transfer", strategy="gradual", unfreeze_order=["stages.9"], image_size=32)
        TransferModule(cfg, n_classes=2)


@pytest.mark.slow
def test_lora_trains_only_the_adapters_and_the_head():
    cfg = section("model", "transfer", backbone="minilm", strategy="lora", max_length=16, lora={"r": 2})
    module = TransferModule(cfg, n_classes=2)
    trainable = {name for name, p in module.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name or name.startswith("classifier.") for name in trainable)
    assert any(".query." in name for name in trainable) and any(".value." in name for name in trainable)
    frozen = copy.deepcopy(
        {k: v for k, v in module.model.state_dict().items() if "lora_" not in k and "classifier" not in k}
    )
    optimizer = torch.optim.AdamW([p for p in module.model.parameters() if p.requires_grad], lr=1e-2)
    logits = module.model(["in the beginning", "grace and peace to you"])
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1])).backward()
    optimizer.step()
    after = module.model.state_dict()
    assert all(torch.equal(frozen[k], after[k]) for k in frozen)


def test_balanced_class_weights_give_each_class_the_same_total_weight():
    labels = torch.tensor([1] * 9 + [0])  # PneumoniaMNIST-like: 90% of one class
    weights = balanced_class_weights(labels, n_classes=3)
    per_class_total = torch.bincount(labels, minlength=3).float() * weights
    torch.testing.assert_close(per_class_total[:2], torch.tensor([5.0, 5.0]))
    assert weights[2] == 0  # absent from training: no weight, no division by zero
    torch.testing.assert_close(weights[labels].mean(), torch.tensor(1.0))


def test_random_shift_translates_each_image_within_the_bound():
    images = torch.zeros(64, 8, 8, dtype=torch.uint8)
    images[:, 4, 4] = 255
    shifted = random_shift(images, 2, torch.Generator().manual_seed(0))
    assert shifted.shape == images.shape and shifted.dtype == torch.uint8
    rows, cols = (shifted == 255).nonzero()[:, 1], (shifted == 255).nonzero()[:, 2]
    assert (shifted == 255).sum() == 64  # one bright pixel per image, moved, not lost
    assert rows.min() >= 2 and rows.max() <= 6 and cols.min() >= 2 and cols.max() <= 6
    assert len(set(zip(rows.tolist(), cols.tolist()))) > 10  # offsets differ between images
    assert torch.equal(random_shift(images, 0), images)


def test_random_shift_crops_the_padded_image_at_each_drawn_offset():
    images = torch.randint(0, 256, (5, 6, 7), dtype=torch.uint8)
    shifted = random_shift(images, 3, torch.Generator().manual_seed(1))
    offsets = torch.randint(0, 7, (5, 2), generator=torch.Generator().manual_seed(1))  # the same draw
    padded = torch.nn.functional.pad(images[:, None].float(), (3,) * 4, mode="replicate")[:, 0]
    for i, (dy, dx) in enumerate(offsets.tolist()):
        assert torch.equal(shifted[i], padded[i, dy : dy + 6, dx : dx + 7].to(torch.uint8))


def test_random_shift_runs_inside_a_compiled_training_step():
    """trainer.compile compiles the module around it; on an H200 a symbolic batch size broke the draw."""
    weight = torch.ones(8 * 8)

    def step(x):
        return (random_shift(x, 2).float().flatten(1) @ weight).mean()

    compiled = torch.compile(step, dynamic=True, backend="aot_eager")
    for batch in (4, 6, 9):
        x = torch.ones(batch, 8, 8)
        assert compiled(x).item() == pytest.approx(64.0)  # replicate padding of ones stays ones


@pytest.mark.slow
def test_class_balance_weights_the_training_loss(tiny_images):
    datamodule = TransferDataModule(tiny_images, batch_size=10)
    pool_labels = datamodule.pool.y
    skewed = np.concatenate([np.flatnonzero(pool_labels == 0), np.flatnonzero(pool_labels == 1)[:1]])
    datamodule.train = datamodule.pool.subset(skewed)  # 5 of class 0, 1 of class 1
    cfg = section("model", "transfer", strategy="linear_probe", image_size=32, class_balance=True, max_epochs=1)
    module = TransferModule(cfg, n_classes=2)
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=1,
    )
    trainer.fit(module, datamodule)
    torch.testing.assert_close(module.class_weights, torch.tensor([0.6, 3.0]))  # 6 / (2 * 5), 6 / (2 * 1)
    logits, labels = torch.tensor([[2.0, 0.0], [2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1, 1])
    weighted = module.training_loss(logits, labels)
    torch.testing.assert_close(weighted, F.cross_entropy(logits, labels, weight=torch.tensor([0.6, 3.0])))
    assert not torch.isclose(weighted, F.cross_entropy(logits, labels))


@pytest.mark.slow
def test_partial_keeps_the_lowest_groups_bit_identical_and_trains_the_rest(tiny_images):
    cfg = section(
        "model", "transfer", strategy="partial", frozen_groups=3, image_size=32, freeze_batchnorm=False, max_epochs=1
    )
    module = TransferModule(cfg, n_classes=2)
    backbone_groups = [name for name in module.model.groups if name != HEAD_GROUP]
    lowest = backbone_groups[:3]
    assert module.model.frozen == set(lowest)
    before = snapshot(module.model)
    fit(module, tiny_images, epochs=1)
    after = module.model.state_dict()
    changed = {group_of(k) for k in after if k.startswith("backbone.") and not torch.equal(before[k], after[k])}
    assert changed == set(backbone_groups[3:])  # the three lowest untouched (BN statistics included), all above trained


def test_partial_with_more_frozen_groups_than_the_backbone_has_is_a_config_error():
    from triad.errors import ConfigError

    with pytest.raises(ConfigError, match="frozen_groups=99"):
        TransferModule(section("model", "transfer", strategy="partial", frozen_groups=99, image_size=32), n_classes=2)
