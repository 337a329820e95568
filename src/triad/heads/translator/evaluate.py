"""Scoring a trained translator on the held-out test split.

- translation: sacreBLEU and chrF of the model's translations against the references;
  summarization (``data.translator.task``): ROUGE-1, ROUGE-2 and ROUGE-L of the model's summaries;
- the same scores for copying the source unchanged, a floor that shows the scale (names,
  numbers and punctuation already match across languages; a summary's words are in its article);
- repetition guards (``triad.heads.translator.decoding.Guards``): ``choose_guards`` decodes the
  validation split with every setting of ``decoding.guard_grid`` and keeps the best; the test split is
  decoded with it and without guards, and both are reported by score and by the share of outputs
  that repeat a word 3-gram (``repeat_share``);
- a table of sample translations;
- attention heatmaps (encoder self-attention and decoder cross-attention, every layer and head)
  for a few test sentences, as PNG files.
"""

from __future__ import annotations

import itertools
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd
import sacrebleu
import torch

from triad.heads.base import Evaluation
from triad.heads.translator.config import DecodingConfig
from triad.heads.translator.data import BOS_ID, EOS_ID, Pair
from triad.heads.translator.decoding import Guards, Translator

Task = Literal["translation", "summarization"]
GATE_SCORE = {"translation": "bleu", "summarization": "rougeL"}  # the gate metric is test_<this>
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
REPEAT_N = 3  # repeat_share counts outputs in which some word 3-gram occurs twice


def score(hypotheses: list[str], references: list[str], task: Task = "translation") -> dict[str, float]:
    """Translation: corpus sacreBLEU (13a tokenisation) and chrF. Summarization: ``rouge``. All 0-100."""
    if task == "summarization":
        return rouge(hypotheses, references)
    return {
        "bleu": sacrebleu.corpus_bleu(hypotheses, [references]).score,
        "chrf": sacrebleu.corpus_chrf(hypotheses, [references]).score,
    }


class RougeWords:
    """rouge-score's tokenizer (lower case, runs of other characters as spaces, Porter stems of words longer
    than three letters) with letters of every script kept: the original drops every character outside
    a-z and 0-9, so a summary in Greek or Chinese would have no words at all. On ASCII text it gives
    exactly the original's tokens; words with other letters are kept as they are, unstemmed."""

    def __init__(self) -> None:
        from nltk.stem import porter

        self.stemmer = porter.PorterStemmer()

    def tokenize(self, text: str) -> list[str]:
        words = re.sub(r"[\W_]+", " ", text.lower()).split()
        return [self.stemmer.stem(w) if len(w) > 3 and w.isascii() else w for w in words]


