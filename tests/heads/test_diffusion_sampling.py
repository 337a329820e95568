"""Samplers: DDIM(eta=1, all steps) is DDPM; both sample the right distribution; seeds reproduce."""

import pytest
import torch
from torch import nn

from tests.profile import section
from triad.errors import TriadError
from triad.heads.diffusion.model import UNet
from triad.heads.diffusion.process import GaussianDiffusion
from triad.heads.diffusion.sampling import ddim_sample, ddim_timesteps, ddpm_sample, guided_output

MEAN, STD = 0.3, 0.5  # per-pixel data distribution N(MEAN, STD^2) for the exact denoiser


class GaussianDataDenoiser(nn.Module):
    """The exact epsilon-predictor for data x_0 ~ N(MEAN, STD^2) per pixel: E[eps | x_t].

    x_t = sqrt(a) x_0 + sqrt(1 - a) eps is jointly Gaussian with eps, so
    E[eps | x_t] = sqrt(1 - a) (x_t - sqrt(a) MEAN) / (a STD^2 + 1 - a). A perfect sampler driven
    by it must return samples distributed as N(MEAN, STD^2).
    """

    n_classes = 1

    def __init__(self, process: GaussianDiffusion):
        super().__init__()
        self.process = process

    def forward(self, x, t, y):
        a = self.process.alphas_cumprod[t].reshape(-1, 1, 1, 1)
        return (1 - a).sqrt() * (x - a.sqrt() * MEAN) / (a * STD**2 + 1 - a)


@pytest.fixture
def gaussian_setup():
    process = GaussianDiffusion(1000, "cosine", "epsilon")
    return process, GaussianDataDenoiser(process), torch.zeros(2000, dtype=torch.long)


def test_ddim_with_eta_one_on_all_steps_matches_ddpm(gaussian_setup):
    process, denoiser, labels = gaussian_setup
    shape = (1, 2, 2)
    ddpm = ddpm_sample(denoiser, process, labels, shape, generator=torch.Generator().manual_seed(1), clip=False)
    ddim = ddim_sample(
        denoiser, process, labels, shape, steps=1000, eta=1.0, generator=torch.Generator().manual_seed(2), clip=False
    )
    for samples in (ddpm, ddim):  # both are N(MEAN, STD^2), as the data
        assert samples.mean().item() == pytest.approx(MEAN, abs=0.02)
        assert samples.std().item() == pytest.approx(STD, abs=0.02)
    assert ddim.mean().item() == pytest.approx(ddpm.mean().item(), abs=0.03)
    assert ddim.std().item() == pytest.approx(ddpm.std().item(), abs=0.02)
    # with the same seed the two chains draw the same noise and take the same steps
    few = labels[:16]
    same_ddpm = ddpm_sample(denoiser, process, few, shape, generator=torch.Generator().manual_seed(3), clip=False)
    same_ddim = ddim_sample(
        denoiser, process, few, shape, steps=1000, eta=1.0, generator=torch.Generator().manual_seed(3), clip=False
    )
    torch.testing.assert_close(same_ddim, same_ddpm, atol=2e-3, rtol=0)  # float32 over 1000 steps


def test_deterministic_ddim_approaches_the_data_distribution_as_steps_grow(gaussian_setup):
    """eta = 0 follows the probability-flow ODE; its discretisation error shrinks with more steps."""
    process, denoiser, labels = gaussian_setup
    stds = {}
    for steps in (10, 200):
        samples = ddim_sample(
            denoiser,
            process,
            labels,
            (1, 2, 2),
            steps=steps,
            eta=0.0,
            generator=torch.Generator().manual_seed(0),
            clip=False,
        )
        assert samples.mean().item() == pytest.approx(MEAN, abs=0.02)
        stds[steps] = samples.std().item()
    assert stds[200] == pytest.approx(STD, abs=0.02)
    assert abs(stds[10] - STD) > abs(stds[200] - STD)


def test_ddim_timesteps_are_distinct_and_descending():
    assert ddim_timesteps(1000, 1000) == list(range(999, -1, -1))
    for steps in (1, 2, 7, 50, 999):
        sequence = ddim_timesteps(1000, steps)
        assert len(sequence) == steps and sequence[0] == 999
        assert all(a > b for a, b in zip(sequence, sequence[1:]))


@pytest.fixture
def tiny_unet():
    torch.manual_seed(0)
    config = section(
        "model",
        "diffusion",
        unet={
            "patch_size": 1,
            "channels": 8,
            "channel_mults": [1, 2],
            "attention_resolutions": [4],
            "attention_heads": 2,
        },
    ).unet
    net = UNet(config, 1, 8, n_classes=3)
    for p in net.parameters():  # a random, non-zero network (the real one starts at zero output)
        nn.init.normal_(p, std=0.1)
    return net.eval()


