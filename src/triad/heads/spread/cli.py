"""``triad predict spread``: each node's probability of being reached on a graph from an edge-list file."""

from __future__ import annotations

import argparse
from pathlib import Path

from triad.errors import DataError

SUMMARY = "each node's probability of being reached on a graph"
DESCRIPTION = (
    "Predict how a cascade, an epidemic or heat spreads over a graph given as an edge list file "
    "(one 'u v' pair of integer node ids per line; '#' starts a comment)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("edges", type=Path, help="edge list file")
    parser.add_argument("--seeds", type=int, nargs="+", required=True, help="seed node ids")
    parser.add_argument("--process", choices=("ic", "sir", "sis", "heat"), default="ic", help="spreading process")
    parser.add_argument("--p", type=float, help="IC edge probability")
    parser.add_argument("--beta", type=float, help="SIR/SIS infection probability per step")
    parser.add_argument("--gamma", type=float, help="SIR/SIS recovery probability per step")
    parser.add_argument("--t", type=float, help="heat time, or SIS horizon in steps")
    parser.add_argument("--top", type=int, default=10, help="print this many most-reached nodes (0: all)")


def read_edge_list(path: Path) -> list[list[int]]:
    """'u v' integer pairs, one per line; blank lines and '#' comments are skipped."""
    if not path.is_file():
        raise DataError(f"no such edge list file: {path}")
    edges = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        words = line.split("#")[0].split()
        if not words:
            continue
        try:
            u, v = (int(w) for w in words[:2])
        except ValueError:
            raise DataError(f"{path}:{number}: expected two integer node ids 'u v', got {line.strip()!r}") from None
        edges.append([u, v])
    return edges


def show(args: argparse.Namespace, model) -> None:
    import pandas as pd

    request = {
        "edges": read_edge_list(args.edges),
        "seeds": list(args.seeds),
        "process": args.process,
        "p": args.p,
        "beta": args.beta,
        "gamma": args.gamma,
        "t": args.t,
    }
    try:
        result = model.predict(pd.DataFrame([request]))
    except Exception as exc:  # the model's own message says which input was wrong
        raise DataError(f"cannot predict: {exc}") from None
    frame = pd.DataFrame({"node": list(result["nodes"][0]), "probability": list(result["probabilities"][0])})
    frame = frame.sort_values("probability", ascending=False, kind="stable")
    print(frame.head(args.top or len(frame)).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"expected number of nodes reached: {float(result['expected_size'][0]):.2f} of {len(frame)}")
