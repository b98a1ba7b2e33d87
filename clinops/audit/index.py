"""Where the records that name a prediction are: an index kept beside the log.

Looking a prediction up used to read every record of the log (``AuditTrail.find``), a second
at 100,000 records. The index maps each key to the exact byte range of every record it names,
so a lookup reads only those records:

- ``p`` + the canonical JSON of a ``prediction_id`` field, for every record (any kind) whose
  fields name that prediction (the prediction itself, overrides, escalations, reviews, reads);
- ``e`` + the canonical JSON of the pseudonym an ``erasure`` record names;
- ``r`` for every ``retention`` record.

It is a cache, not evidence: a private SQLite file (``index/records.sqlite``, 0600 in a 0700
directory) that the trail extends from where it stopped before each lookup, and throws away
and rebuilds from the log when it does not match the log (another log, a log cut shorter, a
last indexed record whose hash is not the chain's). Every record a lookup returns is read
from the log and checked against the hash chain the trail authenticated, so an altered index
cannot make a lookup return a record the log does not hold at that position; deleting the file
only costs a rebuild. A trail opened read-only keeps its index in memory.

Examples
--------
>>> index = RecordIndex(None, log_id="0" * 32)          # in memory
>>> index.tail()
(0, None, 0)
>>> keys = record_keys("prediction", {"prediction_id": "p-1", "requester": "dr-a"})
>>> keys
['p"p-1"']
>>> # the record at seq 0 is bytes 0..120 of segment 0; the next record starts at byte 121
>>> index.extend([(key, 0, 0, 0, 120) for key in keys], size=1, segment=0, offset=121, last_hash="ab" * 32)
>>> index.lookup(prediction_key("p-1"))
[(0, 0, 0, 120)]
>>> index.lookup(prediction_key("p-2"))
[]
>>> index.tail()
(1, 0, 121)
"""
from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from clinops.audit.encoding import canonical_json
from clinops.audit.schema import _normalise
from clinops.statefiles import connect_private_sqlite, private_directory, transaction

__all__ = ["RecordIndex", "erasure_key", "prediction_key", "record_keys", "RETENTION_KEY"]

RETENTION_KEY = "r"
#: Bytes a record line must contain to be worth parsing for the index.
_NEEDLES = (b'"prediction_id":', b'"kind":"erasure"', b'"kind":"retention"')

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT NOT NULL, seq INTEGER NOT NULL, segment INTEGER NOT NULL, start INTEGER NOT NULL,
    length INTEGER NOT NULL, PRIMARY KEY (key, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tail (
    one INTEGER PRIMARY KEY CHECK (one = 1), log_id TEXT NOT NULL, size INTEGER NOT NULL,
    segment INTEGER, stop INTEGER NOT NULL, last_hash TEXT);
"""


def prediction_key(prediction_id: Any) -> str:
    """The key of the records naming ``prediction_id`` (matched as ``find(prediction_id=...)`` matches)."""
    return "p" + canonical_json(_normalise(prediction_id, "prediction_id", None))


def erasure_key(pseudonym: str) -> str:
    """The key of the ``erasure`` records of ``pseudonym``."""
    return "e" + canonical_json(pseudonym)


def might_name(line: bytes) -> bool:
    """Cheap byte filter: False when ``line`` cannot give an index key (most records)."""
    return any(needle in line for needle in _NEEDLES)


def record_keys(kind: str, fields: Mapping[str, Any]) -> list[str]:
    """The index keys of one record, from its kind and fields."""
    keys = []
    if "prediction_id" in fields:
        keys.append("p" + canonical_json(fields["prediction_id"]))
    if kind == "erasure" and "pseudonym" in fields:
        keys.append("e" + canonical_json(fields["pseudonym"]))
    if kind == "retention":
        keys.append(RETENTION_KEY)
    return keys


class RecordIndex:
    """Index key -> (seq, segment, byte offset, length) of the records under that key.

    Parameters
    ----------
    path : Path or None
        The SQLite file (created 0600, its directory 0700); None keeps the index in memory.
    log_id : str
        The log it indexes: an index of another log is emptied on open.
    """

    def __init__(self, path: Path | None, *, log_id: str) -> None:
        self.path = path
        self.log_id = log_id
        self._lock = threading.RLock()  # one connection, shared by the trail's threads
        if path is None:
            self._con = connect_private_sqlite(":memory:", isolation_level=None, check_same_thread=False)
        else:
            private_directory(path.parent)
            # WAL: every worker process of a server shares the file, and readers never wait
            self._con = connect_private_sqlite(path, wal=True, synchronous="NORMAL", timeout=30,
                                               isolation_level=None, check_same_thread=False)
        self._con.executescript(_SCHEMA)

    @contextmanager
    def updating(self) -> Iterator["RecordIndex"]:
        """One write transaction: another process extending the index waits for it."""
        with self._lock, transaction(self._con):
            yield self

    def tail(self) -> tuple[int, int | None, int]:
        """(records indexed, segment and byte offset where the next record starts) of this log."""
        with self._lock:
            row = self._con.execute("SELECT log_id, size, segment, stop FROM tail").fetchone()
        if row is None or row[0] != self.log_id:
            return 0, None, 0
        return int(row[1]), row[2], int(row[3])

    def last_hash(self) -> str | None:
        """Leaf hash (hex) of the last record indexed, as the index recorded it."""
        with self._lock:
            row = self._con.execute("SELECT log_id, last_hash FROM tail").fetchone()
        return None if row is None or row[0] != self.log_id else row[1]

    def clear(self) -> None:
        """Forget everything (the index is then rebuilt from the start of the log)."""
        self._con.execute("DELETE FROM entries")
        self._con.execute("DELETE FROM tail")

    def extend(self, entries: Iterable[tuple[str, int, int, int, int]], *, size: int, segment: int | None,
               offset: int, last_hash: str | None) -> None:
        """Add ``(key, seq, segment, offset, length)`` entries and move the tail to ``size`` records."""
        self._con.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?)", entries)
        self._con.execute("INSERT OR REPLACE INTO tail VALUES (1, ?, ?, ?, ?, ?)",
                          (self.log_id, size, segment, offset, last_hash))

    def lookup(self, key: str) -> list[tuple[int, int, int, int]]:
        """``(seq, segment, offset, length)`` of every record under ``key``, in log order."""
        with self._lock:
            return [tuple(row) for row in self._con.execute(
                "SELECT seq, segment, start, length FROM entries WHERE key = ? ORDER BY seq", (key,))]

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def __repr__(self) -> str:
        where = "memory" if self.path is None else os.fspath(self.path)
        return f"RecordIndex({where}, log_id={self.log_id})"
