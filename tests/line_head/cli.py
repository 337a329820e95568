"""``triad predict line X [X ...]``: the fitted line's value at each X."""

from __future__ import annotations

import argparse

SUMMARY = "the fitted line's value at each x"
DESCRIPTION = "Print y = slope * x + intercept, as the registered line model learned it, for each x."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("x", type=float, nargs="+", help="where to evaluate the line")


def show(args: argparse.Namespace, model) -> None:
    from triad.predict import model_predict

    for x, y in zip(args.x, model_predict(args, model, list(args.x))):
        print(f"{x:g} -> {y:.4f}")
