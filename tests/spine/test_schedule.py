"""The parts of ``triad schedule`` that need no server: due times, the project lock, refusals, the failure summary.

The schedule firing for real, on both set-ups, is in ``tests/scale/test_schedule.py`` and
``tests/scale/test_services.py``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys

import pytest

from triad.cli import main
from triad.config import compose, project_root
from triad.errors import TriadError
from triad.locks import Busy
from triad.schedule import check_schedule, due_times, project_lock

UTC = dt.timezone.utc


def _due(overrides: list[str], after: dt.datetime, until: dt.datetime) -> list[dt.datetime]:
    return asyncio.run(due_times(compose(overrides).pipeline.schedule, after, until))


def test_due_times_of_a_cron_and_of_an_interval():
    after, until = dt.datetime(2026, 11, 1, 2, 59, tzinfo=UTC), dt.datetime(2026, 11, 4, 3, 0, tzinfo=UTC)
    assert _due([], after, until) == [dt.datetime(2026, 11, d, 3, 0, tzinfo=UTC) for d in (1, 2, 3, 4)]
    assert _due([], dt.datetime(2026, 11, 1, 3, 0, tzinfo=UTC), dt.datetime(2026, 11, 2, 2, 59, tzinfo=UTC)) == []
    berlin = _due(["pipeline.schedule.timezone=Europe/Berlin"], after, until)
    assert [d.astimezone(UTC).hour for d in berlin] == [2, 2, 2]  # 03:00 in Berlin is 02:00 UTC in November
    every = _due(["pipeline.schedule.interval=600"], after, after + dt.timedelta(minutes=35))
    assert every == [after + dt.timedelta(minutes=m) for m in (10, 20, 30)]


def test_a_bad_cron_or_timezone_is_refused_naming_the_key(capsys):
    with pytest.raises(TriadError, match=r"pipeline.schedule.cron='61 \* \* \* \*' is not a cron expression"):
        check_schedule(compose(["pipeline.schedule.cron=61 * * * *"]).pipeline.schedule)
    assert main(["config", "pipeline.schedule.timezone=Mars/Olympus"]) == 2
    assert "pipeline.schedule.timezone" in capsys.readouterr().err


def test_a_second_scheduler_in_one_project_is_refused(tmp_path):
    with project_lock(tmp_path):
        with pytest.raises(Busy, match=rf"already serves this project \(pid {os.getpid()}, started"):
            with project_lock(tmp_path):
                pass
    with project_lock(tmp_path):  # released when its holder is done
        pass


def test_a_failed_stage_heads_the_summary():
    sys.path.insert(0, str(project_root()))
    from flows.pipeline import summary_markdown

    results = [
        {"stage": "prepare_spread", "head": "spread", "status": "ran"},
        {
            "stage": "train_spread",
            "head": "spread",
            "status": "failed",
            "error": "stage train_spread failed with exit code 4",
        },
        {"stage": "evaluate_spread", "head": "spread", "status": "not run"},
    ]
    text = summary_markdown(project_root() / "no-such-reports", ["spread"], results, "http://127.0.0.1:5000")
    assert text.splitlines()[2] == "**FAILED**: `train_spread`: stage train_spread failed with exit code 4"
    assert "Stages failed: train_spread." in text
    assert "Stages not run (an upstream stage failed): evaluate_spread." in text
