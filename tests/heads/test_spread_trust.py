"""The spread head's trust layer: graph coordinates on known graphs, the validated range, and the policy that
answers with the network only inside it and when a quick simulation confirms it (else simulates, or flags)."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import torch

from tests.profile import section
from triad.heads.spread import simulate
from triad.heads.spread.batch import Question
from triad.heads.spread.data import draw_params
from triad.heads.spread.features import (
    beta_for,
    graph_features,
    node_cycle_features,
    question_features,
    transmissibility,
)
from triad.heads.spread.graphs import Graph, canonical_edges, from_networkx, generate, lattice
from triad.heads.spread.trust import (
    Budget,
    FeatureCache,
    answer,
    build_range,
    case_table,
    outside,
    simulated_outright,
)


def grid(rows: int, columns: int, diagonals: bool = False) -> Graph:
    return Graph(rows * columns, canonical_edges(lattice(rows, columns, diagonals), rows * columns), "grid")


def test_features_on_known_graphs():
    square = graph_features(grid(20, 20))
    assert square.nodes == 400 and square.edges == 760 and square.clustering == 0.0
    assert 0.3 < square.critical_p < 0.36  # non-backtracking radius of a finite 20x20 grid: just under 3
    king = graph_features(grid(6, 6, diagonals=True))
    assert king.edges == 2 * 6 * 5 + 2 * 5 * 5 and king.clustering > 0.4
    complete = graph_features(from_networkx(nx.complete_graph(10), "k10"))
    assert complete.critical_p == pytest.approx(1 / 8) and complete.clustering == 1.0 and complete.degree_cv == 0.0
    bigger = graph_features(from_networkx(nx.complete_graph(90), "k90"))  # the sparse power iteration
    assert bigger.critical_p == pytest.approx(1 / 88, rel=1e-3)
    tree = graph_features(from_networkx(nx.balanced_tree(2, 6), "tree"))
    assert tree.critical_p == 1.0 and tree.clustering == 0.0  # no cycles: no threshold
    star = graph_features(from_networkx(nx.star_graph(9), "star"))
    assert star.degree_cv == pytest.approx(np.std([9] + [1] * 9) / 1.8)
    karate = nx.karate_club_graph()
    assert graph_features(from_networkx(karate, "karate")).clustering == pytest.approx(nx.average_clustering(karate))
    cycles = node_cycle_features(4, *Graph(4, canonical_edges([(0, 1), (1, 2), (0, 2), (2, 3)], 4)).directed_edges())
    np.testing.assert_allclose(cycles[:, 0], [1, 1, 1 / 3, 0])
    np.testing.assert_allclose(cycles[:, 1], np.log1p([1, 1, 1, 0]), rtol=1e-6)


def test_transmissibility_and_its_inverse():
    assert transmissibility("ic", {"p": 0.3}) == 0.3 and transmissibility("heat", {"t": 1.0}) == 0.0
    assert transmissibility("sir", {"beta": 0.4, "gamma": 1.0}) == pytest.approx(0.4)  # one step infectious
    t = transmissibility("sir", {"beta": 0.2, "gamma": 0.3})
    assert beta_for(t, 0.3) == pytest.approx(0.2)
    features = graph_features(grid(20, 20))
    values = question_features(features, "ic", {"p": 0.5})
    assert values["criticality"] == pytest.approx(0.5 / features.critical_p)


def test_generated_families_and_parameters_relative_to_the_critical_point():
    for family in ("grid", "grid_diagonal", "random_geometric", "powerlaw_cluster", "ring_lattice"):
        graph = generate(family, 40, 4.0, seed=1)
        assert graph.n >= 40 and len(graph.edges) > 0
    assert generate("grid", 40, 4.0, seed=1).n == 42  # 6 x 7, the nearest square at least 40
    cfg = section("data", "spread")
    rng = np.random.default_rng(0)
    ratios = [draw_params(cfg, "ic", rng, critical_p=0.2)["p"] / 0.2 for _ in range(200)]
    assert cfg.criticality.low <= min(ratios) and max(ratios) <= cfg.criticality.high
    sir = [draw_params(cfg, "sir", rng, critical_p=0.2) for _ in range(50)]
    ratios = [transmissibility("sir", params) / 0.2 for params in sir]
    assert cfg.criticality.low - 1e-9 <= min(ratios) and max(ratios) <= cfg.criticality.high + 1e-9


def monte_carlo(graph: Graph, p: float, samples: int, seed: int = 5) -> np.ndarray:
    with simulate.one_thread():
        return simulate.independent_cascade(graph, [0], p, samples, torch.Generator().manual_seed(seed)).mean


def small_range(cfg) -> dict:
    """A validated range built the way the evaluation builds it: from held-out questions on small graphs
    (sub-critical IC on 5x5 and 6x6 grids), answered well."""
    questions, answers = [], []
    for size, p in ((5, 0.2), (6, 0.25)):
        graph = grid(size, size)
        target = monte_carlo(graph, p, 4000, seed=size)
        questions.append(Question(graph, np.array([0]), "ic", {"p": p}, target))
        answers.append(np.minimum(target * 1.02, 1.0))
    return build_range(case_table(questions, answers), cfg)


def test_the_validated_range_spans_the_questions_that_met_the_bar():
    cfg = section("model", "spread").trust
    table = pd.DataFrame(
        {
            "process": ["ic"] * 3,
            "nodes": [100.0, 200.0, 400.0],
            "clustering": [0.1, 0.3, 0.2],
            "degree_cv": [0.5, 0.4, 0.3],
            "criticality": [0.5, 1.5, 1.0],
            "mae": [0.01, 0.03, 0.2],
            "size_rel_error": [0.05, 0.1, 0.5],
        }
    )
    validated = build_range(table, cfg)["ic"]
    assert validated["range"]["nodes"] == [100.0, 200.0] and validated["range"]["criticality"] == [0.5, 1.5]
    assert validated["passed"] == 2 and validated["failed_inside"] == 0 and validated["worst_mae"] == 0.2
    values = {"nodes": 150.0, "clustering": 0.2, "degree_cv": 0.45, "criticality": 1.9}
    assert outside({"ic": validated}, "ic", values) == ["criticality 1.90 above the validated 1.50"]
    assert "no validated range" in outside(None, "ic", values)[0]


def test_a_question_far_outside_the_range_is_simulated_or_flagged():
    """A 20x20 grid at p = 0.5, above its critical point, against a range validated on small sub-critical grids."""
    cfg = section("model", "spread").trust.model_copy(update={"fallback_samples": 2000})
    validated = small_range(cfg)
    graph = grid(20, 20)
    question = Question(graph, np.array([0]), "ic", {"p": 0.5})
    wrong = np.full(graph.n, 0.9)  # what an over-confident network might say
    served = answer(question, wrong, validated, cfg)
    assert served.method == "simulated" and not served.flagged
    assert "outside the validated range (nodes 400 above the validated 36" in served.reason
    assert "criticality 1.4" in served.reason and "answered by 2000 simulated cascades" in served.reason
    assert served.expected_size == pytest.approx(served.probabilities.sum()) and served.expected_size < 0.5 * graph.n
    assert 0 < served.expected_size_uncertainty < 0.1 * served.expected_size and served.uncertainty.max() > 0
    # The server skips the network for such a question: its answer does not depend on it.
    assert simulated_outright(question, validated, cfg, FeatureCache(), Budget(question, cfg, 0))
    unasked = answer(question, None, validated, cfg)
    assert unasked.method == "simulated" and unasked.reason == served.reason
    np.testing.assert_array_equal(unasked.probabilities, served.probabilities)
    # Too large to simulate within the budget: the network's answer, flagged, with the worst error seen.
    tight = cfg.model_copy(update={"max_seconds": 1e-4})
    flagged = answer(question, wrong, validated, tight)
    assert flagged.method == "learned" and flagged.flagged and "too large to simulate" in flagged.reason
    assert "more than model.spread.trust.max_seconds" in flagged.reason
    np.testing.assert_array_equal(flagged.probabilities, wrong)
    assert flagged.uncertainty[1] == pytest.approx(validated["ic"]["worst_mae"])


def test_inside_the_range_the_network_answers_only_when_a_check_confirms_it():
    # 2,000 check cascades (a 36-node graph: milliseconds), so that the check's own noise cannot refuse a right answer
    cfg = section("model", "spread").trust.model_copy(update={"check_samples": 2000})
    validated = small_range(cfg)
    graph = grid(6, 6)
    question = Question(graph, np.array([0]), "ic", {"p": 0.22})
    good = monte_carlo(graph, 0.22, 20000, seed=11)  # as close as a network can get
    served = answer(question, good, validated, cfg)
    assert served.method == "learned" and not served.flagged and "confirmed" in served.reason
    np.testing.assert_array_equal(served.probabilities, good)
    assert served.uncertainty[0] == 0 and 0 < served.uncertainty[1] < cfg.max_mae
    bad = good.copy()
    bad[1:] = np.minimum(1, bad[1:] * 1.6)  # 60% too much spread
    refused = answer(question, bad, validated, cfg)
    assert refused.method == "simulated" and "a check did not confirm the network" in refused.reason
    assert abs(refused.expected_size - good.sum()) < 0.1 * good.sum()
    # Inside the range the network's answer is needed: the server must not skip it.
    assert not simulated_outright(question, validated, cfg, FeatureCache(), Budget(question, cfg, 0))
    with pytest.raises(ValueError, match="the network's answer is needed"):
        answer(question, None, validated, cfg)


def test_the_simulation_budget_is_measured_per_question():
    """A pilot times the question itself: far-travelling cascades afford fewer, and the pilot stays within budget."""
    cfg = section("model", "spread").trust.model_copy(update={"max_seconds": 2.0})
    graph = grid(40, 40)
    sub, sup = (Budget(Question(graph, np.array([0]), "ic", {"p": p}), cfg, 0) for p in (0.2, 0.9))
    assert sub.affordable() > 5 * sup.affordable() > 0  # 0.9 reaches all 1,600 nodes; 0.2 a handful
    assert sub.pilot_seconds < 0.1 * cfg.max_seconds and sup.pilot_seconds < 0.1 * cfg.max_seconds
    heat = Budget(Question(graph, np.array([0]), "heat", {"t": 1.0}), cfg, 0)
    assert heat.allows(10**9) is (graph.n <= cfg.heat_max_nodes)  # heat is exact: its size decides
