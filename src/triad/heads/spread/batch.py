"""Many (graph, seeds, process) questions as one disjoint-union graph, the network's input.

A ``Question`` is one graph with one seed set, one process and its parameters (and, for training,
the target probability of every node). ``make_batch`` glues questions into a ``GraphBatch`` whose
nodes are numbered consecutively, question after question, so one message-passing pass answers all.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from triad.heads.spread.graphs import Graph
from triad.heads.spread.simulate import PARAMS, PROCESSES


@dataclass
class Question:
    graph: Graph
    seeds: np.ndarray  # (k,) int64 node ids
    process: str
    params: dict[str, float]
    target: np.ndarray | None = None  # (n,) probabilities


@dataclass
class GraphBatch:
    """N nodes and M directed edges over B questions.

    src, dst, rev: (M,) int64 directed edges; ``rev[j]`` is the index of the reverse of edge j.
    seed:          (N,) float32, 1 on seed nodes.
    process:       (N,) int64 index into ``PROCESSES`` (the question's process, on each of its nodes).
    params:        (N, 4) float32 the question's ``PARAMS`` on each of its nodes.
    node_graph:    (N,) int64 question index of each node.
    target:        (N,) float32 or None.
    """

    src: torch.Tensor
    dst: torch.Tensor
    rev: torch.Tensor
    seed: torch.Tensor
    process: torch.Tensor
    params: torch.Tensor
    node_graph: torch.Tensor
    n_graphs: int
    target: torch.Tensor | None = None

    @property
    def n_nodes(self) -> int:
        return int(self.seed.shape[0])

    @cached_property
    def by_source(self) -> tuple[np.ndarray, np.ndarray]:
        """(order, indptr): ``order`` (M,) int64 puts the edges grouped by source (stable), and node u's
        edges are ``order[indptr[u]:indptr[u + 1]]`` (indptr (N + 1,) int64). Computed once per batch:
        the DMP prior and the mean adjacency both read it."""
        src = self.src.numpy()
        indptr = np.zeros(self.n_nodes + 1, dtype=np.int64)
        np.cumsum(np.bincount(src, minlength=self.n_nodes), out=indptr[1:])
        return np.argsort(src, kind="stable"), indptr


def make_batch(questions: list[Question]) -> GraphBatch:
    src, dst, rev, seed, process, params, node_graph, target = [], [], [], [], [], [], [], []
    node_offset = edge_offset = 0
    for i, q in enumerate(questions):
        n, e = q.graph.n, len(q.graph.edges)
        s, d = q.graph.directed_edges()
        src.append(s + node_offset)
        dst.append(d + node_offset)
        rev.append((np.arange(2 * e) + e) % max(2 * e, 1) + edge_offset)
        mask = np.zeros(n, dtype=np.float32)
        mask[np.asarray(q.seeds, dtype=np.int64)] = 1.0
        seed.append(mask)
        process.append(np.full(n, PROCESSES.index(q.process), dtype=np.int64))
        params.append(np.tile(np.array([q.params.get(k, 0.0) for k in PARAMS], dtype=np.float32), (n, 1)))
        node_graph.append(np.full(n, i, dtype=np.int64))
        if q.target is not None:
            target.append(np.asarray(q.target, dtype=np.float32))
        node_offset += n
        edge_offset += 2 * e
    as_long = lambda parts: torch.from_numpy(np.concatenate(parts).astype(np.int64, copy=False))  # noqa: E731
    return GraphBatch(
        src=as_long(src),
        dst=as_long(dst),
        rev=as_long(rev),
        seed=torch.from_numpy(np.concatenate(seed)),
        process=as_long(process),
        params=torch.from_numpy(np.concatenate(params)),
        node_graph=as_long(node_graph),
        n_graphs=len(questions),
        target=torch.from_numpy(np.concatenate(target)) if len(target) == len(questions) else None,
    )
