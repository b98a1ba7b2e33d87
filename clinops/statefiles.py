"""Private state files: directories, SQLite stores and locks shared by worker processes.

A service keeps personal data, notes and keys on disk (the governance stores, the serving
memory of predictions and outcomes, the pseudonymisation key). Every such file is created
private (0700 directories, 0600 files, whatever the umask), SQLite stores overwrite what they
delete, and processes that share one state directory coordinate through :func:`file_lock` and
:func:`transaction`. This module is the one place that knows how.

Examples
--------
>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> con = connect_private_sqlite(root / "state" / "notes.sqlite")
>>> oct(root.joinpath("state").stat().st_mode & 0o777), oct(root.joinpath("state", "notes.sqlite").stat().st_mode & 0o777)
('0o700', '0o600')
>>> _ = con.execute("CREATE TABLE notes (text TEXT)")
>>> with transaction(con):
...     _ = con.execute("INSERT INTO notes VALUES ('kept')")
>>> try:
...     with transaction(con):
...         _ = con.execute("INSERT INTO notes VALUES ('rolled back')")
...         raise RuntimeError("the caller failed")
... except RuntimeError:
...     pass
>>> [row[0] for row in con.execute("SELECT text FROM notes")]
['kept']
>>> with file_lock(root / "state" / "writer.lock"):
...     pass
"""
from __future__ import annotations

import fcntl
import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


class LockHeld(BlockingIOError):
    """:func:`file_lock` with ``blocking=False`` found the lock held by another process."""


def private_directory(path: str | os.PathLike) -> Path:
    """Create ``path`` (and parents) if missing and make it mode 0700, whatever the umask.

    Every directory of a service's state holds personal data or keys: only its owner may list
    or enter it.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def private_file(path: str | os.PathLike) -> Path:
    """Create ``path`` empty if missing and make it mode 0600, whatever the umask.

    Call it before SQLite opens a database: SQLite creates its ``-wal`` and ``-shm`` files with
    the database file's mode, so they are private too.
    """
    path = Path(path)
    if not path.parent.exists():
        private_directory(path.parent)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    os.chmod(path, 0o600)
    return path


def connect_private_sqlite(path: str | os.PathLike, *, wal: bool = False, synchronous: str | None = None,
                           **options) -> sqlite3.Connection:
    """A SQLite connection to a private (0600) database that overwrites what it deletes.

    ``secure_delete`` zeroes deleted rows in the database file; :func:`purge_deleted` then
    empties the write-ahead log, whose frames still hold the old pages.

    Parameters
    ----------
    path : path-like
        The database file (created 0600, its directory 0700, if missing); ``":memory:"`` for
        a throwaway database that lives only in this connection.
    wal : bool
        Switch the database to write-ahead logging (readers then never block the writer);
        ignored by an in-memory database, which keeps no log on disk.
    synchronous : str, optional
        SQLite's ``PRAGMA synchronous`` (``OFF``, ``NORMAL``, ``FULL``); None keeps SQLite's.
    **options
        Passed to :func:`sqlite3.connect` (``timeout``, ``isolation_level``, ...).
    """
    in_memory = str(path) == ":memory:"
    connection = sqlite3.connect(":memory:" if in_memory else str(private_file(path)), **options)
    connection.execute("PRAGMA secure_delete=ON")
    if wal and not in_memory:
        connection.execute("PRAGMA journal_mode=WAL")
    if synchronous is not None:
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous: must be one of OFF, NORMAL, FULL, EXTRA, got {synchronous!r}")
        connection.execute(f"PRAGMA synchronous={synchronous.upper()}")
    return connection


def purge_deleted(connection: sqlite3.Connection) -> bool:
    """Checkpoint and truncate the write-ahead log (after an erasure); False if a reader held
    an old snapshot (the old pages then leave the log at the next checkpoint)."""
    busy = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
    return not busy


@contextmanager
def transaction(connection: sqlite3.Connection, begin: str = "BEGIN IMMEDIATE") -> Iterator[sqlite3.Connection]:
    """``begin`` ... COMMIT, or ROLLBACK on any exception.

    The connection must be in autocommit mode (``isolation_level=None``) so that this is the
    only place a transaction starts. ``BEGIN IMMEDIATE`` takes the write lock at once: two
    processes never both read, then both try to write.
    """
    connection.execute(begin)
    try:
        yield connection
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


@contextmanager
def file_lock(path: str | os.PathLike, *, blocking: bool = True) -> Iterator[int]:
    """Hold an exclusive ``flock`` on ``path`` (created 0600) for the ``with`` block.

    Yields the file descriptor (a holder may write its pid into it). With ``blocking=False``
    raises :class:`LockHeld` at once when another process holds the lock. The lock goes with
    the descriptor: it is released on exit, and by the kernel if the process dies.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockHeld(f"{path}: held by another process") from None
        yield fd
    finally:
        os.close(fd)


def acquire_lock(path: str | os.PathLike) -> int:
    """Take an exclusive ``flock`` on ``path`` without waiting and keep it for the life of the
    process; returns the descriptor (never closed by this module).

    Raises
    ------
    LockHeld
        Another process holds it.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise LockHeld(f"{path}: held by another process") from None
    return fd


@contextmanager
def holding_lock(fd: int, *, shared: bool = False) -> Iterator[int]:
    """Hold a blocking ``flock`` on an already open descriptor for the ``with`` block: shared
    (any number of holders) or exclusive; released on exit, the descriptor stays open.

    For a store that keeps its lock file open for its lifetime and locks per operation: the
    audit trail's readers share its lock, and a commit holds it exclusively.
    """
    fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
    try:
        yield fd
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
