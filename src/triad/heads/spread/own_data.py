"""A user's networks as edge-list files: read, check, relabel, describe.

One network a file, one undirected edge a line::

    # a comment (a line starting with % is one too, as in KONECT and Network Repository files)
    17 4          whitespace-separated ...
    4,-2          ... or comma-separated
    -2 9 0.75     a third column (a weight, a timestamp) is ignored and counted: the spread model is unweighted

Node ids are integers of any value and order (negative, sparse, large: anything that fits in 64 bits);
they are relabelled 0..n-1 in the order they first appear, and ``EdgeList.ids`` maps back, so every output
names the user's ids. A first line whose fields are all non-numeric (``source,target``) is a header.

Faults, each a ``triad.data.own.Problem`` naming the file and line: a self-loop, a duplicate edge (``u v``
and ``v u`` are the same undirected edge), a non-integer id, a wrong number of columns; and, for a whole
file, a network with fewer than two nodes (no edges), text that is not UTF-8. The reader always drops the
bad lines and records them; the caller settles them with ``on_bad`` (fail: stop with the list; skip: go on
without them). A network in several components is fine: a spread never crosses between components.

Imports numpy and the shared helpers only, so that ``triad predict spread`` checks a file before any heavy
import (``cli.check``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from triad.data.own import Problems
from triad.errors import DataError

SUFFIXES = (".txt", ".csv", ".edges", ".edgelist")
LAYOUT = (
    "one network a file (*.txt, *.csv, *.edges, *.edgelist; a folder of such files for several networks), "
    "one undirected edge a line as two integer node ids 'u v' or 'u,v' (a third column, a weight, is ignored), "
    "'#' comments and blank lines allowed"
)
log = logging.getLogger(__name__)
INT64 = (-(2**63), 2**63 - 1)


@dataclass
class EdgeList:
    """One network as read from ``path``.

    ids:    (n,) the user's node ids (Python ints); internal node i is ``ids[i]`` (order of first appearance).
    edges:  (E, 2) int64 internal node indices, one row per kept edge line, in file order.
    lines:  the edge lines kept; ``dropped`` the bad lines left out; ``weights_ignored`` the lines whose
            third column was ignored; ``header`` the header line, if the file had one.
    """

    path: Path
    name: str
    ids: list[int]
    edges: np.ndarray
    lines: int
    dropped: int = 0
    weights_ignored: int = 0
    header: str | None = None

    @property
    def n(self) -> int:
        return len(self.ids)

    def pairs(self) -> list[list[int]]:
        """The edges as ``[u, v]`` pairs of the user's ids (the served model's request format)."""
        ids = self.ids
        return [[ids[u], ids[v]] for u, v in self.edges.tolist()]


def _integer(word: str) -> int | None:
    try:
        value = int(word)
    except ValueError:
        return None
    return value


def read_edge_list(path: Path, problems: Problems, name: str | None = None) -> EdgeList | None:
    """Read one edge-list file; each fault goes to ``problems`` (with its line) and its line is left out.

    Returns None when nothing usable is left (unreadable, not UTF-8, fewer than two nodes): the whole file is
    a problem then. A self-loop, a duplicate or a malformed line only drops that line.
    """
    path = Path(path)
    name = name or path.name
    try:
        data = path.read_bytes()
    except OSError as exc:
        problems.add(path, f"unreadable: {exc.strerror or exc}")
        return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        problems.add(path, f"not UTF-8 text: byte 0x{data[exc.start]:02x} cannot be decoded; save it as UTF-8", line)
        return None
    index: dict[int, int] = {}
    ids: list[int] = []
    rows: list[tuple[int, int]] = []
    seen: dict[tuple[int, int], int] = {}  # (smaller id, larger id) -> the line that listed it first
    loops: set[int] = set()  # nodes of self-loops, to tell a one-node network from an empty file
    dropped = weights_ignored = 0
    header: str | None = None
    first_content = True
    for number, raw in enumerate(text.splitlines(), 1):
        content = raw.split("#", 1)[0].strip()
        if not content or content.startswith("%"):
            continue
        fields = [f.strip() for f in content.split(",")] if "," in content else content.split()
        was_first, first_content = first_content, False
        values = [_integer(f) for f in fields[:2]]
        if was_first and len(fields) in (2, 3) and all(v is None for v in values) and all(fields[:2]):
            header = content
            continue
        fault = None
        if len(fields) not in (2, 3):
            fault = f"wrong number of columns: expected 'u v' or 'u v weight', got {len(fields)} in {content!r}"
        elif "" in fields[:2]:
            fault = f"empty node id: {content!r} has an empty field"
        else:
            bad = next((f for f, v in zip(fields, values) if v is None), None)
            if bad is not None:
                fault = f"non-integer node id: {bad!r} in {content!r} (node ids are whole numbers such as 17 or -3)"
            elif any(not INT64[0] <= v <= INT64[1] for v in values):
                fault = f"node id out of range: {content!r} (node ids must fit in 64 bits)"
            elif values[0] == values[1]:
                loops.add(values[0])
                fault = f"self-loop: node {values[0]} is linked to itself ({content!r}); a spread never uses it"
            else:
                key = (min(values), max(values))
                if key in seen:
                    fault = (
                        f"duplicate edge: {values[0]}-{values[1]} is already on line {seen[key]} "
                        "('u v' and 'v u' are the same undirected edge)"
                    )
                else:
                    seen[key] = number
        if fault:
            problems.add(path, fault, number)
            dropped += 1
            continue
        if len(fields) == 3:
            weights_ignored += 1
        for value in values:
            if value not in index:
                index[value] = len(ids)
                ids.append(value)
        rows.append((index[values[0]], index[values[1]]))
    if not rows:
        if len(loops) == 1:
            (node,) = loops
            problems.add(path, f"one node: only node {node} (a network needs at least two nodes joined by an edge)")
        else:
            problems.add(path, "no edges: no usable 'u v' line (a network needs at least two nodes joined by an edge)")
        return None
    edges = np.asarray(rows, dtype=np.int64).reshape(-1, 2)
    return EdgeList(path, name, ids, edges, len(rows), dropped, weights_ignored, header)


def network_files(root: Path) -> tuple[list[tuple[Path, str]], list[str]]:
    """(file, network name) for a file, or for every edge-list file under a folder (recursive, sorted), and the
    names of the other files found there (ignored). A network's name is its path relative to the folder."""
    if root.is_file():
        return [(root, root.name)], []
    found, ignored = [], []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        (found if path.suffix.lower() in SUFFIXES else ignored).append((path, rel.as_posix()))
    if not found:
        raise DataError(f"{root} holds no edge-list files. Expected {LAYOUT}.")
    return found, [rel for _, rel in ignored]


