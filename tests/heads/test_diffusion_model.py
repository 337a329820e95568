"""The denoiser: shapes for every configured resolution, and it can learn (overfits one batch)."""

import pytest
import torch

from tests.profile import section
from triad.config import compose_dict
from triad.heads.diffusion.config import DiffusionData, DiffusionModel, UNetConfig
from triad.heads.diffusion.judge import JudgeNet
from triad.heads.diffusion.model import UNet
from triad.heads.diffusion.process import GaussianDiffusion

EXPERIMENTS = [None, "fashion_mnist_h100", "cifar10_gpu"]


def unet_config(**keys) -> UNetConfig:
    """``model.diffusion.unet`` of the default profile with ``keys`` replaced."""
    return section("model", "diffusion", unet=keys).unet


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_denoiser_output_shape_equals_input_shape_for_each_config(experiment):
    raw = compose_dict([f"experiment={experiment}"] if experiment else [])
    data, model = DiffusionData(**raw["data"]["diffusion"]), DiffusionModel(**raw["model"]["diffusion"])
    channels = 3 if data.source == "cifar10" else 1
    net = UNet(model.unet, channels, data.image_size, n_classes=10)
    x = torch.randn(2, channels, data.image_size, data.image_size)
    with torch.no_grad():
        out = net(x, torch.tensor([0, model.timesteps - 1]), torch.tensor([3, 10]))  # 10 = the null class
    assert out.shape == x.shape


@pytest.mark.parametrize(
    "size,patch,mults", [(28, 1, [1, 2, 2]), (28, 2, [1, 2]), (32, 1, [1, 2, 2, 2]), (32, 2, [1, 2])]
)
def test_unet_keeps_the_shape_at_each_resolution(size, patch, mults):
    lowest = size // patch // 2 ** (len(mults) - 1)
    config = unet_config(
        patch_size=patch, channels=8, channel_mults=mults, attention_resolutions=[lowest], attention_heads=2
    )
    net = UNet(config, 1, size, 10)
    x = torch.randn(3, 1, size, size)
    assert net(x, torch.tensor([1, 2, 3]), torch.tensor([0, 5, 10])).shape == x.shape


def test_unet_rejects_sizes_it_cannot_halve():
    with pytest.raises(ValueError, match="cannot be cut"):
        UNet(unet_config(patch_size=2, channels=8, channel_mults=[1, 2, 2]), 1, 28, 10)
    with pytest.raises(ValueError, match="attention_resolutions"):
        UNet(unet_config(patch_size=1, channels=8, channel_mults=[1, 2], attention_resolutions=[5]), 1, 28, 10)


@pytest.mark.slow
@pytest.mark.parametrize("prediction", ["epsilon", "v"])
def test_tiny_model_overfits_one_batch(prediction):
    """With the timesteps and noise of one batch fixed, the loss falls by an order of magnitude."""
    torch.manual_seed(0)
    config = unet_config(patch_size=1, channels=16, channel_mults=[1, 2], attention_resolutions=[4], attention_heads=2)
    net = UNet(config, 1, 8, 3)
    process = GaussianDiffusion(100, "cosine", prediction)
    x0 = torch.rand(8, 1, 8, 8) * 2 - 1
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(300):
        loss = process.loss(net, x0, labels, generator=torch.Generator().manual_seed(0))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10


@pytest.mark.parametrize("size", [8, 28, 32])
def test_judge_features_and_logits_have_the_documented_shapes(size):
    judge = JudgeNet(image_channels=1, n_classes=10, width=4, stages=3)
    images = torch.randn(5, 1, size, size)
    assert judge.features(images).shape == (5, 16)
    assert judge(images).shape == (5, 10)
