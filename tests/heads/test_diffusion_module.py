"""The LightningModule's training extras: the EMA update and classifier-free label dropout."""

import pytest
import torch

from tests.profile import section
from triad.heads.diffusion.module import DiffusionModule

TINY = section(
    "model",
    "diffusion",
    timesteps=20,
    sample_steps=5,
    eval_steps=[5],
    unet={"patch_size": 1, "channels": 8, "channel_mults": [1, 2], "attention_resolutions": [4], "attention_heads": 2},
)


def tiny_module(**overrides) -> DiffusionModule:
    torch.manual_seed(0)
    return DiffusionModule(TINY.model_copy(update=overrides), image_channels=1, image_size=8, n_classes=3)


def batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 images (n, 1, 8, 8), labels (n,) cycling 0, 1, 2)."""
    generator = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (n, 1, 8, 8), generator=generator, dtype=torch.uint8), torch.arange(n) % 3


def train_one_step(module: DiffusionModule, steps_done: int) -> None:
    optimizer = torch.optim.SGD(module.net.parameters(), lr=0.5)
    loss = module.training_step(batch(8), 0)
    loss.backward()
    optimizer.step()
    module.update_ema(steps_done)  # what the module's optimizer_step does after Lightning's step


@pytest.mark.parametrize("step,decay", [(0, 1 / 10), (50, 51 / 60), (10**6, 0.999)])
def test_ema_moves_towards_the_net_by_the_warm_up_decay(step, decay):
    """ema <- decay * ema + (1 - decay) * net, with decay = min(ema_decay, (1 + step) / (10 + step))."""
    module = tiny_module(ema_decay=0.999)
    before = [p.detach().clone() for p in module.ema.parameters()]
    train_one_step(module, step)
    changed = 0
    for old, ema, net in zip(before, module.ema.parameters(), module.net.parameters()):
        torch.testing.assert_close(ema, decay * old + (1 - decay) * net, atol=1e-6, rtol=1e-5)
        changed += int(not torch.equal(ema, net))
    assert changed > 0  # the average lags the net: it is not a copy


@pytest.mark.parametrize("drop", [0.0, 0.3])
def test_training_replaces_a_share_of_labels_by_the_null_label(monkeypatch, drop):
    """With probability label_drop_prob a label becomes n_classes (3), the null label; the others stay."""
    module = tiny_module(label_drop_prob=drop, guidance=1.0 if drop == 0 else 3.0)
    seen = {}

    def loss(model, x0, labels, generator=None):
        seen["labels"] = labels
        return x0.mean()

    monkeypatch.setattr(module.diffusion, "loss", loss)
    torch.manual_seed(0)
    images, labels = batch(4000)
    module.training_step((images, labels), 0)
    dropped = seen["labels"] == 3
    assert torch.equal(seen["labels"][~dropped], labels[~dropped])  # the kept labels are the true ones
    assert dropped.float().mean().item() == pytest.approx(drop, abs=0.03)  # 4000 draws: sd 0.007
