"""Consent and purpose registry: which declared purposes each encounter's data may serve.

A small SQLite table checked at run time, before any inference, so that a purpose outside the
documented scope is refused (paper, Layer 1, "consent and purpose tracking"). Erasure leaves a
keyed-pseudonym tombstone (:mod:`clinops.privacy.pseudonyms`) so that a re-seed does not bring
the encounter back.

Examples
--------
>>> registry = ConsentRegistry.open(":memory:", key=b"k" * 32)
>>> registry.add_purpose("direct_care", "Bedside risk estimate for the treating team")
>>> registry.add_purpose("research", "Secondary use under an approved protocol")
>>> registry.grant("30000001", ["direct_care"])
>>> registry.check("30000001", "direct_care")            # allowed: returns quietly
>>> registry.check("30000001", "research")
Traceback (most recent call last):
...
clinops.privacy.errors.ConsentError: purpose: consent for this encounter covers ['direct_care'], not 'research'
>>> registry.erase("30000001"), registry.is_erased("30000001")
(1, True)
"""
from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path

import yaml

from clinops.privacy.errors import ConsentError, PurposeError
from clinops.privacy.pseudonyms import pseudonymise
from clinops.statefiles import connect_private_sqlite, purge_deleted, transaction

__all__ = ["ConsentRegistry"]


