"""The pseudonym store: subject -> random pseudonym, and the per-subject data keys.

Kept apart from the log (a SQLite file under ``private/``) because it is the only place where a
record can be linked back to a patient, and because it must be able to forget:

- ``subjects``: ``HMAC-SHA256(lookup key, subject id) -> pseudonym``. The subject id itself is
  never stored; the pseudonym is random (not a hash of the id), so once the row is deleted
  nothing, not even the keyring, can link the pseudonym back to the subject.
- ``data_keys``: one AES-256 data key per (pseudonym, UTC day), wrapped under the keyring's
  active key-encryption key. Erasure deletes all of a subject's data keys; retention deletes the
  keys of days older than the retention period. Either way the payloads they encrypted become
  unreadable (crypto-shredding) while the log's hashes and signatures, which cover ciphertext,
  stay valid.

Deletion uses ``PRAGMA secure_delete`` and truncates the write-ahead log afterwards, so the key
bytes are overwritten in the database files. Copies outside them (backups, snapshots, SSD
wear-levelling) are out of reach of any library: see clinops/docs/audit.md, "Threat model".
"""
from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timezone
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from clinops.audit.keys import Keyring
from clinops.statefiles import connect_private_sqlite, purge_deleted, transaction

__all__ = ["PseudonymStore"]

