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
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from triad import dag, tracking
from triad.config import compose, project_root, write_params


def _retry_if_transient(task, task_run, state) -> bool:
    error = state.result(raise_on_failure=False)
    return isinstance(error, dag.StageFailed) and error.transient


@task(task_run_name="{stage.name}", cache_policy=NO_CACHE, retry_condition_fn=_retry_if_transient)
def run_stage(stage: dag.Stage, root: Path, remote: str | None = None) -> dict[str, Any]:
    """Run one DVC stage if DVC says it changed (pulling and pushing through ``remote`` if given)."""
    return dag.run_if_changed(root, stage, get_run_logger(), remote,
                              env={"TRIAD_FLOW_RUN_ID": str(flow_run.id or "")})


def summary_markdown(root: Path, heads: list[str], results: list[dict[str, Any]], ui: str) -> str:
    """The run's summary table; ``ui`` is the MLflow dashboard the run links point into."""
    lines = ["# triad pipeline", "", "| head | gate metric | value | version | decision | MLflow run |",
             "|---|---|---|---|---|---|"]
    for head in heads:
        registry_file = root / "reports" / head / "registry.json"
        if registry_file.is_file():
            reg = json.loads(registry_file.read_text())
            link = f"[run]({tracking.run_url(reg, ui)})"
            champion = reg.get("champion_after", reg["version"])  # another run may have overtaken it meanwhile
            if reg["promoted"]:
                decision = "champion" if champion == reg["version"] else f"promoted, then overtaken by v{champion}"
            else:
                decision = f"kept v{(reg.get('champion_before') or {}).get('version')}"
            lines.append(f"| {head} | {reg['metric']} | {reg['value']:.4f} | v{reg['version']} | {decision} | {link} |")
        else:
            lines.append(f"| {head} | - | - | - | not evaluated | - |")
    ran = [r["stage"] for r in results if r["status"] == "ran"]
    skipped = [r["stage"] for r in results if r["status"] == "skipped"]
    lines += ["", f"Stages run: {', '.join(ran) or 'none'}.", f"Stages unchanged (skipped): {', '.join(skipped) or 'none'}."]
    return "\n".join(lines)


@flow(name="triad-pipeline", log_prints=True)
def pipeline(overrides: list[str] | None = None) -> dict[str, Any]:
    """Compose the config (``overrides`` as on the command line), write params.yaml, run the DAG."""
    logger = get_run_logger()
    root = project_root()
    cfg = compose(overrides or [])
    if write_params(cfg, root / "params.yaml"):
        logger.info("params.yaml updated from conf/ and overrides %s", overrides or [])
    stages = dag.load_stages(root, heads=cfg.pipeline.heads)
    remote = cfg.pipeline.remote
    if remote.url:
        dag.use_remote(root, remote.name, remote.url)
    stage_task = run_stage.with_options(retries=cfg.pipeline.retries, retry_delay_seconds=2)
    # Stages run side by side; create the tracking store's tables once, here, so that two stages
    # never race to migrate a fresh SQLite file (alembic: "table _alembic_tmp_experiments already exists").
    tracking.init_store(cfg)

    futures: dict[str, Any] = {}
    for stage in stages:
        upstream = [futures[name] for name in stage.upstream if name in futures]
        futures[stage.name] = stage_task.submit(stage, root, remote.name if remote.url else None, wait_for=upstream)
    results = [futures[stage.name].result() for stage in stages]

    ran = [r for r in results if r["status"] == "ran"]
    if not ran:
        logger.info("nothing changed since the last run: no stage ran, nothing was trained")
    uri = tracking.tracking_uri(cfg)
    ui = uri if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"  # a server, else `triad ui`
    markdown = summary_markdown(root, cfg.pipeline.heads, results, ui)
    create_markdown_artifact(key="triad-pipeline-summary", markdown=markdown, description="metrics and registry")
    return {"stages": results, "heads": cfg.pipeline.heads}


def pipeline_with_parallelism(max_parallel: int):
    """The flow with a thread pool as wide as ``pipeline.max_parallel``."""
    return pipeline.with_options(task_runner=ThreadPoolTaskRunner(max_workers=max_parallel))


def scheduled_deployment(overrides: list[str] | None = None, cron: str | None = None):
    """The deployment ``triad schedule`` serves: the flow on the cron of ``pipeline.schedule``."""
    cfg = compose(overrides or [])
    schedule = cfg.pipeline.schedule
    flow = pipeline_with_parallelism(cfg.pipeline.max_parallel)
    return flow.to_deployment(
        name=schedule.name,
        cron=cron or schedule.cron,
        parameters={"overrides": list(overrides or [])},
        description="The triad pipeline on a schedule (conf/pipeline/*.yaml: schedule).",
    )
