"""The servable translator: an MLflow pyfunc that takes source sentences and returns translations.

Artifacts: ``weights`` (the ``Seq2SeqTransformer`` state_dict), ``config`` (JSON with its
constructor arguments and the decoding settings), ``tokenizer`` (the BPE ``tokenizer.json``), and
``backbone_config`` / ``backbone_weights``: the encoder as a transfer-learning backbone
(``triad.heads.translator.backbone``), for ``backbone_name: models:/triad-translator@champion``.
``load_context`` rebuilds the network from these on CPU; nothing is unpickled.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import torch

from triad.errors import DataError
from triad.heads.base import PyfuncBundle
from triad.heads.translator.decoding import DecodingConfig, Translator
from triad.heads.translator.model import Seq2SeqTransformer


INPUT_KINDS = "a string, a list of strings, a pandas Series of strings, or a DataFrame with one column of strings"


def _sentence_column(frame):
    """The one column of ``frame`` (or its ``source`` column) as a Series."""
    if "source" in frame.columns:
        return frame["source"]
    if len(frame.columns) != 1:
        raise DataError(
            f"the translator got a DataFrame with {len(frame.columns)} columns {list(frame.columns)}; "
            "send one column of source sentences (or name it 'source')"
        )
    return frame.iloc[:, 0]


def sentences_of(model_input: Any) -> list[str]:
    """The source sentences of a request: a string, a list of strings, a pandas Series, or a one-column DataFrame.

    A DataFrame with several columns is read from its ``source`` column. Anything else, and any row
    that is not a string (None, NaN, a number, a list), raises ``DataError`` naming it.
    """
    import pandas as pd

    if isinstance(model_input, str):
        return [model_input]
    if isinstance(model_input, pd.DataFrame):
        model_input = _sentence_column(model_input)
    if isinstance(model_input, pd.Series):
        rows = model_input.tolist()
    elif isinstance(model_input, list):
        rows = model_input
    else:
        raise DataError(f"the translator takes {INPUT_KINDS}, not {type(model_input).__name__}")
    for i, row in enumerate(rows):
        if not isinstance(row, str):
            raise DataError(f"row {i} of the input is {row!r:.80} ({type(row).__name__}), not a string; "
                            f"the translator takes {INPUT_KINDS}")
    return rows


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
    """Write the artifacts of ``TranslatorPyfunc`` under ``work_dir``, and the encoder as a transfer
    backbone (``backbone.json`` + ``backbone.pt``, read by ``load_registry_backbone``)."""
    from triad.heads.transfer.backbones import save_backbone
    from triad.heads.translator.backbone import TranslatorEncoderBackbone

    weights = work_dir / "weights.pt"
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, weights)
    config = work_dir / "config.json"
    config.write_text(json.dumps({"architecture": architecture, "decoding": asdict(decoding)}, indent=2, sort_keys=True))
    backbone = TranslatorEncoderBackbone.from_translator(model, architecture, Path(tokenizer_path).read_text())
    artifacts = {"weights": str(weights), "config": str(config), "tokenizer": str(tokenizer_path)}
    return PyfuncBundle(
        python_model=TranslatorPyfunc(),
        artifacts=artifacts | save_backbone(backbone, work_dir / "backbone"),
        input_example=example,
    )
