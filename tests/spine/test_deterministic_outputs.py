"""Every DVC output a stage's inputs decide is byte-identical when the stage runs again on the same inputs.

Before, ``data/<head>/summary.json`` held the preparation's wall time and ``artifacts/<head>/train``
the MLflow run id and the fit's seconds, so re-preparing identical data changed the output's hash
and DVC retrained everything downstream. Timings and run ids now go to MLflow, the logs and
``.triad/<head>/runs/``, outside every DVC output.

Not covered: ``artifacts/transfer/evidence`` (its tables measure wall time by design; no stage
depends on it) and the evaluation's ``reports/`` (run records: registry versions, metrics).

Each head's model is then registered, and ``Head.rescore`` must reproduce the gate metric its
evaluation recorded (the gate rescores a champion with it when the data version changed).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import mlflow
import pytest
import torch

from tests.tiny import tiny
from triad.config import compose, write_params
from triad.evaluate import evaluate
from triad.heads import get_head
from triad.prepare import prepare, run_step
from triad.train import train

pytestmark = pytest.mark.slow

# The outputs each head's stages write, and the extra steps (dvc.yaml) that have one.
STEPS = {"translator": ["lm"], "diffusion": ["judge"], "transfer": [], "spread": []}


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _again(folder: Path, make) -> tuple[dict[str, str], dict[str, str]]:
    """``folder``'s digests after ``make()``, then after removing it and ``make()`` again."""
    make()
    first = _digest(folder)
    shutil.rmtree(folder)
    make()
    return first, _digest(folder)


@pytest.mark.parametrize("head", list(STEPS))
def test_rerunning_a_stage_on_the_same_inputs_writes_the_same_bytes(project, head):
    cfg = compose(tiny(head))
    write_params(cfg, project / "params.yaml")
    first, second = _again(project / "data" / head, lambda: prepare(cfg, head))
    assert first == second and "summary.json" in first
    for step in STEPS[head]:
        first, second = _again(project / "artifacts" / head / step, lambda: run_step(cfg, head, step))
        assert first == second and first
    first, second = _again(project / "artifacts" / head / "train", lambda: train(cfg, head))
    assert first == second and {"model.pt", "run.json"} <= set(first)
    (record,) = (project / ".triad" / head / "runs").glob("*.json")  # the run's id and timings live here
    assert "fit_seconds" in record.read_text()

    # Registered, the model scores on its own data what its evaluation recorded: the gate's
    # ``Head.rescore`` (used when the champion was scored on other data) computes the gate metric
    # as the evaluation does.
    registry = evaluate(cfg, head)["registry"]
    head_ = get_head(head, cfg)
    served = mlflow.pyfunc.load_model(f"models:/{registry['model']}/{registry['version']}").unwrap_python_model()
    with torch.no_grad():
        rescored = head_.rescore(served, head_.datamodule(project / "data" / head))
    assert rescored == pytest.approx(registry["value"], rel=1e-5, abs=1e-6)
