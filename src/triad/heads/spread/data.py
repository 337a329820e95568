"""The spread head's data step: draw graphs and questions, simulate the answers, write, load.

Splits: ``train`` and ``val`` on small generated graphs, ``test`` on larger generated graphs (of
the same families, held out) plus the real networks, plus the user's own networks where
``data.spread.path`` names them (``conf/data/spread/edge_list.yaml``; read by ``edge_list``). Each graph
gets ``examples_per_graph`` questions, cycling through the processes, with parameters drawn uniformly
from their ranges and 1..``max_seeds`` random seed nodes. The answers are Monte-Carlo estimates
(``train_samples`` cascades for train/val, ``test_samples`` for test) with their standard errors; heat is exact.
A user's network draws its questions from a seed made of its own name, so adding or removing another
network never changes them; the generated and real graphs' questions do not depend on the user's networks.

Files per split (``.npy``, byte-identical for the same config): ``<split>_nodes`` (G,) nodes per
graph, ``<split>_edges`` (sum E, 2) and ``<split>_edge_counts`` (G,), ``<split>_graph`` (X,) graph of
each question, ``<split>_process`` (X,), ``<split>_params`` (X, 4), ``<split>_seeds`` (X, max_seeds)
padded with -1, ``<split>_target`` and ``<split>_se`` (sum of the questions' n,) float32; and
``meta.json`` (graph names, processes, sizes). With user networks, also ``user_ids.npy`` (sum of their n,)
int64: the user's node id of each node of each user network (in ``meta.json``'s ``user_networks`` order),
and the data report (``data_report.{json,md}``).
"""

from __future__ import annotations

import hashlib
import json
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from triad.data.own import REPORT_MD, own_path, report_markdown, write_report
from triad.errors import DataError
from triad.heads.spread import simulate
from triad.heads.spread.batch import Question, make_batch
from triad.heads.spread.config import SpreadData
from triad.heads.spread.features import beta_for, graph_features
from triad.heads.spread.graphs import USER_PREFIX, Graph, canonical_edges, generate, real_graph
from triad.heads.spread.own_data import LAYOUT, EdgeList, describe, read_networks
from triad.resumable import ResumableLoader

SPLITS = ("train", "val", "test")


def draw_graphs(cfg: SpreadData, split: str, rng: np.random.Generator) -> list[Graph]:
    count = {"train": cfg.train_graphs, "val": cfg.val_graphs, "test": cfg.test_graphs}[split]
    sizes = cfg.test_nodes if split == "test" else cfg.train_nodes
    graphs = []
    for i in range(count):
        family = cfg.families[i % len(cfg.families)]
        n = int(rng.integers(int(sizes.low), int(sizes.high) + 1))
        graphs.append(
            generate(
                family, n, float(rng.uniform(cfg.mean_degree.low, cfg.mean_degree.high)), seed=int(rng.integers(2**31))
            )
        )
    if split == "test":
        graphs += [real_graph(name) for name in cfg.real_graphs]
    return graphs


def draw_params(
    cfg: SpreadData, process: str, rng: np.random.Generator, critical_p: float | None = None
) -> dict[str, float]:
    """A question's parameters: uniform in their ranges, or (``cfg.criticality`` and the graph's ``critical_p``
    given) with the transmissibility T = r * p_c for r uniform in ``cfg.criticality``, clipped to the ranges."""
    uniform = lambda r: float(rng.uniform(r.low, r.high))  # noqa: E731
    clip = lambda value, r: float(min(max(value, r.low), r.high))  # noqa: E731
    relative = cfg.criticality is not None and critical_p is not None
    if process == "ic":
        return {"p": clip(uniform(cfg.criticality) * critical_p, cfg.ic_p) if relative else uniform(cfg.ic_p)}
    if process == "heat":
        return {"t": uniform(cfg.heat_t)}
    gamma = uniform(cfg.sir_gamma)
    beta = clip(beta_for(uniform(cfg.criticality) * critical_p, gamma), cfg.sir_beta) if relative else None
    params = {"beta": uniform(cfg.sir_beta) if beta is None else beta, "gamma": gamma}
    if process == "sis":
        params["t"] = float(cfg.sis_horizon)
    return params


