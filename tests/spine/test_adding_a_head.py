"""Adding a head touches one place per kind: its package, its yaml groups, its stages, one registry line.

The test does exactly what docs/adding-a-head.md says, in a fresh project, with the complete tiny head
in tests/line_head/ (fit a line to noisy points), registered from outside triad through $TRIAD_HEADS.
Then the real pipeline (Prefect, DVC, Lightning, MLflow) prepares, trains, evaluates and registers it,
and `triad predict` serves it. Nothing in triad's own code was told about it.
"""

from __future__ import annotations

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from prefect.testing.utilities import prefect_test_harness

from tests.line_project import add_line_head

pytestmark = pytest.mark.slow


def test_a_new_head_runs_through_the_pipeline_and_is_served(project, monkeypatch, capsys):
    from triad.cli import main
    from triad.config import compose
    from triad.heads import head_names

    add_line_head(project, monkeypatch)
    assert head_names()[-1] == "line"
    assert compose([]).model.line.lr == 0.3  # the config schema now has its sections

    from flows.pipeline import pipeline

    with prefect_test_harness(server_startup_timeout=120):
        result = pipeline(overrides=["pipeline.heads=[line]"])
    assert [(s["stage"], s["status"]) for s in result["stages"]] == [
        ("prepare_line", "ran"),
        ("train_line", "ran"),
        ("evaluate_line", "ran"),
    ]

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    client = MlflowClient()
    champion = client.get_model_version_by_alias("triad-line", "champion")
    assert str(champion.version) == "1" and champion.tags["gate.metric"] == "test_mse"
    assert float(champion.tags["gate.value"]) < 0.05  # noise 0.1: an MSE near 0.01 when the line is learned

    assert main(["predict", "line", "0.5", "-1"]) == 0
    printed = dict(line.split(" -> ") for line in capsys.readouterr().out.strip().splitlines())
    assert float(printed["0.5"]) == pytest.approx(0.0, abs=0.15)  # 2 * 0.5 - 1
    assert float(printed["-1"]) == pytest.approx(-3.0, abs=0.15)

    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    assert "the fitted line's value at each x" in capsys.readouterr().out
