"""Config schema of the diffusion head (stub: the head's author extends it)."""

from triad.schema import OptimConfig, StrictModel


class DiffusionData(StrictModel):
    source: str = "mnist5k"


class DiffusionModel(OptimConfig):
    d_model: int = 64
