"""Hyper-parameter sweeps with Optuna over any head's parameters: ``triad sweep HEAD --trials N ...``.

The search space is written in Hydra's sweep syntax, parsed by Hydra's own override parser:

- ``model.<head>.lr=tag(log,interval(1e-4,1e-1))``  a float on a log scale
- ``model.<head>.dropout=interval(0.0,0.5)``         a float (ints if both ends are ints)
- ``model.<head>.warmup_steps=range(1,4)``          an int in [1, 4)
- ``model.<head>.strategy=choice(gradual,full)``     one of the values (also ``a,b,c``)
- ``model.<head>.max_epochs=5``                      a fixed override for every trial

Each trial composes the config with the fixed and sampled overrides, trains with the one training
entry (``triad.train``) and evaluates without registering; its training run is an MLflow child run
(tag ``mlflow.parentRunId``) of one parent run for the sweep. The objective is the head's gate metric
on the validation split (``val_score`` for ``test_score``), so the test split is not tuned on.

The best trial's whole config is written to ``conf/experiment/best_<head>.yaml`` and to
``params.yaml``, so ``dvc repro`` (or ``triad pipeline experiment=best_<head>``) reproduces it.

(Hydra's Optuna sweeper plugin would have done the sampling, but it requires optuna<3, which
predates SQLAlchemy 2 that the lock pins; Optuna is used directly instead.)
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from triad.config import TriadConfig, compose, project_root, write_params
from triad.errors import ConfigError, TriadError

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)


def parse_space(overrides: list[str]) -> tuple[list[str], dict[str, Any]]:
    """Split overrides into fixed ones (strings) and a search space {key: Hydra sweep object}."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as exc:
        raise ConfigError(f"cannot parse the sweep overrides: {exc}") from None
    fixed, space = [], {}
    for override in parsed:
        if override.is_sweep_override():
            key = override.get_key_element()
            if key.startswith("data."):
                raise ConfigError(
                    f"{key}: data parameters cannot be swept (the data is prepared once for all "
                    "trials); sweep model.* or trainer.* keys, and run one sweep per dataset"
                )
            space[key] = override.value()
        else:
            fixed.append(override.input_line)
    return fixed, space


def suggest(trial: optuna.Trial, key: str, sweep: Any) -> Any:
    """Ask Optuna for a value of ``key`` from one Hydra sweep (interval, range or choice)."""
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

    if isinstance(sweep, IntervalSweep):
        log_scale = "log" in sweep.tags
        if isinstance(sweep.start, int) and isinstance(sweep.end, int):
            return trial.suggest_int(key, sweep.start, sweep.end, log=log_scale)
        return trial.suggest_float(key, float(sweep.start), float(sweep.end), log=log_scale)
    if isinstance(sweep, RangeSweep):
        values = []
        value = sweep.start
        while (sweep.step > 0 and value < sweep.stop) or (sweep.step < 0 and value > sweep.stop):
            values.append(value)
            value += sweep.step
        return trial.suggest_categorical(key, values)
    if isinstance(sweep, ChoiceSweep):
        return trial.suggest_categorical(key, list(sweep.list))
    raise ConfigError(f"{key}: unsupported sweep {sweep!r}; use interval(...), range(...) or choice(...)")


def objective_metric(head_name: str, cfg: TriadConfig) -> tuple[str, str]:
    """(metric, "maximize"|"minimize"): the gate metric on the validation split where there is one."""
    from triad.heads import get_head

    head = get_head(head_name, cfg)
    direction = "maximize" if head.gate_mode == "max" else "minimize"
    return head.gate_metric.replace("test_", "val_", 1), direction


def _parent_run(study: optuna.Study, cfg: TriadConfig, head_name: str, space: dict) -> str:
    """The sweep's MLflow parent run, created once per study (workers sharing a storage reuse it)."""
    import mlflow

    from triad import tracking

    if run_id := study.user_attrs.get("mlflow_parent_run_id"):
        return run_id
    experiment_id = tracking.ensure_experiment(cfg, head_name)
    client = mlflow.MlflowClient(tracking.tracking_uri(cfg))
    run = client.create_run(
        experiment_id,
        run_name=f"sweep-{study.study_name}",
        tags={"triad.head": head_name, "triad.sweep": study.study_name},
    )
    client.log_dict(run.info.run_id, {k: str(v) for k, v in space.items()}, "sweep/space.json")
    study.set_user_attr("mlflow_parent_run_id", run.info.run_id)
    return run.info.run_id