def ask(
    cfg: SpreadData, graph: Graph, first: int, samples: int, rng: np.random.Generator, generator: torch.Generator
) -> tuple[list[Question], list[np.ndarray]]:
    """``examples_per_graph`` questions on ``graph`` (processes cycled from position ``first``), answered by
    simulation, and each answer's standard errors."""
    questions, errors = [], []
    critical_p = graph_features(graph).critical_p if cfg.criticality is not None else None
    for i in range(cfg.examples_per_graph):
        process = cfg.processes[(first + i) % len(cfg.processes)]
        params = draw_params(cfg, process, rng, critical_p)
        k = int(rng.integers(1, min(cfg.max_seeds, graph.n) + 1))
        seeds = np.sort(rng.choice(graph.n, size=k, replace=False)).astype(np.int64)
        estimate = simulate.run(process, graph, seeds, params, samples, generator, cfg.max_steps)
        questions.append(Question(graph, seeds, process, params, estimate.mean.astype(np.float32)))
        errors.append(estimate.se.astype(np.float32))
    return questions, errors


def user_graph(network: EdgeList) -> Graph:
    """A user's network as a ``Graph`` named ``user:<name>``, its node labels the user's ids."""
    edges = canonical_edges(network.edges.tolist(), network.n)
    return Graph(network.n, edges, USER_PREFIX + network.name, [str(i) for i in network.ids])


