"""Proofs and verification: inclusion and consistency proof bundles, and full verification.

Bundles are checked offline with :func:`clinops.audit.proofs.verify_bundle` and the pinned
public key; :meth:`Prover.verify` runs :func:`clinops.audit.verify.verify_log` on the trail.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from clinops.audit.records import Checkpoint
from clinops.audit.verify import VerifyReport, verify_log


class Prover:
    """Part of :class:`clinops.audit.log.AuditTrail`: proof bundles and verification."""

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
