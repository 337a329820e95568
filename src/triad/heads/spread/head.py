"""The spread head: learn how a cascade, an epidemic or heat spreads over a graph.

Gate metric ``test_mae``: per-node mean absolute error against 10,000-cascade Monte-Carlo answers on
held-out test graphs (larger than the training graphs, and three real networks); lower is better.
The bar: it must be at most ``model.spread.gate_max_mae``.
"""

from __future__ import annotations

from pathlib import Path

from triad.heads.base import Evaluation, Head, PyfuncBundle
from triad.heads.spread import evaluate as ev
from triad.heads.spread.data import SpreadDataModule, prepare
from triad.heads.spread.graphs import real_graph
from triad.heads.spread.influence import compare
from triad.heads.spread.module import SpreadModule
from triad.heads.spread.pyfunc import INPUT_EXAMPLE, SpreadPyfunc, save_artifacts

SPEED_QUESTIONS_PER_PROCESS = 4


class SpreadHead(Head):
    name = "spread"
    gate_metric = "test_mae"
    gate_mode = "min"

    def prepare(self, out_dir: Path) -> dict:
        return prepare(self.data_cfg, out_dir)

    def datamodule(self, data_dir: Path) -> SpreadDataModule:
        return SpreadDataModule(data_dir, self.model_cfg.batch_size, self.cfg.trainer.num_workers, self.cfg.seed)

    def module(self, datamodule: SpreadDataModule) -> SpreadModule:
        return SpreadModule(self.model_cfg)

    def evaluate(self, module: SpreadModule, datamodule: SpreadDataModule, report_dir: Path) -> Evaluation:
        network, test = module.model, datamodule.test
        iterations = self.model_cfg.eval_iterations
        answers = ev.predict(network, test, iterations=iterations)
        accuracy = ev.accuracy_table(test, answers, ev.prior_answers(test))
        speed = ev.speed_table(network, test, self.data_cfg.test_samples, SPEED_QUESTIONS_PER_PROCESS, self.cfg.seed)
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
            metrics["speedup_batched"] = metrics["mc_seconds_per_question"] / float(
                stochastic.model_batched_seconds.mean()
            )
        im_cfg = self.model_cfg.influence
        im_graph = max(test, key=lambda q: q.graph.n).graph if im_cfg.graph == "test" else real_graph(im_cfg.graph)
        influence, im_metrics = compare(network, im_graph, im_cfg, self.cfg.seed)
        metrics |= im_metrics
        karate = real_graph("karate_club")
        images = [
            ev.plot_spread_over_time(
                karate,
                [("ic", [0], {"p": 0.2}), ("sir", [33], {"beta": 0.15, "gamma": 0.4})],
                network,
                report_dir / "spread_over_time.png",
            ),
            ev.plot_predicted_vs_simulated(test, answers, report_dir / "predicted_vs_simulated.png"),
        ]
        tables = {"accuracy": accuracy, "speed": speed, "influence": influence}
        return Evaluation(metrics=metrics, images=images, tables=tables)

    def pyfunc(self, module: SpreadModule, datamodule: SpreadDataModule, work_dir: Path) -> PyfuncBundle:
        return PyfuncBundle(SpreadPyfunc(), save_artifacts(module.model, self.model_cfg, work_dir), INPUT_EXAMPLE)

    def rescore(self, served, datamodule: SpreadDataModule) -> float:
        """Per-node MAE of a registered spread model on this test set, with its own message-passing rounds."""
        answers = ev.predict(served.network, datamodule.test, iterations=served.cfg.eval_iterations)
        table = ev.accuracy_table(datamodule.test, answers, answers)
        return float(table.loc[table.process == "all", "mae"].item())

    def gate_passes(self, metrics: dict[str, float]) -> tuple[bool, str]:
        ok, why = super().gate_passes(metrics)
        if not ok:
            return ok, why
        mae, bar = metrics[self.gate_metric], self.model_cfg.gate_max_mae
        if mae > bar:
            return False, f"{self.gate_metric} {mae:.4f} is above the bar {bar:.4f}"
        return True, f"{self.gate_metric} {mae:.4f} is within the bar {bar:.4f}"


HEAD = SpreadHead  # what the head registry reads (triad.heads)
