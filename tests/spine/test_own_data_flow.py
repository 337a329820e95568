"""Each head on a user's own files, end to end: Prefect (test harness) -> DVC -> Lightning -> MLflow (SQLite).

Each head's fixture module (``tests/heads/own_<head>.py``) writes a small user dataset of real files and returns
the overrides that select the head's own-data source on it, naming the model ``own-<head>``. The flow prepares,
trains, evaluates and registers; then this test checks what the issue promises of every head:

- the model is registered under the data's own name, never as the built-in task's champion;
- its training run records the data as an MLflow dataset input (name, source path, DVC digest, row counts) and
  carries the data report;
- DVC tracks the raw files: unchanged, nothing would re-run; one file added, exactly the head's stages would;
- batch prediction on files through ``triad predict --model own-<head>/1`` (the fixture's ``check``).
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from prefect.testing.utilities import prefect_test_harness

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
HEADS = ["transfer", "diffusion", "translator", "spread"]


@pytest.fixture(scope="module")
def harness():
    with prefect_test_harness(server_startup_timeout=120):
        yield


def _would_run(root: Path, stages: list[str]) -> set[str]:
    out = subprocess.run(
        [str(BIN / "dvc"), "repro", "--dry", *stages], cwd=root, capture_output=True, text=True, check=True
    )
    return set(re.findall(r"Running stage '([a-z_]+)'", out.stdout))


def _add_one_file(raw: Path) -> None:
    """A user adds data: a copy of a file under a new name in a folder, or one more line in a file."""
    if raw.is_dir():
        first = next(p for p in sorted(raw.rglob("*")) if p.is_file())
        shutil.copy2(first, first.with_name(f"added-{first.name}"))
    else:
        with raw.open("a") as handle:
            handle.write("\n")


@pytest.mark.parametrize("head", HEADS)
def test_own_data_through_the_flow(head, project, harness, tmp_path):
    fixture = importlib.import_module(f"tests.heads.own_{head}")
    folder = tmp_path / "userdata"
    overrides = [f"pipeline.heads=[{head}]", *fixture.make(folder)]
    sys.path.insert(0, str(project))
    from flows.pipeline import pipeline
    from triad.config import compose

    result = pipeline(overrides=overrides)
    assert {s["status"] for s in result["stages"]} == {"ran"}, result
    data_cfg = getattr(compose(overrides).data, head)
    assert data_cfg.name == f"own-{head}"

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    assert client.get_model_version(f"own-{head}", "1")
    assert not client.search_registered_models(f"name = 'triad-{head}'")  # the built-in task's name is untouched
    registry = json.loads((project / "reports" / head / "registry.json").read_text())
    assert registry["model"] == f"own-{head}" and registry["version"] == "1"

    experiment = client.get_experiment_by_name(f"triad-{head}")
    (run,) = [r for r in client.search_runs([experiment.experiment_id]) if "triad.step" not in r.data.tags]
    (dataset_input,) = run.inputs.dataset_inputs
    dataset = dataset_input.dataset
    assert dataset.name == f"own-{head}" and dataset.digest.startswith("md5:")
    assert json.loads(dataset.source)["uri"].startswith(str(folder))
    rows = json.loads(dataset.profile)["rows"]
    assert rows["train"] > 0 and rows["test"] > 0
    assert {"data/data_report.md", "data/data_report.json"} <= {
        a.path for a in client.list_artifacts(run.info.run_id, "data")
    }

    # DVC tracks the raw data: unchanged, nothing would run; one file more, every stage of the head would.
    stages = [s["stage"] for s in result["stages"]]
    assert _would_run(project, stages) == set()
    raws = data_cfg.raw if isinstance(data_cfg.raw, list) else [data_cfg.raw]
    _add_one_file(Path(raws[0]))
    assert _would_run(project, stages) == set(stages)

    fixture.check(project, folder, tmp_path / "out")
