"""Warm stages (``triad.warm``): a stage run by the flow's warm server is the stage a fresh process runs.

Real processes throughout: a real server (``python -m triad.warm``), real ``triad stage`` clients on the
tiny line head's project, the stage's output bytes compared with a fresh process's.
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tests.line_project import add_line_head
from triad import dag, warm
from triad.config import compose, write_params

pytestmark = pytest.mark.slow


def _digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*")}


def _stage(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["triad", "-v", *args], cwd=project, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def line(project, monkeypatch) -> Path:
    add_line_head(project, monkeypatch)
    write_params(compose([]), project / "params.yaml")
    return project


def test_a_warm_stage_writes_what_a_fresh_process_writes(line, tmp_path, monkeypatch):
    # Fresh processes, with a socket that nothing listens on: the stage runs itself.
    cold_env = dag.stage_environment({warm.ENV: str(tmp_path / "nothing-listens-here.sock")})
    for step in ("prepare", "train"):
        result = _stage(line, cold_env, "stage", step, "line")
        assert result.returncode == 0, result.stderr[-2000:]
        assert "warm server" not in result.stderr
    cold = {"data": _digest(line / "data/line"), "train": _digest(line / "artifacts/line/train")}
    assert cold["train"]  # the fit wrote its model

    with warm.WarmServer(line, dag.stage_environment()) as server:
        env = dag.stage_environment(server.env())
        for step in ("prepare", "train"):
            result = _stage(line, env, "stage", step, "line")
            assert result.returncode == 0, result.stderr[-2000:]
            # the child's own log reaches the client's stderr, and says where it ran
            assert f"running in a fork of the warm server {server.process.pid}" in result.stderr
        # a stage that fails fails the same way, with its message on the client's stderr
        failed = _stage(line, env, "stage", "prepare", "no_such_head")
        fresh = _stage(line, cold_env, "stage", "prepare", "no_such_head")
        assert failed.returncode == fresh.returncode == 2
        assert "no_such_head" in failed.stderr and "no_such_head" in fresh.stderr
        # another import-time environment (torch reads OMP_NUM_THREADS at import) is refused: the caller
        # then runs the stage itself
        monkeypatch.setenv(warm.ENV, server.path)
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert warm.delegate(["stage", "prepare", "line"]) is None
    assert {"data": _digest(line / "data/line"), "train": _digest(line / "artifacts/line/train")} == cold
    assert not Path(server.path).exists()  # stopped and cleaned up


def test_a_client_killed_mid_stage_takes_its_stage_with_it(line):
    write_params(compose(["model.line.max_epochs=100000"]), line / "params.yaml")
    with warm.WarmServer(line, dag.stage_environment()) as server:
        env = dag.stage_environment(server.env())
        assert _stage(line, env, "stage", "prepare", "line").returncode == 0
        client = subprocess.Popen(["triad", "stage", "train", "line"], cwd=line, env=env, stderr=subprocess.PIPE)
        server_process = psutil.Process(server.process.pid)
        deadline = time.monotonic() + 120
        while not server_process.children() and time.monotonic() < deadline:  # the stage's fork
            time.sleep(0.1)
        (child,) = server_process.children()
        time.sleep(1)
        assert child.is_running() and client.poll() is None
        client.send_signal(signal.SIGKILL)  # no clean-up code runs in the client
        client.wait()
        child.wait(timeout=10)  # psutil.TimeoutExpired if the server left it running
        assert not child.is_running()
