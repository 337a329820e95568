"""JSON files that every reader accepts: strict JSON (no NaN or Infinity), keys sorted."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def strict_json(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None: Python writes them as ``NaN`` and
    ``Infinity``, which strict JSON readers (jq, JavaScript, most other languages) refuse."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    return value


def write_json(path: Path, payload: dict) -> None:
    """``payload`` as strict JSON (NaN and infinities as null), keys sorted, one file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(strict_json(payload), indent=2, sort_keys=True, default=str, allow_nan=False) + "\n")
