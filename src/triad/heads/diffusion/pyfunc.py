"""The servable diffusion model: requests for images of a class in, images out.

Input: rows (a DataFrame or a list of dicts) of
    label     class index to draw, in [0, n_classes) (int); a class-conditional model needs label or class
    class     class name to draw, one of the model's ``class_names`` (the folder names of the user's data)
    n         how many images, in [1, MAX_IMAGES] (default 1)
    steps     DDIM steps, in [1, timesteps] (default: the trained config's sample_steps)
    guidance  classifier-free guidance scale, >= 0 (default: the config's); only 1 for a model trained
              without label dropout, which has no unconditional model
    seed      seed of the sampler's torch.Generator, in [0, 2**63) (default 0): the same row gives the same images
    png       also return PNG bytes: true or false (default false)
An unconditional model (trained on a flat folder: ``class_names`` is empty) takes neither label nor class,
and no guidance other than 1 (there is no class to guide towards); its output's label is None.
A missing value (None or NaN) takes the default. Anything else that does not fit (a fractional count, a
string for png, an unknown column) raises ``RequestError`` naming the row and the field.
Output: a DataFrame with one row per image: request (row index), label, index (0 .. n-1),
``image`` (uint8 array (H, W) for grey, (H, W, 3) for colour) and, when asked, ``png``.
An empty request gives an empty frame with those columns.

``load_context`` rebuilds the UNet from the EMA state_dict and the config json (``triad.nn.saved``);
nothing is pickled.
"""

from __future__ import annotations

import io
import math
import numbers
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch

from triad.errors import TriadError
from triad.heads.base import request_rows
from triad.heads.diffusion.config import DiffusionModel
from triad.heads.diffusion.data import to_pixels
from triad.heads.diffusion.model import UNet
from triad.heads.diffusion.process import GaussianDiffusion
from triad.heads.diffusion.sampling import ddim_sample
from triad.nn.saved import load_network, save_network

WEIGHTS = "ema_weights"
CONFIG = "diffusion_config"
FIELDS = ("label", "class", "n", "steps", "guidance", "seed", "png")
COLUMNS = ["request", "label", "index", "image"]  # of the output, plus "png" when asked
MAX_IMAGES = 256  # per request row: one sampler batch (twice that with guidance) must fit in memory
MAX_SEED = 2**63 - 1  # the signature's "long"
# the keys of the section ``model.diffusion.unet``, which older versions kept flat (and the judge's as ``judge_*``)
UNET_KEYS = (
    "patch_size",
    "channels",
    "channel_mults",
    "num_res_blocks",
    "attention_resolutions",
    "attention_heads",
    "dropout",
)


class RequestError(TriadError, ValueError):
    """A request row the model cannot serve; the message names the row and the field."""


def write_artifacts(module, class_names: list[str], work_dir: Path) -> dict[str, str]:
    """Save the EMA weights and what is needed to rebuild the network; -> artifacts for log_model."""
    channels, size, _ = module.image_shape
    config = {
        "model": module.cfg.model_dump(mode="json"),
        "image_channels": channels,
        "image_size": size,
        "class_names": class_names,
    }
    return save_network(module.ema, config, work_dir, config_key=CONFIG, weights_key=WEIGHTS)


def nested_layout(model: dict) -> dict:
    """A saved ``model.diffusion`` in today's layout: versions registered before the UNet's keys moved
    under ``unet`` and the judge's ``judge_*`` keys under ``judge`` are read as well, and versions saved before
    the judge's ``min_skill`` bar existed read it as 0 (no bar was applied when they were gated)."""
    model = dict(model)
    if "unet" not in model:
        model["unet"] = {key: model.pop(key) for key in UNET_KEYS}
        model["judge"] = {key.removeprefix("judge_"): model.pop(key) for key in list(model) if key.startswith("judge_")}
    model["judge"] = {"min_skill": 0.0, **model["judge"]}
    return model


