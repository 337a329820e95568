"""The spread head's evaluation: accuracy against Monte-Carlo, speed, and pictures.

- ``predict``: the network's answer to each question (batched).
- ``accuracy_table``: per-node MAE by process and graph group (larger generated graphs, real
  networks, the user's networks), the DMP prior's MAE on the same nodes, and the error of the expected
  final size.
- ``user_table``: on the user's own networks (``data.spread.path``), one row per question: per-node MAE and
  the expected number of nodes reached, model against simulation, with the seeds as the user's node ids.
  The user's networks count in the gate metric ``test_mae`` like the real networks (see ``head.py``);
  each also gets its own metrics, ``test_user_<network>_{mae,prior_mae,size_model,size_mc}``.
- ``speed_table``: seconds per question for the Monte-Carlo estimate (``samples`` cascades) and for
  one forward pass, on the same questions and one thread each.
- the validated range (``trust.build_range``): per test question its coordinates (size, clustering, degree
  spread, p / p_c) and errors (table ``cases``), and per process the span of the questions that met the
  accuracy bar (``model.spread.trust``; table ``validated_range``, metrics ``validated_<process>_*``), which the
  registered model stores and serves by (``pyfunc.py``).
- pictures: spread over time on a graph (Monte-Carlo per step next to the network's final answer),
  and predicted against simulated probabilities.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from triad.heads.base import Evaluation
from triad.heads.spread import simulate, trust
from triad.heads.spread.batch import Question, make_batch
from triad.heads.spread.config import SpreadModel
from triad.heads.spread.graphs import REAL_GRAPHS, USER_PREFIX, Graph, real_graph
from triad.heads.spread.influence import compare
from triad.heads.spread.model import SpreadGNN, dmp_prior


def predict(
    network: SpreadGNN, questions: list[Question], batch_size: int = 64, iterations: int | None = None
) -> list[np.ndarray]:
    """Each question's (n,) float32 probabilities."""
    answers = []
    for start in range(0, len(questions), batch_size):
        chunk = questions[start : start + batch_size]
        batch = make_batch(chunk)
        values = network.probabilities(batch, iterations).numpy()
        answers += np.split(values, np.cumsum([q.graph.n for q in chunk])[:-1])
    return answers


def prior_answers(questions: list[Question]) -> list[np.ndarray]:
    """The DMP prior alone (no learning) for each question; heat gets the seed indicator."""
    batch = make_batch(questions)
    values = dmp_prior(batch).numpy()
    return np.split(values, np.cumsum([q.graph.n for q in questions])[:-1])


def group(graph: Graph) -> str:
    if graph.name.startswith(USER_PREFIX):
        return "user"
    return "real" if graph.name in REAL_GRAPHS else "generated"


