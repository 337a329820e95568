"""Evaluate a trained head, log everything to its MLflow run, register the model, apply the gate.

Writes ``reports/<head>/``: ``metrics.json`` (DVC metrics), ``plots/`` (the head's pictures and CSV
tables; DVC plots) and ``registry.json`` (the version registered, the gate's decision and the path of
the version's model card in its run, ``triad.card``).
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

from triad import card, gate, tracking
from triad.atomic import atomic_dir
from triad.config import TriadConfig, to_yaml
from triad.errors import DataError, NotComparable, TrainingError
from triad.heads import get_head
from triad.jsonio import write_json
from triad.prepare import require_prepared

PACKAGE_DIR = Path(__file__).resolve().parent
# What a served model needs besides triad's own code (shipped with it through code_paths). Naming
# them, pinned to the versions installed here, spares MLflow's slow requirement inference.
SERVING_PACKAGES = (
    "torch",
    "lightning",
    "mlflow",
    "numpy",
    "pandas",
    "pydantic",
    "pyyaml",
    "tokenizers",
    "sacrebleu",
    "pillow",
    "scikit-learn",
    "matplotlib",
    "tqdm",
)


def serving_requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for package in SERVING_PACKAGES:
        try:
            pins.append(f"{package}=={version(package).split('+')[0]}")
        except PackageNotFoundError:
            continue
    return pins


def load_trained(cfg: TriadConfig, head_name: str):
    """(head, datamodule, module in eval mode, training summary) from ``artifacts/<head>/train``."""
    import torch

    head = get_head(head_name, cfg)
    require_prepared(head.dir("data"), head_name)
    model_file = head.dir("artifacts") / "train" / "model.pt"
    if not model_file.is_file():
        raise DataError(f"no trained {head_name} model at {model_file}; run `triad stage train {head_name}` first.")
    saved = torch.load(model_file, map_location="cpu", weights_only=False)
    datamodule = head.datamodule(head.dir("data"))
    module = head.module(datamodule)
    try:
        module.load_state_dict(saved["state_dict"])
    except RuntimeError as exc:
        raise TrainingError(
            f"{model_file} does not fit the configured {head_name} model ({exc}). "
            f"The config changed since training: rerun `triad stage train {head_name}`."
        ) from None
    module.eval()
    summary = {k: v for k, v in saved.items() if k != "state_dict"}
    return head, datamodule, module, summary


def evaluation_device(cfg: TriadConfig, head) -> str:
    """The trainer's GPU for heads that evaluate there (``Head.evaluate_on_accelerator``), else the CPU."""
    return cfg.trainer.torch_device() if head.evaluate_on_accelerator else "cpu"


def evaluate(cfg: TriadConfig, head_name: str, register: bool = True) -> dict[str, Any]:
    import torch

    head, datamodule, module, trained = load_trained(cfg, head_name)
    with atomic_dir(head.dir("reports")) as report_dir:
        plots_dir = report_dir / "plots"  # DVC plots: the head's pictures and CSV tables
        plots_dir.mkdir()
        device = evaluation_device(cfg, head)
        try:
            with torch.no_grad():
                evaluation = head.evaluate(module.to(device), datamodule, plots_dir)
        finally:
            module.cpu()  # the registered model loads on any machine
        metrics = {k: float(v) for k, v in evaluation.metrics.items()}
        if head.gate_metric not in metrics:
            raise TrainingError(f"the {head_name} evaluation did not report its gate metric {head.gate_metric!r}")
        write_json(report_dir / "metrics.json", metrics)
        for name, table in evaluation.tables.items():
            table.to_csv(plots_dir / f"{name}.csv", index=False)

        result: dict[str, Any] = {"head": head_name, "metrics": metrics}
        if register and not cfg.trainer.fast_dev_run:
            trained = {**trained, **training_run(cfg, head, trained)}
            result["registry"] = _log_and_register(head, module, datamodule, trained, metrics, evaluation)
            write_json(report_dir / "registry.json", result["registry"])
    return result


