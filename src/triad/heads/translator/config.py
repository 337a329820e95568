"""Config schema of the translator head: ``cfg.data.translator`` and ``cfg.model.translator``.

Every default equals the default profile (``conf/data/translator/bible_en_de.yaml`` and
``conf/model/translator/small.yaml``): English -> German Bible verses and a small Transformer that
trains on two CPU cores in about two minutes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from triad.schema import OptimConfig, StrictModel

Language = Literal["en", "de", "fr"]


class TranslatorData(StrictModel):
    """Which parallel corpus, which direction, how it is filtered and split, and the BPE vocabulary."""

    source: Literal["bible", "multi30k"] = "bible"
    src_lang: Language = "en"
    tgt_lang: Language = "de"
    # Keep pairs whose source and target both have at most this many words (None keeps all).
    max_words: int | None = Field(14, ge=1)
    # Cap on training pairs after filtering (None keeps all); val and test are capped separately.
    max_train_pairs: int | None = Field(12000, ge=1)
    max_eval_pairs: int | None = Field(500, ge=1)
    # Bible only: the fraction of chapters held out for validation and for test.
    val_fraction: float = Field(0.04, gt=0, lt=0.5)
    test_fraction: float = Field(0.04, gt=0, lt=0.5)
    split_seed: int = 0  # the split depends on this, not on the training seed
    # One BPE vocabulary shared by source and target (so embeddings can be tied).
    vocab_size: int = Field(2000, ge=100, le=65536)
    min_frequency: int = Field(2, ge=1)

    @model_validator(mode="after")
    def _directions(self) -> "TranslatorData":
        if self.src_lang == self.tgt_lang:
            raise ValueError(f"src_lang and tgt_lang are both {self.src_lang!r}; pick two languages")
        if self.source == "bible" and "en" not in (self.src_lang, self.tgt_lang):
            raise ValueError("the bible corpus pairs English with German or French: one side must be 'en'")
        return self


class LanguageModelConfig(StrictModel):
    """The decoder-only language model trained on the English side (the ``lm_translator`` stage)."""

    d_model: int = Field(128, ge=8)
    n_heads: int = Field(4, ge=1)
    n_layers: int = Field(2, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    max_len: int = Field(96, ge=8)  # longest sentence in subwords, BOS and EOS included
    max_epochs: int = Field(3, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(3e-3, gt=0)
    n_samples: int = Field(8, ge=0)  # test sentences whose beginnings are continued
    prompt_tokens: int = Field(3, ge=1)
    max_new_tokens: int = Field(30, ge=1)
    temperature: float = Field(0.8, gt=0)
    top_k: int | None = Field(50, ge=0)  # None or 0: off
    top_p: float | None = Field(0.95, gt=0, le=1)

    @model_validator(mode="after")
    def _heads_divide_width(self) -> "LanguageModelConfig":
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        return self

    @model_validator(mode="after")
    def _samples_fit_the_context(self) -> "LanguageModelConfig":
        """A sample is BOS + ``prompt_tokens`` + ``max_new_tokens`` ids; all must fit in ``max_len``,
        checked here because sampling runs only after training."""
        length = 1 + self.prompt_tokens + self.max_new_tokens
        if length > self.max_len:
            raise ValueError(
                f"samples would be {length} tokens long (BOS + prompt_tokens {self.prompt_tokens} + max_new_tokens "
                f"{self.max_new_tokens}), more than max_len ({self.max_len}): lower "
                f"model.translator.lm.max_new_tokens to {self.max_len - 1 - self.prompt_tokens} or less, "
                f"or raise model.translator.lm.max_len to {length} or more"
            )
        return self


class TranslatorModel(OptimConfig):
    """The Transformer's sizes, its training schedule and how it decodes."""

    max_epochs: int = 6
    batch_size: int = Field(64, ge=1)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(60, ge=0)
    label_smoothing: float = Field(0.1, ge=0, lt=1)

    d_model: int = Field(128, ge=8)
    n_heads: int = Field(4, ge=1)
    n_encoder_layers: int = Field(2, ge=1)
    n_decoder_layers: int = Field(2, ge=1)
    d_ff: int = Field(256, ge=8)
    dropout: float = Field(0.1, ge=0, lt=1)
    norm_first: bool = True  # pre-norm (True) or the original post-norm (False)
    positional: Literal["sinusoidal", "learned"] = "sinusoidal"
    tie_embeddings: bool = True  # source, target and output embeddings share one matrix
    max_len: int = Field(128, ge=8)  # longest token sequence the model accepts

    decoding: Literal["greedy", "beam"] = "beam"
    beam_size: int = Field(4, ge=1)
    length_penalty: float = Field(0.6, ge=0)  # GNMT alpha; 0 disables
    # At most max_len_a * source length + max_len_b target tokens are generated.
    max_len_a: float = Field(1.5, ge=0)
    max_len_b: int = Field(10, ge=1)
    eval_batch_size: int = Field(64, ge=1)
    n_sample_translations: int = Field(20, ge=0)
    n_attention_examples: int = Field(2, ge=0)
    lm: LanguageModelConfig = LanguageModelConfig()

    @model_validator(mode="after")
    def _heads_divide_width(self) -> "TranslatorModel":
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        return self
