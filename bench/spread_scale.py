"""Benchmark: the spread model against the fastest Monte-Carlo in the stack, on networks of 1,000-100,000 nodes.

Run (a trained model's ``model.pt``, e.g. from ``triad train spread``, and the overrides it was trained with):

    PYTHONPATH=src python bench/spread_scale.py --model artifacts/spread/train/model.pt \\
        [--sizes 1000 10000 100000] [--families barabasi_albert watts_strogatz geometric grid] \\
        [--override model.spread.cycle_features=false ...] [--skip-scale] [--skip-influence]

For each family and size: one independent-cascade question (5 random seeds, p = half the graph's estimated
critical point, where the model is meant to be accurate) and

- model latency: graph -> GraphBatch -> features (DMP prior) -> network, best of 2, torch on 2 threads and on 1,
  in a fresh subprocess that also reports its peak RSS above the RSS it started the question with;
- Monte-Carlo (``simulate.cascades``, the fast simulator) at equal samples (10,000 cascades) and at equal accuracy:
  the sample count S* whose expected per-node error sqrt(2/pi) mean_v sqrt(P_v (1 - P_v) / S) equals the model's
  per-node MAE against a reference run (``--reference`` cascades, another seed); the MC run at S* is timed and its
  own MAE against the reference printed, to check the formula;
- the first (dense) simulator against the fast one at 1,000 cascades on the 1,000-node graphs (the speed-up);
- both ratios: MC time / model time at equal samples and at equal accuracy.

Then the scale row: a Barabasi-Albert network of 100,000 nodes and ~1,000,000 edges (m = 10), the issue's size,
with the model's time split into batch, DMP prior and network. Then influence maximisation: lazy greedy on the
model (k = 10, a pool of the 200 highest-degree nodes) on a 10,000-node network, its seeds' spread by 10,000
cascades against the degree heuristic's; on a 1,000-node network also against Monte-Carlo greedy (the same pool).

Every time is wall-clock on the shared 2-core machine (other jobs running): treat each as an upper bound.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import time

import numpy as np
import torch

from triad.heads.spread import simulate
from triad.heads.spread.batch import Question, make_batch
from triad.heads.spread.graphs import Graph, from_networkx
from triad.heads.spread.influence import degree_seeds, greedy_model, greedy_monte_carlo
from triad.heads.spread.model import SpreadGNN, dmp_prior, mean_adjacency

FAMILIES = ("barabasi_albert", "watts_strogatz", "geometric", "grid")


def make_graph(family: str, n: int, seed: int = 0, m: int = 3) -> Graph:
    """About ``n`` nodes, mean degree about 6 (BA: 2m)."""
    import networkx as nx

    if family == "barabasi_albert":
        g = nx.barabasi_albert_graph(n, m, seed=seed)
    elif family == "watts_strogatz":
        g = nx.watts_strogatz_graph(n, 6, 0.05, seed=seed)
    elif family == "geometric":
        g = nx.random_geometric_graph(n, float(np.sqrt(6 / (np.pi * n))), seed=seed)
    elif family == "grid":
        side = int(round(np.sqrt(n)))
        g = nx.convert_node_labels_to_integers(nx.grid_2d_graph(side, side))
    else:
        raise SystemExit(f"unknown family {family}")
    return from_networkx(g, f"{family}_{n}")


def critical_p(graph: Graph) -> float:
    """The configuration-model bond-percolation threshold <k> / (<k^2> - <k>) (a cheap estimate)."""
    k = graph.degree.astype(np.float64)
    return float(min(1.0, k.mean() / max((k * k).mean() - k.mean(), 1e-9)))


def load_network(path: str, overrides: list[str]) -> SpreadGNN:
    from triad.config import compose

    network = SpreadGNN(compose(overrides).model.spread)
    state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    network.load_state_dict({k.removeprefix("model."): v for k, v in state.items()})
    return network.eval()


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _latency_child(args, queue) -> None:
    path, overrides, edges, n, seeds, p, threads = args
    torch.set_num_threads(threads)
    network = load_network(path, overrides)
    graph = Graph(n, edges, "bench")
    before = rss_mb()
    times, parts = [], {}
    for _ in range(2):
        started = time.perf_counter()
        batch = make_batch([Question(graph, seeds, "ic", {"p": p})])
        built = time.perf_counter()
        dmp_prior(batch)
        prior = time.perf_counter()
        mean_adjacency(batch)
        adjacency = time.perf_counter()
        answer = network.probabilities(batch).numpy()  # the whole path again, as a user's question runs it
        times.append(time.perf_counter() - adjacency + (built - started))
        parts = {"batch": built - started, "prior": prior - built, "adjacency": adjacency - prior}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put((min(times), parts, peak - before, peak, answer))


def model_latency(path, overrides, graph, seeds, p, threads):
    """(best seconds, parts of the last run, peak RSS above the start MB, peak RSS MB, answer) in a fresh process."""
    context = mp.get_context("spawn")
    queue = context.Queue()
    child = context.Process(
        target=_latency_child, args=((path, overrides, graph.edges, graph.n, seeds, p, threads), queue)
    )
    child.start()
    result = queue.get()
    child.join()
    return result


def timed(function):
    started = time.perf_counter()
    value = function()
    return value, time.perf_counter() - started


def mc(graph, seeds, p, samples, seed):
    return simulate.cascades(graph, seeds, p, 1.0, samples, torch.Generator().manual_seed(seed), curve=False)


def equal_accuracy_samples(reference: np.ndarray, mae: float) -> int:
    spread = np.sqrt(2 / np.pi) * np.sqrt(reference * (1 - reference)).mean()
    return max(1, int(np.ceil((spread / max(mae, 1e-12)) ** 2)))


def compare_row(args, family: str, n: int) -> dict:
    graph = make_graph(family, n)
    rng = np.random.default_rng(n)
    seeds = np.sort(rng.choice(graph.n, 5, replace=False))
    p = 0.5 * critical_p(graph)
    reference, ref_seconds = timed(lambda: mc(graph, seeds, p, args.reference, 1).mean)
    best2, parts, extra_mb, peak_mb, answer = model_latency(args.model, args.override, graph, seeds, p, 2)
    best1, *_ = model_latency(args.model, args.override, graph, seeds, p, 1)
    model_seconds = min(best1, best2)
    mae = float(np.abs(answer - reference).mean())
    _, mc_seconds = timed(lambda: mc(graph, seeds, p, 10_000, 2))
    star = equal_accuracy_samples(reference, mae)
    at_star, star_seconds = timed(lambda: mc(graph, seeds, p, star, 3))
    row = {
        "family": family,
        "nodes": graph.n,
        "edges": len(graph.edges),
        "p": p,
        "size_ref": reference.sum(),
        "size_model": answer.sum(),
        "model_mae": mae,
        "model_s_2thr": best2,
        "model_s_1thr": best1,
        "peak_mb": peak_mb,
        "extra_mb": extra_mb,
        "mc10k_s": mc_seconds,
        "S*": star,
        "mcS*_mae": float(np.abs(at_star.mean - reference).mean()),
        "mcS*_s": star_seconds,
        "ratio_equal_samples": mc_seconds / model_seconds,
        "ratio_equal_accuracy": star_seconds / model_seconds,
        "ref_s": ref_seconds,
    }
    if n <= 1000:  # the requested size (the grid rounds 1,000 to 32 x 32)
        with simulate.one_thread():
            _, dense = timed(
                lambda: simulate.epidemic_dense(graph, seeds, p, 1.0, 1000, torch.Generator().manual_seed(4))
            )
        _, fast = timed(lambda: mc(graph, seeds, p, 1000, 4))
        row["dense_vs_fast_1k"] = dense / fast
    print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    print(f"  model parts (2 threads): {', '.join(f'{k} {v:.3f}s' for k, v in parts.items())}", flush=True)
    return row


def scale_row(args) -> None:
    graph = make_graph("barabasi_albert", 100_000, m=10)
    seeds = np.sort(np.random.default_rng(0).choice(graph.n, 5, replace=False))
    p_c = critical_p(graph)
    print(f"scale: BA {graph.n} nodes, {len(graph.edges)} edges, estimated p_c {p_c:.4f}", flush=True)
    for factor in (0.5, 1.0, 2.0):
        p = factor * p_c
        for threads in (2, 1):
            best, parts, extra, peak, answer = model_latency(args.model, args.override, graph, seeds, p, threads)
            print(
                f"  p = {factor} p_c: model {best:.2f}s on {threads} thread(s) (target 2 s), peak RSS {peak:.0f} MB "
                f"({extra:.0f} MB above the loaded graph and model); parts: "
                f"{', '.join(f'{k} {v:.2f}s' for k, v in parts.items())}; expected size {answer.sum():.0f}",
                flush=True,
            )
        estimate, seconds = timed(lambda: mc(graph, seeds, p, 1000, 5))
        print(f"  p = {factor} p_c: fast MC 1,000 cascades {seconds:.2f}s, expected size {estimate.final_size[0]:.0f}")
        served, seconds = timed(lambda: served_answer(graph, seeds, p))
        what = (
            served
            if isinstance(served, str)
            else f"method {served.method}, expected size {served.expected_size:.0f} "
            f"+- {served.expected_size_uncertainty:.0f}, {served.reason.rsplit('; ', 1)[-1]}"
        )
        print(f"  p = {factor} p_c: served policy {seconds:.2f}s (features, pilot, simulation; target 2 s): {what}")


def served_answer(graph, seeds, p):
    """What the served model answers on a graph this large: it lies outside every validated range trained here
    (test graphs of at most a few thousand nodes), so the server skips the network and the policy simulates
    within ``model.spread.trust.max_seconds`` (``trust.simulated_outright``). Timed from the graph's features on,
    one thread, a fresh copy of the graph (no cached CSR)."""
    from triad.config import compose
    from triad.heads.spread import trust

    cfg = compose([]).model.spread.trust
    question = Question(Graph(graph.n, graph.edges, "served"), np.asarray(seeds), "ic", {"p": p})
    cache, budget = trust.FeatureCache(), trust.Budget(question, cfg, seed=0)
    if not trust.simulated_outright(question, None, cfg, cache, budget):
        return f"not simulated: the pilot affords {budget.affordable()} cascades, fewer than the check's"
    return trust.answer(question, None, None, cfg, cache, budget=budget)


def influence(args) -> None:
    network = load_network(args.model, args.override)
    for n, with_greedy in ((1000, True), (10_000, False)):
        graph = make_graph("barabasi_albert", n, seed=1)
        p = 0.5 * critical_p(graph)
        with simulate.one_thread():
            chosen = {}
            chosen["model_lazy_greedy"], model_s = timed(lambda: greedy_model(network, graph, 10, p, pool=200))
            chosen["degree"], _ = timed(lambda: degree_seeds(graph, 10))
            line = f"influence, BA {n} nodes, k 10, p {p:.4f}: model lazy greedy {model_s:.1f}s (target < 60 s)"
            if with_greedy:
                chosen["mc_greedy"], mc_s = timed(
                    lambda: greedy_monte_carlo(graph, 10, p, 1000, torch.Generator().manual_seed(0), pool=200)
                )
                line += f", Monte-Carlo greedy (1,000 cascades per candidate) {mc_s:.1f}s"
        print(line)
        for method, seeds in chosen.items():
            spread, se = mc(graph, seeds, p, 10_000, 7).final_size
            print(f"  {method}: spread {spread:.2f} +- {se:.2f} (10,000 cascades)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--override", nargs="*", default=[])
    parser.add_argument("--sizes", nargs="*", type=int, default=[1000, 10_000, 100_000])
    parser.add_argument("--families", nargs="*", default=list(FAMILIES))
    parser.add_argument("--reference", type=int, default=40_000)
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--skip-influence", action="store_true")
    args = parser.parse_args()
    print("command: PYTHONPATH=src python " + " ".join(sys.argv), flush=True)
    print("(wall-clock on a shared 2-core machine with other jobs running: every time is an upper bound)", flush=True)
    rows = [compare_row(args, family, n) for n in args.sizes for family in args.families]
    if rows:
        import pandas as pd

        table = pd.DataFrame(rows)
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        print(
            f"equal-accuracy ratio (MC at S* / model): min {table.ratio_equal_accuracy.min():.1f}x, "
            f"median {table.ratio_equal_accuracy.median():.1f}x (target >= 50x on 1,000 nodes and more)"
        )
    if not args.skip_scale:
        scale_row(args)
    if not args.skip_influence:
        influence(args)


if __name__ == "__main__":
    main()
