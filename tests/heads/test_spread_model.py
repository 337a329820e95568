"""The spread network: permutation equivariance, seeds, the data step, influence maximisation."""

from __future__ import annotations

import numpy as np
import torch

from tests.profile import section
from triad.heads.spread.batch import Question, make_batch
from triad.heads.spread.config import SpreadModel
from triad.heads.spread.data import load_split, prepare
from triad.heads.spread.evaluate import speed_table
from triad.heads.spread.graphs import Graph, canonical_edges, generate
from triad.heads.spread.influence import degree_seeds, greedy_model, greedy_monte_carlo
from triad.heads.spread.model import PRIOR_FLOOR, SpreadGNN, dmp_prior, mean_adjacency
from triad.heads.spread.pyfunc import stored_model_config


def _network() -> SpreadGNN:
    torch.manual_seed(0)
    return SpreadGNN(section("model", "spread", hidden=16, iterations=3)).eval()


def test_relabelling_the_nodes_relabels_the_answer():
    graph = generate("barabasi_albert", 30, 4, seed=3)
    perm = np.random.default_rng(0).permutation(graph.n)  # new id of old node i is perm[i]
    relabelled = Graph(graph.n, canonical_edges(perm[graph.edges], graph.n), "relabelled")
    network = _network()
    for process, params in (("ic", {"p": 0.3}), ("sir", {"beta": 0.2, "gamma": 0.5}), ("heat", {"t": 0.7})):
        seeds = np.array([2, 11])
        original = network.probabilities(make_batch([Question(graph, seeds, process, params)]))
        moved = network.probabilities(make_batch([Question(relabelled, perm[seeds], process, params)]))
        torch.testing.assert_close(moved[torch.from_numpy(perm)], original, atol=1e-5, rtol=1e-4)


def test_message_layer_equals_its_textbook_form():
    """The layer's factored update (x block precomputed, sparse mean) is h <- LN(h + MLP([h, mean W h_u, x]))."""
    graph = generate("watts_strogatz", 25, 4, seed=2)
    isolated = Graph(3, np.zeros((0, 2), dtype=np.int64), "isolated")
    batch = make_batch(
        [Question(graph, np.array([0]), "ic", {"p": 0.3}), Question(isolated, np.array([1]), "ic", {"p": 0.3})]
    )
    layer = _network().layer
    torch.manual_seed(1)
    h, x = torch.randn(batch.n_nodes, 16), torch.randn(batch.n_nodes, 16)
    degree = torch.bincount(batch.dst, minlength=batch.n_nodes).float()
    mean = torch.zeros_like(h).index_add(0, batch.dst, layer.message(h)[batch.src]) / degree.clamp_min(1)[:, None]
    textbook = layer.norm(h + layer.update(torch.cat([h, mean, x], 1)))
    factored = layer(h, layer.input_term(x), mean_adjacency(batch))
    torch.testing.assert_close(factored, textbook, atol=1e-5, rtol=1e-5)
    assert torch.all(mean[-3:] == 0)  # isolated nodes hear nothing


def test_seeds_of_a_cascade_are_reached():
    graph = generate("erdos_renyi", 20, 3, seed=1)
    probabilities = _network().probabilities(make_batch([Question(graph, np.array([4, 7]), "ic", {"p": 0.2})]))
    assert torch.all(probabilities[[4, 7]] == 1.0)
    assert torch.all((probabilities >= 0) & (probabilities <= 1))


