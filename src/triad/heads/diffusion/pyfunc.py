"""The servable diffusion model: requests for images of a class in, images out.

Input: rows (a DataFrame or a list of dicts) of
    label     class index to draw (int, required)
    n         how many images (default 1)
    steps     DDIM steps (default: the trained config's sample_steps)
    guidance  classifier-free guidance scale (default: the config's)
    seed      seed of the sampler's torch.Generator (default 0): the same row gives the same images
    png       also return PNG bytes (default False)
Output: a DataFrame with one row per image: request (row index), label, index (0 .. n-1),
``image`` (uint8 array (H, W) for grey, (H, W, 3) for colour) and, when asked, ``png``.

``load_context`` rebuilds the UNet from the EMA state_dict and the config json; nothing is pickled.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch

from triad.heads.diffusion.config import DiffusionModel
from triad.heads.diffusion.data import to_pixels
from triad.heads.diffusion.module import build_unet
from triad.heads.diffusion.process import GaussianDiffusion
from triad.heads.diffusion.sampling import ddim_sample

WEIGHTS = "ema_weights"
CONFIG = "diffusion_config"


def write_artifacts(module, class_names: list[str], work_dir: Path) -> dict[str, str]:
    """Save the EMA weights and what is needed to rebuild the network; -> artifacts for log_model."""
    work_dir.mkdir(parents=True, exist_ok=True)
    weights, config = work_dir / "ema.pt", work_dir / "config.json"
    torch.save(module.ema.state_dict(), weights)
    channels, size, _ = module.image_shape
    config.write_text(json.dumps({
        "model": module.cfg.model_dump(mode="json"), "image_channels": channels, "image_size": size,
        "class_names": class_names,
    }, indent=2))
    return {WEIGHTS: str(weights), CONFIG: str(config)}


def input_signature():
    """Only ``label`` is required; the other columns fall back to the defaults above when left out."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    optional = [("n", "long"), ("steps", "long"), ("guidance", "double"), ("seed", "long"), ("png", "boolean")]
    return ModelSignature(inputs=Schema([ColSpec("long", "label"),
                                         *(ColSpec(kind, name, required=False) for name, kind in optional)]))


def png_bytes(image: np.ndarray) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    buffer = io.BytesIO()
    plt.imsave(buffer, image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255, format="png")
    return buffer.getvalue()


class DiffusionPyfunc(mlflow.pyfunc.PythonModel):
    """Class-conditional image generator (DDIM on the EMA UNet, CPU)."""

    def load_context(self, context) -> None:
        config = json.loads(Path(context.artifacts[CONFIG]).read_text())
        self.cfg = DiffusionModel(**config["model"])
        self.class_names = config["class_names"]
        self.image_shape = (config["image_channels"], config["image_size"], config["image_size"])
        self.net = build_unet(self.cfg, config["image_channels"], config["image_size"], len(self.class_names))
        self.net.load_state_dict(torch.load(context.artifacts[WEIGHTS], map_location="cpu", weights_only=True))
        self.net.eval()
        self.diffusion = GaussianDiffusion(self.cfg.timesteps, self.cfg.schedule, self.cfg.prediction)

    def _request(self, row: dict) -> dict:
        def given(key, default):
            value = row.get(key)
            return default if value is None or (isinstance(value, float) and np.isnan(value)) else value

        request = {
            "label": int(row["label"]), "n": int(given("n", 1)), "steps": int(given("steps", self.cfg.sample_steps)),
            "guidance": float(given("guidance", self.cfg.guidance)), "seed": int(given("seed", 0)),
            "png": bool(given("png", False)),
        }
        if not 0 <= request["label"] < len(self.class_names):
            raise ValueError(f"label {request['label']} is not a class index in [0, {len(self.class_names) - 1}]")
        if not 1 <= request["steps"] <= self.cfg.timesteps:
            raise ValueError(f"steps {request['steps']} must lie in [1, {self.cfg.timesteps}]")
        if request["n"] < 1:
            raise ValueError(f"n must be at least 1, got {request['n']}")
        return request

    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        rows = model_input.to_dict("records") if isinstance(model_input, pd.DataFrame) else list(model_input)
        out = []
        for number, row in enumerate(rows):
            request = self._request(row)
            labels = torch.full((request["n"],), request["label"], dtype=torch.long)
            generator = torch.Generator().manual_seed(request["seed"])
            images = ddim_sample(self.net, self.diffusion, labels, self.image_shape, request["steps"],
                                 eta=self.cfg.ddim_eta, guidance=request["guidance"], generator=generator)
            pixels = to_pixels(images).permute(0, 2, 3, 1).numpy()  # (n, H, W, C)
            for index, image in enumerate(pixels):
                image = image[..., 0] if image.shape[-1] == 1 else image
                record = {"request": number, "label": request["label"], "index": index, "image": image}
                if request["png"]:
                    record["png"] = png_bytes(image)
                out.append(record)
        return pd.DataFrame(out)
