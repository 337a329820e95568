"""A new data version: the champion is scored on the new test data before the gate compares.

The spread head, end to end.
"""

from __future__ import annotations

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient

from tests.tiny import tiny
from triad.config import compose, write_params
from triad.evaluate import evaluate
from triad.heads import get_head
from triad.prepare import prepare
from triad.train import train

pytestmark = pytest.mark.slow


def test_the_champion_is_rescored_on_the_new_data_version(project):
    registries = []
    for split_seed in (0, 1):  # it draws the graphs and questions: a second data version
        cfg = compose([*tiny("spread"), f"data.spread.split_seed={split_seed}", "model.spread.gate_max_mae=1.0"])
        write_params(cfg, project / "params.yaml")
        prepare(cfg, "spread")
        train(cfg, "spread")
        registries.append(evaluate(cfg, "spread")["registry"])
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    v1, v2 = (client.get_model_version("triad-spread", r["version"]) for r in registries)
    assert v1.tags["triad.data_version"] != v2.tags["triad.data_version"]
    assert v2.tags["gate.champion_before_data_version"] == v1.tags["triad.data_version"]
    assert float(v2.tags["gate.champion_before_recorded_value"]) == float(v1.tags["gate.value"])

    # The value v2 was compared with is v1's MAE on the new test data, computed again here.
    head = get_head("spread", cfg)
    served = mlflow.pyfunc.load_model("models:/triad-spread/1").unwrap_python_model()
    with torch.no_grad():
        on_new_data = head.rescore(served, head.datamodule(project / "data" / "spread"))
    assert float(v2.tags["gate.champion_before_value"]) == pytest.approx(on_new_data, rel=1e-6)
    assert on_new_data != pytest.approx(float(v1.tags["gate.value"]), rel=1e-6)
    assert "rescored on this data" in v2.tags["gate.reason"]  # the bar (1.0) is cleared: a real comparison
