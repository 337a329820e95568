"""``triad predict spread``: each node's probability of being reached on a network from an edge-list file.

``check`` reads the file (``edge_list.read_edge_list``: every fault with its line) and checks the seeds and
the process's parameters before the model loads; it imports nothing heavy (numpy only), nor does this module.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

from triad.errors import DataError, TriadError

SUMMARY = "each node's probability of being reached on a network"
DESCRIPTION = (
    "Predict how a cascade, an epidemic or heat spreads over a network given as an edge-list file: one "
    "undirected edge a line, two integer node ids 'u v' or 'u,v' (a third column, a weight, is ignored), "
    "'#' comments. Node ids may be any integers; the output names them. With --out, every node's probability "
    "is written to a CSV file (node,probability,uncertainty) and the expected number of nodes reached to "
    "FILE.summary.json. Every answer says how it was obtained: by the network (learned), inside the range it was "
    "validated on and confirmed by a quick simulation, or by simulation (simulated) when the question lies outside "
    "that range or the check disagrees; on a graph too large to simulate, the network's answer comes flagged."
)
NEEDS = {"ic": ("p",), "sir": ("beta", "gamma"), "sis": ("beta", "gamma", "t"), "heat": ("t",)}  # simulate.USES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("edges", type=Path, help="edge-list file")
    parser.add_argument("--seeds", type=int, nargs="+", required=True, help="seed node ids (the file's ids)")
    parser.add_argument("--process", choices=tuple(NEEDS), default="ic", help="spreading process")
    parser.add_argument("--p", type=float, help="IC edge probability")
    parser.add_argument("--beta", type=float, help="SIR/SIS infection probability per step")
    parser.add_argument("--gamma", type=float, help="SIR/SIS recovery probability per step")
    parser.add_argument("--t", type=float, help="heat time, or SIS horizon in steps")
    parser.add_argument("--top", type=int, default=10, help="print this many most-reached nodes (0: all)")
    parser.add_argument(
        "--out",
        type=Path,
        help="write every node's probability and uncertainty to this CSV file",
    )
    parser.add_argument(
        "--on-bad",
        choices=("fail", "skip"),
        default="fail",
        help="a bad line (self-loop, duplicate edge, non-integer id): fail lists them all; skip leaves them out",
    )


def read_network(path: Path, on_bad: str = "fail"):
    """The file's network (``edge_list.EdgeList``); a DataError lists every fault with its line (``on_bad:
    fail``), or the bad lines are left out (``skip``)."""
    from triad.data.own import Problems
    from triad.heads.spread.own_data import LAYOUT, read_edge_list, settle

    if not path.is_file():
        raise DataError(f"no such edge-list file: {path}. Expected {LAYOUT}.")
    problems = Problems()
    network = read_edge_list(path, problems)
    if network is None:
        problems.fail(f"the edge list {path}", f"Expected {LAYOUT}.")
    settle(problems, on_bad, f"the edge list {path}", "give --on-bad skip")
    return network


def read_edge_list(path: Path, on_bad: str = "fail") -> list[list[int]]:
    """The file's edges as ``[u, v]`` pairs of its own node ids (see ``read_network``)."""
    return read_network(path, on_bad).pairs()


