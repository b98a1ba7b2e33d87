"""Check proof bundles offline, with only the log's public key.

:meth:`clinops.audit.AuditTrail.prove` and :meth:`~clinops.audit.AuditTrail.consistency_proof`
produce JSON bundles; :func:`verify_bundle` checks one without the log, the private keys or
network access. This file needs only ``hashlib``, ``json`` and ``cryptography``; clinops/docs/audit.md
shows the same check done by hand.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from clinops.audit import records as rf
from clinops.audit.keys import KeySchedule, key_id, load_public_key
from clinops.audit.merkle import leaf_hash, root_from_inclusion_proof, verify_consistency
from clinops.audit.records import Checkpoint, RecordFormatError
from clinops.audit.witness import WitnessKey

__all__ = ["ProofError", "verify_bundle", "verify_receipt"]

INCLUSION = "clinops-audit inclusion proof"
CONSISTENCY = "clinops-audit consistency proof"


class ProofError(ValueError):
    """A proof bundle does not prove what it claims."""


def _schedule(bundle: dict[str, Any], public: Ed25519PublicKey, log_id: str) -> KeySchedule:
    """The signing keys from the pinned one on, following the bundle's signed key transitions."""
    schedule = KeySchedule(public)
    transitions = bundle.get("key_transitions", [])
    if not isinstance(transitions, list) or not all(isinstance(t, dict) and type(t.get("seq")) is int
                                                    for t in transitions):
        raise ProofError("bundle.key_transitions: must be a list of {seq, old_kid, new_kid, new_public_key, "
                         "transition_sig, ...}")
    for t in transitions:
        try:
            schedule.add(log_id, t["seq"], {k: v for k, v in t.items() if k != "seq"})
        except ValueError as exc:
            raise ProofError(f"bundle.key_transitions: {exc}") from None
    return schedule


def _checkpoint(obj: Any, what: str, schedule: KeySchedule, log_id: str, witness: WitnessKey | None) -> Checkpoint:
    try:
        cp = Checkpoint.from_dict(obj)
    except RecordFormatError as exc:
        raise ProofError(f"{what}: {exc}") from None
    if cp.log_id != log_id:
        raise ProofError(f"{what}: belongs to log {cp.log_id}, the bundle claims {log_id}")
    public, kid = schedule.at(cp.size)
    if not cp.verify(public):
        raise ProofError(f"{what}: not validly signed by the given public key (the key in effect at size {cp.size} "
                         f"is {kid})")
    if witness is not None and witness.cosignature(cp) is None:
        raise ProofError(f"{what}: no valid cosignature by witness {witness.name}: the checkpoint may be one the "
                         "witness never saw (a fork shown only to you)")
    return cp


def _hashes(values: Any, what: str) -> list[bytes]:
    if not isinstance(values, list):
        raise ProofError(f"{what}: must be a list of hex hashes")
    try:
        out = [bytes.fromhex(v) for v in values]
    except (TypeError, ValueError):
        raise ProofError(f"{what}: every element must be 64 hex digits") from None
    if any(len(h) != 32 for h in out):
        raise ProofError(f"{what}: every element must be 64 hex digits")
    return out


