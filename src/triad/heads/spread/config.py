"""Config schema of the spread head: ``cfg.data.spread`` and ``cfg.model.spread``.

The defaults equal the default profile (``conf/data/spread/mixed_graphs.yaml`` and
``conf/model/spread/small.yaml``): small generated graphs for training, larger generated graphs and
three real networks for testing, a few thousand Monte-Carlo cascades per example, and a small
message-passing network that trains in about a minute on two CPU cores.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from triad.schema import OptimConfig, StrictModel

Process = Literal["ic", "sir", "sis", "heat"]
Family = Literal["erdos_renyi", "barabasi_albert", "watts_strogatz", "stochastic_block"]
RealGraph = Literal["karate_club", "les_miserables", "florentine_families"]


class Range(StrictModel):
    """A closed interval ``[low, high]`` that parameters are drawn from uniformly."""

    low: float
    high: float

    @model_validator(mode="after")
    def _ordered(self) -> "Range":
        if self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")
        return self


class SpreadData(StrictModel):
    """Which graphs and processes, and how many Monte-Carlo cascades estimate each answer.

    Every example is (graph, process, parameters, seed set) -> each node's probability of being
    reached, estimated from ``*_samples`` simulations (the heat process is exact). Training and
    validation graphs have ``train_nodes`` nodes; test graphs have ``test_nodes`` (larger, so the
    test measures generalisation to bigger graphs) plus the ``real_graphs``.

    Process parameters: ``ic_p`` (independent cascade edge probability), ``sir_beta`` and
    ``sir_gamma`` (per-step infection and recovery probabilities, also for SIS), ``sis_horizon``
    (SIS steps; a node counts as reached if infected within them), ``heat_t`` (heat-kernel time).
    """

    processes: list[Process] = Field(default_factory=lambda: ["ic", "sir", "heat"], min_length=1)
    families: list[Family] = Field(
        default_factory=lambda: ["erdos_renyi", "barabasi_albert", "watts_strogatz", "stochastic_block"],
        min_length=1)
    real_graphs: list[RealGraph] = Field(
        default_factory=lambda: ["karate_club", "les_miserables", "florentine_families"])
    train_graphs: int = Field(160, ge=1)
    val_graphs: int = Field(24, ge=1)
    test_graphs: int = Field(8, ge=0)
    train_nodes: Range = Field(default_factory=lambda: Range(low=15, high=50))
    test_nodes: Range = Field(default_factory=lambda: Range(low=100, high=200))
    mean_degree: Range = Field(default_factory=lambda: Range(low=2.5, high=6.0))
    examples_per_graph: int = Field(4, ge=1)  # (process, parameters, seed set) draws per graph
    max_seeds: int = Field(3, ge=1)
    train_samples: int = Field(1000, ge=10)  # Monte-Carlo cascades per training/validation example
    test_samples: int = Field(10000, ge=10)  # ... per test example (the ground truth the targets name)
    ic_p: Range = Field(default_factory=lambda: Range(low=0.05, high=0.4))
    sir_beta: Range = Field(default_factory=lambda: Range(low=0.05, high=0.4))
    sir_gamma: Range = Field(default_factory=lambda: Range(low=0.3, high=1.0))
    sis_horizon: int = Field(8, ge=1)
    heat_t: Range = Field(default_factory=lambda: Range(low=0.1, high=2.0))
    max_steps: int = Field(200, ge=1)  # cap on simulated steps (IC and SIR end earlier)
    split_seed: int = 0

    @model_validator(mode="after")
    def _probabilities_in_range(self) -> "SpreadData":
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

    graph: Literal["test", "karate_club", "les_miserables", "florentine_families"] = "les_miserables"
    k: int = Field(4, ge=1)
    p: float = Field(0.15, gt=0, le=1)
    greedy_samples: int = Field(10000, ge=10)
    score_samples: int = Field(10000, ge=10)


class SpreadModel(OptimConfig):
    """The message-passing network and its training.

    hidden:      width of the node states.
    iterations:  message-passing rounds; one layer's weights are shared by every round, so the
                 network can run more rounds than it trained with (``eval_iterations``, default
                 the same) on graphs whose cascades travel further.
    prior:       feed each node the dynamic-message-passing estimate of its probability (exact on
                 trees, a closed form computed inside the network); the network learns the
                 correction for loops and for the process. ``false`` learns from scratch.
    gate_max_mae: the absolute bar: a version must reach a held-out per-node MAE at most this.
    num_threads: torch CPU threads while this head trains (restored after). The tensors are
                 small: on the shared 2-core machine one training step measured 10x slower with two
                 threads than with one. ``null`` keeps torch's default.
    """

    hidden: int = Field(32, ge=4)
    iterations: int = Field(6, ge=1)
    eval_iterations: int | None = Field(None, ge=1)
    prior: bool = True
    dropout: float = Field(0.0, ge=0, lt=1)
    max_epochs: int = Field(30, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    gate_max_mae: float = Field(0.1, gt=0)
    num_threads: int | None = Field(1, ge=1)
    influence: InfluenceConfig = Field(default_factory=InfluenceConfig)
