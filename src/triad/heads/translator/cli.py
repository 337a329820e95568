"""``triad predict translator``: translate sentences with a registered translator."""

from __future__ import annotations

import argparse

SUMMARY = "translate sentences"
DESCRIPTION = "Translate sentences."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sentences", nargs="+", help="source sentences")


def show(args: argparse.Namespace, model) -> None:
    from triad.predict import model_predict

    for source, target in zip(args.sentences, model_predict(args, model, list(args.sentences))):
        print(f"{source}\n  -> {target}")
