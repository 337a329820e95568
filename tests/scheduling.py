"""Helpers for the tests of ``triad schedule``: a project whose DAG is one slow stage, and the Prefect API read as JSON.

The project holds this repo's code and conf but its own ``dvc.yaml``: one stage, ``slow``, that
sleeps, then copies ``tick.txt`` to ``out.txt`` (exit 3 when ``tick.txt`` says ``fail``). DVC runs it
when ``tick.txt`` changes and skips it otherwise, so a schedule's runs show both cases in seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.conftest import make_project

BIN = Path(sys.executable).parent

SLOW_STAGE = """\
import sys, time
time.sleep(float(sys.argv[1]))
tick = open("tick.txt").read()
if tick.strip() == "fail":
    sys.exit("tick.txt says fail")
open("out.txt", "w").write(tick)
"""


def slow_project(root: Path, seconds: float) -> Path:
    """A project whose pipeline is one DVC stage taking ``seconds``."""
    make_project(root)
    (root / "slow_stage.py").write_text(SLOW_STAGE)
    (root / "dvc.yaml").write_text(
        f"stages:\n  slow:\n    cmd: python slow_stage.py {seconds}\n"
        "    deps: [slow_stage.py, tick.txt]\n    outs: [out.txt]\n"
    )
    (root / "tick.txt").write_text("1\n")
    return root


def scheduler_env(project: Path, **extra: str) -> dict[str, str]:
    """The environment of a user in ``project``: no tracking or Prefect server unless ``extra`` names one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env.update(
        TRIAD_ROOT=str(project),
        PATH=f"{BIN}{os.pathsep}{env['PATH']}",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_RUNNER_POLL_FREQUENCY="2",
        **extra,
    )
    return env


def start_scheduler(project: Path, env: dict[str, str], *args: str, log: Path) -> subprocess.Popen:
    """``triad schedule ARGS`` in ``project``, its output appended to ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [str(BIN / "triad"), "schedule", *args], cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT
        )


def wait_for_line(log: Path, text: str, process: subprocess.Popen, timeout: float) -> str:
    """The first line of ``log`` holding ``text``; fails if the process exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [line for line in log.read_text(errors="replace").splitlines() if text in line]
        if lines:
            return lines[0]
        assert process.poll() is None, f"triad schedule exited ({process.returncode}):\n{log.read_text()[-3000:]}"
        time.sleep(0.5)
    raise AssertionError(f"no {text!r} in the scheduler's output within {timeout:.0f}s:\n{log.read_text()[-3000:]}")


def api_post(api: str, path: str, body: dict) -> list | dict:
    request = urllib.request.Request(
        f"{api}/{path}", data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def flow_runs(api: str, deployment: str) -> list[dict]:
    """The runs of deployment ``triad-pipeline/<deployment>``, oldest due first."""
    runs = api_post(
        api,
        "flow_runs/filter",
        {"deployments": {"name": {"any_": [deployment]}}, "sort": "EXPECTED_START_TIME_ASC", "limit": 200},
    )
    return runs


def wait_for_runs(api: str, deployment: str, done, process: subprocess.Popen, log: Path, timeout: float) -> list[dict]:
    """Poll the deployment's runs until ``done(runs)`` holds."""
    deadline = time.monotonic() + timeout
    runs: list[dict] = []
    while time.monotonic() < deadline:
        runs = flow_runs(api, deployment)
        if done(runs):
            return runs
        assert process.poll() is None, f"triad schedule exited ({process.returncode}):\n{log.read_text()[-3000:]}"
        time.sleep(1)
    states = [(r["name"], r["state"]["type"]) for r in runs]
    raise AssertionError(f"runs not as expected within {timeout:.0f}s: {states}\n{log.read_text()[-3000:]}")


def of_state(runs: list[dict], state: str) -> list[dict]:
    return [r for r in runs if r["state"] and r["state"]["type"] == state]


def summary(api: str, run: dict) -> str:
    """The pipeline summary artifact a flow run wrote."""
    artifacts = api_post(
        api,
        "artifacts/filter",
        {"artifacts": {"key": {"any_": ["triad-pipeline-summary"]}, "flow_run_id": {"any_": [run["id"]]}}},
    )
    assert artifacts, f"flow run {run['name']} wrote no summary artifact"
    return artifacts[0]["data"]


def stop(process: subprocess.Popen, log: Path, timeout: float = 60) -> int:
    """SIGTERM the scheduler and wait for it; returns its exit code."""
    process.terminate()
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(
            f"triad schedule did not stop within {timeout:.0f}s of SIGTERM:\n{log.read_text()[-3000:]}"
        ) from None
