"""The evidence step: each arm is scored with the weights of its best val epoch, the scratch arm is the same
network, and the summary says which cells ran out of epochs while still improving."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from tests.profile import section
from triad.config import compose
from triad.heads.transfer.backbones import imagenet_lite0
from triad.heads.transfer.config import EvidenceConfig
from triad.heads.transfer.evaluate import classification_metrics
from triad.heads.transfer.evidence import ScratchNet, _probabilities, caveats, summarise, train_arm


def evidence(**overrides) -> EvidenceConfig:
    """The default profile's ``model.transfer.evidence`` with ``overrides``."""
    return section("model", "transfer", evidence=overrides).evidence


def test_an_evidence_arm_ends_with_the_weights_of_its_best_validation_epoch():
    torch.manual_seed(0)
    x_train, x_val = torch.randn(40, 16), torch.randn(300, 16)
    y_train = torch.randint(0, 2, (40,))  # random labels: the model can only memorise them
    y_val = (x_val[:, 0] > 0).long().numpy()
    model = nn.Linear(16, 2)
    cfg = evidence(max_epochs=8, batch_size=8, lr=0.5)
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
    cfg = evidence(max_epochs=1, batch_size=20, lr=0.05, class_balance=class_balance)
    train_arm(model, x_train, y_train, x_val, y_val, cfg, seed=0, n_classes=2)
    with torch.no_grad():
        p_minority = torch.softmax(model(x_val), -1)[:, 0]
    assert p_minority.mean().item() == pytest.approx(expected, abs=0.05)


def test_the_default_scratch_arm_is_the_pretrained_network_untrained():
    """The issue's comparison is between models of the same architecture: by default the scratch arm
    has every layer of the ImageNet network, with the same shapes, and none of its weights."""
    evidence = compose([]).model.transfer.evidence
    torch.manual_seed(0)
    scratch = ScratchNet(n_classes=10, width=evidence.scratch_width, image_size=32).net
    pretrained = imagenet_lite0(n_classes=None)  # the ImageNet network without its classifier

    def shapes(net):
        return {name: tuple(p.shape) for name, p in net.named_parameters() if not name.startswith("classifier.")}

    assert shapes(scratch) == shapes(pretrained)
    stem = next(iter(pretrained.parameters()))
    assert not torch.equal(next(iter(scratch.parameters())), stem)


def _run(arm, fraction, seed, score, epochs_to_target, best_epoch, max_epochs=6):
    return {
        "arm": arm,
        "fraction": fraction,
        "seed": seed,
        "n_labels": int(500 * fraction),
        "test_score": score,
        "val_score": score,
        "wall_seconds": 1.0,
        "epochs_to_target": epochs_to_target,
        "still_improving": best_epoch == max_epochs,
    }


def test_the_summary_counts_targets_reached_and_runs_still_improving_and_warns_of_them():
    nan = float("nan")
    runs = pd.DataFrame(
        [
            _run("imagenet", 0.1, 0, 0.70, 2, best_epoch=3),
            _run("imagenet", 0.1, 1, 0.72, nan, best_epoch=4),
            _run("imagenet", 0.1, 2, 0.74, nan, best_epoch=6),
            _run("scratch", 1.0, 0, 0.66, nan, best_epoch=6),
            _run("scratch", 1.0, 1, 0.68, 5, best_epoch=6),
            _run("scratch", 1.0, 2, 0.70, nan, best_epoch=2),
        ]
    )
    summary = summarise(runs).set_index(["arm", "fraction"])
    tuned, scratch = summary.loc[("imagenet", 0.1)], summary.loc[("scratch", 1.0)]
    assert (tuned.runs, tuned.runs_reaching_target, tuned.runs_still_improving) == (3, 1, 1)
    assert (scratch.runs, scratch.runs_reaching_target, scratch.runs_still_improving) == (3, 1, 2)
    assert tuned.epochs_to_target_mean == 2 and scratch.epochs_to_target_mean == 5  # of the runs that got there

    notes = caveats(summary.reset_index(), evidence(max_epochs=6, scratch_width=1.0))
    assert len(notes) == 1 and notes[0].startswith("scratch at 1 of the labels was still improving")
    assert "2 of 3 runs" in notes[0] and "model.transfer.evidence.max_epochs" in notes[0]
    narrow = caveats(summary.reset_index(), evidence(max_epochs=6, scratch_width=0.25))
    assert "scratch_width=1.0" in narrow[0]
