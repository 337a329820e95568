"""The translator's encoder as a transfer-learning backbone: texts in, mean-pooled features out.

The translator pyfunc logs it next to its own artifacts (``backbone.json`` + ``backbone.pt``, written
by ``triad.heads.transfer.backbones.save_backbone``), so that ``backbone: registry`` with
``backbone_name: models:/triad-translator@champion`` fine-tunes the trained encoder on a text task.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

import torch
from torch import Tensor, nn

from triad.heads.transfer.backbones import Backbone
from triad.heads.translator.model import (
    EncoderOnlyTransformer,
    Seq2SeqTransformer,
    TransformerConfig,
    translator_encoder_state,
)


def encoder_config(translator: TransformerConfig) -> TransformerConfig:
    """The ``EncoderOnlyTransformer`` config of a translator's encoder half: the translator's, without its decoder."""
    return replace(translator, n_decoder_layers=0)


class TranslatorEncoderBackbone(Backbone):
    """B texts -> (B, d_model): the translator's BPE tokenizer, its encoder, the mean over the tokens.

    A text is encoded as the translator encodes a source sentence (subword ids, then EOS, cut to
    the positional table), so the features equal the translator's own encoder memory, mean-pooled
    over non-padding positions. ``spec`` rebuilds it (``build_backbone_from_spec``, kind ``module``):
    ``architecture`` is the encoder's ``TransformerConfig`` as a dict, the tokenizer its JSON text.
    """

    modality = "text"

    def __init__(self, architecture: dict[str, Any], tokenizer_json: str):
        from tokenizers import Tokenizer

        super().__init__()
        self.tokenizer = Tokenizer.from_str(tokenizer_json)
        self.eos_id = self.tokenizer.token_to_id("[EOS]")
        if self.eos_id is None:
            raise ValueError("the tokenizer has no [EOS] token; pass the translator's own tokenizer.json")
        self.encoder = EncoderOnlyTransformer(TransformerConfig(**architecture))
        self.n_features = self.encoder.feature_dim
        self.spec = {
            "kind": "module",
            "target": f"{__name__}:{type(self).__name__}",
            "kwargs": {"architecture": architecture, "tokenizer_json": tokenizer_json},
        }

    @classmethod
    def from_translator(cls, model: Seq2SeqTransformer, tokenizer_json: str) -> TranslatorEncoderBackbone:
        """The backbone holding a copy of ``model``'s encoder."""
        backbone = cls(asdict(encoder_config(model.config)), tokenizer_json)
        backbone.encoder.load_state_dict(translator_encoder_state(model))
        return backbone

    def adapt(self, raw) -> Tensor:
        """B texts -> (B, S) ids, each row its subwords then EOS, right-padded."""
        limit = self.encoder.position.max_len - 1
        rows = [enc.ids[:limit] + [self.eos_id] for enc in self.tokenizer.encode_batch(list(raw))]
        batch = torch.full((len(rows), max(map(len, rows))), self.encoder.pad_id, dtype=torch.long)
        for i, row in enumerate(rows):
            batch[i, : len(row)] = torch.tensor(row)
        return batch.to(self.device)

    def encode(self, adapted: Tensor) -> Tensor:
        return self.encoder.pooled(adapted)

    def layer_groups(self) -> dict[str, nn.Module]:
        """``embeddings``, then ``layers.i``; the last layer's group holds the final LayerNorm too."""
        layers = list(self.encoder.encoder.layers)
        groups: dict[str, nn.Module] = {"embeddings": nn.ModuleList([self.encoder.embed, self.encoder.position])}
        groups |= {f"layers.{i}": layer for i, layer in enumerate(layers[:-1])}
        groups[f"layers.{len(layers) - 1}"] = nn.ModuleList([layers[-1], self.encoder.encoder.norm])
        return groups
