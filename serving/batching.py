"""Natural batching: a blocking function runs on the requests that arrived while it last ran.

Nothing waits for a batch to fill. An idle server runs a lone request at once (a batch of one);
under load, the requests that arrive while a batch is being processed form the next batch. The
serving demo scores predictions this way (:meth:`serving.runtime.ServingRuntime.predict`): one
XGBoost call, one audit commit (one fdatasync) and one thread hop per batch instead of per
request, which is what lets two cores keep up with concurrent clients.
"""
from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from typing import Callable, Generic, Sequence, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class NaturalBatcher(Generic[Item, Result]):
    """Run ``function`` on a thread for batches of submitted items, one batch at a time.

    Parameters
    ----------
    function : callable, list of n items -> sequence of n results
        Blocking; runs on ``executor``. A result that is an exception is raised to the caller
        of that item only; an exception raised by ``function`` itself fails the whole batch
        (e.g. the audit commit every item of the batch shares).
    executor : concurrent.futures.Executor
    max_batch : int
        Largest batch; more waiting items go to the next one.

    Notes
    -----
    Used from one event loop; the pending list is touched only by that loop's thread.
    """

    def __init__(self, function: Callable[[list[Item]], Sequence[Result | BaseException]], executor: Executor,
                 *, max_batch: int = 32):
        if max_batch < 1:
            raise ValueError("max_batch: must be >= 1")
        self._function = function
        self._executor = executor
        self.max_batch = int(max_batch)
        self._pending: list[tuple[Item, asyncio.Future]] = []
        self._runner: asyncio.Task | None = None

    async def submit(self, item: Item) -> Result:
        """Queue ``item``; returns its result once its batch has run."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((item, future))
        if self._runner is None:
            self._runner = loop.create_task(self._run())
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        batch: list[tuple[Item, asyncio.Future]] = []
        try:
            while self._pending:
                # one turn of the loop first: requests already read from their sockets reach
                # submit() and join this batch instead of waiting for the next (no timer, no wait)
                await asyncio.sleep(0)
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch:]
                try:
                    results = await loop.run_in_executor(self._executor, self._function, [item for item, _ in batch])
                    if len(results) != len(batch):
                        raise RuntimeError(f"batch function returned {len(results)} results for {len(batch)} items")
                except Exception as exc:  # noqa: BLE001 -- handed to every caller of the batch
                    results = [exc] * len(batch)
                for (_, future), result in zip(batch, results):
                    if future.done():  # the caller went away (cancelled request)
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
                batch = []
        finally:
            self._runner = None
            # cancelled (server shutdown): nobody may wait forever
            for _, future in [*batch, *self._pending]:
                if not future.done():
                    future.set_exception(RuntimeError("the server stopped before this request was scored"))
            self._pending = []
