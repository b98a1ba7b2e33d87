"""The audit trail: an append-only, hash-chained, signed, Merkle-checkpointed log.

:class:`AuditTrail` is the one object callers use (the serving app, governance code, the CLI).
This module opens a trail (creating it, loading its keys, catching up and recovering), holds
its lock and closes it; what a trail does is in :mod:`clinops.audit.trail`, one concept per
module: appending (``commit``), following the tail and cutting a torn one (``tail``),
checkpoints (``checkpointing``), erasure, retention and key rotations (``admin``), reading
and the prediction index (``reading``), proofs and verification (``proving``).

Examples
--------
Open (and create) a trail, append a prediction, read it back, prove and verify it:

>>> import tempfile
>>> trail = AuditTrail.open(Path(tempfile.mkdtemp()) / "audit")
>>> fields = {"model_version": "m-1", "dataset_sha256": "0" * 64, "raw_score": 1.2, "probability": 0.77,
...           "conformal_set": [1], "requester": "dr-a", "purpose": "treatment", "prediction_id": "p-1"}
>>> receipt = trail.append("prediction", fields, subject="hadm-42", payload={"age": 71, "lactate": 3.1})
>>> receipt.seq, len(receipt.record_hash)
(0, 64)
>>> shown = trail.show("p-1")
>>> shown["probability"], shown["features"], shown["features_status"]
(0.77, {'age': 71, 'lactate': 3.1}, 'decrypted')
>>> shown["subject_pseudonym"].startswith("ps-")   # the encounter id is never logged
True
>>> from clinops.audit.proofs import verify_bundle
>>> bundle = trail.prove(receipt.seq)
>>> print(verify_bundle(bundle, public_key=trail.root / "signing.pub"))  # doctest: +ELLIPSIS
record 0 (prediction, ...) is included in log ... at tree size 1, ...
>>> trail.verify().ok
True
>>> _ = trail.erase("hadm-42", requester="dpo")    # crypto-shredding: the chain still verifies
>>> trail.show("p-1")["features_status"], trail.verify().ok
('shredded', True)
>>> trail.close()
"""
from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clinops.audit import records as rf
from clinops.audit.errors import AuditIntegrityError, AuditWriteError
from clinops.audit.index import RecordIndex
from clinops.audit.keys import (Ed25519Signer, Keyring, KeySchedule, LocalKeyring, Signer, key_id, load_public_key,
                                public_key_pem, public_key_raw)
from clinops.audit.merkle import MerkleTree
from clinops.audit.pseudonyms import PseudonymStore
from clinops.audit.receipts import AuditReceipt, RecordView, RecoveryReport, RetentionReport
from clinops.audit.storage import LocalSegmentStore, atomic_write
from clinops.audit.trail.admin import Administration
from clinops.audit.trail.checkpointing import Checkpointer
from clinops.audit.trail.commit import Committer, _Request
from clinops.audit.trail.proving import Prover
from clinops.audit.trail.reading import Reader
from clinops.audit.trail.tail import TailFollower
from clinops.audit.witness import WitnessClient
from clinops.statefiles import holding_lock

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

DEFAULT_SEGMENT_RECORDS = 100_000
DEFAULT_CHECKPOINT_EVERY = 1_000


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


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class AuditTrail(Reader, Prover, Administration, Checkpointer, Committer, TailFollower):
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
        self._genesis_hex = self._head.hex()
        self._index: RecordIndex | None = None  # opened at the first lookup (clinops.audit.index)
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
            with holding_lock(lock_fd, shared=read_only):
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
        except BaseException:
            if trail is not None:
                trail._release()
            else:
                os.close(lock_fd)
            raise
        if not read_only:
            trail._check_index()
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
        with self._mutex, holding_lock(self._lock_fd):
            yield

    @contextmanager
    def _read_lock(self) -> Iterator[None]:
        self._check_usable()
        with self._mutex, holding_lock(self._lock_fd, shared=True):
            yield

    @property
    def key_id(self) -> str:
        """Key id of the signing key in effect now (the genesis key until a signing-key rotation)."""
        return self._schedule.current[1]

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
        if self._index is not None:
            self._index.close()
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