def metric_name(network: str) -> str:
    """A user network's name as part of an MLflow metric name (letters, digits, ``_ . -``)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", network)


def user_table(questions: list[Question], answers: list[np.ndarray], priors: list[np.ndarray]) -> pd.DataFrame:
    """One row per question on a user's network: its process, parameters and seeds (the user's node ids),
    the per-node MAE of the model and of the prior, and the expected number of nodes reached, by the model
    (the sum of its probabilities) and by simulation (the sum of the Monte-Carlo probabilities)."""
    rows = []
    for q, answer, prior in zip(questions, answers, priors):
        if group(q.graph) != "user":
            continue
        labels = q.graph.names or [str(i) for i in range(q.graph.n)]
        size_mc, size_model = float(q.target.sum()), float(answer.sum())
        rows.append(
            {
                "network": q.graph.name.removeprefix(USER_PREFIX),
                "nodes": q.graph.n,
                "edges": len(q.graph.edges),
                "process": q.process,
                "params": ", ".join(f"{k}={v:g}" for k, v in q.params.items() if k in simulate.USES[q.process]),
                "seeds": " ".join(labels[i] for i in q.seeds.tolist()),
                "mae": float(np.abs(answer - q.target).mean()),
                "prior_mae": float(np.abs(prior - q.target).mean()),
                "max_abs_error": float(np.abs(answer - q.target).max()),
                "size_model": size_model,
                "size_mc": size_mc,
                "size_rel_error": abs(size_model - size_mc) / max(size_mc, 1e-9),
            }
        )
    return pd.DataFrame(rows)


def user_metrics(table: pd.DataFrame) -> dict[str, float]:
    """Per user network (means over its questions; the MAE weighs each question's nodes equally)."""
    metrics: dict[str, float] = {}
    if not len(table):
        return metrics
    weights = table["nodes"].astype(float)
    metrics["test_user_mae"] = float((table["mae"] * weights).sum() / weights.sum())
    for network, part in table.groupby("network", sort=True):
        key = f"test_user_{metric_name(network)}"
        metrics[f"{key}_mae"] = float(part["mae"].mean())
        metrics[f"{key}_prior_mae"] = float(part["prior_mae"].mean())
        metrics[f"{key}_size_model"] = float(part["size_model"].mean())
        metrics[f"{key}_size_mc"] = float(part["size_mc"].mean())
    return metrics


def accuracy_table(questions: list[Question], answers: list[np.ndarray], priors: list[np.ndarray]) -> pd.DataFrame:
    """One row per (process, group) and an ``all`` row: questions, nodes, MAE, prior MAE, size error."""
    rows = []
    for q, answer, prior in zip(questions, answers, priors):
        size = float(q.target.sum())
        rows.append(
            {
                "process": q.process,
                "group": group(q.graph),
                "nodes": q.graph.n,
                "abs_error": np.abs(answer - q.target),
                "prior_abs_error": np.abs(prior - q.target),
                "size_rel_error": abs(float(answer.sum()) - size) / max(size, 1e-9),
            }
        )
    frame = pd.DataFrame(rows)

    def summarise(part: pd.DataFrame) -> dict:
        return {
            "questions": len(part),
            "mean_nodes": float(part["nodes"].mean()),
            "mae": float(np.concatenate(list(part["abs_error"])).mean()),
            "prior_mae": float(np.concatenate(list(part["prior_abs_error"])).mean()),
            "final_size_rel_error": float(part["size_rel_error"].mean()),
        }

    table = [{"process": p, "group": g, **summarise(part)} for (p, g), part in frame.groupby(["process", "group"])]
    table.append({"process": "all", "group": "all", **summarise(frame)})
    return pd.DataFrame(table)


def _seconds(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def speed_table(
    network: SpreadGNN, questions: list[Question], samples: int, per_process: int, seed: int = 0, rounds: int = 3
) -> pd.DataFrame:
    """Seconds per question: Monte-Carlo (``samples`` cascades; heat: its exact kernel) against the
    network, one question per forward pass (``model_seconds``) and all of them in one batch
    (``model_batched_seconds``), on up to ``per_process`` of the largest questions per process.

    The three take turns for ``rounds`` rounds and each figure is the median over the rounds, so
    a slow spell of a shared machine lands on all of them rather than on one."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    with simulate.one_thread():
        for process in sorted({q.process for q in questions}):
            chosen = sorted((q for q in questions if q.process == process), key=lambda q: -q.graph.n)[:per_process]
            predict(network, chosen[:1])  # warm-up
            timings = {"reference": [], "model": [], "batched": []}
            for _ in range(rounds):
                timings["reference"].append(
                    _seconds(
                        lambda: [
                            simulate.run(q.process, q.graph, q.seeds, q.params, samples, generator) for q in chosen
                        ]
                    )
                )
                timings["model"].append(_seconds(lambda: [predict(network, [q]) for q in chosen]))
                timings["batched"].append(_seconds(lambda: predict(network, chosen)))
            simulation, model, batched = (
                float(np.median(timings[k])) / len(chosen) for k in ("reference", "model", "batched")
            )
            rows.append(
                {
                    "process": process,
                    "questions": len(chosen),
                    "mean_nodes": float(np.mean([q.graph.n for q in chosen])),
                    "reference": "heat kernel (eigh)" if process == "heat" else f"Monte-Carlo, {samples} cascades",
                    "reference_seconds": simulation,
                    "model_seconds": model,
                    "speedup": simulation / model,
                    "model_batched_seconds": batched,
                    "speedup_batched": simulation / batched,
                }
            )
    return pd.DataFrame(rows)


def plot_spread_over_time(
    graph: Graph,
    runs: list[tuple[str, list[int], dict[str, float]]],
    network: SpreadGNN,
    path: Path,
    samples: int = 2000,
    seed: int = 0,
) -> Path:
    """One row per (process, seeds, params) run: P(reached by step s) from Monte-Carlo at a few
    steps, the final Monte-Carlo answer, and the network's answer; seeds circled in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import networkx as nx

    nx_graph = nx.Graph()
    nx_graph.add_nodes_from(range(graph.n))
    nx_graph.add_edges_from(graph.edges.tolist())
    layout = nx.spring_layout(nx_graph, seed=seed)
    columns = 6
    fig, axes = plt.subplots(len(runs), columns, figsize=(2.6 * columns, 2.8 * len(runs)), squeeze=False)
    for row, (process, seeds, params) in zip(axes, runs):
        with simulate.one_thread():
            estimate = simulate.run(process, graph, seeds, params, samples, torch.Generator().manual_seed(seed))
        last = len(estimate.curve) - 1
        steps = [s for s in (0, 1, 2, 3) if s < last][: columns - 2]
        panels = [(f"step {s}", estimate.curve[s]) for s in steps] + [(f"final (step {last})", estimate.curve[last])]
        panels.append(("network", predict(network, [Question(graph, np.asarray(seeds), process, params)])[0]))
        described = ", ".join(f"{k}={v:g}" for k, v in params.items())
        for ax, (title, values) in zip(row, panels):
            nx.draw_networkx_edges(nx_graph, layout, ax=ax, alpha=0.25, width=0.6)
            nodes = nx.draw_networkx_nodes(
                nx_graph, layout, ax=ax, node_size=40, node_color=values, cmap="viridis", vmin=0, vmax=1
            )
            nx.draw_networkx_nodes(
                nx_graph,
                layout,
                nodelist=list(seeds),
                ax=ax,
                node_size=70,
                node_color="none",
                edgecolors="red",
                linewidths=1.5,
            )
            ax.set_title(f"{process} ({described}): {title}" if title.startswith("step 0") else title, fontsize=8)
        for ax in row:
            ax.axis("off")
    fig.colorbar(nodes, ax=axes, shrink=0.6, label="P(reached)")
    fig.suptitle(f"Spread over time on {graph.name}: Monte-Carlo ({samples} runs) per step, then the network")
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_predicted_vs_simulated(questions: list[Question], answers: list[np.ndarray], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for process in sorted({q.process for q in questions}):
        pairs = [(q.target, a) for q, a in zip(questions, answers) if q.process == process]
        ax.scatter(
            np.concatenate([t for t, _ in pairs]), np.concatenate([a for _, a in pairs]), s=4, alpha=0.4, label=process
        )
    ax.plot([0, 1], [0, 1], color="black", linewidth=0.8)
    ax.set_xlabel("Monte-Carlo probability (test)")
    ax.set_ylabel("network's probability")
    ax.legend()
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path


SPEED_QUESTIONS_PER_PROCESS = 4


def range_frame(validated: dict) -> pd.DataFrame:
    """The validated range as a table: one row per process, ``<feature>_low``/``_high``, counts and errors."""
    rows = []
    for process, entry in validated.items():
        row = {"process": process, "cases": entry["cases"], "passed": entry["passed"]}
        for name, (low, high) in entry.get("range", {}).items():
            row[f"{name}_low"], row[f"{name}_high"] = low, high
        row |= {key: entry.get(key) for key in ("failed_inside", *trust.ERRORS)}
        rows.append(row)
    return pd.DataFrame(rows)


def validated_range(network: SpreadGNN, test: list[Question], cfg: SpreadModel) -> dict:
    """``trust.build_range`` of the network on the held-out questions (what the registered model stores)."""
    answers = predict(network, test, iterations=cfg.eval_iterations)
    return trust.build_range(trust.case_table(test, answers), cfg.trust)


def evaluate(
    network: SpreadGNN, test: list[Question], cfg: SpreadModel, test_samples: int, seed: int, report_dir: Path
) -> Evaluation:
    """The spread head's evaluation on the held-out ``test`` questions: per-node accuracy against the
    Monte-Carlo answers (and the prior's), speed against simulation, influence maximisation against
    greedy Monte-Carlo, and two pictures written to ``report_dir``.

    The user's networks (if any) count in the accuracy, and get their own table and metrics; speed and
    influence stay on the built-in graphs, so that their cost and their figures do not depend on the
    size of the user's networks (greedy Monte-Carlo runs ``greedy_samples`` cascades per node and seed)."""
    iterations = cfg.eval_iterations
    answers = predict(network, test, iterations=iterations)
    priors = prior_answers(test)
    accuracy = accuracy_table(test, answers, priors)
    built_in = [q for q in test if group(q.graph) != "user"] or test
    speed = speed_table(network, built_in, test_samples, SPEED_QUESTIONS_PER_PROCESS, seed)
    metrics: dict[str, float] = {}
    for row in accuracy.itertuples():
        key = "test" if row.process == "all" else f"test_{row.process}_{row.group}"
        metrics[f"{key}_mae"] = row.mae
        metrics[f"{key}_prior_mae"] = row.prior_mae
        metrics[f"{key}_final_size_rel_error"] = row.final_size_rel_error
    stochastic = speed[speed.process != "heat"]
    if len(stochastic):
        metrics["mc_seconds_per_question"] = float(stochastic.reference_seconds.mean())
        metrics["model_seconds_per_question"] = float(stochastic.model_seconds.mean())
        metrics["speedup"] = metrics["mc_seconds_per_question"] / metrics["model_seconds_per_question"]
        metrics["speedup_batched"] = metrics["mc_seconds_per_question"] / float(stochastic.model_batched_seconds.mean())
    im_cfg = cfg.influence
    im_graph = max(built_in, key=lambda q: q.graph.n).graph if im_cfg.graph == "test" else real_graph(im_cfg.graph)
    influence, im_metrics = compare(network, im_graph, im_cfg, seed)
    metrics |= im_metrics
    karate = real_graph("karate_club")
    images = [
        plot_spread_over_time(
            karate,
            [("ic", [0], {"p": 0.2}), ("sir", [33], {"beta": 0.15, "gamma": 0.4})],
            network,
            report_dir / "spread_over_time.png",
        ),
        plot_predicted_vs_simulated(test, answers, report_dir / "predicted_vs_simulated.png"),
    ]
    cases = trust.case_table(test, answers)
    validated = trust.build_range(cases, cfg.trust)
    metrics |= trust.range_metrics(validated)
    tables = {"accuracy": accuracy, "speed": speed, "influence": influence}
    tables |= {"cases": cases, "validated_range": range_frame(validated)}
    users = user_table(test, answers, priors)
    if len(users):
        metrics |= user_metrics(users)
        tables["user_networks"] = users
    return Evaluation(metrics=metrics, images=images, tables=tables)
