"""The one registry of heads: every list of heads (config sections, CLI choices, pipeline order,
registered model names) is derived from it.

A head is a Python package with three modules the spine reads:

- ``config.py``: ``Data`` and ``Model``, the pydantic schemas of ``cfg.data.<name>`` and ``cfg.model.<name>``;
- ``head.py``: ``HEAD``, the ``triad.heads.base.Head`` subclass (data step, Lightning modules, evaluation, pyfunc);
- ``cli.py``: ``SUMMARY`` (one line for ``triad predict --help``), ``add_arguments(parser)`` and
  ``show(args, model)`` for ``triad predict <name>``.

Built-in heads are the lines of ``BUILTIN`` (in pipeline order). A head that lives in another
package is registered with the environment variable ``TRIAD_HEADS="name=package[,name=package]"``
(the package must be importable). docs/adding-a-head.md walks through adding one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import import_module
from types import ModuleType
from typing import TYPE_CHECKING

from triad.errors import ConfigError

if TYPE_CHECKING:
    from triad.config import TriadConfig
    from triad.heads.base import Head

BUILTIN: dict[str, str] = {
    "translator": "triad.heads.translator",
    "diffusion": "triad.heads.diffusion",
    "transfer": "triad.heads.transfer",
    "spread": "triad.heads.spread",
}
ENV = "TRIAD_HEADS"


@dataclass(frozen=True)
class HeadSpec:
    """One registered head: its name and the package holding its ``config``, ``head`` and ``cli`` modules."""

    name: str
    package: str

    def _module(self, name: str) -> ModuleType:
        return import_module(f"{self.package}.{name}")

    @property
    def data_schema(self) -> type:
        return self._module("config").Data

    @property
    def model_schema(self) -> type:
        return self._module("config").Model

    @property
    def head_class(self) -> type[Head]:
        return self._module("head").HEAD

    @property
    def cli(self) -> ModuleType:
        return self._module("cli")

    @property
    def registered_model_name(self) -> str:
        return f"triad-{self.name}"


def _extra_heads() -> dict[str, str]:
    extra = {}
    for item in filter(None, (part.strip() for part in os.environ.get(ENV, "").split(","))):
        name, sep, package = item.partition("=")
        if not sep or not name.strip().isidentifier() or not package.strip():
            raise ConfigError(f"{ENV}={os.environ[ENV]!r}: each entry is name=package, e.g. echo=my_heads.echo")
        extra[name.strip()] = package.strip()
    return extra


def registry() -> dict[str, HeadSpec]:
    """Every head, built-in first (in pipeline order), then those named in $TRIAD_HEADS."""
    return {name: HeadSpec(name, package) for name, package in {**BUILTIN, **_extra_heads()}.items()}


def head_names() -> tuple[str, ...]:
    return tuple(registry())


def head_spec(name: str) -> HeadSpec:
    heads = registry()
    if name not in heads:
        raise ConfigError(f"unknown head {name!r}; the heads are {', '.join(heads)}")
    return heads[name]


def registered_model_name(cfg: TriadConfig, name: str) -> str:
    """The registered model that ``cfg``'s data for head ``name`` trains: ``data.<head>.name``, or
    ``triad-<head>`` when that is null or the head's data has no ``name`` key."""
    return getattr(getattr(cfg.data, name), "name", None) or head_spec(name).registered_model_name


def head_class(name: str) -> type[Head]:
    return head_spec(name).head_class


def get_head(name: str, cfg: TriadConfig) -> Head:
    return head_class(name)(cfg)
