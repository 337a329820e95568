"""Lightning callbacks the spine adds to every head's training."""

from __future__ import annotations

import logging
import math
import time

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


class EpochLog(L.Callback):
    """One concise log line per epoch, for logs that are files: what Lightning's progress bar shows on
    a terminal, without its carriage-return refreshes.

    ``epoch 3/10  step 120  train_loss 0.4312  val_loss 0.4620  12.4s``: the epoch (of ``max_epochs``
    when it bounds the run), the global step, every loss the module logged (their latest values:
    a step's for training losses logged per step, the epoch's for validation), and the epoch's wall time.
    Only the global rank zero logs.
    """

    def __init__(self, head: str, logger: logging.Logger | None = None):
        self.head = head
        self.logger = logger or logging.getLogger("triad.train")
        self._started = time.perf_counter()

    def on_fit_start(self, trainer, pl_module) -> None:
        """One line for the model in place of Lightning's summary table."""
        if trainer.is_global_zero:
            self.logger.info("%s model: %s", self.head, self.model_line(pl_module))

    @staticmethod
    def model_line(module) -> str:
        """``Seq2SeqTransformer, 919.2 K parameters (919.2 K trainable)``: the module's network (its only
        child, when it wraps one) and its parameter counts."""
        children = list(module.named_children())
        network = children[0][1] if len(children) == 1 else module
        total = sum(p.numel() for p in module.parameters())
        trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
        return f"{type(network).__name__}, {_count(total)} parameters ({_count(trainable)} trainable)"

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._started = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # Lightning validates at the end of an epoch before this hook: val_loss is this epoch's
        if trainer.is_global_zero and not trainer.sanity_checking:
            self.logger.info("%s %s", self.head, self.line(trainer, time.perf_counter() - self._started))

    @staticmethod
    def line(trainer, seconds: float) -> str:
        epoch = f"epoch {trainer.current_epoch + 1}"
        if trainer.max_epochs is not None and trainer.max_epochs > 0:
            epoch += f"/{trainer.max_epochs}"
        metrics = trainer.callback_metrics
        # a loss logged per step and per epoch appears three times (x, x_step, x_epoch): keep x alone
        losses = sorted(
            (name, value)
            for name, value in metrics.items()
            if "loss" in name and not (name.endswith(("_step", "_epoch")) and name.rsplit("_", 1)[0] in metrics)
        )
        # training losses first, then validation, then any other (e.g. a language model's)
        losses.sort(key=lambda item: (not item[0].startswith("train"), not item[0].startswith("val")))
        parts = [epoch, f"step {trainer.global_step}"]
        parts += [f"{name} {float(value):.4g}" for name, value in losses]
        parts.append(f"{seconds:.1f}s")
        return "  ".join(parts)


def _count(n: int) -> str:
    """1234 -> "1.2 K", 3_400_000 -> "3.4 M"."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return str(n)
