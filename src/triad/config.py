"""Configuration: Hydra composes ``conf/``; pydantic validates the result before any work starts.

Two ways in, one schema:
- ``compose(overrides)``: Hydra 1.3 composes ``conf/config.yaml`` with command-line overrides
  (``trainer=gpu model.<head>.lr=0.001 experiment=<name>``).
- ``load_params(path)``: reads ``params.yaml``, the composed config that ``dvc repro`` tracks
  (``triad pipeline`` and ``dvc exp run`` both write it; see the README).

Either way the result is a ``TriadConfig``; a bad key or value raises ``ConfigError`` naming the key
and, for choices, the allowed values.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, create_model, field_validator

from triad.errors import ConfigError
from triad.heads import registry
from triad.schema import StrictModel


class PathsConfig(StrictModel):
    """Where things are written, relative to the project root (the folder holding ``conf/``)."""

    data_dir: str
    artifacts_dir: str
    reports_dir: str
    state_dir: str  # resumable checkpoints, outside DVC's outputs
    mirror_dir: str | None  # else $TRIAD_DATA_MIRROR, else download


class TrainerConfig(StrictModel):
    """Switches for the one Lightning Trainer in ``triad.train``."""

    accelerator: Literal["cpu", "gpu", "auto"]
    devices: int | Literal["auto"]
    num_nodes: int = Field(ge=1)
    strategy: Literal["auto", "ddp", "ddp_spawn", "ddp_find_unused_parameters_true", "fsdp"]
    fsdp_sharding: Literal["FULL_SHARD", "SHARD_GRAD_OP", "HYBRID_SHARD", "NO_SHARD"]  # strategy fsdp
    sync_batchnorm: bool  # batch-norm statistics over all processes (DDP/FSDP)
    slurm_requeue: bool  # under SLURM: on slurm_requeue_signal, checkpoint and requeue the job
    slurm_requeue_signal: Literal["SIGUSR1", "SIGUSR2", "SIGTERM"]  # sbatch --signal=SIGUSR1@90
    precision: Literal["32-true", "bf16-mixed", "16-mixed", "bf16-true"]
    compile: bool
    deterministic: bool
    num_threads: int | None = Field(ge=1)  # torch CPU threads; None = torch's default
    num_workers: int = Field(ge=0)  # DataLoader workers
    gradient_clip_val: float | None = Field(gt=0)
    early_stopping_patience: int | None = Field(ge=1)
    # stop training after this many minutes (a job's wall limit); the last weights are kept and evaluated
    max_time_minutes: float | None = Field(gt=0)
    checkpoint_every_n_steps: int = Field(ge=1)  # resume points within an epoch
    limit_train_batches: float | int | None
    limit_val_batches: float | int | None
    fast_dev_run: bool
    # Lightning's progress bar; auto: on when stderr is a terminal, else one log line per epoch
    # (``triad.callbacks.EpochLog``), so a log redirected to a file holds no carriage-return frames
    enable_progress_bar: bool | Literal["auto"]
    log_every_n_steps: int = Field(ge=1)

    def torch_device(self) -> str:
        """Where work outside the Lightning Trainer runs (a head's own training loops, its evaluation):
        "cuda" when ``accelerator`` is gpu or auto and a GPU is visible, else "cpu"."""
        import torch

        return "cuda" if self.accelerator in ("gpu", "auto") and torch.cuda.is_available() else "cpu"


class LoggerConfig(StrictModel):
    """MLflow tracking. ``tracking_uri`` null means $MLFLOW_TRACKING_URI, else ``sqlite:///mlflow.db``."""

    tracking_uri: str | None
    experiment_prefix: str
    artifact_dir: str  # artifact root for experiments created on a local backend


class ScheduleConfig(StrictModel):
    """When ``triad schedule`` runs the pipeline (``triad schedule --help`` and the README say more).

    ``interval`` (seconds), when set, replaces ``cron``. ``missed``: what a scheduler that starts
    after downtime does about the runs that fell due while nothing served the schedule: ``run_once``
    starts one run at once (the pipeline is idempotent: one run brings every model up to date);
    ``skip`` waits for the next due time.
    """

    name: str
    cron: str
    timezone: str
    interval: int | None = Field(ge=1)
    missed: Literal["run_once", "skip"]

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. UTC, Europe/Berlin)") from None
        return value


class RemoteConfig(StrictModel):
    """A DVC remote shared by the machines that run stages: ``url`` null keeps the data local.

    With a ``url`` (a folder such as ``/shared/triad-dvc``, or ``s3://bucket/prefix`` with ``dvc-s3``
    installed), the flow registers it as the DVC remote ``name`` in ``.dvc/config.local``, pulls a
    stage's missing outputs before deciding whether the stage must run, and pushes what a stage made.
    """

    url: str | None
    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")


