"""What the audit trail hands back: receipts, records read back, and reports of recovery and retention."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["AuditReceipt", "RecordView", "RecoveryReport", "RetentionReport"]


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
