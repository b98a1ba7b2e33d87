"""Following the log's tail: reading what other writers committed, and cutting a torn tail.

Under the trail's lock, ``_catch_up`` reads every complete, sealed commit appended since this
process last looked, checking the seals of commits it did not write, so that two writer
processes never fork the chain. On opening for writing, an unsealed tail left by a killed
writer or a torn write is cut off, kept under ``quarantine/`` (with an intent marker first, so
that a crash right after the cut is still logged), and the cut is logged as a ``recovery``
record by the next commit.
"""
from __future__ import annotations

import hashlib
import logging
import os

from cryptography.exceptions import InvalidSignature

from clinops.audit import records as rf
from clinops.audit.errors import AuditIntegrityError
from clinops.audit.keys import Ed25519Signer, public_key_raw
from clinops.audit.receipts import RecoveryReport
from clinops.audit.records import RECORD_START, SEAL_START, TRANSITION_KIND
from clinops.audit.storage import fsync_dir

# One logger for the whole trail, whichever part of it logs (operators filter on its name).
_log = logging.getLogger("clinops.audit.log")
# Records after which cached pseudonyms / data keys / the keyring may be stale.
_INVALIDATING = (b'"kind":"erasure"', b'"kind":"retention"', b'"kind":"key_rotation"')


def _quarantine_name(report: RecoveryReport) -> str:
    """Where a cut tail is kept: named by segment, offset and content, so a retry finds the same file."""
    return f"seg-{report.segment:020d}-at-{report.offset}-{report.sha256[:16]}.torn"

class TailFollower:
    """Part of :class:`clinops.audit.log.AuditTrail`: catching up with the log on disk, recovering a torn tail.

    Reads and advances the chain state the trail holds (``_tree``, ``_next_seq``, ``_head``,
    ``_seg``, ``_offset``, ``_seg_count``), the seals still to authenticate and the recoveries
    still to log.
    """

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
            if line.startswith(RECORD_START):
                if not line.startswith(rf.record_prefix(seq, prev)):
                    break
                h = hashlib.sha256(b"\x00" + line).digest()
                pending.append(h)
                invalidate = invalidate or any(p in line for p in _INVALIDATING)
                if TRANSITION_KIND in line:
                    transitions.append((seq, line))
                seq += 1
                prev = h.hex()
            elif line.startswith(SEAL_START) and pending:
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
        seals = [i for i, line in enumerate(complete) if line.startswith(SEAL_START)]
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
                                n_records_dropped=sum(1 for line in complete if line.startswith(RECORD_START)),
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
                                    sum(1 for line in data.split(b"\n")[:-1] if line.startswith(RECORD_START)),
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
        # a seal made with the key this writer holds is checked by signing its message again
        # (Ed25519Signer.made: a third of the cost of verifying), the others by verifying; "the
        # key" is compared as the public key itself, not only its (truncated) key id
        own = self._signer if isinstance(self._signer, Ed25519Signer) else None
        own_raw = public_key_raw(own.public_key) if own is not None else None
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
                message = seal.message(self.log_id)
                try:
                    if not (own is not None and public_key_raw(public) == own_raw and own.made(seal.sig, message)):
                        public.verify(seal.sig, message)
                except InvalidSignature:
                    problem = "has an invalid Ed25519 signature"
            if problem is not None:
                self._failed = AuditIntegrityError(
                    f"the seal ending at record {seal.seq} {problem}: records were appended or altered without the "
                    "signing key; refusing to write, checkpoint or prove on top of them (run `clinops audit verify`)")
                raise self._failed

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
