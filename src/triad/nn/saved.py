"""A network saved for serving as two files: its config (JSON) and its weights (a ``state_dict``).

Every head's MLflow pyfunc stores its network this way, so nothing is unpickled when a registered
model loads: ``load_context`` reads the config, rebuilds the network from it, and loads the weights.

    artifacts = save_network(net, {"model": cfg.model_dump(mode="json")}, work_dir)
    ...
    config, weights = load_network(context.artifacts)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

CONFIG, WEIGHTS = "config", "weights"


def save_network(
    network: torch.nn.Module | Mapping[str, torch.Tensor],
    config: dict[str, Any],
    folder: Path,
    config_key: str = CONFIG,
    weights_key: str = WEIGHTS,
) -> dict[str, str]:
    """Write ``<folder>/<config_key>.json`` and ``<folder>/<weights_key>.pt`` (CPU tensors); return the
    pyfunc artifacts ``{config_key: path, weights_key: path}``. ``network`` is a module or a state_dict."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = network.state_dict() if isinstance(network, torch.nn.Module) else network
    config_path, weights_path = folder / f"{config_key}.json", folder / f"{weights_key}.pt"
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    torch.save({name: tensor.detach().cpu() for name, tensor in state.items()}, weights_path)
    return {config_key: str(config_path), weights_key: str(weights_path)}


def load_network(
    artifacts: Mapping[str, str], config_key: str = CONFIG, weights_key: str = WEIGHTS
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The config dict and the CPU state_dict that ``save_network`` wrote (``artifacts`` as MLflow passes them)."""
    config = json.loads(Path(artifacts[config_key]).read_text())
    weights = torch.load(artifacts[weights_key], map_location="cpu", weights_only=True)
    return config, weights