_log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS subjects (
    lookup    BLOB PRIMARY KEY,     -- HMAC-SHA256(lookup key, subject id); the id is never stored
    pseudonym TEXT NOT NULL UNIQUE,
    created   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS data_keys (
    dek_id    TEXT PRIMARY KEY,
    pseudonym TEXT NOT NULL,
    day       TEXT NOT NULL,        -- UTC day (YYYY-MM-DD) of the payloads this key encrypts
    kek_id    TEXT NOT NULL,
    wrapped   BLOB NOT NULL,        -- nonce || AES-256-GCM(KEK, data key)
    UNIQUE (pseudonym, day)
);
CREATE INDEX IF NOT EXISTS data_keys_day ON data_keys (day);
"""


def _context(dek_id: str, pseudonym: str, day: str) -> bytes:
    # Binds a wrapped key to its row (id, subject, day): a row repointed at another pseudonym or
    # day, or a blob swapped between rows, no longer opens.
    return b"clinops-audit/v2 data-key\n%s\n%s\n%s" % (dek_id.encode(), pseudonym.encode(), day.encode())


class PseudonymStore:
    """Pseudonyms and per-subject data keys in one SQLite file.

    Parameters
    ----------
    path : Path
        The SQLite file (created with mode 600 if missing).
    keyring : Keyring
        Wraps and unwraps the data keys; computes the subject lookup HMAC.

    Notes
    -----
    Methods are thread-safe. Writers of the audit trail call the mutating methods while they
    hold the log's lock, so concurrent processes never race on a subject.
    """

    def __init__(self, path: Path, keyring: Keyring) -> None:
        self.path = Path(path)
        self.keyring = keyring
        self._lock = threading.RLock()
        # private (0600), overwriting what it deletes; keys are durable before the records using them
        self._db = connect_private_sqlite(self.path, wal=True, synchronous="FULL", isolation_level=None,
                                          check_same_thread=False, timeout=30)
        self._db.executescript(_SCHEMA)
        self._in_batch = False

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group inserts into one transaction (one fsync); commits on exit, rolls back on error."""
        with self._lock:
            if self._in_batch:
                yield
                return
            self._in_batch = True
            try:
                with transaction(self._db):
                    yield
            finally:
                self._in_batch = False

    # -- pseudonyms -------------------------------------------------------------------------
    def pseudonym(self, subject: str, *, create: bool) -> str | None:
        """The subject's pseudonym; a new random one if ``create`` and none exists, else None."""
        lookup = self.keyring.subject_lookup(subject)
        with self._lock:
            row = self._db.execute("SELECT pseudonym FROM subjects WHERE lookup = ?", (lookup,)).fetchone()
            if row is not None or not create:
                return None if row is None else row[0]
            pseudonym = "ps-" + secrets.token_hex(16)
            with self.batch():
                self._db.execute("INSERT INTO subjects (lookup, pseudonym, created) VALUES (?, ?, ?)",
                                 (lookup, pseudonym, datetime.now(timezone.utc).isoformat()))
            return pseudonym

    # -- data keys --------------------------------------------------------------------------
    def data_key(self, pseudonym: str, day: str, *, create: bool) -> tuple[str, bytes] | None:
        """``(dek_id, 32-byte key)`` of a pseudonym for a UTC day ``YYYY-MM-DD``; created if asked."""
        with self._lock:
            row = self._db.execute("SELECT dek_id, kek_id, wrapped FROM data_keys WHERE pseudonym = ? AND day = ?",
                                   (pseudonym, day)).fetchone()
            if row is not None:
                return row[0], self.keyring.unwrap(row[1], row[2], context=_context(row[0], pseudonym, day))
            if not create:
                return None
            dek_id = "dk-" + secrets.token_hex(12)
            key = AESGCM.generate_key(256)
            kek_id, wrapped = self.keyring.wrap(key, context=_context(dek_id, pseudonym, day))
            with self.batch():
                self._db.execute("INSERT INTO data_keys (dek_id, pseudonym, day, kek_id, wrapped) VALUES (?, ?, ?, ?, ?)",
                                 (dek_id, pseudonym, day, kek_id, wrapped))
            return dek_id, key

    def key_by_id(self, dek_id: str, pseudonym: str) -> bytes | None:
        """The data key ``dek_id`` of ``pseudonym``, or None once shredded (row deleted or its KEK destroyed).

        Raises
        ------
        KeyUnavailable
            The row does not open under its KEK with this id, pseudonym and day: it was altered.
        """
        with self._lock:
            row = self._db.execute("SELECT kek_id, wrapped, day FROM data_keys WHERE dek_id = ?", (dek_id,)).fetchone()
        if row is None or not self.keyring.has_key(row[0]):
            return None
        return self.keyring.unwrap(row[0], row[1], context=_context(dek_id, pseudonym, row[2]))

    def count_keys(self) -> int:
        """Number of data keys held."""
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM data_keys").fetchone()[0])

    # -- forgetting -------------------------------------------------------------------------
    def lookup_pseudonym(self, subject: str) -> str | None:
        """The subject's pseudonym, or None (never creates one)."""
        return self.pseudonym(subject, create=False)

    def erase(self, subject: str, dek_ids: set[str]) -> tuple[str, int] | None:
        """Delete a subject's mapping, every data key of its pseudonym and the keys ``dek_ids``.

        ``dek_ids`` are the data keys the log's own records of this pseudonym name: the log is
        tamper-evident, this table is not, so a row repointed at another pseudonym is still found.

        Returns
        -------
        tuple of (str, int) or None
            ``(pseudonym, number of data keys destroyed)``, or None if the subject is unknown.
        """
        lookup = self.keyring.subject_lookup(subject)
        with self._lock:
            row = self._db.execute("SELECT pseudonym FROM subjects WHERE lookup = ?", (lookup,)).fetchone()
            if row is None:
                return None
            with self.batch():
                n = self._db.execute("DELETE FROM data_keys WHERE pseudonym = ?", (row[0],)).rowcount
                for dek_id in sorted(dek_ids):
                    n += self._db.execute("DELETE FROM data_keys WHERE dek_id = ?", (dek_id,)).rowcount
                self._db.execute("DELETE FROM subjects WHERE lookup = ?", (lookup,))
            self._purge()
            return row[0], n

    def shred_before(self, day: date) -> int:
        """Delete every data key of a UTC day strictly before ``day``; returns how many."""
        with self._lock:
            with self.batch():
                n = self._db.execute("DELETE FROM data_keys WHERE day < ?", (day.isoformat(),)).rowcount
            self._purge()
            return n

    def rewrap(self, kek_id: str) -> int:
        """Re-wrap every data key under KEK ``kek_id``, all in one transaction; returns how many.

        Either every key is re-wrapped or (on any error) none is: a failed rotation leaves the
        store as it was.
        """
        with self._lock:
            rows = self._db.execute("SELECT dek_id, pseudonym, day, kek_id, wrapped FROM data_keys").fetchall()
            n = 0
            with self.batch():
                for dek_id, pseudonym, day, old_kek, wrapped in rows:
                    if old_kek == kek_id:
                        continue
                    context = _context(dek_id, pseudonym, day)
                    key = self.keyring.unwrap(old_kek, wrapped, context=context)
                    _, new_wrapped = self.keyring.wrap(key, context=context, key_id=kek_id)
                    self._db.execute("UPDATE data_keys SET kek_id = ?, wrapped = ? WHERE dek_id = ?",
                                     (kek_id, new_wrapped, dek_id))
                    n += 1
            self._purge()
            return n

    def count_keys_not_under(self, kek_id: str) -> int:
        """Data keys wrapped under any KEK other than ``kek_id``."""
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM data_keys WHERE kek_id != ?", (kek_id,)).fetchone()[0])

    def _purge(self) -> None:
        # Copy the deletions into the main file and empty the write-ahead log, whose frames
        # still hold the old pages (and so the deleted keys) until a checkpoint.
        if not purge_deleted(self._db):
            # A reader holds an old snapshot; the next purge retries.
            _log.warning(
                "pseudonym store: write-ahead log not truncated (a reader is active); deleted keys "
                "leave the WAL at the next checkpoint")

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
