"""Signed checkpoints: when they are owed, signing, witnessing, archiving, and checking stored ones.

A checkpoint (size + Merkle root, signed) is written each time the log crosses a multiple of
``checkpoint_every`` records, when a segment closes, on ``checkpoint()`` and on ``close()``. A
witness cosigns it and an Object Lock archive keeps a copy when configured; a failure of either
is reported on the receipts, never as a failed append. Every stored checkpoint (and the
witness's latest) must agree with the records: a log cut or rewritten under one is refused.
"""
from __future__ import annotations

import logging


from clinops.audit import records as rf
from clinops.audit.errors import AuditIntegrityError
from clinops.audit.records import Checkpoint
from clinops.audit.witness import WitnessRefused

# One logger for the whole trail, whichever part of it logs (operators filter on its name).
_log = logging.getLogger("clinops.audit.log")


class Checkpointer:
    """Part of :class:`clinops.audit.log.AuditTrail`: checkpoints and closing full segments."""

    def checkpoint(self) -> Checkpoint:
        """Sign a checkpoint (tree size + Merkle root) for the log as it is now and store it."""
        with self._write_lock():
            self._catch_up(recover=True)
            return self._make_checkpoint(self._next_seq)

    def latest_checkpoint(self) -> Checkpoint | None:
        """The stored checkpoint with the largest tree size, or None."""
        sizes = self._store.checkpoints()
        return Checkpoint.from_bytes(self._store.get_checkpoint(sizes[-1])) if sizes else None

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

    def _archived(self, rel: str, data: bytes) -> None:
        """Upload to the Object Lock archive, if any; a failure is reported on the receipts, not raised."""
        if self._archive is None:
            return
        try:
            self._archive.put(self.log_id, rel, data)
        except OSError as exc:
            self._publish_errors.append(f"{rel} not archived: {exc}")
            _log.error("audit trail %s: %s not archived: %s", self.root, rel, exc)

    def _close_segment(self) -> None:
        assert self._seg is not None
        cp = self._make_checkpoint(self._next_seq)
        self._store.seal(self._seg, cp.to_bytes())
        name = f"seg-{self._seg:020d}"
        self._archived(f"log/{name}.jsonl", self._store.read(self._seg))
        self._archived(f"log/{name}.checkpoint", cp.to_bytes())
        self._seg = None

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
