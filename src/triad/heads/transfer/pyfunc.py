"""The transfer head's MLflow pyfunc model: images or texts in, class probabilities and label out.

Artifacts (written by ``triad.nn.saved``): ``config`` (JSON: model config, backbone spec, class names,
decision threshold) and ``weights`` (the classifier's state_dict). ``load_context`` rebuilds the
network from the backbone spec with the architecture code and files of the installed packages, then
loads the weights; no pickled module, no registry or network access.

Input: a DataFrame with an ``image`` column of PNG/JPEG bytes, or a ``text`` column (the logged
signature). Called directly, ``predict`` also takes a list of images or texts. Images are read the
way training reads them, as 0-255 pixel values:

- PNG or JPEG bytes; a 16-bit PNG (mode I;16, common for X-rays) is rescaled to 8 bits by its bit
  depth (65535 -> 255), not clipped. A model trained on an image folder (config ``input_size``) decodes
  them with the prepare step's own decoder, to the same size and channels (transparency on white);
- integer arrays (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) with values 0..255. Float arrays are
  refused (is 1.0 white or nearly black?): scale them to 0-255 uint8 first. One 2-D array is
  refused too: pass a list of images.

Texts must be ``str``; bytes given to a text model are refused, not classified as "b'...'".
Input the model cannot read raises ``InputError`` (a ``ValueError``) naming the item and the fix.
Output: a DataFrame with ``label`` (class name), ``label_id`` and one ``p_<class>`` column per class.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch

from triad.errors import TriadError
from triad.heads.transfer.backbones import build_backbone_from_spec
from triad.heads.transfer.config import TransferModel
from triad.heads.transfer.evaluate import decide
from triad.heads.transfer.module import TransferClassifier, inject_lora
from triad.nn.saved import load_network, save_network

if TYPE_CHECKING:
    from triad.heads.transfer.data import TransferDataModule


def saved_model_config(model: dict[str, Any]) -> TransferModel:
    """The ``model`` config a pyfunc saved. One saved before the LoRA keys moved into the ``lora``
    section (flat ``lora_r``, ``lora_alpha``, ``lora_dropout``, ``lora_targets``) is read too."""
    model = dict(model)
    if "lora" not in model:
        model["lora"] = {key: model.pop(f"lora_{key}") for key in ("r", "alpha", "dropout", "targets")}
    return TransferModel.model_validate(model)


def rebuild_classifier(config: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> TransferClassifier:
    """A TransferClassifier from the pyfunc ``config`` and its weights (CPU, eval mode)."""
    cfg = saved_model_config(config["model"])
    backbone = build_backbone_from_spec(config["backbone_spec"], pretrained=False)
    classifier = TransferClassifier(backbone, len(config["class_names"]), cfg)
    if cfg.strategy == "lora":
        inject_lora(classifier, cfg.lora)
    classifier.load_state_dict(state_dict)
    return classifier.eval()


def save_artifacts(
    classifier: TransferClassifier,
    cfg: TransferModel,
    class_names: list[str],
    threshold: float | None,
    image_mode: str | None,
    folder: Path,
    input_size: int | None = None,
) -> dict[str, str]:
    """Write the two artifacts; returns name -> path for ``mlflow.pyfunc.log_model``.

    ``image_mode`` is "L" or "RGB" (how images are decoded), ``input_size`` the size an image folder's
    prepare step converted files to (None: files are read at their own size).
    """
    config = {
        "model": cfg.model_dump(mode="json"),
        "backbone_spec": classifier.backbone.spec,
        "class_names": class_names,
        "threshold": threshold,
        "modality": classifier.backbone.modality,
        "image_mode": image_mode,
        "input_size": input_size,
    }
    return save_network(classifier, config, folder)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # how Pillow opens 16-bit grayscale PNGs


class InputError(TriadError, ValueError):
    """An input the model cannot classify; the message names the item and the fix."""


def image_kind(data: bytes) -> str | None:
    """ "PNG" or "JPEG" from the file's signature bytes, else None."""
    if data.startswith(PNG_SIGNATURE):
        return "PNG"
    if data.startswith(JPEG_SIGNATURE):
        return "JPEG"
    return None


