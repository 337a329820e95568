"""Model cards on a real SQLite MLflow store: a version registered and gated as the evaluation does it (a tiny
real pyfunc stands in for a trained network), its card published, read back and printed by `triad card`."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import Any

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from tests.conftest import REPO
from triad import card, gate, tracking
from triad.cli import main
from triad.config import compose
from triad.data.own import write_report
from triad.heads import get_head, head_names
from triad.heads.base import Baseline
from triad.jsonio import write_json

RAW_MD5, PREPARED_MD5 = "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210.dir"
METRICS = {
    "test_mae": 0.031,
    "test_prior_mae": 0.084,
    "mc_seconds_per_question": 2.5,
    "model_seconds_per_question": 0.01,
}


class Echo(mlflow.pyfunc.PythonModel):
    """A real (tiny) pyfunc model: returns the length of each input string."""

    def predict(self, context, model_input, params=None):
        return [len(s) for s in model_input["text"]]


def _train_run(client, cfg, head, tmp_path) -> str:
    """A run like training's: its tags, config, dataset input and data report, evaluation metrics and a plot."""
    data_dir = head.dir("data")
    data_dir.mkdir(parents=True)
    write_json(data_dir / "summary.json", {"sizes": {"train": 640, "val": 96, "test": 44}})
    counts = {
        "generated graphs": {"train": 160, "val": 24, "test": 8},
        "your networks": {"train": 0, "val": 0, "test": 2},
    }
    write_report(data_dir, {"source": "built-in", "path": "-", "counts": counts})
    experiment = mlflow.create_experiment("card-test", artifact_location=(tmp_path / "artifacts").as_uri())
    plot = tmp_path / "spread_over_time.png"
    Image.new("RGB", (4, 4)).save(plot)
    with mlflow.start_run(experiment_id=experiment, tags=tracking.run_tags(cfg, head, data_dir)) as run:
        mlflow.log_text("seed: 0\n", "config/config.yaml")
        mlflow.log_metrics(METRICS)
        mlflow.log_artifact(str(plot), "plots")
    tracking.log_data(client, run.info.run_id, cfg, head, data_dir)
    return run.info.run_id


def _register(run_id: str, name: str) -> str:
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(name="model", python_model=Echo(), pip_requirements=["mlflow"])
    return str(mlflow.register_model(info.model_uri, name).version)


def _published(client, head, run_id) -> str:
    """Version 1, registered, gated and given its card as ``triad.evaluate`` does."""
    name = head.registered_model_name
    version = _register(run_id, name)
    data_version = client.get_run(run_id).data.tags["triad.data_version"]
    passes = head.gate_passes(METRICS)
    gate.gate(client, name, version, "test_mae", METRICS["test_mae"], "min", passes, data_version_tag=data_version)
    assert card.publish(client, head, version, METRICS, {"sizes": {"train": 640}}) == "card/v1/card.md"
    return version


