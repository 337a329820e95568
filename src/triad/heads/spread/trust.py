"""Never silently wrong: when to answer with the network, when to simulate, and how sure each answer is.

**The validated range.** The evaluation measures every held-out question's coordinates (``features.FEATURES``:
graph size, mean clustering, degree spread, transmissibility over the graph's critical point) and the network's
error against the Monte-Carlo answer. A question *passes* when its per-node MAE is at most ``trust.max_mae``
and its expected-size relative error at most ``trust.max_size_rel_error``. Per process, the validated range
is the box the passing questions span (``build_range``); it is stored with the registered model, together
with the errors seen (95th percentile over the passing questions, worst over all).

**The policy** (``answer``), per question:

1. Outside the range (or no range stored: a version registered before this existed): simulate, if at least
   ``check_samples`` cascades fit in ``trust.max_seconds`` (``Budget``: a timed pilot); else the network's
   answer, *flagged*, its uncertainty the worst error the validation saw (outside the range the error is
   unmeasured).
2. Inside: a cheap check of ``trust.check_samples`` cascades (heat: the exact kernel). The network's answer
   stands (method ``learned``) only if the check *confirms* it within the bars: the expected size within
   ``max_size_rel_error`` after ``check_z`` standard errors of the check's own noise, and the per-node error's
   root mean square (estimated as mean((model - check)^2 - check variance), an upper bound on the MAE) within
   ``max_mae``. Otherwise: simulate (method ``simulated``, ``fallback_samples`` cascades or as many as
   ``max_seconds`` allows; uncertainty the Monte-Carlo standard error). A question too slow for the check
   keeps the network's answer with the validated error as its uncertainty.

Every answer carries ``method``, ``uncertainty`` (per node), ``expected_size_uncertainty``, ``flagged`` and a
``reason`` in words.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from triad.heads.spread import simulate
from triad.heads.spread.batch import Question
from triad.heads.spread.config import TrustConfig
from triad.heads.spread.features import FEATURES, GraphFeatures, describe, graph_features, question_features

LEARNED, SIMULATED = "learned", "simulated"
ERRORS = ("mae_q95", "size_rel_error_q95", "worst_mae", "worst_size_rel_error")


@dataclass
class Answer:
    """One question's answer. probabilities, uncertainty: (n,) float64."""

    probabilities: np.ndarray
    uncertainty: np.ndarray
    expected_size: float
    expected_size_uncertainty: float
    method: str
    flagged: bool
    reason: str
    features: dict[str, float] = field(default_factory=dict)


class FeatureCache:
    """``graph_features`` once per graph object (many questions share a graph)."""

    def __init__(self) -> None:
        self._cache: dict[int, tuple[Any, GraphFeatures]] = {}

    def __call__(self, graph) -> GraphFeatures:
        key = id(graph)
        if key not in self._cache:
            self._cache[key] = (graph, graph_features(graph))  # holding the graph keeps its id unique
        return self._cache[key][1]


def case_table(
    questions: list[Question], answers: list[np.ndarray], features: FeatureCache | None = None
) -> pd.DataFrame:
    """One row per question with a target: process, graph, its coordinates, per-node MAE, size rel. error."""
    features = features or FeatureCache()
    rows = []
    for q, answer in zip(questions, answers):
        size_mc, size_model = float(q.target.sum()), float(answer.sum())
        rows.append(
            {
                "graph": q.graph.name,
                "process": q.process,
                **question_features(features(q.graph), q.process, q.params),
                "mae": float(np.abs(answer - q.target).mean()),
                "size_model": size_model,
                "size_mc": size_mc,
                "size_rel_error": abs(size_model - size_mc) / max(size_mc, 1e-9),
            }
        )
    return pd.DataFrame(rows)


def passes(table: pd.DataFrame, cfg: TrustConfig) -> pd.Series:
    return (table["mae"] <= cfg.max_mae) & (table["size_rel_error"] <= cfg.max_size_rel_error)


