"""Verify an audit trail directory with nothing but its public key.

:func:`verify_log` recomputes everything the log claims, in log order, and reports the first
record whose evidence fails:

1. the header (``audit.json``) parses, names the pinned key, and matches ``signing.pub``;
2. segments are contiguous (each starts where the previous one ended);
3. every record line is in the exact layout the writer produces, has the next ``seq``, and its
   ``prev`` is the leaf hash of the record before it (record 0: the genesis hash of the header);
4. every commit ends with a seal whose head is the hash of its last record and whose Ed25519
   signature, by the pinned key, is valid; no record is left unsealed;
5. every closed segment has its closing checkpoint at the right size;
6. every stored checkpoint (and the caller's ``trusted`` one, kept outside the log) is signed
   by the pinned key and equals the RFC 6962 root recomputed from the records;
7. a checkpoint is stored at the end of every commit that crossed a multiple of
   ``checkpoint_every`` (the writer always signs one there);
8. with a witness key: the trusted checkpoint and every cosignature in the log verify under it,
   and at least one checkpoint is cosigned;
9. every ``recovery`` record's quarantined bytes are present with the SHA-256 it logged.

The segment list and the checkpoint list are taken under one shared lock, so a live log being
appended to is verified as one consistent state (no false "truncated" alarm).

Large logs (or many seals) are cut into chunks at seal boundaries and verified by ``workers``
processes (records, links inside the chunk, seals and their signatures); the parent then checks
the link across every chunk boundary and builds the Merkle tree from the leaf hashes returned.
"""
from __future__ import annotations

import bisect
import fcntl
import hashlib
from binascii import hexlify
from hashlib import sha256
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from clinops.audit import records as rf
from clinops.audit.keys import KeySchedule, key_id, load_public_key, public_key_pem, public_key_raw
from clinops.audit.merkle import MerkleTree
from clinops.audit.records import Checkpoint, RecordFormatError
from clinops.audit.storage import LocalSegmentStore
from clinops.audit.witness import WitnessKey

__all__ = ["VerifyReport", "verify_log"]

_RECORD_START = b'{"seq":'
_RECOVERY_KIND = b'"kind":"recovery"'
_TRANSITION_KIND = b'"kind":"signing_key_rotation"'
_KIND_WITHIN = 200  # "kind" ends before this byte of a record line (seq, prev and ts come first, fixed width)
_SEAL_START = b'{"seal":'
# Rough single-core costs, used only to decide whether forking workers pays off (it costs tens of ms).
_SECONDS_PER_BYTE = 15e-9      # hashing, layout check and links: about 15 us per 1 KB record
_SECONDS_PER_SEAL = 110e-6     # one Ed25519 verification
_PARALLEL_FROM_SECONDS = 0.2
_MIN_CHUNK_BYTES = 1 << 20     # smallest piece handed to a worker


@dataclass(frozen=True)
class VerifyReport:
    """Outcome of a verification.

    Attributes
    ----------
    ok : bool
        True only if every record, link, seal, tree root and checkpoint checked out.
    n_records : int
        Records verified in the requested range.
    first_bad_seq : int or None
        The first record whose evidence failed (None when ``ok``, or when the problem is not
        one record's: the header or a checkpoint).
    problem : str or None
        What is wrong, in words.
    log_size : int
        Records read from the log (the whole prefix up to the range end).
    n_seals : int
        Seal signatures verified.
    n_checkpoints : int
        Checkpoints verified (stored, segment-closing and trusted).
    key_id : str or None
        Key id of the public key used.
    key_pinned : bool
        Always True: verification needs a key obtained from outside the log.
    n_witnessed : int
        Checkpoints whose witness cosignature was verified.
    witness : str or None
        Name of the witness whose cosignature was required.
    """

    ok: bool
    n_records: int
    first_bad_seq: int | None
    problem: str | None
    log_size: int = 0
    n_seals: int = 0
    n_checkpoints: int = 0
    key_id: str | None = None
    key_pinned: bool = False
    n_witnessed: int = 0
    witness: str | None = None

    def summary(self) -> str:
        """One line for humans."""
        if self.ok:
            witnessed = "" if self.witness is None else f", {self.n_witnessed} cosigned by witness {self.witness}"
            return (f"OK: {self.n_records} records, {self.n_seals} seals, {self.n_checkpoints} checkpoints{witnessed} "
                    f"verified with pinned key {self.key_id}")
        where = "" if self.first_bad_seq is None else f"record {self.first_bad_seq}: "
        return f"FAILED: {where}{self.problem}"


