"""The spread head at scale: the fast Monte-Carlo, the faster DMP prior and adjacency, sparse heat, lazy greedy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.profile import section
from triad.heads.spread import simulate
from triad.heads.spread.batch import Question, make_batch
from triad.heads.spread.graphs import Graph, canonical_edges, generate
from triad.heads.spread.influence import greedy_model, lazy_greedy
from triad.heads.spread.model import SpreadGNN, dmp_prior, dmp_prior_dense, mean_adjacency

PATH = Graph(6, canonical_edges([(i, i + 1) for i in range(5)], 6), "path")
STAR = Graph(7, canonical_edges([(0, i) for i in range(1, 7)], 7), "star")


def z_scores(a: simulate.Estimate, b: simulate.Estimate) -> np.ndarray:
    return (a.mean - b.mean) / np.sqrt(a.se**2 + b.se**2 + 1e-12)


@pytest.mark.parametrize("p", [0.2, 0.7])  # the geometric jumps below 0.5, one draw per trial above
def test_successes_are_sorted_bernoulli_trials(p):
    rng = np.random.default_rng(0)
    attempts = 200_000
    hits = simulate.successes(attempts, p, rng)
    assert np.all(np.diff(hits) > 0) and hits.min() >= 0 and hits.max() < attempts
    assert abs(len(hits) - p * attempts) < 5 * np.sqrt(attempts * p * (1 - p))
    # Independent trials: the first and second halves succeed at the same rate, and so do even and odd positions.
    assert abs((hits < attempts // 2).mean() - 0.5) < 0.01 and abs((hits % 2 == 0).mean() - 0.5) < 0.01
    assert len(simulate.successes(10, 0.0, rng)) == 0 and len(simulate.successes(10, 1.0, rng)) == 10


def test_fast_cascades_match_the_exact_answer_in_many_small_chunks(monkeypatch):
    """p**distance on a path and p on a star's leaves, with the state forced into chunks of 300 cascades."""
    monkeypatch.setattr(simulate, "MEMORY", 8 * 300 * 7)
    assert simulate._chunk(7, 20000) == 300
    p = 0.6
    path = simulate.cascades(PATH, [0], p, 1.0, 20000, torch.Generator().manual_seed(1), curve=True)
    assert np.all(np.abs(path.mean - p ** np.arange(6)) <= 5 * path.se + 1e-9), path.mean
    np.testing.assert_allclose(path.curve[-1], path.mean)
    # Reached by step s on a path from node 0 means reached (node s' distance is s).
    np.testing.assert_allclose(np.diag(path.curve[: len(path.curve)]), path.mean[: len(path.curve)])
    star = simulate.cascades(STAR, [1], 0.3, 1.0, 20000, torch.Generator().manual_seed(2), curve=False)
    exact = np.r_[0.3, 1.0, np.full(5, 0.09)]
    assert np.all(np.abs(star.mean - exact) <= 5 * star.se + 1e-9), star.mean
    assert star.curve.shape == (1, 7) and star.sizes.shape == (20000,)
    assert star.final_size[0] == pytest.approx(star.mean.sum())


@pytest.mark.parametrize("immune,steps", [(True, 200), (False, 6)])
def test_fast_epidemic_agrees_with_the_dense_reference(immune, steps):
    """SIR and SIS on a loopy graph: the fast engine and the first (dense) simulator, node by node."""
    graph = generate("watts_strogatz", 40, 4, 3)
    with simulate.one_thread():
        fast = simulate.cascades(graph, [0, 9], 0.3, 0.4, 2000, torch.Generator().manual_seed(4), immune, steps)
        dense = simulate.epidemic_dense(graph, [0, 9], 0.3, 0.4, 2000, torch.Generator().manual_seed(5), immune, steps)
    assert np.abs(z_scores(fast, dense)).max() < 4.5
    assert abs(fast.final_size[0] - dense.final_size[0]) < 4 * np.hypot(fast.final_size[1], dense.final_size[1])


