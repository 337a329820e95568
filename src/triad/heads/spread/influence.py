"""Influence maximisation: choose k seeds that make an independent cascade reach the most nodes.

Three choosers: greedy on the learned network (each round scores every candidate seed set in ONE
batched forward pass), greedy on Monte-Carlo estimates (the classic baseline of Kempe, Kleinberg &
Tardos, 2003; ``samples`` fresh cascades per candidate, no lazy evaluation), and the ``k``
highest-degree nodes. Every chosen set is then scored by the same large Monte-Carlo run.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch

from triad.heads.spread import simulate
from triad.heads.spread.batch import Question, make_batch
from triad.heads.spread.config import InfluenceConfig
from triad.heads.spread.graphs import Graph
from triad.heads.spread.model import SpreadGNN


def greedy_model(network: SpreadGNN, graph: Graph, k: int, p: float) -> list[int]:
    """k seeds, each round adding the node whose addition the network says spreads furthest."""
    chosen: list[int] = []
    for _ in range(min(k, graph.n)):
        candidates = [v for v in range(graph.n) if v not in chosen]
        batch = make_batch([Question(graph, np.array(chosen + [v]), "ic", {"p": p}) for v in candidates])
        probabilities = network.probabilities(batch)
        spread = torch.zeros(len(candidates)).index_add(0, batch.node_graph, probabilities)
        chosen.append(candidates[int(spread.argmax())])
    return chosen


def greedy_monte_carlo(graph: Graph, k: int, p: float, samples: int, generator: torch.Generator) -> list[int]:
    """k seeds, each round adding the node with the largest Monte-Carlo expected spread."""
    chosen: list[int] = []
    for _ in range(min(k, graph.n)):
        candidates = [v for v in range(graph.n) if v not in chosen]
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
