"""The SQLite store under the review queue and the override log.

Each operation opens its own connection (:func:`clinops.statefiles.connect_private_sqlite`:
a private 0600 file whose deleted content is overwritten) under a thread lock, so one store
object is safe across threads and several processes can share the file (write-ahead logging:
readers never block the writer). Multi-statement changes run in
:func:`clinops.statefiles.transaction`.
"""
from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from clinops.governance.events import EventKind, GovernanceEvent, Sink, jsonable, parse_utc_iso, utc_iso, utcnow
from clinops.statefiles import connect_private_sqlite

__all__ = ["SqliteRecordStore"]


class SqliteRecordStore:
    """A SQLite file of governance records, opened per operation under a lock.

    Parameters
    ----------
    path : SQLite file (created private, with its folder, if missing)
    schema : SQL script creating the store's tables if missing
    sink : callable(GovernanceEvent), optional -- receives the store's events
    clock : callable() -> aware datetime, optional (tests)
    """

    def __init__(self, path: str | Path, schema: str, *, sink: Sink | None = None,
                 clock: Callable[[], datetime] | None = None):
        self.path = Path(path)
        self.sink = sink
        self._clock = clock or utcnow
        self._lock = threading.Lock()
        # write-ahead logging is a property of the file: switched on once, here
        with self._connect(wal=True) as con:
            con.executescript(schema)

    @contextmanager
    def _connect(self, *, wal: bool = False) -> Iterator[sqlite3.Connection]:
        # private (0600) and overwriting what it deletes: the stores hold notes and case details;
        # autocommit (isolation_level=None): a transaction starts only in statefiles.transaction
        con = connect_private_sqlite(self.path, wal=wal, timeout=30, isolation_level=None)
        con.row_factory = sqlite3.Row
        try:
            yield con
        finally:
            con.close()

    def _now(self) -> str:
        return utc_iso(self._clock())

    def _emit(self, kind: EventKind, reason: str, details: Mapping[str, Any], actor: str | None = None,
              role: str | None = None) -> None:
        if self.sink is not None:
            self.sink(GovernanceEvent(time_utc=parse_utc_iso(self._now()), kind=kind.value, reason=reason,
                                      details=jsonable(dict(details)), actor=actor, role=role))
