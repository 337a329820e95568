"""The forward (noising) process of a Gaussian diffusion model and what the denoiser learns from it.

Notation of Ho et al. (2020), with timesteps indexed 0 .. T-1:

    q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I)
    q(x_t | x_0)     = N(sqrt(abar_t) x_0, (1 - abar_t) I),   abar_t = prod_{s <= t} (1 - beta_s)

so ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps`` in one step. The denoiser is trained to predict
epsilon, x_0 or the velocity ``v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0`` (Salimans & Ho, 2022);
``GaussianDiffusion.split`` turns any of the three back into the pair (x_0, eps) the samplers need.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

Schedule = Literal["linear", "cosine"]
Prediction = Literal["epsilon", "x0", "v"]


def linear_betas(timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Ho et al.'s schedule, (T,) float64: beta rises linearly from 1e-4 to 0.02 at T = 1000.

    For other T the endpoints are scaled by 1000 / T so that abar_T stays close to zero.
    """
    scale = 1000 / timesteps
    return torch.linspace(scale * beta_start, min(scale * beta_end, 0.999), timesteps, dtype=torch.float64)


def cosine_betas(timesteps: int, offset: float = 0.008) -> torch.Tensor:
    """Nichol & Dhariwal's schedule, (T,) float64: abar_t follows cos^2 from 1 to 0, betas clipped at 0.999."""
    steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    abar = torch.cos((steps + offset) / (1 + offset) * math.pi / 2) ** 2
    return (1 - abar[1:] / abar[:-1]).clamp(max=0.999)


def make_betas(schedule: Schedule, timesteps: int) -> torch.Tensor:
    if schedule == "linear":
        return linear_betas(timesteps)
    if schedule == "cosine":
        return cosine_betas(timesteps)
    raise ValueError(f"unknown noise schedule {schedule!r}; choose linear or cosine")


def _at(values: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """values[t] (B,) reshaped to broadcast against x (B, C, H, W)."""
    return values[t].to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))


class GaussianDiffusion(nn.Module):
    """The fixed noising process: schedules as buffers, closed-form q(x_t | x_0), training targets.

    All tensors of images are (B, C, H, W); timesteps t are (B,) integers in [0, T).
    The buffers are derived from the config, so they are not part of the state_dict.
    """

    def __init__(self, timesteps: int, schedule: Schedule = "cosine", prediction: Prediction = "epsilon"):
        super().__init__()
        if prediction not in ("epsilon", "x0", "v"):
            raise ValueError(f"unknown prediction target {prediction!r}; choose epsilon, x0 or v")
        self.timesteps = timesteps
        self.prediction = prediction
        betas = make_betas(schedule, timesteps)
        abar = torch.cumprod(1 - betas, dim=0)
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
        self.register_buffer("betas", betas.float(), persistent=False)
        self.register_buffer("alphas_cumprod", abar.float(), persistent=False)
        # the variance of q(x_{t-1} | x_t, x_0): what ancestral sampling adds back at step t
        self.register_buffer("posterior_variance", (betas * (1 - abar_prev) / (1 - abar)).float(), persistent=False)

    # --- the forward process ---------------------------------------------------------------------
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """A draw of x_t ~ q(x_t | x_0) given the standard normal ``noise``."""
        abar = _at(self.alphas_cumprod, t, x0)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    def q_step(self, x_prev: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """One step of the chain: x_t ~ q(x_t | x_{t-1}) given ``noise`` (x_prev is x_0 when t = 0)."""
        beta = _at(self.betas, t, x_prev)
        return (1 - beta).sqrt() * x_prev + beta.sqrt() * noise

    # --- what the network predicts ---------------------------------------------------------------
    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The regression target for the configured prediction."""
        if self.prediction == "epsilon":
            return noise
        if self.prediction == "x0":
            return x0
        abar = _at(self.alphas_cumprod, t, x0)
        return abar.sqrt() * noise - (1 - abar).sqrt() * x0

    def split(self, output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, clip: bool = False):
        """The network's output at (x_t, t) -> (x0_hat, eps_hat).

        ``clip`` clamps x0_hat to the data range [-1, 1] and recomputes eps_hat to agree with it.
        """
        abar = _at(self.alphas_cumprod, t, x_t)
        if self.prediction == "epsilon":
            eps = output
            x0 = (x_t - (1 - abar).sqrt() * eps) / abar.sqrt()
        elif self.prediction == "x0":
            x0 = output
            eps = (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()
        else:
            x0 = abar.sqrt() * x_t - (1 - abar).sqrt() * output
            eps = (1 - abar).sqrt() * x_t + abar.sqrt() * output
        if clip:
            x0 = x0.clamp(-1, 1)
            eps = (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()
        return x0, eps

    def loss(
        self, model: nn.Module, x0: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The simple loss of Ho et al.: mean squared error of the prediction at a uniform random t."""
        t = torch.randint(0, self.timesteps, (x0.shape[0],), device=x0.device, generator=generator)
        noise = torch.randn(x0.shape, device=x0.device, generator=generator, dtype=x0.dtype)
        output = model(self.q_sample(x0, t, noise), t, labels)
        return torch.nn.functional.mse_loss(output, self.target(x0, noise, t))
