"""``triad predict diffusion``: generate images (of one class) into a PNG grid.

A class-conditional model takes the class by name (``--class NAME``: for a model trained on your own
folder, the name of a class sub-folder) or by index (``--label I``); an unconditional model (trained on a
flat folder) takes neither. ``check`` refuses malformed arguments before the model loads; which classes a
model has is known only once it has loaded, so an unknown class name is refused by the model itself,
with the list of its classes.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

SUMMARY = "generate images (of a class) into a PNG grid"
DESCRIPTION = (
    "Generate images and write them as a PNG grid: of one class (--class NAME or --label INDEX) for a "
    "class-conditional model, or without a class for an unconditional one (trained on a flat folder)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--class",
        dest="class_name",
        metavar="NAME",
        default=None,
        help="class to generate, by name (your data's class folder name); leave out for an unconditional model",
    )
    which.add_argument("--label", type=int, default=None, help="class to generate, by index (0, 1, ...)")
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


def check(args: argparse.Namespace) -> None:
    """The arguments' form, before the model loads (nothing heavy imported): TriadError (exit 2) naming the flag."""
    from triad.errors import TriadError

    if args.class_name is not None and not args.class_name.strip():
        raise TriadError("--class is empty: give a class name of the model (a class folder name of its data)")
    if args.label is not None and args.label < 0:
        raise TriadError(f"--label {args.label}: a class index is 0 or more (or give the class by name: --class NAME)")
    if args.n < 1:
        raise TriadError(f"--n {args.n}: give a number of images of at least 1")
    if args.steps is not None and args.steps < 1:
        raise TriadError(f"--steps {args.steps}: give a number of DDIM steps of at least 1")
    if args.guidance is not None and not (math.isfinite(args.guidance) and args.guidance >= 0):
        raise TriadError(f"--guidance {args.guidance}: give a finite scale >= 0 (1 = plain conditional)")
    if args.seed < 0:
        raise TriadError(f"--seed {args.seed}: give a seed of 0 or more")
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise TriadError(f"--out {out}: the grid is written as a PNG; give a file name ending in .png")
    if out.is_dir():
        raise TriadError(f"--out {out} is a folder; give a file name ending in .png, e.g. {out / 'samples.png'}")
    if not out.absolute().parent.is_dir():
        raise TriadError(f"--out {out}: the folder {out.absolute().parent} does not exist; create it first")


def request(args: argparse.Namespace):
    """One request row. ``--steps`` and ``--guidance`` are sent only when given, so that by default the
    model samples with its own trained settings (sample_steps, guidance), as the pipeline measured it.
    The class goes as ``label`` (an index) or ``class`` (a name), or not at all (an unconditional model)."""
    import pandas as pd

    row = {"label": args.label} if args.label is not None else {}
    if args.class_name is not None:
        row["class"] = args.class_name
    row.update({"n": args.n, "seed": args.seed})
    row.update({key: value for key in ("steps", "guidance") if (value := getattr(args, key)) is not None})
    return pd.DataFrame([row])


def show(args: argparse.Namespace, model) -> None:
    from PIL import Image

    from triad.predict import image_grid, model_predict

    images = list(model_predict(args, model, request(args))["image"])
    Image.fromarray(image_grid(images)).save(args.out)
    which = (
        f"class {args.class_name!r}"
        if args.class_name is not None
        else f"class {args.label}"
        if args.label is not None
        else "no class (an unconditional model)"
    )
    print(f"wrote {len(images)} images of {which} to {args.out}")
