"""serving.batching.NaturalBatcher: batches form from what arrives while a batch runs, and every
caller gets its own result or error."""
from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from serving.batching import NaturalBatcher


class Recorder:
    """A batch function that records its batches; the first batch can be held on an event."""

    def __init__(self, hold_first: bool = False):
        self.batches: list[list] = []
        self.release = threading.Event()
        self.started = threading.Event()
        if not hold_first:
            self.release.set()

    def __call__(self, items: list) -> list:
        self.batches.append(list(items))
        self.started.set()
        self.release.wait(10)
        return [item * 10 if not isinstance(item, str) else ValueError(f"bad item {item}") for item in items]


@pytest.fixture()
def executor():
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield pool


async def _while_first_batch_runs(batcher, recorder, first, later):
    """Submit ``first``; once its batch is running, submit ``later`` items; then release."""
    tasks = [asyncio.ensure_future(batcher.submit(first))]
    await asyncio.get_running_loop().run_in_executor(None, recorder.started.wait, 10)
    tasks += [asyncio.ensure_future(batcher.submit(item)) for item in later]
    await asyncio.sleep(0.05)  # the later submissions are queued, not run, while the first batch holds
    assert len(recorder.batches) == 1
    recorder.release.set()
    return await asyncio.gather(*tasks, return_exceptions=True)


def test_a_lone_item_is_a_batch_of_one(executor):
    recorder = Recorder()
    batcher = NaturalBatcher(recorder, executor)
    assert asyncio.run(batcher.submit(4)) == 40
    assert recorder.batches == [[4]]


def test_items_arriving_during_a_batch_form_the_next_batch(executor):
    recorder = Recorder(hold_first=True)
    batcher = NaturalBatcher(recorder, executor)
    results = asyncio.run(_while_first_batch_runs(batcher, recorder, 1, [2, 3, 4, 5]))
    assert results == [10, 20, 30, 40, 50]  # each caller its own result, in any batch
    assert recorder.batches == [[1], [2, 3, 4, 5]]


def test_max_batch_splits_the_queue(executor):
    recorder = Recorder(hold_first=True)
    batcher = NaturalBatcher(recorder, executor, max_batch=3)
    results = asyncio.run(_while_first_batch_runs(batcher, recorder, 0, list(range(1, 8))))
    assert results == [i * 10 for i in range(8)]
    assert recorder.batches == [[0], [1, 2, 3], [4, 5, 6], [7]]


def test_an_item_error_reaches_only_its_caller(executor):
    recorder = Recorder(hold_first=True)
    batcher = NaturalBatcher(recorder, executor)
    results = asyncio.run(_while_first_batch_runs(batcher, recorder, 1, [2, "x", 3]))
    assert results[:2] == [10, 20] and results[3] == 30
    assert isinstance(results[2], ValueError) and "bad item x" in str(results[2])


def test_a_failed_batch_fails_every_caller_of_it_and_the_next_batch_runs(executor):
    calls = []

    def commit(items):
        calls.append(list(items))
        if len(calls) == 1:
            raise OSError("disk full")  # e.g. the audit commit the whole batch shares
        return items

    batcher = NaturalBatcher(commit, executor)

    async def scenario():
        first = await asyncio.gather(batcher.submit("a"), batcher.submit("b"), return_exceptions=True)
        second = await batcher.submit("c")
        return first, second

    first, second = asyncio.run(scenario())
    assert calls[0] == ["a", "b"]
    assert all(isinstance(r, OSError) and "disk full" in str(r) for r in first)
    assert second == "c"


def test_a_wrong_number_of_results_is_an_error_not_a_mismatch(executor):
    batcher = NaturalBatcher(lambda items: items[:-1], executor)

    async def scenario():
        return await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)

    results = asyncio.run(scenario())
    assert all(isinstance(r, RuntimeError) and "2 items" in str(r) for r in results)


def test_a_cancelled_caller_does_not_disturb_the_others(executor):
    recorder = Recorder(hold_first=True)
    batcher = NaturalBatcher(recorder, executor)

    async def scenario():
        first = asyncio.ensure_future(batcher.submit(1))
        await asyncio.get_running_loop().run_in_executor(None, recorder.started.wait, 10)
        gone = asyncio.ensure_future(batcher.submit(2))
        kept = asyncio.ensure_future(batcher.submit(3))
        await asyncio.sleep(0.01)
        gone.cancel()
        recorder.release.set()
        return await first, await kept, gone.cancelled()

    assert asyncio.run(scenario()) == (10, 30, True)


def test_max_batch_must_be_positive(executor):
    with pytest.raises(ValueError, match="max_batch"):
        NaturalBatcher(lambda items: items, executor, max_batch=0)