class _Problem(Exception):
    def __init__(self, seq: int | None, text: str) -> None:
        super().__init__(text)
        self.seq = seq
        self.text = text


# -- one chunk: runs in a worker process or in-process ----------------------------------------
@dataclass(frozen=True)
class _Chunk:
    segment: int        # first seq of the segment
    path: str
    name: str
    start: int          # byte range [start, end) of the segment, starting at a line
    end: int
    seq0: int           # seq of the chunk's first record
    last_of_segment: bool
    log_id: str
    keys: tuple[tuple[int, bytes, str], ...]   # (first seq, raw Ed25519 key, key id): the key schedule
    range_start: int
    range_end: int | None


@dataclass
class _ChunkResult:
    seq0: int
    n_records: int = 0
    n_checked: int = 0
    n_seals: int = 0
    first_prev: str | None = None
    first_commit_authentic: bool = False
    leaves: bytes = b""
    last_hash: str | None = None
    problem: tuple[int | None, str] | None = None
    commit_ends: list[int] = field(default_factory=list)      # seq + 1 of every sealed commit's last record
    recoveries: list[tuple[int, str, str]] = field(default_factory=list)  # (seq, quarantine name, sha256)


def _verify_chunk(chunk: _Chunk) -> _ChunkResult:
    """Check the records and seals of one chunk; the link into its first record is left to the caller."""
    with open(chunk.path, "rb") as fh:
        fh.seek(chunk.start)
        data = fh.read(chunk.end - chunk.start)
    public = _Keys(chunk.keys)
    res = _ChunkResult(seq0=chunk.seq0)
    leaves = bytearray()
    seq, prev_hex = chunk.seq0, None       # prev_hex: hex text of the last leaf hash, as bytes
    commit_first: int | None = None
    lo, hi = chunk.range_start, chunk.range_end
    name = chunk.name
    pos = 0
    try:
        while pos < len(data):
            nl = data.find(b"\n", pos)
            if nl < 0:
                raise _Problem(seq, f"{name} ends in the middle of a line at byte {chunk.start + pos}: torn write "
                                    "(opening the trail for writing recovers it)")
            line = data[pos:nl]
            if line.startswith(_RECORD_START):
                if prev_hex is None:
                    res.first_prev = _first_prev(line, seq, name)
                elif not line.startswith(b'{"seq":%d,"prev":"%s",' % (seq, prev_hex)):
                    _bad_link(line, seq, data, pos, name, chunk, public)
                if seq >= lo and (hi is None or seq < hi):
                    why = rf.check_record_layout(line)
                    if why is not None:
                        raise _Problem(seq, f"record {seq} is malformed: {why}")
                    res.n_checked += 1
                if line.find(_RECOVERY_KIND, 0, _KIND_WITHIN) >= 0:
                    try:
                        obj = rf.parse_record(line)
                    except RecordFormatError as exc:
                        raise _Problem(seq, f"record {seq} is malformed: {exc}") from None
                    if obj["kind"] == "recovery":
                        res.recoveries.append((seq, str(obj["fields"].get("quarantine")),
                                               str(obj["fields"].get("sha256"))))
                h = sha256(b"\x00" + line).digest()
                leaves += h
                prev_hex = hexlify(h)
                if commit_first is None:
                    commit_first = seq
                seq += 1
            elif line.startswith(_SEAL_START):
                if commit_first is None:
                    raise _Problem(seq, f"{name} byte {chunk.start + pos}: a seal with no record before it "
                                        "(duplicated or inserted seal)")
                assert prev_hex is not None
                _check_seal(line, commit_first, seq, prev_hex.decode(), chunk, public, verify_sig=seq - 1 >= lo)
                if commit_first == chunk.seq0:
                    res.first_commit_authentic = True
                res.n_seals += seq - 1 >= lo
                res.commit_ends.append(seq)
                commit_first = None
                if hi is not None and seq >= hi:
                    break
            else:
                # Inside a commit this is most likely its damaged seal: blame the commit it should seal.
                raise _Problem(seq if commit_first is None else commit_first,
                               f"{name} byte {chunk.start + pos}: a line that is neither a record nor a seal "
                               "(inserted or damaged)")
            pos = nl + 1
        if commit_first is not None:
            raise _Problem(commit_first, f"records {commit_first}..{seq - 1} at the end of {name} are not sealed: "
                                         "a torn or unacknowledged write (opening the trail for writing recovers "
                                         "it), or records appended without the key")
    except _Problem as p:
        res.problem = (p.seq, p.text)
    res.n_records = seq - chunk.seq0
    res.leaves = bytes(leaves)
    res.last_hash = None if prev_hex is None else prev_hex.decode()
    return res


