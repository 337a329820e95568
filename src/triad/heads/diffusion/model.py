"""The network of the diffusion head: the denoising UNet (the judge classifier is in ``judge.py``).

The UNet follows Ho et al. (2020) "Denoising Diffusion Probabilistic Models", scaled down: residual
blocks with GroupNorm, a sinusoidal embedding of the timestep, self-attention at low resolutions and
skip connections from every encoder block to the decoder. Class conditioning adds a learned label
embedding to the time embedding; label ``n_classes`` is the null class that classifier-free guidance
(Ho & Salimans, 2022) trains on and samples against.

Shapes: B batch, C channels, H = W image size, E embedding width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from triad.heads.diffusion.config import UNetConfig


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=min(8, channels), num_channels=channels)


class SinusoidalTimeEmbedding(nn.Module):
    """Timestep t (B,) -> (B, dim): sines and cosines of t at geometrically spaced frequencies."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        frequencies = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device) / half)
        angles = t.float()[:, None] * frequencies[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=1)


class ResidualBlock(nn.Module):
    """(B, C_in, H, W), embedding (B, E) -> (B, C_out, H, W).

    GroupNorm -> SiLU -> conv, plus a per-channel shift from the time+class embedding, then
    GroupNorm -> SiLU -> dropout -> conv, added to the (1x1-projected) input.
    """

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, out_channels)
        self.norm2 = group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb_proj(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return h + self.skip(x)


class SelfAttention(nn.Module):
    """(B, C, H, W) -> (B, C, H, W): multi-head self-attention over the H*W positions, residual."""

    def __init__(self, channels: int, heads: int):
        super().__init__()
        if channels % heads:
            raise ValueError(f"{channels} channels do not split into {heads} attention heads")
        self.heads = heads
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        # (B, heads, H*W, C/heads) for attention over positions
        attended = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.out(attended.transpose(-1, -2).reshape(b, c, h, w))


class Downsample(nn.Module):
    """(B, C, H, W) -> (B, C, H/2, W/2) with a stride-2 convolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """(B, C, H, W) -> (B, C, 2H, 2W): nearest-neighbour upsampling, then a convolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """The denoiser: noisy images x_t (B, C, H, W), timesteps t (B,), labels y (B,) -> (B, C, H, W).

    ``y == n_classes`` is the null (unconditional) label; ``n_classes = 0`` is an unconditional model,
    whose label embedding holds the null row alone (a learned constant). The output is epsilon, x_0 or v, whichever
    the diffusion process was configured to predict; the network does not know which.
    ``config.patch_size`` p > 1 runs the whole UNet on (H/p, W/p) grids of p x p patches: p^2 times
    cheaper, the trade the default CPU profile makes.
    """

    def __init__(self, config: UNetConfig, image_channels: int, image_size: int, n_classes: int):
        super().__init__()
        self.config = config
        channels, channel_mults, patch_size = config.channels, config.channel_mults, config.patch_size
        num_res_blocks, dropout = config.num_res_blocks, config.dropout
        attention_resolutions, attention_heads = config.attention_resolutions, config.attention_heads
        levels = len(channel_mults)
        if image_size % patch_size or (image_size // patch_size) % 2 ** (levels - 1):
            raise ValueError(
                f"image_size {image_size} cannot be cut into {patch_size}x{patch_size} patches and then halved "
                f"{levels - 1} times: change patch_size or channel_mults, or the image size"
            )
        resolutions = [image_size // patch_size // 2**i for i in range(levels)]
        unknown = sorted(set(attention_resolutions) - set(resolutions))
        if unknown:
            raise ValueError(f"attention_resolutions {unknown} are not among this UNet's resolutions {resolutions}")
        self.n_classes = n_classes
        self.image_size = image_size
        emb_dim = 4 * channels
        self.time_embedding = nn.Sequential(
            SinusoidalTimeEmbedding(channels), nn.Linear(channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        self.label_embedding = nn.Embedding(n_classes + 1, emb_dim)  # the last row is the null class

        def attention(ch: int, resolution: int) -> nn.Module:
            return SelfAttention(ch, attention_heads) if resolution in attention_resolutions else nn.Identity()

        # encoder: every block's output is kept as a skip connection for the decoder. With patch_size p
        # the stem first folds each p x p patch into channels (space-to-depth), so the UNet runs at H/p.
        self.stem = nn.Sequential(
            nn.PixelUnshuffle(patch_size), nn.Conv2d(image_channels * patch_size**2, channels, 3, padding=1)
        )
        self.down = nn.ModuleList()
        skip_channels = [channels]
        ch = channels
        for level, mult in enumerate(channel_mults):
            for _ in range(num_res_blocks):
                self.down.append(
                    nn.ModuleList(
                        [
                            ResidualBlock(ch, channels * mult, emb_dim, dropout),
                            attention(channels * mult, resolutions[level]),
                        ]
                    )
                )
                ch = channels * mult
                skip_channels.append(ch)
            if level < levels - 1:
                self.down.append(Downsample(ch))
                skip_channels.append(ch)

        self.mid_block1 = ResidualBlock(ch, ch, emb_dim, dropout)
        self.mid_attention = SelfAttention(ch, attention_heads)
        self.mid_block2 = ResidualBlock(ch, ch, emb_dim, dropout)

        # decoder: one more block per level than the encoder, each eating one skip connection
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mults))):
            for _ in range(num_res_blocks + 1):
                block = ResidualBlock(ch + skip_channels.pop(), channels * mult, emb_dim, dropout)
                self.up.append(nn.ModuleList([block, attention(channels * mult, resolutions[level])]))
                ch = channels * mult
            if level > 0:
                self.up.append(Upsample(ch))

        out_conv = nn.Conv2d(ch, image_channels * patch_size**2, 3, padding=1)
        nn.init.zeros_(out_conv.weight)  # start as the zero predictor: a calm first step
        nn.init.zeros_(out_conv.bias)
        self.head = nn.Sequential(group_norm(ch), nn.SiLU(), out_conv, nn.PixelShuffle(patch_size))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        emb = self.time_embedding(t) + self.label_embedding(y)
        h = self.stem(x)
        skips = [h]
        for layer in self.down:
            if isinstance(layer, Downsample):
                h = layer(h)
            else:
                block, attn = layer
                h = attn(block(h, emb))
            skips.append(h)
        h = self.mid_block2(self.mid_attention(self.mid_block1(h, emb)), emb)
        for layer in self.up:
            if isinstance(layer, Upsample):
                h = layer(h)
            else:
                block, attn = layer
                h = attn(block(torch.cat([h, skips.pop()], dim=1), emb))
        return self.head(h)
