"""A DVC remote (a local folder) lets data prepared on one machine train on another without re-preparing.

It calls ``dag.run_if_changed``, the whole body of the flow's stage task (pull missing outputs, ask
DVC, run, commit, push), directly: the test needs no Prefect server. The head is the tiny line head
(``tests/line_head``), whose training depends on its prepared data alone.
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest

from tests.line_project import add_line_head
from triad import dag
from triad.config import compose, write_params

pytestmark = pytest.mark.slow


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.org", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    )


def _objects(remote: Path) -> set[Path]:
    return {p for p in remote.rglob("*") if p.is_file()}


def test_prepared_data_travels_through_the_remote(project, tmp_path, monkeypatch):
    remote = tmp_path / "dvc-remote"
    add_line_head(project, monkeypatch)
    write_params(compose([f"pipeline.remote.url={remote}"]), project / "params.yaml")

    log = logging.getLogger("test_remote")

    # Machine one prepares the data as the flow's stage task does (run, commit, push) and commits dvc.lock.
    stages = {s.name: s for s in dag.load_stages(project, ["line"])}
    dag.use_remote(project, "triad", str(remote))
    assert dag.run_if_changed(project, stages["prepare_line"], log, "triad")["status"] == "ran"
    pushed = _objects(remote)
    assert pushed, "nothing reached the remote"
    _git(project, "add", "conf", "src", "flows", "line_head", "dvc.yaml", "dvc.lock", "params.yaml", ".dvc/config")
    _git(project, "commit", "-q", "-m", "prepared line data")

    # Machine two: a git clone holds code and dvc.lock but no data. The stage task pulls the missing
    # data, DVC then finds preparation up to date (not run again), and training runs on the pulled data.
    clone = tmp_path / "clone"
    _git(tmp_path, "clone", "-q", str(project), str(clone))
    assert not (clone / "data/line").exists()
    monkeypatch.chdir(clone)
    monkeypatch.setenv("TRIAD_ROOT", str(clone))
    dag.use_remote(clone, "triad", str(remote))
    assert dag.run_if_changed(clone, stages["prepare_line"], log, "triad")["status"] == "skipped"
    assert (clone / "data/line/summary.json").read_text() == (project / "data/line/summary.json").read_text()
    assert dag.run_if_changed(clone, stages["train_line"], log, "triad")["status"] == "ran"
    assert (clone / "artifacts/line/train/model.pt").is_file()
    assert _objects(remote) > pushed  # the trained model went up for the next machine (evaluation)
