"""Shared pieces of the configuration schema.

Every config section is a pydantic model that forbids unknown keys, so a typo fails before any work
with a message naming the key (see ``triad.config.compose``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A config section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class OptimConfig(StrictModel):
    """What every head's model config carries for the one training loop in ``triad.train``."""

    max_epochs: int = 1
    max_steps: int = -1
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