@pytest.mark.slow
def test_same_seed_same_images_and_other_seed_other_images(tiny_unet):
    process = GaussianDiffusion(20, "cosine", "epsilon")
    labels = torch.tensor([0, 1, 2, 1])

    def draw(seed, eta):
        return ddim_sample(
            tiny_unet,
            process,
            labels,
            (1, 8, 8),
            steps=5,
            eta=eta,
            guidance=2.0,
            generator=torch.Generator().manual_seed(seed),
        )

    for eta in (0.0, 1.0):
        torch.testing.assert_close(draw(3, eta), draw(3, eta), atol=0, rtol=0)
        assert (draw(3, eta) - draw(4, eta)).abs().mean() > 0.05
    ancestral = [
        ddpm_sample(tiny_unet, process, labels, (1, 8, 8), guidance=2.0, generator=torch.Generator().manual_seed(5))
        for _ in range(2)
    ]
    torch.testing.assert_close(ancestral[0], ancestral[1], atol=0, rtol=0)


def test_guidance_combines_conditional_and_unconditional_outputs(tiny_unet):
    x, t, y = torch.randn(3, 1, 8, 8), torch.tensor([5, 10, 20]), torch.tensor([0, 1, 2])
    with torch.no_grad():
        cond, uncond = tiny_unet(x, t, y), tiny_unet(x, t, torch.full_like(y, 3))
        torch.testing.assert_close(guided_output(tiny_unet, x, t, y, 1.0, 3), cond)
        torch.testing.assert_close(guided_output(tiny_unet, x, t, y, 0.0, 3), uncond, atol=1e-5, rtol=0)
        torch.testing.assert_close(
            guided_output(tiny_unet, x, t, y, 3.0, 3), uncond + 3 * (cond - uncond), atol=1e-5, rtol=0
        )


class LabelSpy(nn.Module):
    """A stand-in denoiser (predicts zero noise) that records the labels of every call."""

    def __init__(self, n_classes: int | None):
        super().__init__()
        if n_classes is not None:
            self.n_classes = n_classes
        self.seen: list[list[int]] = []

    def forward(self, x, t, y):
        self.seen.append(y.tolist())
        return torch.zeros_like(x)


SAMPLERS = {
    "ddim": lambda model, process, labels, **kw: ddim_sample(model, process, labels, (1, 2, 2), steps=4, **kw),
    "ddpm": lambda model, process, labels, **kw: ddpm_sample(model, process, labels, (1, 2, 2), **kw),
}


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("given", ["attribute", "argument"])
def test_guidance_asks_the_model_for_the_null_label_n_classes(sampler, given):
    """With guidance != 1 each call is [labels, null]: the null half must be label n_classes (3), never class 0."""
    process, labels = GaussianDiffusion(10, "cosine", "epsilon"), torch.tensor([0, 2, 1])
    spy = LabelSpy(3) if given == "attribute" else LabelSpy(None)
    extra = {} if given == "attribute" else {"n_classes": 3}
    SAMPLERS[sampler](spy, process, labels, guidance=2.0, generator=torch.Generator().manual_seed(0), **extra)
    assert spy.seen, "the sampler never called the model"
    for call in spy.seen:
        assert call == [0, 2, 1, 3, 3, 3]


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_samplers_refuse_a_model_that_hides_n_classes(sampler):
    """A wrapper without n_classes must not silently make class 0 the null label."""
    with pytest.raises(TriadError, match="n_classes"):
        SAMPLERS[sampler](LabelSpy(None), GaussianDiffusion(10), torch.tensor([1]), guidance=2.0)


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize(
    "labels,guidance,match",
    [
        ([3], 2.0, "labels"),  # 3 of 3 classes is the null label, not a class
        ([0, -1], 1.0, "labels"),
        ([1], -0.5, "guidance"),
    ],
)
def test_samplers_reject_labels_outside_the_classes_and_negative_guidance(sampler, labels, guidance, match):
    spy = LabelSpy(3)
    with pytest.raises(TriadError, match=match):
        SAMPLERS[sampler](spy, GaussianDiffusion(10), torch.tensor(labels), guidance=guidance)
    assert spy.seen == []  # refused before any work


@pytest.mark.parametrize("steps", [0, -1, 11, 2.5])
def test_ddim_rejects_steps_outside_one_to_t(steps):
    """Zero steps would return the starting noise; more than T would repeat timesteps."""
    spy = LabelSpy(3)
    with pytest.raises(TriadError, match=r"steps.*\[1, timesteps=10\]"):
        ddim_sample(spy, GaussianDiffusion(10), torch.tensor([1]), (1, 2, 2), steps=steps)
    assert spy.seen == []
    with pytest.raises(TriadError, match="steps"):
        ddim_timesteps(10, steps)