def name_seed(name: str) -> int:
    """A seed from a network's name alone (the first 4 bytes of its sha256)."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:4], "big")


def simulate_split(
    cfg: SpreadData, split: str, user: list[Graph] = ()
) -> tuple[list[Graph], list[Question], list[np.ndarray]]:
    """The split's graphs, its questions with Monte-Carlo targets, and each target's standard errors.

    ``user`` graphs (the test split only) come last, each with questions seeded by its own name.
    """
    index = SPLITS.index(split)
    rng = np.random.default_rng([cfg.split_seed, index])
    generator = torch.Generator().manual_seed(cfg.split_seed * 1000 + index)
    samples = cfg.test_samples if split == "test" else cfg.train_samples
    graphs = draw_graphs(cfg, split, rng)
    questions, errors = [], []
    for g, graph in enumerate(graphs):
        asked, se = ask(cfg, graph, g * cfg.examples_per_graph, samples, rng, generator)
        questions += asked
        errors += se
    for graph in user:
        seed = name_seed(graph.name)
        own_rng = np.random.default_rng([cfg.split_seed, index, seed])
        asked, se = ask(cfg, graph, 0, samples, own_rng, torch.Generator().manual_seed(cfg.split_seed * 1000 + seed))
        questions += asked
        errors += se
    return graphs + list(user), questions, errors


def write_split(
    folder: Path, split: str, graphs: list[Graph], questions: list[Question], errors: list[np.ndarray], max_seeds: int
) -> None:
    position = {id(g): i for i, g in enumerate(graphs)}
    seeds = np.full((len(questions), max_seeds), -1, dtype=np.int64)
    for i, q in enumerate(questions):
        seeds[i, : len(q.seeds)] = q.seeds
    arrays = {
        "nodes": np.array([g.n for g in graphs], dtype=np.int64),
        "edges": np.concatenate([g.edges for g in graphs]).astype(np.int64),
        "edge_counts": np.array([len(g.edges) for g in graphs], dtype=np.int64),
        "graph": np.array([position[id(q.graph)] for q in questions], dtype=np.int64),
        "process": np.array([simulate.PROCESSES.index(q.process) for q in questions], dtype=np.int64),
        "params": np.array([[q.params.get(k, 0.0) for k in simulate.PARAMS] for q in questions], dtype=np.float64),
        "seeds": seeds,
        "target": np.concatenate([q.target for q in questions]).astype(np.float32),
        "se": np.concatenate(errors).astype(np.float32),
    }
    for name, array in arrays.items():
        np.save(folder / f"{split}_{name}.npy", array)


def read_user_networks(cfg: SpreadData) -> tuple[list[EdgeList], dict[str, Any]]:
    """The user's networks (``data.spread.path``: a file or a folder), checked, and the data report's start."""
    root = own_path(cfg.path, "data.spread.path", LAYOUT)
    networks, problems, ignored = read_networks(root, cfg.on_bad, f"the networks under data.spread.path={cfg.path}")
    report: dict[str, Any] = {
        "source": "edge_list",
        "path": str(root),
        "use": "held-out test networks: the model trains on generated graphs and is scored on these against "
        f"Monte-Carlo ({cfg.test_samples} cascades per question, {cfg.examples_per_graph} questions per network)",
        "networks": {network.name: describe(network) for network in networks},
        "problems": problems.as_report(),
        "skipped": problems.skipped,
    }
    if ignored:
        report["ignored_files"] = ignored
    disconnected = [name for name, entry in report["networks"].items() if entry["components"] > 1]
    if disconnected:
        report["note"] = (
            f"{', '.join(disconnected)}: more than one component, which is fine: a spread never crosses between "
            "components, so nodes outside the seeds' component have probability 0"
        )
    return networks, report


NETWORK_COLUMNS = ("nodes", "edges", "mean_degree", "max_degree", "components", "largest_component", "clustering")


def report_markdown_with_networks(report: dict[str, Any]) -> str:
    """The shared data report, with the networks as a table (one row per network) instead of a dict."""
    text = report_markdown({k: v for k, v in report.items() if k != "networks"})
    head, problems = text.split("\nProblems: ", 1)
    lines = ["## Your networks", "", "| network | " + " | ".join(NETWORK_COLUMNS) + " | ids | notes |"]
    lines.append("|---|" + "---:|" * len(NETWORK_COLUMNS) + "---|---|")
    for name, entry in report["networks"].items():
        notes = "; ".join(
            f"{key.replace('_', ' ')}: {entry[key]}"
            for key in ("header", "weights_ignored", "lines_dropped")
            if key in entry
        )
        cells = [str(entry[key]) for key in NETWORK_COLUMNS] + [entry["ids"], notes]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return head + "\n" + "\n".join(lines) + "\n\nProblems: " + problems


def prepare(cfg: SpreadData, out_dir: Path) -> dict[str, Any]:
    networks, report = read_user_networks(cfg) if cfg.path else ([], None)  # the user's files first: fail fast
    user = [user_graph(network) for network in networks]
    meta: dict[str, Any] = {"processes": list(cfg.processes), "params": list(simulate.PARAMS), "splits": {}}
    for split in SPLITS:
        with simulate.one_thread():
            graphs, questions, errors = simulate_split(cfg, split, user if split == "test" else [])
        if not questions:
            raise DataError(f"the {split} split has no questions; raise data.spread.{split}_graphs above 0")
        write_split(out_dir, split, graphs, questions, errors, cfg.max_seeds)
        meta["splits"][split] = {
            "graphs": [g.name for g in graphs],
            "questions": len(questions),
            "nodes": [int(g.n) for g in graphs],
            "max_se": float(max(e.max() for e in errors)),
        }
    if user:
        meta["user_networks"] = [g.name for g in user]
        np.save(out_dir / "user_ids.npy", np.array([i for n in networks for i in n.ids], dtype=np.int64))
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    summary = {
        split: {
            "graphs": len(info["graphs"]),
            "questions": info["questions"],
            "max_nodes": max(info["nodes"]),
            "max_se": round(info["max_se"], 4),
        }
        for split, info in meta["splits"].items()
    }
    if report is not None:
        built_in_test = cfg.test_graphs + len(cfg.real_graphs)
        report["counts"] = {  # graphs per split, the rows of the data report's table (and of MLflow's dataset)
            "generated graphs": {"train": cfg.train_graphs, "val": cfg.val_graphs, "test": cfg.test_graphs},
            "built-in real networks": {"train": 0, "val": 0, "test": len(cfg.real_graphs)},
            "your networks": {"train": 0, "val": 0, "test": len(user)},
        }
        report["questions"] = {split: summary[split]["questions"] for split in SPLITS}
        report["test_questions_on_your_networks"] = len(user) * cfg.examples_per_graph
        write_report(out_dir, report)
        (out_dir / REPORT_MD).write_text(report_markdown_with_networks(report))
        summary["user_networks"] = len(user)
        summary["built_in_test_graphs"] = built_in_test
    return summary


def load_split(data_dir: Path, split: str) -> tuple[list[Question], list[np.ndarray]]:
    """The questions of a prepared split (targets included) and their standard errors."""
    try:
        a = {
            name: np.load(data_dir / f"{split}_{name}.npy")
            for name in ("nodes", "edges", "edge_counts", "graph", "process", "params", "seeds", "target", "se")
        }
        meta = json.loads((data_dir / "meta.json").read_text())
    except (OSError, ValueError) as exc:
        raise DataError(
            f"{data_dir} holds no readable {split} split ({exc}); rerun `triad stage prepare spread`."
        ) from None
    names = meta["splits"][split]["graphs"]
    bounds = np.concatenate([[0], np.cumsum(a["edge_counts"])])
    graphs = [Graph(int(n), a["edges"][bounds[i] : bounds[i + 1]], names[i]) for i, n in enumerate(a["nodes"])]
    if split == "test" and meta.get("user_networks"):
        _label_user_graphs(graphs, meta["user_networks"], np.load(data_dir / "user_ids.npy"))
    questions, errors, offset = [], [], 0
    for i, g in enumerate(a["graph"]):
        graph = graphs[g]
        params = {k: float(v) for k, v in zip(simulate.PARAMS, a["params"][i])}
        seeds = a["seeds"][i][a["seeds"][i] >= 0]
        target = a["target"][offset : offset + graph.n]
        questions.append(Question(graph, seeds, simulate.PROCESSES[a["process"][i]], params, target))
        errors.append(a["se"][offset : offset + graph.n])
        offset += graph.n
    if offset != len(a["target"]):
        raise DataError(f"{data_dir}: {split} targets do not match its graphs; rerun `triad stage prepare spread`.")
    return questions, errors


def _label_user_graphs(graphs: list[Graph], user_names: list[str], ids: np.ndarray) -> None:
    """Give each user network its node labels (the user's ids, as strings), from ``user_ids.npy``."""
    by_name = {g.name: g for g in graphs}
    offset = 0
    for name in user_names:
        graph = by_name[name]
        graph.names = [str(i) for i in ids[offset : offset + graph.n].tolist()]
        offset += graph.n


class SpreadDataModule(L.LightningDataModule):
    """Batches of questions (``GraphBatch``) from a prepared folder; the test split keeps its errors."""

    def __init__(self, data_dir: Path, batch_size: int, num_workers: int = 0, seed: int = 0):
        super().__init__()
        self.data_dir, self.batch_size, self.num_workers, self.seed = Path(data_dir), batch_size, num_workers, seed
        self.train, _ = load_split(self.data_dir, "train")
        self.val, _ = load_split(self.data_dir, "val")
        self.test, self.test_se = load_split(self.data_dir, "test")

    def _loader(self, questions: list[Question], shuffle: bool) -> DataLoader:
        kind = partial(ResumableLoader, seed=self.seed) if shuffle else DataLoader
        return kind(questions, batch_size=self.batch_size, collate_fn=make_batch, num_workers=self.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test, shuffle=False)
