"""``triad schedule``: the pipeline on a schedule that fires, one run at a time.

In order, ``serve`` does this:

1. Takes the project's scheduler lock (``<state_dir>/scheduler/scheduler.lock``, an ``flock``): a
   second ``triad schedule`` in the same project refuses at once and names the first one's pid.
2. Uses the Prefect server at ``PREFECT_API_URL`` when it is set (``triad services up`` exports it).
   Otherwise it starts the project's own Prefect server, scheduler service included, on SQLite in
   ``<state_dir>/scheduler`` (``triad.services.local_prefect_up``), and stops it on the way out.
   (Prefect's temporary server, which a client starts when no URL is set, runs no scheduler: a
   schedule served on it never fires.)
3. Registers the deployment (``flows/pipeline.py: scheduled_deployment``): deployment concurrency
   limit 1, a run that falls due while another is going is cancelled by the server.
4. Catches up after downtime as ``pipeline.schedule.missed`` says (``catch_up``).
5. Serves the deployment with Prefect's runner, which starts each due run in its own process, until
   Ctrl-C or SIGTERM; Prefect pauses the deployment's schedule on the way out, so the dashboard
   shows that nothing serves it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from triad import locks
from triad.errors import TriadError

LOCK_FILE = "scheduler.lock"


def scheduler_home(root: Path, state_dir: str) -> Path:
    return root / state_dir / "scheduler"


@contextmanager
def project_lock(home: Path) -> Iterator[None]:
    """Hold the project's scheduler lock (``home/scheduler.lock``) while the block runs; refuse at once
    (``triad.locks.Busy``) if another ``triad schedule`` holds it."""
    with locks.exclusive(
        home / LOCK_FILE,
        locks.describe("triad schedule"),
        wait=False,
        refuse=lambda theirs: (
            f"another `triad schedule` already serves this project ({theirs}); "
            f"two would run the pipeline twice. Stop it first (Ctrl-C in its terminal, or kill the pid)."
        ),
    ):
        yield


async def close_orphans(client, deployment_id) -> list[str]:
    """Mark the deployment's runs left PENDING or RUNNING by a scheduler that died as CRASHED.

    Called at start on the project's own server, where no other scheduler can be running them (the
    project lock): such a run still holds the deployment's concurrency slot, so every new run would
    be cancelled as overlapping it until Prefect's lease on the slot ran out.
    """
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.states import Crashed

    runs = await client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(
                type=FlowRunFilterStateType(any_=[StateType.PENDING, StateType.RUNNING, StateType.CANCELLING])
            )
        ),
        sort=FlowRunSort.EXPECTED_START_TIME_ASC,
        limit=200,
    )  # the server refuses null sort or limit
    for run in runs:
        await client.set_flow_run_state(
            run.id,
            Crashed(message="the scheduler running it stopped before it ended; marked when the next scheduler started"),
            force=True,
        )
    return [run.name for run in runs]


def _server_schedule(schedule, anchor: dt.datetime | None = None):
    """``pipeline.schedule`` as a Prefect server schedule, which can list due times."""
    from prefect.server.schemas.schedules import CronSchedule, IntervalSchedule

    if schedule.interval:
        return IntervalSchedule(
            interval=dt.timedelta(seconds=schedule.interval),
            timezone=schedule.timezone,
            anchor_date=anchor or dt.datetime.now(dt.timezone.utc),
        )
    return CronSchedule(cron=schedule.cron, timezone=schedule.timezone)


def check_schedule(schedule) -> None:
    """Refuse a cron expression Prefect cannot read, before any server starts."""
    if schedule.interval:
        return
    try:
        _server_schedule(schedule)
    except ValueError as exc:
        raise TriadError(
            f"pipeline.schedule.cron={schedule.cron!r} is not a cron expression Prefect can read "
            f"(five fields: minute hour day-of-month month day-of-week, e.g. '0 3 * * *'): "
            f"{str(exc).splitlines()[-1]}"
        ) from None


async def due_times(schedule, after: dt.datetime, until: dt.datetime, limit: int = 1000) -> list[dt.datetime]:
    """The times in ``(after, until]`` at which ``schedule`` falls due (at most ``limit``)."""
    dates = await _server_schedule(schedule, anchor=after).get_dates(n=limit, start=after, end=until)
    return [d for d in dates if after < d <= until]


async def catch_up(client, deployment_id, schedule, now: dt.datetime | None = None) -> str:
    """Deal with runs that fell due while no scheduler served the deployment; return what was done.

    Missed runs are the deployment's runs still waiting in a Scheduled state with a due time in the
    past (a scheduler that was killed leaves them), and the due times since the deployment's last
    run that have no run at all (a scheduler that stopped cleanly pauses the schedule, and Prefect
    then deletes its future runs). ``schedule.missed``: ``run_once`` keeps or starts one run now and
    cancels the other waiting ones; ``skip`` cancels every waiting one and waits for the next due time.
    """
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterExpectedStartTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.states import Cancelled

    now = now or dt.datetime.now(dt.timezone.utc)
    of_deployment = DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
    waiting = await client.read_flow_runs(
        deployment_filter=of_deployment,
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])),
            expected_start_time=FlowRunFilterExpectedStartTime(before_=now),
        ),
        sort=FlowRunSort.EXPECTED_START_TIME_DESC,
        limit=200,
    )
    last = await client.read_flow_runs(
        deployment_filter=of_deployment,
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(not_any_=[StateType.SCHEDULED]))
        ),
        sort=FlowRunSort.EXPECTED_START_TIME_DESC,
        limit=1,
    )
    last_time = last[0].expected_start_time if last else None
    unrun = await due_times(schedule, last_time, now) if last_time else []
    missed = max(len(waiting), len(unrun))
    if missed == 0:
        return "no runs were missed"
    since = f" since the last run (due {last_time:%Y-%m-%d %H:%M:%S %Z})" if last_time else ""
    keep = waiting[:1] if schedule.missed == "run_once" else []
    for run in waiting[len(keep) :]:
        await client.set_flow_run_state(
            run.id,
            Cancelled(message=f"missed while no scheduler served it; pipeline.schedule.missed={schedule.missed}"),
            force=True,
        )
    what = f"{missed} run(s) fell due while no scheduler served this deployment{since}"
    if schedule.missed == "skip":
        return f"{what}: skipped (pipeline.schedule.missed=skip); the next run is at its next due time"
    if not keep:
        run = await client.create_flow_run_from_deployment(deployment_id, tags=["catch-up"])
        keep = [run]
    return f"{what}: running one now to catch up, {keep[0].name!r} (pipeline.schedule.missed=run_once)"


async def _serve(deployment, schedule, own_server: bool) -> None:
    """Register ``deployment``, catch up, and run Prefect's runner until SIGINT or SIGTERM.

    The signals only set an event here; the runner is then stopped from inside the event loop, so
    it pauses the schedule and ends its loops cleanly. (Prefect's own SIGTERM handler exits from
    inside the loop, with tracebacks, and a plain SIGINT may land in the middle of a run's start.)
    """
    from prefect.client.orchestration import get_client
    from prefect.runner import Runner

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    class Runner_(Runner):
        def handle_sigterm(self, *args, **kwargs) -> None:  # installed by Runner.start for SIGTERM
            loop.call_soon_threadsafe(stop.set)

    runner = Runner_(pause_on_shutdown=True, limit=None)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    deployment_id = await runner.aadd_deployment(deployment)
    async with get_client() as client:
        if own_server and (orphans := await close_orphans(client, deployment_id)):
            print(f"marked run(s) {', '.join(orphans)} CRASHED: the scheduler running them had stopped", flush=True)
        print(f"missed runs: {await catch_up(client, deployment_id, schedule)}", flush=True)
    serving = asyncio.create_task(runner.start())
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({serving, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if not serving.done():
        print("stopping: pausing the schedule and cancelling the run in progress, if any", flush=True)
        await runner.astop()
        await serving
    stopped.cancel()


def serve(overrides: list[str]) -> int:
    """``triad schedule [overrides]``: serve the pipeline on ``pipeline.schedule`` until interrupted."""
    from triad import services
    from triad.config import compose, project_root

    cfg = compose(overrides)  # a bad config fails now, not at 3 a.m.
    schedule = cfg.pipeline.schedule
    check_schedule(schedule)
    root = project_root()
    home = scheduler_home(root, cfg.paths.state_dir)
    with project_lock(home):
        api = os.environ.get("PREFECT_API_URL")
        external = bool(api)
        started = False
        if not api:
            print(
                f"starting the project's Prefect server (SQLite in {home}; log: {home / 'logs' / 'prefect.log'})",
                flush=True,
            )
            api, started = services.local_prefect_up(home)
            os.environ["PREFECT_API_URL"] = api  # the runner, and the flow runs it starts, use it
        try:
            from prefect.settings import PREFECT_API_URL, temporary_settings

            os.chdir(root)  # the runner starts each flow run from here (flows/pipeline.py:pipeline)
            from flows.pipeline import scheduled_deployment

            deployment = scheduled_deployment(overrides)
            when = (
                f"every {schedule.interval} s"
                if schedule.interval
                else f"on cron {schedule.cron!r} ({schedule.timezone})"
            )
            print(
                f"Prefect dashboard: {api.removesuffix('/api')}  (deployment triad-pipeline/{deployment.name})\n"
                f"serving the pipeline {when}, one run at a time: a run due while another is going is skipped; "
                f"after downtime: {schedule.missed}. Ctrl-C stops it.",
                flush=True,
            )
            with temporary_settings(updates={PREFECT_API_URL: api}):
                asyncio.run(_serve(deployment, schedule, own_server=not external))
        except KeyboardInterrupt:  # a second Ctrl-C while stopping
            pass
        finally:
            if started:
                _flush_prefect_logs()  # before the server goes: else the last lines fail to send at exit
                services.local_prefect_down(home)
                print("stopped the project's Prefect server", flush=True)
    return 0


def _flush_prefect_logs() -> None:
    try:
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=5)
    except Exception:  # nothing was logged to the API, or it is gone already: nothing to lose here
        pass
