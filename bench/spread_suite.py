"""Held-out suite: is every answer the served spread model gives by itself within the targets, and is every
other one flagged or simulated?

Run (after `triad train spread`, or the pipeline, registered a model; TRIAD_ROOT picks the project, or
MLFLOW_TRACKING_URI the store):

    PYTHONPATH=src python bench/spread_suite.py [--model triad-spread@champion] [--sizes 100 1000 10000]
        [--ratios 0.5 1 2] [--processes ic sir] [--reference-samples 10000] [--large-reference-samples 1000]

Cases: every generated family (lattices with and without diagonals, random geometric, powerlaw-cluster, ring
lattices, Erdos-Renyi, Barabasi-Albert, Watts-Strogatz, block models) at each size, and networkx's real
networks, each at p = ratio x p_c (p_c: the graph's estimated critical point, ``features.py``), for the
independent cascade and SIR (gamma 0.5, beta set so that the transmissibility is ratio x p_c), from one
random seed node. None of these graphs is in the training data (their seeds differ from prepare's).

Per case: the network's answer against a Monte-Carlo reference (``--reference-samples`` cascades;
``--large-reference-samples`` on graphs of 5,000 nodes or more, to keep the run within minutes: its per-node
standard error is at most 0.5 / sqrt(samples)), the per-node MAE and the expected-size relative error, and what
the served model's policy does (``trust.answer``: learned, flagged or simulated; the fallback simulation
itself is not run, its answer being Monte-Carlo). Targets (issue 21): on every case answered by the model
(learned, not flagged), per-node MAE <= 0.05 and size error <= 15%. The reference in the same run: the DMP
prior alone (no learning), on the same cases.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from triad.heads.spread import simulate, trust
from triad.heads.spread.batch import Question
from triad.heads.spread.evaluate import predict, prior_answers
from triad.heads.spread.features import beta_for, graph_features
from triad.heads.spread.graphs import REAL_GRAPHS, generate, real_graph

FAMILIES = (
    "grid",
    "grid_diagonal",
    "random_geometric",
    "powerlaw_cluster",
    "ring_lattice",
    "erdos_renyi",
    "barabasi_albert",
    "watts_strogatz",
    "stochastic_block",
)
LARGE = 5000  # nodes: from here the reference uses --large-reference-samples
MAX_MAE, MAX_SIZE_ERROR = 0.05, 0.15


def load(model: str):
    import mlflow

    from triad.config import compose
    from triad.tracking import tracking_uri

    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI") or tracking_uri(compose([])))
    uri = model if model.startswith(("models:/", "runs:/")) else f"models:/{model}"
    return mlflow.pyfunc.load_model(uri).unwrap_python_model()


def cases(sizes: list[int], ratios: list[float], processes: list[str], seed: int = 2026):
    """Each graph and its seed node depend only on (family, size) or the real network's name, so a case is the
    same whichever other sizes run with it."""
    graphs = [
        generate(f, n, 4.0, int(np.random.default_rng([seed, n, i]).integers(2**31)))
        for n in sizes
        for i, f in enumerate(FAMILIES)
    ]
    graphs += [real_graph(name) for name in REAL_GRAPHS]
    for graph in graphs:
        features = graph_features(graph)
        seed_node = int(np.random.default_rng([seed, graph.n, len(graph.edges)]).integers(graph.n))
        for ratio in ratios:
            t = min(1.0, ratio * features.critical_p)
            for process in processes:
                params = {"p": t} if process == "ic" else {"beta": beta_for(t, 0.5), "gamma": 0.5}
                yield graph, features, ratio, Question(graph, np.array([seed_node]), process, params)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="triad-spread@champion")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    parser.add_argument("--processes", nargs="+", default=["ic", "sir"])
    parser.add_argument("--reference-samples", type=int, default=10000)
    parser.add_argument("--large-reference-samples", type=int, default=1000)
    parser.add_argument("--csv", help="also write the table here")
    parser.add_argument("--cache", help="a folder to keep the Monte-Carlo references in (to compare models on them)")
    args = parser.parse_args()
    print("command: PYTHONPATH=src python bench/spread_suite.py " + " ".join(sys.argv[1:]))
    served = load(args.model)
    print(f"model: {args.model}; trust: {served.cfg.trust.model_dump()}")
    torch.set_num_threads(1)
    rows, cache = [], trust.FeatureCache()
    for graph, features, ratio, q in cases(args.sizes, args.ratios, args.processes):
        cache._cache[id(graph)] = (graph, features)
        samples = args.large_reference_samples if graph.n >= LARGE else args.reference_samples
        started = time.perf_counter()
        key = f"{graph.name}_{q.seeds[0]}_{q.process}_{ratio:g}_{samples}.npy"
        if args.cache and (Path(args.cache) / key).is_file():
            reference = np.load(Path(args.cache) / key)
        else:
            with simulate.one_thread():
                estimate = simulate.run(q.process, graph, q.seeds, q.params, samples, torch.Generator().manual_seed(7))
            reference = estimate.mean
            if args.cache:
                Path(args.cache).mkdir(parents=True, exist_ok=True)
                np.save(Path(args.cache) / key, reference)
        mc_seconds = time.perf_counter() - started
        started = time.perf_counter()
        model = predict(served.network, [q], iterations=served.cfg.eval_iterations)[0].astype(np.float64)
        model_seconds = time.perf_counter() - started
        prior = prior_answers([q])[0].astype(np.float64)
        started = time.perf_counter()
        verdict = trust.answer(q, model, served.validated, served.cfg.trust, cache, fallback=False)
        policy_seconds = time.perf_counter() - started
        size_mc = float(reference.sum())
        rows.append(
            {
                "graph": graph.name,
                "nodes": graph.n,
                "clustering": round(features.clustering, 3),
                "p_c": round(features.critical_p, 4),
                "ratio": ratio,
                "process": q.process,
                "mc_samples": samples,
                "size_mc": size_mc,
                "size_model": float(model.sum()),
                "mae": float(np.abs(model - reference).mean()),
                "size_err": abs(float(model.sum()) - size_mc) / size_mc,
                "prior_mae": float(np.abs(prior - reference).mean()),
                "prior_size_err": abs(float(prior.sum()) - size_mc) / size_mc,
                "answered": "flagged" if verdict.flagged else verdict.method,
                "why": verdict.reason.split(";")[0].split(" (")[0][:60],
                "mc_s": mc_seconds,
                "model_s": model_seconds,
                "policy_s": policy_seconds,
            }
        )
        print(
            f"{graph.name:>26} {q.process} r={ratio:<4g} mae={rows[-1]['mae']:.3f} size {rows[-1]['size_model']:.1f}"
            f"/{size_mc:.1f} -> {rows[-1]['answered']} ({mc_seconds:.1f}s mc, {policy_seconds:.1f}s policy)",
            flush=True,
        )
    table = pd.DataFrame(rows)
    table["within_targets"] = (table["mae"] <= MAX_MAE) & (table["size_err"] <= MAX_SIZE_ERROR)
    shown = table.drop(columns=["why", "model_s"])
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.csv:
        table.to_csv(args.csv, index=False)
    learned = table[table.answered == "learned"]
    print("\nsummary (per-node MAE <= 0.05 and size error <= 15% on every learned case; the rest flagged/simulated)")
    print(table.groupby("answered").size().to_string())
    missed = learned[~learned.within_targets]
    print(
        f"learned: {len(learned)} of {len(table)} cases; within targets: {int(learned.within_targets.sum())}; "
        f"missed: {len(missed)}; worst learned MAE {learned.mae.max() if len(learned) else float('nan'):.4f}, "
        f"worst learned size error {learned.size_err.max() if len(learned) else float('nan'):.3f}"
    )
    if len(missed):
        print(missed.drop(columns=["why"]).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(
        f"all cases, model alone (no policy): within targets {int(table.within_targets.sum())} of {len(table)}; "
        f"median MAE model {table.mae.median():.4f} vs DMP prior {table.prior_mae.median():.4f} (ratio "
        f"{table.prior_mae.median() / max(table.mae.median(), 1e-9):.2f}x); median size error model "
        f"{table.size_err.median():.3f} vs prior {table.prior_size_err.median():.3f}"
    )
    by_family = table.assign(family=table.graph.str.replace(r"_\d+(x\d+)?$", "", regex=True)).groupby("family")
    print(
        by_family.agg(
            cases=("mae", "size"),
            learned=("answered", lambda a: int((a == "learned").sum())),
            mae_median=("mae", "median"),
            size_err_median=("size_err", "median"),
            prior_mae_median=("prior_mae", "median"),
        ).to_string(float_format=lambda v: f"{v:.3f}")
    )
    print(f"(timings on the shared 2-core machine, under contention; total MC {table.mc_s.sum():.0f}s)")


if __name__ == "__main__":
    main()
