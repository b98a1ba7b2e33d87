"""Reading records back: by position, by kind and fields, and one prediction event in full.

Readers see exactly the committed records (a snapshot taken under the shared lock). A
prediction is looked up through the prediction index (:mod:`clinops.audit.index`), which
names the records to read; each record read is checked against the Merkle tree the trail
built from the chain, so an index that lies (or a record altered since) is detected.
"""
from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from clinops.audit import records as rf
from clinops.audit.errors import AuditIntegrityError
from clinops.audit.keys import KeyUnavailable
from clinops.audit.merkle import leaf_hash
from clinops.audit.receipts import RecordView
from clinops.audit.index import RETENTION_KEY, RecordIndex, erasure_key, might_name, prediction_key, record_keys
from clinops.audit.records import RECORD_START

# One logger for the whole trail, whichever part of it logs (operators filter on its name).
_log = logging.getLogger("clinops.audit.log")


class Reader:
    """Part of :class:`clinops.audit.log.AuditTrail`: finding, reading and decrypting records."""

    @property
    def size(self) -> int:
        """Number of committed records."""
        with self._read_lock():
            self._catch_up(recover=False)
            return self._next_seq

    def _snapshot(self) -> list[tuple[int, int | None]]:
        """(segment, end offset or None for all) covering exactly the committed records."""
        return self._committed()[1]

    def _record_lines(self, snapshot: list[tuple[int, int | None]] | None = None) -> Iterator[tuple[int, bytes]]:
        for first, end in snapshot if snapshot is not None else self._snapshot():
            seq = first
            for line in self._store.read(first, 0, end).split(b"\n"):
                if line.startswith(RECORD_START):
                    yield seq, line
                    seq += 1

    @staticmethod
    def _view(line: bytes) -> RecordView:
        obj = rf.parse_record(line)
        return RecordView(seq=obj["seq"], record_id=obj["id"], timestamp=obj["ts"], kind=obj["kind"],
                          fields=obj["fields"], subject=obj["subject"], payload=obj["payload"],
                          record_hash=leaf_hash(line).hex())

    def find(self, kind: str | None = None, **equals: Any) -> list[RecordView]:
        """Records of ``kind`` (any if None) whose fields equal ``equals``, in log order.

        Example: ``trail.find("prediction", prediction_id="p-17")``. ``subject=`` matches the
        pseudonym column instead of a field.
        """
        subject = equals.pop("subject", None)
        needles = []
        if kind is not None:
            needles.append(b'"kind":' + rf.canonical_json(kind).encode())
        wanted = {}
        for name, value in equals.items():
            text = rf.canonical_json(rf._normalise(value, f"find.{name}", None))
            wanted[name] = text
            needles.append(rf.canonical_json(name).encode() + b":" + text.encode())
        if subject is not None:
            needles.append(b'"subject":' + rf.canonical_json(subject).encode())
        out = []
        for _, line in self._record_lines():
            if all(n in line for n in needles):  # cheap byte filter before parsing
                view = self._view(line)
                if ((kind is None or view.kind == kind) and (subject is None or view.subject == subject)
                        and all(name in view.fields and rf.canonical_json(view.fields[name]) == text
                                for name, text in wanted.items())):
                    out.append(view)
        return out

    def record(self, seq: int) -> RecordView:
        """The record at position ``seq``."""
        line = self._line(seq)
        return self._view(line)

    def _line(self, seq: int) -> bytes:
        snapshot = self._snapshot()
        if not 0 <= seq < self._next_seq:
            raise IndexError(f"seq {seq}: the log has records 0..{self._next_seq - 1}")
        firsts = [first for first, _ in snapshot if first <= seq]
        chosen = [item for item in snapshot if item[0] == firsts[-1]]
        for s, line in self._record_lines(chosen):
            if s == seq:
                return line
        raise AuditIntegrityError(f"record {seq} not found in its segment")

    def decrypt_payload(self, record: RecordView) -> dict[str, Any] | None:
        """The decrypted payload of ``record``, or None if its data key was shredded.

        Raises
        ------
        ValueError
            The record has no payload.
        PermissionError
            The keyring / pseudonym store is not available.
        AuditIntegrityError
            The ciphertext does not open under its key (altered).
        """
        if record.payload is None:
            raise ValueError(f"record {record.seq} has no payload")
        if self._pseudonyms is None:
            raise PermissionError("decryption needs the keyring and pseudonym store (root/private)")
        env = record.payload
        assert record.subject is not None
        try:
            key = self._pseudonyms.key_by_id(env["dk"], record.subject)
        except KeyUnavailable:
            raise AuditIntegrityError(f"the data key of record {record.seq} does not open for its pseudonym and day: "
                                      "its row in subjects.sqlite was altered or repointed") from None
        if key is None:
            return None
        try:
            plain = AESGCM(key).decrypt(rf.unb64(env["iv"]), rf.unb64(env["ct"]),
                                        rf.payload_aad(self.log_id, record.record_id, record.subject, env["dk"]))
        except (InvalidTag, ValueError):
            raise AuditIntegrityError(f"payload of record {record.seq} does not decrypt: ciphertext altered") from None
        return json.loads(plain)

    def show(self, prediction_id: str, *, decrypt: bool = True) -> dict[str, Any]:
        """Reconstruct one prediction event from the log.

        Returns
        -------
        dict
            ``prediction_id, seq, record_id, record_hash, timestamp, model_version,
            dataset_sha256, raw_score, probability, conformal_set, requester, purpose,
            subject_pseudonym, fields`` (everything logged), ``features`` (decrypted, or None),
            ``features_status`` (``decrypted``, ``withheld`` when ``decrypt`` is False,
            ``shredded`` after erasure or retention, ``none`` without payload), ``shredded_by``
            (the erasure / retention record responsible, if found) and ``related``: the other
            records (overrides, escalations, reviews) that name the same ``prediction_id``.

        Raises
        ------
        LookupError
            No prediction record, or more than one, has this ``prediction_id``.
        """
        views = self._indexed(prediction_key(prediction_id))
        preds = [v for v in views if v.kind == "prediction"]
        if not preds:
            raise LookupError(f"no prediction record with prediction_id {prediction_id!r}")
        if len(preds) > 1:
            raise LookupError(f"prediction_id {prediction_id!r} is ambiguous: prediction records "
                              f"{[v.seq for v in preds]}")
        rec = preds[0]
        features, status, shredded_by = None, "none", None
        if rec.payload is not None:
            if not decrypt:
                status = "withheld"
            else:
                features = self.decrypt_payload(rec)
                status = "decrypted" if features is not None else "shredded"
        if status == "shredded":
            shredded_by = self._shredder(rec)
        fields = dict(rec.fields)
        return {
            "prediction_id": prediction_id, "seq": rec.seq, "record_id": rec.record_id,
            "record_hash": rec.record_hash, "timestamp": rec.timestamp,
            **{name: fields.get(name) for name in rf.PREDICTION_FIELDS if name != "prediction_id"},
            "subject_pseudonym": rec.subject, "fields": fields,
            "features": features, "features_status": status, "shredded_by": shredded_by,
            "related": [{"seq": v.seq, "kind": v.kind, "timestamp": v.timestamp, "fields": v.fields}
                        for v in views if v.seq != rec.seq],
        }

    def _shredder(self, rec: RecordView) -> dict[str, Any] | None:
        for view in self._indexed(erasure_key(rec.subject)):
            return {"kind": "erasure", "seq": view.seq, "timestamp": view.timestamp}
        for view in self._indexed(RETENTION_KEY):
            if view.seq > rec.seq and str(view.fields.get("cutoff", ""))[:10] > rec.timestamp[:10]:
                return {"kind": "retention", "seq": view.seq, "timestamp": view.timestamp}
        return None

    # -- the record index ---------------------------------------------------------------------
    def _index_path(self) -> Path | None:
        """Where the record index lives; None (in memory) for a trail opened read-only."""
        return None if self._read_only else self.root / "index" / "records.sqlite"

    def _record_index(self) -> RecordIndex:
        with self._mutex:
            if self._index is None:
                try:
                    self._index = RecordIndex(self._index_path(), log_id=self.log_id)
                except sqlite3.DatabaseError as exc:  # not a database any more: it is only a cache
                    self._discard_index(exc)
                    self._index = RecordIndex(self._index_path(), log_id=self.log_id)
            return self._index

    def _discard_index(self, why: Exception) -> None:
        """Delete an unreadable index file (the next use builds a new one from the log)."""
        path = self._index_path()
        assert path is not None  # an in-memory index is never unreadable
        _log.warning("audit trail %s: the record index is unreadable (%s); rebuilding it", self.root, why)
        if self._index is not None:
            self._index.close()
            self._index = None
        for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            stale.unlink(missing_ok=True)

    def _check_index(self) -> None:
        """On open: an index left by an earlier run must end on a record of this chain, else it is
        emptied (and rebuilt by the next lookup); an unreadable one is deleted."""
        path = self._index_path()
        if path is None or not path.exists():
            return
        try:
            index = self._record_index()
            with index.updating():
                size, _, _ = index.tail()
                if size and (size > len(self._tree) or self._tree.leaf(size - 1).hex() != index.last_hash()):
                    _log.warning("audit trail %s: the record index does not match the log (it ends at record %d); "
                                 "rebuilding it", self.root, size - 1)
                    index.clear()
        except sqlite3.DatabaseError as exc:
            with self._mutex:
                self._discard_index(exc)

    def _committed(self) -> tuple[int, list[tuple[int, int | None]]]:
        """The number of committed records and the (segment, end offset or None) list covering them,
        read together under the shared lock."""
        with self._read_lock():
            self._catch_up(recover=False)
            return self._next_seq, [(first, self._offset if first == self._seg else None)
                                    for first in self._store.segments()
                                    if first < self._next_seq or first == self._seg]

    def _index_all(self) -> RecordIndex:
        """The record index, extended to every committed record (emptied first if it does not match the log)."""
        index = self._record_index()
        for _ in range(3):
            size, snapshot = self._committed()
            with index.updating():
                done, segment, offset = index.tail()
                if done > size:
                    continue  # another process indexed records committed since our snapshot: look again
                if done and self._tree.leaf(done - 1).hex() != index.last_hash():
                    index.clear()
                    done, segment, offset = 0, None, 0
                if done < size and not self._extend_index(index, snapshot, size, done, segment, offset):
                    index.clear()  # its position does not start the next record: rebuild from the start
                    self._extend_index(index, snapshot, size, 0, None, 0)
            return index
        with index.updating():
            index.clear()  # the index is ahead of the log (a log cut shorter): start again
        return self._index_all()

    def _extend_index(self, index: RecordIndex, snapshot: list[tuple[int, int | None]], size: int, seq: int,
                      segment: int | None, offset: int) -> bool:
        """Index records ``seq .. size - 1``, the first at ``offset`` of ``segment``; False if it is not there."""
        entries: list[tuple[str, int, int, int, int]] = []
        expected = rf.record_prefix(seq, self._tree.leaf(seq - 1).hex() if seq else self._genesis_hex)
        last_segment, stop = segment, offset
        for first, end in snapshot:
            if segment is not None and first < segment:
                continue
            start = offset if first == segment else 0
            data = self._store.read(first, start, end)
            pos = 0
            while seq < size:
                nl = data.find(b"\n", pos)
                if nl < 0:
                    break
                line = data[pos:nl]
                if line.startswith(RECORD_START):
                    if expected is not None:
                        if not line.startswith(expected):
                            return False
                        expected = None
                    if might_name(line):  # cheap byte filter before parsing
                        obj = json.loads(line)
                        entries.extend((key, seq, first, start + pos, nl - pos)
                                       for key in record_keys(obj["kind"], obj["fields"]))
                    seq += 1
                pos = nl + 1
            last_segment, stop = first, start + pos
        if seq != size:
            raise AuditIntegrityError(f"the log files hold {seq} committed records, the chain read {size}: "
                                      "records were removed (run `clinops audit verify`)")
        index.extend(entries, size=size, segment=last_segment, offset=stop, last_hash=self._tree.leaf(size - 1).hex())
        return True

    def _indexed(self, key: str) -> list[RecordView]:
        """The records under ``key`` in the record index, each read back and checked against the chain."""
        for attempt in range(2):
            try:
                entries = self._index_all().lookup(key)
            except sqlite3.DatabaseError as exc:  # the file is not an index any more (it is only a cache)
                if attempt or self._index_path() is None:
                    raise
                with self._mutex:
                    self._discard_index(exc)
                continue
            views = []
            for seq, segment, start, length in entries:
                line = self._store.read(segment, start, start + length)
                with self._mutex:
                    authentic = seq < len(self._tree) and leaf_hash(line) == self._tree.leaf(seq)
                if not authentic:
                    break
                views.append(self._view(line))
            else:
                return views
            if attempt:
                raise AuditIntegrityError(f"record {seq} in the log files no longer hashes to the chain this trail "
                                          "read: altered after it was written (run `clinops audit verify`)")
            _log.warning("audit trail %s: the record index points record %d at bytes that are not that record; "
                         "rebuilding it from the log", self.root, seq)
            index = self._record_index()
            with index.updating():
                index.clear()
        raise AssertionError("unreachable")
