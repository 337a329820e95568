"""``cfg.data.line`` and ``cfg.model.line``: types and bounds only; conf/ sets every value."""

from __future__ import annotations

from pydantic import Field

from triad.schema import OptimConfig, StrictModel


class LineData(StrictModel):
    """Noisy points on a line, split 80/10/10 into train/val/test."""

    points: int = Field(ge=20)
    slope: float
    intercept: float
    noise: float = Field(ge=0)  # standard deviation of the Gaussian noise added to y


class LineModel(OptimConfig):
    """A straight line fitted by gradient descent (OptimConfig: max_epochs, max_steps, batch_size, lr, ...)."""


Data = LineData
Model = LineModel
