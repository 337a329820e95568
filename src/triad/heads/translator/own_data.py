"""The user's own parallel text as the translator's data: read, check, split stably, report.

Two layouts (``conf/data/translator/parallel_text.yaml`` and ``parallel_tsv.yaml``):

- ``parallel_text``: two aligned UTF-8 files, ``source`` and ``target``, one sentence a line; line k of
  the target file is the translation (or the summary) of line k of the source file;
- ``parallel_tsv``: one UTF-8 file, ``path``, one pair a line as ``source<TAB>target`` (a first line
  ``source<TAB>target`` is taken as a header and skipped).

Faults, each named with its file and line:

- files with different numbers of lines: always an error (the pairs cannot be trusted past the first
  missing line); blank lines at the very end of a file do not count;
- a line with text on one side and an empty line on the other, a line that is not valid UTF-8, a TSV
  row without exactly two columns: ``on_bad: fail`` stops with the list of all of them, ``on_bad: skip``
  drops those pairs and counts them in the report. A line blank on both sides is skipped and counted.

Each pair's split is a hash of its text (``triad.data.own.split_of``), so appending lines never moves
existing pairs between train, val and test. A source sentence that occurs in val or test is dropped
from train (and from val when it is in test), so the held-out scores measure translation of unseen
sentences; those pairs are counted. The BPE tokenizer is learned on the training split.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from triad.data.own import (
    SPLITS,
    Problems,
    drop_duplicates_across_splits,
    own_path,
    percentiles,
    split_of,
    write_report,
)
from triad.errors import DataError
from triad.heads.translator.config import PARALLEL_TEXT, PARALLEL_TSV, TranslatorData
from triad.heads.translator.data import Pair, _short, cap_splits, validate_splits, write_prepared
from triad.heads.translator.text_files import content_length, read_text_lines

log = logging.getLogger(__name__)


def _clean(text: str) -> str:
    """One line's text with runs of whitespace (tabs included) collapsed to one space, ends trimmed."""
    return " ".join(text.split())


def read_parallel_text(source: Path, target: Path, problems: Problems) -> tuple[list[Pair], int]:
    """The aligned pairs of two files -> (pairs, lines blank on both sides).

    Every faulty line is added to ``problems`` and its pair left out. ``ref`` is the line number.
    """
    sides = [read_text_lines(source), read_text_lines(target)]
    counts = [content_length(side.lines) for side in sides]
    if counts[0] != counts[1]:
        shorter = sides[counts.index(min(counts))].path
        raise DataError(
            f"the parallel files have different numbers of lines: {source} has {counts[0]}, {target} has "
            f"{counts[1]}. They must be aligned, line k of {target.name} the translation of line k of "
            f"{source.name}. Find where the pairs drift apart (e.g. the last lines of {shorter.name}, or a "
            "sentence split over two lines) and fix it; blank lines at the end of a file are ignored."
        )
    bad_lines: dict[int, None] = {}
    for side in sides:
        for line, reason in side.bad:
            problems.add(side.path, reason, line)
            bad_lines[line] = None
    pairs, blank = [], 0
    for i in range(counts[0]):
        line = i + 1
        if line in bad_lines:
            continue
        src, tgt = _clean(sides[0].lines[i]), _clean(sides[1].lines[i])
        if not src and not tgt:
            blank += 1
        elif not src or not tgt:
            empty, other = (source, target) if not src else (target, source)
            problems.add(empty, f"empty line: line {line} of {other.name} has text", line)
        else:
            pairs.append({"ref": str(line), "src": src, "tgt": tgt})
    problems.skipped = counts[0] - len(pairs) - blank
    return pairs, blank


def read_parallel_tsv(path: Path, problems: Problems) -> tuple[list[Pair], int]:
    """The pairs of a two-column TSV file -> (pairs, blank lines); faulty rows go to ``problems``."""
    text = read_text_lines(path)
    for line, reason in text.bad:
        problems.add(path, reason, line)
    pairs, blank, faulty = [], 0, len(text.bad)
    for i, row in enumerate(text.lines[: content_length(text.lines)]):
        line = i + 1
        if row is None:
            continue
        if not row.strip():
            blank += 1
            continue
        columns = row.split("\t")
        if line == 1 and [c.strip().lower() for c in columns] == ["source", "target"]:
            continue  # a header
        if len(columns) != 2:
            problems.add(
                path, f"not two columns: found {len(columns)} tab-separated column(s), expected source<TAB>target", line
            )
            faulty += 1
            continue
        src, tgt = _clean(columns[0]), _clean(columns[1])
        if not src or not tgt:
            problems.add(path, f"empty {'source' if not src else 'target'} column", line)
            faulty += 1
            continue
        pairs.append({"ref": str(line), "src": src, "tgt": tgt})
    problems.skipped = faulty
    return pairs, blank


