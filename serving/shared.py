"""The serving state that every worker process must see: recent predictions and linked outcomes.

SQLite files under ``<state_dir>/private/`` (WAL, so readers never wait for a writer):

- ``predictions-<slot>.sqlite`` -- what the service remembers of each prediction to link an
  override or an outcome to it later (encounter id, calibrated probability, conformal set, sex,
  age). One file per worker, as it is written once per prediction on the hot path. A cache, not
  a record: the audit trail holds the truth, so commits are not fsynced.
- ``outcomes.sqlite`` -- the linked outcomes (one per prediction, enforced by the primary key,
  each with a keyed pseudonym of its patient so that an erasure finds it) and a few shared values (the live metrics, the set of drifted features, the last fairness
  alerts). Changes run in ``BEGIN IMMEDIATE`` transactions, so workers that link outcomes at the
  same moment evaluate the live rules one after the other on a consistent window.

The encounter id is personal data kept on disk here, as in the consent registry beside it; it
is deleted with :meth:`PredictionMemory.forget_encounter` when the subject is erased.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from clinops.statefiles import (LockHeld, acquire_lock, connect_private_sqlite, private_directory, purge_deleted,
                                transaction)


@dataclass
class PredictionMemo:
    """What the service keeps about a recent prediction (for overrides and outcomes)."""

    encounter_id: str
    probability: float
    conformal_set: list[int]
    sex: str | None
    age: float | None

    @classmethod
    def of(cls, encounter_id: str, probability: float, conformal_set: list[int],
           features: Mapping[str, Any], *, age_feature: str | None,
           sex_feature: str | None) -> "PredictionMemo":
        """From the submitted (or logged) features: the fairness groups are taken from the inputs
        the model's settings name (``age_feature`` in years, ``sex_feature`` 1 = male)."""
        sex = features.get(sex_feature) if sex_feature else None
        age = features.get(age_feature) if age_feature else None
        return cls(encounter_id=encounter_id, probability=probability, conformal_set=conformal_set,
                   sex=None if sex is None else ("male" if sex else "female"),
                   age=None if age is None else float(age))


def _connect(path: Path, *, synchronous: str) -> sqlite3.Connection:
    """A private WAL database in autocommit mode (transactions are :func:`transaction`'s), shared
    by the worker threads (each store serialises its use with its own lock)."""
    return connect_private_sqlite(path, wal=True, synchronous=synchronous, timeout=30, isolation_level=None,
                                  check_same_thread=False)


class PredictionMemory:
    """Recent predictions, shared by the worker processes of one state directory.

    Each worker writes only its own file, ``predictions-<slot>.sqlite`` (the slot is held with
    a file lock for the worker's lifetime): an insert per prediction then never waits for
    another worker's write lock. Lookups read every worker's file (WAL readers do not block).

    Parameters
    ----------
    directory : Path
        Where the files live (created if missing).
    limit : int
        Predictions kept per worker; older ones are pruned (overrides and outcomes of them are
        then refused: a lookup is one indexed query, never a scan of the audit trail). At about
        100 bytes a row, the default keeps a worker's file near 100 MB.
    """

    _SCHEMA = ("CREATE TABLE IF NOT EXISTS predictions (n INTEGER PRIMARY KEY AUTOINCREMENT, "
               "prediction_id TEXT UNIQUE NOT NULL, encounter_id TEXT NOT NULL, probability REAL NOT NULL, "
               "conformal_set TEXT NOT NULL, sex TEXT, age REAL);"
               "CREATE INDEX IF NOT EXISTS predictions_encounter ON predictions (encounter_id);")

    def __init__(self, directory: Path, *, limit: int = 1_000_000):
        self.directory = private_directory(directory)
        self._lock = threading.Lock()
        self.limit = int(limit)
        slot = 0
        while True:  # the first slot no live worker holds
            try:
                self._slot_fd = acquire_lock(self.directory / f"predictions-{slot}.lock")
                break
            except LockHeld:
                slot += 1
        self.path = self.directory / f"predictions-{slot}.sqlite"
        self._con = _connect(self.path, synchronous="OFF")
        self._con.executescript(self._SCHEMA)
        self._others: dict[Path, sqlite3.Connection] = {}

    def _all(self) -> list[sqlite3.Connection]:
        """This worker's connection first, then one per other worker's file (lock held)."""
        for path in sorted(self.directory.glob("predictions-*.sqlite")):
            if path != self.path and path not in self._others:
                self._others[path] = _connect(path, synchronous="OFF")
                self._others[path].executescript(self._SCHEMA)
        return [self._con, *self._others.values()]

    def remember(self, memos: Mapping[str, PredictionMemo]) -> None:
        """Store predictions (prediction id -> memo), in one transaction."""
        rows = [(prediction_id, m.encounter_id, m.probability, json.dumps(m.conformal_set), m.sex, m.age)
                for prediction_id, m in memos.items()]
        if not rows:
            return
        with self._lock, transaction(self._con, "BEGIN"):
            self._con.executemany(
                "INSERT INTO predictions (prediction_id, encounter_id, probability, conformal_set, sex, age) "
                "VALUES (?, ?, ?, ?, ?, ?)", rows)
            n = int(self._con.execute("SELECT seq FROM sqlite_sequence WHERE name = 'predictions'").fetchone()[0])
            if n // 1000 != (n - len(rows)) // 1000:  # prune when a thousand boundary is crossed
                self._con.execute("DELETE FROM predictions WHERE n <= ?", (n - self.limit,))

    def recall(self, prediction_id: str) -> PredictionMemo | None:
        with self._lock:
            for con in self._all():
                row = con.execute("SELECT encounter_id, probability, conformal_set, sex, age FROM predictions "
                                  "WHERE prediction_id = ?", (prediction_id,)).fetchone()
                if row is not None:
                    return PredictionMemo(encounter_id=row[0], probability=row[1],
                                          conformal_set=json.loads(row[2]), sex=row[3], age=row[4])
        return None

    def n_served(self) -> int:
        """Predictions served from this state directory by all workers (AUTOINCREMENT survives pruning)."""
        with self._lock:
            total = 0
            for con in self._all():
                row = con.execute("SELECT seq FROM sqlite_sequence WHERE name = 'predictions'").fetchone()
                total += 0 if row is None else int(row[0])
        return total

    def forget_encounter(self, encounter_id: str) -> int:
        """Forget who an erased encounter's predictions were about, in every worker's file: the
        encounter id, sex and age are blanked (overwritten in the file, and the write-ahead log
        emptied); the prediction id and the model's answer stay, so that a later override or
        outcome still finds the prediction, unlinked from the patient."""
        with self._lock:
            n = 0
            for con in self._all():
                n += con.execute("UPDATE predictions SET encounter_id = '', sex = NULL, age = NULL "
                                 "WHERE encounter_id = ?", (encounter_id,)).rowcount
                purge_deleted(con)
            return n

    def close(self) -> None:
        with self._lock:
            for con in self._all():
                con.close()
            os.close(self._slot_fd)


