"""What `triad predict HEAD ...` shows for each head's champion model."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from triad.errors import DataError, TriadError


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
        for source, target in zip(args.sentences, model_predict(args, model, list(args.sentences))):
            print(f"{source}\n  -> {target}")
    elif args.head == "diffusion":
        from PIL import Image

        images = list(model_predict(args, model, diffusion_request(args))["image"])
        Image.fromarray(image_grid(images)).save(args.out)
        print(f"wrote {len(images)} images of class {args.label} to {args.out}")
    elif args.head == "spread":
        show_spread(args, model)
    else:
        show_transfer(args, model)


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
        raise TriadError(f"the model refused the input: {first_line(exc)} "
                         "(`triad -v predict ...` shows the traceback)") from exc


def first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def diffusion_request(args) -> pd.DataFrame:
    """One request row. ``--steps`` and ``--guidance`` are sent only when given, so that by default the
    model samples with its own trained settings (sample_steps, guidance), as the pipeline measured it."""
    row = {"label": args.label, "n": args.n, "seed": args.seed}
    row.update({key: value for key in ("steps", "guidance") if (value := getattr(args, key)) is not None})
    return pd.DataFrame([row])


def model_modality(model) -> str | None:
    """"image" or "text": the transfer model's input column in its signature, else its logged config."""
    import mlflow

    schema = model.metadata.get_input_schema()
    names = set(schema.input_names()) if schema is not None and schema.has_input_names() else set()
    for modality in ("image", "text"):
        if modality in names:
            return modality
    try:
        return model.unwrap_python_model().config.get("modality")
    except (mlflow.exceptions.MlflowException, AttributeError):  # not a triad transfer model: let it answer
        return None


def read_images(paths: list[str]) -> list[bytes]:
    """The bytes of each PNG or JPEG file; a missing, unreadable or non-image file is a DataError."""
    from triad.heads.transfer.pyfunc import image_kind

    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise DataError(f"no such image file(s): {missing}; pass PNG or JPEG paths, or --text for texts")
    images = []
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise DataError(f"cannot read image file {path}: {exc.strerror}") from None
        if image_kind(data) is None:
            raise DataError(f"not a PNG or JPEG image: {path}")
        images.append(data)
    return images


def show_transfer(args, model) -> None:
    modality = model_modality(model)
    if modality == "text" and not args.text:
        raise TriadError("this model classifies texts: pass --text and the texts, "
                         "e.g. triad predict transfer --text 'In the beginning...'")
    if modality == "image" and args.text:
        raise TriadError("this model classifies images: pass PNG or JPEG paths, without --text")
    if args.text:
        frame = pd.DataFrame({"text": list(args.inputs)})
    else:
        frame = pd.DataFrame({"image": read_images(args.inputs)})
    result = model_predict(args, model, frame)
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
