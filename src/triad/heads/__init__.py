"""The heads that plug into the spine, by name.

Adding a head: write ``triad/heads/<name>/`` (config.py, data.py, model.py, module.py, head.py),
add its config sections to ``triad.config`` and its stages to ``dvc.yaml``, and list it here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from triad.errors import ConfigError

if TYPE_CHECKING:
    from triad.config import TriadConfig
    from triad.heads.base import Head


def head_class(name: str) -> type["Head"]:
    if name == "translator":
        from triad.heads.translator.head import TranslatorHead

        return TranslatorHead
    if name == "diffusion":
        from triad.heads.diffusion.head import DiffusionHead

        return DiffusionHead
    if name == "transfer":
        from triad.heads.transfer.head import TransferHead

        return TransferHead
    if name == "spread":
        from triad.heads.spread.head import SpreadHead

        return SpreadHead
    raise ConfigError(f"unknown head {name!r}; the heads are translator, diffusion, transfer, spread")


def get_head(name: str, cfg: "TriadConfig") -> "Head":
    return head_class(name)(cfg)
