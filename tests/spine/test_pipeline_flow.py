"""The whole spine end to end on tiny data: Prefect (test harness) -> DVC -> Lightning -> MLflow (SQLite).

The first test walks the life of a project, because each step needs the state the previous one left:
first run registers a champion; a second run trains nothing; `dvc repro` is a fast no-op; changing
one parameter makes DVC (and so the flow) re-run exactly the stages downstream of it. The second adds
a head the way docs/adding-a-head.md says and runs it through the same flow (sharing the module's
Prefect test server).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from tests.line_project import add_line_head
from tests.tiny import tiny

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


TRANSLATOR_STAGES = ["prepare_translator", "train_translator", "lm_translator", "evaluate_translator"]


def _would_run(root: Path) -> set[str]:
    """The translator stages `dvc repro` would run now (its dry run, downstream effects included)."""
    out = subprocess.run(
        [str(BIN / "dvc"), "repro", "--dry", *TRANSLATOR_STAGES], cwd=root, capture_output=True, text=True, check=True
    )
    return set(re.findall(r"Running stage '([a-z_]+)'", out.stdout))


def test_flow_end_to_end(project, harness, capsys):
    sys.path.insert(0, str(project))
    from flows.pipeline import pipeline

    overrides = tiny("translator")
    result = pipeline(overrides=overrides)
    assert [s["status"] for s in result["stages"]] == ["ran", "ran", "ran", "ran"]

    # MLflow: a run with params, metrics, provenance tags, artifacts, and a registered champion.
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    client = MlflowClient()
    experiment = client.get_experiment_by_name("triad-translator")
    runs = client.search_runs([experiment.experiment_id])
    (run,) = [r for r in runs if "triad.step" not in r.data.tags]  # the training run
    (lm_run,) = [r for r in runs if r.data.tags.get("triad.step") == "lm"]  # the language-model stage
    assert lm_run.data.metrics["lm_test_perplexity"] > 1
    assert "samples.md" in {a.path.split("/")[-1] for a in client.list_artifacts(lm_run.info.run_id, "lm")}
    assert run.data.params["model.translator.net.d_model"] == "32"
    assert {"train_loss", "val_loss", "test_bleu", "test_chrf"} <= set(run.data.metrics)
    steps = client.get_metric_history(run.info.run_id, "train_loss")
    assert len(steps) >= 2 and len({m.step for m in steps}) == len(steps)  # per-step, not one final value
    assert run.data.tags["triad.data_version"].startswith("md5:")
    assert run.data.tags["prefect.flow_run_id"]
    assert len(run.data.tags["mlflow.source.git.commit"]) >= 7
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config", "plots"} <= artifacts
    registry = json.loads((project / "reports/translator/registry.json").read_text())
    version = client.get_model_version("triad-translator", "1")
    assert registry["version"] == "1" and version.tags["gate.metric"] == "test_bleu"
    # A one-epoch toy may or may not beat copying the source: either way the decision is recorded
    # and `champion` exists exactly when the version was promoted.
    assert version.tags["gate.decision"] == ("promoted" if registry["promoted"] else "rejected")
    aliases = client.get_registered_model("triad-translator").aliases
    assert (aliases.get("champion") is not None) == registry["promoted"]

    # The registered model is servable: it loads and translates.
    model = mlflow.pyfunc.load_model("models:/triad-translator/1")
    translations = model.predict(["In the beginning God created the heavens and the earth."])
    assert len(translations) == 1 and isinstance(list(translations)[0], str)

    # `triad predict` prints the translation of a registered version.
    from triad.cli import main

    assert main(["predict", "--model-uri", "models:/triad-translator/1", "translator", "The cat sat on the mat."]) == 0
    assert "The cat sat on the mat.\n  -> " in capsys.readouterr().out

    # Second run: nothing changed, nothing trains.
    again = pipeline(overrides=overrides)
    assert {s["status"] for s in again["stages"]} == {"skipped"}
    assert len(client.search_runs([experiment.experiment_id])) == 2

    # `dvc repro` right after is a no-op, and fast.
    started = time.perf_counter()
    out = subprocess.run([str(BIN / "dvc"), "repro", *TRANSLATOR_STAGES], cwd=project, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert time.perf_counter() - started < 10
    assert "didn't change" in out.stdout or "up to date" in out.stdout

    # A parameter of another head changes: no translator stage is stale.
    from triad.config import compose, write_params

    write_params(compose(overrides + ["model.diffusion.lr=0.01"]), project / "params.yaml")
    assert _would_run(project) == set()

    # One translator parameter changes: exactly the stages downstream of it run again.
    changed = pipeline(overrides=overrides + ["model.translator.lr=0.001"])
    status = {s["stage"]: s["status"] for s in changed["stages"]}
    assert status == {
        "prepare_translator": "skipped",
        "train_translator": "ran",
        "lm_translator": "skipped",
        "evaluate_translator": "ran",
    }
    assert len(client.search_runs([experiment.experiment_id])) == 3
    assert json.loads((project / "reports/translator/registry.json").read_text())["version"] == "2"


def test_a_new_head_runs_through_the_pipeline_and_is_served(project, harness, monkeypatch, capsys):
    """Adding a head touches one place per kind: its package, its yaml groups, its stages, one registry line.

    The test does exactly what docs/adding-a-head.md says, in a fresh project, with the complete tiny head
    in tests/line_head/ (fit a line to noisy points), registered from outside triad through $TRIAD_HEADS.
    Then the real pipeline (Prefect, DVC, Lightning, MLflow) prepares, trains, evaluates and registers it,
    and `triad predict` serves it. Nothing in triad's own code was told about it.
    """
    from triad.cli import main
    from triad.config import compose
    from triad.heads import head_names

    add_line_head(project, monkeypatch)
    assert head_names()[-1] == "line"
    assert compose([]).model.line.lr == 0.3  # the config schema now has its sections

    from flows.pipeline import pipeline

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