def to_8_bits(pixels: np.ndarray, bit_depth: int) -> np.ndarray:
    """Rescale integer pixels of ``bit_depth`` bits (0 .. 2**bit_depth - 1) to uint8 0..255, rounding."""
    scaled = np.round(pixels.astype(np.float64) * (255 / (2**bit_depth - 1)))
    return np.clip(scaled, 0, 255).astype(np.uint8)


def _decode_file(data: bytes, mode: str) -> np.ndarray:
    from PIL import Image

    kind = image_kind(data)
    if kind is None:
        raise InputError(
            f"not a PNG or JPEG image (its first bytes are {data[:8]!r}); pass the bytes of a PNG or JPEG file"
        )
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(f"a corrupt or truncated {kind} image ({exc})") from None
    if image.mode in SIXTEEN_BIT_MODES:  # only PNG gets here; its IHDR chunk holds the bit depth at byte 24
        image = Image.fromarray(to_8_bits(np.asarray(image), bit_depth=data[24]))
    return np.asarray(image.convert(mode), dtype=np.uint8)


def _check_pixels(pixels: np.ndarray) -> None:
    if pixels.dtype.kind == "f":
        raise InputError(
            f"float pixel values (dtype {pixels.dtype}) are ambiguous: this model reads images as "
            "0-255 uint8, as training does. Scale to 0-255 uint8 first, e.g. "
            "(x * 255).round().astype(np.uint8) for values in [0, 1]"
        )
    if pixels.dtype.kind not in "ui":
        raise InputError(
            f"an array of dtype {pixels.dtype}; pass images as uint8 arrays (values 0-255) or PNG/JPEG bytes"
        )
    if not looks_like_one_image(pixels) or 0 in pixels.shape:
        raise InputError(
            f"an array of shape {pixels.shape}; pass one image as (H, W) or (H, W, C) with C = 1, 3 or 4 channels last"
        )
    low, high = int(pixels.min()), int(pixels.max())
    if low < 0 or high > 255:
        raise InputError(
            f"pixel values range over [{low}, {high}], outside 0-255: scale to 0-255 uint8 first, "
            "e.g. (x * 255 / 65535).round().astype(np.uint8) for 16-bit pixels"
        )


def _decode_array(pixels: np.ndarray, mode: str) -> np.ndarray:
    from PIL import Image

    _check_pixels(pixels)
    pixels = pixels.astype(np.uint8)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    return np.asarray(Image.fromarray(pixels).convert(mode), dtype=np.uint8)


def _decode_file_as_prepared(data: bytes, mode: str, size: int) -> np.ndarray:
    """A file decoded exactly as the image-folder prepare step decoded the training images."""
    from PIL import Image

    from triad.data.own import BadImage
    from triad.data.own import decode_image as decode_own

    try:
        return decode_own(data, size, 1 if mode == "L" else 3)[0]
    except BadImage as exc:
        raise InputError(str(exc)) from None
    except Image.DecompressionBombError as exc:
        raise InputError(f"too large to decode safely ({exc})") from None


def decode_image(item: Any, mode: str, input_size: int | None = None) -> np.ndarray:
    """PNG/JPEG bytes or an integer array -> uint8 array, (H, W) for mode "L", (H, W, 3) for "RGB".

    ``input_size``: a model trained on an image folder decodes files the way its prepare step did
    (transparency on white, any bit depth) at that size; None keeps them at their own size.
    Raises ``InputError`` for anything else; see the module docstring for what is accepted.
    """
    if isinstance(item, (bytes, bytearray, memoryview)):
        if input_size is not None:
            return _decode_file_as_prepared(bytes(item), mode, input_size)
        return _decode_file(bytes(item), mode)
    if isinstance(item, (str, Path)):
        raise InputError(
            f"got a {type(item).__name__} ({str(item)[:40]!r}); this model classifies images: pass "
            "PNG/JPEG bytes (Path(p).read_bytes()) or uint8 arrays"
        )
    return _decode_array(np.asarray(item), mode)


