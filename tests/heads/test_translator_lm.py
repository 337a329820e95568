"""The decoder-only language model: it learns a handful of sentences, its baseline is right, and it
refuses a corpus with no English side."""

import json
import math

import pytest

from tests.profile import section
from triad.errors import DataError
from triad.heads.translator.data import train_tokenizer, write_jsonl
from triad.heads.translator.language_model import english_side, train_language_model, unigram_perplexity

SENTENCES = [
    "In the beginning God created the heavens and the earth.",
    "God said, let there be light, and there was light.",
    "There was evening and there was morning, the first day.",
    "Jesus wept.",
]


def lm_config(**overrides):
    """``model.translator.lm`` of the default profile, with ``overrides``."""
    return section("model", "translator", lm=overrides).lm


def write_corpus(data_dir, direction="en-de"):
    pairs = [{"ref": f"1:1:{i}", "src": s, "tgt": s.upper()} for i, s in enumerate(SENTENCES)]
    if direction.startswith("de"):
        pairs = [{"ref": p["ref"], "src": p["tgt"], "tgt": p["src"]} for p in pairs]
    for split in ("train", "val", "test"):
        write_jsonl(data_dir / f"{split}.jsonl", pairs * (8 if split == "train" else 1))
    train_tokenizer(SENTENCES + [s.upper() for s in SENTENCES], 200, 1).save(str(data_dir / "tokenizer.json"))
    (data_dir / "summary.json").write_text(json.dumps({"direction": direction}))


@pytest.mark.parametrize("direction, side", [("en-de", "src"), ("de-en", "tgt")])
def test_the_english_side_is_found_in_either_direction(tmp_path, direction, side):
    write_corpus(tmp_path, direction)
    assert english_side(tmp_path) == side


def test_the_language_model_learns_the_english_side(tmp_path):
    data_dir, out_dir = tmp_path / "data", tmp_path / "lm"
    data_dir.mkdir(), out_dir.mkdir()
    write_corpus(data_dir, "de-en")  # English is the target side here
    cfg = lm_config(
        d_model=32,
        n_heads=2,
        n_layers=1,
        dropout=0.0,
        max_epochs=25,
        batch_size=8,
        lr=1e-2,
        n_samples=2,
        max_new_tokens=12,
        temperature=0.5,
        top_k=1,
    )
    summary = train_language_model(cfg, data_dir, out_dir, seed=0)
    # trained and tested on the same four sentences: it must have memorised them, far below the unigram model
    assert summary["lm_test_perplexity"] < 1.5 < summary["lm_unigram_test_perplexity"]
    samples = (out_dir / "samples.md").read_text()
    assert "| In the beginning | God created the heavens and the earth. |" in samples.replace("  ", " ")
    assert (out_dir / "lm.pt").is_file()
    assert summary["lm_device"] == "cpu"


@pytest.mark.parametrize("total", [1, 5, 10, 100])
def test_the_schedule_warms_up_then_decays_for_any_number_of_steps(total):
    import torch

    from triad.nn.schedule import warmup_cosine

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = warmup_cosine(optimizer, total, warmup_steps=max(1, total // 10))  # as train_language_model
    rates = []
    for _ in range(total):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    warmup = max(1, total // 10)
    assert max(rates) == pytest.approx(1.0) and rates.index(max(rates)) == warmup - 1
    assert all(a >= b for a, b in zip(rates[warmup - 1 :], rates[warmup:]))  # never rises after the warm-up


def test_unigram_perplexity_of_uniform_counts_is_the_vocabulary_size():
    vocab = 5
    rows = [[1, 0, 1, 2, 3, 4]]  # BOS (not predicted) then every id once: with add-one counts all equal 2
    assert math.isclose(unigram_perplexity(rows, rows, vocab), vocab, rel_tol=1e-6)


def test_a_corpus_without_english_is_refused(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"direction": "de-fr"}))
    with pytest.raises(DataError, match="no English side"):
        english_side(tmp_path)


def test_a_config_whose_samples_overrun_max_len_is_refused_before_training():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"model\.translator\.lm\.max_new_tokens to 12 or less.*max_len to 34"):
        lm_config(max_len=16, max_new_tokens=30, prompt_tokens=3)  # BOS + 3 prompt tokens + 30 = 34 > 16
    assert lm_config(max_len=34, max_new_tokens=30, prompt_tokens=3).max_len == 34  # exactly fits


def test_the_weights_are_saved_before_sampling(tmp_path, monkeypatch):
    import torch

    from triad.heads.translator import language_model

    def failing_sample(*args, **kwargs):
        raise RuntimeError("sampling failed")

    monkeypatch.setattr(language_model, "sample", failing_sample)
    data_dir, out_dir = tmp_path / "data", tmp_path / "lm"
    data_dir.mkdir(), out_dir.mkdir()
    write_corpus(data_dir)
    cfg = lm_config(
        d_model=16, n_heads=2, n_layers=1, max_epochs=1, batch_size=16, max_len=32, n_samples=1, max_new_tokens=4
    )
    with pytest.raises(RuntimeError, match="sampling failed"):
        train_language_model(cfg, data_dir, out_dir, seed=0)
    saved = torch.load(out_dir / "lm.pt")
    assert saved["architecture"]["max_len"] == 32 and saved["state_dict"]