def training_run(cfg: TriadConfig, head, trained: dict[str, Any]) -> dict[str, Any]:
    """The MLflow run that trained these weights: ``run_id``, ``experiment_id``, ``tracking_uri``.

    Found from training's run record (``.triad/<head>/runs/<fingerprint>.json``) when the tracking
    store still holds that run, else by the run's ``triad.fingerprint`` tag (weights trained on
    another machine and pulled through DVC). When the store has neither (it was deleted or
    replaced), a new run is opened for the evaluation, with the training's params and a tag that
    says why, so that the weights DVC holds are still evaluated and registered.
    """
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from triad.train import run_record_path

    uri = tracking.tracking_uri(cfg)
    client = MlflowClient(tracking_uri=uri)
    fingerprint = trained["fingerprint"]
    record_file = run_record_path(head, fingerprint)
    if record_file.is_file():
        record = json.loads(record_file.read_text())
        try:
            run = client.get_run(record["run_id"])
            if run.info.lifecycle_stage == "active":
                return {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id, "tracking_uri": uri}
        except MlflowException:
            pass  # the store lost it: look further
    experiment_id = tracking.ensure_experiment(cfg, head.name)
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`triad.fingerprint` = '{fingerprint}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if found:
        return {"run_id": found[0].info.run_id, "experiment_id": experiment_id, "tracking_uri": uri}
    tags = {
        **tracking.run_tags(cfg, head, head.dir("data")),
        "triad.fingerprint": fingerprint,
        "triad.note": "the tracking store holds no run that trained these weights (deleted, or trained with "
        "another store): this run evaluates the weights DVC keeps",
    }
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"{head.name}-{fingerprint[:8]}-evaluation", tags=tags
    ) as run:
        mlflow.log_params(tracking.flat_params(cfg, head.name))
        mlflow.log_text(to_yaml(cfg), "config/config.yaml")
    return {"run_id": run.info.run_id, "experiment_id": experiment_id, "tracking_uri": uri}


def rescore(head, champion, datamodule) -> float:
    """The gate metric of registered version ``champion`` on ``datamodule``'s test split (``Head.rescore``)."""
    import mlflow
    import torch
    from mlflow.exceptions import MlflowException

    uri = f"models:/{champion.name}/{champion.version}"
    try:
        served = mlflow.pyfunc.load_model(uri).unwrap_python_model()
    except (MlflowException, OSError, RuntimeError) as exc:
        raise NotComparable(f"{uri} does not load: {str(exc).splitlines()[0]}") from None
    try:
        with torch.no_grad():
            return float(head.rescore(served, datamodule))
    except (RuntimeError, ValueError, KeyError) as exc:  # another architecture, vocabulary or class list
        raise NotComparable(f"{uri} cannot read this data: {str(exc).splitlines()[0][:200]}") from None


def _log_and_register(head, module, datamodule, trained, metrics, evaluation) -> dict[str, Any]:
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(trained["tracking_uri"])
    client = MlflowClient()
    finite = {k: v for k, v in metrics.items() if math.isfinite(v)}
    with mlflow.start_run(run_id=trained["run_id"]):
        mlflow.log_metrics(finite)
        for image in evaluation.images:
            mlflow.log_artifact(str(image), artifact_path="plots")
        for name, table in evaluation.tables.items():
            mlflow.log_table(table, artifact_file=f"tables/{name}.json")
        with tempfile.TemporaryDirectory() as work:
            from triad.model_code import as_model_code

            bundle = head.pyfunc(module, datamodule, Path(work))
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=as_model_code(bundle.python_model, Path(work)),  # models from code, not cloudpickle
                artifacts=bundle.artifacts,
                input_example=bundle.input_example,
                signature=bundle.signature,
                code_paths=[str(PACKAGE_DIR)],
                pip_requirements=serving_requirements(),
            )
    version = mlflow.register_model(
        info.model_uri, head.registered_model_name, tags={"triad.run_id": trained["run_id"]}
    )
    decision = gate.gate(
        client,
        head.registered_model_name,
        version.version,
        head.gate_metric,
        metrics[head.gate_metric],
        head.gate_mode,
        head.gate_passes(metrics),
        data_version_tag=trained.get("data_version"),
        rescore=lambda champion: rescore(head, champion, datamodule),
    )
    summary_file = head.dir("data") / "summary.json"  # prepare's summary: classes, sizes (require_prepared)
    data_summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    decision.update(
        {
            "model": head.registered_model_name,
            "run_id": trained["run_id"],
            "experiment_id": trained["experiment_id"],
            "model_uri": info.model_uri,
            # the model card: an artifact of the run, its summary the version's description (triad.card)
            "card": card.publish(client, head, version.version, metrics, data_summary),
        }
    )
    print(
        f"[triad] {head.registered_model_name} v{version.version}: "
        f"{'champion' if decision['promoted'] else 'not promoted'} ({decision['reason']})",
        flush=True,
    )
    return decision
