"""Writing: a batch of records becomes one durable, sealed commit.

How an append becomes durable (the "commit"): under an exclusive ``flock`` on ``root/lock`` the
writer first reads whatever other processes appended since its last look (so two processes
never fork the chain), then writes its records and one *seal* line (an Ed25519 signature over
the new chain head and a UTC timestamp) with a single ``write``, then ``fdatasync``s, then
releases the lock and returns. A record is acknowledged only once its seal is on disk. Threads
of one process that append at the same time are gathered into one commit (leader/follower
group commit), as are the records of one ``append_many`` call. Every record gets a signed
receipt (one signature per commit).
"""
from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from clinops.audit import records as rf
from clinops.audit.errors import AuditIntegrityError, AuditWriteError
from clinops.audit.keys import Signer
from clinops.audit.merkle import MerkleTree, leaf_hash
from clinops.audit.receipts import AuditReceipt

_CACHE_LIMIT = 50_000


@dataclass
class _Request:
    kind: str
    fields_json: str
    subject: str | None
    payload: bytes | None
    receipt: AuditReceipt | None = None
    error: BaseException | None = None
    done: bool = False

class Committer:
    """Part of :class:`clinops.audit.log.AuditTrail`: appending records (group commit, pseudonyms and
    data keys, payload encryption, the seal, receipts, roll-back of a failed write).
    """

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

    def _admin_commit(self, kind: str, fields: dict[str, Any]) -> AuditReceipt:
        return self._commit_locked([self._request(kind, fields, None, None, internal=True)])[0]