def rouge(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    """Mean F1 of ROUGE-1, ROUGE-2 and ROUGE-L (Lin, 2004) over the sentence pairs, times 100 (0-100)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), tokenizer=RougeWords())
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for hypothesis, reference in zip(hypotheses, references, strict=True):
        scores = scorer.score(reference, hypothesis)  # (target, prediction)
        for name in ROUGE_TYPES:
            totals[name] += scores[name].fmeasure
    return {name: 100.0 * total / max(1, len(references)) for name, total in totals.items()}


def sentence_score(hypothesis: str, reference: str, task: Task) -> float:
    """The gate score of one sentence: sentence BLEU, or ROUGE-L F1 (0-100)."""
    if task == "summarization":
        return rouge([hypothesis], [reference])["rougeL"]
    return sacrebleu.sentence_bleu(hypothesis, [reference]).score


def repeats_ngram(text: str, n: int = REPEAT_N) -> bool:
    """True when some n-gram of whitespace-separated words occurs twice or more in ``text``."""
    words = text.split()
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return len(set(grams)) < len(grams)


def repeat_share(texts: list[str], n: int = REPEAT_N) -> float:
    """The share (0-1) of ``texts`` in which a word n-gram repeats (``repeats_ngram``); 0 for no texts.
    "In In In In In der Erde" repeats the 3-gram "In In In"."""
    return sum(repeats_ngram(t, n) for t in texts) / len(texts) if texts else 0.0


def with_guards(decoding: DecodingConfig, guards: Guards) -> DecodingConfig:
    """``decoding`` with its two guard keys set to ``guards`` (the other keys, guard_grid included, unchanged)."""
    return decoding.model_copy(
        update={"no_repeat_ngram_size": guards.no_repeat_ngram_size, "repetition_penalty": guards.repetition_penalty}
    )


def grid_settings(decoding: DecodingConfig) -> list[Guards]:
    """The guard settings ``decoding.guard_grid`` lists (every n-gram size with every penalty, in order);
    without a grid, the one setting the decoding names."""
    grid = decoding.guard_grid
    if grid is None:
        return [Guards.of(decoding)]
    pairs = itertools.product(grid.no_repeat_ngram_size, grid.repetition_penalty)
    return list(dict.fromkeys(Guards(n, p) for n, p in pairs))  # a value listed twice is tried once


def spread_subset(pairs: list[Pair], limit: int | None) -> list[Pair]:
    """At most ``limit`` pairs evenly spread over ``pairs`` (all of them when ``limit`` is None or not less)."""
    if limit is None or len(pairs) <= limit:
        return pairs
    return [pairs[i * len(pairs) // limit] for i in range(limit)]


@dataclass
class GuardChoice:
    """What ``choose_guards`` found: ``decoding`` with the chosen guards, one ``table`` row per setting
    tried on the validation split, and the seconds the search took (0 without a grid)."""

    decoding: DecodingConfig
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    seconds: float = 0.0


def best_setting(rows: list[dict], gate: str) -> int:
    """The index of the row with the highest ``val_<gate>``; on a tie (scores equal to 9 decimals), the
    lower ``val_repeat3_share``; then the first."""
    return min(range(len(rows)), key=lambda i: (-round(rows[i][f"val_{gate}"], 9), rows[i]["val_repeat3_share"], i))


def choose_guards(translator: Translator, val: list[Pair], task: Task = "translation") -> GuardChoice:
    """Decode (part of) the validation split with every setting of ``translator.decoding.guard_grid``
    and keep the one with the best gate score (BLEU; ROUGE-L for summarization); on a tie, the lower
    share of outputs that repeat a 3-gram; then the first in grid order. Without a grid, or without
    validation pairs, the decoding is kept as it is."""
    decoding = translator.decoding
    grid = decoding.guard_grid
    if grid is None or not val:
        return GuardChoice(decoding)
    pairs = spread_subset(val, grid.val_sentences)
    sources, references = [p["src"] for p in pairs], [p["tgt"] for p in pairs]
    gate = GATE_SCORE[task]
    rows = []
    for guards in grid_settings(decoding):
        started = time.perf_counter()
        hypotheses = Translator(translator.model, translator.tokenizer, with_guards(decoding, guards)).translate(
            sources
        )
        seconds = time.perf_counter() - started
        rows.append(
            {
                "no_repeat_ngram_size": guards.no_repeat_ngram_size,
                "repetition_penalty": guards.repetition_penalty,
                **{f"val_{name}": value for name, value in score(hypotheses, references, task).items()},
                "val_repeat3_share": repeat_share(hypotheses),
                "val_sentences": len(pairs),
                "seconds": seconds,
            }
        )
    best = best_setting(rows, gate)
    table = pd.DataFrame(rows)
    table["chosen"] = [i == best for i in range(len(rows))]
    chosen = Guards(rows[best]["no_repeat_ngram_size"], rows[best]["repetition_penalty"])
    return GuardChoice(with_guards(decoding, chosen), table, float(table["seconds"].sum()))


def plot_attention(weights: list[torch.Tensor], rows: list[str], columns: list[str], title: str, path: Path) -> Path:
    """One heatmap per layer (figure rows) and head (figure columns).

    ``weights``: per layer, (H, len(rows), len(columns)) attention of the row tokens (queries)
    over the column tokens (keys).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_layers, n_heads = len(weights), weights[0].size(0)
    width, height = 0.28 * len(columns) + 1.5, 0.28 * len(rows) + 1.5  # inches per panel
    fig, axes = plt.subplots(n_layers, n_heads, figsize=(width * n_heads, height * n_layers), squeeze=False)
    for layer, layer_weights in enumerate(weights):
        for head in range(n_heads):
            ax = axes[layer][head]
            ax.imshow(layer_weights[head].float().cpu().numpy(), cmap="viridis", vmin=0.0, vmax=1.0)
            ax.set_title(f"layer {layer + 1}, head {head + 1}", fontsize=8)
            ax.set_xticks(range(len(columns)), columns, rotation=90, fontsize=7)
            ax.set_yticks(range(len(rows)), rows, fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def attention_figures(
    translator: Translator, source: str, translation: str, index: int, report_dir: Path
) -> list[Path]:
    """Encoder self-attention and decoder cross-attention of one sentence and its translation."""
    tokenizer, model = translator.tokenizer, translator.model
    device = next(model.parameters()).device
    src = translator.encode_sources([source]).to(device)
    target_ids = tokenizer.encode(translation).ids[: model.tgt_position.max_len - 1]
    tgt_in = torch.tensor([[BOS_ID] + target_ids], device=device)
    maps = model.attention_maps(src, tgt_in)
    src_tokens = [tokenizer.id_to_token(i) for i in src[0].tolist()]
    # The query at target position t produces token t + 1: label rows by what they produce.
    out_tokens = [tokenizer.id_to_token(i) for i in target_ids + [EOS_ID]]
    return [
        plot_attention(
            [w[0] for w in maps["encoder_self"]],
            src_tokens,
            src_tokens,
            f"encoder self-attention: {source[:80]}",
            report_dir / f"attention_encoder_self_{index}.png",
        ),
        plot_attention(
            [w[0] for w in maps["decoder_cross"]],
            out_tokens,
            src_tokens,
            f"decoder cross-attention: {translation[:80]}",
            report_dir / f"attention_decoder_cross_{index}.png",
        ),
    ]


def evaluate(
    translator: Translator,
    test: list[Pair],
    report_dir: Path,
    n_samples: int,
    n_attention: int,
    task: Task = "translation",
    choice: GuardChoice | None = None,
) -> Evaluation:
    """Score ``translator`` (with its decoding as it is: the guards ``choose_guards`` chose) on ``test``.

    Metrics: test_<score> for the model and copy_baseline_<score> for copying the source, for every
    score of the task (``score``); test_<score>_unguarded for the same decoding without repetition
    guards; test_repeat3_share (and _unguarded, and _reference for the references themselves): the
    share of outputs that repeat a word 3-gram; the guards used (decoding_no_repeat_ngram_size,
    decoding_repetition_penalty); the seconds the guard search on val (``choice``) and the unguarded
    test decoding added. Tables: sample outputs, and ``repetition_guards`` (every setting tried on val,
    then the chosen and the unguarded setting on test). Attention maps of the first ``n_attention``
    sentences."""
    sources = [p["src"] for p in test]
    references = [p["tgt"] for p in test]
    decoding = translator.decoding
    hypotheses = translator.translate(sources, progress=True)
    guards = Guards.of(decoding)
    started = time.perf_counter()
    if guards.off:
        unguarded = hypotheses
    else:
        unguarded = Translator(translator.model, translator.tokenizer, with_guards(decoding, Guards())).translate(
            sources, progress=True
        )
    unguarded_seconds = 0.0 if guards.off else time.perf_counter() - started
    model_scores, copy_scores = score(hypotheses, references, task), score(sources, references, task)
    unguarded_scores = model_scores if guards.off else score(unguarded, references, task)
    metrics = {f"test_{name}": value for name, value in model_scores.items()}
    metrics |= {f"copy_baseline_{name}": value for name, value in copy_scores.items()}
    metrics |= {f"test_{name}_unguarded": value for name, value in unguarded_scores.items()}
    metrics["test_sentences"] = float(len(test))
    metrics |= {
        "test_repeat3_share": repeat_share(hypotheses),
        "test_repeat3_share_unguarded": repeat_share(unguarded),
        "test_repeat3_share_reference": repeat_share(references),
        "decoding_no_repeat_ngram_size": float(guards.no_repeat_ngram_size),
        "decoding_repetition_penalty": guards.repetition_penalty,
        "val_guard_grid_seconds": choice.seconds if choice is not None else 0.0,
        "test_unguarded_seconds": unguarded_seconds,
    }
    tried = choice.table.to_dict("records") if choice is not None else []
    guard_rows = [{"split": "val", "setting": "chosen" if row["chosen"] else "tried", **row} for row in tried]
    for name, setting, outputs, scores in (
        ("chosen", guards, hypotheses, model_scores),
        ("unguarded", Guards(), unguarded, unguarded_scores),
    ):
        guard_rows.append(
            {
                "split": "test",
                "setting": name,
                "no_repeat_ngram_size": setting.no_repeat_ngram_size,
                "repetition_penalty": setting.repetition_penalty,
                **{f"test_{key}": value for key, value in scores.items()},
                "test_repeat3_share": repeat_share(outputs),
                "chosen": name == "chosen",
            }
        )
    samples = pd.DataFrame(
        {
            "ref": [p["ref"] for p in test[:n_samples]],
            "source": sources[:n_samples],
            "reference": references[:n_samples],
            "translation": hypotheses[:n_samples],
            f"sentence_{GATE_SCORE[task]}": [
                sentence_score(h, r, task) for h, r in zip(hypotheses[:n_samples], references[:n_samples])
            ],
            "translation_unguarded": unguarded[:n_samples],
        }
    )
    images = []
    for i in range(min(n_attention, len(test))):
        images += attention_figures(translator, sources[i], hypotheses[i], i, report_dir)
    tables = {"sample_translations": samples, "repetition_guards": pd.DataFrame(guard_rows)}
    return Evaluation(metrics=metrics, images=images, tables=tables)
