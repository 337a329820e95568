"""The evidence step's training loop: each arm is scored with the weights it had at its best val epoch."""

import numpy as np
import pytest
import torch
from torch import nn

from triad.heads.transfer.config import EvidenceConfig
from triad.heads.transfer.evaluate import classification_metrics
from triad.heads.transfer.evidence import _probabilities, train_arm


def test_an_evidence_arm_ends_with_the_weights_of_its_best_validation_epoch():
    torch.manual_seed(0)
    x_train, x_val = torch.randn(40, 16), torch.randn(300, 16)
    y_train = torch.randint(0, 2, (40,))  # random labels: the model can only memorise them
    y_val = (x_val[:, 0] > 0).long().numpy()
    model = nn.Linear(16, 2)
    cfg = EvidenceConfig(max_epochs=8, batch_size=8, lr=0.5)
    result = train_arm(model, x_train, y_train, x_val, y_val, cfg, seed=0, n_classes=2)
    scores = result["val_scores"]
    assert len(scores) == 8
    assert result["best_epoch"] == int(np.argmax(scores)) + 1
    assert result["best_epoch"] < 8 and max(scores) > scores[-1]  # the case worth testing: the end is worse
    final = classification_metrics(_probabilities(model, x_val), y_val)["score"]
    assert final == pytest.approx(max(scores))


@pytest.mark.parametrize("class_balance, expected", [(False, 0.1), (True, 0.5)])
def test_a_class_balanced_evidence_arm_stops_following_a_skewed_prior(class_balance, expected):
    """Features that say nothing, labels 90% class 1: plain cross-entropy learns the prior (10% for
    class 0), the class-balanced loss weighs both classes equally and learns 50%."""
    torch.manual_seed(0)
    x_train, x_val = torch.zeros(2000, 4), torch.zeros(50, 4)
    y_train = torch.tensor([0] * 200 + [1] * 1800)
    y_val = np.array([0, 1] * 25)
    model = nn.Linear(4, 2)
    # one epoch of 100 steps: constant inputs give every epoch the same val score, so the best is the first
    cfg = EvidenceConfig(max_epochs=1, batch_size=20, lr=0.05, class_balance=class_balance)
    train_arm(model, x_train, y_train, x_val, y_val, cfg, seed=0, n_classes=2)
    with torch.no_grad():
        p_minority = torch.softmax(model(x_val), -1)[:, 0]
    assert p_minority.mean().item() == pytest.approx(expected, abs=0.05)
