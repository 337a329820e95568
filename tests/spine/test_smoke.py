"""Every head through the spine's own entries: prepare -> train (fast_dev_run) -> evaluate."""

from __future__ import annotations

import json

import pytest

from tests.tiny import TINY, tiny
from triad.config import compose
from triad.evaluate import evaluate
from triad.heads import get_head
from triad.prepare import prepare
from triad.train import train

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("head", sorted(TINY))
def test_fast_dev_run(project, head):
    cfg = compose(tiny(head, extra=("trainer=fast_dev_run",)))
    summary = prepare(cfg, head)
    assert summary["head"] == head
    for step in get_head(head, cfg).steps():
        from triad.prepare import run_step

        run_step(cfg, head, step)
    trained = train(cfg, head)
    assert trained["global_step"] == 1
    assert (project / "artifacts" / head / "train" / "model.pt").is_file()
    result = evaluate(cfg, head, register=False)
    metrics = json.loads((project / "reports" / head / "metrics.json").read_text())
    assert get_head(head, cfg).gate_metric in metrics and metrics == result["metrics"]


def test_training_is_deterministic_on_cpu(project):
    """The same config and seed give bit-identical weights."""
    import torch

    cfg = compose(
        tiny(
            "translator",
            extra=("model.translator.max_epochs=1", "trainer.limit_train_batches=3", "trainer.limit_val_batches=1"),
        )
    )
    prepare(cfg, "translator")
    model_file = project / "artifacts" / "translator" / "train" / "model.pt"
    train(cfg, "translator")
    first = torch.load(model_file, weights_only=False)["state_dict"]
    train(cfg, "translator")
    second = torch.load(model_file, weights_only=False)["state_dict"]
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    different_seed = compose(
        tiny(
            "translator",
            extra=(
                "seed=7",
                "model.translator.max_epochs=1",
                "trainer.limit_train_batches=3",
                "trainer.limit_val_batches=1",
            ),
        )
    )
    train(different_seed, "translator")
    third = torch.load(model_file, weights_only=False)["state_dict"]
    assert not all(torch.equal(first[k], third[k]) for k in first)


def test_nan_loss_stops_training_with_a_clear_error():
    import math

    import torch

    from triad.callbacks import FiniteLossGuard
    from triad.errors import TrainingError

    class State:
        global_step, current_epoch = 17, 2

    guard = FiniteLossGuard("translator")
    guard.on_train_batch_end(State(), None, {"loss": torch.tensor(1.5)}, None, 0)  # finite: no error
    with pytest.raises(TrainingError, match=r"became nan at step 17 .*Lower model\.translator\.lr"):
        guard.on_train_batch_end(State(), None, {"loss": torch.tensor(math.nan)}, None, 3)
