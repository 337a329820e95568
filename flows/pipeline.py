"""The triad pipeline as a Prefect flow.

The DAG is not written here: it is ``dvc.yaml``, read by ``triad.dag.load_stages``. Each DVC stage
becomes one Prefect task that runs only if DVC says the stage changed, so an unchanged stage is
skipped (DVC's lock file is the cache), a killed or transiently failing stage is retried (training
resumes from its last checkpoint), and independent heads run side by side up to
``pipeline.max_parallel``. The run ends with a Prefect artifact summarising metrics and registry
decisions, with links to the MLflow runs. A run that fails or crashes posts an alert to
``pipeline.notify.url`` (``triad.notify``): one JSON message naming each stage that failed after
its retries, with the last lines of its error, and links to the Prefect run and its MLflow runs; with
``pipeline.notify.on_success``, a successful run posts its summary table.

Run it with ``triad pipeline [overrides]``; serve it on a schedule with ``triad schedule``.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from triad import dag, locks, notify, reconcile, tracking, warm
from triad.config import compose, project_root, write_params
from triad.data.own import REPORT_JSON, report_line
from triad.errors import TriadError


class _NoCompletedLine(logging.Filter):
    """Drops Prefect's "Finished in state Completed()" after every stage: the stage's own
    "done in N s" line says it, with its time. Failures and every other state are kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Finished in state Completed()"


logging.getLogger("prefect.task_runs").addFilter(_NoCompletedLine())


def _retry_if_transient(task, task_run, state) -> bool:
    error = state.result(raise_on_failure=False)
    return isinstance(error, dag.StageFailed) and error.transient


# --- alerts (triad.notify) ------------------------------------------------------------------------
# The stages that failed after their last retry, per flow run: a stage's on_failure hook records
# them (Prefect runs it once the retries are spent) and the flow's failure hook posts them, so one
# failed run sends one message however many stages failed. Stages run in threads of the flow's process.
_failed_stages: dict[str, list[dict[str, Any]]] = {}
_failed_lock = threading.Lock()


def _record_failed_stage(task, task_run, state) -> None:
    """A stage's ``on_failure`` hook: keep its error, and the last lines of it, for the run's alert."""
    error = state.result(raise_on_failure=False)
    if not isinstance(error, BaseException):
        error = state.message or state.name
    row = {
        "stage": task_run.name,
        "task_run_id": str(task_run.id),
        "error": notify.first_line(error),
        "error_tail": notify.error_tail(error),
        **notify.prefect_links("task-run", str(task_run.id)),
    }
    with _failed_lock:
        _failed_stages.setdefault(str(task_run.flow_run_id), []).append(row)


def _flow_config(flow_run):
    """The config a flow run composed (its ``overrides``), or conf/'s own if those no longer compose."""
    try:
        return compose(list((flow_run.parameters or {}).get("overrides") or []))
    except Exception:
        return compose([])


def _alert(flow_run, event: str, error: BaseException | str | None = None, summary: str | None = None) -> None:
    """Post this flow run's alert, if alerts are on (``pipeline.notify``); never raises."""
    with _failed_lock:
        failed = _failed_stages.pop(str(flow_run.id), [])
    try:
        cfg = _flow_config(flow_run)
        settings = cfg.pipeline.notify
        url = notify.target_url(settings.url)
        if not url or (event == "succeeded" and not settings.on_success):
            return
        run = {
            "flow": "triad-pipeline",
            "name": flow_run.name,
            "id": str(flow_run.id),
            "state": event,
            "scheduled": flow_run.deployment_id is not None,
            "overrides": list((flow_run.parameters or {}).get("overrides") or []),
            **notify.prefect_links("flow-run", str(flow_run.id)),
        }
        mlflow_runs = notify.mlflow_runs(
            tracking.tracking_uri(cfg), str(flow_run.id), _dashboard(cfg), timeout=settings.timeout_s
        )
        message = notify.message(
            event,
            run,
            failed_stages=failed,
            error=error,
            mlflow=mlflow_runs,
            summary=summary,
            project=str(project_root()),
        )
        notify.post(url, message, settings.timeout_s)
    except Exception as exc:  # an alert never changes how the run ends
        notify.log.warning("no alert sent: %s", notify.first_line(exc))


def _alert_failed(flow, flow_run, state) -> None:
    """The flow's ``on_failure`` and ``on_crashed`` hook: one alert naming the failed stages."""
    error = state.result(raise_on_failure=False)
    if not isinstance(error, BaseException):
        error = state.message or state.name
    _alert(flow_run, "crashed" if state.is_crashed() else "failed", error, getattr(error, "summary", None))


def _alert_succeeded(flow, flow_run, state) -> None:
    """The flow's ``on_completion`` hook: the summary table, when ``pipeline.notify.on_success``."""
    result = state.result(raise_on_failure=False)
    _alert(flow_run, "succeeded", summary=result.get("summary") if isinstance(result, dict) else None)


