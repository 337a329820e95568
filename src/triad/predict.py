"""What ``triad predict HEAD ...`` shares across heads; each head's own flags and output live in its
``cli.py`` (``triad.heads.<head>.cli``), found through the head registry."""

from __future__ import annotations

import math

import numpy as np

from triad.errors import TriadError


def image_grid(images: list[np.ndarray], columns: int | None = None) -> np.ndarray:
    """Tile equally sized (H, W) or (H, W, C) uint8 images into one grid image, row by row."""
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    height, width = images[0].shape[:2]
    grid = np.zeros((rows * height, columns * width, *images[0].shape[2:]), dtype=np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        grid[r * height : (r + 1) * height, c * width : (c + 1) * width] = image
    return grid


def show(args, model) -> None:
    """Print (or write) what ``model`` answers to the ``triad predict <args.head>`` request in ``args``."""
    from triad.heads import head_spec

    head_spec(args.head).cli.show(args, model)


def model_predict(args, model, model_input):
    """``model.predict``, with a ValueError or TypeError from it turned into a one-line TriadError (exit 2).

    Models raise those for input they cannot use. Kept narrow so that real bugs still show: only this
    call, only those two types, and with ``-v`` the original exception and its traceback go through.
    """
    try:
        return model.predict(model_input)
    except TriadError:
        raise
    except (ValueError, TypeError) as exc:
        if getattr(args, "verbose", False):
            raise
        raise TriadError(
            f"the model refused the input: {first_line(exc)} (`triad -v predict ...` shows the traceback)"
        ) from exc


def first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
