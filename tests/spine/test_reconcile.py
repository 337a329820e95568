"""When a pipeline starts, the tracking store and DVC are made to agree.

Runs a killed pipeline left RUNNING are closed, except those a checkpoint resumes; a registration
the tracking store lost is noticed and made again.
"""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient

from tests.tiny import tiny
from triad import dag, provenance, reconcile, tracking
from triad.config import compose, write_params
from triad.evaluate import evaluate
from triad.prepare import prepare
from triad.train import train


def test_abandoned_runs_of_this_project_are_marked_killed(project):
    cfg = compose([])
    client = MlflowClient(tracking_uri=tracking.tracking_uri(cfg))
    experiment = client.create_experiment(tracking.experiment_name(cfg, "spread"))
    mine = {"triad.project": provenance.project_id()}

    def run(tags: dict[str, str], status: str = "RUNNING") -> str:
        run_id = client.create_run(experiment, tags=tags).info.run_id
        if status != "RUNNING":
            client.set_terminated(run_id, status=status)
        return run_id

    abandoned, resumable, finished = run(mine), run(mine), run(mine, "FINISHED")
    elsewhere = run({"triad.project": "another-host:/elsewhere"})  # another checkout's run, on a shared server
    checkpoint = project / ".triad" / "spread" / "0123456789abcdef"
    checkpoint.mkdir(parents=True)
    (checkpoint / "run.json").write_text(json.dumps({"run_id": resumable}))

    assert reconcile.close_abandoned_runs(cfg, project, ["spread", "translator"]) == [abandoned]
    status = {r: client.get_run(r).info.status for r in (abandoned, resumable, finished, elsewhere)}
    assert status == {abandoned: "KILLED", resumable: "RUNNING", finished: "FINISHED", elsewhere: "RUNNING"}
    assert "killed" in client.get_run(abandoned).data.tags["triad.closed"]
    assert reconcile.close_abandoned_runs(cfg, project, ["spread"]) == []  # nothing left to close


@pytest.mark.slow
def test_a_registration_the_tracking_store_lost_is_found_and_made_again(project, monkeypatch):
    """A new, empty tracking store while dvc.lock and reports/ stay (here MLFLOW_TRACKING_URI pointed
    elsewhere; a deleted mlflow.db is the same for a new process, but this process's MLflow keeps the
    deleted file open): the pipeline sees the loss (DVC alone would see nothing to do), and the
    evaluation registers the weights DVC holds in a new run that says why."""
    cfg = compose([*tiny("spread"), "model.spread.gate_max_mae=1.0"])
    write_params(cfg, project / "params.yaml")
    prepare(cfg, "spread")
    train(cfg, "spread")
    first = evaluate(cfg, "spread")["registry"]
    assert reconcile.lost_registrations(cfg, project, ["spread", "translator"]) == {}

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'new-store.db'}")
    lost = reconcile.lost_registrations(cfg, project, ["spread"])
    assert lost == {
        "spread": "reports/spread/registry.json records triad-spread v1, which the tracking store does not hold"
    }
    again = evaluate(cfg, "spread")["registry"]
    assert again["version"] == "1" and again["run_id"] != first["run_id"]
    client = MlflowClient(tracking_uri=tracking.tracking_uri(cfg))
    run = client.get_run(again["run_id"])
    assert "no run that trained these weights" in run.data.tags["triad.note"]
    assert run.data.params["model.spread.lr"] == str(cfg.model.spread.lr)
    assert reconcile.lost_registrations(cfg, project, ["spread"]) == {}


def test_a_forced_stage_runs_although_dvc_sees_no_change(tmp_path, monkeypatch):
    """How the flow re-runs an evaluate stage for a lost registration: ``run_if_changed(force=why)``."""
    import logging

    from tests.scheduling import slow_project

    root = slow_project(tmp_path / "project", 0)
    monkeypatch.chdir(root)
    (stage,) = dag.load_stages(root)
    log = logging.getLogger("test")
    assert dag.run_if_changed(root, stage, log)["status"] == "ran"
    assert dag.run_if_changed(root, stage, log)["status"] == "skipped"
    assert dag.run_if_changed(root, stage, log, force="the registry lost it")["status"] == "ran"