def check(args: argparse.Namespace) -> None:
    """The request, before the model loads: the file, the seeds and the process's parameters."""
    given = {name: getattr(args, name) for name in ("p", "beta", "gamma", "t")}
    missing = [f"--{name}" for name in NEEDS[args.process] if given[name] is None]
    if missing:
        raise TriadError(
            f"--process {args.process} needs {', '.join(f'--{n}' for n in NEEDS[args.process])}; "
            f"give {', '.join(missing)}"
        )
    for name in ("p", "beta", "gamma"):
        value = given[name]
        if value is not None and not (math.isfinite(value) and 0 <= value <= 1):
            raise TriadError(f"--{name} is a probability: give a value in [0, 1], not {value}")
    if given["t"] is not None and not (math.isfinite(given["t"]) and given["t"] >= 0):
        raise TriadError(f"--t is a time (or the SIS horizon in steps): give 0 or more, not {given['t']}")
    if args.process == "sis" and given["t"] < 1:
        raise TriadError(f"--process sis runs --t steps: give 1 or more, not {given['t']}")
    if args.out is not None and args.out.is_dir():
        raise TriadError(f"--out {args.out} is a folder: give a file name, e.g. {args.out / 'result.csv'}")
    network = read_network(args.edges, args.on_bad)
    known = set(network.ids)
    unknown = [seed for seed in args.seeds if seed not in known]
    if unknown:
        shown = ", ".join(map(str, network.ids[:8])) + (", ..." if network.n > 8 else "")
        raise TriadError(
            f"seed(s) {', '.join(map(str, unknown))} not in {args.edges}: its {network.n} nodes are {shown}"
        )


def show(args: argparse.Namespace, model) -> None:
    import pandas as pd

    from triad.predict import model_predict

    request = {
        "edges": read_edge_list(args.edges, getattr(args, "on_bad", "fail")),
        "seeds": list(args.seeds),
        "process": args.process,
        "p": args.p,
        "beta": args.beta,
        "gamma": args.gamma,
        "t": args.t,
    }
    result = model_predict(args, model, pd.DataFrame([request]))
    row = result.iloc[0]
    nodes, probabilities = list(row["nodes"]), [float(v) for v in row["probabilities"]]
    # A model registered before the trust columns has none: its answer is the network's, unchecked.
    uncertainty = [float(v) for v in row["uncertainty"]] if "uncertainty" in row else [math.nan] * len(nodes)
    how = {
        "method": str(row.get("method", "learned")),
        "expected_size_uncertainty": float(row.get("expected_size_uncertainty", math.nan)),
        "flagged": bool(row.get("flagged", True)),
        "reason": str(row.get("reason", "this model version does not say how far to trust it")),
    }
    expected = float(row["expected_size"])
    frame = pd.DataFrame({"node": nodes, "probability": probabilities, "uncertainty": uncertainty})
    top = frame.sort_values("probability", ascending=False, kind="stable")
    print(top.head(args.top or len(frame)).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"expected number of nodes reached: {expected:.2f} +- {how['expected_size_uncertainty']:.2f} of {len(frame)}")
    print(f"method: {how['method']}{' (FLAGGED: error unmeasured here)' if how['flagged'] else ''}")
    print(f"why: {how['reason']}")
    out = getattr(args, "out", None)
    if out is not None:
        write_result(out, nodes, probabilities, expected, request, uncertainty, how)
        print(f"wrote {len(nodes)} nodes to {out} and the expected size to {summary_path(out)}")


def summary_path(out: Path) -> Path:
    return out.with_name(out.stem + ".summary.json")


def write_result(
    out: Path,
    nodes: list,
    probabilities: list[float],
    expected: float,
    request: dict,
    uncertainty: list[float],
    how: dict,
) -> None:
    """``out``: a CSV ``node,probability,uncertainty``, one row per node in the order of the file (the user's ids);
    ``<out stem>.summary.json``: the request (without the edges), the expected number of nodes reached and how
    the answer was obtained (``how``: method, expected_size_uncertainty, flagged, reason)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["node", "probability", "uncertainty"])
        writer.writerows([node, f"{p:.6f}", f"{u:.6f}"] for node, p, u in zip(nodes, probabilities, uncertainty))
    summary = {k: v for k, v in request.items() if k != "edges" and v is not None}
    summary |= {"nodes": len(nodes), "edges": len(request["edges"]), "expected_size": round(expected, 6)}
    summary |= {**how, "expected_size_uncertainty": round(how["expected_size_uncertainty"], 6)}
    summary_path(out).write_text(json.dumps(summary, indent=2) + "\n")
