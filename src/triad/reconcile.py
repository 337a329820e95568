"""Before a pipeline runs: make the tracking store agree with DVC, and close the runs a killed flow left open.

Both run at the start of the flow, under the project's pipeline lock (``triad.locks``), so no other
pipeline of this project is running meanwhile.

- ``lost_registrations``: DVC remembers (``dvc.lock``, ``reports/<head>/registry.json``) that a
  head's model was evaluated and registered; if the tracking store no longer holds that version
  (``mlflow.db`` deleted, ``MLFLOW_TRACKING_URI`` pointed at a new server), DVC alone would see
  nothing to do and the registry would stay empty. The flow re-runs those heads' evaluate stages.
- ``close_abandoned_runs``: a flow killed mid-stage leaves its MLflow runs RUNNING forever. Runs of
  this project (tag ``triad.project``) still RUNNING when a pipeline starts are marked KILLED,
  except the training runs a checkpoint will resume (``.triad/<head>/<fingerprint>/run.json``).
"""

from __future__ import annotations

import json
from pathlib import Path

from triad import provenance, tracking
from triad.config import TriadConfig


def _client(cfg: TriadConfig):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking.tracking_uri(cfg))


def lost_registrations(cfg: TriadConfig, root: Path, heads: list[str]) -> dict[str, str]:
    """Heads whose recorded registration the tracking store lacks: ``{head: what is missing}``."""
    from mlflow.exceptions import MlflowException

    client = _client(cfg)
    lost = {}
    for head in heads:
        path = root / cfg.paths.reports_dir / head / "registry.json"
        if not path.is_file():
            continue
        registry = json.loads(path.read_text())
        what = f"{registry['model']} v{registry['version']}"
        try:
            version = client.get_model_version(registry["model"], registry["version"])
        except MlflowException:
            lost[head] = f"{path.relative_to(root)} records {what}, which the tracking store does not hold"
            continue
        if version.run_id != registry.get("run_id"):
            lost[head] = f"{what} in the tracking store is not the one {path.relative_to(root)} records"
    return lost


def resumable_runs(cfg: TriadConfig, root: Path) -> set[str]:
    """MLflow runs that a training checkpoint in ``<state_dir>`` will continue."""
    runs = set()
    for record in (root / cfg.paths.state_dir).glob("*/*/run.json"):
        try:
            runs.add(json.loads(record.read_text())["run_id"])
        except (OSError, ValueError, KeyError):
            continue
    return runs


def close_abandoned_runs(cfg: TriadConfig, root: Path, heads: list[str]) -> list[str]:
    """Mark this project's RUNNING runs of ``heads`` KILLED unless a checkpoint resumes them; return their ids."""
    client = _client(cfg)
    keep = resumable_runs(cfg, root)
    project = provenance.project_id()
    closed = []
    for head in heads:
        experiment = client.get_experiment_by_name(tracking.experiment_name(cfg, head))
        if experiment is None:
            continue
        running = client.search_runs(
            [experiment.experiment_id],
            filter_string=f"attributes.status = 'RUNNING' and tags.`triad.project` = '{project}'",
        )
        for run in running:
            if run.info.run_id in keep:
                continue
            client.set_tag(
                run.info.run_id,
                "triad.closed",
                "left RUNNING by a pipeline that was killed; marked KILLED when the next pipeline started",
            )
            client.set_terminated(run.info.run_id, status="KILLED")
            closed.append(run.info.run_id)
    return closed
