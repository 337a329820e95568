"""The spread pyfunc model: logged to MLflow, loaded back, predicting from an edge list (and `triad predict spread`)."""

from __future__ import annotations

import argparse
import json

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from tests.profile import section
from triad.errors import DataError
from triad.evaluate import PACKAGE_DIR, serving_requirements
from triad.heads.spread.batch import make_batch
from triad.heads.spread.model import SpreadGNN
from triad.heads.spread.pyfunc import INPUT_EXAMPLE, SpreadPyfunc, save_artifacts, to_question
from triad.predict import show

# A validated range that holds every IC question (and no other process): IC is answered by the network
# (checks off), the other processes are simulated.
EVERY_IC = {
    "ic": {
        "cases": 1,
        "passed": 1,
        "range": {"nodes": [1, 1e9], "clustering": [0, 1], "degree_cv": [0, 1e3], "criticality": [0, 1e3]},
        "mae_q95": 0.01,
        "size_rel_error_q95": 0.02,
        "worst_mae": 0.1,
        "worst_size_rel_error": 0.3,
    }
}


def test_pyfunc_round_trips_through_mlflow(tmp_path, sqlite_uri, capsys):
    cfg = section("model", "spread", hidden=8, iterations=2, trust={"check_samples": 0})
    torch.manual_seed(0)
    network = SpreadGNN(cfg).eval()
    mlflow.set_tracking_uri(sqlite_uri)
    mlflow.set_experiment("spread-pyfunc")
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=SpreadPyfunc(),
            artifacts=save_artifacts(network, cfg, tmp_path / "work", EVERY_IC),
            input_example=INPUT_EXAMPLE,
            code_paths=[str(PACKAGE_DIR)],
            pip_requirements=serving_requirements(),
        )
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    request = pd.DataFrame(
        [
            {
                "edges": [[10, 20], [20, 35], [35, 7]],
                "seeds": [20],
                "process": "ic",
                "p": 0.4,
                "beta": None,
                "gamma": None,
                "t": None,
            }
        ]
    )
    out = loaded.predict(request)
    assert list(out["nodes"][0]) == [10, 20, 35, 7]
    probabilities = np.asarray(out["probabilities"][0])
    assert probabilities[1] == 1.0 and out["expected_size"][0] == pytest.approx(probabilities.sum())
    question, _ = to_question(request.iloc[0].to_dict())
    np.testing.assert_allclose(probabilities, network.probabilities(make_batch([question])).numpy(), atol=1e-6)
    assert out["method"][0] == "learned" and not out["flagged"][0]
    assert "not checked: checks are off" in out["reason"][0]
    uncertainty = np.asarray(out["uncertainty"][0])
    assert uncertainty[1] == 0 and np.allclose(uncertainty[[0, 2, 3]], 0.01)  # the validation's error; a seed: 0
    assert out["expected_size_uncertainty"][0] == pytest.approx(0.02 * out["expected_size"][0])
    examples = loaded.predict(INPUT_EXAMPLE)
    assert list(examples["method"]) == ["learned", "simulated", "simulated"]  # sis, heat: no validated range
    assert "no sis question met the accuracy bar" in examples["reason"][1]
    assert np.asarray(examples["uncertainty"][1]).max() > 0 and np.asarray(examples["uncertainty"][2]).max() == 0

    # What `triad predict spread FILE --seeds ...` prints, from an edge-list file.
    edges = tmp_path / "edges.txt"
    edges.write_text("# a path\n10 20\n20 35\n\n35 7\n")
    args = argparse.Namespace(
        head="spread",
        edges=edges,
        seeds=[20],
        process="ic",
        p=0.4,
        beta=None,
        gamma=None,
        t=None,
        top=2,
        out=tmp_path / "out" / "reach.csv",
    )
    show(args, loaded)
    printed = capsys.readouterr().out
    assert printed.splitlines()[1].split() == ["20", "1.000", "0.000"]
    size, size_uncertainty = out["expected_size"][0], out["expected_size_uncertainty"][0]
    assert f"expected number of nodes reached: {size:.2f} +- {size_uncertainty:.2f} of 4" in printed
    assert "method: learned\n" in printed and "why: inside the validated range" in printed
    written = pd.read_csv(tmp_path / "out" / "reach.csv")
    assert list(written.columns) == ["node", "probability", "uncertainty"] and written["uncertainty"].iloc[0] == 0.01
    summary = json.loads((tmp_path / "out" / "reach.summary.json").read_text())
    assert summary["method"] == "learned" and summary["flagged"] is False and "reason" in summary
    edges.write_text("10 twenty\n")
    with pytest.raises(DataError, match=r"edges.txt:1: non-integer node id: 'twenty'"):
        show(args, loaded)


def test_bad_requests_say_what_is_missing():
    with pytest.raises(ValueError, match="process 'sir' needs beta, gamma; missing gamma"):
        to_question({"edges": [[0, 1]], "seeds": [0], "process": "sir", "beta": 0.2})
    with pytest.raises(ValueError, match="process must be one of"):
        to_question({"edges": [[0, 1]], "seeds": [0], "process": "flu", "p": 0.2})
    with pytest.raises(ValueError, match="seeds must name at least one node"):
        to_question({"edges": [[0, 1]], "seeds": [], "process": "ic", "p": 0.2})
