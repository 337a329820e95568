"""The translator on a user's own parallel text: real files with each fault the issue names, the stable
split, the data report, ROUGE for summarization and its gate, and ``triad predict translator --file``."""

import json
import time

import pytest
import torch
from rouge_score import rouge_scorer

from tests.heads.own_translator import sentence_pairs
from tests.profile import section
from triad.cli import main
from triad.data.own import split_of
from triad.errors import DataError
from triad.heads.translator.data import prepare, read_jsonl, train_tokenizer
from triad.heads.translator.decoding import Translator
from triad.heads.translator.evaluate import evaluate, rouge, score
from triad.heads.translator.language_model import english_side
from triad.heads.translator.model import Seq2SeqTransformer, TransformerConfig
from triad.heads.translator.own_data import split_pairs
from triad.heads.translator.text_files import check_utf8_file

PAIRS = sentence_pairs(120)


def own(source, target, **overrides):
    """The parallel_text data section on two files, with a small vocabulary."""
    values = dict(
        corpus="parallel_text",
        source=str(source),
        target=str(target),
        path=str(source),
        raw=[str(source), str(target)],
        name="own-translator",
        src_lang=None,
        tgt_lang=None,
        max_words=None,
        max_train_pairs=None,
        max_eval_pairs=None,
        val_fraction=0.1,
        test_fraction=0.1,
        vocab_size=100,
    )
    return section("data", "translator", **(values | overrides))


def write_pair_files(folder, pairs, source_lines=None, target_lines=None):
    """``folder/src.txt`` and ``folder/tgt.txt`` (bytes lines, as given, else the pairs' sides)."""
    folder.mkdir(parents=True, exist_ok=True)
    source, target = folder / "src.txt", folder / "tgt.txt"
    source_lines = source_lines if source_lines is not None else [s.encode() for s, _ in pairs]
    target_lines = target_lines if target_lines is not None else [t.encode() for _, t in pairs]
    source.write_bytes(b"".join(line + b"\n" for line in source_lines))
    target.write_bytes(b"".join(line + b"\n" for line in target_lines))
    return source, target


def test_files_that_differ_by_one_line_are_refused_naming_both_files_and_counts(tmp_path):
    source, target = write_pair_files(tmp_path, PAIRS)
    with target.open("ab") as fh:
        fh.write(b"ta vok vela ta mira vidat.\n")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DataError, match="different numbers of lines") as error:
        prepare(own(source, target, on_bad="skip"), out)  # never skipped: the pairs cannot be trusted
    assert f"{source} has 120, {target} has 121" in str(error.value)
    assert not list(out.iterdir())


def test_blank_lines_at_the_end_windows_line_ends_and_a_bom_are_not_faults(tmp_path):
    source, target = write_pair_files(tmp_path, PAIRS)
    source.write_bytes(b"\xef\xbb\xbf" + source.read_bytes() + b"\n\n")
    target.write_bytes(target.read_bytes().replace(b"\n", b"\r\n"))
    (tmp_path / "out").mkdir()
    summary = prepare(own(source, target), tmp_path / "out")
    pairs = [p for split in ("train", "val", "test") for p in read_jsonl(tmp_path / "out" / f"{split}.jsonl")]
    assert len(pairs) == summary["train_pairs"] + summary["val_pairs"] + summary["test_pairs"] == 120
    first = next(p for p in pairs if p["ref"] == "1")
    assert (first["src"], first["tgt"]) == PAIRS[0]  # no BOM, no \r


def test_an_empty_line_on_one_side_is_named_with_its_line_and_can_be_skipped(tmp_path):
    target_lines = [t.encode() for _, t in PAIRS]
    target_lines[6] = b"   "  # line 7: whitespace only
    source, target = write_pair_files(tmp_path, PAIRS, target_lines=target_lines)
    with pytest.raises(DataError, match=rf"{target}:7: empty line: line 7 of src.txt has text"):
        prepare(own(source, target), tmp_path)
    out = tmp_path / "skipped"
    out.mkdir()
    prepare(own(source, target, on_bad="skip"), out)
    report = json.loads((out / "data_report.json").read_text())
    assert report["skipped"] == 1 and sum(report["counts"]["pairs"].values()) == 119
    assert report["problems"] == [{"path": str(target), "line": 7, "reason": "empty line: line 7 of src.txt has text"}]


