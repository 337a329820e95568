"""The forward process: schedules, the closed form of q(x_t | x_0), and the prediction targets."""

import pytest
import torch

from triad.heads.diffusion.process import GaussianDiffusion, cosine_betas, linear_betas, make_betas


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
                # relative: at small t the variance 1 - abar_t is tiny, and an absolute tolerance would pass
                # abar at the wrong t. The sample variance of 20,000 draws is within 1% (one sd) of the truth.
                assert draws.var(0).flatten() == pytest.approx([(1 - abar).item()] * 4, rel=0.05)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_alphas_cumprod_is_the_product_of_one_minus_betas(schedule):
    process = GaussianDiffusion(1000, schedule)
    betas = make_betas(schedule, 1000)  # float64, as the process computes its buffers
    assert torch.equal(process.betas, betas.float())
    assert torch.equal(process.alphas_cumprod, torch.cumprod(1 - betas, dim=0).float())


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_q_sample_uses_abar_at_t_itself(schedule):
    """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps at every t, checked term by term (no sampling noise)."""
    process = GaussianDiffusion(50, schedule)
    t = torch.arange(50)
    ones, zeros = torch.ones(50, 1, 1, 1), torch.zeros(50, 1, 1, 1)
    abar = process.alphas_cumprod
    torch.testing.assert_close(process.q_sample(ones, t, zeros).flatten(), abar.sqrt(), atol=0, rtol=1e-6)
    torch.testing.assert_close(process.q_sample(zeros, t, ones).flatten(), (1 - abar).sqrt(), atol=0, rtol=1e-6)


@pytest.mark.parametrize("prediction", ["epsilon", "x0", "v"])
def test_clipping_recomputes_eps_to_agree_with_the_clamped_x0(prediction):
    """After clamping x0_hat to [-1, 1], eps_hat is recomputed to agree with it.

    So x_t = sqrt(abar) x0_hat + sqrt(1 - abar) eps_hat still holds, as the DDIM update assumes.
    """
    torch.manual_seed(0)
    process = GaussianDiffusion(100, "cosine", prediction)
    x0, noise = torch.randn(64, 1, 4, 4) * 3, torch.randn(64, 1, 4, 4)  # x_0 far outside [-1, 1]
    t = torch.randint(0, 99, (64,))
    x_t = process.q_sample(x0, t, noise)
    x0_hat, eps_hat = process.split(process.target(x0, noise, t), x_t, t, clip=True)
    assert x0_hat.abs().max() <= 1 and (x0_hat.abs() == 1).float().mean() > 0.3  # it did clamp, a lot
    abar = process.alphas_cumprod[t].reshape(-1, 1, 1, 1)
    torch.testing.assert_close(abar.sqrt() * x0_hat + (1 - abar).sqrt() * eps_hat, x_t, atol=1e-4, rtol=1e-4)


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
