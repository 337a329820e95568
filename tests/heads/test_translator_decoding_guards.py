"""Repetition guards in decoding: with ``no_repeat_ngram_size`` n no hypothesis of greedy or beam search
holds an n-gram twice (and without it a looping model does repeat); the CTRL repetition penalty lowers
the scores of tokens already generated; the evaluation picks the setting with the best validation score,
and the registered model decodes with the setting it picked."""

import itertools
import json
import random
import sys
from pathlib import Path

import pytest
import torch
from mlflow.pyfunc import PythonModelContext
from torch import nn

from tests.heads.test_translator_model import (
    BOS,
    EOS,
    PAD,
    eos_biased_seq2seq,
    reference_beam_search,
    small_vocab_sources,
    tiny_seq2seq,
)
from tests.profile import section
from triad.heads.translator.config import GuardGrid
from triad.heads.translator.data import PAD_ID, TranslationDataModule, train_tokenizer, write_jsonl
from triad.heads.translator.decoding import (
    Guards,
    Translator,
    apply_repetition_penalty,
    banned_ngram_tokens,
    beam_search,
    greedy_decode,
)
from triad.heads.translator.evaluate import best_setting, choose_guards, evaluate, repeat_share, repeats_ngram
from triad.heads.translator.pyfunc import TranslatorPyfunc, bundle


def repeated_ngram(ids: list[int], n: int) -> bool:
    grams = [tuple(ids[i : i + n]) for i in range(len(ids) - n + 1)]
    return len(set(grams)) < len(grams)


class LoopingModel(nn.Module):
    """A hand-made stand-in for ``Seq2SeqTransformer``'s decoding interface: a bigram table whose next-token
    logits depend only on the last token (the first step: on the source's first token), with a strong
    cycle (3 -> 4 -> 5 -> 3 unless told) and EOS unlikely, so unguarded decoding loops until its budget is
    spent. ``favoured`` tokens get a higher logit after any token (whole words, for text that BLEU can score)."""

    def __init__(self, vocab_size: int = 12, seed: int = 0, cycle=(3, 4, 5), favoured=()):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        table = torch.randn(vocab_size, vocab_size, generator=generator)
        table[:, list(favoured)] += 3.0
        for a, b in zip(cycle, [*cycle[1:], cycle[0]]):
            table[a, b] += 4.0
        table[:, EOS] = -3.0
        table[:, PAD] = table[:, BOS] = -30.0
        self.table = nn.Parameter(table, requires_grad=False)
        self.pad_id = PAD
        self.src_position = self.tgt_position = nn.Module()
        self.tgt_position.max_len = 64

    def encode(self, src):
        return src.float().unsqueeze(-1), src == PAD, None  # memory carries the source ids

    def new_cache(self):
        class Cache:  # the logits depend on the last token only: nothing to keep
            def reorder(self, rows):
                pass

        return Cache()

    def decode(self, last, memory, src_mask, cache):
        previous = last[:, 0].clone()
        first = previous == BOS
        previous[first] = memory[first, 0, 0].long()  # the first step follows the source's first token
        return self.table[previous].unsqueeze(1)


def looping_sources() -> torch.Tensor:
    return torch.tensor([[3, 7, 8, 9, 2], [4, 6, 2, PAD, PAD], [9, 9, 2, PAD, PAD], [11, 2, PAD, PAD, PAD]])


def decode(method: str, model, src, guards: Guards | None, budget: int = 14) -> list[list[int]]:
    if method == "greedy":
        return greedy_decode(model, src, BOS, EOS, max_len_a=0.0, max_len_b=budget, guards=guards)
    return beam_search(model, src, BOS, EOS, beam_size=3, alpha=0.6, max_len_a=0.0, max_len_b=budget, guards=guards)


