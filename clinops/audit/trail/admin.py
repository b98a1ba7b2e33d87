"""The trail's own records: erasure of a subject, retention, and key rotations.

Each operation changes the key stores first and logs itself second (a record of a reserved
kind, written only by the trail): a failure in between leaves an operation done but not
logged (and says so), never one logged but not done.
"""
from __future__ import annotations

import os
import sqlite3
from datetime import timedelta, timezone


from clinops.audit import records as rf
from clinops.audit.errors import AuditWriteError
from clinops.audit.keys import Ed25519Signer, Signer, public_key_raw
from clinops.audit.receipts import AuditReceipt, RetentionReport
from clinops.audit.storage import fsync_dir


class Administration:
    """Part of :class:`clinops.audit.log.AuditTrail`: pseudonyms, erasure, retention, KEK and signing-key rotation."""

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