def test_the_public_simulators_run_the_fast_engine():
    estimate = simulate.run("ic", PATH, [0], {"p": 0.5}, 100, torch.Generator().manual_seed(0))
    again = simulate.cascades(PATH, [0], 0.5, 1.0, 100, torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(estimate.sizes, again.sizes)


def test_dmp_prior_matches_the_dense_reference_on_loopy_graphs():
    graph = generate("watts_strogatz", 80, 6, 1)
    questions = [Question(graph, np.array([0, 5]), "ic", {"p": p}) for p in (0.1, 0.3, 0.6)]
    questions += [Question(graph, np.array([7]), "sir", {"beta": 0.3, "gamma": 0.5})]
    batch = make_batch(questions)
    np.testing.assert_allclose(dmp_prior(batch).numpy(), dmp_prior_dense(batch).numpy(), atol=2e-5)


def test_the_accelerated_prior_reaches_the_plain_fixed_point_in_fewer_rounds():
    """At the critical point plain DMP rounds crawl; the Anderson rounds reach the same fixed point in 30."""
    import networkx as nx

    from triad.heads.spread.features import graph_features
    from triad.heads.spread.graphs import from_networkx

    graph = from_networkx(nx.barabasi_albert_graph(3000, 5, seed=0), "ba")
    p_c = graph_features(graph).critical_p
    batch = make_batch([Question(graph, np.array([0, 17, 400]), "ic", {"p": p_c})])
    fixed = dmp_prior(batch, rounds=20_000, tolerance=1e-9, accelerate=False).numpy()
    fast = dmp_prior(batch, rounds=30, accelerate=True).numpy()
    plain = dmp_prior(batch, rounds=30, accelerate=False).numpy()
    assert np.abs(fast - fixed).max() < 1e-5
    assert np.abs(plain - fixed).max() > 1e-4  # 30 plain rounds are not there yet
    assert fast.sum() == pytest.approx(fixed.sum(), rel=1e-5)


def test_the_prior_takes_the_rounds_a_long_graph_needs():
    """Messages cross a graph one hop a round: on a 400-node path (a tree: DMP is exact, P_v = p**v) the
    default round budget reaches the far end, where the old fixed 100 rounds stopped at node 100."""
    n, p = 400, 0.995
    path = Graph(n, canonical_edges([(i, i + 1) for i in range(n - 1)], n), "path")
    batch = make_batch([Question(path, np.array([0]), "ic", {"p": p})])
    np.testing.assert_allclose(dmp_prior(batch).numpy(), p ** np.arange(n), rtol=1e-4)
    assert dmp_prior(batch, rounds=100).numpy()[150] == 0.0


def test_mean_adjacency_is_the_neighbour_mean():
    graph = generate("barabasi_albert", 40, 4, 2)
    batch = make_batch([Question(graph, np.array([0]), "ic", {"p": 0.1}), Question(STAR, np.array([0]), "ic", {})])
    dense = np.zeros((batch.n_nodes, batch.n_nodes))
    dense[batch.dst.numpy(), batch.src.numpy()] = 1.0
    dense /= np.maximum(dense.sum(1, keepdims=True), 1)
    h = torch.randn(batch.n_nodes, 5)
    np.testing.assert_allclose((mean_adjacency(batch) @ h).numpy(), dense @ h.numpy(), atol=1e-5)


def test_sparse_heat_matches_the_dense_kernel(monkeypatch):
    graph = generate("barabasi_albert", 60, 4, 4)
    monkeypatch.setattr(simulate, "DENSE_HEAT_UP_TO", 10**6)
    dense = simulate.heat(graph, [0, 3], 1.3, curve_points=3)
    monkeypatch.setattr(simulate, "DENSE_HEAT_UP_TO", 10)
    sparse = simulate.heat(graph, [0, 3], 1.3, curve_points=3)
    np.testing.assert_allclose(sparse.curve, dense.curve, atol=1e-10)
    assert sparse.final_size[0] == pytest.approx(2.0)


def test_lazy_greedy_equals_plain_greedy_on_a_submodular_spread():
    """A coverage function (submodular): CELF must pick exactly what plain greedy picks."""
    rng = np.random.default_rng(0)
    covers = [set(rng.choice(200, size=int(rng.integers(1, 40)), replace=False).tolist()) for _ in range(60)]
    weight = rng.random(200)

    def spread(seeds):
        return sum(weight[i] for i in set().union(*(covers[s] for s in seeds))) if seeds else 0.0

    plain: list[int] = []
    for _ in range(8):
        plain.append(max((v for v in range(60) if v not in plain), key=lambda v: spread(plain + [v])))
    calls = []

    def spread_of(sets):
        calls.append(len(sets))
        return np.array([spread(s) for s in sets])

    assert lazy_greedy(8, np.arange(60), spread_of, batch=4) == plain
    assert sum(calls) < 8 * 60  # lazy: fewer evaluations than plain greedy's


def test_greedy_model_picks_k_distinct_nodes_from_the_pool():
    torch.manual_seed(0)
    network = SpreadGNN(section("model", "spread", hidden=16, iterations=3)).eval()
    graph = generate("barabasi_albert", 50, 4, 5)
    pool = set(np.argsort(-graph.degree, kind="stable")[:10].tolist())
    with simulate.one_thread():
        seeds = greedy_model(network, graph, 3, 0.2, pool=10, batch=4)
    assert len(set(seeds)) == 3 and set(seeds) <= pool
