"""Spreading processes on a graph, simulated many times at once (Monte-Carlo), and the exact heat kernel.

Each process starts from a seed set and asks, for every node, the probability that it is reached:

- ``ic``   independent cascade: a node activated at step t gets one chance to activate each
           inactive neighbour at step t+1, with probability ``p``.
- ``sir``  discrete-time SIR epidemic: every step each infected node infects each susceptible
           neighbour with probability ``beta``, then recovers (for good) with probability ``gamma``.
           Reached = ever infected, when the epidemic has died out.
- ``sis``  the same, but recovered nodes are susceptible again; runs ``t`` steps (the horizon).
           Reached = infected at some step within the horizon.
- ``heat`` heat diffusion ``x(t) = expm(-t L) x(0)`` with the graph Laplacian ``L = D - A`` and
           ``x(0)`` the seed indicator: deterministic and exact. ``expm(-tL)`` is doubly stochastic
           with non-negative entries, so every ``x_v(t)`` lies in [0, 1] like a probability.

The stochastic simulators run ``samples`` independent cascades as one (samples, n) boolean array per
step, with random numbers from a seeded ``torch.Generator``: the same seed gives the same cascades.
They return an ``Estimate``: the per-node mean, its standard error, and the per-step curve (the
probability of having been reached by each step) for pictures of spread over time.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from triad.errors import DataError
from triad.heads.spread.graphs import Graph

PROCESSES = ("ic", "sir", "sis", "heat")
PARAMS = ("p", "beta", "gamma", "t")  # the process-parameter vector, in this order, for every process
USES = {"ic": ("p",), "sir": ("beta", "gamma"), "sis": ("beta", "gamma", "t"), "heat": ("t",)}  # what each reads


@dataclass
class Estimate:
    """mean, se: (n,) float64; curve: (steps + 1, n) float64, row s = P(reached by step s);
    sizes: (samples,) number of nodes each cascade reached (heat: one row, the total heat)."""

    mean: np.ndarray
    se: np.ndarray
    curve: np.ndarray
    sizes: np.ndarray

    @property
    def final_size(self) -> tuple[float, float]:
        """Expected number of nodes reached and its standard error."""
        return float(self.sizes.mean()), float(self.sizes.std() / np.sqrt(max(len(self.sizes), 1)))


@contextmanager
def one_thread():
    """Run torch on one CPU thread inside the block (restored after).

    The simulators' tensors are small: on a busy machine a second thread mostly waits, and the
    same work measured 7x slower with two threads than with one on the shared 2-core machine.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _seed_mask(graph: Graph, seeds) -> torch.Tensor:
    seeds = np.asarray(seeds, dtype=np.int64).ravel()
    if seeds.size == 0:
        raise DataError("the seed set is empty: give at least one seed node")
    if seeds.min() < 0 or seeds.max() >= graph.n:
        raise DataError(f"seed nodes must be in 0..{graph.n - 1}, got {seeds.tolist()}")
    mask = torch.zeros(graph.n, dtype=torch.bool)
    mask[torch.from_numpy(seeds)] = True
    return mask


def _summarise(reached: torch.Tensor, curve: list[torch.Tensor]) -> Estimate:
    samples = reached.shape[0]
    mean = reached.double().mean(0)
    se = (mean * (1 - mean) / max(samples - 1, 1)).sqrt()
    return Estimate(mean.numpy(), se.numpy(), torch.stack(curve).numpy(), reached.sum(1).double().numpy())


def _check_probability(name: str, value: float) -> None:
    if not 0 <= value <= 1:
        raise DataError(f"{name} must be a probability in [0, 1], got {value}")


DENSE_UP_TO = 100  # nodes: a dense adjacency product is faster for small graphs, a sparse one above


def adjacency(graph: Graph) -> torch.Tensor:
    """(n, n) float32 symmetric 0/1 adjacency matrix: dense up to ``DENSE_UP_TO`` nodes, else sparse CSR."""
    src, dst = (torch.from_numpy(x) for x in graph.directed_edges())
    if graph.n <= DENSE_UP_TO:
        a = torch.zeros(graph.n, graph.n)
        a[src, dst] = 1.0
        return a
    with warnings.catch_warnings():  # torch calls its sparse CSR support beta; the product is all we use
        warnings.simplefilter("ignore", UserWarning)
        coo = torch.sparse_coo_tensor(
            torch.stack([src, dst]), torch.ones(len(src)), (graph.n, graph.n), check_invariants=False
        )
        return coo.coalesce().to_sparse_csr()


