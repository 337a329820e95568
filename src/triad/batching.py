"""Dynamic batching for served models: the items of concurrent requests go through the model as one batch.

MLflow's scoring server (``mlflow models serve``) answers each request in a thread of its own, so
requests that arrive together call ``predict`` at the same time. A model whose cost per batch grows
slower than the batch (beam search over sentences: one batch of 16 took 0.53 s on one core
where 16 sentences one by one took 1.9 s) answers more of them a second when those calls share one
batch. ``MicroBatcher(fn, max_items, max_wait_s)`` wraps ``fn(items) -> results`` (one result per
item, in order) so that:

- the first call to arrive leads a batch: it waits up to ``max_wait_s`` for other calls to join, or
  less once the batch holds ``max_items`` items; then it runs ``fn`` once on every joined call's
  items, and each call gets back its own results (or the batch's exception);
- one batch runs at a time: calls that arrive while a batch runs join the next one, so under load
  batches form on their own and ``max_wait_s`` is only paid when the server is nearly idle;
- a call of ``max_items`` items or more runs as a batch of its own; ``max_wait_s`` of 0 turns
  batching off (each call runs alone, still one at a time).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Call:
    items: list
    wake: threading.Event = field(default_factory=threading.Event)
    leads: bool = False
    result: list | None = None
    error: BaseException | None = None

    def outcome(self) -> list:
        if self.error is not None:
            raise self.error
        return self.result if self.result is not None else []


class MicroBatcher:
    """``batcher(items) -> results``: ``fn`` over the items of this and concurrent calls (see the module)."""

    def __init__(self, fn: Callable[[list], list], max_items: int, max_wait_s: float):
        if max_items < 1:
            raise ValueError(f"max_items must be at least 1, got {max_items}")
        self.fn, self.max_items, self.max_wait_s = fn, max_items, max_wait_s
        self._state = threading.Lock()  # guards the queue
        self._running = threading.Lock()  # one batch at a time
        self._full = threading.Event()  # the queue holds a whole batch: the leader stops waiting
        self._queue: list[_Call] = []
        self.batches: list[int] = []  # the size of each batch run (calls per batch), for measurement

    def __getstate__(self) -> dict:  # locks do not pickle: a copy starts with an empty queue of its own
        return {"fn": self.fn, "max_items": self.max_items, "max_wait_s": self.max_wait_s}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["fn"], state["max_items"], state["max_wait_s"])

    def __call__(self, items: list) -> list:
        items = list(items)
        if self.max_wait_s <= 0 or len(items) >= self.max_items:
            with self._running:
                self.batches.append(1)
                return self._checked(items, self.fn(items))
        call = _Call(items)
        with self._state:
            self._queue.append(call)
            if len(self._queue) == 1:
                call.leads = True
                self._full.clear()
            elif self._queued() >= self.max_items:
                self._full.set()
        if not call.leads:
            call.wake.wait()  # answered, or made the leader of the next batch
            if not call.leads:
                return call.outcome()
        self._full.wait(self.max_wait_s)
        with self._running:
            batch = self._take_batch()
            try:
                joined = [x for c in batch for x in c.items]
                results = self._checked(joined, self.fn(joined))
                start = 0
                for c in batch:
                    c.result, start = results[start : start + len(c.items)], start + len(c.items)
            except BaseException as exc:  # every call of the batch gets the batch's error
                for c in batch:
                    c.error = exc
            self.batches.append(len(batch))
        for c in batch:
            if c is not call:
                c.wake.set()
        return call.outcome()

    def _queued(self) -> int:
        return sum(len(c.items) for c in self._queue)

    def _take_batch(self) -> list[_Call]:
        """The leader's batch: calls from the front of the queue (its own first) up to ``max_items``
        items; the first call left over becomes the next leader."""
        with self._state:
            batch, size = [], 0
            while self._queue and (not batch or size + len(self._queue[0].items) <= self.max_items):
                taken = self._queue.pop(0)
                batch.append(taken)
                size += len(taken.items)
            if self._queue:
                following = self._queue[0]
                following.leads = True
                if self._queued() >= self.max_items:
                    self._full.set()
                else:
                    self._full.clear()
                following.wake.set()
        return batch

    @staticmethod
    def _checked(items: list, results: Any) -> list:
        results = list(results)
        if len(results) != len(items):
            raise RuntimeError(f"the batched function returned {len(results)} results for {len(items)} items")
        return results