def test_a_line_blank_on_both_sides_is_skipped_and_counted(tmp_path):
    source_lines = [s.encode() for s, _ in PAIRS]
    target_lines = [t.encode() for _, t in PAIRS]
    source_lines[10] = target_lines[10] = b""
    source, target = write_pair_files(tmp_path, PAIRS, source_lines, target_lines)
    prepare(own(source, target), tmp_path)
    report = json.loads((tmp_path / "data_report.json").read_text())
    assert report["blank_lines"] == 1 and report["problems"] == []


@pytest.mark.parametrize("k", [1, 5, 120])
def test_invalid_utf8_on_line_k_is_named_with_the_file_and_line(tmp_path, k):
    source_lines = [s.encode() for s, _ in PAIRS]
    source_lines[k - 1] = "the café dog".encode("latin-1")  # é is 0xe9 in Latin-1, invalid here in UTF-8
    source, target = write_pair_files(tmp_path, PAIRS, source_lines=source_lines)
    with pytest.raises(DataError, match=rf"{source}:{k}: invalid UTF-8: byte 0xe9 at byte 8 of the line"):
        prepare(own(source, target), tmp_path)
    with pytest.raises(DataError, match=rf"--file {source} is not UTF-8 text: line {k}: invalid UTF-8"):
        check_utf8_file(source, "--file")
    out = tmp_path / "skipped"
    out.mkdir()
    prepare(own(source, target, on_bad="skip"), out)
    kept = {p["ref"] for split in ("train", "val", "test") for p in read_jsonl(out / f"{split}.jsonl")}
    assert str(k) not in kept and len(kept) == 119


def test_a_tsv_row_without_two_columns_is_named_with_its_line(tmp_path):
    rows = ["source\ttarget"] + [f"{s}\t{t}" for s, t in PAIRS]
    rows[4] = rows[4] + "\textra"  # line 5: three columns
    rows[9] = rows[9].replace("\t", " ")  # line 10: one column
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("\n".join(rows) + "\n", encoding="utf-8")
    cfg = section(
        "data",
        "translator",
        **own(tsv, tsv).model_dump() | dict(corpus="parallel_tsv", source=None, target=None, path=str(tsv)),
    )
    with pytest.raises(DataError) as error:
        prepare(cfg, tmp_path)
    message = str(error.value)
    assert "2 problem(s)" in message
    assert f"{tsv}:5: not two columns: found 3 tab-separated column(s)" in message
    assert f"{tsv}:10: not two columns: found 1 tab-separated column(s)" in message
    out = tmp_path / "skipped"
    out.mkdir()
    prepare(cfg.model_copy(update={"on_bad": "skip"}), out)
    report = json.loads((out / "data_report.json").read_text())
    assert report["skipped"] == 2 and sum(report["counts"]["pairs"].values()) == 118  # the header is no pair


def test_a_source_held_out_in_test_is_dropped_from_train_and_counted():
    """One source with two translations, whose pair hashes fall in test and in train."""
    source = "the old horse hears the bird."
    targets = [f"ta rasta vela ta pilo audat {i}." for i in range(200)]
    where = {split_of(f"{source}\t{t}", 0.1, 0.1): t for t in targets}
    pairs = [{"ref": str(i), "src": source, "tgt": where[s]} for i, s in enumerate(("train", "test"))]
    pairs += [{"ref": str(i + 2), "src": s, "tgt": t} for i, (s, t) in enumerate(PAIRS)]
    splits, dropped = split_pairs(pairs, 0.1, 0.1)
    assert dropped["train"] == 1 and dropped["test"] == 0
    assert source not in {p["src"] for p in splits["train"]}
    assert source in {p["src"] for p in splits["test"]}


