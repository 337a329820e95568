"""Samplers: ancestral DDPM (Ho et al., 2020) and DDIM (Song et al., 2021), with classifier-free guidance.

Both start from x_{T-1} ~ N(0, I) and walk down to x_0; every random draw comes from the caller's
``torch.Generator``, so the same seed gives the same images. DDIM with ``eta = 1`` on all T steps
adds exactly the posterior variance at every step and is then the same chain as DDPM; ``eta = 0``
is deterministic and allows few steps.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from triad.heads.diffusion.process import GaussianDiffusion


def guided_output(model: nn.Module, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor,
                  guidance: float, null_label: int) -> torch.Tensor:
    """Classifier-free guidance: uncond + w * (cond - uncond), in one batch of 2B; w = 1 is plain conditional."""
    if guidance == 1.0:
        return model(x, t, labels)
    null = torch.full_like(labels, null_label)
    cond, uncond = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, null])).chunk(2)
    return uncond + guidance * (cond - uncond)


def ddim_timesteps(timesteps: int, steps: int) -> list[int]:
    """``steps`` timesteps evenly spaced from T-1 down to 0 (all of them when steps == T)."""
    return [int(t) for t in np.round(np.linspace(timesteps - 1, 0, steps))]


@torch.no_grad()
def ddim_sample(model: nn.Module, diffusion: GaussianDiffusion, labels: torch.Tensor, shape: tuple[int, ...],
                steps: int, eta: float = 0.0, guidance: float = 1.0, generator: torch.Generator | None = None,
                clip: bool = True, progress: bool = False) -> torch.Tensor:
    """DDIM: labels (B,) -> images (B, *shape) in (about) [-1, 1].

    x_{t'} = sqrt(abar_{t'}) x0_hat + sqrt(1 - abar_{t'} - sigma^2) eps_hat + sigma z, where t' is the next
    timestep of the subsequence and sigma = eta * sqrt((1 - abar_{t'}) / (1 - abar_t) * (1 - abar_t / abar_{t'})).
    """
    device = labels.device
    x = torch.randn((labels.shape[0], *shape), generator=generator, device=device)
    sequence = ddim_timesteps(diffusion.timesteps, steps)
    abar = diffusion.alphas_cumprod
    null_label = getattr(model, "n_classes", 0)
    for i, step in enumerate(tqdm(sequence, desc=f"DDIM {steps} steps", disable=not progress, leave=False)):
        t = torch.full_like(labels, step)
        output = guided_output(model, x, t, labels, guidance, null_label)
        x0, eps = diffusion.split(output, x, t, clip=clip)
        if i == len(sequence) - 1:
            return x0
        abar_t, abar_next = abar[step], abar[sequence[i + 1]]
        sigma = eta * ((1 - abar_next) / (1 - abar_t) * (1 - abar_t / abar_next)).sqrt()
        x = abar_next.sqrt() * x0 + (1 - abar_next - sigma**2).clamp(min=0).sqrt() * eps
        if eta > 0:
            x = x + sigma * torch.randn(x.shape, generator=generator, device=device)
    return x


@torch.no_grad()
def ddpm_sample(model: nn.Module, diffusion: GaussianDiffusion, labels: torch.Tensor, shape: tuple[int, ...],
                guidance: float = 1.0, generator: torch.Generator | None = None, clip: bool = True,
                progress: bool = False) -> torch.Tensor:
    """Ancestral sampling through all T steps: x_{t-1} ~ q(x_{t-1} | x_t, x0_hat), labels (B,) -> (B, *shape)."""
    device = labels.device
    x = torch.randn((labels.shape[0], *shape), generator=generator, device=device)
    abar, betas = diffusion.alphas_cumprod, diffusion.betas
    null_label = getattr(model, "n_classes", 0)
    for step in tqdm(range(diffusion.timesteps - 1, -1, -1), desc="DDPM", disable=not progress, leave=False):
        t = torch.full_like(labels, step)
        output = guided_output(model, x, t, labels, guidance, null_label)
        x0, eps = diffusion.split(output, x, t, clip=clip)
        if step == 0:
            return x0
        abar_prev = abar[step - 1]
        # mean of q(x_{t-1} | x_t, x_0) at x_0 = x0_hat (Ho et al., eq. 7)
        mean = (abar_prev.sqrt() * betas[step] * x0 + (1 - betas[step]).sqrt() * (1 - abar_prev) * x) / (1 - abar[step])
        x = mean + diffusion.posterior_variance[step].sqrt() * torch.randn(x.shape, generator=generator, device=device)
    return x

