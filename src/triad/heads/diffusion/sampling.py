"""Samplers: ancestral DDPM (Ho et al., 2020) and DDIM (Song et al., 2021), with classifier-free guidance.

Both start from x_{T-1} ~ N(0, I) and walk down to x_0; every random draw comes from the caller's
``torch.Generator``, so the same seed gives the same images. DDIM with ``eta = 1`` on all T steps
adds exactly the posterior variance at every step and is then the same chain as DDPM; ``eta = 0``
is deterministic and allows few steps.

The label ``n_classes`` is the null (unconditional) label of classifier-free guidance, so the samplers
must know the number of classes: they take ``n_classes`` or read ``model.n_classes`` (the UNet has it),
and refuse a model that offers neither rather than guess. An unconditional model has ``n_classes = 0``:
its only label is the null label 0, and guidance has nothing to push towards (it is not applied).
Arguments that do not fit (steps outside [1, T], a label outside [0, n_classes), a negative guidance
scale) raise ``SamplingError``.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from triad.errors import TriadError
from triad.heads.diffusion.process import GaussianDiffusion


class SamplingError(TriadError, ValueError):
    """Sampler arguments that do not fit the model or the noise schedule."""


def class_count(model: nn.Module, n_classes: int | None = None) -> int:
    """The number of real classes K (the null label is K): ``n_classes`` if given, else ``model.n_classes``.

    K = 0 is an unconditional model."""
    if n_classes is None:
        n_classes = getattr(model, "n_classes", None)
        if n_classes is None:
            raise SamplingError(
                f"the sampler cannot tell the null label of classifier-free guidance: {type(model).__name__} has "
                f"no n_classes attribute. Pass n_classes= to the sampler, or set n_classes on the wrapper."
            )
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 0:
        raise SamplingError(f"n_classes must be an integer >= 0 (0: unconditional), got {n_classes!r}")
    return int(n_classes)


def check_labels(labels: torch.Tensor, n_classes: int) -> None:
    """labels must be (B,) integers in [0, n_classes); n_classes itself is the null label, not a class.

    An unconditional model (n_classes 0) takes only the null label 0, one per image to draw."""
    if labels.dim() != 1 or labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise SamplingError(
            f"labels must be a 1-D integer tensor (B,), got {labels.dtype} of shape {tuple(labels.shape)}"
        )
    if n_classes == 0:
        if (labels != 0).any():
            raise SamplingError("this model is unconditional: give labels of 0 (the null label), one per image")
        return
    bad = labels[(labels < 0) | (labels >= n_classes)]
    if len(bad):
        raise SamplingError(
            f"labels {sorted(set(bad.tolist()))} are not classes: give labels in [0, {n_classes - 1}] "
            f"({n_classes} is the null label, which guidance adds by itself)"
        )


def check_guidance(guidance: float) -> None:
    if not np.isfinite(guidance) or guidance < 0:
        raise SamplingError(f"guidance must be a finite scale >= 0 (1 = plain conditional), got {guidance}")


def guided_output(
    model: nn.Module, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor, guidance: float, null_label: int
) -> torch.Tensor:
    """Classifier-free guidance: uncond + w * (cond - uncond), in one batch of 2B; w = 1 is plain conditional.

    An unconditional model (null_label 0) has cond == uncond: one plain pass, whatever w."""
    if guidance == 1.0 or null_label == 0:
        return model(x, t, labels)
    null = torch.full_like(labels, null_label)
    cond, uncond = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, null])).chunk(2)
    return uncond + guidance * (cond - uncond)


def ddim_timesteps(timesteps: int, steps: int) -> list[int]:
    """``steps`` distinct timesteps evenly spaced from T-1 down to 0 (all of them when steps == T).

    ``steps`` must lie in [1, T]: zero steps would return the starting noise, and more than T would
    repeat timesteps.
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 1 <= steps <= timesteps:
        raise SamplingError(f"DDIM steps must be a whole number in [1, timesteps={timesteps}], got {steps!r}")
    return [int(t) for t in np.round(np.linspace(timesteps - 1, 0, steps))]


@torch.no_grad()
def ddim_sample(
    model: nn.Module,
    diffusion: GaussianDiffusion,
    labels: torch.Tensor,
    shape: tuple[int, ...],
    steps: int,
    eta: float = 0.0,
    guidance: float = 1.0,
    generator: torch.Generator | None = None,
    clip: bool = True,
    progress: bool = False,
    n_classes: int | None = None,
) -> torch.Tensor:
    """DDIM: labels (B,) in [0, n_classes) -> images (B, *shape) in (about) [-1, 1].

    x_{t'} = sqrt(abar_{t'}) x0_hat + sqrt(1 - abar_{t'} - sigma^2) eps_hat + sigma z, where t' is the next
    timestep of the subsequence and sigma = eta * sqrt((1 - abar_{t'}) / (1 - abar_t) * (1 - abar_t / abar_{t'})).
    ``steps`` in [1, T]; ``n_classes`` (default ``model.n_classes``) is also the null label.
    """
    n_classes = class_count(model, n_classes)
    check_labels(labels, n_classes)
    check_guidance(guidance)
    if not eta >= 0:
        raise SamplingError(f"eta must be >= 0 (0 = deterministic, 1 = DDPM's variance), got {eta}")
    sequence = ddim_timesteps(diffusion.timesteps, steps)
    device = labels.device
    x = torch.randn((labels.shape[0], *shape), generator=generator, device=device)
    abar = diffusion.alphas_cumprod
    for i, step in enumerate(
        tqdm(sequence, desc=f"DDIM {steps} steps", disable=not (progress and sys.stderr.isatty()), leave=False)
    ):
        t = torch.full_like(labels, step)
        output = guided_output(model, x, t, labels, guidance, null_label=n_classes)
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
def ddpm_sample(
    model: nn.Module,
    diffusion: GaussianDiffusion,
    labels: torch.Tensor,
    shape: tuple[int, ...],
    guidance: float = 1.0,
    generator: torch.Generator | None = None,
    clip: bool = True,
    progress: bool = False,
    n_classes: int | None = None,
) -> torch.Tensor:
    """Ancestral sampling through all T steps: x_{t-1} ~ q(x_{t-1} | x_t, x0_hat).

    labels (B,) in [0, n_classes) -> images (B, *shape); ``n_classes`` (default ``model.n_classes``) is also
    the null label.
    """
    n_classes = class_count(model, n_classes)
    check_labels(labels, n_classes)
    check_guidance(guidance)
    device = labels.device
    x = torch.randn((labels.shape[0], *shape), generator=generator, device=device)
    abar, betas = diffusion.alphas_cumprod, diffusion.betas
    for step in tqdm(
        range(diffusion.timesteps - 1, -1, -1), desc="DDPM", disable=not (progress and sys.stderr.isatty()), leave=False
    ):
        t = torch.full_like(labels, step)
        output = guided_output(model, x, t, labels, guidance, null_label=n_classes)
        x0, eps = diffusion.split(output, x, t, clip=clip)
        if step == 0:
            return x0
        abar_prev = abar[step - 1]
        # mean of q(x_{t-1} | x_t, x_0) at x_0 = x0_hat (Ho et al., eq. 7)
        mean = (abar_prev.sqrt() * betas[step] * x0 + (1 - betas[step]).sqrt() * (1 - abar_prev) * x) / (1 - abar[step])
        x = mean + diffusion.posterior_variance[step].sqrt() * torch.randn(x.shape, generator=generator, device=device)
    return x
