"""Layer 3: a tamper-evident, erasable audit trail (clinops/docs/audit.md).

Records are hash-chained, sealed per commit with Ed25519, and covered by RFC 6962 Merkle
checkpoints with inclusion and consistency proofs; feature payloads are encrypted with
AES-256-GCM under per-subject data keys; subjects appear only as random pseudonyms, and erasure
deletes the mapping and the keys while every hash and signature still verifies.

Main entry points: :class:`AuditTrail` (open, append, find, show, erase, retention, rotate_key,
rotate_signing_key, checkpoint, prove, verify), :func:`verify_log`, :func:`verify_bundle` and
:func:`verify_receipt` (need only the pinned public key), the witness
(:mod:`clinops.audit.witness`), the Object Lock archive (:mod:`clinops.audit.objectlock`), keys in
OpenBao (:mod:`clinops.audit.openbao`), and the ``clinops audit`` command (:mod:`clinops.audit.cli`).
"""
from clinops.audit.keys import Ed25519Signer, Keyring, LocalKeyring, Signer
from clinops.audit.log import (
    AuditIntegrityError,
    AuditReceipt,
    AuditTrail,
    AuditWriteError,
    RecordView,
    RecoveryReport,
    RetentionReport,
)
from clinops.audit.proofs import ProofError, verify_bundle, verify_receipt
from clinops.audit.records import PREDICTION_FIELDS, Checkpoint
from clinops.audit.verify import VerifyReport, verify_log
from clinops.audit.witness import WitnessClient, WitnessKey

__all__ = [
    "PREDICTION_FIELDS",
    "AuditIntegrityError",
    "AuditReceipt",
    "AuditTrail",
    "AuditWriteError",
    "Checkpoint",
    "Ed25519Signer",
    "Keyring",
    "LocalKeyring",
    "ProofError",
    "RecordView",
    "RecoveryReport",
    "RetentionReport",
    "Signer",
    "VerifyReport",
    "WitnessClient",
    "WitnessKey",
    "verify_bundle",
    "verify_log",
    "verify_receipt",
]
