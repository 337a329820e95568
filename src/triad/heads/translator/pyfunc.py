"""The servable translator: an MLflow pyfunc that takes source sentences and returns translations.

Artifacts: ``weights`` (the ``Seq2SeqTransformer`` state_dict), ``config`` (JSON with its
constructor arguments and the decoding settings) and ``tokenizer`` (the BPE ``tokenizer.json``).
``load_context`` rebuilds the network from these on CPU; nothing is unpickled.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import torch

from triad.heads.base import PyfuncBundle
from triad.heads.translator.decoding import DecodingConfig, Translator
from triad.heads.translator.model import Seq2SeqTransformer


def sentences_of(model_input: Any) -> list[str]:
    """A list of strings, a pandas Series, or a DataFrame (its ``source`` column, else its first)."""
    import pandas as pd

    if isinstance(model_input, pd.DataFrame):
        column = "source" if "source" in model_input.columns else model_input.columns[0]
        model_input = model_input[column]
    if isinstance(model_input, str):
        model_input = [model_input]
    sentences = [str(s) for s in list(model_input)]
    return sentences


class TranslatorPyfunc(mlflow.pyfunc.PythonModel):
    """``predict(["The LORD is my shepherd."]) -> ["Jehova ist mein Hirte."]``"""

    def load_context(self, context) -> None:
        from tokenizers import Tokenizer

        config = json.loads(Path(context.artifacts["config"]).read_text())
        model = Seq2SeqTransformer(**config["architecture"])
        model.load_state_dict(torch.load(context.artifacts["weights"], map_location="cpu", weights_only=True))
        tokenizer = Tokenizer.from_file(context.artifacts["tokenizer"])
        self.translator = Translator(model.eval(), tokenizer, DecodingConfig(**config["decoding"]))

    def predict(self, context, model_input, params: dict[str, Any] | None = None) -> list[str]:
        sentences = sentences_of(model_input)
        return self.translator.translate(sentences) if sentences else []


def bundle(model: Seq2SeqTransformer, architecture: dict, decoding: DecodingConfig, tokenizer_path: Path, work_dir: Path, example: list[str]) -> PyfuncBundle:
    """Write the artifacts of ``TranslatorPyfunc`` under ``work_dir``."""
    weights = work_dir / "weights.pt"
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, weights)
    config = work_dir / "config.json"
    config.write_text(json.dumps({"architecture": architecture, "decoding": asdict(decoding)}, indent=2, sort_keys=True))
    return PyfuncBundle(
        python_model=TranslatorPyfunc(),
        artifacts={"weights": str(weights), "config": str(config), "tokenizer": str(tokenizer_path)},
        input_example=example,
    )
