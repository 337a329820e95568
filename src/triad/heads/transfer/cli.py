"""``triad predict transfer``: classify image files or texts with a registered transfer model."""

from __future__ import annotations

import argparse
from pathlib import Path

from triad.errors import DataError, TriadError

SUMMARY = "classify images (PNG or JPEG files) or texts"
DESCRIPTION = "Classify PNG or JPEG images (8 or 16 bits), or texts with --text, whichever the model was trained on."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", help="PNG or JPEG paths (or texts with --text)")
    parser.add_argument("--text", action="store_true", help="inputs are texts, not image paths")


def model_modality(model) -> str | None:
    """ "image" or "text": the model's input column in its signature, else its logged config."""
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


def show(args: argparse.Namespace, model) -> None:
    import pandas as pd

    from triad.predict import model_predict

    modality = model_modality(model)
    if modality == "text" and not args.text:
        raise TriadError(
            "this model classifies texts: pass --text and the texts, "
            "e.g. triad predict transfer --text 'In the beginning...'"
        )
    if modality == "image" and args.text:
        raise TriadError("this model classifies images: pass PNG or JPEG paths, without --text")
    if args.text:
        frame = pd.DataFrame({"text": list(args.inputs)})
    else:
        frame = pd.DataFrame({"image": read_images(args.inputs)})
    result = model_predict(args, model, frame)
    result.insert(0, "input", list(args.inputs))
    print(result.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
