"""Two pipelines at once in one project: the second waits for the first, and each registers its own run.

Before the project lock, `triad pipeline model.spread.lr=0.0031` and, two seconds later, the same
with `lr=0.0032` both exited 0 and registered a version each, but both versions pointed to one
MLflow run trained with 0.0032: params.yaml, the stage outputs and the checkpoints were shared.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.line_project import add_line_head

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _pipeline(project: Path, log: Path, *args: str) -> subprocess.Popen:
    """``triad pipeline *args`` on the session's Prefect test server (no temporary server of its own to start)."""
    from prefect.settings import PREFECT_API_URL

    with open(log, "w") as out:
        return subprocess.Popen(
            [str(BIN / "triad"), "pipeline", *args],
            cwd=project,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OMP_NUM_THREADS": "1", "PREFECT_API_URL": PREFECT_API_URL.value()},
        )


def test_a_second_pipeline_waits_for_the_first_and_registers_its_own_run(project, harness, tmp_path, monkeypatch):
    add_line_head(project, monkeypatch)  # a real pipeline of three stages that runs in seconds
    only = "pipeline.heads=[line]"
    lock = project / ".triad" / "pipeline.lock"
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    first = _pipeline(project, logs[0], only, "model.line.lr=0.31")
    deadline = time.monotonic() + 120
    while not (lock.is_file() and f"pid {first.pid}," in lock.read_text()):
        assert first.poll() is None and time.monotonic() < deadline, logs[0].read_text()[-3000:]
        time.sleep(0.2)
    second = _pipeline(project, logs[1], only, "model.line.lr=0.32")

    # Meanwhile --no-wait refuses at once (before any Prefect server starts), naming the running pipeline.
    started = time.monotonic()
    refused = subprocess.run(
        [str(BIN / "triad"), "pipeline", "--no-wait", only], cwd=project, capture_output=True, text=True, timeout=120
    )
    assert refused.returncode == 2, refused.stdout[-2000:] + refused.stderr[-2000:]
    assert f"another pipeline is running in this project (pid {first.pid}," in refused.stderr
    assert time.monotonic() - started < 20

    for process, log in zip((first, second), logs):
        assert process.wait(timeout=600) == 0, log.read_text()[-4000:]
    assert "another pipeline is running in this project" in logs[1].read_text()  # it said why it waited

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    versions = sorted(client.search_model_versions("name='triad-line'"), key=lambda v: int(v.version))
    assert [str(v.version) for v in versions] == ["1", "2"]
    runs = [client.get_run(v.run_id) for v in versions]
    assert len({r.info.run_id for r in runs}) == 2  # two training runs, one per version
    assert [r.data.params["model.line.lr"] for r in runs] == ["0.31", "0.32"]
