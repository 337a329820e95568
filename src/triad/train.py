"""The one training entry for every head: seeding, the Lightning Trainer, checkpoints and resume.

``train(cfg, head)`` builds the head's DataModule and LightningModule, trains them with a Trainer
configured from ``cfg.trainer`` and the head's optimisation settings, logs to MLflow, and writes
``artifacts/<head>/train/`` (``model.pt``: the state_dict; ``run.json``: what was trained). That
folder is a DVC output, so it holds only what the inputs decide (the fingerprint, the data version,
steps and epochs): the same inputs give the same bytes, and an unchanged model retrains nothing
downstream. What differs from one run to the next (the MLflow run, the wall time, whether it
resumed) goes to MLflow and to the run record ``.triad/<head>/runs/<fingerprint>.json``, which
``triad.evaluate`` reads to log into the same run.

Resume: checkpoints go to ``.triad/<head>/<fingerprint>/`` where the fingerprint hashes everything
that shapes the model (seed, trainer, the head's data and model config, the data version). A run
killed part-way resumes from its ``last.ckpt`` and continues the same MLflow run; a changed config
gets a new fingerprint and starts fresh, so a stale checkpoint is never resumed by mistake. Where the
run happens (accelerator, devices, nodes, strategy, launcher) is not in the fingerprint: a run
started on two GPUs resumes on one, or on eight (checkpoints hold the full, unsharded state).

Distributed runs (``trainer=ddp``, ``ddp_multinode``, ``fsdp``; launched by torchrun, srun or
Lightning): every rank trains, only the global rank zero logs to MLflow and writes the artifacts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from triad import distributed, provenance, tracking
from triad.atomic import atomic_dir
from triad.config import TriadConfig, to_yaml
from triad.heads import get_head
from triad.jsonio import write_json
from triad.prepare import require_prepared

if TYPE_CHECKING:
    import lightning as L

    from triad.heads.base import Head

log = logging.getLogger(__name__)

# Trainer switches that change how fast or where, not what is learned; they stay out of the
# fingerprint, so a checkpoint resumes on another number of devices or nodes, or under another launcher.
_NOT_FINGERPRINTED = {
    "enable_progress_bar",
    "num_workers",
    "log_every_n_steps",
    "num_threads",
    "accelerator",
    "devices",
    "num_nodes",
    "strategy",
    "fsdp_sharding",
    "slurm_requeue",
    "slurm_requeue_signal",
}


def fingerprint(cfg: TriadConfig, head: str, data_version: str) -> str:
    trainer = {k: v for k, v in cfg.trainer.model_dump(mode="json").items() if k not in _NOT_FINGERPRINTED}
    payload = {
        "seed": cfg.seed,
        "trainer": trainer,
        "data": getattr(cfg.data, head).model_dump(mode="json"),
        "model": getattr(cfg.model, head).model_dump(mode="json"),
        "data_version": data_version,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def build_trainer(cfg: TriadConfig, head_name: str, checkpoint_dir: Path, logger: Any) -> L.Trainer:
    import lightning as L
    from lightning.pytorch.callbacks import (
        EarlyStopping,
        LearningRateMonitor,
        ModelCheckpoint,
    )

    from triad.callbacks import EpochLog, FiniteLossGuard
    from triad.resumable import ExactResume

    t = cfg.trainer
    optim = getattr(cfg.model, head_name)
    callbacks: list[L.Callback] = [
        ModelCheckpoint(
            dirpath=checkpoint_dir,
            filename="step{step}",
            save_last=True,
            save_top_k=1,
            every_n_train_steps=t.checkpoint_every_n_steps,
        ),
        FiniteLossGuard(head_name),
        ExactResume(cfg.seed),  # each step's draws depend on (seed, step) alone; a resumed epoch goes on where it was
    ]
    if logger is not None:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    if t.early_stopping_patience:
        callbacks.append(EarlyStopping(monitor="val_loss", patience=t.early_stopping_patience, mode="min"))
    progress_bar = show_progress_bar(t.enable_progress_bar)
    if not progress_bar:
        callbacks.append(EpochLog(head_name))
    quiet_lightning()
    return L.Trainer(
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=_strategy(t),
        plugins=_cluster_plugins(t),
        sync_batchnorm=t.sync_batchnorm,
        precision=t.precision,
        deterministic=t.deterministic,
        max_epochs=optim.max_epochs,
        max_steps=optim.max_steps,
        max_time=None if t.max_time_minutes is None else timedelta(minutes=t.max_time_minutes),
        gradient_clip_val=t.gradient_clip_val,
        limit_train_batches=t.limit_train_batches,
        limit_val_batches=t.limit_val_batches,
        fast_dev_run=t.fast_dev_run,
        enable_progress_bar=progress_bar,
        enable_model_summary=progress_bar,  # a log file gets EpochLog's one summary line instead of the table
        log_every_n_steps=t.log_every_n_steps,
        logger=logger if logger is not None else False,
        callbacks=callbacks,
        default_root_dir=checkpoint_dir,
    )


# Lightning warnings about states triad chooses on purpose: each says why it is expected here.
_EXPECTED_WARNINGS = (
    # the checkpoint folder also holds the run record, and a resumed run finds its own checkpoints there
    r"Checkpoint directory .* exists and is not empty",
    # a frozen backbone stays in eval mode (batch-norm statistics fixed) while its head trains
    r"Found \d+ module\(s\) in eval mode at the start of training",
    # a small task has fewer batches an epoch than log_every_n_steps: EpochLog still logs every epoch
    r"The number of training batches \(\d+\) is smaller than the logging interval",
    # inside Lightning itself (its own use of torch's pytree API), nothing a caller can change
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
)


class _NoAdvert(logging.Filter):
    """Drops Lightning's "Tip: ... try installing litlogger" line, printed at every Trainer."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