def split_pairs(pairs: list[Pair], val_fraction: float, test_fraction: float) -> tuple[dict[str, list[Pair]], dict]:
    """Pairs by split, from a hash of each pair's text; then a source held out in val or test is dropped
    from the splits ranked below it (``drop_duplicates_across_splits``). -> (splits, dropped per split)."""
    names = [split_of(f"{p['src']}\t{p['tgt']}", val_fraction, test_fraction) for p in pairs]
    keep, dropped = drop_duplicates_across_splits([p["src"] for p in pairs], names)
    splits: dict[str, list[Pair]] = {name: [] for name in SPLITS}
    for pair, name, kept in zip(pairs, names, keep):
        if kept:
            splits[name].append(pair)
    return splits, dropped


def _words(pairs: list[Pair], side: str) -> list[int]:
    return [len(p[side].split()) for p in pairs]


def prepare_own(cfg: TranslatorData, out_dir: Path) -> dict[str, Any]:
    """Read, check, split, filter and cap the user's pairs; write them, the tokenizer and the data report."""
    problems = Problems()
    if cfg.corpus == "parallel_text":
        source = own_path(cfg.source, "data.translator.source", PARALLEL_TEXT)
        target = own_path(cfg.target, "data.translator.target", PARALLEL_TEXT)
        for key, path in (("source", source), ("target", target)):
            if not path.is_file():
                raise DataError(f"data.translator.{key}={path} is not a file. Expected {PARALLEL_TEXT}.")
        where = f"{source} + {target}"
        pairs, blank = read_parallel_text(source, target, problems)
    else:
        tsv = own_path(cfg.path, "data.translator.path", PARALLEL_TSV)
        if not tsv.is_file():
            raise DataError(f"data.translator.path={tsv} is not a file. Expected {PARALLEL_TSV}.")
        where = str(tsv)
        pairs, blank = read_parallel_tsv(tsv, problems)
    what = f"the parallel text {where}"
    layout = PARALLEL_TEXT if cfg.corpus == "parallel_text" else PARALLEL_TSV
    if problems and cfg.on_bad == "fail":
        problems.fail(
            what,
            "Fix these lines (keeping both sides aligned), or set data.translator.on_bad=skip to leave the "
            "pairs out (they are counted in the data report).",
        )
    problems.settle(cfg.on_bad, what)
    if not pairs:
        raise DataError(f"{what} holds no sentence pairs. Expected {layout}.")

    splits, duplicates = split_pairs(pairs, cfg.val_fraction, cfg.test_fraction)
    long_pairs = sum(not _short(p, cfg.max_words) for ps in splits.values() for p in ps)
    splits = {name: [p for p in ps if _short(p, cfg.max_words)] for name, ps in splits.items()}
    before_caps = {name: len(ps) for name, ps in splits.items()}
    splits = cap_splits(splits, cfg)
    empty = [name for name in SPLITS if not splits[name]]
    if empty:
        raise DataError(
            f"{what}: {sum(before_caps.values())} usable pair(s) leave the {' and '.join(empty)} split(s) empty "
            f"(val_fraction {cfg.val_fraction}, test_fraction {cfg.test_fraction}"
            + (f", max_words {cfg.max_words}" if cfg.max_words else "")
            + "). Add pairs or raise the fractions."
        )
    validate_splits(splits, allow_text_overlap=False)

    kept = [p for name in SPLITS for p in splits[name]]
    report = {
        "source": cfg.corpus,
        "path": where,
        "task": cfg.task,
        "counts": {"pairs": {name: len(splits[name]) for name in SPLITS}},
        "text_lengths": {
            "source sentences (words)": percentiles(_words(kept, "src")),
            "target sentences (words)": percentiles(_words(kept, "tgt")),
        },
        "problems": problems.as_report(),
        "skipped": problems.skipped,
        "duplicates_dropped": duplicates,
        "blank_lines": blank,
        "longer_than_max_words": long_pairs,
        "capped": {name: before_caps[name] - len(splits[name]) for name in SPLITS},
    }
    write_report(out_dir, report)
    summary = {
        "source": cfg.corpus,
        "path": where,
        "task": cfg.task,
        "direction": f"{cfg.src_lang or 'src'}-{cfg.tgt_lang or 'tgt'}",
        # the language model step models English where one side is English, else the target side
        "lm_side": "src" if cfg.src_lang == "en" and cfg.tgt_lang != "en" else "tgt",
        "skipped": problems.skipped,
        "duplicates_dropped": sum(duplicates.values()),
    }
    return summary | write_prepared(splits, cfg, out_dir)
