"""The governance state file: one JSON document shared by several processes.

Several server workers (and the workflow's stages) keep one model's governance state in one
file. A writer holds an exclusive lock on ``<file>.lock`` (:func:`clinops.statefiles.file_lock`)
while it reads the current content, changes it and writes it back; a write replaces the file
atomically, so a reader never sees half a document; a reader notices another process's write
from the file's signature (modification time, size, inode) at the cost of one ``stat``.

Examples
--------
>>> import pathlib, tempfile
>>> path = pathlib.Path(tempfile.mkdtemp()) / "state.json"
>>> mine, theirs = SharedStateFile(path), SharedStateFile(path)
>>> with mine.locked():
...     mine.write({"state": "ACTIVE"})
>>> theirs.read_if_changed()
{'state': 'ACTIVE'}
>>> theirs.read_if_changed() is None          # nothing new since the last read
True
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from clinops.statefiles import file_lock

__all__ = ["SharedStateFile", "write_json_atomically"]


def write_json_atomically(path: str | os.PathLike, document: Mapping[str, Any]) -> Path:
    """Write ``document`` as JSON to a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(document, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)        # atomic: a reader never sees half a file
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


class SharedStateFile:
    """A JSON file that several processes read and change, one change at a time.

    Parameters
    ----------
    path : path-like
        The JSON file; its lock is ``<path>.lock`` beside it.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._signature: tuple[int, int, int] | None = None

    def exists(self) -> bool:
        return self.path.exists()

    def _current_signature(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def mark_seen(self) -> None:
        """Take the file's current content as known (after reading it by other means)."""
        self._signature = self._current_signature()

    def read_if_changed(self) -> dict[str, Any] | None:
        """The document if it changed since this object last read or wrote it, else None
        (also None while the file does not exist)."""
        signature = self._current_signature()
        if signature is None or signature == self._signature:
            return None
        document = json.loads(self.path.read_text())
        self._signature = signature
        return document

    def write(self, document: Mapping[str, Any]) -> None:
        """Replace the file's content atomically (hold :meth:`locked` when others may write)."""
        write_json_atomically(self.path, document)
        self._signature = self._current_signature()

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the exclusive lock of the file (blocking) for the ``with`` block."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(f"{self.path}.lock"):
            yield
