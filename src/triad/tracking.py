"""MLflow: where runs go, what every run is tagged with, and the registry gate.

Default backend: a SQLite file ``mlflow.db`` in the project root (MLflow's own default location
when run from the root), artifacts under ``mlartifacts/``. ``MLFLOW_TRACKING_URI`` or
``logger.tracking_uri`` point it at a server instead.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import yaml

from triad.config import project_root
from triad.errors import TransientError

if TYPE_CHECKING:
    from triad.config import TriadConfig
    from triad.heads.base import Head

CHAMPION = "champion"


def tracking_uri(cfg: "TriadConfig") -> str:
    if cfg.logger.tracking_uri:
        return cfg.logger.tracking_uri
    if env := os.environ.get("MLFLOW_TRACKING_URI"):
        return env
    return f"sqlite:///{project_root() / 'mlflow.db'}"


def _is_local(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def init_store(cfg: "TriadConfig") -> None:
    """Touch the tracking store once: a fresh SQLite file gets its tables; a server is checked reachable."""
    import mlflow

    mlflow.MlflowClient(tracking_uri=tracking_uri(cfg)).search_experiments(max_results=1)


def experiment_name(cfg: "TriadConfig", head: str) -> str:
    return f"{cfg.logger.experiment_prefix}-{head}"


def ensure_experiment(cfg: "TriadConfig", head: str) -> str:
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


def git_commit() -> str:
    """The commit the code ran at, with ``-dirty`` if tracked files had uncommitted changes."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=project_root(), capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=project_root(), capture_output=True, text=True, check=True,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "unknown"


def content_hash(folder: Path) -> str:
    """sha256 over the relative paths and bytes of every file in ``folder`` (order-independent)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def data_version(data_dir: Path) -> str:
    """DVC's hash of a prepared data folder, from ``dvc.lock``; else our own content hash.

    Returns ``md5:<dvc hash>`` when DVC recorded the folder, ``sha256:<hash>`` otherwise (for data
    prepared outside DVC, e.g. by ``triad train`` directly).
    """
    root = project_root()
    lock = root / "dvc.lock"
    try:
        relative = data_dir.resolve().relative_to(root).as_posix()
    except ValueError:
        relative = None
    if relative and lock.is_file():
        stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
        for stage in stages.values():
            for out in stage.get("outs", []):
                if out.get("path") == relative and "md5" in out:
                    return f"md5:{out['md5']}"
    return f"sha256:{content_hash(data_dir)}"


def run_tags(cfg: "TriadConfig", head: "Head", data_dir: Path) -> dict[str, str]:
    """Tags on every training run: code, data and orchestration provenance."""
    from triad import __version__

    tags = {
        "triad.head": head.name,
        "triad.version": __version__,
        "mlflow.source.git.commit": git_commit(),
        "triad.data_version": data_version(data_dir),
        "triad.experiment": cfg.experiment or "default",
        "triad.project": project_id(),
    }
    if flow_run := os.environ.get("TRIAD_FLOW_RUN_ID"):
        tags["prefect.flow_run_id"] = flow_run
    if parent := os.environ.get("TRIAD_PARENT_RUN_ID"):  # a sweep's trial (triad.sweep)
        tags["mlflow.parentRunId"] = parent
    return tags


def project_id() -> str:
    """This checkout on this machine (``host:path``): tells a project's runs from another's on a shared server."""
    import socket

    return f"{socket.gethostname()}:{project_root()}"


def flat_params(cfg: "TriadConfig", head: str) -> dict[str, Any]:
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


# --- registry and gate ----------------------------------------------------------------------------
def current_champion(client, name: str):
    """The model version holding the ``champion`` alias, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def is_better(new: float, old: float, mode: str) -> bool:
    if not math.isfinite(new):
        return False
    if not math.isfinite(old):
        return True
    return new > old if mode == "max" else new < old


class NotComparable(Exception):
    """The champion cannot be scored on the new version's test data (another architecture, a head
    that cannot rescore, a model that no longer loads)."""


def _short(data_version: str | None) -> str:
    return (data_version or "unknown")[:12]