class ConsentRegistry:
    """Which purposes each encounter's data may serve, as a small SQLite table.

    The purpose registry (allowed purpose codes with descriptions) and the initial consents
    come from a YAML seed file, applied only when the database is new, so that erased
    encounters do not reappear on restart. Erased encounters leave a keyed-pseudonym
    tombstone so a later re-seed also skips them.

    Use :meth:`open`. Safe to share between threads.

    Seed file layout::

        purposes:
          direct_care: Bedside risk estimate for the treating team
          research: Secondary use under an approved protocol
        consents:
          - encounter_id: "30000001"
            purposes: [direct_care]
    """

    def __init__(self, connection: sqlite3.Connection, key: bytes):
        self._db = connection
        self._key = key
        self._lock = threading.Lock()

    @classmethod
    def open(cls, db_path: str | os.PathLike, *, key: bytes, seed_path: str | os.PathLike | None = None) -> "ConsentRegistry":
        """Open (creating and seeding if new) a consent registry.

        Parameters
        ----------
        db_path : path-like
            SQLite file; ``":memory:"`` for a throwaway registry.
        key : bytes
            Pseudonymisation key for tombstones (see :func:`load_or_create_key`).
        seed_path : path-like, optional
            YAML seed (purposes and consents), applied when the database has no purposes yet.
        """
        connection = connect_private_sqlite(db_path, wal=True, check_same_thread=False, isolation_level=None)
        connection.executescript(
            """
            CREATE TABLE IF NOT EXISTS purposes (code TEXT PRIMARY KEY, description TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS consents (
                encounter_id TEXT NOT NULL, purpose TEXT NOT NULL REFERENCES purposes(code),
                PRIMARY KEY (encounter_id, purpose));
            CREATE TABLE IF NOT EXISTS erased (pseudonym TEXT PRIMARY KEY);
            """
        )
        registry = cls(connection, key)
        if seed_path is not None and not registry.purposes():
            registry.seed(seed_path)
        return registry

    def seed(self, seed_path: str | os.PathLike) -> None:
        """Load purposes and consents from a YAML seed file (see class docstring)."""
        path = Path(seed_path)
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise PurposeError("consent_seed", f"seed file {path} does not exist") from exc
        if not isinstance(document, dict):
            raise PurposeError("consent_seed", f"{path} must be a mapping with 'purposes' and 'consents'")
        purposes = document.get("purposes")
        if not isinstance(purposes, dict) or not purposes:
            raise PurposeError("purposes", f"{path} must map purpose codes to descriptions")
        for code, description in purposes.items():
            if not isinstance(code, str) or not code.isidentifier():
                raise PurposeError(f"purposes.{code}", "a purpose code must be an identifier (letters, digits, _)")
            self.add_purpose(code, str(description))
        for index, entry in enumerate(document.get("consents") or []):
            where = f"consents[{index}]"
            if not isinstance(entry, dict) or "encounter_id" not in entry:
                raise ConsentError(f"{where}.encounter_id", "is required")
            granted = entry.get("purposes")
            if not isinstance(granted, list) or not granted:
                raise ConsentError(f"{where}.purposes", "must be a non-empty list of purpose codes")
            if self.is_erased(str(entry["encounter_id"])):
                continue  # an erasure outlives the seed file
            self.grant(str(entry["encounter_id"]), granted)

    def add_purpose(self, code: str, description: str) -> None:
        """Register (or re-describe) a purpose code."""
        with self._lock:
            self._db.execute(
                "INSERT INTO purposes VALUES (?, ?) ON CONFLICT(code) DO UPDATE SET description = excluded.description",
                (code, description),
            )

    def purposes(self) -> dict[str, str]:
        """All registered purposes, ``code -> description``, sorted by code."""
        with self._lock:
            rows = self._db.execute("SELECT code, description FROM purposes ORDER BY code").fetchall()
        return dict(rows)

    def grant(self, encounter_id: str, purposes: Iterable[str]) -> None:
        """Record that ``encounter_id``'s data may serve ``purposes``.

        Raises
        ------
        PurposeError
            If a purpose is not registered.
        ConsentError
            If the encounter was erased (its data may no longer be processed).
        """
        known = self.purposes()
        granted = list(purposes)
        for purpose in granted:
            if purpose not in known:
                raise PurposeError("purpose", f"{purpose!r} is not a registered purpose; registered: {sorted(known)}")
        if self.is_erased(encounter_id):
            raise ConsentError("encounter_id", "this encounter's data was erased and may not be processed again")
        with self._lock, transaction(self._db):
            self._db.executemany("INSERT OR IGNORE INTO consents VALUES (?, ?)", [(encounter_id, p) for p in granted])

    def allowed_purposes(self, encounter_id: str) -> frozenset[str]:
        """Purposes the encounter's consent covers (empty when none is recorded)."""
        with self._lock:
            rows = self._db.execute("SELECT purpose FROM consents WHERE encounter_id = ?", (encounter_id,)).fetchall()
        return frozenset(row[0] for row in rows)

    def check(self, encounter_id: str, purpose: str) -> None:
        """Refuse unless ``purpose`` is registered and covered by the encounter's consent.

        Raises
        ------
        PurposeError
            The purpose is not registered at all (a malformed request, HTTP 422).
        ConsentError
            The purpose is registered but not consented for this encounter (HTTP 403).
        """
        # one indexed lookup on the request path; the messages below are built only on refusal
        with self._lock:
            registered, consented = self._db.execute(
                "SELECT EXISTS(SELECT 1 FROM purposes WHERE code = ?), "
                "EXISTS(SELECT 1 FROM consents WHERE encounter_id = ? AND purpose = ?)",
                (purpose, encounter_id, purpose)).fetchone()
        if registered and consented:
            return
        known = self.purposes()
        if purpose not in known:
            raise PurposeError("purpose", f"{purpose!r} is not a registered purpose; registered: {sorted(known)}")
        allowed = self.allowed_purposes(encounter_id)
        if purpose not in allowed:
            if not allowed:
                rule = "no consent is recorded for this encounter"
            else:
                rule = f"consent for this encounter covers {sorted(allowed)}, not {purpose!r}"
            raise ConsentError("purpose", rule)

    def erase(self, encounter_id: str) -> int:
        """Withdraw every consent of ``encounter_id`` and leave a pseudonymous tombstone.

        Returns
        -------
        int
            Number of consent rows removed.
        """
        tombstone = pseudonymise(encounter_id, self._key, domain="encounter")
        with self._lock:
            with transaction(self._db):  # the consents go and the tombstone appears together
                cursor = self._db.execute("DELETE FROM consents WHERE encounter_id = ?", (encounter_id,))
                self._db.execute("INSERT OR IGNORE INTO erased VALUES (?)", (tombstone,))
            if self._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                purge_deleted(self._db)  # the log's old pages still hold the identifier
        return cursor.rowcount

    def is_erased(self, encounter_id: str) -> bool:
        """Whether ``encounter_id`` was erased (checked through its pseudonym)."""
        tombstone = pseudonymise(encounter_id, self._key, domain="encounter")
        with self._lock:
            row = self._db.execute("SELECT 1 FROM erased WHERE pseudonym = ?", (tombstone,)).fetchone()
        return row is not None

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()
