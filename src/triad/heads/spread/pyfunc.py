"""The spread head's MLflow pyfunc model: edge list + seeds + process -> each node's probability.

Artifacts (written by ``triad.nn.saved``): ``config`` (JSON: the model config) and ``weights`` (the
network's state_dict); no pickled module. Input: a DataFrame (or a list of dicts), one request per row:

    edges    list of [u, v] pairs of integer node ids (any integers, not necessarily 0..n-1; undirected)
    seeds    list of seed node ids
    process  "ic", "sir", "sis" or "heat"
    p        IC edge probability            (ic)
    beta     per-step infection probability  (sir, sis)
    gamma    per-step recovery probability   (sir, sis)
    t        heat time (heat) or horizon in steps (sis)

Output: a DataFrame with one row per request: ``nodes`` (ids in order of first appearance in the
edges, then seeds), ``probabilities`` (same order) and ``expected_size`` (their sum: the expected
number of nodes reached), and how far to trust them (``trust.py``):

    method                     "learned" (the network) or "simulated" (Monte-Carlo, or heat's exact kernel)
    uncertainty                per node, same order: the Monte-Carlo standard error of a simulated answer; for a
                               learned one, its error estimate (the validation's or the check's, the larger)
    expected_size_uncertainty  the same for the expected size
    flagged                    true when the network answered outside its validated range (a graph too large
                               to simulate): its error there is unmeasured
    reason                     in words: inside or outside the validated range (and which coordinate), what
                               the check found, or why it simulated

The validated range (``validated`` in the ``config`` artifact) is measured by the evaluation on the held-out
test questions; a version registered before it existed has none, so all its answers are checked as outside.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch

from triad.heads.base import request_rows
from triad.heads.spread import simulate, trust
from triad.heads.spread.batch import Question
from triad.heads.spread.config import SpreadModel
from triad.heads.spread.evaluate import predict
from triad.heads.spread.graphs import Graph, canonical_edges
from triad.heads.spread.model import SpreadGNN
from triad.heads.spread.simulate import PARAMS, PROCESSES
from triad.nn.saved import load_network, save_network

NEEDS = simulate.USES

_SQUARE_WITH_TAIL = [[0, 1], [1, 2], [2, 3], [3, 0], [2, 4]]
INPUT_EXAMPLE = pd.DataFrame(
    [  # one request per process family; unused parameters are None (optional)
        {"edges": _SQUARE_WITH_TAIL, "seeds": [0], "process": "ic", "p": 0.3, "beta": None, "gamma": None, "t": None},
        {"edges": _SQUARE_WITH_TAIL, "seeds": [1, 4], "process": "sis", "p": None, "beta": 0.2, "gamma": 0.5, "t": 8.0},
        {"edges": _SQUARE_WITH_TAIL, "seeds": [3], "process": "heat", "p": None, "beta": None, "gamma": None, "t": 0.5},
    ]
)


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars, so node ids compare and print naturally."""
    return value.item() if isinstance(value, np.generic) else value