def check_texts(items: list) -> list[str]:
    """The items if every one is a ``str``; bytes (an image file?) and other types are refused."""
    for number, item in enumerate(items):
        if isinstance(item, (bytes, bytearray, memoryview)):
            raise InputError(f"text {number} is bytes ({bytes(item[:8])!r}...); this model classifies texts: pass str")
        if not isinstance(item, str):
            raise InputError(
                f"text {number} is a {type(item).__name__} ({item!r:.40}); this model classifies texts: pass str"
            )
    return list(items)


def looks_like_one_image(array: np.ndarray) -> bool:
    """(H, W), or (H, W, C) with 1, 3 or 4 channels last: one image, not a batch of them."""
    return array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 3, 4))


class TransferPyfunc(mlflow.pyfunc.PythonModel):
    """Serves a fine-tuned TransferClassifier; see the module docstring for input and output."""

    def load_context(self, context) -> None:
        self.config, weights = load_network(context.artifacts)
        self.classifier = rebuild_classifier(self.config, weights)

    @property
    def modality(self) -> str:
        return self.config["modality"]

    def _inputs(self, model_input) -> list:
        column = "text" if self.modality == "text" else "image"
        if isinstance(model_input, (pd.DataFrame, dict)):
            if column not in model_input:
                raise InputError(
                    f"this model classifies {column}s: expected a column {column!r}, got {list(model_input)}"
                )
            return list(model_input[column])
        if isinstance(model_input, (str, bytes, bytearray)):
            raise InputError(f"got one {type(model_input).__name__}; pass a list of {column}s, e.g. [x]")
        if isinstance(model_input, np.ndarray) and column == "image" and looks_like_one_image(model_input):
            raise InputError(
                f"got one array of shape {model_input.shape}, which looks like a single image; "
                "pass a list of images, e.g. [image], or a batch (N, H, W)"
            )
        return list(model_input)

    def _images(self, items: list) -> list[np.ndarray]:
        images = []
        for number, item in enumerate(items):
            try:
                images.append(decode_image(item, self.config["image_mode"], self.config.get("input_size")))
            except InputError as exc:
                raise InputError(f"image {number}: {exc}") from None
        return images

    @torch.no_grad()
    def _probabilities(self, items: list) -> np.ndarray:
        if self.modality == "text":
            return torch.softmax(self.classifier(check_texts(items)), -1).numpy()
        images = self._images(items)
        if len({im.shape for im in images}) == 1:
            return torch.softmax(self.classifier(torch.from_numpy(np.stack(images))), -1).numpy()
        return np.concatenate([torch.softmax(self.classifier(torch.from_numpy(im[None])), -1).numpy() for im in images])

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        items = self._inputs(model_input)
        names = self.config["class_names"]
        probs = self._probabilities(items) if items else np.zeros((0, len(names)), dtype=np.float32)
        label_id = decide(probs, self.config["threshold"])
        out = pd.DataFrame({"label": [names[k] for k in label_id], "label_id": label_id})
        for k, name in enumerate(names):
            out[f"p_{name}"] = probs[:, k].astype(np.float64)
        return out


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def signature(modality: str, class_names: list[str]):
    """The served model's explicit signature: its input column (``image``: PNG/JPEG bytes, or ``text``) and
    its output columns (``label``, ``label_id``, one ``p_<class>`` per class), as ``predict`` returns them.

    Explicit, not inferred from the example: inference would guess the output types from two rows, and
    warn that an integer column (``label_id``) cannot hold a missing value.
    """
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    column = ColSpec("string", "text") if modality == "text" else ColSpec("binary", "image")
    outputs = [ColSpec("string", "label"), ColSpec("long", "label_id")]
    outputs += [ColSpec("double", f"p_{name}") for name in class_names]
    return ModelSignature(inputs=Schema([column]), outputs=Schema(outputs))


def input_example(datamodule: TransferDataModule) -> pd.DataFrame:
    """Two test inputs in their natural form: PNG bytes in an ``image`` column, or ``text``."""
    if datamodule.modality == "text":
        return pd.DataFrame({"text": list(datamodule.test.x[:2])})
    return pd.DataFrame({"image": [png_bytes(image) for image in datamodule.test.x[:2]]})