class _Keys:
    """The key schedule inside a worker: which key seals a commit starting at a given record."""

    def __init__(self, keys: tuple[tuple[int, bytes, str], ...]) -> None:
        self.starts = [start for start, _, _ in keys]
        self.keys = [(Ed25519PublicKey.from_public_bytes(raw), kid) for _, raw, kid in keys]

    def at(self, seq: int) -> tuple[Ed25519PublicKey, str]:
        return self.keys[bisect.bisect_right(self.starts, seq) - 1]


def _first_prev(line: bytes, seq: int, name: str) -> str:
    """The prev of a chunk's first record (checked by the caller), after checking its seq."""
    prefix = b'{"seq":%d,"prev":"' % seq
    if line.startswith(prefix) and line[len(prefix) + 64:len(prefix) + 66] == b'",':
        return line[len(prefix):len(prefix) + 64].decode("ascii", "replace")
    try:
        obj = rf.parse_record(line)
    except RecordFormatError as exc:
        raise _Problem(seq, f"record {seq} is malformed: {exc}") from None
    raise _Problem(seq, f"expected record {seq} at the start of {name}'s data, found record {obj['seq']}: "
                        "records were deleted, inserted, duplicated or reordered")


def _check_seal(line: bytes, commit_first: int, seq: int, prev_hex: str, chunk: _Chunk, keys: _Keys,
                *, verify_sig: bool) -> None:
    public, kid = keys.at(commit_first)
    try:
        seal = rf.parse_seal(line)
    except RecordFormatError as exc:
        raise _Problem(commit_first, f"the seal over records {commit_first}..{seq - 1} is malformed: {exc}") from None
    if seal.seq > seq - 1:
        raise _Problem(seq, f"records {seq}..{seal.seq} are missing: the seal after record {seq - 1} covers up to "
                            f"record {seal.seq} (records deleted or moved)")
    if seal.seq < seq - 1:
        first_extra = max(seal.seq + 1, commit_first)
        raise _Problem(first_extra, f"records {first_extra}..{seq - 1} are not covered by the seal that follows "
                                    f"them, which ends at record {seal.seq} (records inserted or moved)")
    if seal.head != prev_hex:
        try:
            public.verify(seal.sig, seal.message(chunk.log_id))
        except InvalidSignature:
            raise _Problem(commit_first, f"the seal over records {commit_first}..{seq - 1} was altered: its head "
                                         "and signature do not match") from None
        if commit_first == seq - 1:
            raise _Problem(seq - 1, f"record {seq - 1} no longer hashes to the head its seal signed: it was altered "
                                    "after it was written")
        # The links inside the commit hold, so whoever altered a record may have re-chained every
        # later one up to the seal: the first altered record can be any of the commit's.
        raise _Problem(commit_first, f"records {commit_first}..{seq - 1} no longer hash to the head their seal "
                                     f"signed: at least one of them was altered after it was written (and the "
                                     "records after it re-chained, or it is the last one)")
    if seal.kid != kid:
        raise _Problem(commit_first, f"records {commit_first}..{seq - 1} are sealed by key {seal.kid}, not by the "
                                     f"log's key {kid}: re-signed with another key")
    if verify_sig:
        try:
            public.verify(seal.sig, seal.message(chunk.log_id))
        except InvalidSignature:
            raise _Problem(commit_first, f"the seal over records {commit_first}..{seq - 1} has an invalid Ed25519 "
                                         "signature: the seal was replaced or forged, or these records were "
                                         "altered and re-chained") from None


