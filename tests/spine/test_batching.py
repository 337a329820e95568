"""Dynamic batching (triad.batching): concurrent calls share one call of the model, each gets its own answer."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from triad.batching import MicroBatcher


class Model:
    """Doubles numbers; records each batch it saw and how many batches ran at once."""

    def __init__(self, seconds: float = 0.05):
        self.seconds, self.seen, self.running, self.most_at_once = seconds, [], 0, 0
        self._lock = threading.Lock()

    def __call__(self, items: list) -> list:
        with self._lock:
            self.seen.append(list(items))
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        time.sleep(self.seconds)
        if "boom" in items:
            with self._lock:
                self.running -= 1
            raise ValueError("boom in the batch")
        with self._lock:
            self.running -= 1
        return [2 * x for x in items]


def double(items: list) -> list:
    return [2 * x for x in items]


def _concurrently(batcher: MicroBatcher, requests: list[list]) -> list:
    start = threading.Barrier(len(requests))

    def call(items):
        start.wait()
        try:
            return batcher(items)
        except ValueError as exc:
            return exc

    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(call, requests))


def test_concurrent_calls_share_batches_and_each_gets_its_own_results():
    model = Model()
    batcher = MicroBatcher(model, max_items=4, max_wait_s=1.0)
    requests = [[k] for k in range(8)] + [[100, 101]]
    answers = _concurrently(batcher, requests)
    assert answers == [[2 * x for x in r] for r in requests]
    assert len(model.seen) < len(requests)  # shared
    assert all(len(batch) <= 4 for batch in model.seen)  # never more than max_items items
    assert sorted(x for batch in model.seen for x in batch) == sorted(x for r in requests for x in r)
    assert model.most_at_once == 1  # one batch at a time
    assert sum(batcher.batches) == len(requests)


def test_a_full_batch_does_not_wait():
    batcher = MicroBatcher(Model(seconds=0.0), max_items=3, max_wait_s=30.0)
    started = time.perf_counter()
    assert _concurrently(batcher, [[1], [2], [3]]) == [[2], [4], [6]]
    assert time.perf_counter() - started < 10  # the third item filled the batch: nobody waited 30 s


def test_an_error_reaches_every_call_of_its_batch_and_the_batcher_goes_on():
    model = Model()
    batcher = MicroBatcher(model, max_items=3, max_wait_s=1.0)
    answers = _concurrently(batcher, [[1], ["boom"], [3]])
    assert len(model.seen) == 1 and all(isinstance(a, ValueError) for a in answers)
    assert batcher([5]) == [10]


def test_no_wait_means_each_call_alone_and_a_large_call_in_one_piece():
    model = Model(seconds=0.01)
    alone = MicroBatcher(model, max_items=4, max_wait_s=0)
    assert _concurrently(alone, [[1], [2], [3]]) == [[2], [4], [6]]
    assert sorted(model.seen) == [[1], [2], [3]] and model.most_at_once == 1
    model.seen.clear()
    assert MicroBatcher(model, max_items=4, max_wait_s=1.0)(list(range(6))) == [0, 2, 4, 6, 8, 10]
    assert model.seen == [list(range(6))]


def test_a_model_that_answers_the_wrong_number_of_items_is_an_error():
    with pytest.raises(RuntimeError, match="returned 1 results for 2 items"):
        MicroBatcher(lambda items: [0], max_items=4, max_wait_s=0)([1, 2])


def test_a_batcher_pickles_with_its_model():
    """MLflow pickles a python model it has already loaded (to check its input example)."""
    import pickle

    copy = pickle.loads(pickle.dumps(MicroBatcher(double, max_items=2, max_wait_s=0.5)))
    assert copy([1, 2]) == [2, 4] and (copy.max_items, copy.max_wait_s) == (2, 0.5)
