"""Benchmark: the trained spread network against Monte-Carlo simulation, on the held-out test graphs.

Run (after `triad pipeline` or `triad train spread` has prepared data/spread and trained the model):

    PYTHONPATH=src python bench/spread_speed.py [questions_per_process] [greedy_samples]

For up to ``questions_per_process`` of the largest test questions per process it times the
10,000-cascade Monte-Carlo estimate (heat: the exact kernel) and one forward pass, both on one
thread, and prints per-node MAE against the stored 10,000-cascade answers and the speed ratio. It
then runs influence maximisation on Les Miserables with ``greedy_samples`` cascades per candidate
for the Monte-Carlo greedy baseline (default 10,000: Kempe, Kleinberg & Tardos's setting, and the
same 10,000-cascade reference the accuracy target uses, and the pipeline's default) and prints
both spreads and the speed ratio. Finally it times the fast Monte-Carlo (``simulate.cascades``, what
``simulate.run`` runs) against the first, dense simulator (``simulate.epidemic_dense``) on the same test
questions at the same number of cascades, one thread each, and prints the ratio. For networks of
1,000-100,000 nodes and the equal-accuracy comparison see ``bench/spread_scale.py``.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

from triad.config import compose
from triad.evaluate import load_trained
from triad.heads.spread import simulate
from triad.heads.spread.evaluate import accuracy_table, predict, prior_answers, speed_table
from triad.heads.spread.graphs import real_graph
from triad.heads.spread.influence import compare


def main() -> None:
    per_process = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    greedy_samples = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
    cfg = compose([])
    head, datamodule, module, _ = load_trained(cfg, "spread")
    network, test = module.model, datamodule.test
    answers = predict(network, test)
    print(accuracy_table(test, answers, prior_answers(test)).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    speed = speed_table(network, test, cfg.data.spread.test_samples, per_process, cfg.seed)
    print(speed.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    stochastic = speed[speed.process != "heat"]
    print(
        f"Monte-Carlo / model time (stochastic processes): "
        f"{stochastic.reference_seconds.mean() / stochastic.model_seconds.mean():.1f}x"
    )
    im_cfg = cfg.model.spread.influence.model_copy(update={"greedy_samples": greedy_samples})
    table, metrics = compare(network, real_graph(im_cfg.graph), im_cfg, cfg.seed)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(
        f"influence maximisation: model/greedy spread {metrics['im_ratio']:.3f}, "
        f"greedy MC / model time {metrics['im_speedup']:.1f}x (greedy MC with {greedy_samples} cascades per candidate)"
    )
    fast_seconds = dense_seconds = 0.0
    samples = cfg.data.spread.test_samples
    chosen = sorted((q for q in test if q.process in ("ic", "sir")), key=lambda q: -q.graph.n)[: 2 * per_process]
    with simulate.one_thread():
        for q in chosen:
            gamma = 1.0 if q.process == "ic" else q.params["gamma"]
            beta = q.params["p"] if q.process == "ic" else q.params["beta"]
            started = time.perf_counter()
            simulate.cascades(q.graph, q.seeds, beta, gamma, samples, torch.Generator().manual_seed(0))
            fast_seconds += time.perf_counter() - started
            started = time.perf_counter()
            simulate.epidemic_dense(q.graph, q.seeds, beta, gamma, samples, torch.Generator().manual_seed(0))
            dense_seconds += time.perf_counter() - started
    print(
        f"Monte-Carlo, {samples} cascades, {len(chosen)} IC/SIR test questions: fast {fast_seconds:.2f}s, "
        f"dense (first) {dense_seconds:.2f}s, dense / fast {dense_seconds / max(fast_seconds, 1e-9):.1f}x"
    )
    print(
        f"overall test per-node MAE {np.concatenate([np.abs(a - q.target) for q, a in zip(test, answers)]).mean():.4f}"
    )


if __name__ == "__main__":
    main()