# At most ``pipeline.max_parallel`` stages run at once. The limit is held here, not in the task runner,
# so that it holds however the flow is started: ``triad pipeline``, a deployment's entrypoint
# (``flows/pipeline.py:pipeline``, whose thread pool is unbounded) or ``triad schedule``.
_stage_slots = threading.BoundedSemaphore(1)
# The run's warm server (``triad.warm``, ``pipeline.warm_stages``): started by the first stage that runs.
_warm_stages = warm.OnFirstUse(Path("."), enabled=False)


@task(
    task_run_name="{stage.name}",
    cache_policy=NO_CACHE,
    retry_condition_fn=_retry_if_transient,
    on_failure=[_record_failed_stage],
)
def run_stage(stage: dag.Stage, root: Path, remote: str | None = None, force: str | None = None) -> dict[str, Any]:
    """Run one DVC stage if DVC says it changed, or ``force`` says why it must run anyway
    (pulling and pushing through ``remote`` if given)."""
    env = {"TRIAD_FLOW_RUN_ID": str(flow_run.id or "")}
    with _stage_slots:
        return dag.run_if_changed(
            root, stage, get_run_logger(), remote, env=env, force=force, stage_env=_warm_stages.env
        )


def summary_markdown(
    reports: Path, heads: list[str], results: list[dict[str, Any]], ui: str, data: Path | None = None
) -> str:
    """The run's summary table from ``reports/<head>/registry.json``; ``ui`` is the MLflow dashboard the
    run links point into. With ``data`` (the prepared-data folder), a line per head whose prepare step
    wrote a data report (a user's own data): its source, sizes and problems.

    A stage's result has ``status`` ran, skipped, failed (with ``error``) or not run (an upstream
    stage failed); failures head the summary so that a failed scheduled run says what broke.
    """
    lines = ["# triad pipeline", ""]
    failed = [r for r in results if r["status"] == "failed"]
    if failed:
        lines += ["**FAILED**: " + "; ".join(f"`{r['stage']}`: {r['error']}" for r in failed), ""]
    lines += ["| head | model | gate metric | value | version | decision | MLflow run |", "|---" * 7 + "|"]
    for head in heads:
        registry_file = reports / head / "registry.json"
        if registry_file.is_file():
            reg = json.loads(registry_file.read_text())
            link = f"[run]({tracking.run_url(reg, ui)})"
            champion = reg.get("champion_after", reg["version"])  # another run may have overtaken it meanwhile
            if reg["promoted"]:
                decision = "champion" if champion == reg["version"] else f"promoted, then overtaken by v{champion}"
            else:
                decision = f"kept v{(reg.get('champion_before') or {}).get('version')}"
            model = reg.get("model", "-")
            lines.append(
                f"| {head} | {model} | {reg['metric']} | {reg['value']:.4f} | v{reg['version']} | {decision} | {link} |"
            )
        else:
            lines.append(f"| {head} | - | - | - | - | not evaluated | - |")
    lines.append("")
    reports_of_data = [(head, data / head / REPORT_JSON) for head in heads] if data else []
    reports_of_data = [(head, path) for head, path in reports_of_data if path.is_file()]
    if reports_of_data:
        lines += ["Data (each head's `data_report.md` is in its MLflow run, under `data/`):"]
        lines += [f"- {head}: {report_line(json.loads(path.read_text()))}" for head, path in reports_of_data]
        lines.append("")
    for status, label in (
        ("ran", "Stages run"),
        ("skipped", "Stages unchanged (skipped)"),
        ("failed", "Stages failed"),
        ("not run", "Stages not run (an upstream stage failed)"),
    ):
        names = [r["stage"] for r in results if r["status"] == status]
        if names or status in ("ran", "skipped"):
            lines.append(f"{label}: {', '.join(names) or 'none'}.")
    return "\n".join(lines)


class PipelineFailed(TriadError):
    """One or more stages failed; the flow run ends Failed after writing its summary (``summary``)."""

    exit_code = 1

    def __init__(self, message: str, summary: str | None = None):
        super().__init__(message)
        self.summary = summary


def _outcome(stage: dag.Stage, future) -> dict[str, Any]:
    """A finished stage task as a result row: its own result, or why it has none."""
    future.wait()
    state = future.state
    if state.is_completed():
        return future.result()
    if state.is_failed() or state.is_crashed():
        error = future.result(raise_on_failure=False)
        return {
            "stage": stage.name,
            "head": stage.head,
            "status": "failed",
            "error": str(error) if isinstance(error, BaseException) else (state.message or state.name),
        }
    return {"stage": stage.name, "head": stage.head, "status": "not run"}


def pipeline_lock(root: Path, cfg) -> Path:
    """The file whose lock a running pipeline holds: one pipeline at a time per project."""
    return root / cfg.paths.state_dir / "pipeline.lock"


def busy_message(theirs: str) -> str:
    return (
        f"another pipeline is running in this project ({theirs}). Wait for it, "
        "or run again without --no-wait to queue behind it."
    )


