"""The servable translator: an MLflow pyfunc that takes source sentences and returns translations.

Artifacts: ``weights`` (the ``Seq2SeqTransformer`` state_dict) and ``config`` (JSON: ``architecture``, its
``TransformerConfig``, and ``decoding``, its ``model.translator.decoding`` with the repetition guards the
evaluation chose on the validation split, the ones it decodes with), both written by
``triad.nn.saved.save_network``; ``tokenizer`` (the BPE ``tokenizer.json``); and
``backbone_config`` / ``backbone_weights``: the encoder as a transfer-learning backbone
(``triad.heads.translator.backbone``), for ``backbone_name: models:/triad-translator@champion``.
``load_context`` rebuilds the network from these on CPU; nothing is unpickled.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

from triad.batching import MicroBatcher
from triad.errors import DataError
from triad.heads.base import PyfuncBundle
from triad.heads.translator.decoding import DecodingConfig, Translator
from triad.heads.translator.model import Seq2SeqTransformer, TransformerConfig
from triad.nn.saved import load_network, save_network

# Decoding keys added after models were first registered, with the values those models decoded with
# (no repetition guards): a registered model whose config.json lacks them still loads and decodes as before.
LATER_DECODING_KEYS = {"no_repeat_ngram_size": 0, "repetition_penalty": 1.0, "guard_grid": None, "serve_wait_ms": 0.0}
WAIT_ENV = "TRIAD_SERVE_BATCH_WAIT_MS"  # the server's override of decoding.serve_wait_ms
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
            raise DataError(
                f"row {i} of the input is {row!r:.80} ({type(row).__name__}), not a string; "
                f"the translator takes {INPUT_KINDS}"
            )
    return rows


class TranslatorPyfunc(mlflow.pyfunc.PythonModel):
    """``predict(["The LORD is my shepherd."]) -> ["Jehova ist mein Hirte."]``"""

    def load_context(self, context) -> None:
        from tokenizers import Tokenizer

        config, weights = load_network(context.artifacts)
        model = Seq2SeqTransformer(TransformerConfig(**config["architecture"]))
        model.load_state_dict(weights)
        tokenizer = Tokenizer.from_file(context.artifacts["tokenizer"])
        decoding = DecodingConfig.model_validate(LATER_DECODING_KEYS | config["decoding"])
        self.translator = Translator(model.eval(), tokenizer, decoding)
        wait_ms = float(os.environ.get(WAIT_ENV, decoding.serve_wait_ms))
        self.batcher = MicroBatcher(self.translator.translate, decoding.batch_size, wait_ms / 1000)

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> list[str]:
        """The translations of the request's sentences; the scoring server's concurrent requests share
        decoding batches (``decoding.serve_wait_ms``, ``triad.batching``)."""
        sentences = sentences_of(model_input)
        return self.batcher(sentences) if sentences else []


def bundle(
    model: Seq2SeqTransformer, decoding: DecodingConfig, tokenizer_path: Path, work_dir: Path, example: list[str]
) -> PyfuncBundle:
    """Write the artifacts of ``TranslatorPyfunc`` under ``work_dir``, and the encoder as a transfer
    backbone (``backbone.json`` + ``backbone.pt``, read by ``load_registry_backbone``)."""
    from triad.heads.transfer.backbones import save_backbone
    from triad.heads.translator.backbone import TranslatorEncoderBackbone

    config = {"architecture": asdict(model.config), "decoding": decoding.model_dump(mode="json")}
    backbone = TranslatorEncoderBackbone.from_translator(model, Path(tokenizer_path).read_text())
    artifacts = save_network(model, config, work_dir) | {"tokenizer": str(tokenizer_path)}
    return PyfuncBundle(
        python_model=TranslatorPyfunc(),
        artifacts=artifacts | save_backbone(backbone, work_dir / "backbone"),
        input_example=example,
    )
