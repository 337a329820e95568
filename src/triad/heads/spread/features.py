"""What kind of question a spread question is: the graph's size, cycles, degree spread and epidemic threshold.

These are the coordinates of the model's *validated range* (``trust.py``): the evaluation measures them on
every held-out question, the registered model stores the span where it met the accuracy bar, and at predict
time the same numbers, computed on the user's graph, say whether the question lies inside. All sparse
(scipy), so they stay cheap on large graphs:

- ``clustering``: the mean local clustering coefficient (networkx's ``average_clustering``: a node of degree
  under 2 counts 0); 0 on trees and square grids, 1 on a complete graph. Triangles per node are
  ``diag(A^3) / 2``, one sparse product ``(A @ A) * A`` (on large graphs, on a sample of nodes).
- ``degree_cv``: the degrees' standard deviation over their mean (0 on a regular graph, above 1 on
  scale-free ones).
- ``critical_p``: the estimated critical transmissibility p_c = 1 / lambda_max(B) of the non-backtracking
  (Hashimoto) matrix B, the bond-percolation / epidemic threshold that message passing predicts
  (Karrer, Newman & Zdeborova, 2014). lambda_max(B) is the largest eigenvalue of the 2n x 2n Ihara-Bass
  matrix ``[[A, I - D], [I, 0]]``, so B's 4E x 4E size is never built. On a complete graph K_n it is
  1 / (n - 2); on a forest (no cycles, no threshold) B is nilpotent and p_c is 1.
- ``criticality``: the question's transmissibility T over p_c (T = p for the independent cascade; for SIR
  and SIS the probability that an infected node ever infects a given neighbour; 0 for heat). Below 1 a
  cascade dies out near its seeds; above 1 it can reach a finite fraction of the graph.

``node_cycle_features`` gives the network its per-node view of cycles (local clustering and triangles).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp

from triad.heads.spread.graphs import Graph

DENSE_EIG_UP_TO = 80  # nodes: below, numpy's dense eigenvalues of the 2n x 2n Ihara-Bass matrix; above, ARPACK
EXACT_WEDGES = 5_000_000  # sum of squared degrees up to which the mean clustering is exact
SAMPLE = 2000  # nodes the mean clustering is estimated on above that
FEATURES = ("nodes", "clustering", "degree_cv", "criticality")  # the validated range's coordinates


@dataclass(frozen=True)
class GraphFeatures:
    nodes: int
    edges: int
    clustering: float
    degree_cv: float
    critical_p: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def adjacency(n: int, src: np.ndarray, dst: np.ndarray) -> sp.csr_matrix:
    """(n, n) float64 CSR with a 1 per directed edge (edges given both ways: symmetric)."""
    return sp.csr_matrix((np.ones(len(src)), (dst, src)), shape=(n, n))


def triangles(a: sp.csr_matrix) -> np.ndarray:
    """(n,) float64 number of triangles through each node: diag(A^3) / 2 = rowsum((A @ A) * A) / 2."""
    return np.asarray((a @ a).multiply(a).sum(1)).ravel() / 2


def mean_clustering(a: sp.csr_matrix, degree: np.ndarray, budget: int = EXACT_WEDGES, sample: int = SAMPLE) -> float:
    """The mean local clustering: exact while the graph has at most ``budget`` wedges-ish (sum of d^2: the
    cost of ``A @ A``), else estimated on ``sample`` nodes drawn with a fixed seed (standard error at most
    0.5 / sqrt(sample), about 0.01), which keeps a 100,000-node, 1,000,000-edge graph under a second."""
    n = a.shape[0]
    if float(degree @ degree) <= budget or n <= sample:
        return float(local_clustering(degree, triangles(a)).mean())
    rows = np.sort(np.random.default_rng(0).choice(n, size=sample, replace=False))
    part = a[rows]
    count = np.asarray((part @ a).multiply(part).sum(1)).ravel() / 2
    return float(local_clustering(degree[rows], count).mean())


def local_clustering(degree: np.ndarray, triangle_count: np.ndarray) -> np.ndarray:
    """(n,) 2 t_v / (d_v (d_v - 1)), 0 where d_v < 2."""
    pairs = degree * (degree - 1) / 2
    return np.where(pairs > 0, triangle_count / np.maximum(pairs, 1), 0.0)


def nonbacktracking_radius(a: sp.csr_matrix, tol: float = 1e-3, max_rounds: int = 200) -> float:
    """lambda_max of the non-backtracking matrix, from the Ihara-Bass matrix ``M = [[A, I - D], [I, 0]]``.

    M's spectrum is B's plus +-1, so its radius is max(lambda_B, 1). Small graphs: numpy's dense eigenvalues.
    Larger: power iteration on M^2 without building M (``M [x; y] = [A x + (1 - d) y; x]``: one sparse product
    per step), M^2 because a bipartite graph (a grid) has -lambda too; it stops when the estimate moves by
    less than ``tol`` (relative) or after ``max_rounds`` (measured: 6 rounds on a 100,000-node Erdos-Renyi
    graph, 60 on a 100 x 100 grid, whose spectrum crowds near the top; there it comes out at most a few
    percent low, so p_c a few percent high)."""
    n = a.shape[0]
    if n == 0 or a.nnz == 0:
        return 1.0
    degree = np.asarray(a.sum(1)).ravel()
    if n <= DENSE_EIG_UP_TO:
        eye = sp.identity(n, format="csr")
        m = sp.bmat([[a, eye - sp.diags(degree)], [eye, None]], format="csr")
        return max(1.0, float(np.abs(np.linalg.eigvals(m.toarray())).max()))
    x = np.random.default_rng(0).random(n) + 0.5
    y = np.random.default_rng(1).random(n) + 0.5
    scale = math.sqrt(float(x @ x + y @ y))
    x, y, estimate = x / scale, y / scale, 0.0
    for _ in range(max_rounds):
        for _ in range(2):
            x, y = a @ x + (1 - degree) * y, x
        norm = math.sqrt(float(x @ x + y @ y))
        updated = math.sqrt(norm)  # the start vector was normalised: ||M^2 v|| ~ lambda^2
        x, y = x / norm, y / norm
        if abs(updated - estimate) <= tol * updated:
            estimate = updated
            break
        estimate = updated
    return max(1.0, estimate)


def graph_features(graph: Graph) -> GraphFeatures:
    src, dst = graph.directed_edges()
    a = adjacency(graph.n, src, dst)
    degree = graph.degree.astype(np.float64)
    mean = float(degree.mean()) if graph.n else 0.0
    return GraphFeatures(
        nodes=graph.n,
        edges=len(graph.edges),
        clustering=mean_clustering(a, degree) if graph.n else 0.0,
        degree_cv=float(degree.std() / mean) if mean > 0 else 0.0,
        critical_p=1.0 / nonbacktracking_radius(a),
    )


def transmissibility(process: str, params: dict[str, float]) -> float:
    """The probability that an infected node ever infects a given neighbour (``model.transmissibility``'s
    formula, for one question): IC ``p``; SIR/SIS ``1 - gamma (1 - beta) / (1 - (1 - gamma)(1 - beta))``;
    heat 0 (no threshold)."""
    if process == "ic":
        return float(params["p"])
    if process == "heat":
        return 0.0
    beta, gamma = float(params["beta"]), float(params["gamma"])
    denominator = 1 - (1 - gamma) * (1 - beta)
    return 1.0 - gamma * (1 - beta) / denominator if denominator > 0 else 0.0


def beta_for(transmissibility_value: float, gamma: float) -> float:
    """The SIR/SIS ``beta`` whose transmissibility with this ``gamma`` is the given value (the inverse of
    ``transmissibility``), clipped to [0, 1]."""
    t = min(max(transmissibility_value, 0.0), 1.0)
    q = (1 - t) / (gamma + (1 - t) * (1 - gamma)) if gamma + (1 - t) * (1 - gamma) > 0 else 0.0
    return min(max(1.0 - q, 0.0), 1.0)


def question_features(features: GraphFeatures, process: str, params: dict[str, float]) -> dict[str, float]:
    """The validated range's coordinates (``FEATURES``) of one question on a graph with these features."""
    return {
        "nodes": float(features.nodes),
        "clustering": features.clustering,
        "degree_cv": features.degree_cv,
        "criticality": transmissibility(process, params) / features.critical_p,
    }


def describe(values: dict[str, float]) -> str:
    """``nodes 400, clustering 0.00, degree_cv 0.10, criticality 1.50`` (p / p_c)."""
    parts = []
    for name in FEATURES:
        value = values[name]
        parts.append(f"{name} {int(value)}" if name == "nodes" else f"{name} {value:.2f}")
    return ", ".join(parts)


def node_cycle_features(n: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(n, 2) float32 per node: local clustering and log(1 + triangles) (a batch's disjoint union is fine:
    triangles never cross between its graphs)."""
    a = adjacency(n, src, dst)
    a.data[:] = 1.0  # a multigraph's repeated edges count once
    degree = np.asarray((a > 0).sum(1)).ravel().astype(np.float64)
    count = triangles(a)
    return np.stack([local_clustering(degree, count), np.log1p(count)], 1).astype(np.float32)