def test_banned_tokens_are_those_that_would_complete_an_ngram_already_there():
    rows = torch.tensor([[BOS, 5, 6, 7, 5, 6], [BOS, 5, 6, 8, 8, 8], [BOS, 9, 9, 9, 9, 9]])
    banned = banned_ngram_tokens(rows, 3, 12)
    assert [set(torch.nonzero(row).flatten().tolist()) for row in banned] == [{7}, {8}, {9}]
    assert [set(torch.nonzero(r).flatten().tolist()) for r in banned_ngram_tokens(rows, 1, 12)] == [
        {BOS, 5, 6, 7},
        {BOS, 5, 6, 8},
        {BOS, 9},
    ]
    assert not banned_ngram_tokens(rows[:, :2], 3, 12).any()  # too short to hold a 3-gram


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_banned_tokens_equal_a_plain_python_reference(n):
    rng = random.Random(n)
    rows = torch.tensor([[BOS] + [rng.randrange(3, 7) for _ in range(11)] for _ in range(40)])
    banned = banned_ngram_tokens(rows, n, 7)
    for row, bans in zip(rows.tolist(), banned):
        grams = {tuple(row[i : i + n]) for i in range(len(row) - n + 1)}
        expected = {v for v in range(7) if tuple(row[len(row) - n + 1 :] + [v]) in grams}
        assert set(torch.nonzero(bans).flatten().tolist()) == expected


@pytest.mark.parametrize("method", ["greedy", "beam"])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_a_looping_model_repeats_without_the_ban_and_never_with_it(method, n):
    model, src = LoopingModel(), looping_sources()
    loose = decode(method, model, src, None)
    assert all(repeated_ngram(h, n) for h in loose), loose  # the model loops
    assert decode(method, model, src, Guards()) == loose  # guards off change nothing
    banned = decode(method, model, src, Guards(no_repeat_ngram_size=n))
    assert not any(repeated_ngram(h, n) for h in banned), banned
    assert all(len(h) > 0 for h in banned)


@pytest.mark.parametrize("method", ["greedy", "beam"])
def test_a_real_transformer_never_repeats_an_ngram_under_the_ban(method):
    """A random tiny Transformer whose EOS is rare repeats itself; under the ban it does not, per sentence
    as decoded alone (bans are per row of the batch)."""
    model = eos_biased_seq2seq(eos_bias=-20.0, vocab_size=12)
    src = small_vocab_sources(vocab_size=12)
    assert any(repeated_ngram(h, 3) for h in decode(method, model, src, None, budget=20))
    guards = Guards(no_repeat_ngram_size=3)
    together = decode(method, model, src, guards, budget=20)
    assert not any(repeated_ngram(h, 3) for h in together)
    alone = [
        decode(method, model, src[i : i + 1, : int((src[i] != PAD).sum())], guards, budget=20)[0] for i in range(3)
    ]
    assert together == alone


def test_beam_of_width_one_is_greedy_with_the_same_guards():
    model, src = LoopingModel(), looping_sources()
    for guards in (Guards(2, 1.0), Guards(0, 1.5), Guards(3, 1.3)):
        greedy = greedy_decode(model, src, BOS, EOS, 0.0, 12, guards)
        assert beam_search(model, src, BOS, EOS, 1, 0.6, 0.0, 12, guards) == greedy


def reference_guarded_beam(model, source, beam_size, alpha, steps, guards: Guards) -> list[int]:
    """The plain reference beam search, its last logits penalised token by token (CTRL) and banned n-gram by
    n-gram, in Python."""

    def guarded(tokens, logits):
        for v in set(tokens[1:]):
            logits[v] = (
                logits[v] / guards.repetition_penalty if logits[v] > 0 else logits[v] * guards.repetition_penalty
            )
        n = guards.no_repeat_ngram_size
        if n:
            grams = {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}
            for v in range(logits.numel()):
                if tuple(tokens[len(tokens) - n + 1 :] + [v]) in grams:
                    logits[v] = float("-inf")
        return logits

    return reference_beam_search(model, source, beam_size, alpha, steps, adjust=guarded)


@pytest.mark.parametrize("guards", [Guards(2, 1.0), Guards(0, 1.8), Guards(3, 1.4)])
def test_batched_guarded_beam_search_equals_a_plain_reference(guards):
    model = eos_biased_seq2seq(eos_bias=-1.0, sharpness=3.0)
    src = small_vocab_sources()
    batched = beam_search(model, src, BOS, EOS, beam_size=3, alpha=0.6, max_len_a=0.0, max_len_b=7, guards=guards)
    plain = [reference_guarded_beam(model, row[row != PAD], 3, 0.6, 7, guards) for row in src]
    assert batched == plain