@dataclass
class Store:
    client: MlflowClient
    cfg: Any
    head: Any
    run_id: str
    carded: str  # the version with its card, as the evaluation publishes it
    bare: str  # a version registered by hand, without a card


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A project root (the repo's conf, a dvc.lock that records the spread data) whose tracking store is a
    SQLite file holding one training run and two versions of triad-spread: v1 gated and carded as the
    evaluation does it, v2 registered by hand. The tests only read it."""
    tmp_path = tmp_path_factory.mktemp("card")
    root = tmp_path / "project"
    root.mkdir()
    shutil.copytree(REPO / "conf", root / "conf")
    (root / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  prepare_spread:\n    cmd: triad stage prepare spread\n    deps:\n"
        f"    - path: src/triad/heads/spread/data.py\n      md5: {RAW_MD5}\n    outs:\n"
        f"    - path: data/spread\n      md5: {PREPARED_MD5}\n"
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("TRIAD_ROOT", str(root))
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        monkeypatch.chdir(root)
        mlflow.set_tracking_uri(uri)
        cfg = compose([])
        client, head = MlflowClient(uri), get_head("spread", cfg)
        run_id = _train_run(client, cfg, head, tmp_path)
        carded = _published(client, head, run_id)
        yield Store(client, cfg, head, run_id, carded, _register(run_id, head.registered_model_name))
        mlflow.set_tracking_uri(None)


def test_a_registered_version_carries_its_card(store):
    client, cfg, run_id = store.client, store.cfg, store.run_id
    model_version = client.get_model_version("triad-spread", store.carded)
    assert model_version.tags[card.CARD_TAG] == "card/v1/card.md"
    # the description: short, the decision, the gate metric against its baseline, where the card is
    description = model_version.description
    assert description.startswith("PROMOTED: first version to clear the bar")
    assert "test_mae 0.031 (the DMP prior alone, no learning: 0.084)" in description
    assert f"data md5:{PREPARED_MD5[:12]}" in description and "triad card triad-spread/1" in description
    assert len(description) < 400

    text = card.read_card(client, model_version)
    assert text.startswith("# Model card: triad-spread v1\n")
    # the data: its DVC digests, rows and the data report's counts
    assert f"- digest: `md5:{PREPARED_MD5[:32]}`" in text
    assert f"- DVC digest of `src/triad/heads/spread/data.py`: `md5:{RAW_MD5}`" in text
    assert f"(tag `triad.data_version`, what the gate compares on): `md5:{PREPARED_MD5}`" in text
    assert "- rows: train 160, val 24, test 10" in text  # the data report's counts win over summary.json's sizes
    assert "| generated graphs | 160 | 24 | 8 |" in text and "| your networks | 0 | 0 | 2 |" in text
    # the config, compact: the head's data and model sections
    assert "data.spread:" in text and "train_nodes: {low: 15" in text and "model.spread:" in text
    assert "`config/config.yaml` in the run" in text
    # the metrics against their baselines, beaten or not
    assert "| `test_mae` | 0.031 | the DMP prior alone, no learning (`test_prior_mae`) | 0.084 | yes |" in text
    bar = cfg.model.spread.gate_max_mae
    assert f"| `test_mae` | 0.031 | the gate's bar, model.spread.gate_max_mae | {bar:.4g} | yes |" in text
    assert (
        "| `model_seconds_per_question` | 0.01 | Monte-Carlo simulation (`mc_seconds_per_question`) | 2.5 | yes |"
        in text
    )
    assert "im_degree_spread" not in text  # a baseline the evaluation did not report is left out
    # the gate's decision
    assert "- decision: **promoted**" in text and "- reason: first version to clear the bar" in text
    assert "- champion before: none" in text
    # the head's intended use and limits, from its config
    assert "in place of Monte-Carlo simulation" in text
    assert "validated range: trained on erdos_renyi, barabasi_albert" in text and "graphs of 15-50 nodes" in text
    assert "tested on 100-300-node graphs and karate_club" in text and "ic_p 0.02-0.9" in text
    # the evidence: the run's pictures, linked from the card's folder
    assert (
        f"- [plots/spread_over_time.png](../../plots/spread_over_time.png): `runs:/{run_id}/plots/spread_over_time.png`"
        in text
    )


def test_triad_card_prints_a_version_and_says_when_one_has_no_card(store, capsys):
    published = card.read_card(store.client, store.client.get_model_version("triad-spread", store.carded))

    for ref in ("spread", "triad-spread/1", "triad-spread@champion"):
        assert main(["card", ref]) == 0
        out = capsys.readouterr().out
        assert out == published + "\nRegistry now: triad-spread v1 holds @champion.\n", ref

    # a version registered by hand: no card, so what the registry and its run hold, and it says so
    bare = store.bare
    assert main(["card", f"triad-spread/{bare}"]) == 0
    captured = capsys.readouterr()
    assert f"triad-spread v{bare}: no model card" in captured.err
    assert captured.out.startswith(f"# Model card: triad-spread v{bare}\n")
    assert "No gate decision is recorded on this version" in captured.out
    assert f"md5:{PREPARED_MD5}" in captured.out and "`test_mae` 0.031" in captured.out
    assert "Not recorded: this version was registered without a card." in captured.out
    assert captured.out.rstrip().endswith(f"Registry now: triad-spread v{bare} holds no alias.")


def test_triad_card_refuses_what_does_not_exist(store, capsys):
    assert main(["card", "triad-spread/7"]) == 2
    assert (
        "triad-spread/7 does not exist: triad-spread has version(s) 1, 2 and alias(es) champion"
        in capsys.readouterr().err
    )
    assert main(["card", "triad-spread@staging"]) == 2
    assert "triad-spread@staging does not exist" in capsys.readouterr().err
    assert main(["card", "my-xrays"]) == 2
    assert "has no model 'my-xrays'" in capsys.readouterr().err
    assert main(["card", "triad-spread/latest"]) == 2
    assert "the version after '/' is a number" in capsys.readouterr().err


@pytest.mark.parametrize("name", head_names())
def test_each_head_says_what_its_model_is_for_and_where_it_stops(name):
    """Every head's card sections come from its config and its data's summary, with a baseline for its gate metric."""
    head = get_head(name, compose([]))
    data_summary = {"class_names": ["NORMAL", "PNEUMONIA"], "modality": "image", "channels": 1, "train_pairs": 900}
    sections = head.card({}, data_summary)
    assert sections.intended_use and sections.limits
    assert head.gate_metric in {b.metric for b in sections.baselines}
    text = " ".join(sections.intended_use + sections.limits)
    expected = {
        "translator": ["translation from en to de", "900 training pairs", "input up to", "subword tokens"],
        "diffusion": ["classes ['NORMAL', 'PNEUMONIA']", "grey"],
        "transfer": ["PNG or JPEG", "into NORMAL, PNEUMONIA", "one of its 2 classes", "decision threshold"],
        "spread": ["validated range", "sir_beta"],
    }.get(name, [])
    for words in expected:
        assert words in text, (name, words)


def test_baselines_say_which_are_beaten():
    baselines = [
        Baseline("fid", "fid_real", "real images", None),
        Baseline("mae", 0.05, "the bar", "min"),
        Baseline("score", "chance", "chance"),
        Baseline("missing", "chance", "not reported"),
    ]
    rows = card.baseline_rows(baselines, {"fid": 12.0, "fid_real": 3.0, "mae": 0.07, "score": 0.6, "chance": 0.5})
    assert [(r["metric"], r["beats"]) for r in rows] == [("fid", None), ("mae", False), ("score", True)]
    assert card.parse_ref("my-xrays") == ("my-xrays", "champion", None)
    assert card.parse_ref("models:/my-xrays/3") == ("my-xrays", None, "3")
    assert card.parse_ref("my-xrays@staging") == ("my-xrays", "staging", None)


def test_triad_card_help_says_what_it_takes(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["card", "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and "HEAD|NAME[@ALIAS|/VERSION]" in out
    assert f"triad card triad-{head_names()[0]}/3" in out and "exit codes: 0" in out