def build_range(table: pd.DataFrame, cfg: TrustConfig) -> dict[str, Any]:
    """Per process: ``{feature: [low, high]}`` over the passing questions, ``cases``/``passed``/``failed_inside``
    counts (failed questions inside the box: the check is what catches those), and the errors seen (``ERRORS``)."""
    validated: dict[str, Any] = {}
    ok = passes(table, cfg)
    for process, part in table.groupby("process", sort=True):
        good = part[ok[part.index]]
        entry: dict[str, Any] = {"cases": len(part), "passed": len(good)}
        entry["worst_mae"] = float(part["mae"].max())
        entry["worst_size_rel_error"] = float(part["size_rel_error"].max())
        if len(good):
            box = {name: [float(good[name].min()), float(good[name].max())] for name in FEATURES}
            inside = np.ones(len(part), dtype=bool)
            for name, (low, high) in box.items():
                inside &= (part[name] >= low).to_numpy() & (part[name] <= high).to_numpy()
            entry |= {
                "range": box,
                "failed_inside": int((inside & ~ok[part.index].to_numpy()).sum()),
                "mae_q95": float(good["mae"].quantile(0.95)),
                "size_rel_error_q95": float(good["size_rel_error"].quantile(0.95)),
            }
        validated[process] = entry
    return validated


def range_metrics(validated: dict[str, Any]) -> dict[str, float]:
    """The validated range as flat metrics ``validated_<process>_<feature>_{low,high}`` (and counts, errors)."""
    metrics: dict[str, float] = {}
    for process, entry in validated.items():
        key = f"validated_{process}"
        metrics[f"{key}_cases"] = float(entry["cases"])
        metrics[f"{key}_passed"] = float(entry["passed"])
        for name, (low, high) in entry.get("range", {}).items():
            metrics[f"{key}_{name}_low"], metrics[f"{key}_{name}_high"] = low, high
        for name in ERRORS:
            if name in entry:
                metrics[f"{key}_{name}"] = float(entry[name])
    return metrics


def outside(validated: dict[str, Any] | None, process: str, values: dict[str, float]) -> list[str]:
    """Why a question with these coordinates is outside the validated range (empty: inside)."""
    if validated is None:
        return ["this model version stores no validated range (registered before it existed)"]
    entry = validated.get(process)
    if entry is None or "range" not in entry:
        return [f"no {process} question met the accuracy bar in the validation"]
    reasons = []
    for name in FEATURES:
        low, high = entry["range"][name]
        value = values[name]
        shown = (lambda v: f"{int(v)}") if name == "nodes" else (lambda v: f"{v:.2f}")
        if value < low - 1e-9:
            reasons.append(f"{name} {shown(value)} below the validated {shown(low)}")
        elif value > high + 1e-9:
            reasons.append(f"{name} {shown(value)} above the validated {shown(high)}")
    return reasons


@dataclass
class Check:
    """What a check (or a fallback) simulation found, against the network's answer."""

    samples: int  # 0: exact (heat)
    mean: np.ndarray
    se: np.ndarray
    size: float
    size_se: float
    rmse: float  # estimated root-mean-square error of the network per node
    size_error: float  # |network size - check size|
    confirmed: bool
    detail: str


