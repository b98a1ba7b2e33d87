"""The review queue: cases and model-level issues waiting for a person, kept in SQLite.

Escalated predictions, drift watches, suspensions and fairness alerts open items; a person
with an allowed role resolves them with a resolution and an optional note. The queue is a
SQLite file, so a server restart keeps it, and its erasure (:meth:`ReviewQueue.redact`)
overwrites what it removes.

Examples
--------
>>> import pathlib, tempfile
>>> queue = ReviewQueue(pathlib.Path(tempfile.mkdtemp()) / "review.sqlite", resolve_roles=["reviewer"])
>>> item = queue.add("escalation", "ambiguous conformal set", subject="pred-1")
>>> [(i.item_id, i.kind, i.status) for i in queue.list()]
[(1, 'escalation', 'open')]
>>> queue.resolve(item.item_id, reviewer="nurse.c", role="clinician", resolution="seen")
Traceback (most recent call last):
...
clinops.governance.events.GovernanceError: resolve: role 'clinician' may not resolve review items; allowed roles: ['reviewer']
>>> queue.resolve(item.item_id, reviewer="dr.a", role="reviewer", resolution="treated as high risk").status
'resolved'
>>> queue.count("open")
0
"""
from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from clinops.governance.events import EventKind, GovernanceError, Sink, jsonable
from clinops.governance.store import SqliteRecordStore
from clinops.statefiles import purge_deleted, transaction

__all__ = ["ReviewItem", "ReviewQueue"]


@dataclass(frozen=True)
class ReviewItem:
    """A case or model-level issue waiting for (or closed by) human review."""

    item_id: int
    created_utc: str
    kind: str
    reason: str
    details: Mapping[str, Any]
    subject: str | None
    status: str
    resolved_utc: str | None = None
    reviewer: str | None = None
    role: str | None = None
    resolution: str | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: jsonable(getattr(self, k)) for k in self.__dataclass_fields__}


_REVIEW_SCHEMA = """
CREATE TABLE IF NOT EXISTS review_items (
    item_id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_utc TEXT NOT NULL,
    kind TEXT NOT NULL,
    reason TEXT NOT NULL,
    details TEXT NOT NULL,
    subject TEXT,
    status TEXT NOT NULL CHECK (status IN ('open', 'resolved')),
    resolved_utc TEXT, reviewer TEXT, role TEXT, resolution TEXT, note TEXT
);
CREATE INDEX IF NOT EXISTS review_items_status ON review_items(status);
"""


