"""Scoring a trained translator on the held-out test split.

- sacreBLEU and chrF of the model's translations against the references;
- the same scores for copying the source unchanged, a floor that shows the scale (names,
  numbers and punctuation already match across languages);
- a table of sample translations;
- attention heatmaps (encoder self-attention and decoder cross-attention, every layer and head)
  for a few test sentences, as PNG files.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import sacrebleu
import torch

from triad.heads.base import Evaluation
from triad.heads.translator.data import BOS_ID, EOS_ID, Pair
from triad.heads.translator.decoding import Translator


def score(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    """Corpus sacreBLEU (13a tokenisation) and chrF, both 0-100."""
    return {
        "bleu": sacrebleu.corpus_bleu(hypotheses, [references]).score,
        "chrf": sacrebleu.corpus_chrf(hypotheses, [references]).score,
    }


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
    translator: Translator, test: list[Pair], report_dir: Path, n_samples: int, n_attention: int
) -> Evaluation:
    sources = [p["src"] for p in test]
    references = [p["tgt"] for p in test]
    hypotheses = translator.translate(sources, progress=True)
    model_scores, copy_scores = score(hypotheses, references), score(sources, references)
    metrics = {
        "test_bleu": model_scores["bleu"],
        "test_chrf": model_scores["chrf"],
        "copy_baseline_bleu": copy_scores["bleu"],
        "copy_baseline_chrf": copy_scores["chrf"],
        "test_sentences": float(len(test)),
    }
    samples = pd.DataFrame(
        {
            "ref": [p["ref"] for p in test[:n_samples]],
            "source": sources[:n_samples],
            "reference": references[:n_samples],
            "translation": hypotheses[:n_samples],
            "sentence_bleu": [
                sacrebleu.sentence_bleu(h, [r]).score for h, r in zip(hypotheses[:n_samples], references[:n_samples])
            ],
        }
    )
    images = []
    for i in range(min(n_attention, len(test))):
        images += attention_figures(translator, sources[i], hypotheses[i], i, report_dir)
    return Evaluation(metrics=metrics, images=images, tables={"sample_translations": samples})
