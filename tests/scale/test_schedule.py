"""``triad schedule`` on the default set-up (no PREFECT_API_URL), for real: the schedule fires.

One test walks a scheduler's life, each step needing the state the one before left:

1. ``triad schedule --interval 3`` starts the project's own Prefect server and serves the pipeline;
   a one-stage DAG whose stage takes longer than the interval. The first run runs the stage, a later
   one skips it (DVC), and every run due while another was going was cancelled, never run beside it.
2. A second ``triad schedule`` in the same project refuses at once, naming the first.
3. SIGTERM stops the scheduler and its server, cleanly (exit 0, no traceback in the server's log).
4. The stage is made to fail and the scheduler restarted after downtime: it catches up with one run
   at once (``pipeline.schedule.missed=run_once``), which ends Failed, and whose summary names the stage.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.scheduling import (
    BIN,
    flow_runs,
    of_state,
    scheduler_env,
    slow_project,
    start_scheduler,
    stop,
    summary,
    wait_for_line,
    wait_for_runs,
)

pytestmark = pytest.mark.slow
INTERVAL_S = 3
STAGE_S = 6  # longer than the interval: runs fall due while one is going


def _overlapping(runs: list[dict]) -> list[tuple[str, str]]:
    """Pairs of runs that were running at the same time."""
    spans = sorted((r["start_time"], r["end_time"] or "9999", r["name"]) for r in runs if r["start_time"])
    return [(a[2], b[2]) for a, b in zip(spans, spans[1:]) if b[0] < a[1]]


def test_a_schedule_fires_on_the_default_setup_one_run_at_a_time(tmp_path):
    project = slow_project(tmp_path / "project", STAGE_S)
    env = scheduler_env(project, TRIAD_CACHE_DIR=str(tmp_path / "cache"))
    log = tmp_path / "scheduler.log"
    command = ["--interval", str(INTERVAL_S), "pipeline.heads=[spread]"]
    scheduler = start_scheduler(project, env, *command, log=log)
    try:
        line = wait_for_line(log, "Prefect dashboard: http://127.0.0.1:", scheduler, timeout=180)
        api = line.split()[2] + "/api"
        # 1. Two completed runs: the first ran the stage, a later one found it unchanged.
        runs = wait_for_runs(
            api, "nightly", lambda rs: len(of_state(rs, "COMPLETED")) >= 2, scheduler, log, timeout=240
        )
        first, second = of_state(runs, "COMPLETED")[:2]
        assert "Stages run: slow." in summary(api, first)
        assert "Stages unchanged (skipped): slow." in summary(api, second)
        assert (project / "out.txt").read_text() == "1\n"
        assert _overlapping(of_state(runs, "COMPLETED") + of_state(runs, "RUNNING")) == []
        during_first = [
            r for r in of_state(runs, "CANCELLED") if first["start_time"] < r["expected_start_time"] < first["end_time"]
        ]
        assert during_first, f"no run fell due during the {STAGE_S}s run, or it was not cancelled: {runs}"

        # 2. A second scheduler in the same project refuses at once.
        started = time.monotonic()
        second_scheduler = subprocess.run(
            [str(BIN / "triad"), "schedule", *command], cwd=project, env=env, capture_output=True, text=True, timeout=60
        )
        assert second_scheduler.returncode == 2, second_scheduler.stderr
        assert f"already serves this project (pid {scheduler.pid}" in second_scheduler.stderr
        assert time.monotonic() - started < 30
        last_due = max(r["expected_start_time"] for r in flow_runs(api, "nightly") if r["state"]["type"] != "SCHEDULED")
    finally:
        code = stop(scheduler, log)
    # 3. A clean stop: exit 0, the server stopped, and no service of the server failed meanwhile.
    assert code == 0, log.read_text()[-3000:]
    assert "stopped the project's Prefect server" in log.read_text()
    server_log = project / ".triad/scheduler/logs/prefect.log"
    assert "Traceback" not in server_log.read_text(), server_log.read_text()[-3000:]

    # 4. Downtime, then a restart: one catch-up run at once, which fails, says why, and is the only one.
    (project / "tick.txt").write_text("fail\n")
    time.sleep(2 * INTERVAL_S + 1)
    restart_log = tmp_path / "restart.log"
    scheduler = start_scheduler(project, env, *command, log=restart_log)
    try:
        line = wait_for_line(restart_log, "missed runs: ", scheduler, timeout=180)
        assert "running one now to catch up" in line, restart_log.read_text()[-3000:]
        runs = wait_for_runs(
            api,
            "nightly",
            lambda rs: any("catch-up" in r["tags"] and r["state"]["type"] == "FAILED" for r in rs),
            scheduler,
            restart_log,
            timeout=180,
        )
        (catch_up,) = [r for r in runs if "catch-up" in r["tags"]]
        assert catch_up["expected_start_time"] > last_due
        text = summary(api, catch_up)
        assert "**FAILED**: `slow`: stage slow failed with exit code 1" in text, text
        assert "Stages failed: slow." in text
    finally:
        assert stop(scheduler, restart_log) == 0
