"""Shared pieces of the configuration schema.

Every config section is a pydantic model that forbids unknown keys, so a typo fails before any work
with a message naming the key (see ``triad.config.compose``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class StrictModel(BaseModel):
    """A config section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class OptimConfig(StrictModel):
    """What every head's model config carries for the one training loop in ``triad.train``.

    Like every schema class, it holds types and bounds, not values: ``conf/`` sets every key.
    """

    max_epochs: int = Field(ge=1)
    max_steps: int = Field(ge=-1)  # -1: no step limit
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0)
    weight_decay: float = Field(ge=0)


class DataKeys(StrictModel):
    """Keys every head's data section has, whether it reads a built-in task or the user's own files.

    name:   the registered model's name for models trained on this data (``null``: ``triad-<head>``, the
            built-in task's). Data of another task gets its own name, so that its gate competes only with
            models of the same task, e.g. ``my-xrays``.
    path:   the user's own data (a folder or a file; relative paths are relative to the project root);
            ``null`` for the built-in tasks.
    raw:    what the prepare stage reads, as DVC tracks it (``dvc.yaml`` depends on it): the user's own
            data (the yaml sets ``raw: ${.path}``); for a built-in task, the head's data code, which defines it.
    on_bad: a file that cannot be read (corrupt, empty, not an image, ...): ``fail`` stops prepare with the
            list of every such file; ``skip`` leaves them out and counts them in the data report.
    """

    name: str | None = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    path: str | None
    raw: str
    on_bad: Literal["fail", "skip"]
