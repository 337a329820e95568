"""Config schema of the spread head: ``cfg.data.spread`` and ``cfg.model.spread``.

The schema holds types, bounds and what each key means; ``conf/`` sets every value. The default
profile (``conf/data/spread/mixed_graphs.yaml`` and ``conf/model/spread/small.yaml``) is small generated
graphs for training, larger generated graphs and three real networks for testing, thousands of
Monte-Carlo cascades per example, and a small message-passing network that trains in about a minute
on two CPU cores.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from triad.schema import DataKeys, OptimConfig, StrictModel

Process = Literal["ic", "sir", "sis", "heat"]
Family = Literal[
    "erdos_renyi",
    "barabasi_albert",
    "watts_strogatz",
    "stochastic_block",
    "grid",  # 2-D square lattice (4 neighbours; mean_degree is ignored)
    "grid_diagonal",  # 2-D lattice with both diagonals (8 neighbours, king's moves; mean_degree ignored)
    "random_geometric",  # points in the unit square joined within the radius that gives mean_degree
    "powerlaw_cluster",  # Holme-Kim: preferential attachment plus triangle closing (clustered, heavy-tailed)
    "ring_lattice",  # Watts-Strogatz with little rewiring (0-5%): long cycles and many triangles
]
RealGraph = Literal["karate_club", "les_miserables", "florentine_families", "davis_southern_women"]


class Range(StrictModel):
    """A closed interval ``[low, high]`` that parameters are drawn from uniformly."""

    low: float
    high: float

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")
        return self


class SpreadData(DataKeys):
    """Which graphs and processes, and how many Monte-Carlo cascades estimate each answer.

    Every example is (graph, process, parameters, seed set) -> each node's probability of being
    reached, estimated from ``*_samples`` simulations (the heat process is exact). Training and
    validation graphs have ``train_nodes`` nodes; test graphs have ``test_nodes`` (larger, so the
    test measures generalisation to bigger graphs) plus the ``real_graphs``, plus the user's own
    networks where ``path`` names an edge-list file or a folder of them (``conf/data/spread/edge_list.yaml``):
    held-out test networks with ``examples_per_graph`` questions each, answered with ``test_samples`` cascades.

    Process parameters: ``ic_p`` (independent cascade edge probability), ``sir_beta`` and
    ``sir_gamma`` (per-step infection and recovery probabilities, also for SIS), ``sis_horizon``
    (SIS steps; a node counts as reached if infected within them), ``heat_t`` (heat-kernel time).
    """

    processes: list[Process] = Field(min_length=1)  # cycled through, question by question
    families: list[Family] = Field(min_length=1)  # generated graphs cycle through these
    real_graphs: list[RealGraph]  # networkx's real networks, added to the test split
    train_graphs: int = Field(ge=1)
    val_graphs: int = Field(ge=1)
    test_graphs: int = Field(ge=0)  # generated test graphs (the real graphs come on top)
    train_nodes: Range  # nodes per training and validation graph
    test_nodes: Range  # nodes per generated test graph
    mean_degree: Range
    examples_per_graph: int = Field(ge=1)  # (process, parameters, seed set) draws per graph
    max_seeds: int = Field(ge=1)  # each question has 1 .. max_seeds seed nodes
    train_samples: int = Field(ge=10)  # Monte-Carlo cascades per training/validation example
    test_samples: int = Field(ge=10)  # ... per test example (the ground truth the targets name)
    ic_p: Range
    # Transmissibility over each graph's estimated critical point (features.py: 1 / lambda_max of the
    # non-backtracking matrix); when set, each IC question's p, and each SIR/SIS question's beta (given its
    # gamma), is drawn so that T / p_c is uniform in this range (clipped to ic_p / sir_beta), so that sub-critical,
    # critical and super-critical regimes are all covered on every family. null: p and beta uniform in their ranges.
    criticality: Range | None
    sir_beta: Range
    sir_gamma: Range
    sis_horizon: int = Field(ge=1)
    heat_t: Range
    max_steps: int = Field(ge=1)  # cap on simulated steps (IC and SIR end earlier)
    split_seed: int  # seeds the graphs, the questions and the simulations

    @field_validator("raw", mode="before")
    @classmethod
    def _path_given(cls, raw):
        """``data/spread=edge_list`` without ``data.spread.path`` (``???``, so ``raw: ${.path}`` is null too)."""
        if raw is None:
            raise ValueError(
                "data.spread.path is not set: point it at your edge-list file or folder of them, "
                "e.g. data.spread.path=/path/to/networks"
            )
        return raw

    @model_validator(mode="after")
    def _probabilities_in_range(self) -> SpreadData:
        for name in ("ic_p", "sir_beta", "sir_gamma"):
            value = getattr(self, name)
            if not 0 <= value.low <= value.high <= 1:
                raise ValueError(f"{name} must lie within [0, 1], got [{value.low}, {value.high}]")
        if self.train_nodes.low < 3 or self.heat_t.low < 0:
            raise ValueError("train_nodes must start at 3 or more nodes and heat_t at 0 or more")
        return self


class InfluenceConfig(StrictModel):
    """Influence maximisation in the evaluation: choose ``k`` seeds for an independent cascade.

    Three choosers on the same graph: greedy with the learned model, greedy with Monte-Carlo
    (``greedy_samples`` cascades per candidate; 10,000 as in Kempe, Kleinberg & Tardos, 2003, and as
    in the accuracy reference) and the highest-degree nodes. Each chosen set is then scored with
    ``score_samples`` cascades.
    """

    # test: the largest built-in test graph (never a user's network: greedy Monte-Carlo costs n * k * greedy_samples)
    graph: Literal["test", "karate_club", "les_miserables", "florentine_families"]
    k: int = Field(ge=1)
    p: float = Field(gt=0, le=1)  # the cascade's edge probability
    greedy_samples: int = Field(ge=10)
    score_samples: int = Field(ge=10)


class TrustConfig(StrictModel):
    """When the served model answers, when it simulates, and the accuracy bar of its validated range (trust.py).

    max_mae, max_size_rel_error: the accuracy bar: a held-out question is *validated* when the network's
                 per-node MAE and its expected-size relative error against Monte-Carlo are within these; the
                 validated range is the span of the validated questions' graph size, clustering, degree
                 spread and distance to the critical point. The check applies the same bars.
    check_samples: cascades of the cheap check run on every question inside the range (0: no check).
    check_z:     the check's own Monte-Carlo noise allowed for, in standard errors of its expected size.
    fallback_samples: cascades when the answer is simulated instead (fewer if max_seconds allows fewer).
    max_seconds: simulation time per question (check and fallback; a timed pilot estimates how many cascades
                 fit): a question on which not even check_samples cascades fit is not simulated (outside the
                 range: the network's answer, flagged, with an error estimate).
    heat_max_nodes: heat is checked or answered exactly (dense eigendecomposition) up to this many nodes.
    """

    max_mae: float = Field(gt=0, le=1)
    max_size_rel_error: float = Field(gt=0)
    check_samples: int = Field(ge=0)
    check_z: float = Field(ge=0)
    fallback_samples: int = Field(ge=10)
    max_seconds: float = Field(gt=0)
    heat_max_nodes: int = Field(ge=0)


class SpreadModel(OptimConfig):
    """The message-passing network and its training.

    hidden:      width of the node states.
    iterations:  message-passing rounds; one layer's weights are shared by every round, so the
                 network can run more rounds than it trained with (``eval_iterations``; ``null``:
                 the same) on graphs whose cascades travel further.
    prior:       feed each node the dynamic-message-passing estimate of its probability (exact on
                 trees, a closed form computed inside the network); the network learns the
                 correction for loops and for the process. ``false`` learns from scratch.
    cycle_features: give each node its local clustering coefficient and log(1 + triangles through it), so
                 that the network sees the short cycles that make DMP over-estimate spread on clustered graphs.
    residual:    read out a correction to the logit of the prior instead of a probability from scratch (needs
                 ``prior``; heat keeps plain logits).
    cap_at_prior: cap IC and SIR reach probabilities at the DMP prior (needs ``prior``), which bounds them from
                 above on any graph: without it the network puts a floor of a few thousandths on every far-away
                 node, and on 10,000 nodes that is dozens of nodes of expected size. SIS and heat are not capped.
    dropout:     dropout inside the message-passing layer's update.
    gate_max_mae: the absolute bar: a version must reach a held-out per-node MAE at most this.
    num_threads: torch CPU threads while this head trains (restored after). The tensors are
                 small: on the shared 2-core machine one training step measured 10x slower with two
                 threads than with one. ``null`` keeps torch's default.
    """

    hidden: int = Field(ge=4)
    iterations: int = Field(ge=1)
    eval_iterations: int | None = Field(ge=1)
    prior: bool
    cycle_features: bool
    residual: bool
    cap_at_prior: bool
    dropout: float = Field(ge=0, lt=1)
    gate_max_mae: float = Field(gt=0)
    num_threads: int | None = Field(ge=1)
    influence: InfluenceConfig
    trust: TrustConfig

    @model_validator(mode="after")
    def _residual_needs_prior(self) -> SpreadModel:
        if self.residual and not self.prior:
            raise ValueError(
                "model.spread.residual corrects the DMP prior: set model.spread.prior=true or residual=false"
            )
        if self.cap_at_prior and not self.prior:
            raise ValueError(
                "model.spread.cap_at_prior caps at the DMP prior: set model.spread.prior=true or cap_at_prior=false"
            )
        return self


# What the head registry reads (triad.heads).
Data = SpreadData
Model = SpreadModel