def test_the_penalty_divides_positive_and_multiplies_negative_logits_of_generated_tokens_only():
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0, -2.0], [2.0, -1.0, 0.5, 3.0, -2.0]])
    generated = torch.tensor([[0, 1, 0], [3, 3, 3]])
    penalised = apply_repetition_penalty(logits, generated, 2.0)
    assert penalised.tolist() == [[1.0, -2.0, 0.5, 3.0, -2.0], [2.0, -1.0, 0.5, 1.5, -2.0]]
    assert torch.equal(apply_repetition_penalty(logits, generated, 1.0), logits)


def test_the_penalty_turns_a_decoder_away_from_a_token_it_already_said():
    """Token 3 leads token 6 by a logit of 3 to 2: penalty 1.2 keeps it (2.5), penalty 3 (1.0) sends greedy
    decoding to 6 after its first use, and back once 6 is penalised too (0.67): the penalty does not grow
    with the count."""
    model = LoopingModel()
    with torch.no_grad():
        model.table[:, 3] = 3.0
        model.table[:, 6] = 2.0
        model.table[:, [4, 5, 7, 8, 9, 10, 11]] = 0.0
    src = looping_sources()[:1]
    assert greedy_decode(model, src, BOS, EOS, 0.0, 5) == [[3, 3, 3, 3, 3]]
    assert greedy_decode(model, src, BOS, EOS, 0.0, 5, Guards(repetition_penalty=1.2)) == [[3, 3, 3, 3, 3]]
    assert greedy_decode(model, src, BOS, EOS, 0.0, 5, Guards(repetition_penalty=3.0)) == [[3, 6, 3, 3, 3]]


def test_repeat_share_counts_outputs_with_a_repeated_word_trigram():
    assert repeats_ngram("In In In In In der Erde und die Erde.")
    assert not repeats_ngram("und die Erde und die Himmel")  # a repeated bigram only
    assert repeat_share(["a b c a b c", "a b c d", "x y z x y z q", "short"]) == 0.5


def test_the_best_validation_score_wins_then_fewer_repeats_then_grid_order():
    rows = [
        {"val_bleu": 10.0, "val_repeat3_share": 0.1},
        {"val_bleu": 12.0, "val_repeat3_share": 0.3},
        {"val_bleu": 12.0, "val_repeat3_share": 0.2},
        {"val_bleu": 12.0 + 1e-12, "val_repeat3_share": 0.2},
    ]
    assert best_setting(rows, "bleu") == 2
    assert best_setting(rows[:2], "bleu") == 1
    assert best_setting([{"val_rougeL": 5.0, "val_repeat3_share": 0.0}] * 3, "rougeL") == 0


WORDS = "the old horse hears the bird and the small cat sees the dog while a young man calls the red fish".split()


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer([" ".join(WORDS)] * 4, vocab_size=200, min_frequency=1)


def word_looper(tokenizer, seed: int) -> LoopingModel:
    """A ``LoopingModel`` over the tokenizer's vocabulary that loops "the old horse" and favours whole words."""
    vocab = tokenizer.get_vocab()
    words = [i for token, i in vocab.items() if token.startswith("▁") and token[1:] in WORDS]
    cycle = [vocab["▁the"], vocab["▁old"], vocab["▁horse"]]
    return LoopingModel(vocab_size=tokenizer.get_vocab_size(), seed=seed, cycle=cycle, favoured=words)


def guarded(decoding, n: int, p: float):
    return decoding.model_copy(update={"no_repeat_ngram_size": n, "repetition_penalty": p})


# A mild penalty: a strong one alone stops this model's loops, and the ban would then change nothing.
GRID = {"no_repeat_ngram_size": [0, 2], "repetition_penalty": [1.0, 1.5], "val_sentences": None}


