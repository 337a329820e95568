"""Config schema of the translator head (stub: the head's author extends it)."""

from triad.schema import OptimConfig, StrictModel


class TranslatorData(StrictModel):
    source: str = "bible"


class TranslatorModel(OptimConfig):
    d_model: int = 64
