"""One background thread for bookkeeping off the request path."""
from __future__ import annotations

import logging
import queue
import threading

__all__ = ["BackgroundWorker"]

log = logging.getLogger("serving")


class BackgroundWorker:
    """Runs bookkeeping off the request path, on one thread, in submission order.

    The live drift monitor's evaluations and alarm reports go here (milliseconds every few
    dozen requests). Readers of their results call :meth:`flush` first, so the API never shows
    state behind its own answers.
    """

    def __init__(self) -> None:
        self._jobs: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="serving-background", daemon=True)
        self._thread.start()

    def submit(self, what: str, function, *args, **kwargs) -> None:
        self._jobs.put((what, function, args, kwargs))

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                what, function, args, kwargs = job
                function(*args, **kwargs)
            except Exception:
                log.exception("background job %s failed", job[0])
            finally:
                self._jobs.task_done()

    def flush(self) -> None:
        """Block until every submitted job has run."""
        self._jobs.join()

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=30)