def grid_decoding(method: str = "beam"):
    decoding = section("model", "translator").decoding
    return decoding.model_copy(
        update={"method": method, "max_len_b": 12, "max_len_a": 0.0, "guard_grid": GuardGrid(**GRID)}
    )


@pytest.mark.parametrize("method", ["greedy", "beam"])
def test_the_validation_grid_chooses_the_setting_whose_outputs_match_the_references(tokenizer, method):
    """References made from one setting's outputs give it BLEU 100: whichever setting that is, it is chosen."""
    model = word_looper(tokenizer, seed=1)
    sources = [" ".join(WORDS[i : i + 4]) for i in range(0, 16, 2)]
    decoding = grid_decoding(method)
    outputs = {
        (n, p): Translator(model, tokenizer, guarded(decoding, n, p)).translate(sources)
        for n, p in itertools.product(GRID["no_repeat_ngram_size"], GRID["repetition_penalty"])
    }
    assert len({tuple(o) for o in outputs.values()}) == 4, "each setting should decode differently"
    for (n, p), hypotheses in outputs.items():
        val = [{"ref": str(i), "src": s, "tgt": h} for i, (s, h) in enumerate(zip(sources, hypotheses))]
        choice = choose_guards(Translator(model, tokenizer, decoding), val)
        assert (choice.decoding.no_repeat_ngram_size, choice.decoding.repetition_penalty) == (n, p)
        assert list(choice.table["chosen"]) == [key == (n, p) for key in outputs]
        assert choice.decoding.model_copy(update={"no_repeat_ngram_size": 0, "repetition_penalty": 1.0}) == decoding


def test_the_evaluation_reports_the_chosen_and_the_unguarded_setting(tokenizer, tmp_path):
    model = word_looper(tokenizer, seed=3)
    sources = [" ".join(WORDS[i : i + 4]) for i in range(0, 16, 2)]
    test = [{"ref": str(i), "src": s, "tgt": s} for i, s in enumerate(sources)]
    chosen = guarded(grid_decoding(), 2, 1.0)
    evaluation = evaluate(Translator(model, tokenizer, chosen), test, tmp_path, 3, 0)
    metrics = evaluation.metrics
    guarded_out = Translator(model, tokenizer, chosen).translate(sources)
    loose_out = Translator(model, tokenizer, guarded(chosen, 0, 1.0)).translate(sources)
    assert metrics["test_repeat3_share"] == repeat_share(guarded_out) == 0.0
    assert metrics["test_repeat3_share_unguarded"] == repeat_share(loose_out) > 0.5
    assert metrics["decoding_no_repeat_ngram_size"] == 2 and metrics["decoding_repetition_penalty"] == 1.0
    assert {"test_bleu_unguarded", "test_chrf_unguarded", "test_repeat3_share_reference"} <= set(metrics)
    table = evaluation.tables["repetition_guards"]
    assert list(table["setting"]) == ["chosen", "unguarded"]
    assert list(evaluation.tables["sample_translations"]["translation_unguarded"]) == loose_out[:3]