class Budget:
    """How many cascades of one question fit in ``trust.max_seconds``, from a timed pilot (computed once).

    A simulation's cost per cascade depends on how far the cascades travel (a sub-critical cascade on a
    100,000-node graph is over in a few steps, a super-critical one on a 10,000-node lattice takes a hundred
    steps and touches every edge), so no count of nodes and edges predicts it: measured per cascade, the fast
    simulator ran 2e7 to 1.6e10 (cascades x (nodes + directed edges)) per second on these families. The pilot
    runs 1, then 4, 16 and 64 cascades while each took under 2% of the budget, and the last (largest) one's
    time per cascade sets how many fit in the rest. The count therefore depends on the machine's speed; an answer
    states how many cascades it used.
    """

    PILOTS = (1, 4, 16, 64)

    def __init__(self, q: Question, cfg: TrustConfig, seed: int) -> None:
        self.q, self.cfg, self.seed = q, cfg, seed
        self._affordable: int | None = None
        self.pilot_seconds = 0.0
        self.spent = 0  # cascades already run for this question (the check's)

    def affordable(self) -> int:
        if self._affordable is None:
            _ = self.q.graph.neighbours  # built once per graph (cached), outside the pilot's time per cascade
            for count in self.PILOTS:
                started = time.perf_counter()
                simulate_question(self.q, count, self.seed + 7919)
                seconds = time.perf_counter() - started
                self.pilot_seconds += seconds
                per_cascade = seconds / count  # the largest pilot's: its fixed costs shared by the most cascades
                if seconds > 0.02 * self.cfg.max_seconds:
                    break
            left = self.cfg.max_seconds - self.pilot_seconds
            self._affordable = int(left / per_cascade) if left > 0 else 0
        return self._affordable - self.spent

    def allows(self, samples: int) -> bool:
        if self.q.process == "heat":
            return self.q.graph.n <= self.cfg.heat_max_nodes
        return self.affordable() >= samples


def simulate_question(q: Question, samples: int, seed: int) -> simulate.Estimate:
    generator = torch.Generator().manual_seed(seed)
    with simulate.one_thread():
        return simulate.run(q.process, q.graph, q.seeds, q.params, samples, generator)


def check(q: Question, model: np.ndarray, cfg: TrustConfig, seed: int) -> Check:
    """Simulate ``check_samples`` cascades (heat: exact) and decide whether they confirm the network's answer."""
    samples = 0 if q.process == "heat" else cfg.check_samples
    estimate = simulate_question(q, max(samples, 1), seed)
    mean, se = estimate.mean, estimate.se
    size, size_se = (float(mean.sum()), 0.0) if q.process == "heat" else estimate.final_size
    mse = float(np.mean((model - mean) ** 2 - se**2))
    rmse = math.sqrt(max(mse, 0.0))
    size_error = abs(float(model.sum()) - size)
    tolerance = cfg.max_size_rel_error * max(size, 1e-9)
    confirmed = size_error + cfg.check_z * size_se <= tolerance and rmse <= cfg.max_mae
    detail = (
        f"expected size {float(model.sum()):.1f} vs {size:.1f}"
        + (f" +- {size_se:.1f}" if samples else " (exact)")
        + f" by {samples or 'an exact'}{' cascades' if samples else ' heat kernel'}, "
        f"per-node rms error {rmse:.3f} (bars: size {cfg.max_size_rel_error:.0%}"
        + (f" after {cfg.check_z:g} standard errors" if samples else "")
        + f", per-node {cfg.max_mae:g})"
    )
    return Check(samples, mean, se, size, size_se, rmse, size_error, confirmed, detail)


def _simulated(
    q: Question, cfg: TrustConfig, budget: Budget, seed: int, reason: str, values: dict[str, float]
) -> Answer:
    samples = 0 if q.process == "heat" else min(cfg.fallback_samples, budget.affordable())
    estimate = simulate_question(q, max(samples, 1), seed)
    size, size_se = (float(estimate.mean.sum()), 0.0) if q.process == "heat" else estimate.final_size
    how = "the exact heat kernel" if q.process == "heat" else f"{samples} simulated cascades"
    return Answer(
        estimate.mean.astype(np.float64),
        estimate.se.astype(np.float64),
        size,
        size_se,
        SIMULATED,
        False,
        f"{reason}; answered by {how}",
        values,
    )


