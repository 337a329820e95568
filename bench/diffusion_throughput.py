"""Throughput of triad's diffusion UNet against Hugging Face diffusers' UNet2DModel, same run.

Both denoisers get the same shape of work: class-conditional noise prediction on (B, C, H, W) images,
the same widths per level (``--channels`` x ``--channel-mults``), the same number of residual blocks per
level, self-attention at the lowest resolution, a time embedding of 4 x channels and a class embedding
with a null class. Noising uses each library's own scheduler (triad's ``GaussianDiffusion`` and
diffusers' ``DDPMScheduler``), 1000 timesteps, linear betas, epsilon prediction.

Measured on the same device and precision:
- training images/s: forward, MSE loss, backward and an AdamW step;
- sampling images/s of triad's DDIM sampler at several step counts (and diffusers' DDIMScheduler
  driving its own UNet at the same counts, for the ratio).
The two take turns round after round (``bench/timing.py``); figures are medians over the rounds.

Run:  python bench/diffusion_throughput.py [--rounds 5] [--device cuda] [--bf16] [--compile] [--batch-size 128]
Needs diffusers (``pip install diffusers``; not a runtime dependency of triad).
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys

import torch
import torch.nn.functional as F
from timing import compare, take_turns

from triad.heads.diffusion.config import UNetConfig
from triad.heads.diffusion.model import UNet
from triad.heads.diffusion.process import GaussianDiffusion
from triad.heads.diffusion.sampling import ddim_sample


def build_models(args):
    from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

    levels = len(args.channel_mults)
    lowest = args.image_size // 2 ** (levels - 1)
    config = UNetConfig(
        patch_size=1,
        channels=args.channels,
        channel_mults=args.channel_mults,
        num_res_blocks=args.res_blocks,
        attention_resolutions=[lowest],
        attention_heads=4,
        dropout=0.0,
    )
    ours = UNet(config, image_channels=args.image_channels, image_size=args.image_size, n_classes=args.n_classes)
    widths = tuple(args.channels * m for m in args.channel_mults)
    down = tuple("AttnDownBlock2D" if i == levels - 1 else "DownBlock2D" for i in range(levels))
    up = tuple("AttnUpBlock2D" if i == 0 else "UpBlock2D" for i in range(levels))
    theirs = UNet2DModel(
        sample_size=args.image_size,
        in_channels=args.image_channels,
        out_channels=args.image_channels,
        block_out_channels=widths,
        layers_per_block=args.res_blocks,
        down_block_types=down,
        up_block_types=up,
        attention_head_dim=widths[-1] // 4,
        norm_num_groups=8,
        num_class_embeds=args.n_classes + 1,
        time_embedding_type="positional",
    )
    ddpm = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", prediction_type="epsilon")
    ddim = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", prediction_type="epsilon", clip_sample=True)
    return ours, theirs, ddpm, ddim


def count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--image-channels", type=int, default=1)
    parser.add_argument("--n-classes", type=int, default=10)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--channel-mults", type=int, nargs="+", default=[1, 2, 2])
    parser.add_argument("--res-blocks", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, the two taking turns; medians are reported")
    parser.add_argument("--sample-steps", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--sample-batch", type=int, default=64)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast")
    parser.add_argument("--compile", action="store_true", help="torch.compile both denoisers")
    args = parser.parse_args(argv)
    print("command: python bench/diffusion_throughput.py " + shlex.join(argv))
    torch.manual_seed(0)
    device = torch.device(args.device)
    ours, theirs, ddpm, ddim = build_models(args)
    ours, theirs = ours.to(device), theirs.to(device)
    print(
        f"device {device}, precision {'bf16' if args.bf16 else 'fp32'}, compile {args.compile}, "
        f"batch {args.batch_size}, images {args.image_channels}x{args.image_size}x{args.image_size}"
    )
    print(f"parameters: triad {count(ours) / 1e6:.2f}M, diffusers {count(theirs) / 1e6:.2f}M")

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16) if args.bf16 else contextlib.nullcontext()

    diffusion = GaussianDiffusion(1000, schedule="linear", prediction="epsilon").to(device)
    x0 = torch.rand(args.batch_size, args.image_channels, args.image_size, args.image_size, device=device) * 2 - 1
    labels = torch.randint(0, args.n_classes, (args.batch_size,), device=device)
    ddpm_abar = ddpm.alphas_cumprod.to(device)

    def diffusers_forward(net):
        return lambda x, t, y: net(x, t, class_labels=y).sample

    denoisers = {"triad": ours, "diffusers": theirs}
    forwards = {
        "triad": torch.compile(ours) if args.compile else ours,
        "diffusers": diffusers_forward(torch.compile(theirs) if args.compile else theirs),
    }
    steps = {}
    for name, net in denoisers.items():
        forward = forwards[name]
        optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)

        def step(name=name, forward=forward, optimizer=optimizer):
            t = torch.randint(0, 1000, (args.batch_size,), device=device)
            noise = torch.randn_like(x0)
            with autocast():
                if name == "triad":
                    noisy = diffusion.q_sample(x0, t, noise)
                else:
                    abar = ddpm_abar[t].view(-1, 1, 1, 1)
                    noisy = abar.sqrt() * x0 + (1 - abar).sqrt() * noise  # DDPMScheduler.add_noise
                loss = F.mse_loss(forward(noisy, t, labels).float(), noise)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        steps[name] = step
    names = ("triad", "diffusers")
    train = take_turns(steps, args.rounds, args.steps, device)
    compare("training", args.batch_size, "images", train["triad"], train["diffusers"], names)

    sample_labels = torch.randint(0, args.n_classes, (args.sample_batch,), device=device)
    shape = (args.image_channels, args.image_size, args.image_size)
    for n_steps in args.sample_steps:

        def ours_sample(n_steps=n_steps):
            with torch.no_grad(), autocast():
                ddim_sample(ours, diffusion, sample_labels, shape, steps=n_steps)

        def theirs_sample(n_steps=n_steps):
            ddim.set_timesteps(n_steps)
            x = torch.randn(args.sample_batch, *shape, device=device)
            with torch.no_grad(), autocast():
                for t in ddim.timesteps:
                    eps = theirs(x, t.to(device).expand(args.sample_batch), class_labels=sample_labels).sample
                    x = ddim.step(eps.float(), t, x).prev_sample

        long_run = n_steps >= 500
        sample = take_turns(
            {"triad": ours_sample, "diffusers": theirs_sample},
            1 if long_run else args.rounds,
            1,
            device,
            warmup=0 if long_run else 1,
        )
        compare(f"DDIM {n_steps} steps", args.sample_batch, "images", sample["triad"], sample["diffusers"], names)


if __name__ == "__main__":
    main(sys.argv[1:])