def run_trial(cfg: TriadConfig, head_name: str, parent_run_id: str, number: int, metric: str) -> float:
    """Train and evaluate one trial as a child MLflow run; returns its objective value."""
    import mlflow

    from triad import tracking
    from triad.evaluate import evaluate
    from triad.train import train

    os.environ["TRIAD_PARENT_RUN_ID"] = parent_run_id  # tracking.run_tags puts it on the child run
    try:
        trained = train(cfg, head_name)
    finally:
        del os.environ["TRIAD_PARENT_RUN_ID"]
    metrics = evaluate(cfg, head_name, register=False)["metrics"]
    if metric not in metrics:
        raise ConfigError(f"the {head_name} evaluation reports no {metric!r}; it reports {sorted(metrics)}")
    if "run_id" in trained:
        client = mlflow.MlflowClient(tracking.tracking_uri(cfg))
        client.set_tag(trained["run_id"], "triad.trial", str(number))
        for name, value in metrics.items():
            if math.isfinite(value):
                client.log_metric(trained["run_id"], name, value)
    return metrics[metric]


def write_best(head_name: str, best_cfg: TriadConfig, comment: str, root: Path | None = None) -> Path:
    """Write the best trial's whole config as ``conf/experiment/best_<head>.yaml`` and ``params.yaml``.

    Checks that composing the experiment gives back exactly that config.
    """
    root = root or project_root()
    name = f"best_{head_name}"
    values = best_cfg.model_copy(update={"experiment": name}).model_dump(mode="json")
    path = root / "conf" / "experiment" / f"{name}.yaml"
    header = (
        f"# @package _global_\n# {comment}\n"
        f"# Reproduce: triad pipeline experiment={name}   (params.yaml holds it too: dvc repro)\n"
    )
    path.write_text(header + yaml.safe_dump(values, sort_keys=False))
    composed = compose([f"experiment={name}"], root)
    if composed.model_dump(mode="json") != values:
        raise ConfigError(f"{path} does not compose back to the best trial's config; please report this")
    write_params(composed, root / "params.yaml")
    return path


def sweep(
    head_name: str,
    overrides: list[str],
    n_trials: int,
    study_name: str | None = None,
    storage: str | None = None,
    metric: str | None = None,
) -> dict[str, Any]:
    """Run ``n_trials`` Optuna trials over the sweep ``overrides``; returns the best trial's summary.

    ``storage`` (an Optuna RDB URL such as ``sqlite:///sweep.db`` or PostgreSQL) lets several
    processes, e.g. a SLURM job array, work on the same study.
    """
    import optuna

    fixed, space = parse_space(overrides)
    if not space:
        raise ConfigError("nothing to sweep: give at least one key=interval(a,b), key=range(a,b) or key=choice(a,b)")
    base = compose(fixed)
    _prepare_once(base, head_name)
    metric_name, direction = objective_metric(head_name, base)
    metric_name = metric or metric_name
    study = optuna.create_study(
        study_name=study_name or f"{head_name}-sweep",
        storage=storage,
        direction=direction,
        sampler=optuna.samplers.TPESampler(seed=base.seed),
        load_if_exists=bool(storage),
    )
    parent = _parent_run(study, base, head_name, space)

    def objective(trial: optuna.Trial) -> float:
        sampled = [f"{key}={suggest(trial, key, value)}" for key, value in space.items()]
        trial.set_user_attr("overrides", fixed + sampled)
        log.info("trial %d: %s", trial.number, " ".join(sampled))
        return run_trial(compose(fixed + sampled), head_name, parent, trial.number, metric_name)

    study.optimize(objective, n_trials=n_trials, catch=(TriadError,))
    best = study.best_trial
    best_overrides = best.user_attrs["overrides"]
    comment = (
        f"Best of Optuna study {study.study_name!r}: trial {best.number}, {metric_name}={best.value:.4f}; "
        f"overrides: {' '.join(best_overrides)}"
    )
    path = write_best(head_name, compose(best_overrides), comment)
    _finish_parent(base, parent, metric_name, best.value, best_overrides, path)
    return {
        "study": study.study_name,
        "parent_run_id": parent,
        "metric": metric_name,
        "best_value": best.value,
        "best_trial": best.number,
        "best_overrides": best_overrides,
        "experiment_file": str(path),
        "trials": len(study.trials),
    }


def _prepare_once(cfg: TriadConfig, head_name: str) -> None:
    """Prepare the data (shared by every trial; a swept data parameter is not supported) if it is missing."""
    from triad.heads import get_head
    from triad.prepare import prepare

    if not (get_head(head_name, cfg).dir("data") / "summary.json").is_file():
        prepare(cfg, head_name)


def _finish_parent(cfg: TriadConfig, parent: str, metric: str, value: float, overrides: list[str], path: Path) -> None:
    import mlflow

    from triad import tracking

    client = mlflow.MlflowClient(tracking.tracking_uri(cfg))
    client.log_metric(parent, f"best_{metric}", value)
    client.set_tag(parent, "triad.best_overrides", " ".join(overrides))
    client.log_text(parent, path.read_text(), f"sweep/{path.name}")
    client.set_terminated(parent)
