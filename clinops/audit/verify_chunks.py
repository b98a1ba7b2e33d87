"""Verifying one chunk of a segment: record layout, links, seals and their signatures.

A chunk starts right after a seal line, so it holds whole commits; :func:`verify_chunk` runs in
a worker process (or in-process) and returns the leaf hashes and what it found, leaving the
link into its first record and the Merkle tree to the caller (:mod:`clinops.audit.verify`).
"""
from __future__ import annotations

import bisect
import hashlib
from binascii import hexlify
from dataclasses import dataclass, field
from hashlib import sha256

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from clinops.audit import records as rf
from clinops.audit.records import RECORD_START, SEAL_START, RecordFormatError

_RECOVERY_KIND = b'"kind":"recovery"'
_KIND_WITHIN = 200  # "kind" ends before this byte of a record line (seq, prev and ts come first, fixed width)


class Problem(Exception):
    """The first failure found: the record (or None) and what is wrong, in words."""

    def __init__(self, seq: int | None, text: str) -> None:
        super().__init__(text)
        self.seq = seq
        self.text = text


# -- one chunk: runs in a worker process or in-process ----------------------------------------
@dataclass(frozen=True)
class Chunk:
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
class ChunkResult:
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


def verify_chunk(chunk: Chunk) -> ChunkResult:
    """Check the records and seals of one chunk; the link into its first record is left to the caller."""
    with open(chunk.path, "rb") as fh:
        fh.seek(chunk.start)
        data = fh.read(chunk.end - chunk.start)
    public = _Keys(chunk.keys)
    res = ChunkResult(seq0=chunk.seq0)
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
                raise Problem(seq, f"{name} ends in the middle of a line at byte {chunk.start + pos}: torn write "
                                    "(opening the trail for writing recovers it)")
            line = data[pos:nl]
            if line.startswith(RECORD_START):
                if prev_hex is None:
                    res.first_prev = _first_prev(line, seq, name)
                elif not line.startswith(b'{"seq":%d,"prev":"%s",' % (seq, prev_hex)):
                    _bad_link(line, seq, data, pos, name, chunk, public)
                if seq >= lo and (hi is None or seq < hi):
                    why = rf.check_record_layout(line)
                    if why is not None:
                        raise Problem(seq, f"record {seq} is malformed: {why}")
                    res.n_checked += 1
                if line.find(_RECOVERY_KIND, 0, _KIND_WITHIN) >= 0:
                    try:
                        obj = rf.parse_record(line)
                    except RecordFormatError as exc:
                        raise Problem(seq, f"record {seq} is malformed: {exc}") from None
                    if obj["kind"] == "recovery":
                        res.recoveries.append((seq, str(obj["fields"].get("quarantine")),
                                               str(obj["fields"].get("sha256"))))
                h = sha256(b"\x00" + line).digest()
                leaves += h
                prev_hex = hexlify(h)
                if commit_first is None:
                    commit_first = seq
                seq += 1
            elif line.startswith(SEAL_START):
                if commit_first is None:
                    raise Problem(seq, f"{name} byte {chunk.start + pos}: a seal with no record before it "
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
                raise Problem(seq if commit_first is None else commit_first,
                               f"{name} byte {chunk.start + pos}: a line that is neither a record nor a seal "
                               "(inserted or damaged)")
            pos = nl + 1
        if commit_first is not None:
            raise Problem(commit_first, f"records {commit_first}..{seq - 1} at the end of {name} are not sealed: "
                                         "a torn or unacknowledged write (opening the trail for writing recovers "
                                         "it), or records appended without the key")
    except Problem as p:
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
        raise Problem(seq, f"record {seq} is malformed: {exc}") from None
    raise Problem(seq, f"expected record {seq} at the start of {name}'s data, found record {obj['seq']}: "
                        "records were deleted, inserted, duplicated or reordered")


def _check_seal(line: bytes, commit_first: int, seq: int, prev_hex: str, chunk: Chunk, keys: _Keys,
                *, verify_sig: bool) -> None:
    public, kid = keys.at(commit_first)
    try:
        seal = rf.parse_seal(line)
    except RecordFormatError as exc:
        raise Problem(commit_first, f"the seal over records {commit_first}..{seq - 1} is malformed: {exc}") from None
    if seal.seq > seq - 1:
        raise Problem(seq, f"records {seq}..{seal.seq} are missing: the seal after record {seq - 1} covers up to "
                            f"record {seal.seq} (records deleted or moved)")
    if seal.seq < seq - 1:
        first_extra = max(seal.seq + 1, commit_first)
        raise Problem(first_extra, f"records {first_extra}..{seq - 1} are not covered by the seal that follows "
                                    f"them, which ends at record {seal.seq} (records inserted or moved)")
    if seal.head != prev_hex:
        try:
            public.verify(seal.sig, seal.message(chunk.log_id))
        except InvalidSignature:
            raise Problem(commit_first, f"the seal over records {commit_first}..{seq - 1} was altered: its head "
                                         "and signature do not match") from None
        if commit_first == seq - 1:
            raise Problem(seq - 1, f"record {seq - 1} no longer hashes to the head its seal signed: it was altered "
                                    "after it was written")
        # The links inside the commit hold, so whoever altered a record may have re-chained every
        # later one up to the seal: the first altered record can be any of the commit's.
        raise Problem(commit_first, f"records {commit_first}..{seq - 1} no longer hash to the head their seal "
                                     f"signed: at least one of them was altered after it was written (and the "
                                     "records after it re-chained, or it is the last one)")
    if seal.kid != kid:
        raise Problem(commit_first, f"records {commit_first}..{seq - 1} are sealed by key {seal.kid}, not by the "
                                     f"log's key {kid}: re-signed with another key")
    if verify_sig:
        try:
            public.verify(seal.sig, seal.message(chunk.log_id))
        except InvalidSignature:
            raise Problem(commit_first, f"the seal over records {commit_first}..{seq - 1} has an invalid Ed25519 "
                                         "signature: the seal was replaced or forged, or these records were "
                                         "altered and re-chained") from None


def _bad_link(line: bytes, seq: int, data: bytes, pos: int, name: str, chunk: Chunk, public: _Keys) -> None:
    """Name the culprit when a record's seq or prev is not what the chain expects."""
    try:
        obj = rf.parse_record(line)
    except RecordFormatError as exc:
        raise Problem(seq, f"record {seq} is malformed: {exc}") from None
    if obj["seq"] != seq:
        raise Problem(seq, f"expected record {seq} here in {name}, found record {obj['seq']}: records were "
                            "deleted, inserted, duplicated or reordered")
    if _authentic_from(data, pos, seq, chunk, public):
        raise Problem(seq - 1, f"record {seq - 1} was altered: its hash no longer matches the prev that record "
                                f"{seq} (intact under its seal) recorded")
    raise Problem(seq, f"record {seq} was altered: its prev does not link to record {seq - 1} and its commit "
                        "does not match its seal")


def _authentic_from(data: bytes, pos: int, seq: int, chunk: Chunk, keys: _Keys) -> bool:
    """True when the records from ``pos`` to the next seal are exactly what that seal signed."""
    prev_hex: str | None = None
    while True:
        nl = data.find(b"\n", pos)
        if nl < 0:
            return False
        line = data[pos:nl]
        if line.startswith(RECORD_START):
            if prev_hex is not None:
                try:
                    if rf.parse_record(line)["prev"] != prev_hex:
                        return False
                except RecordFormatError:
                    return False
            prev_hex = hashlib.sha256(b"\x00" + line).hexdigest()
        elif line.startswith(SEAL_START):
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
