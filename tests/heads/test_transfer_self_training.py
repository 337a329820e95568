"""The pseudo-label choice of ``bench/transfer_self_training.py``: the most confident share of each predicted class."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parents[2] / "bench" / "transfer_self_training.py"


def _pseudo_labels():
    spec = importlib.util.spec_from_file_location("transfer_self_training", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.pseudo_labels


def test_each_predicted_class_keeps_its_most_confident_share():
    pseudo_labels = _pseudo_labels()
    # Eight images predicted class 0 (confidence 0.60..0.95), four predicted class 1, all less sure (0.55..0.58).
    first = np.linspace(0.60, 0.95, 8)
    second = np.array([0.55, 0.58, 0.56, 0.57])
    probabilities = np.vstack([np.column_stack([first, 1 - first]), np.column_stack([1 - second, second])])
    positions, labels = pseudo_labels(probabilities, keep=0.5)
    # Class 0 keeps its four most confident (positions 4-7), class 1 its two (0.58 and 0.57 at 9 and 11): a
    # global top half would have taken six of class 0 and none of the less confident class.
    assert positions.tolist() == [4, 5, 6, 7, 9, 11]
    assert labels.tolist() == [0, 0, 0, 0, 1, 1]
    assert pseudo_labels(probabilities, keep=0.0)[0].size == 0
    assert pseudo_labels(probabilities, keep=1.0)[0].tolist() == list(range(12))
