"""The evidence beside the records, checked against the tree the verifier recomputed.

Stored, segment-closing and trusted checkpoints (signature, size, root, witness cosignature),
the checkpoints the writer must have signed, the Object Lock archive's copies, and the tails
cut by recoveries. A mixin of :class:`clinops.audit.verify._Verifier`, whose state it reads
(``tree``, ``schedule``, ``store``, ``witness``, ``commit_ends``, ``recoveries``, counters).
"""
from __future__ import annotations

import hashlib

from clinops.audit.records import Checkpoint, RecordFormatError
from clinops.audit.verify_chunks import Problem


class EvidenceChecks:
    def _check_checkpoint(self, cp: Checkpoint, what: str) -> None:
        if cp.log_id != self.log_id:
            raise Problem(None, f"{what} belongs to log {cp.log_id}, not {self.log_id}")
        public, kid = self.schedule.at(cp.size)
        if not cp.verify(public):
            raise Problem(None, f"{what} is not validly signed by the log's key {kid} at that size (replaced, "
                                 "forged or signed by another key)")
        if self.witness is not None and any(c.name == self.witness.name for c in cp.cosignatures):
            if self.witness.cosignature(cp) is None:
                raise Problem(None, f"{what} carries a cosignature by witness {self.witness.name} that does not "
                                     "verify under the pinned witness key (forged)")
            self.n_witnessed += 1
        if cp.size > len(self.tree):
            raise Problem(None, f"{what} covers {cp.size} records but the log has only {len(self.tree)}: "
                                 "the log was truncated or rolled back")
        if self.tree.root(cp.size).hex() != cp.root:
            raise Problem(None, f"{what} (size {cp.size}) does not match the root recomputed from the records: "
                                 "the log was rewritten (forked) after that checkpoint was signed")
        self.n_checkpoints += 1

    def _segment_checkpoint(self, first: int, seq: int) -> None:
        what = f"log/seg-{first:020d}.checkpoint"
        last = seq - 1 if seq else None
        try:
            cp = Checkpoint.from_bytes(self.store.segment_checkpoint(first) or b"")
        except RecordFormatError as exc:
            raise Problem(last, f"{what}: {exc}") from None
        if cp.size != seq:
            raise Problem(last, f"{what} covers {cp.size} records, but the segment ends at record {last}: records "
                                 "were added to or removed from a closed segment")
        self._check_checkpoint(cp, what)

    def _checkpoints(self, sizes: list[int]) -> None:
        limit = len(self.tree)
        for size in sizes:
            what = f"checkpoints/{size:020d}.checkpoint"
            try:
                cp = Checkpoint.from_bytes(self.store.get_checkpoint(size))
            except RecordFormatError as exc:
                raise Problem(None, f"{what}: {exc}") from None
            except FileNotFoundError:
                raise Problem(None, f"{what} was deleted while the log was being verified") from None
            if cp.size != size:
                raise Problem(None, f"{what} holds a checkpoint for size {cp.size} (renamed or replaced)")
            if self.end is not None and size > limit:
                continue  # beyond the verified range
            self._check_checkpoint(cp, what)
        self._required_checkpoints(set(sizes))
        if self.trusted is not None:
            if self.witness is not None and self.witness.cosignature(self.trusted) is None:
                raise Problem(None, f"the trusted checkpoint (size {self.trusted.size}) has no valid cosignature by "
                                     f"witness {self.witness.name}")
            if not (self.end is not None and self.trusted.size > limit):
                self._check_checkpoint(self.trusted, "the witness's (trusted) checkpoint")
        if self.witness is not None and self.n_witnessed == 0:
            raise Problem(None, f"no checkpoint cosigned by witness {self.witness.name}: nothing ties this log to "
                                 "what the witness saw (truncation and forks would go unnoticed)")

    def _required_checkpoints(self, sizes: set[int]) -> None:
        """The writer checkpoints at the end of every commit that crosses a multiple of checkpoint_every."""
        every = self.checkpoint_every
        prev = 0
        for end in self.commit_ends:
            if end // every > prev // every and end not in sizes and (self.end is None or end <= self.end):
                raise Problem(end - 1, f"checkpoints/{end:020d}.checkpoint is missing: the commit ending at record "
                                        f"{end - 1} crossed a multiple of {every}, where the writer always signs a "
                                        "checkpoint (deleted, or the log was rewritten)")
            prev = end

    def _archived(self) -> None:
        """Against the Object Lock archive: its newest checkpoint is in the log, closed segments equal their locked copies."""
        try:
            latest = self.archive.latest_checkpoint(self.log_id)
            if latest is not None:
                self._check_checkpoint(latest, f"the Object Lock archive's latest checkpoint (size {latest.size})")
            for name in self.archive.names(self.log_id, "log"):
                if not name.endswith(".jsonl"):
                    continue
                first = int(name[len("log/seg-"):-len(".jsonl")])
                local = self.root / name
                if not local.exists():
                    raise Problem(first, f"{name} is locked in the archive but missing here: the log was truncated "
                                          "or rolled back")
                if local.read_bytes() != self.archive.get(self.log_id, name):
                    raise Problem(first, f"{name} differs from its locked copy in the archive: rewritten")
        except OSError as exc:
            raise Problem(None, f"the Object Lock archive could not be read: {exc}") from None

    def _quarantine(self) -> None:
        """Every ``recovery`` record's quarantined bytes must still be there, unchanged."""
        for seq, name, digest in self.recoveries:
            data = self.store.read_quarantine(name) if "/" not in name and name not in ("", ".", "..") else None
            if data is None:
                raise Problem(seq, f"quarantine/{name}, the tail cut by recovery record {seq}, is missing (deleted)")
            if hashlib.sha256(data).hexdigest() != digest:
                raise Problem(seq, f"quarantine/{name} does not match the SHA-256 recovery record {seq} logged: "
                                    "the cut bytes were altered")