def _bad_link(line: bytes, seq: int, data: bytes, pos: int, name: str, chunk: _Chunk, public: _Keys) -> None:
    """Name the culprit when a record's seq or prev is not what the chain expects."""
    try:
        obj = rf.parse_record(line)
    except RecordFormatError as exc:
        raise _Problem(seq, f"record {seq} is malformed: {exc}") from None
    if obj["seq"] != seq:
        raise _Problem(seq, f"expected record {seq} here in {name}, found record {obj['seq']}: records were "
                            "deleted, inserted, duplicated or reordered")
    if _authentic_from(data, pos, seq, chunk, public):
        raise _Problem(seq - 1, f"record {seq - 1} was altered: its hash no longer matches the prev that record "
                                f"{seq} (intact under its seal) recorded")
    raise _Problem(seq, f"record {seq} was altered: its prev does not link to record {seq - 1} and its commit "
                        "does not match its seal")


def _authentic_from(data: bytes, pos: int, seq: int, chunk: _Chunk, keys: _Keys) -> bool:
    """True when the records from ``pos`` to the next seal are exactly what that seal signed."""
    prev_hex: str | None = None
    while True:
        nl = data.find(b"\n", pos)
        if nl < 0:
            return False
        line = data[pos:nl]
        if line.startswith(_RECORD_START):
            if prev_hex is not None:
                try:
                    if rf.parse_record(line)["prev"] != prev_hex:
                        return False
                except RecordFormatError:
                    return False
            prev_hex = hashlib.sha256(b"\x00" + line).hexdigest()
        elif line.startswith(_SEAL_START):
            public, kid = keys.at(seq)
            try:
                seal = rf.parse_seal(line)
                public.verify(seal.sig, seal.message(chunk.log_id))
            except (RecordFormatError, InvalidSignature):
                return False
            return seal.head == prev_hex and seal.kid == kid
        else:
            return False
        pos = nl + 1


