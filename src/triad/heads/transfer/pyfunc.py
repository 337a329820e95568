"""The transfer head's MLflow pyfunc model: images or texts in, class probabilities and label out.

Artifacts: ``config`` (JSON: model config, backbone spec, class names, decision threshold) and
``weights`` (the classifier's state_dict). ``load_context`` rebuilds the network from the backbone
spec with the architecture code and files of the installed packages, then loads the weights; no
pickled module, no registry or network access.

Input: a DataFrame with an ``image`` column of PNG/JPEG bytes, or a ``text`` column (the logged
signature). Called directly, ``predict`` also takes plain lists, and uint8 arrays for images.
Output: a DataFrame with ``label`` (class name), ``label_id`` and one ``p_<class>`` column per class.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch

from triad.heads.transfer.backbones import build_backbone_from_spec
from triad.heads.transfer.config import TransferModel
from triad.heads.transfer.evaluate import decide
from triad.heads.transfer.module import TransferClassifier, inject_lora


def rebuild_classifier(config: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> TransferClassifier:
    """A TransferClassifier from the pyfunc ``config`` and its weights (CPU, eval mode)."""
    cfg = TransferModel.model_validate(config["model"])
    backbone = build_backbone_from_spec(config["backbone_spec"], pretrained=False)
    classifier = TransferClassifier(backbone, len(config["class_names"]), cfg.dropout, cfg.freeze_batchnorm)
    if cfg.strategy == "lora":
        inject_lora(classifier, cfg)
    classifier.load_state_dict(state_dict)
    return classifier.eval()


def save_artifacts(classifier: TransferClassifier, cfg: TransferModel, class_names: list[str],
                   threshold: float | None, image_mode: str | None, folder: Path) -> dict[str, str]:
    """Write the two artifacts; returns name -> path for ``mlflow.pyfunc.log_model``."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {"model": cfg.model_dump(mode="json"), "backbone_spec": classifier.backbone.spec,
              "class_names": class_names, "threshold": threshold, "modality": classifier.backbone.modality,
              "image_mode": image_mode}
    (folder / "transfer_config.json").write_text(json.dumps(config, indent=2))
    torch.save(classifier.state_dict(), folder / "transfer_weights.pt")
    return {"config": str(folder / "transfer_config.json"), "weights": str(folder / "transfer_weights.pt")}


def decode_image(item: Any, mode: str) -> np.ndarray:
    """PNG/JPEG bytes or an array -> uint8 array, (H, W) for mode "L", (H, W, 3) for "RGB"."""
    from PIL import Image

    if isinstance(item, (bytes, bytearray)):
        image = Image.open(io.BytesIO(item))
    else:
        image = Image.fromarray(np.asarray(item, dtype=np.uint8))
    return np.asarray(image.convert(mode), dtype=np.uint8)


class TransferPyfunc(mlflow.pyfunc.PythonModel):
    """Serves a fine-tuned TransferClassifier; see the module docstring for input and output."""

    def load_context(self, context) -> None:
        self.config = json.loads(Path(context.artifacts["config"]).read_text())
        weights = torch.load(context.artifacts["weights"], map_location="cpu", weights_only=True)
        self.classifier = rebuild_classifier(self.config, weights)

    def _inputs(self, model_input) -> list:
        column = "text" if self.config["modality"] == "text" else "image"
        if isinstance(model_input, pd.DataFrame):
            if column not in model_input.columns:
                raise ValueError(f"expected a DataFrame column {column!r}, got {list(model_input.columns)}")
            return list(model_input[column])
        return list(model_input)

    @torch.no_grad()
    def _probabilities(self, items: list) -> np.ndarray:
        if self.config["modality"] == "text":
            return torch.softmax(self.classifier([str(t) for t in items]), -1).numpy()
        images = [decode_image(item, self.config["image_mode"]) for item in items]
        if len({im.shape for im in images}) == 1:
            return torch.softmax(self.classifier(torch.from_numpy(np.stack(images))), -1).numpy()
        return np.concatenate([torch.softmax(self.classifier(torch.from_numpy(im[None])), -1).numpy() for im in images])

    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        items = self._inputs(model_input)
        names = self.config["class_names"]
        probs = self._probabilities(items) if items else np.zeros((0, len(names)), dtype=np.float32)
        label_id = decide(probs, self.config["threshold"])
        out = pd.DataFrame({"label": [names[k] for k in label_id], "label_id": label_id})
        for k, name in enumerate(names):
            out[f"p_{name}"] = probs[:, k]
        return out
