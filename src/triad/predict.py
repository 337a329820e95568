"""What `triad predict HEAD ...` shows for each head's champion model."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from triad.errors import DataError


def image_grid(images: list[np.ndarray], columns: int | None = None) -> np.ndarray:
    """Tile equally sized (H, W) or (H, W, C) uint8 images into one grid image, row by row."""
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    height, width = images[0].shape[:2]
    grid = np.zeros((rows * height, columns * width, *images[0].shape[2:]), dtype=np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        grid[r * height:(r + 1) * height, c * width:(c + 1) * width] = image
    return grid


def show(args, model) -> None:
    if args.head == "translator":
        for source, target in zip(args.sentences, model.predict(list(args.sentences))):
            print(f"{source}\n  -> {target}")
    elif args.head == "diffusion":
        from PIL import Image

        request = pd.DataFrame([{"label": args.label, "n": args.n, "steps": args.steps,
                                 "guidance": args.guidance, "seed": args.seed}])
        images = list(model.predict(request)["image"])
        Image.fromarray(image_grid(images)).save(args.out)
        print(f"wrote {len(images)} images of class {args.label} to {args.out}")
    elif args.head == "spread":
        show_spread(args, model)
    else:
        if args.text:
            frame = pd.DataFrame({"text": list(args.inputs)})
        else:
            missing = [p for p in args.inputs if not Path(p).is_file()]
            if missing:
                raise DataError(f"no such image file(s): {missing}; pass PNG paths, or --text for texts")
            frame = pd.DataFrame({"image": [Path(p).read_bytes() for p in args.inputs]})
        result = model.predict(frame)
        result.insert(0, "input", list(args.inputs))
        print(result.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def read_edge_list(path: Path) -> list[list[int]]:
    """'u v' integer pairs, one per line; blank lines and '#' comments are skipped."""
    if not path.is_file():
        raise DataError(f"no such edge list file: {path}")
    edges = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        words = line.split("#")[0].split()
        if not words:
            continue
        try:
            u, v = (int(w) for w in words[:2])
        except ValueError:
            raise DataError(f"{path}:{number}: expected two integer node ids 'u v', got {line.strip()!r}") from None
        edges.append([u, v])
    return edges


def show_spread(args, model) -> None:
    request = {"edges": read_edge_list(args.edges), "seeds": list(args.seeds), "process": args.process,
               "p": args.p, "beta": args.beta, "gamma": args.gamma, "t": args.t}
    try:
        result = model.predict(pd.DataFrame([request]))
    except Exception as exc:  # the model's own message says which input was wrong
        raise DataError(f"cannot predict: {exc}") from None
    frame = pd.DataFrame({"node": list(result["nodes"][0]), "probability": list(result["probabilities"][0])})
    frame = frame.sort_values("probability", ascending=False, kind="stable")
    print(frame.head(args.top or len(frame)).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"expected number of nodes reached: {float(result['expected_size'][0]):.2f} of {len(frame)}")
