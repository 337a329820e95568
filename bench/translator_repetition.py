"""Benchmark: what the repetition guards do to the trained translator's test translations.

Run (after `triad pipeline` has prepared data/translator and trained artifacts/translator/train):

    PYTHONPATH=src python bench/translator_repetition.py [hydra overrides ...]

e.g. ``model.translator.decoding.guard_grid.no_repeat_ngram_size=[0,2,3,4]`` for a wider grid. For each
setting of ``model.translator.decoding.guard_grid`` (every no_repeat_ngram_size with every
repetition_penalty) it decodes the whole test split and prints test BLEU, chrF (ROUGE for a
summarization task), the share of outputs that repeat a word 3-gram and the seconds the decoding
took; then the setting the evaluation would choose on the validation split, and the test sentences
whose unguarded and chosen translations differ most in repeats. The model is not trained or changed.
"""

from __future__ import annotations

import shlex
import sys
import time

import pandas as pd
import torch

from triad.config import compose
from triad.evaluate import load_trained
from triad.heads.translator.decoding import Guards, Translator
from triad.heads.translator.evaluate import (
    choose_guards,
    grid_settings,
    repeat_share,
    repeats_ngram,
    score,
    with_guards,
)


def setting_table(translator: Translator, pairs: list[dict], task: str = "translation") -> tuple[pd.DataFrame, dict]:
    """One row per guard setting of ``translator.decoding.guard_grid`` (the unguarded one added first if the
    grid lacks it): the scores of the task on ``pairs``, the repeated-3-gram share and the decoding's seconds.
    Also returns each setting's outputs (Guards -> list of str)."""
    sources, references = [p["src"] for p in pairs], [p["tgt"] for p in pairs]
    settings = list(dict.fromkeys([Guards(), *grid_settings(translator.decoding)]))
    rows, outputs = [], {}
    for guards in settings:
        decoder = Translator(translator.model, translator.tokenizer, with_guards(translator.decoding, guards))
        started = time.perf_counter()
        outputs[guards] = decoder.translate(sources)
        seconds = time.perf_counter() - started
        rows.append(
            {
                "no_repeat_ngram_size": guards.no_repeat_ngram_size,
                "repetition_penalty": guards.repetition_penalty,
                **{f"test_{k}": v for k, v in score(outputs[guards], references, task).items()},
                "test_repeat3_share": repeat_share(outputs[guards]),
                "seconds": seconds,
            }
        )
    return pd.DataFrame(rows), outputs


def main(overrides: list[str]) -> None:
    cfg = compose(overrides)
    _, datamodule, module, _ = load_trained(cfg, "translator")
    datamodule.setup("test")
    task = cfg.data.translator.task
    translator = Translator(module.model, datamodule.tokenizer, cfg.model.translator.decoding)
    test = datamodule.pairs["test"]
    print(f"$ PYTHONPATH=src python bench/translator_repetition.py {shlex.join(overrides)}".rstrip())
    decoding = translator.decoding
    print(
        f"{len(test)} test sentences, {decoding.method} decoding"
        + (
            f" (beam {decoding.beam_size}, length penalty {decoding.length_penalty:g})"
            if decoding.method == "beam"
            else ""
        )
        + f", {torch.get_num_threads()} threads"
    )
    print(f"references that repeat a 3-gram: {repeat_share([p['tgt'] for p in test]):.3f}")
    table, outputs = setting_table(translator, test, task)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))

    started = time.perf_counter()
    choice = choose_guards(translator, datamodule.pairs["val"], task)
    chosen = Guards.of(choice.decoding)
    print(
        f"chosen on the validation split ({time.perf_counter() - started:.1f} s for the grid): "
        f"no_repeat_ngram_size={chosen.no_repeat_ngram_size} repetition_penalty={chosen.repetition_penalty:g}"
    )
    if not choice.table.empty:
        print(choice.table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    fixed = [
        i for i, p in enumerate(test) if repeats_ngram(outputs[Guards()][i]) and not repeats_ngram(outputs[chosen][i])
    ]
    print(f"test outputs whose repeated 3-gram the chosen guards remove: {len(fixed)}")
    for i in fixed[:5]:
        print(f"  source:    {test[i]['src']}\n  unguarded: {outputs[Guards()][i]}\n  chosen:    {outputs[chosen][i]}")


if __name__ == "__main__":
    main(sys.argv[1:])
