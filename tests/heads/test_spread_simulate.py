"""Spread simulators against closed forms, their determinism, and the DMP prior on trees."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from triad.errors import DataError
from triad.heads.spread import simulate
from triad.heads.spread.batch import Question, make_batch
from triad.heads.spread.graphs import Graph, canonical_edges, real_graph
from triad.heads.spread.model import dmp_prior, transmissibility

PATH = Graph(6, canonical_edges([(i, i + 1) for i in range(5)], 6), "path")
STAR = Graph(7, canonical_edges([(0, i) for i in range(1, 7)], 7), "star")


def within(estimate: simulate.Estimate, exact: np.ndarray) -> None:
    """Every node within 5 standard errors (plus float slack) of the exact probability."""
    assert np.all(np.abs(estimate.mean - exact) <= 5 * estimate.se + 1e-9), (estimate.mean, exact)


def test_heat_kernel_matches_scipy_expm():
    graph = real_graph("karate_club")
    kernels = simulate.heat_kernel(graph, [0.0, 0.3, 1.7])
    for t, kernel in zip([0.0, 0.3, 1.7], kernels):
        np.testing.assert_allclose(kernel, scipy.linalg.expm(-t * simulate.laplacian(graph)), atol=1e-10)
    heat = simulate.heat(graph, [0, 33], 0.8)
    np.testing.assert_allclose(
        heat.mean, scipy.linalg.expm(-0.8 * simulate.laplacian(graph))[:, [0, 33]].sum(1), atol=1e-10
    )
    assert heat.final_size[0] == pytest.approx(2.0)  # heat is conserved
    assert heat.mean.min() >= 0 and heat.mean.max() <= 1


def test_independent_cascade_on_a_path_is_p_to_the_distance():
    p = 0.6
    estimate = simulate.independent_cascade(PATH, [0], p, 20000, torch.Generator().manual_seed(1))
    within(estimate, p ** np.arange(6))
    assert estimate.curve.shape[1] == 6 and np.all(np.diff(estimate.curve, axis=0) >= 0)


def test_independent_cascade_on_a_star():
    p = 0.3
    from_centre = simulate.independent_cascade(STAR, [0], p, 20000, torch.Generator().manual_seed(2))
    within(from_centre, np.r_[1.0, np.full(6, p)])
    from_leaf = simulate.independent_cascade(STAR, [1], p, 20000, torch.Generator().manual_seed(3))
    within(from_leaf, np.r_[p, 1.0, np.full(5, p * p)])


def test_sir_on_one_edge_matches_the_transmissibility():
    beta, gamma = 0.2, 0.4
    edge = Graph(2, canonical_edges([(0, 1)], 2), "edge")
    estimate = simulate.epidemic(edge, [0], beta, gamma, 20000, torch.Generator().manual_seed(4))
    exact = 1 - gamma * (1 - beta) / (1 - (1 - gamma) * (1 - beta))
    within(estimate, np.array([1.0, exact]))
    t = transmissibility(torch.tensor([simulate.PROCESSES.index("sir")]), torch.tensor([[0.0, beta, gamma, 0.0]]))
    assert float(t) == pytest.approx(exact, rel=1e-5)


def test_sis_can_reinfect_but_sir_cannot():
    triangle = Graph(3, canonical_edges([(0, 1), (1, 2), (0, 2)], 3), "triangle")
    sis = simulate.epidemic(triangle, [0], 0.5, 0.9, 2000, torch.Generator().manual_seed(5), immune=False, steps=30)
    sir = simulate.epidemic(triangle, [0], 0.5, 0.9, 2000, torch.Generator().manual_seed(5), immune=True, steps=30)
    assert sis.mean[1:].mean() > sir.mean[1:].mean()


@pytest.mark.parametrize(
    "process,params",
    [("ic", {"p": 0.3}), ("sir", {"beta": 0.3, "gamma": 0.5}), ("sis", {"beta": 0.3, "gamma": 0.5, "t": 6})],
)
def test_the_same_seed_gives_the_same_cascades(process, params):
    graph = real_graph("florentine_families")
    run = lambda seed: simulate.run(process, graph, [0, 5], params, 500, torch.Generator().manual_seed(seed))  # noqa: E731
    first, again, other = run(7), run(7), run(8)
    np.testing.assert_array_equal(first.mean, again.mean)
    np.testing.assert_array_equal(first.sizes, again.sizes)
    assert not np.array_equal(first.sizes, other.sizes)


def test_dmp_prior_is_exact_on_trees():
    p = 0.45
    batch = make_batch([Question(PATH, np.array([0]), "ic", {"p": p}), Question(STAR, np.array([1]), "ic", {"p": p})])
    prior = dmp_prior(batch).numpy()
    np.testing.assert_allclose(prior[:6], p ** np.arange(6), atol=1e-6)
    np.testing.assert_allclose(prior[6:], np.r_[p, 1.0, np.full(5, p * p)], atol=1e-6)


def test_bad_inputs_are_named():
    with pytest.raises(DataError, match="seed set is empty"):
        simulate.independent_cascade(PATH, [], 0.5, 10, torch.Generator())
    with pytest.raises(DataError, match=r"seed nodes must be in 0\.\.5"):
        simulate.independent_cascade(PATH, [9], 0.5, 10, torch.Generator())
    with pytest.raises(DataError, match=r"p must be a probability"):
        simulate.independent_cascade(PATH, [0], 1.5, 10, torch.Generator())
    with pytest.raises(DataError, match="unknown process"):
        simulate.run("voter", PATH, [0], {}, 10, torch.Generator())