def verify_bundle(bundle: dict[str, Any] | str | Path,
                  public_key: Ed25519PublicKey | bytes | str | Path, *, witness: WitnessKey | None = None) -> str:
    """Check an inclusion or consistency proof bundle; returns a one-line description.

    Parameters
    ----------
    bundle : dict, JSON text or Path
        What ``clinops audit prove`` printed.
    public_key : Ed25519PublicKey, PEM path, PEM/raw bytes or base64
        The log's signing key, obtained out of band.
    witness : WitnessKey, optional
        The witness's pinned name and key: every checkpoint in the bundle must carry its cosignature.

    Raises
    ------
    ProofError
        Naming the part that does not check out.
    """
    public = load_public_key(public_key)
    if isinstance(bundle, Path):
        bundle = bundle.read_text()
    if isinstance(bundle, str):
        try:
            bundle = json.loads(bundle)
        except ValueError as exc:
            raise ProofError(f"bundle: not valid JSON ({exc})") from None
    if not isinstance(bundle, dict):
        raise ProofError("bundle: must be a JSON object")
    kind = bundle.get("type")
    log_id = bundle.get("log_id")
    if not isinstance(log_id, str):
        raise ProofError("bundle.log_id: required")
    if kind == INCLUSION:
        cp = _checkpoint(bundle.get("checkpoint"), "bundle.checkpoint", _schedule(bundle, public, log_id), log_id,
                         witness)
        seq, size, record = bundle.get("seq"), bundle.get("tree_size"), bundle.get("record")
        if type(seq) is not int or type(size) is not int or not isinstance(record, str):
            raise ProofError("bundle: seq and tree_size must be integers, record a string")
        if size != cp.size:
            raise ProofError(f"bundle.tree_size {size} differs from the checkpoint's size {cp.size}")
        try:
            parsed = rf.parse_record(record.encode("ascii"))
        except (RecordFormatError, UnicodeEncodeError) as exc:
            raise ProofError(f"bundle.record: {exc}") from None
        if parsed["seq"] != seq:
            raise ProofError(f"bundle.record has seq {parsed['seq']}, the bundle claims {seq}")
        path = _hashes(bundle.get("proof"), "bundle.proof")
        try:
            root = root_from_inclusion_proof(seq, size, leaf_hash(record.encode("ascii")), path)
        except ValueError as exc:
            raise ProofError(f"bundle.proof: {exc}") from None
        if root.hex() != cp.root:
            raise ProofError("bundle.proof: the record and audit path do not lead to the checkpoint's root")
        witnessed = "" if witness is None else f", cosigned by witness {witness.name}"
        return (f"record {seq} ({parsed['kind']}, {parsed['ts']}) is included in log {log_id} at tree size "
                f"{size}, root {cp.root}, checkpoint signed {cp.ts} by key {key_id(public)}{witnessed}")
    if kind == CONSISTENCY:
        schedule = _schedule(bundle, public, log_id)
        old = _checkpoint(bundle.get("old"), "bundle.old", schedule, log_id, witness)
        new = _checkpoint(bundle.get("new"), "bundle.new", schedule, log_id, witness)
        path = _hashes(bundle.get("proof"), "bundle.proof")
        if old.size == 0:
            raise ProofError("bundle.old: a checkpoint of size 0 proves nothing about what the log held")
        if not verify_consistency(old.size, new.size, bytes.fromhex(old.root), bytes.fromhex(new.root), path):
            raise ProofError(f"bundle.proof: the log at size {new.size} does not extend the log at size {old.size}: "
                             "it was rewritten or rolled back (a fork)")
        return f"log {log_id} at size {new.size} (signed {new.ts}) extends size {old.size} (signed {old.ts})"
    raise ProofError(f"bundle.type: must be {INCLUSION!r} or {CONSISTENCY!r}, got {kind!r}")


def verify_receipt(receipt: dict[str, Any], public_key: Ed25519PublicKey | bytes | str | Path) -> str:
    """Check a signed receipt (:meth:`clinops.audit.AuditReceipt.to_dict`) offline; returns a description.

    A valid receipt is the log's signed promise that the record with ``record_hash`` is at
    ``seq``: a log that later lacks it there was truncated or forked.

    Raises
    ------
    ProofError
        Naming the field that does not check out.
    """
    public = load_public_key(public_key)
    if not isinstance(receipt, dict) or receipt.get("type") != "clinops-audit receipt":
        raise ProofError("receipt: must be a JSON object with type 'clinops-audit receipt'")
    ints = {name: receipt.get(name) for name in ("seq", "commit_first", "commit_size")}
    if any(type(v) is not int or v < 0 for v in ints.values()):
        raise ProofError("receipt: seq, commit_first and commit_size must be non-negative integers")
    seq, first, count = ints["seq"], ints["commit_first"], ints["commit_size"]
    if not first <= seq < first + count:
        raise ProofError(f"receipt.seq {seq} is outside its commit {first}..{first + count - 1}")
    if receipt.get("kid") != key_id(public):
        raise ProofError(f"receipt.kid {receipt.get('kid')!r} is not the given public key {key_id(public)}")
    leaf = _hashes([receipt.get("record_hash")], "receipt.record_hash")[0]
    path = _hashes(receipt.get("commit_path"), "receipt.commit_path")
    log_id, ts = receipt.get("log_id"), receipt.get("ts")
    if not isinstance(log_id, str) or not isinstance(ts, str):
        raise ProofError("receipt: log_id and ts must be strings")
    try:
        commit_root = root_from_inclusion_proof(seq - first, count, leaf, path)
        public.verify(rf.unb64(str(receipt.get("sig"))), rf.receipt_message(log_id, first, count, commit_root.hex(), ts))
    except (ValueError, InvalidSignature):
        raise ProofError("receipt.sig: the signature does not cover this record at this position (forged or "
                         "altered receipt)") from None
    return f"log {log_id} accepted record {seq} (leaf {leaf.hex()}) at {ts}, signed by key {key_id(public)}"