def _learned(
    q: Question, model: np.ndarray, per_node: float, size_error: float, flagged: bool, reason: str, values
) -> Answer:
    uncertainty = np.full(q.graph.n, per_node)
    if q.process != "heat":
        uncertainty[q.seeds] = 0.0  # a seed is reached by definition
    return Answer(
        model.astype(np.float64), uncertainty, float(model.sum()), size_error, LEARNED, flagged, reason, values
    )


def simulated_outright(
    q: Question, validated: dict[str, Any] | None, cfg: TrustConfig, features: FeatureCache, budget: Budget
) -> bool:
    """Whether ``answer`` will simulate this question without looking at the network's answer (outside the
    validated range, and the simulation fits the budget): the server then skips the network for it."""
    away = outside(validated, q.process, question_features(features(q.graph), q.process, q.params))
    return bool(away) and budget.allows(0 if q.process == "heat" else cfg.check_samples)


def answer(
    q: Question,
    model: np.ndarray | None,
    validated: dict[str, Any] | None,
    cfg: TrustConfig,
    features: FeatureCache | None = None,
    seed: int = 0,
    fallback: bool = True,
    budget: Budget | None = None,
) -> Answer:
    """The policy (module docstring) for one question and the network's (n,) answer to it.

    ``model`` may be None only for a question that ``simulated_outright`` says is simulated (pass the same
    ``budget``: its pilot runs once). ``fallback=False`` decides without running the fallback simulation (a
    benchmark that only needs the method): a ``simulated`` answer then carries the network's probabilities and
    NaN uncertainties."""
    features = features or FeatureCache()
    values = question_features(features(q.graph), q.process, q.params)
    entry = (validated or {}).get(q.process, {})
    typical = (entry.get("mae_q95", cfg.max_mae), entry.get("size_rel_error_q95", cfg.max_size_rel_error))
    worst = (entry.get("worst_mae", 1.0), entry.get("worst_size_rel_error", 1.0))
    budget = budget or Budget(q, cfg, seed)
    if model is None and not (fallback and simulated_outright(q, validated, cfg, features, budget)):
        raise ValueError("the network's answer is needed for this question (simulated_outright is false)")
    size_model = math.nan if model is None else float(model.sum())

    def simulated(reason: str) -> Answer:
        if fallback:
            return _simulated(q, cfg, budget, seed + 1, reason, values)
        return Answer(model, np.full(q.graph.n, np.nan), size_model, math.nan, SIMULATED, False, reason, values)

    away = outside(validated, q.process, values)
    check_samples = 0 if q.process == "heat" else cfg.check_samples
    if away:
        reason = f"outside the validated range ({'; '.join(away)}; this question: {describe(values)})"
        if budget.allows(check_samples):
            return simulated(reason)
        reason += (
            f"; too large to simulate: {check_samples} cascades would take more than model.spread.trust.max_seconds "
            f"({cfg.max_seconds:g} s; {q.graph.n} nodes, {len(q.graph.edges)} edges): the network's answer, its "
            "error unmeasured here; uncertainty: the worst error the validation saw, which is no bound"
        )
        return _learned(q, model, worst[0], worst[1] * size_model, True, reason, values)
    if cfg.check_samples == 0 or not budget.allows(check_samples):
        why = "checks are off (check_samples 0)" if cfg.check_samples == 0 else "too large for the check"
        reason = f"inside the validated range; not checked: {why}; uncertainty: the validation's 95th percentile error"
        return _learned(q, model, typical[0], typical[1] * size_model, False, reason, values)
    found = check(q, model, cfg, seed)
    budget.spent += check_samples
    if not found.confirmed:
        return simulated(f"inside the validated range, but a check did not confirm the network: {found.detail}")
    per_node = max(typical[0], found.rmse)
    size_uncertainty = max(typical[1] * size_model, found.size_error + cfg.check_z * found.size_se)
    return _learned(
        q, model, per_node, size_uncertainty, False, f"inside the validated range; confirmed: {found.detail}", values
    )
