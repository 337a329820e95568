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


MEMORY = 1 << 28  # bytes: the fast simulator's per-chunk state (8 bytes per cascade and node) stays under this


def successes(attempts: int, p: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions, in 0..attempts-1, of the successes among ``attempts`` independent Bernoulli(p) trials.

    Below ``p = 0.5`` it jumps from success to success: the gap is 1 + floor(E / -log(1 - p)) with
    E ~ Exp(1), exactly Geometric(p), so it draws about ``p * attempts`` numbers instead of ``attempts``.
    (float32 draws: the gap's tail is cut at probability ~1e-7, far below any Monte-Carlo error.)
    """
    if attempts == 0 or p <= 0:
        return np.zeros(0, dtype=np.int64)
    if p >= 1:
        return np.arange(attempts, dtype=np.int64)
    if p >= 0.5:
        return np.flatnonzero(rng.random(attempts, dtype=np.float32) < p)
    scale = np.float32(-1.0 / np.log1p(-p))
    found, start = [], -1  # position of the last success so far
    while True:
        expected = (attempts - 1 - start) * p
        draws = int(expected + 6 * np.sqrt(expected) + 16)
        gaps = rng.standard_exponential(draws, dtype=np.float32)
        gaps *= scale
        positions = np.cumsum(gaps.astype(np.int64) + 1) + start
        inside = positions[positions < attempts]
        found.append(inside)
        if len(inside) < draws:
            return np.concatenate(found)
        start = int(inside[-1])


def _chunk(n: int, samples: int) -> int:
    """Cascades per chunk: ``MEMORY`` bytes of state at 8 bytes per (cascade, node)."""
    return max(1, min(samples, MEMORY // (8 * max(n, 1))))


def cascades(
    graph: Graph,
    seeds,
    beta: float,
    gamma: float,
    samples: int,
    generator: torch.Generator,
    immune: bool = True,
    steps: int = 200,
    curve: bool = True,
) -> Estimate:
    """The fast simulator of SIR (``immune``), SIS and (``gamma = 1``) the independent cascade.

    All cascades of a chunk advance together, but only the infectious (cascade, node) pairs do work:
    their out-edges form one flat list of attempts, ``successes`` picks the ones that transmit without
    drawing a number per attempt, a binary search maps each success back to its edge, and a node
    infected twice in one step is kept once (each candidate writes its index, the one that stays wins).
    State per chunk is one int32 first-infection step per (cascade, node) (and, for SIS, one int32
    infected mark), so memory is ``MEMORY`` bytes whatever the number of cascades; ``curve=False``
    skips the per-step curve (one row, the final answer) when only the final probabilities matter.
    Same dynamics and statistics as ``epidemic_dense`` (tests compare them); random numbers from a
    NumPy generator seeded from ``generator``, so the same seed gives the same cascades.
    """
    _check_probability("beta", beta)
    _check_probability("gamma", gamma)
    seed_nodes = np.unique(_seed_mask(graph, seeds).nonzero().squeeze(1).numpy())
    rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))
    graph_n = graph.n
    edges = graph.neighbours
    counts = np.zeros(0, dtype=np.int64)  # (steps reached + 1) * n first-infection counts, step-major
    sizes = []
    most = _chunk(graph_n, samples)
    # Allocated once; after each chunk only the cells it touched (the reached ones) are reset.
    first = np.full(most * graph_n, -1, dtype=np.int32)  # key c * n + v: the step v was first infected in cascade c
    infected = None if immune else np.full(most * graph_n, -1, dtype=np.int32)  # >= 0: infected now
    for start in range(0, samples, most):
        chunk = min(most, samples - start)
        keys = (np.arange(chunk, dtype=np.int64)[:, None] * graph_n + seed_nodes[None]).ravel()
        first[keys] = 0
        if infected is not None:
            infected[keys] = 0
        reached_parts, last = [keys], 0
        for step in range(1, steps + 1):
            if len(keys) == 0:
                break
            node = keys % graph_n
            degree = edges.degree[node]
            ends = np.cumsum(degree)
            hit = successes(int(ends[-1]), beta, rng)
            source = np.searchsorted(ends, hit, side="right")
            target = edges.indices[edges.indptr[node[source]] + hit - (ends[source] - degree[source])]
            candidates = keys[source] - node[source] + target
            mark = first if immune else infected
            candidates = candidates[mark[candidates] < 0]  # susceptible at the start of the step
            order = np.arange(len(candidates), dtype=np.int32)
            mark[candidates] = -2 - order  # one write per cell survives: that candidate is the one kept
            new = candidates[mark[candidates] == -2 - order]
            if gamma < 1:
                stays = rng.random(len(keys), dtype=np.float32) >= gamma
                if infected is not None:
                    infected[keys[~stays]] = -1
                keys = np.concatenate([keys[stays], new])
            else:
                if infected is not None:
                    infected[keys] = -1
                keys = new
            if infected is not None:
                infected[new] = step
                new = new[first[new] < 0]
            first[new] = step
            reached_parts.append(new)
            last = step if len(new) else last
        reached = np.concatenate(reached_parts)
        sizes.append(np.bincount(reached // graph_n, minlength=chunk))
        steps_seen = last + 1 if curve else 1
        at = (first[reached].astype(np.int64) * graph_n if curve else 0) + reached % graph_n
        chunk_counts = np.bincount(at, minlength=steps_seen * graph_n)
        first[reached] = -1
        if infected is not None:
            infected[reached] = -1
        if len(chunk_counts) > len(counts):
            chunk_counts[: len(counts)] += counts
            counts = chunk_counts
        else:
            counts[: len(chunk_counts)] += chunk_counts
    per_step = np.cumsum(counts.reshape(-1, graph_n), axis=0) / samples
    mean = per_step[-1]
    se = np.sqrt(mean * (1 - mean) / max(samples - 1, 1))
    return Estimate(mean, se, per_step, np.concatenate(sizes).astype(np.float64))


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
    again), for at most ``steps`` steps; a cascade with no one infected is over. Runs ``cascades``,
    the fast simulator (``epidemic_dense`` is the same process, slower, kept as its reference)."""
    return cascades(graph, seeds, beta, gamma, samples, generator, immune, steps)


def epidemic_dense(
    graph: Graph,
    seeds,
    beta: float,
    gamma: float,
    samples: int,
    generator: torch.Generator,
    immune: bool = True,
    steps: int = 200,
) -> Estimate:
    """The first simulator (the reference ``cascades`` is tested against): one (samples, n) boolean array per step.

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


# nodes: one dense eigendecomposition up to here, scipy's sparse expm_multiply above. Measured (BA graphs, mean
# degree 6, shared 2-core machine): 200 nodes dense 0.68 s / sparse 0.07 s; 1,000: 6.4 s / 0.08 s; 2,000: 44 s / 0.18 s.
DENSE_HEAT_UP_TO = 100


def heat(graph: Graph, seeds, t: float, curve_points: int = 8) -> Estimate:
    """Exact heat at time ``t`` from the seed indicator; the curve samples ``curve_points`` times in [0, t].

    Up to ``DENSE_HEAT_UP_TO`` nodes from the dense ``heat_kernel``; above, ``scipy.sparse.linalg.expm_multiply``
    applies ``expm(-tL)`` to the seed vector without forming it (O(edges) memory; the crossover was
    measured, see the constant; both agree to 1e-14).
    """
    if t < 0:
        raise DataError(f"heat time t must be 0 or more, got {t}")
    x0 = _seed_mask(graph, seeds).double().numpy()
    times = np.linspace(0, t, curve_points + 1)
    if graph.n <= DENSE_HEAT_UP_TO:
        values = heat_kernel(graph, times) @ x0
    else:
        import scipy.sparse as sp
        from scipy.sparse.linalg import expm_multiply

        src, dst = graph.directed_edges()
        adjacency_matrix = sp.csr_matrix((np.ones(len(src)), (src, dst)), shape=(graph.n, graph.n))
        lap = sp.diags(graph.degree.astype(np.float64)) - adjacency_matrix
        if t == 0:
            values = np.repeat(x0[None], len(times), 0)
        else:
            values = expm_multiply(-lap, x0, start=0.0, stop=t, num=len(times), endpoint=True)
    values = np.clip(values, 0.0, 1.0)
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
