"""MLflow: where runs go, what every run is tagged with, and which params it logs.

The registry gate is ``triad.gate``; provenance (git, DVC data versions) is ``triad.provenance``.

Default backend: a SQLite file ``mlflow.db`` in the project root (MLflow's own default location
when run from the root), artifacts under ``mlartifacts/``. ``MLFLOW_TRACKING_URI`` or
``logger.tracking_uri`` point it at a server instead.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from triad import provenance
from triad.config import project_root

if TYPE_CHECKING:
    from triad.config import TriadConfig
    from triad.heads.base import Head


def tracking_uri(cfg: TriadConfig) -> str:
    if cfg.logger.tracking_uri:
        return cfg.logger.tracking_uri
    if env := os.environ.get("MLFLOW_TRACKING_URI"):
        return env
    return f"sqlite:///{project_root() / 'mlflow.db'}"


def _is_local(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def init_store(cfg: TriadConfig) -> None:
    """Touch the tracking store once: a fresh SQLite file gets its tables; a server is checked reachable."""
    import mlflow

    mlflow.MlflowClient(tracking_uri=tracking_uri(cfg)).search_experiments(max_results=1)


def experiment_name(cfg: TriadConfig, head: str) -> str:
    return f"{cfg.logger.experiment_prefix}-{head}"


def ensure_experiment(cfg: TriadConfig, head: str) -> str:
    """The experiment id for ``head``, created on first use (safe if two processes race)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    uri = tracking_uri(cfg)
    mlflow.set_tracking_uri(uri)
    name = experiment_name(cfg, head)
    if (found := mlflow.get_experiment_by_name(name)) is not None:
        return found.experiment_id
    location = (project_root() / cfg.logger.artifact_dir / name).as_uri() if _is_local(uri) else None
    try:
        return mlflow.create_experiment(name, artifact_location=location)
    except MlflowException:
        return mlflow.get_experiment_by_name(name).experiment_id


def run_tags(cfg: TriadConfig, head: Head, data_dir: Path) -> dict[str, str]:
    """Tags on every training run: code, data and orchestration provenance."""
    from triad import __version__

    tags = {
        "triad.head": head.name,
        "triad.version": __version__,
        "mlflow.source.git.commit": provenance.git_commit(),
        "triad.data_version": provenance.data_version(data_dir),
        "triad.experiment": cfg.experiment or "default",
        "triad.project": provenance.project_id(),
    }
    if flow_run := os.environ.get("TRIAD_FLOW_RUN_ID"):
        tags["prefect.flow_run_id"] = flow_run
    if parent := os.environ.get("TRIAD_PARENT_RUN_ID"):  # a sweep's trial (triad.sweep)
        tags["mlflow.parentRunId"] = parent
    return tags


def log_data(client, run_id: str, cfg: TriadConfig, head: Head, data_dir: Path) -> None:
    """Record the data a training run used: an MLflow dataset input (the run's Datasets panel) and the
    prepare step's data report (``data/`` artifacts), where prepare wrote one.

    The dataset's name is the data's registered-model name; its source is the user's folder or file (a
    built-in task: the prepared folder); its digest is DVC's hash of that raw data where ``dvc.lock``
    records it, else the prepared data's version; its profile holds the row counts per split.
    """
    import json

    from mlflow.data.dataset_source_registry import get_registered_sources
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag

    from triad.data.own import REPORT_GRID, REPORT_JSON, REPORT_MD

    data_cfg = getattr(cfg.data, head.name)
    own = getattr(data_cfg, "path", None)
    report_file = data_dir / REPORT_JSON
    report = json.loads(report_file.read_text()) if report_file.is_file() else {}
    summary_file = data_dir / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    if report.get("counts"):
        counts = report["counts"].values()
        rows = {split: sum(c.get(split, 0) for c in counts) for split in ("train", "val", "test")}
    else:
        rows = summary.get("sizes", {})
    raw = getattr(data_cfg, "raw", None)
    raws = list(dict.fromkeys(raw if isinstance(raw, list) else [raw] if raw else []))
    dvc_digests = [provenance.raw_version(f"prepare_{head.name}", r) for r in raws]
    prepared = provenance.data_version(data_dir)
    if own and dvc_digests and all(dvc_digests):
        # one DVC md5 is the digest itself; several (two parallel files) are combined into one md5
        joined = ",".join(dvc_digests)
        digest = joined if len(dvc_digests) == 1 else "md5:" + hashlib.md5(joined.encode()).hexdigest()
    else:
        digest = prepared
    profile = {
        "rows": rows,
        "source": report.get("source") or summary.get("source", ""),
        "dvc_digests": dict(zip(raws, dvc_digests)),
        "prepared_data_version": prepared,
    }

    class Profiled(MetaDataset):
        def to_dict(self) -> dict[str, str]:
            return {**super().to_dict(), "profile": json.dumps(profile)}

    # MLflow builds its local-file source class at import time; find it by its source type
    local_source = next(s for s in get_registered_sources() if s._get_source_type() == "local")
    source = str((project_root() / Path(own).expanduser()).resolve()) if own else str(data_dir.resolve())
    # MLflow keeps at most 36 characters of a digest ("md5:" and 32 hex digits fit); the profile has them all
    dataset = Profiled(local_source(source), name=head.registered_model_name, digest=digest[:36])
    tags = [InputTag(key="mlflow.data.context", value="training")]
    client.log_inputs(run_id, datasets=[DatasetInput(dataset=dataset._to_mlflow_entity(), tags=tags)])
    for name in (REPORT_JSON, REPORT_MD, REPORT_GRID):
        if (data_dir / name).is_file():
            client.log_artifact(run_id, str(data_dir / name), "data")


def flat_params(cfg: TriadConfig, head: str) -> dict[str, Any]:
    """The params that shape ``head``'s model, flattened to dotted keys for MLflow."""
    sections = {
        "seed": cfg.seed,
        "trainer": cfg.trainer.model_dump(mode="json"),
        f"data.{head}": getattr(cfg.data, head).model_dump(mode="json"),
        f"model.{head}": getattr(cfg.model, head).model_dump(mode="json"),
    }
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                walk(f"{prefix}.{key}" if prefix else key, sub)
        else:
            flat[prefix] = value

    walk("", sections)
    return flat


def run_url(run: dict[str, str], ui: str = "http://127.0.0.1:5000") -> str:
    return f"{ui}/#/experiments/{run['experiment_id']}/runs/{run['run_id']}"
