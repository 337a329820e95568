"""The translator head: a Transformer that translates sentences, plugged into the spine."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal

from triad.heads.base import Baseline, CardSections, Evaluation, Head, PyfuncBundle
from triad.heads.translator.config import DecodingConfig
from triad.heads.translator.data import PAD_ID, TranslationDataModule, prepare
from triad.heads.translator.decoding import Translator
from triad.heads.translator.evaluate import GATE_SCORE, ROUGE_TYPES, choose_guards, evaluate, score
from triad.heads.translator.language_model import train_language_model
from triad.heads.translator.module import TranslatorModule
from triad.heads.translator.pyfunc import TranslatorPyfunc, bundle


class TranslatorHead(Head):
    """Bible verses (default), Multi30k or the user's own parallel text; BPE, an encoder-decoder
    Transformer, beam search; BLEU for translation, ROUGE-L for summarization."""

    name: ClassVar[str] = "translator"
    gate_mode: ClassVar[Literal["max", "min"]] = "max"
    # The decoding the evaluation chose (its repetition guards picked on the validation split), which
    # the registered model then serves; None until ``evaluate`` ran (``served_decoding``).
    chosen_decoding: DecodingConfig | None = None

    @property
    def gate_metric(self) -> str:  # type: ignore[override]
        """``test_bleu`` for translation, ``test_rougeL`` for summarization (``data.translator.task``)."""
        return f"test_{GATE_SCORE[self.data_cfg.task]}"

    def steps(self) -> dict[str, Callable[[Path], dict[str, Any]]]:
        def lm(out_dir: Path) -> dict[str, Any]:
            return train_language_model(
                self.model_cfg.lm, self.dir("data"), out_dir, seed=self.cfg.seed, device=self.cfg.trainer.torch_device()
            )

        return {"lm": lm}

    def prepare(self, out_dir: Path) -> dict[str, Any]:
        return prepare(self.data_cfg, out_dir, self.cfg.paths.mirror_dir)

    def datamodule(self, data_dir: Path) -> TranslationDataModule:
        return TranslationDataModule(
            data_dir, self.model_cfg.batch_size, self.model_cfg.net.max_len, self.cfg.trainer.num_workers, self.cfg.seed
        )

    def module(self, datamodule: TranslationDataModule) -> TranslatorModule:
        return TranslatorModule(self.model_cfg, datamodule.vocab_size, PAD_ID)

    def evaluate(self, module: TranslatorModule, datamodule: TranslationDataModule, report_dir: Path) -> Evaluation:
        """Choose the repetition guards on the validation split (``decoding.guard_grid``), then score the
        test split with them; the choice is kept for ``pyfunc``."""
        datamodule.setup("test")
        cfg, task = self.model_cfg, self.data_cfg.task
        choice = choose_guards(
            Translator(module.model, datamodule.tokenizer, cfg.decoding), datamodule.pairs["val"], task
        )
        self.chosen_decoding = choice.decoding
        return evaluate(
            Translator(module.model, datamodule.tokenizer, choice.decoding),
            datamodule.pairs["test"],
            report_dir,
            cfg.n_sample_translations,
            cfg.n_attention_examples,
            task,
            choice,
        )

    def served_decoding(self) -> DecodingConfig:
        """The decoding the registered model serves: the evaluation's choice, or, before any evaluation,
        ``model.translator.decoding`` as configured."""
        return self.chosen_decoding or self.model_cfg.decoding

    def pyfunc(self, module: TranslatorModule, datamodule: TranslationDataModule, work_dir: Path) -> PyfuncBundle:
        datamodule.setup("test")
        example = [p["src"] for p in datamodule.pairs["test"][:2]]
        tokenizer = datamodule.data_dir / "tokenizer.json"
        return bundle(module.model, self.served_decoding(), tokenizer, work_dir, example)

    def rescore(self, served: TranslatorPyfunc, datamodule: TranslationDataModule) -> float:
        """The gate score (test BLEU, or ROUGE-L) of a registered translator (its own tokenizer and decoding)
        on this test split."""
        datamodule.setup("test")
        test = datamodule.pairs["test"]
        hypotheses = served.translator.translate([p["src"] for p in test], progress=True)
        task = self.data_cfg.task
        return score(hypotheses, [p["tgt"] for p in test], task)[GATE_SCORE[task]]

    def card(self, metrics: dict[str, float], data_summary: dict[str, Any]) -> CardSections:
        """Its languages and task, the corpus it learned from, the lengths it takes and produces; scores against
        copying the source unchanged."""
        data, net, decoding = self.data_cfg, self.model_cfg.net, self.served_decoding()
        if data.task == "translation":
            task, scores = (
                f"translation from {data.src_lang or 'its source language'} to {data.tgt_lang or 'its target'}",
                ("bleu", "chrf"),
            )
        else:
            task, scores = f"summarization ({data.src_lang or 'one language'} on both sides)", ROUGE_TYPES
        words = f"of at most {data.max_words} words" if data.max_words else "of any length"
        return CardSections(
            intended_use=[
                f"{task} of sentences like those of the {data.corpus} corpus it learned from "
                f"({data_summary.get('train_pairs', '?')} training pairs {words})",
                "a small Transformer for study and demonstration: not a general-purpose translator",
            ],
            limits=[
                f"input up to {net.max_len} subword tokens; output up to {decoding.max_len_a:g} x input length + "
                f"{decoding.max_len_b} tokens ({decoding.method} decoding"
                + (f", beam size {decoding.beam_size})" if decoding.method == "beam" else ")"),
                "repetition guards as served: " + guards_text(decoding),
                f"its {data_summary.get('vocab_size', data.vocab_size)}-subword BPE vocabulary was learned on its "
                "training split: other languages, scripts and domains are out of its range",
                "it can repeat phrases, drop content or invent it, fluently: check a translation before relying on it",
            ],
            baselines=[Baseline(f"test_{s}", f"copy_baseline_{s}", "copying the source unchanged") for s in scores],
        )

    def gate_passes(self, metrics: dict[str, float]) -> tuple[bool, str]:
        """Besides a finite gate score, the model must beat copying the source unchanged (on the same score)."""
        passes, reason = super().gate_passes(metrics)
        if not passes:
            return passes, reason
        name = self.gate_metric
        baseline = name.replace("test_", "copy_baseline_", 1)
        value, floor = metrics[name], metrics.get(baseline, float("nan"))
        if not value > floor:
            return False, f"{name} {value:.2f} does not beat the copy-the-source baseline {floor:.2f}"
        return True, f"{name} {value:.2f} beats the copy-the-source baseline {floor:.2f}"


HEAD = TranslatorHead  # what the head registry reads (triad.heads)


def guards_text(decoding: DecodingConfig) -> str:
    """The served repetition guards in words, and whether the validation split chose them."""
    parts = []
    if decoding.no_repeat_ngram_size:
        parts.append(f"no {decoding.no_repeat_ngram_size}-gram repeated")
    if decoding.repetition_penalty != 1.0:
        parts.append(f"repetition penalty {decoding.repetition_penalty:g}")
    text = ", ".join(parts) or "none"
    if decoding.guard_grid is not None:
        text += " (chosen on the validation split from decoding.guard_grid)"
    return text