def test_the_registered_model_decodes_with_the_setting_chosen_on_validation(tmp_path):
    """The head's evaluation chooses on val, and ``pyfunc`` bundles that choice: the served model, loaded from
    its artifacts, decodes with it (and so differs from the configured, unguarded decoding)."""
    from tests.tiny import TINY
    from triad.config import compose
    from triad.heads.translator.head import TranslatorHead
    from triad.heads.translator.module import TranslatorModule

    head = TranslatorHead(compose([*TINY["translator"], "model.translator.n_attention_examples=0"]))
    assert (head.model_cfg.decoding.no_repeat_ngram_size, head.model_cfg.decoding.repetition_penalty) == (0, 1.0)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    train_tokenizer([" ".join(WORDS)] * 4, 60, 1).save(str(data_dir / "tokenizer.json"))
    sources = [" ".join(WORDS[i : i + 5]) for i in range(0, 18, 3)]
    pairs = [{"ref": str(i), "src": s, "tgt": s} for i, s in enumerate(sources)]
    for split in ("train", "val", "test"):
        write_jsonl(data_dir / f"{split}.jsonl", pairs)
    dm = TranslationDataModule(data_dir, 8, head.model_cfg.net.max_len)
    torch.manual_seed(0)
    module = TranslatorModule(head.model_cfg, dm.vocab_size, PAD_ID).eval()
    # Make the validation references the outputs of one guarded setting: the grid must pick it.
    grid = head.model_cfg.decoding.guard_grid
    outputs = {
        (n, p): Translator(module.model, dm.tokenizer, guarded(head.model_cfg.decoding, n, p)).translate(sources)
        for n, p in itertools.product(grid.no_repeat_ngram_size, grid.repetition_penalty)
    }
    assert list(outputs) == [(0, 1.0), (0, 1.2), (3, 1.0), (3, 1.2)]
    wanted = outputs[(3, 1.2)]
    assert all(other != wanted for key, other in outputs.items() if key != (3, 1.2))
    write_jsonl(data_dir / "val.jsonl", [{**p, "tgt": w} for p, w in zip(pairs, wanted)])

    evaluation = head.evaluate(module, dm, tmp_path)
    assert evaluation.metrics["decoding_no_repeat_ngram_size"] == 3
    assert evaluation.metrics["decoding_repetition_penalty"] == 1.2
    spec = head.pyfunc(module, dm, tmp_path / "work")
    served = TranslatorPyfunc()
    served.load_context(PythonModelContext(spec.artifacts, None))
    assert (served.translator.decoding.no_repeat_ngram_size, served.translator.decoding.repetition_penalty) == (3, 1.2)
    assert served.predict(None, sources) == wanted


def test_a_model_registered_before_the_guards_loads_and_decodes_unguarded(tmp_path):
    model = tiny_seq2seq(vocab_size=60)
    tokenizer_path = tmp_path / "tokenizer.json"
    train_tokenizer([" ".join(WORDS)] * 4, 60, 1).save(str(tokenizer_path))
    decoding = guarded(grid_decoding(), 3, 1.2)
    spec = bundle(model, decoding, tokenizer_path, tmp_path / "work", ["the dog"])
    config_file = Path(spec.artifacts["config"])
    config = json.loads(config_file.read_text())
    for key in ("no_repeat_ngram_size", "repetition_penalty", "guard_grid"):
        del config["decoding"][key]
    config_file.write_text(json.dumps(config))
    served = TranslatorPyfunc()
    served.load_context(PythonModelContext(spec.artifacts, None))
    assert Guards.of(served.translator.decoding).off


def test_the_benchmark_tabulates_every_grid_setting(tokenizer):
    sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))
    from translator_repetition import setting_table

    model = word_looper(tokenizer, seed=3)
    sources = [" ".join(WORDS[i : i + 4]) for i in range(0, 16, 2)]
    pairs = [{"ref": str(i), "src": s, "tgt": s} for i, s in enumerate(sources)]
    table, outputs = setting_table(Translator(model, tokenizer, grid_decoding()), pairs)
    assert list(zip(table.no_repeat_ngram_size, table.repetition_penalty)) == [(0, 1.0), (0, 1.5), (2, 1.0), (2, 1.5)]
    assert {"test_bleu", "test_chrf", "test_repeat3_share", "seconds"} <= set(table.columns)
    assert table.test_repeat3_share.iloc[0] > 0.5 and table.test_repeat3_share.iloc[2] == 0.0
    assert len(outputs) == 4


def test_the_card_describes_the_guards_served_not_the_ones_configured():
    """The evaluation picks the guards on the validation split; the card states what the version serves."""
    from triad.config import compose
    from triad.heads import get_head
    from triad.heads.translator.evaluate import with_guards

    head = get_head("translator", compose([]))
    before = " ".join(head.card({}, {}).limits)
    assert "repetition guards as served: none (chosen on the validation split" in before
    head.chosen_decoding = with_guards(head.model_cfg.decoding, Guards(no_repeat_ngram_size=3, repetition_penalty=1.2))
    after = " ".join(head.card({}, {}).limits)
    assert "repetition guards as served: no 3-gram repeated, repetition penalty 1.2 (chosen on the validation" in after