class NotifyConfig(StrictModel):
    """Alerts (``triad.notify``; README: Alerts): a JSON message POSTed to ``url`` when a pipeline run
    fails or crashes, naming the failed stages with the last lines of their errors and linking the
    Prefect run and its MLflow runs. ``url`` null (and no ``$TRIAD_NOTIFY_URL``): no alerts.
    ``on_success``: also post each successful run's summary table. ``timeout_s``: how long one post
    may take before it is given up (logged, never raised: an alert never fails or holds up a run).
    """

    url: str | None = Field(pattern=r"^https?://\S+$")
    on_success: bool
    timeout_s: float = Field(gt=0, le=60)


class PipelineConfig(StrictModel):
    """What ``triad pipeline`` runs and how: ``heads`` null means every registered head, in registry order."""

    heads: list[str] | None = Field(min_length=1)
    max_parallel: int = Field(ge=1)  # stages run at once (heads are independent)
    retries: int = Field(ge=0)  # retries of a stage that failed transiently or was killed
    warm_stages: bool  # run stages in forks of one process that has imported torch, Lightning and MLflow (triad.warm)
    schedule: ScheduleConfig
    remote: RemoteConfig
    notify: NotifyConfig

    @field_validator("heads")
    @classmethod
    def _registered_heads(cls, value: list[str] | None) -> list[str] | None:
        known = list(registry())
        unknown = [name for name in value or () if name not in known]
        if unknown:
            raise ValueError(f"unknown head(s) {unknown}; the heads are {', '.join(known)}")
        return value

    @property
    def head_names(self) -> list[str]:
        """The heads this pipeline runs: ``heads``, or every registered head when it is null."""
        return list(self.heads) if self.heads is not None else list(registry())


class _TriadConfig(StrictModel):
    """The spine's sections; ``data`` and ``model`` hold one section per registered head (see ``schema``)."""

    seed: int
    paths: PathsConfig
    trainer: TrainerConfig
    logger: LoggerConfig
    pipeline: PipelineConfig
    experiment: str | None  # name of the experiment config applied, for the record


def _build_schema(heads: tuple[tuple[str, str], ...]) -> type[_TriadConfig]:
    """The whole config's schema for these (name, package) heads: ``data.<name>`` and ``model.<name>``
    are the head's own ``Data`` and ``Model`` schemas, as the head registry (``triad.heads``) lists them."""
    specs = registry()
    sections = {}
    for kind in ("data", "model"):
        fields = {name: (getattr(specs[name], f"{kind}_schema"), ...) for name, _ in heads}
        sections[kind] = (create_model(f"{kind.title()}Section", __base__=StrictModel, **fields), ...)
    return create_model("TriadConfig", __base__=_TriadConfig, **sections)


_schemas: dict[tuple[tuple[str, str], ...], type[_TriadConfig]] = {}


def schema() -> type[_TriadConfig]:
    """The config schema for the heads registered now (built once per set of heads)."""
    key = tuple((name, spec.package) for name, spec in registry().items())
    if key not in _schemas:
        _schemas[key] = _build_schema(key)
    return _schemas[key]


# The schema of the built-in heads (and any in $TRIAD_HEADS at import), for type hints and isinstance checks.
TriadConfig = schema()


def project_root() -> Path:
    """The folder holding ``conf/config.yaml``: $TRIAD_ROOT, else the nearest one above the cwd."""
    if env := os.environ.get("TRIAD_ROOT"):
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "conf" / "config.yaml").is_file():
            return folder
    raise ConfigError(
        f"no conf/config.yaml in {here} or above it. Run triad from the project folder or set TRIAD_ROOT."
    )


def _format_validation(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        if item["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key (check the spelling; see conf/ for the valid keys)")
        else:
            lines.append(f"  {key}: {item['msg']} (got {item.get('input')!r})")
    return "invalid config:\n" + "\n".join(lines)


def validate(raw: dict) -> TriadConfig:
    try:
        return schema().model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc)) from None


def compose_dict(overrides: list[str] | tuple[str, ...] = (), root: Path | None = None) -> dict:
    """Compose ``conf/`` with Hydra and return a plain, resolved dict (not yet validated)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    conf_dir = (root or project_root()) / "conf"
    try:
        with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
            cfg = hydra_compose(config_name="config", overrides=list(overrides))
        return OmegaConf.to_container(cfg, resolve=True)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(f"cannot compose the config: {exc}") from None


def compose(overrides: list[str] | tuple[str, ...] = (), root: Path | None = None) -> TriadConfig:
    return validate(compose_dict(overrides, root))


def load_params(path: Path) -> TriadConfig:
    """Validate a ``params.yaml`` written by ``write_params`` (or by ``dvc exp run``)."""
    if not path.is_file():
        raise ConfigError(f"{path} does not exist. Write it with `triad config --write-params`.")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    return validate(raw or {})


def to_yaml(cfg: TriadConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def write_params(cfg: TriadConfig, path: Path) -> bool:
    """Write ``params.yaml`` atomically; returns whether its content changed."""
    text = "# Composed from conf/ by triad (or by `dvc exp run`). Edit conf/, or this file for `dvc repro`.\n"
    text += to_yaml(cfg)
    if path.is_file() and path.read_text() == text:
        return False
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return True
