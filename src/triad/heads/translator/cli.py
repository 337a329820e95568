"""``triad predict translator``: translate (or summarize) sentences with a registered translator.

``triad predict translator "Jesus wept."`` prints each sentence and its translation;
``triad predict translator --file input.txt --out output.txt`` translates a UTF-8 file, one sentence a
line, into a file with one translation a line (the same number of lines; a blank line stays blank),
with a progress bar on a terminal. Without ``--out`` the translations go to standard output.

Nothing heavy is imported here at module level or in ``check``: the input is checked in well under a
second, before the model loads.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from triad.errors import DataError, TriadError

SUMMARY = "translate sentences"
DESCRIPTION = (
    "Translate sentences given as arguments, or a UTF-8 text file of one sentence a line (--file) "
    "into one translation a line (--out)."
)
CHUNK = 64  # lines sent to the model at once: the progress bar moves by this many


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sentences", nargs="*", help="source sentences")
    parser.add_argument(
        "--file", type=Path, default=None, help="a UTF-8 text file, one source sentence a line (instead of sentences)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="with --file: write the translations here, one a line (default: stdout)"
    )


def check(args: argparse.Namespace) -> None:
    """Refuse a request that cannot work before the model loads: no input, both kinds of input, a --file
    that is missing or not UTF-8 (naming its first bad lines), an --out whose folder does not exist."""
    from triad.heads.translator.text_files import check_utf8_file

    if args.file is None and not args.sentences:
        raise TriadError("give sentences to translate, or --file FILE with one sentence a line")
    if args.file is not None and args.sentences:
        raise TriadError("give sentences or --file, not both")
    if args.out is not None:
        if args.file is None:
            raise TriadError("--out goes with --file: sentences given as arguments are printed")
        if not args.out.parent.resolve().is_dir():
            raise DataError(f"--out {args.out}: the folder {args.out.parent} does not exist")
        if args.out.is_dir():
            raise DataError(f"--out {args.out} is a folder; name the output file, e.g. {args.out / 'output.txt'}")
    if args.file is not None:
        if args.file.is_dir():
            raise DataError(f"--file {args.file} is a folder; give a text file with one sentence a line")
        check_utf8_file(args.file, "--file")


def show(args: argparse.Namespace, model) -> None:
    from triad.predict import model_predict

    if args.file is None:
        for source, target in zip(args.sentences, model_predict(args, model, list(args.sentences))):
            print(f"{source}\n  -> {target}")
        return
    translations = translate_file(args, model)
    text = "".join(line + "\n" for line in translations)
    if args.out is None:
        sys.stdout.write(text)
        return
    args.out.write_text(text, encoding="utf-8")
    print(f"translated {len(translations)} line(s) of {args.file} into {args.out}", file=sys.stderr)


def translate_file(args: argparse.Namespace, model) -> list[str]:
    """One output line per line of ``args.file``: its translation, or an empty line for a blank one."""
    from tqdm.auto import tqdm

    from triad.heads.translator.text_files import check_utf8_file
    from triad.predict import model_predict

    lines = [" ".join((line or "").split()) for line in check_utf8_file(args.file, "--file").lines]
    todo = [i for i, line in enumerate(lines) if line]
    out = [""] * len(lines)
    with tqdm(total=len(todo), desc="translate", unit="line", disable=not sys.stderr.isatty()) as bar:
        for start in range(0, len(todo), CHUNK):
            index = todo[start : start + CHUNK]
            for i, text in zip(index, model_predict(args, model, [lines[i] for i in index]), strict=True):
                out[i] = " ".join(str(text).split())  # one line each, whatever the model returns
            bar.update(len(index))
    return out
