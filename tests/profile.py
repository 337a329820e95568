"""Config sections as the default profile sets them, for unit tests that build one section by hand.

The schema holds no values (``conf/`` is the one source), so a test that wants "the default diffusion
model, but with 8 channels" asks for ``section("model", "diffusion", channels=8)``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def _default_raw() -> dict:
    from triad.config import compose_dict

    return compose_dict([])


def raw_section(kind: str, head: str) -> dict[str, Any]:
    """A deep copy of ``cfg.<kind>.<head>`` of the default profile as plain data."""
    import copy

    return copy.deepcopy(_default_raw()[kind][head])


def section(kind: str, head: str, **overrides: Any):
    """The validated ``cfg.<kind>.<head>`` section (kind: data or model) of the default profile, with
    ``overrides`` applied on top (nested sections take a dict, merged key by key)."""
    from triad.heads import head_spec

    raw = raw_section(kind, head)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    schema = head_spec(head).data_schema if kind == "data" else head_spec(head).model_schema
    return schema.model_validate(raw)
