"""Shared pieces of the configuration schema.

Every config section is a pydantic model that forbids unknown keys, so a typo fails before any work
with a message naming the key (see ``triad.config.compose``).
"""

from __future__ import annotations

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
