"""Exact resume: a run killed at any step and resumed ends with the same weights as one never killed.

Lightning's checkpoints hold the weights, the optimiser, the learning-rate schedule, the step and
the epoch (and any state a module keeps in submodules, such as an EMA copy of the weights). Two
things they do not hold, and that this module makes a function of the step instead of history:

- **The data order.** ``ResumableLoader`` shuffles each epoch with a permutation drawn from
  ``seed + epoch`` (Lightning sets the epoch on its sampler), and is *stateful* in Lightning's
  sense: its ``state_dict`` is the epoch and the batches already yielded, so a checkpoint taken
  mid-epoch resumes at the next batch rather than replaying the epoch from the start.
- **The random draws** (dropout, noise and timesteps drawn in a training step, label dropout, augmentation):
  ``ExactResume`` reseeds torch, NumPy and ``random`` from ``(seed, step)`` before every training
  batch, and from ``(seed, step, "val")`` before every validation, so a step's draws never depend
  on how many draws came before it in this process.

With both, CPU training is bit-for-bit repeatable across a kill and resume (``tests/spine/test_resume.py``).
On a GPU, kernels that are not deterministic (atomics in some backward passes, unless
``trainer.deterministic=true``) can still differ in the last bits; the data order and draws do not.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler


def derived_seed(*parts: Any) -> int:
    """A 31-bit seed from ``parts`` (stable across processes and Python versions, unlike ``hash``)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


class EpochSampler(DistributedSampler):
    """Indices of one epoch: a permutation drawn from ``(seed, epoch)``, or in order without ``shuffle``.

    It is PyTorch's ``DistributedSampler`` (one shard per process when training on several, the whole
    set on one), so Lightning keeps it rather than replacing it, and sets its epoch every epoch.
    ``start`` skips the first indices of the next iteration only (a resumed epoch).
    """

    def __init__(self, dataset, seed: int, shuffle: bool = True):
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        rank, world = (torch.distributed.get_rank(), torch.distributed.get_world_size()) if distributed else (0, 1)
        super().__init__(dataset, num_replicas=world, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
        self.start = 0

    def __iter__(self) -> Iterator[int]:
        start, self.start = self.start, 0
        yield from list(super().__iter__())[start:]


class ResumableLoader(DataLoader):
    """A training DataLoader whose order is a function of ``(seed, epoch)`` and that resumes mid-epoch.

    Lightning saves ``state_dict()`` in every checkpoint and calls ``load_state_dict`` on resume.
    The skipped batches are not loaded: the sampler starts past them.
    """

    def __init__(self, dataset, *, seed: int, batch_size: int, shuffle: bool = True, **kwargs: Any):
        super().__init__(dataset, batch_size=batch_size, sampler=EpochSampler(dataset, seed, shuffle), **kwargs)
        self._epoch, self._yielded = 0, 0
        self._resume: dict[str, int] | None = None  # the position to resume at, consumed by the next epoch

    def __iter__(self) -> Iterator[Any]:
        # Runs at the first batch, after Lightning has set the sampler's epoch. A checkpoint taken
        # after an epoch's last batch resumes in the next epoch, which starts from its beginning.
        resume, self._resume = self._resume, None
        skip = resume["batches"] if resume and resume["epoch"] == self.sampler.epoch else 0
        self.sampler.start = skip * self.batch_size
        self._epoch, self._yielded = self.sampler.epoch, skip
        for batch in super().__iter__():
            self._yielded += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self._epoch, "batches": self._yielded}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume = {"epoch": int(state["epoch"]), "batches": int(state["batches"])}


class ExactResume(L.Callback):
    """Reseed every random number generator from ``(seed, step)`` before each training batch and each
    validation, and put a resumed epoch's loader back at its next batch.

    Lightning restores a stateful loader's position itself only if the loader was built after the
    checkpoint was read; a module whose ``configure_optimizers`` asks for
    ``trainer.estimated_stepping_batches`` (a schedule over the whole run) makes Lightning build it
    before, and the position is silently dropped. So the position is also read here from the
    checkpoint and applied when training starts, before the first batch is drawn.
    """

    def __init__(self, seed: int):
        self.seed = seed
        self._positions: list[dict[str, int]] = []

    def _reseed(self, *parts: Any) -> None:
        value = derived_seed(self.seed, *parts)
        random.seed(value)
        np.random.seed(value)
        torch.manual_seed(value)  # every device's generator too

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        self._positions = (
            checkpoint.get("loops", {}).get("fit_loop", {}).get("state_dict", {}).get("combined_loader", [])
        )

    def on_train_start(self, trainer, pl_module) -> None:
        combined = trainer.fit_loop._combined_loader
        loaders = [dl for dl in (combined.flattened if combined is not None else []) if isinstance(dl, ResumableLoader)]
        for loader, position in zip(loaders, self._positions):
            loader.load_state_dict(position)
        self._positions = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._reseed("train", trainer.global_step)

    def on_validation_start(self, trainer, pl_module) -> None:
        self._reseed("val", trainer.global_step)
