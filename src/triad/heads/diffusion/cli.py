"""``triad predict diffusion``: generate images of one class into a PNG grid."""

from __future__ import annotations

import argparse
from pathlib import Path

SUMMARY = "generate images of a class into a PNG grid"
DESCRIPTION = "Generate images of one class and write them as a PNG grid."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--label", type=int, required=True, help="class to generate")
    parser.add_argument("--n", type=int, default=16, help="number of images")
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="DDIM steps (default: the model's own sample_steps, as its evaluation used)",
    )
    parser.add_argument(
        "--guidance",
        type=float,
        default=None,
        help="classifier-free guidance scale (default: the model's own guidance, as its evaluation used)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("samples.png"), help="output PNG")


def request(args: argparse.Namespace):
    """One request row. ``--steps`` and ``--guidance`` are sent only when given, so that by default the
    model samples with its own trained settings (sample_steps, guidance), as the pipeline measured it."""
    import pandas as pd

    row = {"label": args.label, "n": args.n, "seed": args.seed}
    row.update({key: value for key in ("steps", "guidance") if (value := getattr(args, key)) is not None})
    return pd.DataFrame([row])


def show(args: argparse.Namespace, model) -> None:
    from PIL import Image

    from triad.predict import image_grid, model_predict

    images = list(model_predict(args, model, request(args))["image"])
    Image.fromarray(image_grid(images)).save(args.out)
    print(f"wrote {len(images)} images of class {args.label} to {args.out}")