def _given(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def to_question(request: dict[str, Any]) -> tuple[Question, list]:
    """One request -> (Question, node ids in the order of the answer). Raises ValueError on bad input."""
    process = request.get("process")
    if process not in NEEDS:
        raise ValueError(f"process must be one of {', '.join(PROCESSES)}, got {process!r}")
    missing = [name for name in NEEDS[process] if not _given(request.get(name))]
    if missing:
        raise ValueError(f"process {process!r} needs {', '.join(NEEDS[process])}; missing {', '.join(missing)}")
    pairs = [[_plain(u) for u in pair] for pair in (request.get("edges") if request.get("edges") is not None else [])]
    if any(len(pair) != 2 for pair in pairs):
        raise ValueError("edges must be a list of [u, v] pairs")
    seeds = [_plain(s) for s in (request.get("seeds") if request.get("seeds") is not None else [])]
    if not seeds:
        raise ValueError("seeds must name at least one node")
    nodes = list(dict.fromkeys([u for pair in pairs for u in pair] + seeds))
    index = {node: i for i, node in enumerate(nodes)}
    graph = Graph(len(nodes), canonical_edges(((index[u], index[v]) for u, v in pairs), len(nodes)), "request")
    params = {name: float(request[name]) for name in PARAMS if _given(request.get(name))}
    return Question(graph, np.array(sorted({index[s] for s in seeds}), dtype=np.int64), process, params), nodes


# What a version saved before the trust policy and the cycle features existed gets: no cycle features (its
# weights have none), no residual readout and no cap at the prior (it was trained without them), and the policy of
# conf/model/spread/small.yaml at the time they were added.
LEGACY = {
    "cycle_features": False,
    "residual": False,
    "cap_at_prior": False,
    "trust": {
        "max_mae": 0.05,
        "max_size_rel_error": 0.15,
        "check_samples": 300,
        "check_z": 2.0,
        "fallback_samples": 10000,
        "max_seconds": 2.0,
        "heat_max_nodes": 2000,
    },
}
# Versions saved before the simulation budget was time (2026-12-03) store ``trust.max_work`` (cascades x (nodes +
# directed edges)); they get the time budget of conf/model/spread/small.yaml instead.
RETIRED_TRUST = {"max_work": ("max_seconds", 2.0)}


def stored_model_config(model: dict[str, Any]) -> dict[str, Any]:
    """A saved network's ``model`` config, with ``LEGACY`` defaults and retired trust settings replaced."""
    model = LEGACY | model
    trust = dict(model["trust"])
    for old, (new, value) in RETIRED_TRUST.items():
        if old in trust:
            del trust[old]
            trust.setdefault(new, value)
    return model | {"trust": trust}


def save_artifacts(
    network: torch.nn.Module, cfg: SpreadModel, folder: Path, validated: dict[str, Any] | None = None
) -> dict[str, str]:
    """Write the network's config, its validated range (``trust.build_range``) and weights; returns the pyfunc
    artifacts (``config``, ``weights``)."""
    return save_network(network, {"model": cfg.model_dump(mode="json"), "validated": validated}, folder)


class SpreadPyfunc(mlflow.pyfunc.PythonModel):
    """Serves a trained SpreadGNN; see the module docstring for input and output."""

    def load_context(self, context) -> None:
        config, weights = load_network(context.artifacts)
        self.cfg = SpreadModel.model_validate(stored_model_config(config["model"]))
        self.validated = config.get("validated")
        self.network = SpreadGNN(self.cfg)
        self.network.load_state_dict(weights)
        self.network.eval()

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        parsed = [to_question(request) for request in request_rows(model_input)]
        cache, cfg = trust.FeatureCache(), self.cfg.trust
        budgets = [trust.Budget(q, cfg, seed=0) for q, _ in parsed]
        # A question that will be simulated anyway (outside the validated range) skips the network: on a
        # 100,000-node graph that saves its DMP prior and forward pass (0.7-3 s).
        asks = [not trust.simulated_outright(q, self.validated, cfg, cache, b) for (q, _), b in zip(parsed, budgets)]
        needed = [q for (q, _), ask in zip(parsed, asks) if ask]
        found = iter(predict(self.network, needed, iterations=self.cfg.eval_iterations) if needed else [])
        answers = [next(found) if ask else None for ask in asks]
        served = [
            trust.answer(q, a, self.validated, cfg, cache, budget=b) for (q, _), a, b in zip(parsed, answers, budgets)
        ]
        return pd.DataFrame(
            {
                "nodes": [nodes for _, nodes in parsed],
                "probabilities": [a.probabilities.tolist() for a in served],
                "expected_size": [a.expected_size for a in served],
                "method": [a.method for a in served],
                "uncertainty": [a.uncertainty.tolist() for a in served],
                "expected_size_uncertainty": [a.expected_size_uncertainty for a in served],
                "flagged": [a.flagged for a in served],
                "reason": [a.reason for a in served],
            }
        )
