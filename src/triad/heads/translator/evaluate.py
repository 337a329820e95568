"""Scoring a trained translator on the held-out test split.

- translation: sacreBLEU and chrF of the model's translations against the references;
  summarization (``data.translator.task``): ROUGE-1, ROUGE-2 and ROUGE-L of the model's summaries;
- the same scores for copying the source unchanged, a floor that shows the scale (names,
  numbers and punctuation already match across languages; a summary's words are in its article);
- a table of sample translations;
- attention heatmaps (encoder self-attention and decoder cross-attention, every layer and head)
  for a few test sentences, as PNG files.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import pandas as pd
import sacrebleu
import torch

from triad.heads.base import Evaluation
from triad.heads.translator.data import BOS_ID, EOS_ID, Pair
from triad.heads.translator.decoding import Translator

Task = Literal["translation", "summarization"]
GATE_SCORE = {"translation": "bleu", "summarization": "rougeL"}  # the gate metric is test_<this>
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


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
) -> Evaluation:
    """test_<score> for the model and copy_baseline_<score> for copying the source, for every score of
    the task (``score``); a table of sample outputs; attention maps of the first ``n_attention`` sentences."""
    sources = [p["src"] for p in test]
    references = [p["tgt"] for p in test]
    hypotheses = translator.translate(sources, progress=True)
    model_scores, copy_scores = score(hypotheses, references, task), score(sources, references, task)
    metrics = {f"test_{name}": value for name, value in model_scores.items()}
    metrics |= {f"copy_baseline_{name}": value for name, value in copy_scores.items()}
    metrics["test_sentences"] = float(len(test))
    samples = pd.DataFrame(
        {
            "ref": [p["ref"] for p in test[:n_samples]],
            "source": sources[:n_samples],
            "reference": references[:n_samples],
            "translation": hypotheses[:n_samples],
            f"sentence_{GATE_SCORE[task]}": [
                sentence_score(h, r, task) for h, r in zip(hypotheses[:n_samples], references[:n_samples])
            ],
        }
    )
    images = []
    for i in range(min(n_attention, len(test))):
        images += attention_figures(translator, sources[i], hypotheses[i], i, report_dir)
    return Evaluation(metrics=metrics, images=images, tables={"sample_translations": samples})
