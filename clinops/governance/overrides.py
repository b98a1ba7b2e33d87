"""Clinician decisions on predictions (accepted or overridden) and the override rate.

Every decision is recorded in a SQLite file; :meth:`OverrideLog.rate` and
:func:`override_rate_flags` watch the rate at both extremes (paper, Layer 4: a high rate may
signal drift, a zero rate may signal automation bias). An override needs no justification
beyond ordinary clinical documentation, so a note is optional.

Examples
--------
>>> import pathlib, tempfile
>>> log = OverrideLog(pathlib.Path(tempfile.mkdtemp()) / "overrides.sqlite")
>>> _ = log.record("pred-1", clinician="dr.a", role="clinician", action="accepted")
>>> _ = log.record("pred-2", clinician="dr.a", role="clinician", action="overridden",
...                model_output={"p": 0.42}, clinician_decision="treat")
>>> rate = log.rate()
>>> (rate.n_decisions, rate.n_overrides, rate.rate)
(2, 1, 0.5)
>>> log.overridden_among(["pred-1", "pred-2"])
{'pred-2'}
"""
from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from clinops.governance.events import EventKind, Sink, jsonable, utc_iso
from clinops.governance.policy import GovernancePolicy
from clinops.governance.store import SqliteRecordStore
from clinops.statefiles import purge_deleted

__all__ = ["DECISION_ACTIONS", "OverrideRecord", "OverrideRate", "OverrideLog", "override_rate_flags"]