# -- the whole log ---------------------------------------------------------------------------
class _Verifier:
    def __init__(self, root: Path, public: Ed25519PublicKey, start: int, end: int | None,
                 trusted: Checkpoint | None, workers: int, parallel: bool | None,
                 witness: WitnessKey | None = None, archive: Any = None) -> None:
        self.root = root
        self.archive = archive
        self.store = LocalSegmentStore(root)
        self.pinned = public
        self.witness = witness
        self.n_witnessed = 0
        self.commit_ends: list[int] = []
        self.recoveries: list[tuple[int, str, str]] = []
        self.start = start
        self.end = end
        self.trusted = trusted
        self.workers = max(1, workers)
        self.parallel = parallel
        self.tree = MerkleTree()
        self.n_seals = 0
        self.n_checkpoints = 0
        self.n_checked = 0

    def run(self) -> VerifyReport:
        witness = None if self.witness is None else self.witness.name
        try:
            self._header()
        except _Problem as p:
            return VerifyReport(False, 0, p.seq, p.text, key_pinned=True, witness=witness)
        problem = None
        try:
            segments, checkpoints = self._snapshot()
            self._records(segments)
            self._checkpoints(checkpoints)
            self._quarantine()
            if self.archive is not None:
                self._archived()
        except _Problem as p:
            problem = p
        return VerifyReport(problem is None, self.n_checked, None if problem is None else problem.seq,
                            None if problem is None else problem.text, len(self.tree), self.n_seals,
                            self.n_checkpoints, self.kid, True, self.n_witnessed, witness)

    def _header(self) -> None:
        try:
            self.header = (self.root / "audit.json").read_bytes()
        except FileNotFoundError:
            raise _Problem(None, f"{self.root}: no audit.json: not an audit trail (or its header was deleted)") from None
        try:
            doc = rf.parse_header(self.header)
            header_key = load_public_key(rf.unb64(doc["signing_public_key"]))
        except (RecordFormatError, ValueError) as exc:
            raise _Problem(None, f"audit.json: {exc}") from None
        self.log_id = doc["log_id"]
        self.checkpoint_every = doc["checkpoint_every"]
        if key_id(header_key) != doc["signing_key_id"]:
            raise _Problem(None, "audit.json: signing_key_id does not match signing_public_key")
        if public_key_raw(self.pinned) != public_key_raw(header_key):
            raise _Problem(None, f"audit.json names signing key {key_id(header_key)}, but the pinned key is "
                                 f"{key_id(self.pinned)}: the log was re-keyed (re-signed), or it is another log")
        self.public = self.pinned
        self.kid = key_id(self.public)
        self.schedule = KeySchedule(self.public)
        pub_file = self.root / "signing.pub"
        if pub_file.exists() and pub_file.read_bytes() != public_key_pem(self.public):
            raise _Problem(None, f"signing.pub is not the PEM of the log's key {self.kid} (altered or replaced)")
        self.genesis = rf.genesis_hash(self.header)

    def _snapshot(self) -> tuple[list[tuple[int, int, bool]], list[int]]:
        """Segments (first, size, closed) and stored checkpoint sizes, all taken under one shared lock.

        Writers append and checkpoint under the exclusive lock, so this is one consistent state
        of a live log: no commit half-seen, no checkpoint newer than the records listed.
        """
        lock = self.root / "lock"
        fd = os.open(lock, os.O_RDONLY) if lock.exists() else None
        try:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_SH)
            segs = self.store.segments() if self.store.log_dir.exists() else []
            checkpoints = self.store.checkpoints() if self.store.checkpoint_dir.exists() else []
            return [(f, self.store.size(f), self.store.is_sealed(f)) for f in segs], checkpoints
        finally:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    def _plan(self, snapshot: list[tuple[int, int, bool]], parallel: bool) -> list[_Chunk]:
        """Cut segments into chunks that start right after a seal line."""
        total = sum(size for _, size, _ in snapshot)
        target = max(_MIN_CHUNK_BYTES, total // (self.workers * 2) + 1) if parallel else None
        chunks = []
        for first, size, _closed in snapshot:
            if self.end is not None and first >= self.end:
                break
            path, name = str(self.store.path(first)), f"log/seg-{first:020d}.jsonl"
            cuts = [0]
            if target is not None and size > target:
                data = self.store.read(first, 0, size)
                at = target
                while at < size:
                    i = data.find(b"\n" + _SEAL_START, at)
                    j = -1 if i < 0 else data.find(b"\n", i + 1)
                    if j < 0 or j + 1 >= size:
                        break
                    cuts.append(j + 1)
                    at = j + 1 + target
                seqs = [first]
                for a, b in zip(cuts, cuts[1:]):
                    seqs.append(seqs[-1] + data.count(b"\n" + _RECORD_START, a - 1 if a else 0, b - 1)
                                + (1 if a == 0 and data.startswith(_RECORD_START) else 0))
            else:
                seqs = [first]
            bounds = cuts + [size]
            for k, seq0 in enumerate(seqs):
                chunks.append(_Chunk(first, path, name, bounds[k], bounds[k + 1], seq0, k == len(seqs) - 1, self.log_id,
                                     self.schedule.chunk_keys(), self.start, self.end))
        return chunks

    def _records(self, snapshot: list[tuple[int, int, bool]]) -> None:
        # Worker processes are forked, which is safe only while this process runs no other
        # thread; "spawn" would re-run the caller's __main__ (a server script) in every worker.
        # So with other threads alive (e.g. inside the server) verification stays in-process.
        parallel = (self.workers > 1 and threading.active_count() == 1
                    and "fork" in multiprocessing.get_all_start_methods()
                    and (self.parallel if self.parallel is not None else self._worth_forking(snapshot)))
        self._key_transitions(snapshot)
        chunks = self._plan(snapshot, parallel)
        closed = {first: c for first, _, c in snapshot}
        firsts = [first for first, _, _ in snapshot]
        if parallel:
            with ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("fork")) as pool:
                self._assemble(chunks, pool.map(_verify_chunk, chunks), closed, firsts)
        else:
            self._assemble(chunks, map(_verify_chunk, chunks), closed, firsts)

    def _key_transitions(self, snapshot: list[tuple[int, int, bool]]) -> None:
        """Follow the signed signing-key transitions, so each commit is checked with the key of its time.

        Found by a byte search before the records are verified; each transition must be signed by
        the key it replaces, and its own commit's seal (by that key) is checked with the rest.
        """
        for first, size, _ in snapshot:
            if self.end is not None and first >= self.end:
                break
            data = self.store.read(first, 0, size)
            at = data.find(_TRANSITION_KIND)
            while at >= 0:
                start = data.rfind(b"\n", 0, at) + 1
                stop = data.find(b"\n", at)
                try:
                    obj = rf.parse_record(data[start:stop if stop >= 0 else len(data)])
                except RecordFormatError:
                    at = data.find(_TRANSITION_KIND, at + 1)
                    continue  # the record check names it
                if obj["kind"] == "signing_key_rotation":
                    try:
                        self.schedule.add(self.log_id, obj["seq"], obj["fields"])
                    except ValueError as exc:
                        raise _Problem(obj["seq"], str(exc)) from None
                at = data.find(_TRANSITION_KIND, at + 1)

    def _worth_forking(self, snapshot: list[tuple[int, int, bool]]) -> bool:
        total = sum(size for _, size, _ in snapshot)
        if total * _SECONDS_PER_BYTE >= _PARALLEL_FROM_SECONDS:
            return True
        if total < 64 << 10:
            return False
        seals = sum(self.store.read(first, 0, size).count(b"\n" + _SEAL_START) for first, size, _ in snapshot)
        return total * _SECONDS_PER_BYTE + seals * _SECONDS_PER_SEAL >= _PARALLEL_FROM_SECONDS

    def _assemble(self, chunks: list[_Chunk], results, closed: dict[int, bool], firsts: list[int]) -> None:
        seq, prev_hex = 0, self.genesis.hex()
        for chunk, res in zip(chunks, results, strict=True):
            first = chunk.segment
            if chunk.start == 0 and first != seq:
                raise _Problem(seq, f"{chunk.name} starts at record {first}, but the previous segments end before "
                                    f"record {seq}: records are missing or duplicated between segments")
            if chunk.seq0 != seq:
                raise _Problem(seq, f"{chunk.name}: expected record {seq} at byte {chunk.start}, found {chunk.seq0}")
            if res.first_prev is not None and res.first_prev != prev_hex:
                if res.first_commit_authentic:
                    if seq == 0:
                        raise _Problem(None, "audit.json was altered: record 0 (intact under its seal) was chained "
                                             "to a different header")
                    raise _Problem(seq - 1, f"record {seq - 1} was altered: its hash no longer matches the prev that "
                                            f"record {seq} (intact under its seal) recorded")
                raise _Problem(seq, f"record {seq} was altered: its prev does not link to the record before it and "
                                    "its commit does not match its seal")
            self.tree.extend_hashes(res.leaves)
            self.n_checked += res.n_checked
            self.n_seals += res.n_seals
            self.commit_ends += res.commit_ends
            self.recoveries += res.recoveries
            if res.problem is not None:
                raise _Problem(*res.problem)
            seq += res.n_records
            if res.last_hash is not None:
                prev_hex = res.last_hash
            if self.end is not None and seq >= self.end:
                return
            if chunk.last_of_segment:
                if closed[first]:
                    self._segment_checkpoint(first, seq)
                elif first != firsts[-1]:
                    raise _Problem(seq, f"{chunk.name} is not closed (no checkpoint beside it) but another segment "
                                        "follows")

    # -- checkpoints ------------------------------------------------------------------------
    def _check_checkpoint(self, cp: Checkpoint, what: str) -> None:
        if cp.log_id != self.log_id:
            raise _Problem(None, f"{what} belongs to log {cp.log_id}, not {self.log_id}")
        public, kid = self.schedule.at(cp.size)
        if not cp.verify(public):
            raise _Problem(None, f"{what} is not validly signed by the log's key {kid} at that size (replaced, "
                                 "forged or signed by another key)")
        if self.witness is not None and any(c.name == self.witness.name for c in cp.cosignatures):
            if self.witness.cosignature(cp) is None:
                raise _Problem(None, f"{what} carries a cosignature by witness {self.witness.name} that does not "
                                     "verify under the pinned witness key (forged)")
            self.n_witnessed += 1
        if cp.size > len(self.tree):
            raise _Problem(None, f"{what} covers {cp.size} records but the log has only {len(self.tree)}: "
                                 "the log was truncated or rolled back")
        if self.tree.root(cp.size).hex() != cp.root:
            raise _Problem(None, f"{what} (size {cp.size}) does not match the root recomputed from the records: "
                                 "the log was rewritten (forked) after that checkpoint was signed")
        self.n_checkpoints += 1

    def _segment_checkpoint(self, first: int, seq: int) -> None:
        what = f"log/seg-{first:020d}.checkpoint"
        last = seq - 1 if seq else None
        try:
            cp = Checkpoint.from_bytes(self.store.segment_checkpoint(first) or b"")
        except RecordFormatError as exc:
            raise _Problem(last, f"{what}: {exc}") from None
        if cp.size != seq:
            raise _Problem(last, f"{what} covers {cp.size} records, but the segment ends at record {last}: records "
                                 "were added to or removed from a closed segment")
        self._check_checkpoint(cp, what)

    def _checkpoints(self, sizes: list[int]) -> None:
        limit = len(self.tree)
        for size in sizes:
            what = f"checkpoints/{size:020d}.checkpoint"
            try:
                cp = Checkpoint.from_bytes(self.store.get_checkpoint(size))
            except RecordFormatError as exc:
                raise _Problem(None, f"{what}: {exc}") from None
            except FileNotFoundError:
                raise _Problem(None, f"{what} was deleted while the log was being verified") from None
            if cp.size != size:
                raise _Problem(None, f"{what} holds a checkpoint for size {cp.size} (renamed or replaced)")
            if self.end is not None and size > limit:
                continue  # beyond the verified range
            self._check_checkpoint(cp, what)
        self._required_checkpoints(set(sizes))
        if self.trusted is not None:
            if self.witness is not None and self.witness.cosignature(self.trusted) is None:
                raise _Problem(None, f"the trusted checkpoint (size {self.trusted.size}) has no valid cosignature by "
                                     f"witness {self.witness.name}")
            if not (self.end is not None and self.trusted.size > limit):
                self._check_checkpoint(self.trusted, "the witness's (trusted) checkpoint")
        if self.witness is not None and self.n_witnessed == 0:
            raise _Problem(None, f"no checkpoint cosigned by witness {self.witness.name}: nothing ties this log to "
                                 "what the witness saw (truncation and forks would go unnoticed)")

    def _required_checkpoints(self, sizes: set[int]) -> None:
        """The writer checkpoints at the end of every commit that crosses a multiple of checkpoint_every."""
        every = self.checkpoint_every
        prev = 0
        for end in self.commit_ends:
            if end // every > prev // every and end not in sizes and (self.end is None or end <= self.end):
                raise _Problem(end - 1, f"checkpoints/{end:020d}.checkpoint is missing: the commit ending at record "
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
                    raise _Problem(first, f"{name} is locked in the archive but missing here: the log was truncated "
                                          "or rolled back")
                if local.read_bytes() != self.archive.get(self.log_id, name):
                    raise _Problem(first, f"{name} differs from its locked copy in the archive: rewritten")
        except OSError as exc:
            raise _Problem(None, f"the Object Lock archive could not be read: {exc}") from None

    def _quarantine(self) -> None:
        """Every ``recovery`` record's quarantined bytes must still be there, unchanged."""
        for seq, name, digest in self.recoveries:
            data = self.store.read_quarantine(name) if "/" not in name and name not in ("", ".", "..") else None
            if data is None:
                raise _Problem(seq, f"quarantine/{name}, the tail cut by recovery record {seq}, is missing (deleted)")
            if hashlib.sha256(data).hexdigest() != digest:
                raise _Problem(seq, f"quarantine/{name} does not match the SHA-256 recovery record {seq} logged: "
                                    "the cut bytes were altered")


def verify_log(root: Path | str, *, public_key: Ed25519PublicKey | bytes | str | Path,
               start: int | None = None, end: int | None = None, trusted: Checkpoint | None = None,
               witness: WitnessKey | None = None, archive: Any = None, workers: int = 2,
               parallel: bool | None = None) -> VerifyReport:
    """Verify the audit trail in ``root``; needs no private key.

    Parameters
    ----------
    root : Path
        The trail's directory.
    public_key : Ed25519PublicKey, PEM path, PEM/raw bytes or base64
        The signing key, obtained out of band (pinned). Required: a key read from the log
        directory proves nothing against whoever can write that directory.
    start, end : int, optional
        Verify records ``[start, end)`` in full; records before ``start`` are still hashed (the
        chain and the tree need them) but their seals are not re-checked.
    trusted : Checkpoint, optional
        A checkpoint obtained from outside the log, normally the witness's latest
        (:meth:`clinops.audit.witness.WitnessClient.latest`). The log must contain it: detects
        truncation, rollback and rewriting by a key holder.
    witness : WitnessKey, optional
        The witness's pinned name and key. Then ``trusted`` must carry its cosignature, every
        cosignature by it in the log must verify, and at least one checkpoint must be cosigned.
    archive : clinops.audit.objectlock.ObjectLockArchive, optional
        The trail's Object Lock bucket: the log must contain its newest checkpoint, and every
        closed segment locked there must be present here, byte for byte.
    workers : int
        Worker processes (default 2: the target machine has 2 cores).
    parallel : bool, optional
        Use the worker processes: None (default) when the estimated work (bytes to hash, seals
        to check) is worth forking for, True always, False never. Calls made while other threads
        run in this process are always verified in-process (workers are forked).

    Returns
    -------
    VerifyReport
        ``ok`` is True only if everything checked out; otherwise ``first_bad_seq`` and ``problem``
        name the first failure.

    Raises
    ------
    ValueError
        A missing or malformed ``public_key``, or a bad range.
    """
    if public_key is None:
        raise ValueError("public_key: required, the log's signing key obtained from outside the log")
    if start is not None and (type(start) is not int or start < 0):
        raise ValueError(f"start: must be a non-negative integer, got {start!r}")
    if end is not None and (type(end) is not int or end < (start or 0)):
        raise ValueError(f"end: must be an integer >= start, got {end!r}")
    if type(workers) is not int or workers < 1:
        raise ValueError(f"workers: must be a positive integer, got {workers!r}")
    return _Verifier(Path(root), load_public_key(public_key), start or 0, end, trusted, workers, parallel,
                     witness, archive).run()
