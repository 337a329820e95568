"""The triad pipeline as a Prefect flow.

The DAG is not written here: it is ``dvc.yaml``, read by ``triad.dag.load_stages``. Each DVC stage
becomes one Prefect task that runs only if DVC says the stage changed, so an unchanged stage is
skipped (DVC's lock file is the cache), a killed or transiently failing stage is retried (training
resumes from its last checkpoint), and independent heads run side by side up to
``pipeline.max_parallel``. The run ends with a Prefect artifact summarising metrics and registry
decisions, with links to the MLflow runs.

Run it with ``triad pipeline [overrides]``; serve it on a schedule with ``triad schedule``.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from triad import dag, locks, reconcile, tracking
from triad.config import compose, project_root, write_params
from triad.data.own import REPORT_JSON, report_line
from triad.errors import TriadError


def _retry_if_transient(task, task_run, state) -> bool:
    error = state.result(raise_on_failure=False)
    return isinstance(error, dag.StageFailed) and error.transient


# At most ``pipeline.max_parallel`` stages run at once. The limit is held here, not in the task runner,
# so that it holds however the flow is started: ``triad pipeline``, a deployment's entrypoint
# (``flows/pipeline.py:pipeline``, whose thread pool is unbounded) or ``triad schedule``.
_stage_slots = threading.BoundedSemaphore(1)


@task(task_run_name="{stage.name}", cache_policy=NO_CACHE, retry_condition_fn=_retry_if_transient)
def run_stage(stage: dag.Stage, root: Path, remote: str | None = None, force: str | None = None) -> dict[str, Any]:
    """Run one DVC stage if DVC says it changed, or ``force`` says why it must run anyway
    (pulling and pushing through ``remote`` if given)."""
    with _stage_slots:
        return dag.run_if_changed(
            root, stage, get_run_logger(), remote, env={"TRIAD_FLOW_RUN_ID": str(flow_run.id or "")}, force=force
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
    """One or more stages failed; the flow run ends Failed after writing its summary."""

    exit_code = 1


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


@flow(name="triad-pipeline", log_prints=True)
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

    futures: dict[str, Any] = {}
    for stage in stages:
        upstream = [futures[name] for name in stage.upstream if name in futures]
        futures[stage.name] = stage_task.submit(
            stage, root, remote.name if remote.url else None, force.get(stage.name), wait_for=upstream
        )
    results = [_outcome(stage, futures[stage.name]) for stage in stages]

    ran = [r for r in results if r["status"] == "ran"]
    if not ran and all(r["status"] == "skipped" for r in results):
        logger.info("nothing changed since the last run: no stage ran, nothing was trained")
    uri = tracking.tracking_uri(cfg)
    ui = uri if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"  # a server, else `triad ui`
    markdown = summary_markdown(
        root / cfg.paths.reports_dir, cfg.pipeline.head_names, results, ui, data=root / cfg.paths.data_dir
    )
    create_markdown_artifact(key="triad-pipeline-summary", markdown=markdown, description="metrics and registry")
    failed = [r for r in results if r["status"] == "failed"]
    if failed:
        raise PipelineFailed(
            "; ".join(f"{r['stage']}: {r['error']}" for r in failed) + " (the run's summary artifact lists every stage)"
        )
    return {"stages": results, "heads": cfg.pipeline.head_names}


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