def epidemic(
    graph: Graph,
    seeds,
    beta: float,
    gamma: float,
    samples: int,
    generator: torch.Generator,
    immune: bool = True,
    steps: int = 200,
) -> Estimate:
    """SIR (``immune``: recovered nodes stay recovered) or SIS (recovered nodes are susceptible
    again), for at most ``steps`` steps; a cascade with no one infected is over.

    Given who is infected, a susceptible node with k infected neighbours escapes all of them
    independently, so it is infected with probability ``1 - (1 - beta)**k``: one draw per node and
    step, and k for all live cascades at once is one sparse product with the adjacency matrix.
    """
    _check_probability("beta", beta)
    _check_probability("gamma", gamma)
    a = adjacency(graph)
    infected = _seed_mask(graph, seeds).expand(samples, -1).clone()
    ever = infected.clone()
    curve = [ever.double().mean(0)]
    log_escape = float(np.log1p(-beta)) if beta < 1 else -np.inf
    for _ in range(steps):
        live = infected.any(1).nonzero().squeeze(1)
        if len(live) == 0:
            break
        now, seen = infected[live], ever[live]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            pressure = (a @ now.T.float()).T
        p_infect = -torch.expm1(pressure * log_escape) if beta < 1 else (pressure > 0).float()
        susceptible = ~seen if immune else ~now
        new = susceptible & (torch.rand(len(live), graph.n, generator=generator) < p_infect)
        if gamma < 1:
            now = (now & ~(torch.rand(len(live), graph.n, generator=generator) < gamma)) | new
        else:
            now = new
        infected[live] = now
        ever[live] = seen | new
        curve.append(ever.double().mean(0))
    return _summarise(ever, curve)


def independent_cascade(
    graph: Graph, seeds, p: float, samples: int, generator: torch.Generator, max_steps: int = 200
) -> Estimate:
    """``samples`` independent cascades with edge probability ``p`` from ``seeds``.

    A node is active for exactly one step, in which it tries each edge once: that is SIR with
    ``beta = p`` and ``gamma = 1`` (recovery right after the one infectious step), so the cascade
    runs on the same code; step s of the curve is the set activated by step s.
    """
    _check_probability("p", p)
    return epidemic(graph, seeds, p, 1.0, samples, generator, immune=True, steps=max_steps)


def laplacian(graph: Graph) -> np.ndarray:
    """(n, n) float64 ``D - A``."""
    lap = np.zeros((graph.n, graph.n))
    u, v = graph.edges[:, 0], graph.edges[:, 1]
    lap[u, v] = lap[v, u] = -1.0
    lap[np.arange(graph.n), np.arange(graph.n)] = graph.degree
    return lap


def heat_kernel(graph: Graph, times) -> np.ndarray:
    """(len(times), n, n) ``expm(-t L)`` for each t, from one eigendecomposition of the symmetric L."""
    eigenvalues, vectors = np.linalg.eigh(laplacian(graph))
    times = np.atleast_1d(np.asarray(times, dtype=np.float64))
    return np.einsum("ik,tk,jk->tij", vectors, np.exp(-times[:, None] * eigenvalues[None]), vectors)


def heat(graph: Graph, seeds, t: float, curve_points: int = 8) -> Estimate:
    """Exact heat at time ``t`` from the seed indicator; the curve samples ``curve_points`` times in [0, t]."""
    if t < 0:
        raise DataError(f"heat time t must be 0 or more, got {t}")
    x0 = _seed_mask(graph, seeds).double().numpy()
    kernels = heat_kernel(graph, np.linspace(0, t, curve_points + 1))
    values = np.clip(kernels @ x0, 0.0, 1.0)
    return Estimate(values[-1], np.zeros(graph.n), values, np.array([values[-1].sum()]))


def run(
    process: str,
    graph: Graph,
    seeds,
    params: dict[str, float],
    samples: int,
    generator: torch.Generator,
    max_steps: int = 200,
) -> Estimate:
    """Any process by name; ``params`` holds the names in ``PARAMS`` that the process uses."""
    if process == "ic":
        return independent_cascade(graph, seeds, params["p"], samples, generator, max_steps)
    if process == "sir":
        return epidemic(graph, seeds, params["beta"], params["gamma"], samples, generator, True, max_steps)
    if process == "sis":
        return epidemic(graph, seeds, params["beta"], params["gamma"], samples, generator, False, int(params["t"]))
    if process == "heat":
        return heat(graph, seeds, params["t"], curve_points=1)
    raise DataError(f"unknown process {process!r}; the processes are {', '.join(PROCESSES)}")
