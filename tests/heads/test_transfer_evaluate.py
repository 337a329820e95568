"""Evaluation metrics: calibration error, the validation-chosen threshold, the test score."""

from __future__ import annotations

import numpy as np

from triad.heads.transfer.evaluate import classification_metrics, expected_calibration_error, youden_threshold


def test_expected_calibration_error_of_known_cases():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    confident_right = np.eye(2)[labels]
    assert expected_calibration_error(confident_right, labels) == 0.0
    # 80% confident everywhere, right half the time: |0.5 - 0.8| = 0.3
    probs = np.tile([0.8, 0.2], (8, 1))
    assert abs(expected_calibration_error(probs, labels) - 0.3) < 1e-9


def test_threshold_from_validation_separates_scores_that_argmax_would_not():
    # every P(pneumonia) is below 0.5, but positives score higher than negatives
    p1 = np.array([0.05, 0.1, 0.15, 0.3, 0.35, 0.4])
    labels = np.array([0, 0, 0, 1, 1, 1])
    probs = np.stack([1 - p1, p1], axis=1)
    threshold = youden_threshold(p1, labels)
    assert 0.15 < threshold <= 0.3
    assert classification_metrics(probs, labels, threshold)["accuracy"] == 1.0
    assert classification_metrics(probs, labels)["accuracy"] == 0.5  # argmax calls everything normal
    assert classification_metrics(probs, labels, threshold)["score"] == 1.0  # AUC for a binary task


def test_multiclass_score_is_accuracy_and_auc_is_one_vs_rest():
    labels = np.array([0, 1, 2, 2])
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.5, 0.3, 0.2]])
    metrics = classification_metrics(probs, labels)
    assert metrics["score"] == metrics["accuracy"] == 0.75
    assert 0.5 < metrics["auc"] <= 1.0