def quiet_lightning() -> None:
    """One copy of each Lightning log line, in triad's format, and none of its expected warnings.

    Lightning's package logger (``lightning``) has a console handler of its own and also passes every
    record up to the root logger that ``triad`` configures, so each line appeared twice in a log file.
    When the root logger has a handler, Lightning's records go through it alone.
    """
    import warnings

    lightning_logger = logging.getLogger("lightning")
    if logging.getLogger().hasHandlers():
        for handler in list(lightning_logger.handlers):
            lightning_logger.removeHandler(handler)
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _NoAdvert) for f in rank_zero.filters):
        rank_zero.addFilter(_NoAdvert())
    for message in _EXPECTED_WARNINGS:
        warnings.filterwarnings("ignore", message=message)


def show_progress_bar(setting: bool | str) -> bool:
    """``trainer.enable_progress_bar`` resolved: ``auto`` shows Lightning's bar only when stderr is a
    terminal; a log that is a file gets ``EpochLog``'s one line per epoch instead of the bar's frames."""
    if setting == "auto":
        return sys.stderr.isatty()
    return bool(setting)


def _strategy(t) -> Any:
    """Lightning's strategy: its name, or for FSDP a strategy saving full (unsharded) checkpoints.

    Full checkpoints are what lets a run resume on another number of devices.
    """
    if t.strategy != "fsdp":
        return t.strategy
    from lightning.pytorch.strategies import FSDPStrategy

    return FSDPStrategy(sharding_strategy=t.fsdp_sharding, state_dict_type="full")


def _cluster_plugins(t) -> list[Any] | None:
    """Under SLURM: Lightning's SLURMEnvironment, requeueing the job on ``slurm_requeue_signal``.

    Elsewhere Lightning picks the environment itself (TorchElasticEnvironment under torchrun).
    """
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    if not SLURMEnvironment.detect():
        return None
    return [SLURMEnvironment(auto_requeue=t.slurm_requeue, requeue_signal=getattr(signal, t.slurm_requeue_signal))]


def _max_time_reached(trainer: L.Trainer) -> bool:
    """Whether Lightning's Timer (``trainer.max_time_minutes``) ended the fit."""
    from lightning.pytorch.callbacks import Timer

    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    remaining = timer.time_remaining("train") if timer is not None else None
    return remaining is not None and remaining <= 0


def _resume_checkpoint(state: Path) -> Path | None:
    """The newest checkpoint in ``state``: ``last.ckpt``, or the one SLURM's requeue signal wrote."""
    candidates = [p for p in (state / "last.ckpt", *state.glob("hpc_ckpt_*.ckpt")) if p.is_file()]
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None


@dataclass
class _Checkpoints:
    """Where a training run keeps its resume points, and what a killed run left there."""

    fingerprint: str
    data_version: str
    state: Path  # .triad/<head>/<fingerprint>/
    resume: Path | None  # the checkpoint to resume from, if a killed run left one
    previous_run: dict[str, Any] | None  # that run's MLflow run, continued rather than opened anew

    @property
    def run_file(self) -> Path:
        return self.state / "run.json"


def _checkpoints(cfg: TriadConfig, head: Head, data_dir: Path) -> _Checkpoints:
    """Fingerprint the inputs and find what a killed run with the same fingerprint left behind."""
    data_version = provenance.data_version(data_dir)
    fp = fingerprint(cfg, head.name, data_version)
    state = head.dir("state") / fp
    state.mkdir(parents=True, exist_ok=True)
    resume = _resume_checkpoint(state)
    run_file = state / "run.json"
    previous_run = json.loads(run_file.read_text()) if resume and run_file.is_file() else None
    return _Checkpoints(fp, data_version, state, resume, previous_run)