def test_the_split_is_stable_when_lines_are_appended(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    more = sentence_pairs(200)
    first = own(*write_pair_files(tmp_path / "files_a", more[:100]))
    second = own(*write_pair_files(tmp_path / "files_b", more))  # the same 100 lines, then 100 more
    prepare(first, tmp_path / "a")
    prepare(second, tmp_path / "b")

    def split_by_pair(folder):
        return {
            (p["src"], p["tgt"]): split
            for split in ("train", "val", "test")
            for p in read_jsonl(folder / f"{split}.jsonl")
        }

    before, after = split_by_pair(tmp_path / "a"), split_by_pair(tmp_path / "b")
    assert len(before) == 100 and len(after) == 200
    assert {pair: after[pair] for pair in before} == before
    assert set(before.values()) == {"train", "val", "test"}


def test_the_data_report_counts_pairs_lengths_and_problems(tmp_path):
    source, target = write_pair_files(tmp_path, PAIRS)
    summary = prepare(own(source, target, src_lang="en", tgt_lang="x-nordish"), tmp_path)
    report = json.loads((tmp_path / "data_report.json").read_text())
    counts = report["counts"]["pairs"]
    assert [counts[s] for s in ("train", "val", "test")] == [summary[f"{s}_pairs"] for s in ("train", "val", "test")]
    assert sum(counts.values()) == 120 and min(counts.values()) > 0
    # "the red dog sees the cat." is 6 words; "ta vok ruva ta mira vidat." 6 too
    assert report["text_lengths"]["source sentences (words)"] == dict(min=6, p5=6, p50=6, p95=6, max=6)
    assert report["task"] == "translation" and report["problems"] == []
    markdown = (tmp_path / "data_report.md").read_text()
    assert f"Source: `{source} + {target}`" in markdown and "Problems: 0" in markdown
    assert "| pairs |" in markdown
    assert (tmp_path / "tokenizer.json").is_file()
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    assert english_side(tmp_path) == "src"  # the language model step models the English side


def test_rouge_gives_rouge_scores_exact_values_and_keeps_every_script():
    hypothesis, reference = "the cat sat on the mat", "the cat lay on the mat"
    scores = rouge([hypothesis], [reference])
    # 5 of 6 words match; 3 of 5 bigrams (the cat, on the, the mat); the longest common subsequence is 5 words
    assert scores == pytest.approx({"rouge1": 100 * 5 / 6, "rouge2": 60.0, "rougeL": 100 * 5 / 6})
    english = ["Running dogs chased the cats quickly.", "A storm hit the coast on Monday, officials said."]
    references = ["The dog runs after a cat.", "Officials said a storm hit the coast."]
    original = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    for name, value in rouge(english, references).items():
        expected = sum(original.score(r, h)[name].fmeasure for h, r in zip(english, references)) / 2
        assert value == pytest.approx(100 * expected)  # on English text, exactly rouge-score's own tokens
    greek = rouge(["Ο σκύλος τρέχει γρήγορα"], ["ο σκύλος κάθεται"])  # the original tokenizer sees no words here
    assert greek["rouge1"] == pytest.approx(100 * 2 * (2 / 4) * (2 / 3) / (2 / 4 + 2 / 3))
    assert score(["a b"], ["a b"], "summarization") == {"rouge1": 100.0, "rouge2": 100.0, "rougeL": 100.0}


def test_summarization_is_scored_and_gated_on_rouge_l(tmp_path):
    from triad.config import compose
    from triad.heads import get_head

    cfg = compose(["data/translator=summaries", "data.translator.source=a.txt", "data.translator.target=b.txt"])
    head = get_head("translator", cfg)
    assert cfg.data.translator.task == "summarization" and head.gate_metric == "test_rougeL"
    assert get_head("translator", compose([])).gate_metric == "test_bleu"
    assert head.gate_passes({"test_rougeL": 31.0, "copy_baseline_rougeL": 20.0})[0]
    passes, reason = head.gate_passes({"test_rougeL": 12.0, "copy_baseline_rougeL": 20.0})
    assert not passes and reason == "test_rougeL 12.00 does not beat the copy-the-source baseline 20.00"

    # A real (untrained) model's evaluation reports ROUGE for the model and for copying the source.
    articles = ["the old horse hears the bird and the small cat sees the dog.", "the young man calls the red fish."]
    test = [{"ref": str(i), "src": a, "tgt": a.split(" and ")[0]} for i, a in enumerate(articles)]
    tokenizer = train_tokenizer(articles * 3, vocab_size=100, min_frequency=1)
    torch.manual_seed(0)
    model = Seq2SeqTransformer(
        TransformerConfig(
            vocab_size=tokenizer.get_vocab_size(),
            d_model=16,
            n_heads=2,
            n_encoder_layers=1,
            n_decoder_layers=1,
            d_ff=32,
            dropout=0.0,
            norm_first=True,
            positional="sinusoidal",
            max_len=32,
            tie_embeddings=True,
            pad_id=0,
            activation="relu",
        )
    )
    decoding = section("model", "translator").decoding.model_copy(update={"method": "greedy", "max_len_b": 4})
    evaluation = evaluate(Translator(model.eval(), tokenizer, decoding), test, tmp_path, 2, 0, "summarization")
    assert set(evaluation.metrics) == {
        "test_rouge1",
        "test_rouge2",
        "test_rougeL",
        "copy_baseline_rouge1",
        "copy_baseline_rouge2",
        "copy_baseline_rougeL",
        "test_sentences",
        "test_rouge1_unguarded",  # the decoding has no repetition guards: the same scores
        "test_rouge2_unguarded",
        "test_rougeL_unguarded",
        "test_repeat3_share",
        "test_repeat3_share_unguarded",
        "test_repeat3_share_reference",
        "decoding_no_repeat_ngram_size",
        "decoding_repetition_penalty",
        "val_guard_grid_seconds",
        "test_unguarded_seconds",
    }
    assert evaluation.metrics["test_rougeL_unguarded"] == evaluation.metrics["test_rougeL"]
    copy = rouge([t["src"] for t in test], [t["tgt"] for t in test])["rougeL"]
    assert evaluation.metrics["copy_baseline_rougeL"] == pytest.approx(copy)
    assert "sentence_rougeL" in evaluation.tables["sample_translations"].columns


def test_predict_file_is_checked_before_the_model_loads(tmp_path, capsys):
    bad = tmp_path / "in.txt"
    bad.write_bytes(b"the dog sees the cat.\n\nthe \xff bird.\n")
    started = time.perf_counter()
    model = ["predict", "--model", "no-such-model/1", "translator"]
    assert main([*model, "--file", str(bad), "--out", str(tmp_path / "out.txt")]) == 3
    assert f"--file {bad} is not UTF-8 text: line 3: invalid UTF-8: byte 0xff" in capsys.readouterr().err
    assert main([*model, "--file", str(tmp_path / "missing.txt")]) == 3
    assert "no such file" in capsys.readouterr().err
    good = tmp_path / "good.txt"
    good.write_text("the dog sees the cat.\n", encoding="utf-8")
    assert main([*model, "--file", str(good), "--out", str(tmp_path / "nowhere" / "out.txt")]) == 3
    err = capsys.readouterr().err
    assert f"the folder {tmp_path / 'nowhere'} does not exist" in err
    assert main(model) == 2
    assert "give sentences to translate, or --file FILE" in capsys.readouterr().err
    assert main([*model, "a sentence", "--file", str(good)]) == 2
    assert time.perf_counter() - started < 5
    assert not (tmp_path / "out.txt").exists()
