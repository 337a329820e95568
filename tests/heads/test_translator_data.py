"""The translator's data step: chapter-level split, determinism, validation, config checks."""

import gzip

import pytest
from pydantic import ValidationError

from tests.profile import section
from triad.errors import DataError
from triad.heads.translator.data import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    TranslationDataModule,
    prepare,
    read_jsonl,
    read_multi30k,
    split_bible,
    validate_splits,
)

SMALL = section("data", "translator", max_words=10, max_train_pairs=400, max_eval_pairs=50, vocab_size=300)


def test_bible_split_holds_out_whole_chapters():
    splits = split_bible(section("data", "translator"))
    chapters = {name: {p["ref"].rsplit(":", 1)[0] for p in pairs} for name, pairs in splits.items()}
    assert not chapters["train"] & chapters["test"] and not chapters["train"] & chapters["val"]
    assert not chapters["val"] & chapters["test"]
    assert sum(map(len, splits.values())) == 31102  # every verse lands in exactly one split
    other_seed = split_bible(section("data", "translator", split_seed=1))
    assert {p["ref"] for p in other_seed["test"]} != {p["ref"] for p in splits["test"]}


def test_prepare_is_deterministic_and_keeps_test_verses_out_of_training(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    summary = prepare(SMALL, first)
    assert prepare(SMALL, second) == summary
    for name in ("train.jsonl", "val.jsonl", "test.jsonl", "tokenizer.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    assert summary["train_pairs"] == 400 and 0 < summary["test_pairs"] <= 50

    train, test = read_jsonl(first / "train.jsonl"), read_jsonl(first / "test.jsonl")
    assert not {p["ref"] for p in train} & {p["ref"] for p in test}
    assert not {p["src"] for p in train} & {p["src"] for p in test}
    assert all(len(p["src"].split()) <= 10 and len(p["tgt"].split()) <= 10 for p in train + test)
    assert all("`" not in p["src"] for p in train)  # WEB backtick apostrophes normalised


def test_datamodule_batches_are_padded_ids_with_bos_and_eos(tmp_path):
    prepare(SMALL, tmp_path)
    dm = TranslationDataModule(tmp_path, batch_size=8, max_len=64)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["src"].shape[0] == 8 and batch["tgt"].shape[0] == 8
    assert (batch["tgt"][:, 0] == BOS_ID).all()
    for row in batch["src"].tolist() + batch["tgt"].tolist():
        real = [t for t in row if t != PAD_ID]
        assert real[-1] == EOS_ID and real == row[: len(real)]  # EOS last, padding only at the end
    text = dm.pairs["train"][0]["tgt"]
    assert dm.tokenizer.decode(dm.tokenizer.encode(text).ids) == text  # BPE round-trips the text


def test_validation_rejects_overlap_and_empty_splits():
    pair = {"ref": "1:1:1", "src": "In the beginning", "tgt": "Im Anfang"}
    with pytest.raises(DataError, match="both train and test"):
        validate_splits({"train": [pair], "val": [pair], "test": [pair]}, allow_text_overlap=False)
    with pytest.raises(DataError, match="empty split"):
        validate_splits({"train": [pair], "val": [], "test": [pair]}, allow_text_overlap=False)
    moved = pair | {"ref": "2:1:1"}
    with pytest.raises(DataError, match="source sentences"):
        validate_splits({"train": [pair], "val": [moved], "test": [moved]}, allow_text_overlap=False)


def test_multi30k_reads_aligned_files_from_a_mirror_and_checks_their_sums(tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "multi30k").mkdir(parents=True)
    for stem in ("train", "val", "test_2016_flickr"):
        for lang, text in (("de", "Ein Hund läuft.\n"), ("en", "A dog runs.\n")):
            with gzip.open(mirror / "multi30k" / f"{stem}.{lang}.gz", "wt", encoding="utf-8") as fh:
                fh.write(text)
    with pytest.raises(DataError, match="checksum mismatch"):
        read_multi30k(section("data", "translator", corpus="multi30k", src_lang="de", tgt_lang="en"), str(mirror))


def test_config_rejects_bad_values_with_clear_messages():
    with pytest.raises(ValidationError, match="both 'en'"):
        section("data", "translator", src_lang="en", tgt_lang="en")
    with pytest.raises(ValidationError, match="one side must be 'en'"):
        section("data", "translator", src_lang="de", tgt_lang="fr")
    with pytest.raises(ValidationError, match="divisible by n_heads"):
        section("model", "translator", net=dict(d_model=100, n_heads=3))
    with pytest.raises(ValidationError):
        section("model", "translator", decoding=dict(method="sampling"))
