"""Influence maximisation: choose k seeds that make an independent cascade reach the most nodes.

Three choosers: lazy greedy (CELF) on the learned network (candidate seed sets scored many at a time,
as one batched forward pass), greedy on Monte-Carlo estimates (the classic baseline of Kempe, Kleinberg &
Tardos, 2003; ``samples`` fresh cascades per candidate, no lazy evaluation), and the ``k``
highest-degree nodes. Both greedy choosers can be limited to a pool of the highest-degree nodes (large
graphs). Every chosen set is then scored by the same large Monte-Carlo run.
"""

from __future__ import annotations

import heapq
import time

import numpy as np
import pandas as pd
import torch

from triad.heads.spread import simulate
from triad.heads.spread.batch import Question, make_batch
from triad.heads.spread.config import InfluenceConfig
from triad.heads.spread.graphs import Graph
from triad.heads.spread.model import SpreadGNN


def candidate_pool(graph: Graph, pool: int | None) -> np.ndarray:
    """The nodes a greedy chooser considers: every node (``pool`` None), else the ``pool`` highest-degree ones."""
    order = np.argsort(-graph.degree, kind="stable")
    return order if pool is None else order[: min(pool, graph.n)]


def model_spreads(network: SpreadGNN, graph: Graph, seed_sets: list[list[int]], p: float, batch: int) -> np.ndarray:
    """(len(seed_sets),) the network's expected spread of each seed set, ``batch`` sets per forward pass."""
    spreads = []
    for start in range(0, len(seed_sets), batch):
        chunk = seed_sets[start : start + batch]
        together = make_batch([Question(graph, np.array(s), "ic", {"p": p}) for s in chunk])
        probabilities = network.probabilities(together)
        spreads.append(torch.zeros(len(chunk)).index_add(0, together.node_graph, probabilities).numpy())
    return np.concatenate(spreads) if spreads else np.zeros(0)


def lazy_greedy(k: int, candidates: np.ndarray, spread_of, batch: int) -> list[int]:
    """CELF (Leskovec et al., 2007): k seeds by greedy marginal gain, re-scoring only the candidates that
    can still win. ``spread_of(list of seed sets) -> spreads`` scores a list of sets at once.

    Each candidate keeps its last marginal gain; a gain can only shrink as the seed set grows (for a
    submodular spread, like the true expected spread of a cascade), so the candidate on top of the heap is
    taken when its gain is fresh, and otherwise the ``batch`` best stale candidates are re-scored together.
    The network's spread is not exactly submodular, so this can differ from plain greedy where gains tie.
    """
    chosen: list[int] = []
    gains = spread_of([[int(v)] for v in candidates])
    heap = [(-float(g), int(v), 0) for g, v in zip(gains, candidates)]  # (-gain, node, len(chosen) when scored)
    heapq.heapify(heap)
    current = 0.0
    while len(chosen) < min(k, len(candidates)):
        if heap[0][2] == len(chosen):
            gain, node, _ = heapq.heappop(heap)
            chosen.append(node)
            current -= gain
            continue
        stale = [heapq.heappop(heap) for _ in range(min(batch, len(heap)))]
        fresh = [entry for entry in stale if entry[2] == len(chosen)]
        stale = [entry for entry in stale if entry[2] != len(chosen)]
        spreads = spread_of([chosen + [node] for _, node, _ in stale])
        for (_, node, _), spread in zip(stale, spreads):
            heapq.heappush(heap, (-(float(spread) - current), node, len(chosen)))
        for entry in fresh:
            heapq.heappush(heap, entry)
    return chosen


def greedy_model(
    network: SpreadGNN, graph: Graph, k: int, p: float, pool: int | None = None, batch: int = 16
) -> list[int]:
    """k seeds, each round adding the node whose addition the network says spreads furthest: lazy greedy
    (``lazy_greedy``) over the ``pool`` highest-degree nodes (None: every node), ``batch`` seed sets per pass."""
    return lazy_greedy(
        k, candidate_pool(graph, pool), lambda sets: model_spreads(network, graph, sets, p, batch), batch
    )


def greedy_monte_carlo(
    graph: Graph, k: int, p: float, samples: int, generator: torch.Generator, pool: int | None = None
) -> list[int]:
    """k seeds, each round adding the node with the largest Monte-Carlo expected spread (plain greedy: every
    candidate of the ``pool`` highest-degree nodes (None: every node) re-simulated each round)."""
    chosen: list[int] = []
    nodes = candidate_pool(graph, pool)
    for _ in range(min(k, len(nodes))):
        candidates = [int(v) for v in nodes if v not in chosen]
        spread = [
            simulate.independent_cascade(graph, chosen + [v], p, samples, generator).final_size[0] for v in candidates
        ]
        chosen.append(candidates[int(np.argmax(spread))])
    return chosen


def degree_seeds(graph: Graph, k: int) -> list[int]:
    """The k highest-degree nodes (ties to the lower id)."""
    return [int(v) for v in np.argsort(-graph.degree, kind="stable")[:k]]


def compare(network: SpreadGNN, graph: Graph, cfg: InfluenceConfig, seed: int) -> tuple[pd.DataFrame, dict[str, float]]:
    """The three choosers on ``graph``: a table (method, seeds, spread, its se, seconds) and metrics."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    with simulate.one_thread():
        for method, choose in (
            ("model_greedy", lambda: greedy_model(network, graph, cfg.k, cfg.p)),
            ("monte_carlo_greedy", lambda: greedy_monte_carlo(graph, cfg.k, cfg.p, cfg.greedy_samples, generator)),
            ("degree", lambda: degree_seeds(graph, cfg.k)),
        ):
            started = time.perf_counter()
            seeds = choose()
            seconds = time.perf_counter() - started
            spread, se = simulate.independent_cascade(graph, seeds, cfg.p, cfg.score_samples, generator).final_size
            rows.append(
                {
                    "method": method,
                    "seeds": " ".join(map(str, seeds)),
                    "spread": spread,
                    "spread_se": se,
                    "seconds": seconds,
                }
            )
    table = pd.DataFrame(rows)
    by = table.set_index("method")
    metrics = {
        "im_model_spread": float(by.loc["model_greedy", "spread"]),
        "im_greedy_spread": float(by.loc["monte_carlo_greedy", "spread"]),
        "im_degree_spread": float(by.loc["degree", "spread"]),
        "im_ratio": float(by.loc["model_greedy", "spread"] / by.loc["monte_carlo_greedy", "spread"]),
        "im_speedup": float(by.loc["monte_carlo_greedy", "seconds"] / max(by.loc["model_greedy", "seconds"], 1e-9)),
    }
    return table, metrics