class ReviewQueue(SqliteRecordStore):
    """Items for human review, persisted in SQLite (a server restart keeps them); thread-safe.

    Parameters
    ----------
    path : SQLite file (created with its folder if missing)
    resolve_roles : roles allowed to resolve items (None: any named role)
    sink : callable(GovernanceEvent), optional -- 'review_item_added' / 'review_item_resolved'
    clock : callable() -> aware datetime, optional (tests)
    """

    def __init__(self, path: str | Path, *, resolve_roles: Collection[str] | None = None,
                 sink: Sink | None = None, clock: Callable[[], datetime] | None = None):
        super().__init__(path, _REVIEW_SCHEMA, sink=sink, clock=clock)
        self.resolve_roles = tuple(resolve_roles) if resolve_roles is not None else None

    @staticmethod
    def _item(row: sqlite3.Row) -> ReviewItem:
        d = dict(row)
        d["details"] = json.loads(d["details"])
        return ReviewItem(**d)

    def add(self, kind: str, reason: str, *, details: Mapping[str, Any] | None = None,
            subject: str | None = None) -> ReviewItem:
        """Open an item. ``subject``: what it is about (e.g. a pseudonymous prediction id)."""
        if not (isinstance(kind, str) and kind.strip()):
            raise ValueError("kind: required")
        if not (isinstance(reason, str) and reason.strip()):
            raise ValueError("reason: required")
        payload = json.dumps(jsonable(dict(details or {})))
        with self._lock, self._connect() as con:
            cur = con.execute("INSERT INTO review_items (created_utc, kind, reason, details, subject, status) "
                              "VALUES (?, ?, ?, ?, ?, 'open')", (self._now(), kind, reason, payload, subject))
            item = self._item(con.execute("SELECT * FROM review_items WHERE item_id = ?",
                                          (cur.lastrowid,)).fetchone())
        self._emit(EventKind.REVIEW_ITEM_ADDED, f"review item {item.item_id} ({kind}): {reason}",
                   {"item_id": item.item_id, "kind": kind, "subject": subject})
        return item

    def get(self, item_id: int) -> ReviewItem:
        with self._lock, self._connect() as con:
            row = con.execute("SELECT * FROM review_items WHERE item_id = ?", (int(item_id),)).fetchone()
        if row is None:
            raise GovernanceError(f"item_id: no review item {item_id}")
        return self._item(row)

    def list(self, status: str | None = "open", *, kind: str | None = None, after: int = 0,
             limit: int | None = None) -> list[ReviewItem]:
        """Items oldest first; ``status`` 'open', 'resolved' or None (all); a page of at most
        ``limit`` items with ``item_id > after``."""
        if status not in ("open", "resolved", None):
            raise ValueError(f"status: must be 'open', 'resolved' or None, got {status!r}")
        sql, args = "SELECT * FROM review_items WHERE item_id > ?", [int(after)]
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        if kind is not None:
            sql += " AND kind = ?"
            args.append(kind)
        sql += " ORDER BY item_id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        with self._lock, self._connect() as con:
            rows = con.execute(sql, args).fetchall()
        return [self._item(r) for r in rows]

    def count(self, status: str | None = "open") -> int:
        """Number of items with ``status`` (None: all)."""
        with self._lock, self._connect() as con:
            if status is None:
                return int(con.execute("SELECT COUNT(*) FROM review_items").fetchone()[0])
            return int(con.execute("SELECT COUNT(*) FROM review_items WHERE status = ?", (status,)).fetchone()[0])

    def resolve(self, item_id: int, *, reviewer: str, role: str, resolution: str,
                note: str | None = None) -> ReviewItem:
        """Close an open item. Raises GovernanceError for an unknown / closed item or a wrong role."""
        if not (isinstance(reviewer, str) and reviewer.strip()):
            raise GovernanceError("resolve: reviewer must be named")
        if self.resolve_roles is not None and role not in self.resolve_roles:
            raise GovernanceError(f"resolve: role {role!r} may not resolve review items; "
                                  f"allowed roles: {sorted(self.resolve_roles)}")
        if not (isinstance(resolution, str) and resolution.strip()):
            raise GovernanceError("resolve: resolution: required")
        with self._lock, self._connect() as con:
            with transaction(con):
                row = con.execute("SELECT status FROM review_items WHERE item_id = ?", (int(item_id),)).fetchone()
                if row is None:
                    raise GovernanceError(f"item_id: no review item {item_id}")
                if row["status"] != "open":
                    raise GovernanceError(f"item_id: review item {item_id} is already resolved")
                con.execute("UPDATE review_items SET status = 'resolved', resolved_utc = ?, reviewer = ?, role = ?, "
                            "resolution = ?, note = ? WHERE item_id = ?",
                            (self._now(), reviewer, role, resolution, note, int(item_id)))
            item = self._item(con.execute("SELECT * FROM review_items WHERE item_id = ?", (int(item_id),)).fetchone())
        self._emit(EventKind.REVIEW_ITEM_RESOLVED, f"review item {item_id} resolved by {reviewer} ({role}): {resolution}",
                   {"item_id": int(item_id), "resolution": resolution}, actor=reviewer, role=role)
        return item


    def redact(self, field: str, values: Collection[str], *, keep: Collection[str] = ()) -> int:
        """Erase the personal data of every item whose ``details[field]`` is one of ``values``.

        Such an item keeps only the ``keep`` keys of its details (plus ``"redacted": true``)
        and loses its note; its status, times and reviewer stay (the oversight record). Deleted
        content is overwritten in the database file and the write-ahead log is emptied.
        Returns the number of items redacted.
        """
        wanted = sorted(set(values))
        if not wanted:
            return 0
        marks = ", ".join("?" * len(wanted))
        with self._lock, self._connect() as con:
            with transaction(con):
                rows = con.execute(f"SELECT item_id, details FROM review_items "
                                   f"WHERE json_extract(details, ?) IN ({marks})", [f"$.{field}", *wanted]).fetchall()
                for row in rows:
                    details = json.loads(row["details"])
                    kept = {k: details[k] for k in keep if k in details}
                    con.execute("UPDATE review_items SET details = ?, note = NULL WHERE item_id = ?",
                                (json.dumps({**kept, "redacted": True}), row["item_id"]))
            purge_deleted(con)
        return len(rows)