class AlreadyLinked(LookupError):
    """An outcome is already linked to this prediction."""


class OutcomeStore:
    """Linked outcomes and the shared values derived from them (see the module docstring)."""

    def __init__(self, path: Path):
        self._con = _connect(path, synchronous="FULL")
        # subject_key: a keyed pseudonym of the patient, so that an erasure finds their rows
        self._con.executescript(
            "CREATE TABLE IF NOT EXISTS outcomes (n INTEGER PRIMARY KEY AUTOINCREMENT, prediction_id TEXT UNIQUE "
            "NOT NULL, probability REAL NOT NULL, outcome INTEGER NOT NULL, sex TEXT, age REAL, subject_key TEXT);"
            "CREATE TABLE IF NOT EXISTS shared_values (key TEXT PRIMARY KEY, value TEXT NOT NULL);")
        columns = {row[1] for row in self._con.execute("PRAGMA table_info(outcomes)")}
        if "subject_key" not in columns:  # a state directory from before erasure reached outcomes
            self._con.execute("ALTER TABLE outcomes ADD COLUMN subject_key TEXT")
        self._con.execute("CREATE INDEX IF NOT EXISTS outcomes_subject ON outcomes (subject_key)")
        self._lock = threading.RLock()

    @contextmanager
    def transaction(self) -> Iterator["OutcomeStore"]:
        """One exclusive write transaction across processes (committed on success)."""
        with self._lock, transaction(self._con, "BEGIN IMMEDIATE"):
            yield self

    def link(self, prediction_id: str, probability: float, outcome: int, sex: str | None,
             age: float | None, subject_key: str | None) -> None:
        """Add one outcome (inside :meth:`transaction`); :class:`AlreadyLinked` if there is one."""
        try:
            self._con.execute("INSERT INTO outcomes (prediction_id, probability, outcome, sex, age, subject_key) "
                              "VALUES (?, ?, ?, ?, ?, ?)",
                              (prediction_id, probability, int(outcome), sex, age, subject_key))
        except sqlite3.IntegrityError:
            raise AlreadyLinked(prediction_id) from None

    def forget(self, subject_keys: list[str]) -> int:
        """Delete the outcomes of an erased patient (any of their ``subject_keys``); returns how many."""
        if not subject_keys:
            return 0
        with self._lock:
            n = self._con.execute(f"DELETE FROM outcomes WHERE subject_key IN ({', '.join('?' * len(subject_keys))})",
                                  list(subject_keys)).rowcount
            purge_deleted(self._con)
        return n

    def is_linked(self, prediction_id: str) -> bool:
        with self._lock:
            return self._con.execute("SELECT 1 FROM outcomes WHERE prediction_id = ?",
                                     (prediction_id,)).fetchone() is not None

    def window(self, size: int) -> list[tuple[float, int, str | None, float | None]]:
        """The ``size`` most recent outcomes, oldest first: (probability, outcome, sex, age)."""
        with self._lock:
            rows = self._con.execute("SELECT probability, outcome, sex, age FROM outcomes ORDER BY n DESC LIMIT ?",
                                     (int(size),)).fetchall()
        return [(float(p), int(y), s, a) for p, y, s, a in reversed(rows)]

    def get(self, key: str, default: Any = None) -> Any:
        with self._lock:
            row = self._con.execute("SELECT value FROM shared_values WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set(self, key: str, value: Any) -> None:
        with self._lock:
            self._con.execute("INSERT INTO shared_values VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                              "value = excluded.value", (key, json.dumps(value)))

    def close(self) -> None:
        with self._lock:
            self._con.close()
