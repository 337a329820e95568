"""The whole spine end to end on tiny data: Prefect (test harness) -> DVC -> Lightning -> MLflow (SQLite).

One test walks the life of a project, because each step needs the state the previous one left:
first run registers a champion; a second run trains nothing; `dvc repro` is a fast no-op; changing
one parameter makes DVC (and so the flow) re-run exactly the stages downstream of it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from prefect.testing.utilities import prefect_test_harness

from tests.tiny import tiny

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _stale_stages(root: Path) -> set[str]:
    out = subprocess.run([str(BIN / "dvc"), "status", "--json"], cwd=root, capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout or "{}"))


@pytest.fixture(scope="module")
def harness():
    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_flow_end_to_end(project, harness):
    sys.path.insert(0, str(project))
    from flows.pipeline import pipeline

    overrides = tiny("translator")
    result = pipeline(overrides=overrides)
    assert [s["status"] for s in result["stages"]] == ["ran", "ran", "ran"]

    # MLflow: a run with params, metrics, provenance tags, artifacts, and a registered champion.
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    client = MlflowClient()
    experiment = client.get_experiment_by_name("triad-translator")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.params["model.translator.d_model"] == "32"
    assert {"train_loss_step", "val_loss", "test_bleu", "test_chrf"} <= set(run.data.metrics)
    assert run.data.tags["triad.data_version"].startswith("md5:")
    assert run.data.tags["prefect.flow_run_id"]
    assert len(run.data.tags["mlflow.source.git.commit"]) >= 7
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config", "plots"} <= artifacts
    champion = client.get_model_version_by_alias("triad-translator", "champion")
    registry = json.loads((project / "reports/translator/registry.json").read_text())
    assert str(champion.version) == registry["version"] == "1"
    assert champion.tags["gate.decision"] == "promoted"

    # The registered model is servable: it loads and translates.
    model = mlflow.pyfunc.load_model("models:/triad-translator@champion")
    translations = model.predict(["In the beginning God created the heavens and the earth."])
    assert len(translations) == 1 and isinstance(list(translations)[0], str)

    # Second run: nothing changed, nothing trains.
    again = pipeline(overrides=overrides)
    assert {s["status"] for s in again["stages"]} == {"skipped"}
    assert len(client.search_runs([experiment.experiment_id])) == 1

    # `dvc repro` right after is a no-op, and fast.
    started = time.perf_counter()
    out = subprocess.run([str(BIN / "dvc"), "repro", "prepare_translator", "train_translator", "evaluate_translator"],
                         cwd=project, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert time.perf_counter() - started < 10
    assert "didn't change" in out.stdout or "up to date" in out.stdout

    # One parameter changes: exactly the stages downstream of it become stale.
    from triad.config import compose, write_params

    write_params(compose(overrides + ["model.translator.lr=0.001"]), project / "params.yaml")
    translator_stages = {"prepare_translator", "train_translator", "evaluate_translator"}
    assert _stale_stages(project) & translator_stages == {"train_translator", "evaluate_translator"}
    write_params(compose(overrides + ["data.translator.vocab_size=320"]), project / "params.yaml")
    assert _stale_stages(project) & translator_stages == translator_stages
