"""A DVC remote (a local folder) lets data prepared on one machine train on another without re-preparing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from prefect.testing.utilities import prefect_test_harness

from tests.tiny import tiny
from triad import dag
from triad.config import compose, write_params

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@example.org", *args], cwd=cwd,
                   check=True, capture_output=True, text=True)


def _objects(remote: Path) -> set[Path]:
    return {p for p in remote.rglob("*") if p.is_file()}


def test_prepared_data_travels_through_the_remote(project, tmp_path, monkeypatch):
    remote = tmp_path / "dvc-remote"
    overrides = tiny("transfer", extra=(f"pipeline.remote.url={remote}",))
    write_params(compose(overrides), project / "params.yaml")

    # Machine one prepares the data with the flow task's own steps (run, commit, push) and commits dvc.lock.
    (prepare_stage,) = [s for s in dag.load_stages(project, ["transfer"]) if s.name == "prepare_transfer"]
    dag.use_remote(project, "triad", str(remote))
    dag.run(project, prepare_stage)
    dag.commit(project, prepare_stage.name)
    dag.push(project, prepare_stage, "triad")
    pushed = _objects(remote)
    assert pushed, "nothing reached the remote"
    _git(project, "add", "conf", "src", "flows", "dvc.yaml", "dvc.lock", "params.yaml", ".dvc/config")
    _git(project, "commit", "-q", "-m", "prepared transfer data")

    # Machine two: a git clone holds code and dvc.lock but no data; the flow pulls it instead of preparing.
    clone = tmp_path / "clone"
    _git(tmp_path, "clone", "-q", str(project), str(clone))
    assert not (clone / "data/transfer").exists()
    monkeypatch.chdir(clone)
    monkeypatch.setenv("TRIAD_ROOT", str(clone))
    sys.path.insert(0, str(clone))
    from flows.pipeline import pipeline

    with prefect_test_harness(server_startup_timeout=120):
        result = pipeline(overrides=overrides)
    status = {s["stage"]: s["status"] for s in result["stages"]}
    assert status == {"prepare_transfer": "skipped", "evidence_transfer": "ran", "train_transfer": "ran",
                      "evaluate_transfer": "ran"}
    assert (clone / "data/transfer/summary.json").read_text() == (project / "data/transfer/summary.json").read_text()
    assert _objects(remote) > pushed  # machine two pushed what it made (the trained model, the evidence)
    assert "triad" in (clone / ".dvc/config.local").read_text()
