"""`triad sweep`: Optuna trials as MLflow child runs of one parent; the best config written back."""

from __future__ import annotations

import mlflow
import pytest

from tests.tiny import tiny
from triad.config import compose, load_params
from triad.errors import ConfigError
from triad.prepare import prepare
from triad.sweep import parse_space, sweep

pytestmark = pytest.mark.slow


def test_sweep_space_uses_hydra_syntax():
    fixed, space = parse_space(["a.b=1", "a.lr=tag(log,interval(1e-4,1e-1))", "a.n=range(1,4)", "a.s=x,y"])
    assert fixed == ["a.b=1"]
    assert sorted(space) == ["a.lr", "a.n", "a.s"]
    assert "log" in space["a.lr"].tags
    with pytest.raises(ConfigError, match="nothing to sweep"):
        sweep("transfer", ["model.transfer.lr=0.01"], n_trials=1)


def test_two_trial_sweep(project):
    fixed = tiny("transfer") + ["model.transfer.strategy=linear_probe", "trainer.limit_val_batches=1"]
    prepare(compose(fixed), "transfer")
    result = sweep("transfer", [*fixed, "model.transfer.lr=interval(0.001,0.05)"], n_trials=2)
    assert result["trials"] == 2 and result["metric"] == "val_score"

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["triad-transfer"])
    children = runs[runs["tags.mlflow.parentRunId"] == result["parent_run_id"]]
    assert sorted(children["tags.triad.trial"]) == ["0", "1"]
    assert result["parent_run_id"] in set(runs["run_id"])
    best_child = children[children["tags.triad.trial"] == str(result["best_trial"])].iloc[0]
    assert best_child["metrics.val_score"] == pytest.approx(result["best_value"])
    assert result["best_value"] == max(children["metrics.val_score"])

    best = compose(result["best_overrides"])
    written = compose(["experiment=best_transfer"])
    assert written.model.transfer.lr == best.model.transfer.lr == float(best_child["params.model.transfer.lr"])
    assert written.model_copy(update={"experiment": None}) == best
    assert load_params(project / "params.yaml") == written
