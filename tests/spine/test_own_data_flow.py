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

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
HEADS = ["transfer", "diffusion", "translator", "spread"]


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


def test_every_head_on_a_users_own_files(project, harness, tmp_path, monkeypatch):
    """One flow run trains all four heads on their users' files (sharing one Prefect server and the two cores)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # two stages at once, one torch thread each: no oversubscription
    fixtures = {head: importlib.import_module(f"tests.heads.own_{head}") for head in HEADS}
    folders = {head: tmp_path / f"userdata-{head}" for head in HEADS}
    made = [override for head in HEADS for override in fixtures[head].make(folders[head])]
    overrides = ["pipeline.max_parallel=2", *dict.fromkeys(made)]
    sys.path.insert(0, str(project))
    from flows.pipeline import pipeline
    from triad.config import compose

    result = pipeline(overrides=overrides)
    assert {s["status"] for s in result["stages"]} == {"ran"}, result
    cfg = compose(overrides)
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    for head in HEADS:
        data_cfg = getattr(cfg.data, head)
        assert data_cfg.name == f"own-{head}"
        assert client.get_model_version(f"own-{head}", "1")
        assert not client.search_registered_models(f"name = 'triad-{head}'")  # the built-in task's model untouched
        registry = json.loads((project / "reports" / head / "registry.json").read_text())
        assert registry["model"] == f"own-{head}" and registry["version"] == "1"

        experiment = client.get_experiment_by_name(f"triad-{head}")
        (run,) = [r for r in client.search_runs([experiment.experiment_id]) if "triad.step" not in r.data.tags]
        (dataset_input,) = run.inputs.dataset_inputs
        dataset = dataset_input.dataset
        assert dataset.name == f"own-{head}" and dataset.digest.startswith("md5:"), (head, dataset)
        assert json.loads(dataset.source)["uri"].startswith(str(folders[head])), (head, dataset.source)
        rows = json.loads(dataset.profile)["rows"]
        assert rows["train"] > 0 and rows["test"] > 0, (head, rows)
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "data")}
        assert {"data/data_report.md", "data/data_report.json"} <= artifacts, (head, artifacts)

    # DVC tracks the raw data: unchanged, nothing would run; a file added to one head's data, its prepare would,
    # and the flow then re-runs that head's stages (its prepared data changed) and nothing else.
    stages = [s["stage"] for s in result["stages"]]
    assert _would_run(project, stages) == set()
    _add_one_file(Path(cfg.data.spread.raw))
    assert _would_run(project, stages) == {"prepare_spread"}
    again = {s["stage"]: s["status"] for s in pipeline(overrides=overrides)["stages"]}
    assert again == {stage: "ran" if stage.endswith("_spread") else "skipped" for stage in stages}, again
    assert client.get_model_version("own-spread", "2")

    for head in HEADS:
        out = tmp_path / "out" / head
        out.mkdir(parents=True)
        fixtures[head].check(project, folders[head], out)
