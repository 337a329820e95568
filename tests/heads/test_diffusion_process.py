"""The forward process: schedules, the closed form of q(x_t | x_0), and the prediction targets."""

import pytest
import torch

from triad.heads.diffusion.process import GaussianDiffusion, cosine_betas, linear_betas


@pytest.mark.parametrize("timesteps", [50, 1000])
def test_linear_schedule_endpoints_and_monotone(timesteps):
    betas = linear_betas(timesteps)
    scale = 1000 / timesteps
    assert betas[0].item() == pytest.approx(1e-4 * scale)
    assert betas[-1].item() == pytest.approx(0.02 * scale)
    assert (betas.diff() > 0).all()
    abar = torch.cumprod(1 - betas, 0)
    assert (abar.diff() < 0).all()
    assert abar[0] > 0.99 and abar[-1] < 1e-3  # from (almost) data to (almost) pure noise


@pytest.mark.parametrize("timesteps", [50, 1000])
def test_cosine_schedule_endpoints_and_monotone(timesteps):
    betas = cosine_betas(timesteps)
    assert (betas > 0).all() and (betas <= 0.999).all()
    abar = torch.cumprod(1 - betas, 0)
    assert (abar.diff() < 0).all()
    assert abar[0] > 0.99 and abar[-1] < 1e-3
    # the point of the cosine schedule: abar falls more gently than the linear one mid-way
    linear_abar = torch.cumprod(1 - linear_betas(timesteps), 0)
    assert abar[timesteps // 2] > linear_abar[timesteps // 2]


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_closed_form_matches_iterating_the_one_step_process(schedule):
    """x_t from T one-step updates has the mean sqrt(abar_t) x_0 and variance 1 - abar_t of q(x_t | x_0)."""
    torch.manual_seed(0)
    timesteps, n = 200, 20_000
    process = GaussianDiffusion(timesteps, schedule)
    x0 = torch.tensor([-0.9, -0.2, 0.4, 1.0]).repeat(n, 1)[:, :, None, None]  # (n, 4, 1, 1): 4 "pixels"
    x = x0
    for t in range(timesteps):
        x = process.q_step(x, torch.full((n,), t), torch.randn_like(x))
        if t in (0, 20, 100, timesteps - 1):
            abar = process.alphas_cumprod[t]
            closed = process.q_sample(x0, torch.full((n,), t), torch.randn_like(x0))
            for draws in (x, closed):
                assert draws.mean(0).flatten() == pytest.approx((abar.sqrt() * x0[0]).flatten().tolist(), abs=0.03)
                assert draws.var(0).flatten() == pytest.approx([(1 - abar).item()] * 4, abs=0.03)


@pytest.mark.parametrize("prediction", ["epsilon", "x0", "v"])
def test_split_inverts_the_training_target(prediction):
    """Given the true target at (x_t, t), ``split`` recovers the true x_0 and noise."""
    torch.manual_seed(0)
    process = GaussianDiffusion(100, "cosine", prediction)
    x0, noise = torch.rand(8, 1, 4, 4) * 2 - 1, torch.randn(8, 1, 4, 4)
    t = torch.randint(0, 99, (8,))  # t = T-1 has abar ~ 0, where x_0 is not recoverable from epsilon
    x_t = process.q_sample(x0, t, noise)
    x0_hat, eps_hat = process.split(process.target(x0, noise, t), x_t, t)
    torch.testing.assert_close(x0_hat, x0, atol=2e-3, rtol=0)
    torch.testing.assert_close(eps_hat, noise, atol=2e-3, rtol=0)