@dataclass(frozen=True)
class OverrideRecord:
    """A clinician's decision on one prediction: 'accepted' or 'overridden'."""

    record_id: int
    time_utc: str
    prediction_id: str
    clinician: str
    role: str
    action: str
    model_output: Any
    clinician_decision: Any
    note: str | None

    def to_dict(self) -> dict[str, Any]:
        return {k: jsonable(getattr(self, k)) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class OverrideRate:
    """``n_overrides / n_decisions`` (NaN when there are no decisions)."""

    n_decisions: int
    n_overrides: int

    @property
    def rate(self) -> float:
        return self.n_overrides / self.n_decisions if self.n_decisions else math.nan


_OVERRIDE_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    record_id INTEGER PRIMARY KEY AUTOINCREMENT,
    time_utc TEXT NOT NULL,
    prediction_id TEXT NOT NULL,
    clinician TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('accepted', 'overridden')),
    model_output TEXT NOT NULL,
    clinician_decision TEXT NOT NULL,
    note TEXT
);
CREATE INDEX IF NOT EXISTS decisions_time ON decisions(time_utc);
CREATE INDEX IF NOT EXISTS decisions_prediction ON decisions(prediction_id, clinician);
"""

DECISION_ACTIONS = ("accepted", "overridden")


class OverrideLog(SqliteRecordStore):
    """Clinician decisions on predictions (SQLite; thread-safe) and the override rate.

    An override needs no justification beyond ordinary clinical documentation (paper, Layer 4),
    so ``note`` is optional.
    """

    def __init__(self, path: str | Path, *, sink: Sink | None = None, clock: Callable[[], datetime] | None = None):
        super().__init__(path, _OVERRIDE_SCHEMA, sink=sink, clock=clock)

    @staticmethod
    def _record(row: sqlite3.Row) -> OverrideRecord:
        d = dict(row)
        d["model_output"] = json.loads(d["model_output"])
        d["clinician_decision"] = json.loads(d["clinician_decision"])
        return OverrideRecord(**d)

    def record(self, prediction_id: str, *, clinician: str, role: str, action: str, model_output: Any = None,
               clinician_decision: Any = None, note: str | None = None) -> OverrideRecord:
        """Record one decision; ``action`` is 'accepted' or 'overridden'."""
        if action not in DECISION_ACTIONS:
            raise ValueError(f"action: must be one of {DECISION_ACTIONS}, got {action!r}")
        for name, v in (("prediction_id", prediction_id), ("clinician", clinician), ("role", role)):
            if not (isinstance(v, str) and v.strip()):
                raise ValueError(f"{name}: required (non-empty text)")
        with self._lock, self._connect() as con:
            cur = con.execute(
                "INSERT INTO decisions (time_utc, prediction_id, clinician, role, action, model_output, "
                "clinician_decision, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (self._now(), prediction_id, clinician, role, action, json.dumps(jsonable(model_output)),
                 json.dumps(jsonable(clinician_decision)), note))
            rec = self._record(con.execute("SELECT * FROM decisions WHERE record_id = ?", (cur.lastrowid,)).fetchone())
        self._emit(EventKind.DECISION_RECORDED, f"prediction {prediction_id} {action} by {clinician} ({role})",
                   {"record_id": rec.record_id, "prediction_id": prediction_id, "action": action},
                   actor=clinician, role=role)
        return rec

    @staticmethod
    def _window(since: datetime | None, until: datetime | None) -> tuple[str, list[str]]:
        sql, args = " WHERE 1 = 1", []
        if since is not None:
            sql += " AND time_utc >= ?"
            args.append(utc_iso(since))
        if until is not None:
            sql += " AND time_utc < ?"
            args.append(utc_iso(until))
        return sql, args

    def records(self, *, since: datetime | None = None, until: datetime | None = None) -> list[OverrideRecord]:
        """Decisions in ``[since, until)`` (UTC), oldest first."""
        where, args = self._window(since, until)
        with self._lock, self._connect() as con:
            return [self._record(r) for r in con.execute(f"SELECT * FROM decisions{where} ORDER BY record_id",
                                                         args).fetchall()]

    def drop_notes(self) -> int:
        """Remove every stored note (overwritten in the file, write-ahead log emptied); returns
        how many. For a caller that keeps notes elsewhere, erasably (the serving demo keeps
        override reasons only in the audit trail's encrypted payloads)."""
        with self._lock, self._connect() as con:
            n = con.execute("UPDATE decisions SET note = NULL WHERE note IS NOT NULL").rowcount
            if n:
                purge_deleted(con)
        return n

    def decided(self, prediction_id: str, clinician: str) -> bool:
        """Whether ``clinician`` already recorded a decision on ``prediction_id`` (indexed)."""
        with self._lock, self._connect() as con:
            return con.execute("SELECT 1 FROM decisions WHERE prediction_id = ? AND clinician = ? LIMIT 1",
                               (prediction_id, clinician)).fetchone() is not None

    def overridden_among(self, prediction_ids: Sequence[str]) -> set[str]:
        """Which of ``prediction_ids`` were overridden (indexed lookups, not a scan)."""
        if not prediction_ids:
            return set()
        marks = ", ".join("?" * len(prediction_ids))
        with self._lock, self._connect() as con:
            return {row[0] for row in con.execute(
                f"SELECT DISTINCT prediction_id FROM decisions WHERE action = 'overridden' "
                f"AND prediction_id IN ({marks})", list(prediction_ids))}

    def overridden_predictions(self) -> int:
        """Distinct predictions overridden at least once (what an override rate counts: one
        token overriding one prediction 300 times is one overridden prediction)."""
        with self._lock, self._connect() as con:
            return int(con.execute("SELECT COUNT(DISTINCT prediction_id) FROM decisions "
                                   "WHERE action = 'overridden'").fetchone()[0])

    def rate(self, *, since: datetime | None = None, until: datetime | None = None) -> OverrideRate:
        """Override rate over decisions in ``[since, until)`` (counted in SQL: no record is read)."""
        where, args = self._window(since, until)
        with self._lock, self._connect() as con:
            n, overridden = con.execute(f"SELECT COUNT(*), COALESCE(SUM(action = 'overridden'), 0) FROM decisions"
                                        f"{where}", args).fetchone()
        return OverrideRate(n_decisions=int(n), n_overrides=int(overridden))


def override_rate_flags(rate: OverrideRate, policy: GovernancePolicy) -> list[str]:
    """Review flags for an override rate: 'override_rate_high' or 'override_rate_zero'.

    Judged only with at least ``policy.override_min_decisions`` decisions (otherwise []).

    Examples
    --------
    >>> policy = GovernancePolicy(override_min_decisions=50, override_rate_high=0.25)
    >>> override_rate_flags(OverrideRate(n_decisions=60, n_overrides=15), policy)
    ['override_rate_high']
    >>> override_rate_flags(OverrideRate(n_decisions=60, n_overrides=0), policy)
    ['override_rate_zero']
    >>> override_rate_flags(OverrideRate(n_decisions=49, n_overrides=0), policy)   # too few to judge
    []
    """
    if rate.n_decisions < policy.override_min_decisions:
        return []
    if rate.rate >= policy.override_rate_high:
        return ["override_rate_high"]
    if policy.override_flag_zero and rate.n_overrides == 0:
        return ["override_rate_zero"]
    return []
