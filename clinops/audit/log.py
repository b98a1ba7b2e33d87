"""The audit trail: an append-only, hash-chained, signed, Merkle-checkpointed log.

:class:`AuditTrail` is the one object callers use (the serving app, governance code, the CLI)::

    with AuditTrail.open(Path("audit")) as trail:
        receipt = trail.append("prediction", {...metadata...}, subject=hadm_id, payload=features)
        trail.verify().ok

How an append becomes durable (the "commit"): under an exclusive ``flock`` on ``root/lock`` the
writer first reads whatever other processes appended since its last look (so two processes
never fork the chain), then writes its records and one *seal* line (an Ed25519 signature over
the new chain head and a UTC timestamp) with a single ``write``, then ``fdatasync``s, then
releases the lock and returns. A record is acknowledged only once its seal is on disk. Threads
of one process that append at the same time are gathered into one commit (leader/follower
group commit), as are the records of one :meth:`AuditTrail.append_many` call.

On opening for writing, an unsealed tail left by a killed writer or a torn write is cut off,
kept under ``quarantine/``, and the cut is itself logged as a ``recovery`` record.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from clinops.audit import records as rf
from clinops.audit.keys import (Ed25519Signer, Keyring, KeySchedule, KeyUnavailable, LocalKeyring, Signer, key_id,
                                load_public_key, public_key_pem, public_key_raw)
from clinops.audit.merkle import MerkleTree, leaf_hash
from clinops.audit.pseudonyms import PseudonymStore
from clinops.audit.records import Checkpoint
from clinops.audit.storage import LocalSegmentStore, atomic_write, fsync_dir
from clinops.audit.verify import VerifyReport, verify_log
from clinops.audit.witness import WitnessClient, WitnessRefused

if TYPE_CHECKING:  # boto3 is imported only by callers that use an archive
    from clinops.audit.objectlock import ObjectLockArchive

__all__ = [
    "AuditIntegrityError",
    "AuditReceipt",
    "AuditTrail",
    "AuditWriteError",
    "RecordView",
    "RecoveryReport",
    "RetentionReport",
]

_log = logging.getLogger(__name__)

_RECORD_START = b'{"seq":'
_SEAL_START = b'{"seal":'
# Records after which cached pseudonyms / data keys / the keyring may be stale.
_INVALIDATING = (b'"kind":"erasure"', b'"kind":"retention"', b'"kind":"key_rotation"')
_TRANSITION_KIND = b'"kind":"signing_key_rotation"'
_CACHE_LIMIT = 50_000
DEFAULT_SEGMENT_RECORDS = 100_000
DEFAULT_CHECKPOINT_EVERY = 1_000


class AuditIntegrityError(RuntimeError):
    """The log on disk is not a valid chain; the trail refuses to write on top of it."""


class AuditWriteError(OSError):
    """A commit failed; :attr:`durable` says exactly what is on disk.

    Attributes
    ----------
    durable : bool or None
        False: the commit was rolled back, none of its records is in the log (a retry is safe).
        None: the state is unknown (the roll-back failed too); look the ``record_ids`` up with
        :meth:`AuditTrail.find` after reopening before retrying.
    record_ids : tuple of str
        Ids of the records of the failed commit.
    """

    def __init__(self, message: str, *, durable: bool | None = False, record_ids: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.durable = durable
        self.record_ids = record_ids


@dataclass(frozen=True)
class AuditReceipt:
    """What :meth:`AuditTrail.append` returns once the record is durable: a signed promise.

    Like a Certificate Transparency SCT, the receipt is signed by the log's key, so its holder
    can later prove that the log accepted the record at ``seq`` (a log that no longer holds it
    was truncated or forked). The signature covers the commit: ``log_id``, ``commit_first``,
    ``commit_size``, the Merkle root of the commit's leaf hashes and ``ts``; ``commit_path`` is
    the record's audit path inside the commit (one signature per commit, not per record). Check
    one with :func:`clinops.audit.proofs.verify_receipt`.

    Attributes
    ----------
    seq : int
        Position of the record in the log (0-based; the Merkle leaf index).
    record_id : str
        Random 32-hex id of the record.
    record_hash : str
        Leaf hash ``SHA-256(0x00 || record line)``, 64 hex digits.
    log_id : str
    ts : str
        UTC commit time (the seal's time).
    commit_first, commit_size : int
        The commit holds records ``commit_first .. commit_first + commit_size - 1``.
    commit_path : tuple of str
        Audit path (hex) of ``record_hash`` in the Merkle tree of the commit's leaf hashes.
    kid : str
        Key id of the signing key.
    sig : str
        Base64 Ed25519 signature over :func:`clinops.audit.records.receipt_message`.
    checkpoint_error : str or None
        The record is durable, but the checkpoint (or its witness cosignature) due after this
        commit could not be written; the next commit or :meth:`AuditTrail.close` retries it.
        Never a reason to append again.
    """

    seq: int
    record_id: str
    record_hash: str
    log_id: str
    ts: str
    commit_first: int
    commit_size: int
    commit_path: tuple[str, ...]
    kid: str
    sig: str
    checkpoint_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (what the server returns and :func:`verify_receipt` reads)."""
        return {"type": "clinops-audit receipt", "seq": self.seq, "record_id": self.record_id,
                "record_hash": self.record_hash, "log_id": self.log_id, "ts": self.ts,
                "commit_first": self.commit_first, "commit_size": self.commit_size,
                "commit_path": list(self.commit_path), "kid": self.kid, "sig": self.sig}


@dataclass(frozen=True)
class RecordView:
    """One record as read back from the log (payload still encrypted).

    Attributes
    ----------
    seq, record_id, record_hash
        As in :class:`AuditReceipt`.
    timestamp : str
        UTC time the record was committed, ``YYYY-MM-DDTHH:MM:SS.ffffffZ``.
    kind : str
    fields : dict
        The non-identifying metadata as logged.
    subject : str or None
        The subject's pseudonym (never the identifier).
    payload : dict or None
        The encrypted envelope ``{alg, dk, iv, ct}``; see :meth:`AuditTrail.decrypt_payload`.
    """

    seq: int
    record_id: str
    timestamp: str
    kind: str
    fields: dict[str, Any]
    subject: str | None
    payload: dict[str, str] | None
    record_hash: str


@dataclass(frozen=True)
class RecoveryReport:
    """An unsealed tail cut off when the trail was opened (a crash or torn write).

    Attributes
    ----------
    segment : int
        First seq of the segment that had the tail.
    offset : int
        Byte offset where the kept, sealed part ends.
    n_bytes : int
        Bytes cut.
    n_records_dropped : int
        Complete but unsealed (never acknowledged) record lines among them.
    sha256 : str
        SHA-256 of the cut bytes (also in the ``recovery`` record).
    quarantine : str
        File the cut bytes were saved to.
    """

    segment: int
    offset: int
    n_bytes: int
    n_records_dropped: int
    sha256: str
    quarantine: str


@dataclass(frozen=True)
class RetentionReport:
    """Result of :meth:`AuditTrail.retention`."""

    receipt: AuditReceipt
    cutoff: str
    data_keys_destroyed: int


@dataclass
class _Request:
    kind: str
    fields_json: str
    subject: str | None
    payload: bytes | None
    receipt: AuditReceipt | None = None
    error: BaseException | None = None
    done: bool = False


@dataclass
class _Paths:
    root: Path
    header: Path = field(init=False)
    public_key: Path = field(init=False)
    lock: Path = field(init=False)
    private: Path = field(init=False)
    signing_key: Path = field(init=False)
    keyring: Path = field(init=False)
    subjects: Path = field(init=False)

    def __post_init__(self) -> None:
        self.header = self.root / "audit.json"
        self.public_key = self.root / "signing.pub"
        self.lock = self.root / "lock"
        self.private = self.root / "private"
        self.signing_key = self.private / "signing.key"
        self.keyring = self.private / "keyring.json"
        self.subjects = self.private / "subjects.sqlite"


def _quarantine_name(report: RecoveryReport) -> str:
    """Where a cut tail is kept: named by segment, offset and content, so a retry finds the same file."""
    return f"seg-{report.segment:020d}-at-{report.offset}-{report.sha256[:16]}.torn"


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class AuditTrail:
    """A tamper-evident, erasable audit trail rooted at one directory. Use :meth:`open`."""

    def __init__(self, *, paths: _Paths, header: bytes, signer: Signer | None, keyring: Keyring | None,
                 pseudonyms: PseudonymStore | None, lock_fd: int, clock: Callable[[], datetime],
                 read_only: bool, witness: WitnessClient | None = None, archive: ObjectLockArchive | None = None) -> None:
        doc = rf.parse_header(header)
        self.root = paths.root
        self._paths = paths
        self._header = header
        self.log_id: str = doc["log_id"]
        self._schedule = KeySchedule(load_public_key(rf.unb64(doc["signing_public_key"])))
        self._segment_records: int = doc["segment_records"]
        self._checkpoint_every: int = doc["checkpoint_every"]
        self._signer = signer
        self._keyring = keyring
        self._pseudonyms = pseudonyms
        self._lock_fd = lock_fd
        self._clock = clock
        self._read_only = read_only
        self._store = LocalSegmentStore(paths.root)
        self._pid = os.getpid()
        self._mutex = threading.RLock()
        self._failed: BaseException | None = None
        self._closed = False
        # Chain state: everything up to the end of the last seal we have read or written.
        self._tree = MerkleTree()
        self._next_seq = 0
        self._head = rf.genesis_hash(header)
        self._seg: int | None = None
        self._offset = 0
        self._seg_count = 0
        self.recoveries: list[RecoveryReport] = []
        self._unlogged_recoveries: list[RecoveryReport] = []
        self._unauthenticated: list[tuple[int, rf.Seal]] = []  # (first seq of the commit, its seal)
        self._checked_checkpoints = -1
        self._due_checkpoints: list[int] = []
        self._witness = witness
        self._archive = archive
        self._publish_errors: list[str] = []
        self._signer_from_file = False
        self._next_signer: Signer | None = None
        self._pseudonym_cache: dict[str, str] = {}
        self._key_cache: dict[tuple[str, str], tuple[str, bytes]] = {}
        # Group commit across threads.
        self._queue: list[_Request] = []
        self._queue_cv = threading.Condition()
        self._leader = False

    # -- opening ----------------------------------------------------------------------------
    @classmethod
    def open(cls, root: Path | str, *, create: bool = True, keyring: Keyring | None = None,
             signer: Signer | None = None, segment_records: int | None = None,
             checkpoint_every: int | None = None, clock: Callable[[], datetime] | None = None,
             read_only: bool = False, witness: WitnessClient | None = None,
             archive: ObjectLockArchive | None = None) -> "AuditTrail":
        """Open (and by default create) the audit trail in ``root``.

        Parameters
        ----------
        root : Path
            Directory of the trail (created with mode 700).
        create : bool
            Create a new trail if ``root`` holds none; otherwise raise ``FileNotFoundError``.
        keyring : Keyring, optional
            Key-encryption keys; default ``root/private/keyring.json`` (created with mode 600).
        signer : Signer, optional
            Ed25519 signing key; default ``root/private/signing.key`` (created with mode 600). Must
            be the key the trail was created with.
        segment_records : int, optional
            Records per segment before it is closed and made read-only (creation only; default
            100,000).
        checkpoint_every : int, optional
            A signed checkpoint each time the log crosses a multiple of this many records
            (creation only; default 1,000). Checkpoints are also written when a segment closes,
            on :meth:`checkpoint` and on :meth:`close`.
        clock : callable, optional
            Returns the current time as an aware ``datetime``; default UTC now. Tests inject one.
        read_only : bool
            Open for reading only: no lock held for writing, no recovery, no keys created. The
            keyring and pseudonym store are used if readable (to decrypt), else left out.
        witness : WitnessClient, optional
            A witness (``clinops audit witness``) to publish every checkpoint to. On open the log
            must contain the witness's latest cosigned checkpoint (else the log was truncated or
            forked and the trail refuses to write); every checkpoint is stored with its cosignature.
        archive : ObjectLockArchive, optional
            An S3 bucket with Object Lock: every checkpoint and every closed segment is also
            uploaded there, locked in COMPLIANCE mode (:mod:`clinops.audit.objectlock`).

        Raises
        ------
        FileNotFoundError
            ``root`` holds no trail and ``create`` is False (or ``read_only``).
        ValueError
            ``segment_records`` / ``checkpoint_every`` differ from the trail's, or the signer is
            not the trail's key.
        AuditIntegrityError
            The log is damaged beyond a torn tail: a commit whose seal does not verify, a complete
            seal after damaged records, a stored or witnessed checkpoint the records do not match
            (truncation, rollback, fork).
        """
        paths = _Paths(Path(root))
        signer_from_file = signer is None  # then a signing-key rotation also replaces private/signing.key
        clock = clock or _utcnow
        rf.utc_text(clock())  # a naive or broken clock fails here, before anything is created
        for name, value in (("segment_records", segment_records), ("checkpoint_every", checkpoint_every)):
            if value is not None and (type(value) is not int or value < 1):
                raise ValueError(f"{name}: must be a positive integer, got {value!r}")
        if not paths.header.exists() and (read_only or not create):
            raise FileNotFoundError(f"{paths.root}: no audit trail here (audit.json is missing)")
        if not read_only:
            paths.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        if read_only and not paths.lock.exists():
            # A copy handed to an auditor may lack the lock file; with no writers, any file will do.
            lock_fd = os.open(paths.header, os.O_RDONLY)
        else:
            lock_fd = os.open(paths.lock, os.O_RDONLY if read_only else os.O_RDWR | os.O_CREAT, 0o600)
        trail = None
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_SH if read_only else fcntl.LOCK_EX)
            try:
                if not paths.header.exists():
                    signer, keyring = cls._create(paths, signer, keyring, segment_records or DEFAULT_SEGMENT_RECORDS,
                                                  checkpoint_every or DEFAULT_CHECKPOINT_EVERY, clock)
                header = paths.header.read_bytes()
                doc = rf.parse_header(header)
                for name, value in (("segment_records", segment_records), ("checkpoint_every", checkpoint_every)):
                    if value is not None and value != doc[name]:
                        raise ValueError(f"{name}: this trail was created with {doc[name]}; it cannot change "
                                         f"(got {value})")
                signer, keyring, pseudonyms = cls._load_keys(paths, doc, signer, keyring, read_only)
                trail = cls(paths=paths, header=header, signer=signer, keyring=keyring, pseudonyms=pseudonyms,
                            lock_fd=lock_fd, clock=clock, read_only=read_only, witness=witness, archive=archive)
                trail._signer_from_file = signer_from_file
                if not read_only:
                    trail._load_recovery_intents()
                trail._catch_up(recover=not read_only)
                trail._adopt_signer()
                if not read_only:
                    trail._check_stored_checkpoints()
                    if trail._unlogged_recoveries:
                        trail._commit_locked([])
                    elif trail._due_checkpoints:
                        trail._write_due_checkpoints()
                    if isinstance(trail._failed, AuditIntegrityError):
                        raise trail._failed
            finally:
                fcntl.flock(lock_fd, fcntl.LOCK_UN)
        except BaseException:
            if trail is not None:
                trail._release()
            else:
                os.close(lock_fd)
            raise
        return trail

    @staticmethod
    def log_id_of(root: Path | str) -> str:
        """The log id named in ``root/audit.json`` (what the witness files this log under)."""
        return rf.parse_header((Path(root) / "audit.json").read_bytes())["log_id"]

    @staticmethod
    def _create(paths: _Paths, signer: Signer | None, keyring: Keyring | None, segment_records: int,
                checkpoint_every: int, clock: Callable[[], datetime]) -> tuple[Signer, Keyring]:
        paths.private.mkdir(mode=0o700, exist_ok=True)
        if signer is None:
            if paths.signing_key.exists():
                signer = Ed25519Signer.load(paths.signing_key)
            else:
                signer = Ed25519Signer.generate()
                signer.save(paths.signing_key)
        if keyring is None:
            keyring = LocalKeyring(paths.keyring) if paths.keyring.exists() else LocalKeyring.create(paths.keyring)
        LocalSegmentStore(paths.root).init()
        atomic_write(paths.public_key, public_key_pem(signer.public_key), mode=0o444)
        header = rf.header_bytes(uuid.uuid4().hex, rf.utc_text(clock()), segment_records, checkpoint_every,
                                 key_id(signer.public_key), public_key_raw(signer.public_key))
        # The header is written last: its presence is what makes the directory a trail.
        atomic_write(paths.header, header, mode=0o444)
        return signer, keyring

    @staticmethod
    def _load_keys(paths: _Paths, doc: dict[str, Any], signer: Signer | None, keyring: Keyring | None,
                   read_only: bool) -> tuple[Signer | None, Keyring | None, PseudonymStore | None]:
        if signer is None and not read_only:
            if not paths.signing_key.exists():
                raise FileNotFoundError(f"{paths.signing_key}: no signing key; pass signer= or restore the key file")
            signer = Ed25519Signer.load(paths.signing_key)
        elif signer is None:
            # A reader that can read the private signing key trusts what the writer trusts; one that
            # cannot must pass the pinned public key to verify().
            try:
                signer = Ed25519Signer.load(paths.signing_key)
            except (OSError, ValueError):
                signer = None
        pseudonyms = None
        try:
            if keyring is None:
                keyring = LocalKeyring(paths.keyring)
            pseudonyms = PseudonymStore(paths.subjects, keyring)
        except (OSError, ValueError):
            if not read_only:
                raise
            keyring = None  # an auditor without the private keys can still read and verify
        return signer, keyring, pseudonyms

    # -- locking ----------------------------------------------------------------------------
    def _check_usable(self) -> None:
        if self._closed:
            raise RuntimeError("audit trail is closed")
        if os.getpid() != self._pid:
            raise RuntimeError(f"audit trail opened in process {self._pid} is used in process {os.getpid()} "
                               "(after fork); open one AuditTrail per worker process")

    @contextmanager
    def _write_lock(self) -> Iterator[None]:
        if self._read_only:
            raise PermissionError("audit trail was opened read-only")
        self._check_usable()
        if isinstance(self._failed, AuditIntegrityError):
            raise AuditIntegrityError(f"the trail refuses to write: {self._failed}") from self._failed
        if self._failed is not None:
            raise AuditWriteError(f"an earlier commit failed ({self._failed}); reopen the trail") from self._failed
        with self._mutex:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    @contextmanager
    def _read_lock(self) -> Iterator[None]:
        self._check_usable()
        with self._mutex:
            fcntl.flock(self._lock_fd, fcntl.LOCK_SH)
            try:
                yield
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    # -- reading the tail -------------------------------------------------------------------
    def _catch_up(self, *, recover: bool) -> None:
        """Bring the in-memory chain state up to the end of the last seal on disk (lock held)."""
        while True:
            if self._seg is None:
                if not self._store.exists(self._next_seq):
                    return
                self._seg, self._offset, self._seg_count = self._next_seq, 0, 0
            size = self._store.size(self._seg)
            if size < self._offset:
                raise AuditIntegrityError(f"segment {self._seg} shrank from {self._offset} to {size} bytes "
                                          "behind this writer's back: the log was truncated")
            if size > self._offset:
                data = self._store.read(self._seg, self._offset, size)
                used = self._consume(data)
                self._authenticate()
                if used < len(data):
                    self._handle_residue(data[used:], recover)
            if self._store.is_sealed(self._seg):
                self._seg = None
                continue
            if recover and self._seg_count >= self._segment_records:
                self._close_segment()  # a writer died between its last commit and closing the segment
            return

    def _consume(self, data: bytes) -> int:
        """Take every complete, sealed commit from ``data``; returns the bytes used."""
        pos = used = 0
        seq, prev = self._next_seq, self._head.hex()
        pending: list[bytes] = []
        transitions: list[tuple[int, bytes]] = []
        invalidate = False
        while True:
            nl = data.find(b"\n", pos)
            if nl < 0:
                break
            line = data[pos:nl]
            if line.startswith(_RECORD_START):
                if not line.startswith(rf.record_prefix(seq, prev)):
                    break
                h = hashlib.sha256(b"\x00" + line).digest()
                pending.append(h)
                invalidate = invalidate or any(p in line for p in _INVALIDATING)
                if _TRANSITION_KIND in line:
                    transitions.append((seq, line))
                seq += 1
                prev = h.hex()
            elif line.startswith(_SEAL_START) and pending:
                try:
                    seal = rf.parse_seal(line)
                except rf.RecordFormatError:
                    break
                if seal.seq != seq - 1 or seal.head != prev:
                    break
                self._unauthenticated.append((self._next_seq, seal, *self._schedule.at(self._next_seq)))
                self._follow_transitions(transitions)
                transitions = []
                for h in pending:
                    self._tree.append(h)
                self._seg_count += len(pending)
                self._next_seq, self._head = seq, bytes.fromhex(prev)
                pending = []
                used = nl + 1
            else:
                break
            pos = nl + 1
        self._offset += used
        if invalidate:
            self._invalidate_caches()
        return used

    def _handle_residue(self, tail: bytes, recover: bool) -> None:
        lines = tail.split(b"\n")
        complete = lines[:-1]
        # One write carries a commit's records and its seal, so a crash leaves at most a prefix of
        # one commit: never a complete seal line. A complete seal that does not seal the records
        # before it means records were altered or a seal forged after the fact: not ours to cut.
        seals = [i for i, line in enumerate(complete) if line.startswith(_SEAL_START)]
        if seals:
            raise AuditIntegrityError(
                f"segment {self._seg} is damaged at byte {self._offset} and a complete seal follows the damage: "
                "a crash cannot produce this (records altered, or a seal forged or moved); refusing to recover; "
                "run `clinops audit verify` and investigate")
        assert self._seg is not None
        if not recover:
            return
        if self._store.is_sealed(self._seg):
            raise AuditIntegrityError(f"segment {self._seg} is closed but has {len(tail)} unsealed bytes at its end")
        report = RecoveryReport(segment=self._seg, offset=self._offset, n_bytes=len(tail),
                                n_records_dropped=sum(1 for line in complete if line.startswith(_RECORD_START)),
                                sha256=hashlib.sha256(tail).hexdigest(), quarantine="")
        # Log before truncating: the quarantine copy and an intent marker are durable before the
        # cut, so a crash after the cut still gets its ``recovery`` record at the next open.
        path = self._store.quarantine(_quarantine_name(report), tail, pending=True)
        report = RecoveryReport(**{**report.__dict__, "quarantine": str(path)})
        self._store.truncate(self._seg, self._offset)
        _log.warning("audit trail %s: cut an unsealed tail of %d bytes (%d unacknowledged records) from "
                     "segment %d at byte %d; saved to %s", self.root, report.n_bytes, report.n_records_dropped,
                     report.segment, report.offset, path)
        if all(r.quarantine != report.quarantine for r in self._unlogged_recoveries):
            self.recoveries.append(report)
            self._unlogged_recoveries.append(report)

    def _load_recovery_intents(self) -> None:
        """Recoveries cut by a writer that died before logging them (their intent markers remain)."""
        for path in self._store.pending_quarantines():
            data = path.read_bytes()
            name = path.name
            try:
                seg_text, offset_text = name[len("seg-"):].split("-at-")[0], name.split("-at-")[1].split("-")[0]
                segment, offset = int(seg_text), int(offset_text)
            except (IndexError, ValueError):
                raise AuditIntegrityError(f"quarantine/{name}: not a name this trail writes") from None
            report = RecoveryReport(segment, offset, len(data),
                                    sum(1 for line in data.split(b"\n")[:-1] if line.startswith(_RECORD_START)),
                                    hashlib.sha256(data).hexdigest(), str(path))
            if name != _quarantine_name(report):
                raise AuditIntegrityError(f"quarantine/{name}: its content does not match its name (altered)")
            self.recoveries.append(report)
            self._unlogged_recoveries.append(report)

    def _forget_recovery_intents(self) -> None:
        for path in self._store.pending_quarantines():
            self._store.quarantine_logged(path)

    def _authenticate(self) -> None:
        """Check the seal of every commit this process did not write before building on it.

        Another writer process, or an insider with write access to the directory, may have
        appended; the chain links alone prove nothing (anyone can compute hashes), so each such
        commit's Ed25519 seal must verify under the log's key. Commits already covered by a
        stored checkpoint whose signature verifies and whose root equals the recomputed tree need
        no further check (that makes opening a large log cost one signature check, not one per commit).
        """
        seals, self._unauthenticated = self._unauthenticated, []
        if self._read_only or not seals:
            return
        covered = self._covered_by_checkpoint() if len(seals) > 8 else 0
        for start, seal, public, kid in seals:
            end = seal.seq + 1
            if end // self._checkpoint_every > start // self._checkpoint_every and not self._store.has_checkpoint(end):
                self._due_checkpoints.append(end)  # its writer died before signing it
            if seal.seq < covered:
                continue
            problem = None
            if seal.kid != kid:
                problem = f"is signed by key {seal.kid}, not by this log's key {kid}"
            else:
                try:
                    public.verify(seal.sig, seal.message(self.log_id))
                except InvalidSignature:
                    problem = "has an invalid Ed25519 signature"
            if problem is not None:
                self._failed = AuditIntegrityError(
                    f"the seal ending at record {seal.seq} {problem}: records were appended or altered without the "
                    "signing key; refusing to write, checkpoint or prove on top of them (run `clinops audit verify`)")
                raise self._failed

    def _covered_by_checkpoint(self) -> int:
        """Largest stored checkpoint size that verifies and matches the tree (0 if none)."""
        for size in reversed(self._store.checkpoints()):
            if size > len(self._tree):
                continue
            try:
                cp = Checkpoint.from_bytes(self._store.get_checkpoint(size))
                self._check_against_tree(cp, f"stored checkpoint at size {size}")
            except (rf.RecordFormatError, AuditIntegrityError):
                return 0  # the full check on open names the problem
            return size
        return 0

    def _check_stored_checkpoints(self) -> None:
        """On open: every stored checkpoint must be signed by the log's key and agree with the records.

        A log cut shorter than a checkpoint, or rewritten under it, is refused here instead of
        being extended (and a fork signed with the real key).
        """
        for size in self._store.checkpoints():
            if size <= self._checked_checkpoints:
                continue
            what = f"checkpoints/{size:020d}.json"
            try:
                cp = Checkpoint.from_bytes(self._store.get_checkpoint(size))
            except rf.RecordFormatError as exc:
                raise AuditIntegrityError(f"{what}: {exc}") from None
            if cp.size != size:
                raise AuditIntegrityError(f"{what} holds a checkpoint for size {cp.size} (renamed or replaced)")
            self._check_against_tree(cp, what)
            self._checked_checkpoints = size
        if self._witness is not None:
            try:
                latest = self._witness.latest(self.log_id)
            except OSError as exc:
                # Stay available: checkpoints are stored unwitnessed (and receipts say so) until it is back.
                _log.error("audit trail %s: witness unreachable at open, log not compared with it: %s", self.root, exc)
                self._publish_errors.append(f"witness unreachable: {exc}")
                return
            if latest is not None:
                self._check_against_tree(latest, f"the witness's latest checkpoint (size {latest.size})")

    def _follow_transitions(self, transitions: list[tuple[int, bytes]]) -> None:
        """Hand the log over to the next signing key for each transition record of a commit just read."""
        for seq, line in transitions:
            obj = rf.parse_record(line)
            if obj["kind"] != "signing_key_rotation":
                continue
            try:
                self._schedule.add(self.log_id, seq, obj["fields"])
            except ValueError as exc:
                self._failed = AuditIntegrityError(str(exc))
                raise self._failed from None

    @property
    def key_id(self) -> str:
        """Key id of the signing key in effect now (the genesis key until a signing-key rotation)."""
        return self._schedule.current[1]

    def _adopt_signer(self) -> None:
        """After reading the log: the signer must be the key now in effect (finishing a rotation cut short)."""
        if self._signer is None or self._signer.key_id == self.key_id:
            return
        staged = self._paths.signing_key.with_name("signing.key.next")
        if self._signer_from_file and staged.exists():
            candidate = Ed25519Signer.load(staged)
            if candidate.key_id == self.key_id:  # the rotation was logged, the key file not yet replaced
                os.replace(staged, self._paths.signing_key)
                fsync_dir(self._paths.private)
                self._signer = candidate
                return
        if self._read_only:
            self._signer = None  # a reader with an outdated key file just cannot vouch for the log
            return
        raise ValueError(f"signer: key {self._signer.key_id} is not this trail's signing key now ({self.key_id})")

    def _invalidate_caches(self) -> None:
        self._pseudonym_cache.clear()
        self._key_cache.clear()
        reload = getattr(self._keyring, "reload", None)
        if callable(reload):
            reload()

    # -- writing ----------------------------------------------------------------------------
    def _request(self, kind: str, fields: Mapping[str, Any] | None, subject: object, payload: object,
                 *, internal: bool = False) -> _Request:
        kind = rf.check_kind(kind, internal=internal)
        subject_text = None if subject is None else rf.normalise_subject(subject)
        fields_json = rf.encode_fields(kind, fields, subject_text)
        payload_bytes = None
        if payload is not None:
            if subject_text is None:
                raise ValueError("payload: needs subject=; payloads are encrypted with the subject's data key "
                                 "so that they can be erased")
            payload_bytes = rf.encode_payload(payload, subject_text)  # type: ignore[arg-type]
        return _Request(kind, fields_json, subject_text, payload_bytes)

    def append(self, kind: str, fields: Mapping[str, Any], *, subject: str | int | None = None,
               payload: Mapping[str, Any] | None = None) -> AuditReceipt:
        """Append one record; returns once it is durable (fdatasync'ed and sealed).

        Parameters
        ----------
        kind : str
            ``prediction``, ``override``, ``escalation``, ``review``, ``deployment`` or any
            ``[a-z][a-z0-9_]{1,31}`` name not reserved by the trail.
        fields : dict
            Non-identifying metadata (JSON values). Every kind needs ``requester``; predictions
            need ``model_version, dataset_sha256, raw_score, probability, conformal_set,
            requester, purpose, prediction_id``. The UTC timestamp is added by the trail.
        subject : str or int, optional
            The encounter id. Never logged: it is mapped to a random pseudonym.
        payload : dict, optional
            Feature values; encrypted with AES-256-GCM under the subject's data key for the day.

        Returns
        -------
        AuditReceipt

        Raises
        ------
        ValueError, TypeError
            Bad input, naming the field and the rule.
        AuditWriteError
            The commit did not reach the disk; the record is not in the log.
        """
        return self._submit([self._request(kind, fields, subject, payload)])[0]

    def append_many(self, events: Iterable[Mapping[str, Any]]) -> list[AuditReceipt]:
        """Append several records in one commit (one write, one fdatasync, one seal).

        Parameters
        ----------
        events : iterable of dict
            Each ``{"kind": str, "fields": dict, "subject": ... (optional), "payload": ... (optional)}``.

        Returns
        -------
        list of AuditReceipt
            In the order given.
        """
        requests = []
        for i, event in enumerate(events):
            if not isinstance(event, Mapping):
                raise TypeError(f"events[{i}]: must be a dict with kind, fields, subject, payload")
            unknown = set(event) - {"kind", "fields", "subject", "payload"}
            if unknown:
                raise ValueError(f"events[{i}]: unknown keys {sorted(unknown)}")
            try:
                requests.append(self._request(event.get("kind"), event.get("fields"), event.get("subject"),
                                              event.get("payload")))
            except (ValueError, TypeError) as exc:
                raise type(exc)(f"events[{i}].{exc}") from None
        return self._submit(requests) if requests else []

    def _submit(self, requests: list[_Request]) -> list[AuditReceipt]:
        if self._read_only:
            raise PermissionError("audit trail was opened read-only")
        self._check_usable()
        with self._queue_cv:
            self._queue.extend(requests)
            while not requests[0].done and self._leader:
                self._queue_cv.wait()
            if not requests[0].done:
                # Lead: commit everything queued so far (ours and other threads') in one go.
                self._leader = True
                batch, self._queue = self._queue, []
            else:
                batch = []
        if batch:
            try:
                with self._write_lock():
                    self._catch_up(recover=True)
                    receipts = self._commit_locked(batch)
                for req, receipt in zip(batch, receipts, strict=True):
                    req.receipt = receipt
            except BaseException as exc:  # every waiter must learn the commit failed
                for req in batch:
                    req.error = exc
            finally:
                with self._queue_cv:
                    for req in batch:
                        req.done = True
                    self._leader = False
                    self._queue_cv.notify_all()
        for req in requests:
            if req.error is not None:
                if isinstance(req.error, AuditWriteError):
                    raise AuditWriteError(str(req.error), durable=req.error.durable,
                                          record_ids=req.error.record_ids) from req.error
                if isinstance(req.error, (AuditIntegrityError, PermissionError, RuntimeError)):
                    raise type(req.error)(str(req.error)) from req.error
                # Failed before anything was written (keys, pseudonyms, signing): nothing is in the log.
                raise AuditWriteError(f"commit failed before writing, nothing is in the log: {req.error}",
                                      durable=False) from req.error
        return [req.receipt for req in requests]  # type: ignore[misc]

    def _pseudonym_locked(self, subject: str) -> str:
        pseudonym = self._pseudonym_cache.get(subject)
        if pseudonym is None:
            assert self._pseudonyms is not None
            pseudonym = self._pseudonyms.pseudonym(subject, create=True)
            assert pseudonym is not None
            if len(self._pseudonym_cache) >= _CACHE_LIMIT:
                self._pseudonym_cache.clear()
            self._pseudonym_cache[subject] = pseudonym
        return pseudonym

    def _data_key_locked(self, pseudonym: str, day: str) -> tuple[str, bytes]:
        entry = self._key_cache.get((pseudonym, day))
        if entry is None:
            assert self._pseudonyms is not None
            entry = self._pseudonyms.data_key(pseudonym, day, create=True)
            assert entry is not None
            if len(self._key_cache) >= _CACHE_LIMIT:
                self._key_cache.clear()
            self._key_cache[(pseudonym, day)] = entry
        return entry

    def _keys_cached(self, batch: list[_Request], day: str) -> bool:
        for req in batch:
            if req.subject is None:
                continue
            pseudonym = self._pseudonym_cache.get(req.subject)
            if pseudonym is None or (req.payload is not None and (pseudonym, day) not in self._key_cache):
                return False
        return True

    def _commit_locked(self, requests: list[_Request]) -> list[AuditReceipt]:
        """Write ``requests`` (after any pending recovery records) as one sealed commit."""
        assert self._signer is not None and self._pseudonyms is not None
        internal = [self._request("recovery", {
            "segment": r.segment, "offset": r.offset, "bytes": r.n_bytes, "records_dropped": r.n_records_dropped,
            "sha256": r.sha256, "quarantine": Path(r.quarantine).name}, None, None, internal=True)
            for r in self._unlogged_recoveries]
        batch = internal + requests
        if not batch:
            return []
        ts = rf.utc_text(self._clock())
        day = ts[:10]
        seq, prev = self._next_seq, self._head.hex()
        lines: list[bytes] = []
        hashes: list[bytes] = []
        ids: list[str] = []
        # New pseudonyms and data keys of this commit go into one durable SQLite transaction.
        # (A SQLite transaction costs a lock round trip even when empty: skipped when every
        # pseudonym and data key this commit needs is already cached.)
        keys_txn = nullcontext() if self._keys_cached(batch, day) else self._pseudonyms.batch()
        with keys_txn:
            for req in batch:
                record_id = uuid.uuid4().hex
                pseudonym = None if req.subject is None else self._pseudonym_locked(req.subject)
                payload = "null"
                if req.payload is not None:
                    assert pseudonym is not None
                    dek_id, key = self._data_key_locked(pseudonym, day)
                    iv = os.urandom(12)
                    ct = AESGCM(key).encrypt(iv, req.payload, rf.payload_aad(self.log_id, record_id, pseudonym, dek_id))
                    payload = rf.payload_json(dek_id, iv, ct)
                line = rf.record_line(seq, prev, ts, req.kind, record_id, pseudonym, req.fields_json, payload)
                h = leaf_hash(line)
                lines.append(line)
                hashes.append(h)
                ids.append(record_id)
                seq += 1
                prev = h.hex()
        sig = self._signer.sign(rf.seal_message(self.log_id, seq - 1, prev, ts))
        blob = b"\n".join(lines) + b"\n" + rf.seal_line(seq - 1, prev, ts, self._signer.key_id, sig) + b"\n"
        try:
            if self._seg is None:
                self._store.create(self._next_seq)
                self._seg, self._offset, self._seg_count = self._next_seq, 0, 0
            self._store.append(self._seg, blob)
        except OSError as exc:
            raise self._roll_back(exc, tuple(ids)) from exc
        old_size = self._next_seq
        for h in hashes:
            self._tree.append(h)
        self._next_seq, self._head = seq, bytes.fromhex(prev)
        self._offset += len(blob)
        self._seg_count += len(lines)
        if self._unlogged_recoveries:
            self._unlogged_recoveries.clear()
            self._forget_recovery_intents()
        # Durable from here on: whatever fails below is reported on the receipts, never as a failed append.
        receipt_signer = self._signer
        for req, line in zip(batch, lines, strict=True):
            if req.kind == "signing_key_rotation":
                self._follow_transitions([(json.loads(line)["seq"], line)])
                assert self._next_signer is not None and self._next_signer.key_id == self.key_id
                self._signer, self._next_signer = self._next_signer, None
        if seq // self._checkpoint_every > old_size // self._checkpoint_every or self._seg_count >= self._segment_records:
            self._due_checkpoints.append(seq)
        checkpoint_error = self._write_due_checkpoints()
        receipts = self._receipts(receipt_signer, old_size, hashes, ids, ts, checkpoint_error)
        return receipts[len(internal):]

    def _roll_back(self, exc: OSError, ids: tuple[str, ...]) -> AuditWriteError:
        """Undo a commit whose write or fdatasync failed; the error says whether that worked."""
        # After a failed write or fsync the file's state is unknown: cut it back to the last
        # acknowledged commit, and stop writing until reopened either way.
        self._failed = exc
        if self._seg is None:
            return AuditWriteError(f"audit commit not written (no segment could be created): {exc}",
                                   durable=False, record_ids=ids)
        try:
            self._store.truncate(self._seg, self._offset)
        except OSError as undo:
            return AuditWriteError(f"audit commit failed ({exc}) and could not be rolled back ({undo}): whether its "
                                   f"records are in the log is unknown; look up record ids {list(ids)} after "
                                   "reopening before retrying", durable=None, record_ids=ids)
        return AuditWriteError(f"audit commit not durable and rolled back, none of its records is in the log: {exc}",
                               durable=False, record_ids=ids)

    def _receipts(self, signer: Signer, first: int, hashes: list[bytes], ids: list[str], ts: str,
                  checkpoint_error: str | None) -> list[AuditReceipt]:
        commit = MerkleTree(hashes)
        root = commit.root().hex()
        sig = rf.b64(signer.sign(rf.receipt_message(self.log_id, first, len(hashes), root, ts)))
        return [AuditReceipt(first + i, record_id, h.hex(), self.log_id, ts, first, len(hashes),
                             tuple(p.hex() for p in commit.inclusion_proof(i)), signer.key_id, sig,
                             checkpoint_error)
                for i, (h, record_id) in enumerate(zip(hashes, ids, strict=True))]

    def _write_due_checkpoints(self) -> str | None:
        """Write the checkpoints owed at documented sizes (and close a full segment); the error text, if any."""
        self._publish_errors = []
        try:
            while self._due_checkpoints:
                size = self._due_checkpoints[0]
                if size == self._next_seq and self._seg is not None and self._seg_count >= self._segment_records:
                    self._close_segment()
                else:
                    self._make_checkpoint(size)
                self._due_checkpoints.pop(0)
        except AuditIntegrityError as exc:
            self._failed = exc  # a stored checkpoint disagrees with the log: stop writing
            return str(exc)
        except OSError as exc:
            _log.error("audit trail %s: checkpoint at size %d not written (%s); retried at the next commit",
                       self.root, self._due_checkpoints[0], exc)
            return f"checkpoint at size {self._due_checkpoints[0]} not written: {exc}"
        return "; ".join(self._publish_errors) or None

    def _make_checkpoint(self, size: int) -> Checkpoint:
        """Sign, witness and store the checkpoint at ``size``; an existing one must agree with the tree."""
        assert self._signer is not None
        if self._signer.key_id != self._schedule.at(size)[1]:
            raise ValueError(f"signer: key {self._signer.key_id} does not sign checkpoints of size {size} "
                             f"(key {self._schedule.at(size)[1]} does)")
        root = self._tree.root(size).hex()
        if self._store.has_checkpoint(size):
            stored = Checkpoint.from_bytes(self._store.get_checkpoint(size))
            self._check_against_tree(stored, f"stored checkpoint at size {size}")
            return stored
        cp = Checkpoint.signed(self.log_id, size, root, rf.utc_text(self._clock()), self._signer)
        cp = self._witnessed(cp)
        if not self._store.put_checkpoint(size, cp.to_bytes()):
            stored = Checkpoint.from_bytes(self._store.get_checkpoint(size))
            self._check_against_tree(stored, f"stored checkpoint at size {size}")
            return stored
        self._archived(f"checkpoints/{size:020d}.checkpoint", cp.to_bytes())
        return cp

    def _archived(self, rel: str, data: bytes) -> None:
        """Upload to the Object Lock archive, if any; a failure is reported on the receipts, not raised."""
        if self._archive is None:
            return
        try:
            self._archive.put(self.log_id, rel, data)
        except OSError as exc:
            self._publish_errors.append(f"{rel} not archived: {exc}")
            _log.error("audit trail %s: %s not archived: %s", self.root, rel, exc)

    def _witnessed(self, cp: Checkpoint) -> Checkpoint:
        """``cp`` with the witness's cosignature, or unchanged (and the reason kept) when it cannot be had."""
        if self._witness is None or cp.size == 0:
            return cp
        try:
            cosig = self._witness.add_checkpoint(cp, self._tree)
        except WitnessRefused as exc:
            # The witness holds a checkpoint this log does not extend: a fork or a rollback.
            self._failed = AuditIntegrityError(str(exc))
            raise self._failed from exc
        except OSError as exc:
            error = f"checkpoint at size {cp.size} stored without the witness cosignature: {exc}"
            self._publish_errors.append(error)
            _log.error("audit trail %s: %s", self.root, error)
            return cp
        return cp.with_cosignature(cosig)

    def _close_segment(self) -> None:
        assert self._seg is not None
        cp = self._make_checkpoint(self._next_seq)
        self._store.seal(self._seg, cp.to_bytes())
        name = f"seg-{self._seg:020d}"
        self._archived(f"log/{name}.jsonl", self._store.read(self._seg))
        self._archived(f"log/{name}.checkpoint", cp.to_bytes())
        self._seg = None

    def _check_against_tree(self, cp: Checkpoint, what: str) -> None:
        """Raise unless ``cp`` is a valid checkpoint of this log as the writer has built it."""
        public, _ = self._schedule.at(cp.size)
        if cp.log_id != self.log_id or not cp.verify(public):
            raise AuditIntegrityError(f"{what} is not signed by this log's key: forged or replaced")
        if cp.size > len(self._tree):
            raise AuditIntegrityError(
                f"{what} covers {cp.size} records but the log holds {len(self._tree)}: the log was truncated or "
                "rolled back; refusing to write on top of it")
        if self._tree.root(cp.size).hex() != cp.root:
            raise AuditIntegrityError(
                f"{what} does not match the records (size {cp.size}): the log was rewritten after it was signed; "
                "refusing to sign a fork")

    # -- administrative records -------------------------------------------------------------
    def _admin_commit(self, kind: str, fields: dict[str, Any]) -> AuditReceipt:
        return self._commit_locked([self._request(kind, fields, None, None, internal=True)])[0]

    def pseudonym(self, subject: str | int, *, create: bool = True) -> str | None:
        """The pseudonym a subject's records carry (created if ``create`` and unknown, else None)."""
        subject_text = rf.normalise_subject(subject)
        if self._pseudonyms is None:
            raise PermissionError("pseudonym store not available (opened read-only without private/ access)")
        if not create or self._read_only:
            return self._pseudonyms.pseudonym(subject_text, create=False)
        with self._write_lock():
            self._catch_up(recover=True)
            with self._pseudonyms.batch():
                return self._pseudonym_locked(subject_text)

    def erase(self, subject: str | int, *, requester: str, retire_kek: bool = False) -> AuditReceipt:
        """Erase a data subject: delete their pseudonym mapping and every data key (crypto-shredding).

        Their payloads become undecryptable; the log's hashes, seals and checkpoints still
        verify. The data keys deleted are those of the pseudonym in the key table *and* every key
        the log's own records of the pseudonym name (the table can be edited; the log cannot,
        undetected). The erasure is logged as an ``erasure`` record holding the (now unlinkable)
        pseudonym, the requester and the number of keys destroyed, never the identifier.

        Parameters
        ----------
        retire_kek : bool
            Then also rotate the key-encryption key and destroy the old one (:meth:`rotate_key`),
            so that a copy of ``subjects.sqlite`` taken before the erasure opens nothing any more.

        Raises
        ------
        LookupError
            The subject has no pseudonym (never logged, or already erased).
        """
        subject_text = rf.normalise_subject(subject)
        if not isinstance(requester, str) or not requester.strip():
            raise ValueError("requester: required, a non-empty string (who asked for the erasure)")
        with self._write_lock():
            self._catch_up(recover=True)
            assert self._pseudonyms is not None
            pseudonym = self._pseudonyms.lookup_pseudonym(subject_text)
            logged_keys = set()
            if pseudonym is not None:
                logged_keys = {view.payload["dk"] for view in self.find(subject=pseudonym) if view.payload}
            result = self._pseudonyms.erase(subject_text, logged_keys)
            if result is None:
                raise LookupError("erase: this subject has no pseudonym (never logged, or already erased)")
            # Keys first, record second: a failure in between leaves an erasure that is done but
            # not logged (reported below), never one that is logged but not done.
            pseudonym, n_keys = result
            self._invalidate_caches()
            try:
                receipt = self._admin_commit("erasure", {"pseudonym": pseudonym, "requester": requester,
                                                         "data_keys_destroyed": n_keys})
            except AuditWriteError as exc:
                raise AuditWriteError(f"erasure of pseudonym {pseudonym} is done (mapping and {n_keys} data keys "
                                      f"destroyed) but its record could not be written: {exc}",
                                      durable=exc.durable, record_ids=exc.record_ids) from exc
            if retire_kek:
                self._rotate_kek_locked(requester, destroy_retired=True)
            return receipt

    def retention(self, older_than: timedelta, *, requester: str = "retention-policy") -> RetentionReport:
        """Shred the payloads of every UTC day that ended more than ``older_than`` ago.

        Data keys are per subject and UTC day, so payloads are shredded by whole days: a day is
        shredded once all of it is older than ``now - older_than``. Logged as a ``retention`` record.
        """
        if not isinstance(older_than, timedelta) or older_than < timedelta(0):
            raise ValueError(f"older_than: must be a non-negative timedelta, got {older_than!r}")
        with self._write_lock():
            self._catch_up(recover=True)
            assert self._pseudonyms is not None
            cutoff = self._clock() - older_than
            n_keys = self._pseudonyms.shred_before(cutoff.astimezone(timezone.utc).date())
            self._invalidate_caches()
            receipt = self._admin_commit("retention", {"cutoff": rf.utc_text(cutoff), "requester": requester,
                                                       "data_keys_destroyed": n_keys})
        return RetentionReport(receipt, rf.utc_text(cutoff), n_keys)

    def rotate_key(self, *, requester: str = "key-rotation", destroy_retired: bool = True) -> AuditReceipt:
        """Rotate the key-encryption key: new KEK active, every data key re-wrapped under it.

        Three durable steps, so a failure at any point loses no key: the new KEK is stored (not
        yet active); every data key is re-wrapped under it in one SQLite transaction (all or
        none); then it becomes active and, with ``destroy_retired`` (the default), the old KEKs
        are destroyed, so a copy of ``subjects.sqlite`` taken before the rotation opens nothing.
        Logged as a ``key_rotation`` record with the old and new key ids; a rotation that failed
        is logged too (``status: failed``) before the error is raised.
        """
        with self._write_lock():
            self._catch_up(recover=True)
            return self._rotate_kek_locked(requester, destroy_retired=destroy_retired)

    def _rotate_kek_locked(self, requester: str, *, destroy_retired: bool) -> AuditReceipt:
        assert self._keyring is not None and self._pseudonyms is not None
        old = self._keyring.active_key_id
        try:
            new = self._keyring.add_key()
            n_keys = self._pseudonyms.rewrap(new)
            if destroy_retired and self._pseudonyms.count_keys_not_under(new):
                raise RuntimeError("data keys under an old KEK remain after re-wrapping; not destroying it")
            destroyed = self._keyring.activate(new, destroy_others=destroy_retired)
        except (OSError, ValueError, RuntimeError, LookupError, sqlite3.Error) as exc:
            self._invalidate_caches()
            self._admin_commit("key_rotation", {"old_kek_id": old, "status": "failed", "error": str(exc)[:500],
                                                "requester": requester})
            raise AuditWriteError(f"key rotation failed, the active key is still {old} (failure logged): {exc}",
                                  durable=False) from exc
        self._invalidate_caches()
        return self._admin_commit("key_rotation", {"old_kek_id": old, "new_kek_id": new, "status": "done",
                                                   "data_keys_rewrapped": n_keys, "kek_ids_destroyed": destroyed,
                                                   "requester": requester})

    def rotate_signing_key(self, new_signer: Signer | None = None, *, requester: str = "key-rotation") -> AuditReceipt:
        """Hand the log over to a new Ed25519 signing key (after a compromise, or on schedule).

        A ``signing_key_rotation`` record, sealed by the current key, carries the new public key
        and the current key's signature over it (:func:`clinops.audit.records.key_transition_message`);
        every later commit, checkpoint and receipt is signed by the new key, and ``verify``
        follows the chain from the pinned (genesis) key. A witness must be told the new log key
        (``--log-key``) before the next checkpoint is published.

        Parameters
        ----------
        new_signer : Signer, optional
            The new key (e.g. held by a KMS). Default: a new key in ``private/signing.key``, first
            stored as ``signing.key.next`` so that a crash after the record was written loses nothing.
        """
        if not isinstance(requester, str) or not requester.strip():
            raise ValueError("requester: required, a non-empty string")
        with self._write_lock():
            self._catch_up(recover=True)
            assert self._signer is not None
            staged = self._paths.signing_key.with_name("signing.key.next")
            manage_file = new_signer is None and self._signer_from_file
            if new_signer is None:
                new_signer = Ed25519Signer.generate()
                if manage_file:
                    staged.unlink(missing_ok=True)
                    new_signer.save(staged)
                    fsync_dir(self._paths.private)
            if new_signer.key_id == self.key_id:
                raise ValueError("new_signer: is the key already in use")
            new_b64 = rf.b64(public_key_raw(new_signer.public_key))
            old_kid = self.key_id
            fields = {"old_kid": old_kid, "new_kid": new_signer.key_id, "new_public_key": new_b64,
                      "transition_sig": rf.b64(self._signer.sign(rf.key_transition_message(
                          self.log_id, old_kid, new_signer.key_id, new_b64))), "requester": requester}
            self._next_signer = new_signer
            try:
                receipt = self._commit_locked([self._request("signing_key_rotation", fields, None, None,
                                                             internal=True)])[0]
            finally:
                self._next_signer = None
            if manage_file:
                os.replace(staged, self._paths.signing_key)
                fsync_dir(self._paths.private)
            # signing.pub stays the genesis key: the one verifiers pin, from which they follow the chain.
            return receipt

    def checkpoint(self) -> Checkpoint:
        """Sign a checkpoint (tree size + Merkle root) for the log as it is now and store it."""
        with self._write_lock():
            self._catch_up(recover=True)
            return self._make_checkpoint(self._next_seq)

    # -- reading ----------------------------------------------------------------------------
    @property
    def size(self) -> int:
        """Number of committed records."""
        with self._read_lock():
            self._catch_up(recover=False)
            return self._next_seq

    def latest_checkpoint(self) -> Checkpoint | None:
        """The stored checkpoint with the largest tree size, or None."""
        sizes = self._store.checkpoints()
        return Checkpoint.from_bytes(self._store.get_checkpoint(sizes[-1])) if sizes else None

    def _snapshot(self) -> list[tuple[int, int | None]]:
        """(segment, end offset or None for all) covering exactly the committed records."""
        with self._read_lock():
            self._catch_up(recover=False)
            return [(first, self._offset if first == self._seg else None)
                    for first in self._store.segments() if first < self._next_seq or first == self._seg]

    def _record_lines(self, snapshot: list[tuple[int, int | None]] | None = None) -> Iterator[tuple[int, bytes]]:
        for first, end in snapshot if snapshot is not None else self._snapshot():
            seq = first
            for line in self._store.read(first, 0, end).split(b"\n"):
                if line.startswith(_RECORD_START):
                    yield seq, line
                    seq += 1

    @staticmethod
    def _view(line: bytes) -> RecordView:
        obj = rf.parse_record(line)
        return RecordView(seq=obj["seq"], record_id=obj["id"], timestamp=obj["ts"], kind=obj["kind"],
                          fields=obj["fields"], subject=obj["subject"], payload=obj["payload"],
                          record_hash=leaf_hash(line).hex())

    def find(self, kind: str | None = None, **equals: Any) -> list[RecordView]:
        """Records of ``kind`` (any if None) whose fields equal ``equals``, in log order.

        Example: ``trail.find("prediction", prediction_id="p-17")``. ``subject=`` matches the
        pseudonym column instead of a field.
        """
        subject = equals.pop("subject", None)
        needles = []
        if kind is not None:
            needles.append(b'"kind":' + rf.canonical_json(kind).encode())
        wanted = {}
        for name, value in equals.items():
            text = rf.canonical_json(rf._normalise(value, f"find.{name}", None))
            wanted[name] = text
            needles.append(rf.canonical_json(name).encode() + b":" + text.encode())
        if subject is not None:
            needles.append(b'"subject":' + rf.canonical_json(subject).encode())
        out = []
        for _, line in self._record_lines():
            if all(n in line for n in needles):  # cheap byte filter before parsing
                view = self._view(line)
                if ((kind is None or view.kind == kind) and (subject is None or view.subject == subject)
                        and all(name in view.fields and rf.canonical_json(view.fields[name]) == text
                                for name, text in wanted.items())):
                    out.append(view)
        return out

    def record(self, seq: int) -> RecordView:
        """The record at position ``seq``."""
        line = self._line(seq)
        return self._view(line)

    def _line(self, seq: int) -> bytes:
        snapshot = self._snapshot()
        if not 0 <= seq < self._next_seq:
            raise IndexError(f"seq {seq}: the log has records 0..{self._next_seq - 1}")
        firsts = [first for first, _ in snapshot if first <= seq]
        chosen = [item for item in snapshot if item[0] == firsts[-1]]
        for s, line in self._record_lines(chosen):
            if s == seq:
                return line
        raise AuditIntegrityError(f"record {seq} not found in its segment")

    def decrypt_payload(self, record: RecordView) -> dict[str, Any] | None:
        """The decrypted payload of ``record``, or None if its data key was shredded.

        Raises
        ------
        ValueError
            The record has no payload.
        PermissionError
            The keyring / pseudonym store is not available.
        AuditIntegrityError
            The ciphertext does not open under its key (altered).
        """
        if record.payload is None:
            raise ValueError(f"record {record.seq} has no payload")
        if self._pseudonyms is None:
            raise PermissionError("decryption needs the keyring and pseudonym store (root/private)")
        env = record.payload
        assert record.subject is not None
        try:
            key = self._pseudonyms.key_by_id(env["dk"], record.subject)
        except KeyUnavailable:
            raise AuditIntegrityError(f"the data key of record {record.seq} does not open for its pseudonym and day: "
                                      "its row in subjects.sqlite was altered or repointed") from None
        if key is None:
            return None
        try:
            plain = AESGCM(key).decrypt(rf.unb64(env["iv"]), rf.unb64(env["ct"]),
                                        rf.payload_aad(self.log_id, record.record_id, record.subject, env["dk"]))
        except (InvalidTag, ValueError):
            raise AuditIntegrityError(f"payload of record {record.seq} does not decrypt: ciphertext altered") from None
        return json.loads(plain)

    def show(self, prediction_id: str, *, decrypt: bool = True) -> dict[str, Any]:
        """Reconstruct one prediction event from the log.

        Returns
        -------
        dict
            ``prediction_id, seq, record_id, record_hash, timestamp, model_version,
            dataset_sha256, raw_score, probability, conformal_set, requester, purpose,
            subject_pseudonym, fields`` (everything logged), ``features`` (decrypted, or None),
            ``features_status`` (``decrypted``, ``withheld`` when ``decrypt`` is False,
            ``shredded`` after erasure or retention, ``none`` without payload), ``shredded_by``
            (the erasure / retention record responsible, if found) and ``related``: the other
            records (overrides, escalations, reviews) that name the same ``prediction_id``.

        Raises
        ------
        LookupError
            No prediction record, or more than one, has this ``prediction_id``.
        """
        views = self.find(prediction_id=prediction_id)
        preds = [v for v in views if v.kind == "prediction"]
        if not preds:
            raise LookupError(f"no prediction record with prediction_id {prediction_id!r}")
        if len(preds) > 1:
            raise LookupError(f"prediction_id {prediction_id!r} is ambiguous: prediction records "
                              f"{[v.seq for v in preds]}")
        rec = preds[0]
        features, status, shredded_by = None, "none", None
        if rec.payload is not None:
            if not decrypt:
                status = "withheld"
            else:
                features = self.decrypt_payload(rec)
                status = "decrypted" if features is not None else "shredded"
        if status == "shredded":
            shredded_by = self._shredder(rec)
        fields = dict(rec.fields)
        return {
            "prediction_id": prediction_id, "seq": rec.seq, "record_id": rec.record_id,
            "record_hash": rec.record_hash, "timestamp": rec.timestamp,
            **{name: fields.get(name) for name in rf.PREDICTION_FIELDS if name != "prediction_id"},
            "subject_pseudonym": rec.subject, "fields": fields,
            "features": features, "features_status": status, "shredded_by": shredded_by,
            "related": [{"seq": v.seq, "kind": v.kind, "timestamp": v.timestamp, "fields": v.fields}
                        for v in views if v.seq != rec.seq],
        }

    def _shredder(self, rec: RecordView) -> dict[str, Any] | None:
        for view in self.find("erasure", pseudonym=rec.subject):
            return {"kind": "erasure", "seq": view.seq, "timestamp": view.timestamp}
        for view in self.find("retention"):
            if view.seq > rec.seq and str(view.fields.get("cutoff", ""))[:10] > rec.timestamp[:10]:
                return {"kind": "retention", "seq": view.seq, "timestamp": view.timestamp}
        return None

    # -- proofs and verification ------------------------------------------------------------
    def prove(self, seq: int) -> dict[str, Any]:
        """Inclusion proof bundle for record ``seq`` against the latest checkpoint covering it.

        A new checkpoint is signed first if none covers ``seq`` yet (writers only). The bundle
        (JSON-serialisable) holds the record line, the audit path and the signed checkpoint, and
        is checked offline with :func:`clinops.audit.proofs.verify_bundle` and the public key.
        """
        line = self._line(seq)
        cp = self.latest_checkpoint()
        if cp is None or cp.size <= seq:
            if self._read_only:
                raise LookupError(f"no checkpoint covers record {seq} yet; a writer must run `clinops audit checkpoint`")
            cp = self.checkpoint()
        with self._read_lock():
            self._catch_up(recover=False)
            self._check_against_tree(cp, f"the latest checkpoint (size {cp.size})")
            path = self._tree.inclusion_proof(seq, cp.size)
        return {"type": "clinops-audit inclusion proof", "version": 1, "log_id": self.log_id, "seq": seq,
                "record": line.decode("ascii"), "tree_size": cp.size, "proof": [p.hex() for p in path],
                "checkpoint": cp.to_dict(), "key_transitions": self._transitions_before(cp.size)}

    def _transitions_before(self, size: int) -> list[dict[str, Any]]:
        """The signed key transitions a verifier holding the genesis key follows to a checkpoint of ``size``."""
        return [{"seq": seq, **fields} for seq, fields in self._schedule.transitions if seq < size]

    def consistency_proof(self, old: Checkpoint, new: Checkpoint | None = None) -> dict[str, Any]:
        """Consistency proof bundle between an earlier checkpoint ``old`` and ``new`` (default latest).

        A witness that kept ``old`` checks with :func:`clinops.audit.proofs.verify_bundle` that
        the log only grew since: no record was changed, removed or reordered (no fork, no rollback).
        """
        if new is None:
            new = self.latest_checkpoint() if self._read_only else self.checkpoint()
            assert new is not None
        with self._read_lock():
            self._catch_up(recover=False)
            if not 0 < old.size <= new.size <= len(self._tree):
                raise ValueError(f"old.size: need 0 < old.size <= new.size <= log size, got {old.size}, {new.size}, "
                                 f"{len(self._tree)}")
            self._check_against_tree(new, f"checkpoint at size {new.size}")
            proof = self._tree.consistency_proof(old.size, new.size)
        return {"type": "clinops-audit consistency proof", "version": 1, "log_id": self.log_id,
                "old": old.to_dict(), "new": new.to_dict(), "proof": [p.hex() for p in proof],
                "key_transitions": self._transitions_before(new.size)}

    def verify(self, start: int | None = None, end: int | None = None, *,
               public_key: Ed25519PublicKey | bytes | str | Path | None = None,
               trusted: Checkpoint | None = None, workers: int = 2) -> VerifyReport:
        """Verify records ``[start, end)`` (default all), their links, seals, the tree and checkpoints.

        The pinned key is ``public_key`` or, for a writer, the public half of the signing key it
        holds; a read-only trail without ``public_key`` refuses (the log's own copy proves nothing).
        With a witness, its latest cosigned checkpoint is fetched as ``trusted`` (unless given) and
        its cosignature required: that detects truncation, rollback and forks.
        See :func:`clinops.audit.verify.verify_log`.

        Raises
        ------
        ValueError
            No ``public_key`` on a trail opened without the signing key.
        OSError
            The configured witness is unreachable.
        """
        self._check_usable()
        if public_key is None:
            if self._signer is None:
                raise ValueError("public_key: required on a trail opened without the signing key (pin the key "
                                 "obtained out of band, not the copy in the log directory)")
            public_key = self._signer.public_key
        witness_key = None
        if self._witness is not None:
            witness_key = self._witness.key
            if trusted is None:
                trusted = self._witness.latest(self.log_id)
        return verify_log(self.root, public_key=public_key, start=start, end=end, trusted=trusted,
                          witness=witness_key, workers=workers)

    # -- closing ----------------------------------------------------------------------------
    def close(self) -> None:
        """Checkpoint the log if it grew since the last checkpoint, then release files and locks."""
        if self._closed:
            return
        try:
            if (not self._read_only and self._failed is None and os.getpid() == self._pid):
                with self._write_lock():
                    self._catch_up(recover=True)
                    sizes = self._store.checkpoints()
                    if self._next_seq and (not sizes or sizes[-1] < self._next_seq):
                        self._make_checkpoint(self._next_seq)
        finally:
            self._release()

    def _release(self) -> None:
        self._closed = True
        self._store.close()
        if self._pseudonyms is not None:
            self._pseudonyms.close()
        try:
            os.close(self._lock_fd)
        except OSError:
            pass

    def __enter__(self) -> "AuditTrail":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AuditTrail({str(self.root)!r}, log_id={self.log_id}, records={self._next_seq})"