def read_networks(root: Path, on_bad: str, what: str) -> tuple[list[EdgeList], Problems, list[str]]:
    """Every network under ``root`` (a file or a folder), its problems settled with ``on_bad``.

    ``fail``: a DataError listing every problem of every file, each with its file and line. ``skip``: the bad
    lines are left out (counted per network), a file with no usable network is left out (``problems.skipped``).
    Returns (networks, problems, ignored file names).
    """
    files, ignored = network_files(root)
    problems = Problems()
    networks = []
    for path, name in files:
        network = read_edge_list(path, problems, name)
        if network is None:
            problems.skipped += 1
        else:
            networks.append(network)
    settle(problems, on_bad, what, "set data.spread.on_bad=skip")
    if not networks:
        raise DataError(f"no usable network in {root}: every file was left out. Expected {LAYOUT}.")
    return networks, problems, ignored


def settle(problems: Problems, on_bad: str, what: str, how_to_skip: str) -> None:
    """``fail``: a DataError listing every problem with its file and line; ``skip``: log them and go on."""
    if on_bad == "fail":
        problems.fail(
            what,
            f"Fix these lines, or {how_to_skip} to leave the bad lines (and unusable files) out; they are counted. "
            "A file that lists each edge in both directions ('u v' and 'v u') is read right that way.",
        )
    elif problems:
        log.warning(
            "left out %d bad line(s) and %d unusable file(s) of %s:\n%s",
            len(problems) - problems.skipped,
            problems.skipped,
            what,
            problems.listing(),
        )


def components(n: int, edges: np.ndarray) -> np.ndarray:
    """(n,) int64 component label of each node (union-find), labels 0..c-1 in order of first node."""
    parent = np.arange(n)

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for u, v in edges.tolist():
        ru, rv = find(u), find(v)
        if ru != rv:
            parent[max(ru, rv)] = min(ru, rv)
    roots = np.array([find(x) for x in range(n)])
    _, labels = np.unique(roots, return_inverse=True)
    return labels.astype(np.int64)


def describe(network: EdgeList) -> dict:
    """The data report's entry for one network: size, degrees, components, clustering, what was left out."""
    import networkx as nx

    degree = np.bincount(network.edges.ravel(), minlength=network.n)
    labels = components(network.n, network.edges)
    sizes = np.bincount(labels)
    graph = nx.Graph()
    graph.add_nodes_from(range(network.n))
    graph.add_edges_from(network.edges.tolist())
    entry = {
        "file": str(network.path),
        "nodes": network.n,
        "edges": len(network.edges),
        "mean_degree": round(float(degree.mean()), 3),
        "max_degree": int(degree.max()),
        "components": int(len(sizes)),
        "largest_component": int(sizes.max()),
        "clustering": round(float(nx.average_clustering(graph)), 4),
        "ids": f"{min(network.ids)}..{max(network.ids)}",
    }
    if network.header:
        entry["header"] = network.header
    if network.weights_ignored:
        entry["weights_ignored"] = network.weights_ignored
    if network.dropped:
        entry["lines_dropped"] = network.dropped
    return entry