def gate(
    client,
    name: str,
    version: str,
    metric: str,
    value: float,
    mode: str,
    passes: tuple[bool, str],
    data_version_tag: str | None = None,
    rescore: Callable[[Any], float] | None = None,
) -> dict[str, Any]:
    """Move ``champion`` to ``version`` only if it clears the bar and beats the champion.

    Like with like: a champion scored on another data version than the new version's (its
    ``triad.data_version`` tag) is first scored again on the new version's test data by
    ``rescore(champion)``, and the comparison uses that score. A champion that cannot be (``rescore``
    missing or raising ``NotComparable``) is not compared at all: the new version is judged by the
    bar alone, and its reason says why. Both data versions, and the champion's recorded and rescored
    values, are tags on the new version.

    The decision, the compared values and the reason are recorded on the new version as tags and
    in its description, whichever way it goes. A promoted version then settles the alias
    (``settle_champion``), so that two gates racing on one registry end with the best version as
    champion whatever order their reads and writes interleaved in.
    """
    champion = current_champion(client, name)
    ok, bar_reason = passes
    before = None
    if champion is not None:
        before = {"version": str(champion.version), "value": float(champion.tags.get("gate.value", "nan")),
                  "data_version": champion.tags.get("triad.data_version")}
        if data_version_tag and before["data_version"] != data_version_tag:
            before["recorded_value"] = before["value"]
            try:
                if rescore is None:
                    raise NotComparable("no way to score it on other data was given")
                before["value"] = float(rescore(champion))
            except NotComparable as exc:
                before["value"], before["not_comparable"] = float("nan"), str(exc)
    on_data = ""
    if before and "recorded_value" in before and "not_comparable" not in before:
        on_data = (f", rescored on this data {_short(data_version_tag)}; it had {before['recorded_value']:.4f} "
                   f"on its own data {_short(before['data_version'])}")
    if not ok:
        promoted, reason = False, f"did not clear the bar: {bar_reason}"
    elif champion is None:
        promoted, reason = True, "first version to clear the bar"
    elif "not_comparable" in before:
        promoted = True
        reason = (f"champion v{before['version']} was scored on other data ({_short(before['data_version'])}) and "
                  f"cannot be scored on this data ({before['not_comparable']}): judged by the bar alone, {bar_reason}")
    elif is_better(value, before["value"], mode):
        promoted = True
        reason = f"{metric} {value:.4f} beats champion v{before['version']} ({before['value']:.4f}{on_data})"
    else:
        promoted = False
        reason = f"{metric} {value:.4f} does not beat champion v{before['version']} ({before['value']:.4f}{on_data})"
    tags = {
        "gate.metric": metric,
        "gate.mode": mode,
        "gate.value": repr(float(value)),
        "gate.decision": "promoted" if promoted else "rejected",
        "gate.reason": reason,
        "gate.champion_before": before["version"] if before else "none",
        "gate.champion_before_value": repr(before["value"]) if before else "none",
    }
    if data_version_tag:
        tags["triad.data_version"] = data_version_tag
    if before and "recorded_value" in before:
        tags["gate.champion_before_data_version"] = before["data_version"] or "unknown"
        tags["gate.champion_before_recorded_value"] = repr(before["recorded_value"])
    for key, tag_value in tags.items():
        client.set_model_version_tag(name, version, key, tag_value)
    client.update_model_version(name, version, description=f"{'PROMOTED' if promoted else 'REJECTED'}: {reason}")
    champion_after = settle_champion(client, name, mode, data_version_tag) if promoted else (before or {}).get("version")
    if promoted and champion_after != str(version):
        client.set_model_version_tag(name, version, "gate.superseded_by", champion_after)
    return {"model": name, "version": str(version), "promoted": promoted, "reason": reason,
            "champion_before": before, "champion_after": champion_after, "metric": metric, "value": float(value)}


def settle_champion(client, name: str, mode: str, data_version: str | None = None, max_rounds: int = 20) -> str:
    """Point ``champion`` at the best version the gate promoted; return that version.

    Run after a version's ``gate.*`` tags are written. Sequentially, the best promoted version is
    the one the gate just promoted (each promotion beats the champion before it). When two gates
    race (both read "no champion", or the same champion, before either wrote), both promote; each
    then loops here until it reads the alias on the best of all promoted versions, so whichever
    writes last has seen both sets of tags and the alias ends on the best one. Ties go to the
    lower version number, so racing processes agree. The version the alias leaves gets the tag
    ``gate.superseded_by``. To withdraw a champion, set its ``gate.decision`` tag to ``withdrawn``
    before moving the alias. With ``data_version``, only versions scored on that data compete: a
    value on other test data is not comparable.
    """
    for _ in range(max_rounds):
        promoted = [v for v in client.search_model_versions(f"name='{name}'")
                    if v.tags.get("gate.decision") == "promoted"
                    and (data_version is None or v.tags.get("triad.data_version") == data_version)]
        if not promoted:
            raise TransientError(f"no promoted version of {name} is visible yet; run the evaluation again")
        best = promoted[0]
        for candidate in promoted[1:]:
            value, best_value = float(candidate.tags["gate.value"]), float(best.tags["gate.value"])
            if is_better(value, best_value, mode) or (value == best_value and int(candidate.version) < int(best.version)):
                best = candidate
        holder = current_champion(client, name)
        if holder is not None and str(holder.version) == str(best.version):
            if "gate.superseded_by" in best.tags:  # written by a racing gate from a stale read
                client.delete_model_version_tag(name, best.version, "gate.superseded_by")
            return str(best.version)
        client.set_registered_model_alias(name, CHAMPION, best.version)
        if holder is not None:
            client.set_model_version_tag(name, holder.version, "gate.superseded_by", str(best.version))
    raise TransientError(f"the {CHAMPION} alias of {name} kept moving for {max_rounds} rounds; run the evaluation again")


def registry_summary(cfg: "TriadConfig", heads: list[str]) -> list[dict[str, Any]]:
    """Latest version and champion of each head's registered model (for the end-of-run printout)."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(tracking_uri(cfg))
    client = MlflowClient()
    rows = []
    for head in heads:
        name = f"triad-{head}"
        try:
            versions = client.search_model_versions(f"name='{name}'")
        except MlflowException:
            versions = []
        champion = current_champion(client, name)
        latest = max((int(v.version) for v in versions), default=None)
        rows.append({
            "model": name,
            "versions": len(versions),
            "latest": latest,
            "champion": champion.version if champion else None,
            "champion_value": champion.tags.get("gate.value") if champion else None,
            "metric": champion.tags.get("gate.metric") if champion else None,
        })
    return rows


def strict_json(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None: Python writes them as ``NaN`` and
    ``Infinity``, which strict JSON readers (jq, JavaScript, most other languages) refuse."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    return value


def write_json(path: Path, payload: dict) -> None:
    """``payload`` as strict JSON (NaN and infinities as null), keys sorted, one file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(strict_json(payload), indent=2, sort_keys=True, default=str, allow_nan=False) + "\n")