def test_cap_at_prior_bounds_ic_and_sir_by_dmp_and_keeps_seeds_at_one():
    """With ``cap_at_prior`` an IC/SIR answer never exceeds the DMP prior (clipped at PRIOR_FLOOR), even from a
    network that wants every node reached; seeds stay 1; SIS and heat are not capped."""
    graph = generate("grid", 36, 4, seed=1)  # a lattice: many short cycles, DMP well above the truth
    seeds = np.array([0, 20])
    questions = [
        Question(graph, seeds, "ic", {"p": 0.3}),
        Question(graph, seeds, "sir", {"beta": 0.3, "gamma": 0.5}),
        Question(graph, seeds, "sis", {"beta": 0.3, "gamma": 0.5, "t": 5}),
    ]
    for residual in (True, False):
        torch.manual_seed(0)
        cfg = section("model", "spread", hidden=16, iterations=3, residual=residual, cap_at_prior=True)
        network = SpreadGNN(cfg).eval()
        with torch.no_grad():
            network.readout[-1].bias.fill_(12.0)  # the uncapped network says: every node reached
        for question in questions:
            batch = make_batch([question])
            probabilities = network.probabilities(batch)
            prior = dmp_prior(batch)
            assert torch.all(probabilities[torch.from_numpy(seeds)] == 1.0)
            if question.process == "sis":  # reinfection: DMP is no bound there, so no cap
                assert probabilities.min() > 0.99
            else:
                assert torch.all(probabilities <= prior.clamp_min(PRIOR_FLOOR) + 1e-5), question.process
                assert probabilities.sum() < prior.sum() + graph.n * PRIOR_FLOOR
    uncapped = SpreadGNN(section("model", "spread", hidden=16, iterations=3, residual=False, cap_at_prior=False))
    with torch.no_grad():
        uncapped.readout[-1].bias.fill_(12.0)
    assert uncapped.eval().probabilities(make_batch(questions[:1])).min() > 0.99


def test_a_version_saved_before_the_cap_loads_without_it():
    saved = section("model", "spread").model_dump(mode="json")
    del saved["cap_at_prior"]
    assert SpreadModel.model_validate(stored_model_config(saved)).cap_at_prior is False


def test_a_version_saved_with_a_work_budget_gets_the_time_budget():
    saved = section("model", "spread").model_dump(mode="json")
    saved["trust"] = {k: v for k, v in saved["trust"].items() if k != "max_seconds"} | {"max_work": 1.0e8}
    trust = SpreadModel.model_validate(stored_model_config(saved)).trust
    assert trust.max_seconds == 2.0 and not hasattr(trust, "max_work")


def test_prepare_is_deterministic_and_loads_back(tmp_path):
    cfg = section(
        "data",
        "spread",
        train_graphs=3,
        val_graphs=1,
        test_graphs=1,
        real_graphs=["florentine_families"],
        examples_per_graph=2,
        train_samples=50,
        test_samples=60,
        processes=["ic", "sis", "heat"],
        test_nodes={"low": 25, "high": 30},
    )
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    summary = prepare(cfg, first)
    prepare(cfg, second)
    assert summary["test"]["graphs"] == 2 and summary["train"]["questions"] == 6
    for path in sorted(first.iterdir()):
        assert path.read_bytes() == (second / path.name).read_bytes(), path.name
    questions, errors = load_split(first, "test")
    assert [q.graph.name for q in questions][-1] == "florentine_families"
    assert all(len(q.target) == q.graph.n == len(e) for q, e in zip(questions, errors))
    assert {q.process for q in questions} <= {"ic", "sis", "heat"}


def test_influence_choosers_on_a_star():
    star = Graph(9, canonical_edges([(0, i) for i in range(1, 9)], 9), "star")
    assert degree_seeds(star, 1) == [0]
    assert greedy_monte_carlo(star, 1, 0.3, 400, torch.Generator().manual_seed(0)) == [0]
    chosen = greedy_model(_network(), star, 3, 0.3)
    assert len(set(chosen)) == 3 and all(0 <= v < 9 for v in chosen)


def test_speed_table_times_each_process_on_its_largest_questions():
    graphs = [generate("erdos_renyi", n, 3, seed=n) for n in (20, 40, 30)]
    questions = [Question(g, np.array([0]), "ic", {"p": 0.2}) for g in graphs]
    questions.append(Question(graphs[0], np.array([1]), "heat", {"t": 0.5}))
    table = speed_table(_network(), questions, samples=50, per_process=2, rounds=2).set_index("process")
    assert list(table.index) == ["heat", "ic"]
    assert table.loc["ic", "questions"] == 2 and table.loc["ic", "mean_nodes"] == 35.0  # the 40- and 30-node graphs
    assert table.loc["heat", "reference"] == "heat kernel (eigh)"
    assert table.loc["ic", "reference"] == "Monte-Carlo, 50 cascades"
    for column in ("reference_seconds", "model_seconds", "model_batched_seconds"):
        assert (table[column] > 0).all()
    np.testing.assert_allclose(table.speedup, table.reference_seconds / table.model_seconds)
    np.testing.assert_allclose(table.speedup_batched, table.reference_seconds / table.model_batched_seconds)
