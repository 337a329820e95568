"""Lightning callbacks the spine adds to every head's training."""

from __future__ import annotations

import math

import lightning as L

from triad.errors import TrainingError


class FiniteLossGuard(L.Callback):
    """Stop at the first NaN or infinite training loss, saying where and what to try.

    Lightning's checkpoints up to that step are kept, so nothing already trained is lost.
    """

    def __init__(self, head: str):
        self.head = head

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        value = float(loss.detach())
        if not math.isfinite(value):
            raise TrainingError(
                f"the {self.head} training loss became {value} at step {trainer.global_step} "
                f"(epoch {trainer.current_epoch}, batch {batch_idx}). Lower model.{self.head}.lr, keep "
                "trainer.gradient_clip_val set, or check the data; the last checkpoint before this step "
                "is kept and a rerun resumes from it."
            )