def _open_run(cfg: TriadConfig, head: Head, data_dir: Path, ckpt: _Checkpoints):
    """The MLflow logger of this training (rank zero only; None under fast_dev_run or on other ranks),
    and its run ``{run_id, experiment_id, tracking_uri}``. A resumed training continues its run."""
    from lightning.pytorch.loggers import MLFlowLogger

    if cfg.trainer.fast_dev_run or not distributed.is_global_zero():
        return None, None
    experiment_id = tracking.ensure_experiment(cfg, head.name)
    previous = ckpt.previous_run
    logger = MLFlowLogger(
        experiment_name=tracking.experiment_name(cfg, head.name),
        tracking_uri=tracking.tracking_uri(cfg),
        run_id=previous["run_id"] if previous else None,
        run_name=f"{head.name}-{ckpt.fingerprint[:8]}",
        tags=None if previous else {**tracking.run_tags(cfg, head, data_dir), "triad.fingerprint": ckpt.fingerprint},
    )
    run = {"run_id": logger.run_id, "experiment_id": experiment_id, "tracking_uri": tracking.tracking_uri(cfg)}
    write_json(ckpt.run_file, run)
    if not previous:
        logger.log_hyperparams(tracking.flat_params(cfg, head.name))
        logger.experiment.log_text(logger.run_id, to_yaml(cfg), "config/config.yaml")
        tracking.log_data(logger.experiment, logger.run_id, cfg, head, data_dir)
    return logger, run


def _fit(cfg: TriadConfig, head: Head, data_dir: Path, ckpt: _Checkpoints, logger) -> tuple[L.Trainer, float]:
    """Build the head's DataModule and LightningModule and fit them, resuming if ``ckpt`` says so."""
    import torch

    if ckpt.resume:
        log.warning("resuming %s training from %s", head.name, ckpt.resume)
    datamodule = head.datamodule(data_dir)
    module = head.module(datamodule)
    trainer = build_trainer(cfg, head.name, ckpt.state, logger)
    fit_module = torch.compile(module) if cfg.trainer.compile else module
    started = time.perf_counter()
    trainer.fit(fit_module, datamodule=datamodule, ckpt_path=str(ckpt.resume) if ckpt.resume else None)
    return trainer, time.perf_counter() - started


def _summary(head: Head, ckpt: _Checkpoints, trainer: L.Trainer) -> dict[str, Any]:
    """What the inputs decide about the fit (the DVC output holds only this)."""
    import torch

    global_step = trainer.global_step
    last = ckpt.state / "last.ckpt"
    if global_step == 0 and last.is_file():
        # Under ddp_spawn the workers trained; the main process's trainer never saw their step count,
        # but rank zero's last checkpoint recorded it.
        global_step = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
    return {
        "head": head.name,
        "fingerprint": ckpt.fingerprint,
        "data_version": ckpt.data_version,
        "global_step": int(global_step),
        "epochs": int(trainer.current_epoch),
        "max_time_reached": _max_time_reached(trainer),
    }


def train(cfg: TriadConfig, head_name: str) -> dict[str, Any]:
    """Train ``head_name`` and write ``artifacts/<head>/train/``. Returns the run summary."""
    import lightning as L
    import torch

    head = get_head(head_name, cfg)
    data_dir = head.dir("data")
    require_prepared(data_dir, head_name)
    if cfg.trainer.num_threads:
        torch.set_num_threads(cfg.trainer.num_threads)
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    ckpt = _checkpoints(cfg, head, data_dir)
    logger, run = _open_run(cfg, head, data_dir, ckpt)
    trainer, seconds = _fit(cfg, head, data_dir, ckpt, logger)
    state_dict = trainer.strategy.lightning_module_state_dict()  # every rank: FSDP gathers the shards
    summary = _summary(head, ckpt, trainer)
    record: dict[str, Any] = {
        "fingerprint": ckpt.fingerprint,
        "fit_seconds": round(seconds, 2),
        "resumed_from": str(ckpt.resume) if ckpt.resume else None,
    }
    if summary["max_time_reached"]:
        log.warning(
            "%s training stopped at trainer.max_time_minutes=%s after %d epoch(s); the weights of that "
            "moment are kept and evaluated",
            head_name,
            cfg.trainer.max_time_minutes,
            summary["epochs"],
        )
    if not trainer.is_global_zero:
        return {**summary, **record}
    if logger is not None:
        record.update(run)
        logger.log_metrics({"fit_seconds": seconds}, step=trainer.global_step)
        write_json(run_record_path(head, ckpt.fingerprint), record)
    with atomic_dir(head.dir("artifacts") / "train") as tmp:
        torch.save({"head": head_name, "state_dict": state_dict, **summary}, tmp / "model.pt")
        write_json(tmp / "run.json", summary)
    shutil.rmtree(ckpt.state, ignore_errors=True)  # trained to the end: nothing left to resume
    return {**summary, **record}


def run_record_path(head, fingerprint: str) -> Path:
    """Where training leaves its MLflow run and timings for the evaluation: outside every DVC output."""
    return head.dir("state") / "runs" / f"{fingerprint}.json"
