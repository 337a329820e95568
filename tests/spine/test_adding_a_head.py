"""Adding a head touches one place per kind: its package, its yaml groups, its stages, one registry line.

The test does exactly what docs/adding-a-head.md says, in a fresh project, with the complete tiny head
in tests/line_head/ (fit a line to noisy points), registered from outside triad through $TRIAD_HEADS.
Then the real pipeline (Prefect, DVC, Lightning, MLflow) prepares, trains, evaluates and registers it,
and `triad predict` serves it. Nothing in triad's own code was told about it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from prefect.testing.utilities import prefect_test_harness

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]

DATA_YAML = "points: 200\nslope: 2.0\nintercept: -1.0\nnoise: 0.1\n"
MODEL_YAML = "max_epochs: 8\nmax_steps: -1\nbatch_size: 16\nlr: 0.3\nweight_decay: 0.0\n"
STAGES = """
  prepare_line:
    cmd: triad stage prepare line
    meta: {head: line}
    deps: [line_head/config.py, line_head/head.py]
    params: [seed, data.line]
    outs: [data/line]
  train_line:
    cmd: triad stage train line
    meta: {head: line}
    deps: [data/line, line_head/config.py, line_head/head.py]
    params: [seed, trainer, data.line, model.line]
    outs: [artifacts/line/train]
  evaluate_line:
    cmd: triad stage evaluate line
    meta: {head: line}
    deps: [artifacts/line/train, data/line, line_head/head.py]
    params: [seed, model.line]
    outs:
      - reports/line/registry.json: {cache: false}
    metrics:
      - reports/line/metrics.json: {cache: false}
    plots:
      - reports/line/plots: {cache: false}
"""


def add_line_head(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The four steps of docs/adding-a-head.md, for a head that lives outside triad."""
    # 1. The head's package (config.py, head.py, cli.py), importable by the stages' processes.
    shutil.copytree(REPO / "tests" / "line_head", project / "line_head", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(project), os.environ.get("PYTHONPATH")])))
    monkeypatch.syspath_prepend(str(project))
    # 2. Its yaml groups, and their place in the default list.
    for kind, text in (("data", DATA_YAML), ("model", MODEL_YAML)):
        (project / "conf" / kind / "line").mkdir(parents=True)
        (project / "conf" / kind / "line" / "default.yaml").write_text(text)
    config = project / "conf" / "config.yaml"
    config.write_text(config.read_text().replace("  - experiment: null",
                                                 "  - data/line: default\n  - model/line: default\n  - experiment: null"))
    # 3. Its stages in dvc.yaml.
    with (project / "dvc.yaml").open("a") as dvc_yaml:
        dvc_yaml.write(STAGES)
    # 4. The registry line: for a head outside triad, $TRIAD_HEADS (a built-in head is a line of BUILTIN).
    monkeypatch.setenv("TRIAD_HEADS", "line=line_head")


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
        ("prepare_line", "ran"), ("train_line", "ran"), ("evaluate_line", "ran")]

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