def input_signature():
    """Every column is optional for the signature: the model itself requires ``label`` or ``class`` when it is
    class-conditional (and refuses both when it is not); the others fall back to the defaults above."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    columns = [
        ("label", "long"),
        ("class", "string"),
        ("n", "long"),
        ("steps", "long"),
        ("guidance", "double"),
        ("seed", "long"),
        ("png", "boolean"),
    ]
    return ModelSignature(inputs=Schema([ColSpec(kind, name, required=False) for name, kind in columns]))


def png_bytes(image: np.ndarray) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    buffer = io.BytesIO()
    plt.imsave(buffer, image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255, format="png")
    return buffer.getvalue()


class DiffusionPyfunc(mlflow.pyfunc.PythonModel):
    """Class-conditional (or, with no class names, unconditional) image generator (DDIM on the EMA UNet, CPU)."""

    def load_context(self, context) -> None:
        config, weights = load_network(context.artifacts, config_key=CONFIG, weights_key=WEIGHTS)
        self.cfg = DiffusionModel(**nested_layout(config["model"]))
        self.class_names = config["class_names"]
        self.image_shape = (config["image_channels"], config["image_size"], config["image_size"])
        self.net = UNet(self.cfg.unet, config["image_channels"], config["image_size"], len(self.class_names))
        self.net.load_state_dict(weights)
        self.net.eval()
        self.diffusion = GaussianDiffusion(self.cfg.timesteps, self.cfg.schedule, self.cfg.prediction)

    def _request(self, number: int, row) -> dict:
        """One input row -> a checked request {label, n, steps, guidance, seed, png}; ``number`` names the row."""
        if not isinstance(row, dict):
            raise RequestError(
                f"request row {number} is a {type(row).__name__}; give a mapping with the fields {', '.join(FIELDS)}"
            )
        unknown = sorted(str(key) for key in row if key not in FIELDS)
        if unknown:
            raise RequestError(
                f"request row {number} has unknown field(s) {unknown}; the fields are {', '.join(FIELDS)}"
            )
        timesteps = self.cfg.timesteps
        field = RowReader(number, row)
        request = {
            "label": self._label(number, field),
            "n": field.integer("n", 1, 1, MAX_IMAGES, f"a number of images in [1, {MAX_IMAGES}]"),
            "steps": field.integer(
                "steps", self.cfg.sample_steps, 1, timesteps, f"a number of DDIM steps in [1, timesteps={timesteps}]"
            ),
            "guidance": field.real(
                "guidance", self.cfg.guidance, 0.0, "a finite guidance scale >= 0 (1 = plain conditional)"
            ),
            "seed": field.integer("seed", 0, 0, MAX_SEED, f"a seed in [0, {MAX_SEED}]"),
            "png": field.boolean("png", False),
        }
        if not self.class_names:  # unconditional: one plain pass, whatever the trained config's guidance
            if field.given("guidance") is not None and request["guidance"] != 1:
                raise RequestError(
                    f"request row {number}: guidance={request['guidance']} does not apply: this model is "
                    f"unconditional (trained without classes); leave guidance out"
                )
            request["guidance"] = 1.0
        elif request["guidance"] != 1 and self.cfg.label_drop_prob == 0:
            raise RequestError(
                f"request row {number}: guidance={request['guidance']} needs the unconditional model, "
                f"which this model never trained (label_drop_prob=0); give guidance 1"
            )
        return request

    def _label(self, number: int, field: RowReader) -> int | None:
        """The class index a row asks for, by ``label`` (index) or ``class`` (name); None when unconditional."""
        names = self.class_names
        label, name = field.given("label"), field.given("class")
        if not names:
            if label is not None or name is not None:
                given = f"label={label!r}" if label is not None else f"class={name!r}"
                raise RequestError(
                    f"request row {number}: {given}, but this model is unconditional (trained on a folder without "
                    f"class sub-folders): it has no classes; leave label and class out"
                )
            return None
        listing = ", ".join(names)
        if label is not None and name is not None:
            raise RequestError(f"request row {number}: give label or class, not both")
        if name is not None:
            if not isinstance(name, str) or name not in names:
                raise RequestError(
                    f"request row {number}: class={name!r} is not a class of this model; give one of {listing}"
                )
            return names.index(name)
        if label is None:
            raise RequestError(
                f"request row {number}: label is missing; give label (0 .. {len(names) - 1}) "
                f"or class (one of {listing})"
            )
        return field.integer(
            "label", None, 0, len(names) - 1, f"a class index of this model: 0 .. {len(names) - 1} ({listing})"
        )

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        # every row is checked before any sampling starts
        requests = [self._request(number, row) for number, row in enumerate(request_rows(model_input))]
        out = []
        for number, request in enumerate(requests):
            # an unconditional model draws with the null label, 0 (it has no classes)
            labels = torch.full((request["n"],), request["label"] or 0, dtype=torch.long)
            generator = torch.Generator().manual_seed(request["seed"])
            images = ddim_sample(
                self.net,
                self.diffusion,
                labels,
                self.image_shape,
                request["steps"],
                eta=self.cfg.ddim_eta,
                guidance=request["guidance"],
                generator=generator,
            )
            pixels = to_pixels(images).permute(0, 2, 3, 1).numpy()  # (n, H, W, C)
            for index, image in enumerate(pixels):
                image = image[..., 0] if image.shape[-1] == 1 else image
                record = {"request": number, "label": request["label"], "index": index, "image": image}
                if request["png"]:
                    record["png"] = png_bytes(image)
                out.append(record)
        return pd.DataFrame(out) if out else pd.DataFrame(columns=COLUMNS)


class RowReader:
    """Reads the fields of one request row strictly: no silent truncation, no truthy strings.

    A missing value (absent, None or NaN, which pandas puts where a row left a column out) takes
    the default; a default of None makes the field required.
    """

    def __init__(self, number: int, row: dict):
        self.number, self.row = number, row

    def given(self, key: str):
        """The row's value for ``key``, or None when it is absent, None or NaN."""
        return self._given(key)

    def _given(self, key: str):
        value = self.row.get(key)
        if value is None or (
            isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral) and math.isnan(value)
        ):
            return None
        return value

    def _fail(self, key: str, value, wanted: str) -> RequestError:
        return RequestError(f"request row {self.number}: {key}={value!r} is not valid; give {wanted}")

    def integer(self, key: str, default: int | None, low: int, high: int, wanted: str) -> int:
        """A whole number in [low, high]; 3.0 is accepted (pandas stores int columns with gaps as float), 2.7 is not."""
        value = self._given(key)
        if value is None:
            if default is None:
                raise RequestError(f"request row {self.number}: {key} is missing; give {wanted}")
            return default
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise self._fail(key, value, wanted)
        if not isinstance(value, numbers.Integral):
            if not math.isfinite(value) or not float(value).is_integer():
                raise self._fail(key, value, wanted)
        number = int(value)
        if not low <= number <= high:
            raise self._fail(key, value, wanted)
        return number

    def real(self, key: str, default: float, low: float, wanted: str) -> float:
        """A finite number >= low."""
        value = self._given(key)
        if value is None:
            return default
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise self._fail(key, value, wanted)
        if not math.isfinite(value) or value < low:
            raise self._fail(key, value, wanted)
        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        """True or False (numpy's too); 0 and 1 are accepted, strings such as "false" are not."""
        value = self._given(key)
        if value is None:
            return default
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        if isinstance(value, numbers.Integral) and value in (0, 1):
            return bool(value)
        raise self._fail(key, value, "true or false")