@flow(
    name="triad-pipeline",
    log_prints=True,
    on_failure=[_alert_failed],
    on_crashed=[_alert_failed],
    on_completion=[_alert_succeeded],
)
def pipeline(overrides: list[str] | None = None, wait: bool = True) -> dict[str, Any]:
    """Compose the config (``overrides`` as on the command line), write params.yaml, run the DAG.

    One pipeline runs at a time in a project: params.yaml, the stages' outputs and the checkpoints
    are the project's, so a second pipeline started meanwhile (another ``triad pipeline``, a
    scheduled run) waits for the first, saying which one it waits for; with ``wait=False`` it
    refuses at once. Either way, what a pipeline registers was trained with its own settings.
    """
    logger = get_run_logger()
    root = project_root()
    cfg = compose(overrides or [])
    holder = locks.describe(f"flow run {flow_run.name or '-'} ({flow_run.id or 'no id'}), overrides {overrides or []}")
    with locks.exclusive(
        pipeline_lock(root, cfg),
        holder,
        wait=wait,
        refuse=busy_message,
        waiting=lambda theirs: logger.warning(
            "another pipeline is running in this project (%s): waiting for it to finish (--no-wait refuses instead)",
            theirs,
        ),
    ):
        return _run_dag(root, cfg, overrides or [])


def _run_dag(root: Path, cfg, overrides: list[str]) -> dict[str, Any]:
    logger = get_run_logger()
    if write_params(cfg, root / "params.yaml"):
        logger.info("params.yaml updated from conf/ and overrides %s", overrides)
    stages = dag.load_stages(root, heads=cfg.pipeline.head_names)
    remote = cfg.pipeline.remote
    if remote.url:
        dag.use_remote(root, remote.name, remote.url)
    stage_task = run_stage.with_options(retries=cfg.pipeline.retries, retry_delay_seconds=2)
    global _stage_slots
    _stage_slots = threading.BoundedSemaphore(cfg.pipeline.max_parallel)
    # Stages run side by side; create the tracking store's tables once, here, so that two stages
    # never race to migrate a fresh SQLite file (alembic: "table _alembic_tmp_experiments already exists").
    tracking.init_store(cfg)
    closed = reconcile.close_abandoned_runs(cfg, root, cfg.pipeline.head_names)
    if closed:
        logger.warning("marked %d MLflow run(s) left RUNNING by a killed pipeline as KILLED: %s", len(closed), closed)
    force = {}
    for head, why in reconcile.lost_registrations(cfg, root, cfg.pipeline.head_names).items():
        registry = f"{cfg.paths.reports_dir}/{head}/registry.json"
        for stage in stages:
            if registry in stage.outs:
                force[stage.name] = f"{why}: evaluating and registering again"
                logger.warning("%s: %s", stage.name, force[stage.name])

    global _warm_stages
    _warm_stages = warm.OnFirstUse(root, enabled=cfg.pipeline.warm_stages)
    futures: dict[str, Any] = {}
    try:
        for stage in stages:
            upstream = [futures[name] for name in stage.upstream if name in futures]
            futures[stage.name] = stage_task.submit(
                stage, root, remote.name if remote.url else None, force.get(stage.name), wait_for=upstream
            )
        results = [_outcome(stage, futures[stage.name]) for stage in stages]
    finally:
        _warm_stages.stop()

    ran = [r for r in results if r["status"] == "ran"]
    if not ran and all(r["status"] == "skipped" for r in results):
        logger.info("nothing changed since the last run: no stage ran, nothing was trained")
    markdown = summary_markdown(
        root / cfg.paths.reports_dir, cfg.pipeline.head_names, results, _dashboard(cfg), data=root / cfg.paths.data_dir
    )
    create_markdown_artifact(key="triad-pipeline-summary", markdown=markdown, description="metrics and registry")
    failed = [r for r in results if r["status"] == "failed"]
    if failed:
        raise PipelineFailed(
            "; ".join(f"{r['stage']}: {r['error']}" for r in failed)
            + " (the run's summary artifact lists every stage)",
            summary=markdown,
        )
    return {"stages": results, "heads": cfg.pipeline.head_names, "summary": markdown}


def _dashboard(cfg) -> str:
    """The MLflow UI that run links point into: the tracking server, else where `triad ui` serves."""
    uri = tracking.tracking_uri(cfg)
    return uri if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"


def scheduled_deployment(overrides: list[str] | None = None):
    """The deployment ``triad schedule`` serves: this flow on ``pipeline.schedule``, one run at a time.

    The schedule is ``interval`` seconds when set, else ``cron``, in ``timezone``. A run that falls
    due while another run of the deployment is still going is cancelled, not queued: the pipeline is
    idempotent, so the next due run after the long one ends does all the work a queued one would
    have done, and a queue behind a slow run would only replay it. The limit is held by the Prefect
    server, so it also holds between two schedulers serving one deployment.
    """
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.schedules import Cron, Interval

    schedule = compose(overrides or []).pipeline.schedule
    if schedule.interval:
        when = Interval(schedule.interval, timezone=schedule.timezone)
    else:
        when = Cron(schedule.cron, timezone=schedule.timezone)
    return pipeline.to_deployment(
        name=schedule.name,
        schedules=[when],
        parameters={"overrides": list(overrides or [])},
        concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW),
        description="The triad pipeline on a schedule (conf/pipeline/default.yaml: schedule); one run at a time, "
        "a run due while another is going is cancelled.",
    )
