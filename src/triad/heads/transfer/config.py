"""Config schema of the transfer head (stub: the head's author extends it)."""

from triad.schema import OptimConfig, StrictModel


class TransferData(StrictModel):
    source: str = "mnist5k"


class TransferModel(OptimConfig):
    d_model: int = 64
