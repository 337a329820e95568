"""Graphs for the spread head: generated families and the real networks that ship with networkx.

A graph is a ``Graph``: ``n`` nodes numbered 0..n-1 and ``edges``, an (E, 2) int64 array of
undirected edges with u < v, sorted, no self-loops, no duplicates. ``names`` keeps the original
labels of a real network (for pictures) and the user's node ids of a user's network. ``directed_edges``
gives both directions of every edge in the fixed layout the simulators and the network use: edge i
is (u_i -> v_i) for i < E and (v_i -> u_i) at i + E, so the reverse of directed edge j is ``(j + E) % 2E``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from triad.errors import DataError

REAL_GRAPHS = ("karate_club", "les_miserables", "florentine_families", "davis_southern_women")
USER_PREFIX = "user:"  # a user's own network (data.spread.path) is named user:<file name>


@dataclass
class Neighbours:
    """The graph's directed edges as CSR: node u's neighbours are ``indices[indptr[u]:indptr[u + 1]]``.

    indptr: (n + 1,) int64; indices: (2E,) int64; degree: (n,) int64.
    """

    indptr: np.ndarray
    indices: np.ndarray
    degree: np.ndarray


@dataclass
class Graph:
    """A graph is not changed once made (``neighbours`` is computed once)."""

    n: int
    edges: np.ndarray  # (E, 2) int64, u < v
    name: str = ""
    names: list[str] = field(default_factory=list)

    @property
    def degree(self) -> np.ndarray:
        """(n,) int64 number of neighbours of each node."""
        return np.bincount(self.edges.ravel(), minlength=self.n)

    def directed_edges(self) -> tuple[np.ndarray, np.ndarray]:
        """(src, dst), each (2E,) int64: the forward copies, then the reversed ones."""
        u, v = self.edges[:, 0], self.edges[:, 1]
        return np.concatenate([u, v]), np.concatenate([v, u])

    @cached_property
    def neighbours(self) -> Neighbours:
        """The CSR of ``directed_edges`` by source, built once per graph (a sort: 0.11 s on 2,000,000 directed
        edges, which every simulation of a question's check and fallback would otherwise repeat)."""
        src, dst = self.directed_edges()
        degree = np.bincount(src, minlength=self.n)
        indptr = np.zeros(self.n + 1, dtype=np.int64)
        np.cumsum(degree, out=indptr[1:])
        return Neighbours(indptr, dst[np.argsort(src, kind="stable")], degree)


def canonical_edges(pairs, n: int) -> np.ndarray:
    """Undirected (E, 2) int64 edges with u < v, sorted and unique, from any iterable of pairs.

    Raises ``DataError`` on a node id outside 0..n-1; self-loops are dropped (they never spread).
    """
    array = np.asarray(list(pairs), dtype=np.int64).reshape(-1, 2)
    if array.size and (array.min() < 0 or array.max() >= n):
        raise DataError(f"edge endpoints must be node ids in 0..{n - 1}, got {array.min()}..{array.max()}")
    array = np.sort(array, axis=1)
    array = array[array[:, 0] != array[:, 1]]
    return np.unique(array, axis=0) if len(array) else np.zeros((0, 2), dtype=np.int64)


def from_networkx(nx_graph, name: str) -> Graph:
    """Nodes relabelled 0..n-1 in networkx's node order; their labels kept in ``names``."""
    nodes = list(nx_graph.nodes())
    index = {node: i for i, node in enumerate(nodes)}
    edges = canonical_edges(((index[a], index[b]) for a, b in nx_graph.edges()), len(nodes))
    return Graph(len(nodes), edges, name, [str(node) for node in nodes])


def real_graph(name: str) -> Graph:
    import networkx as nx

    loaders = {
        "karate_club": nx.karate_club_graph,
        "les_miserables": nx.les_miserables_graph,
        "florentine_families": nx.florentine_families_graph,
        "davis_southern_women": nx.davis_southern_women_graph,
    }
    if name not in loaders:
        raise DataError(f"unknown real graph {name!r}; the real graphs are {', '.join(REAL_GRAPHS)}")
    return from_networkx(loaders[name](), name)


def lattice(rows: int, columns: int, diagonals: bool) -> np.ndarray:
    """(E, 2) edges of a rows x columns square lattice (node r * columns + c), with both diagonals if asked."""
    index = np.arange(rows * columns).reshape(rows, columns)
    pairs = [(index[:, :-1], index[:, 1:]), (index[:-1, :], index[1:, :])]
    if diagonals:
        pairs += [(index[:-1, :-1], index[1:, 1:]), (index[:-1, 1:], index[1:, :-1])]
    return np.concatenate([np.stack([a.ravel(), b.ravel()], 1) for a, b in pairs])


def generate(family: str, n: int, mean_degree: float, seed: int) -> Graph:
    """One seeded random graph of ``family`` with ``n`` nodes and about ``mean_degree`` neighbours each.

    Lattices have the rows x columns closest to square with at least ``n`` nodes (so they may have a few more)
    and their own degree (4, or 8 with diagonals). Random geometric graphs: ``n`` points in the unit square,
    joined within radius sqrt(mean_degree / (pi n)). Powerlaw-cluster (Holme-Kim): m = mean_degree / 2 edges per
    new node, each followed by a triangle-closing step with probability 0.3-0.9. Ring lattices: Watts-Strogatz
    with 0-5% of the edges rewired."""
    import networkx as nx

    rng = np.random.default_rng(seed)
    if family in ("grid", "grid_diagonal"):
        rows = max(2, int(round(np.sqrt(n))))
        columns = max(2, int(np.ceil(n / rows)))
        edges = canonical_edges(lattice(rows, columns, family == "grid_diagonal"), rows * columns)
        return Graph(rows * columns, edges, f"{family}_{rows}x{columns}")
    if family == "random_geometric":
        radius = float(np.sqrt(mean_degree / (np.pi * n)))
        g = nx.random_geometric_graph(n, radius, seed=seed)
    elif family == "powerlaw_cluster":
        m = max(1, min(n - 1, round(mean_degree / 2)))
        g = nx.powerlaw_cluster_graph(n, m, float(rng.uniform(0.3, 0.9)), seed=seed)
    elif family == "ring_lattice":
        k = max(2, 2 * round(mean_degree / 2))
        g = nx.watts_strogatz_graph(n, min(k, n - 1), float(rng.uniform(0.0, 0.05)), seed=seed)
    elif family == "erdos_renyi":
        g = nx.gnp_random_graph(n, min(1.0, mean_degree / (n - 1)), seed=seed)
    elif family == "barabasi_albert":
        g = nx.barabasi_albert_graph(n, max(1, min(n - 1, round(mean_degree / 2))), seed=seed)
    elif family == "watts_strogatz":
        k = max(2, 2 * round(mean_degree / 2))
        g = nx.watts_strogatz_graph(n, min(k, n - 1), float(rng.uniform(0.05, 0.3)), seed=seed)
    elif family == "stochastic_block":
        blocks = int(rng.integers(2, 5))
        sizes = np.full(blocks, n // blocks)
        sizes[: n - sizes.sum()] += 1
        # Mean degree split between the own block (80%) and the others (20%).
        size = n / blocks
        p_in = min(1.0, 0.8 * mean_degree / max(size - 1, 1))
        p_out = min(1.0, 0.2 * mean_degree / max(n - size, 1))
        probs = np.full((blocks, blocks), p_out)
        np.fill_diagonal(probs, p_in)
        g = nx.stochastic_block_model(sizes.tolist(), probs.tolist(), seed=seed)
    else:
        raise DataError(f"unknown graph family {family!r}")
    return Graph(n, canonical_edges(g.edges(), n), f"{family}_{n}")
