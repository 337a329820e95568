"""The data step: one entry for every head's dataset and for the heads' extra steps."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

from triad.atomic import atomic_dir
from triad.config import TriadConfig
from triad.errors import DataError
from triad.heads import get_head
from triad.jsonio import write_json

log = logging.getLogger(__name__)


def data_config_digest(cfg: TriadConfig, head_name: str) -> str:
    """sha256 of what the prepare stage's params are (``seed`` and ``data.<head>``), kept in ``summary.json``
    so that ``triad train`` (outside DVC) sees prepared data made from another data config."""
    section = getattr(cfg.data, head_name).model_dump(mode="json")
    return hashlib.sha256(json.dumps({"seed": cfg.seed, "data": section}, sort_keys=True).encode()).hexdigest()


def is_prepared_for(cfg: TriadConfig, head_name: str, data_dir: Path) -> bool:
    """Whether ``data_dir`` holds data prepared from this config's ``seed`` and ``data.<head>``."""
    summary = data_dir / "summary.json"
    if not summary.is_file():
        return False
    return json.loads(summary.read_text()).get("data_config") == data_config_digest(cfg, head_name)


def prepare(cfg: TriadConfig, head_name: str) -> dict:
    """Fetch, verify, validate, split and write ``data/<head>/`` (all or nothing)."""
    head = get_head(head_name, cfg)
    target = head.dir("data")
    started = time.perf_counter()
    with atomic_dir(target) as tmp:
        summary = {"head": head_name, "data_config": data_config_digest(cfg, head_name), **head.prepare(tmp)}
        write_json(tmp / "summary.json", summary)  # no wall time: the same inputs give the same bytes
    log.info("prepared %s in %.1fs: %s", target, time.perf_counter() - started, summary)
    return summary


def is_timing(key: str) -> bool:
    """A measurement of wall time (``seconds``, ``fit_seconds``, ...): it goes to MLflow and the logs,
    never into a DVC output, whose bytes must depend on the stage's inputs alone."""
    return "seconds" in key


def require_prepared(data_dir: Path, head_name: str) -> None:
    if not (data_dir / "summary.json").is_file():
        raise DataError(
            f"{data_dir} holds no prepared data (no summary.json). "
            f"Run `triad stage prepare {head_name}` or `dvc repro prepare_{head_name}` first."
        )


def run_step(cfg: TriadConfig, head_name: str, step: str) -> dict:
    """Run one of the head's extra steps (``Head.steps()``) into ``artifacts/<head>/<step>/``."""
    head = get_head(head_name, cfg)
    steps = head.steps()
    if step not in steps:
        raise DataError(f"the {head_name} head has no step {step!r}; its steps are {sorted(steps) or 'none'}")
    require_prepared(head.dir("data"), head_name)
    started = time.perf_counter()
    target = head.dir("artifacts") / step
    with atomic_dir(target) as tmp:
        summary = {
            "head": head_name,
            "step": step,
            **steps[step](tmp),
            "seconds": round(time.perf_counter() - started, 2),
        }
        write_json(tmp / "summary.json", {k: v for k, v in summary.items() if not is_timing(k)})
    _log_step(cfg, head, step, target, summary)  # timings included
    return summary


def _log_step(cfg: TriadConfig, head, step: str, folder: Path, summary: dict) -> None:
    """An MLflow run ``<head>-<step>`` in the head's experiment with the step's numbers and files."""
    import mlflow

    from triad import tracking

    experiment_id = tracking.ensure_experiment(cfg, head.name)
    tags = {**tracking.run_tags(cfg, head, head.dir("data")), "triad.step": step}
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{head.name}-{step}", tags=tags):
        mlflow.log_params(tracking.flat_params(cfg, head.name))
        mlflow.log_metrics(
            {k: float(v) for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        )
        mlflow.log_artifacts(str(folder), artifact_path=step)
