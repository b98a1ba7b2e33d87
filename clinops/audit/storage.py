"""Where the log's bytes live: segment files, checkpoints, and write-once (WORM) sealing.

The log only talks to a :class:`SegmentStore`. :class:`LocalSegmentStore` keeps everything in a
directory:

``log/seg-<FIRST SEQ, 20 digits>.jsonl``
    a segment: record and seal lines, appended with ``fdatasync`` before any append returns.
``log/seg-<FIRST SEQ>.checkpoint``
    the signed checkpoint written when the segment is closed; its presence marks the segment
    closed, and both files are then made read-only (mode 400, which only stops accidents: the
    owner can still change them; see clinops/docs/audit.md for what does stop an insider).
``checkpoints/<TREE SIZE, 20 digits>.checkpoint``
    every signed checkpoint (a C2SP signed note, with the witness cosignature when there is a
    witness), written once, read-only.
``quarantine/<name>.torn`` (and ``<name>.torn.unlogged`` until its ``recovery`` record is written)
    bytes cut from a torn tail.

The local directory is the working copy. What must never change (closed segments, checkpoints)
is also uploaded to an S3 bucket with Object Lock in COMPLIANCE mode by
:class:`clinops.audit.objectlock.ObjectLockArchive`, which the store's owner cannot delete.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Protocol, runtime_checkable

__all__ = ["LocalSegmentStore", "SegmentStore", "atomic_write", "fsync_dir"]

_SEG_PREFIX = "seg-"
_SEG_SUFFIX = ".jsonl"
_SEG_CP_SUFFIX = ".checkpoint"
_CP_SUFFIX = ".checkpoint"
_UNLOGGED_SUFFIX = ".unlogged"


def fsync_dir(path: Path) -> None:
    """fsync a directory so a file created or renamed in it survives a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` via a temporary file, fsync and rename; the file gets ``mode``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


@runtime_checkable
class SegmentStore(Protocol):
    """Storage for the log: numbered segments (append-only, then sealed) and checkpoints."""

    def segments(self) -> list[int]: ...

    def exists(self, first: int) -> bool: ...

    def size(self, first: int) -> int: ...

    def read(self, first: int, start: int = 0, end: int | None = None) -> bytes: ...

    def create(self, first: int) -> None: ...

    def append(self, first: int, data: bytes) -> None: ...

    def truncate(self, first: int, size: int) -> None: ...

    def is_sealed(self, first: int) -> bool: ...

    def seal(self, first: int, checkpoint: bytes) -> None: ...

    def segment_checkpoint(self, first: int) -> bytes | None: ...

    def put_checkpoint(self, size: int, data: bytes) -> bool: ...

    def has_checkpoint(self, size: int) -> bool: ...

    def checkpoints(self) -> list[int]: ...

    def get_checkpoint(self, size: int) -> bytes: ...

    def quarantine(self, name: str, data: bytes, *, pending: bool = False) -> Path: ...

    def pending_quarantines(self) -> list[Path]: ...

    def quarantine_logged(self, path: Path) -> None: ...


def _exists(path: str) -> bool:
    """Like ``Path.exists``: False only when the file is missing (other errors raise)."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return False
    return True


class LocalSegmentStore:
    """A :class:`SegmentStore` in a local directory (see the module docstring for the layout).

    Parameters
    ----------
    root : Path
        The audit trail's root directory; ``log/``, ``checkpoints/`` and ``quarantine/`` go in it.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.log_dir = self.root / "log"
        self.checkpoint_dir = self.root / "checkpoints"
        self.quarantine_dir = self.root / "quarantine"
        self._fd: int | None = None
        self._fd_first: int | None = None
        # str paths of segments and their closing checkpoints: a writer looks at the open
        # segment before every commit, and building Paths costs more than the stat itself
        self._names: dict[int, tuple[str, str]] = {}

    def init(self) -> None:
        """Create the directories (mode 700)."""
        for d in (self.log_dir, self.checkpoint_dir, self.quarantine_dir):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        fsync_dir(self.root)

    # -- segments ---------------------------------------------------------------------------
    def path(self, first: int) -> Path:
        """Path of the segment whose first record has sequence number ``first``."""
        return self.log_dir / f"{_SEG_PREFIX}{first:020d}{_SEG_SUFFIX}"

    def checkpoint_path(self, first: int) -> Path:
        """Path of the closing checkpoint of segment ``first``."""
        return self.log_dir / f"{_SEG_PREFIX}{first:020d}{_SEG_CP_SUFFIX}"

    def segments(self) -> list[int]:
        """First sequence numbers of every segment, ascending."""
        firsts = []
        for p in self.log_dir.glob(f"{_SEG_PREFIX}*{_SEG_SUFFIX}"):
            digits = p.name[len(_SEG_PREFIX):-len(_SEG_SUFFIX)]
            if len(digits) == 20 and digits.isdigit():
                firsts.append(int(digits))
        return sorted(firsts)

    def _name(self, first: int) -> tuple[str, str]:
        names = self._names.get(first)
        if names is None:
            if len(self._names) > 64:
                self._names.clear()
            names = self._names[first] = (str(self.path(first)), str(self.checkpoint_path(first)))
        return names

    def exists(self, first: int) -> bool:
        """True when a segment starting at record ``first`` exists."""
        return _exists(self._name(first)[0])

    def size(self, first: int) -> int:
        """Size of segment ``first`` in bytes (of the file at its path: a replaced file is seen)."""
        return os.stat(self._name(first)[0]).st_size

    def read(self, first: int, start: int = 0, end: int | None = None) -> bytes:
        """Bytes ``[start, end)`` of segment ``first``."""
        fd = os.open(self._name(first)[0], os.O_RDONLY)
        try:
            if end is None:
                end = os.fstat(fd).st_size
            chunks = []
            while start < end:
                chunk = os.pread(fd, end - start, start)
                if not chunk:
                    break
                chunks.append(chunk)
                start += len(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def create(self, first: int) -> None:
        """Create an empty segment (fails if it exists) and make its name durable."""
        fd = os.open(self.path(first), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        fsync_dir(self.log_dir)

    def _append_fd(self, first: int) -> int:
        if self._fd_first != first:
            self.close()
            self._fd = os.open(self.path(first), os.O_WRONLY | os.O_APPEND)
            self._fd_first = first
        assert self._fd is not None
        return self._fd

    def append(self, first: int, data: bytes) -> None:
        """Append ``data`` to segment ``first`` and ``fdatasync`` it before returning."""
        fd = self._append_fd(first)
        _write_all(fd, data)
        # fdatasync also flushes the file size, which is all an append changes besides data.
        os.fdatasync(fd)

    def truncate(self, first: int, size: int) -> None:
        """Cut segment ``first`` to ``size`` bytes, durably (recovery of a torn tail only)."""
        fd = os.open(self.path(first), os.O_WRONLY)
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        finally:
            os.close(fd)

    def is_sealed(self, first: int) -> bool:
        """True when segment ``first`` has its closing checkpoint (it is then read-only)."""
        return _exists(self._name(first)[1])

    def seal(self, first: int, checkpoint: bytes) -> None:
        """Close segment ``first``: store its checkpoint next to it and make both read-only.

        Idempotent, so a sealing interrupted by a crash is finished by the next writer.
        """
        if self._fd_first == first:
            self.close()
        seg = self.path(first)
        fd = os.open(seg, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        cp = self.checkpoint_path(first)
        if not cp.exists():
            atomic_write(cp, checkpoint, mode=0o400)
        os.chmod(seg, 0o400)
        fsync_dir(self.log_dir)

    def segment_checkpoint(self, first: int) -> bytes | None:
        """The closing checkpoint of segment ``first``, or None while it is open."""
        try:
            return self.checkpoint_path(first).read_bytes()
        except FileNotFoundError:
            return None

    def is_read_only(self, first: int) -> bool:
        """True when nobody has write permission on segment ``first``."""
        return not stat.S_IMODE(self.path(first).stat().st_mode) & 0o222

    # -- checkpoints ------------------------------------------------------------------------
    def put_checkpoint(self, size: int, data: bytes) -> bool:
        """Store the checkpoint for tree size ``size`` once; False if one already exists."""
        path = self._cp_path(size)
        if path.exists():
            return False
        atomic_write(path, data, mode=0o400)
        return True

    def _cp_path(self, size: int) -> Path:
        return self.checkpoint_dir / f"{size:020d}{_CP_SUFFIX}"

    def has_checkpoint(self, size: int) -> bool:
        """True when a checkpoint for tree size ``size`` is stored."""
        return self._cp_path(size).exists()

    def checkpoints(self) -> list[int]:
        """Tree sizes of every stored checkpoint, ascending."""
        sizes = []
        for p in self.checkpoint_dir.glob(f"*{_CP_SUFFIX}"):
            if len(p.stem) == 20 and p.stem.isdigit():
                sizes.append(int(p.stem))
        return sorted(sizes)

    def get_checkpoint(self, size: int) -> bytes:
        """The stored checkpoint for tree size ``size``."""
        return self._cp_path(size).read_bytes()

    # -- recovery ---------------------------------------------------------------------------
    def quarantine(self, name: str, data: bytes, *, pending: bool = False) -> Path:
        """Keep bytes cut from a torn tail for forensics; returns the file written.

        With ``pending``, an empty ``<name>.unlogged`` marker is made durable too, before the caller
        cuts the tail: it stays until :meth:`quarantine_logged` (once the ``recovery`` record is in
        the log), so a crash in between is logged by the next writer.
        """
        self.quarantine_dir.mkdir(mode=0o700, exist_ok=True)
        path = self.quarantine_dir / name
        if not path.exists():
            atomic_write(path, data, mode=0o400)
        if pending:
            atomic_write(path.with_name(path.name + _UNLOGGED_SUFFIX), b"", mode=0o400)
        return path

    def pending_quarantines(self) -> list[Path]:
        """Quarantined tails whose ``recovery`` record is not yet in the log."""
        if not self.quarantine_dir.exists():
            return []
        return sorted(p.with_name(p.name[:-len(_UNLOGGED_SUFFIX)])
                      for p in self.quarantine_dir.glob(f"*{_UNLOGGED_SUFFIX}"))

    def quarantine_logged(self, path: Path) -> None:
        """Drop the intent marker of a quarantined tail whose ``recovery`` record is now durable."""
        path.with_name(path.name + _UNLOGGED_SUFFIX).unlink(missing_ok=True)
        fsync_dir(self.quarantine_dir)

    def read_quarantine(self, name: str) -> bytes | None:
        """The bytes of quarantined tail ``name``, or None if the file is gone."""
        try:
            return (self.quarantine_dir / name).read_bytes()
        except FileNotFoundError:
            return None

    def close(self) -> None:
        """Close the cached append descriptor."""
        if self._fd is not None:
            os.close(self._fd)
        self._fd = None
        self._fd_first = None
