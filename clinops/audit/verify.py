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

import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from clinops.audit import records as rf
from clinops.audit.keys import KeySchedule, key_id, load_public_key, public_key_pem, public_key_raw
from clinops.audit.merkle import MerkleTree
from clinops.audit.records import RECORD_START, SEAL_START, TRANSITION_KIND, Checkpoint, RecordFormatError
from clinops.audit.storage import LocalSegmentStore
from clinops.audit.verify_chunks import Chunk, Problem, verify_chunk
from clinops.audit.verify_evidence import EvidenceChecks
from clinops.audit.witness import WitnessKey
from clinops.statefiles import holding_lock

__all__ = ["VerifyReport", "verify_log"]

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


# -- the whole log ---------------------------------------------------------------------------
class _Verifier(EvidenceChecks):
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
        except Problem as p:
            return VerifyReport(False, 0, p.seq, p.text, key_pinned=True, witness=witness)
        problem = None
        try:
            segments, checkpoints = self._snapshot()
            self._records(segments)
            self._checkpoints(checkpoints)
            self._quarantine()
            if self.archive is not None:
                self._archived()
        except Problem as p:
            problem = p
        return VerifyReport(problem is None, self.n_checked, None if problem is None else problem.seq,
                            None if problem is None else problem.text, len(self.tree), self.n_seals,
                            self.n_checkpoints, self.kid, True, self.n_witnessed, witness)

    def _header(self) -> None:
        try:
            self.header = (self.root / "audit.json").read_bytes()
        except FileNotFoundError:
            raise Problem(None, f"{self.root}: no audit.json: not an audit trail (or its header was deleted)") from None
        try:
            doc = rf.parse_header(self.header)
            header_key = load_public_key(rf.unb64(doc["signing_public_key"]))
        except (RecordFormatError, ValueError) as exc:
            raise Problem(None, f"audit.json: {exc}") from None
        self.log_id = doc["log_id"]
        self.checkpoint_every = doc["checkpoint_every"]
        if key_id(header_key) != doc["signing_key_id"]:
            raise Problem(None, "audit.json: signing_key_id does not match signing_public_key")
        if public_key_raw(self.pinned) != public_key_raw(header_key):
            raise Problem(None, f"audit.json names signing key {key_id(header_key)}, but the pinned key is "
                                 f"{key_id(self.pinned)}: the log was re-keyed (re-signed), or it is another log")
        self.public = self.pinned
        self.kid = key_id(self.public)
        self.schedule = KeySchedule(self.public)
        pub_file = self.root / "signing.pub"
        if pub_file.exists() and pub_file.read_bytes() != public_key_pem(self.public):
            raise Problem(None, f"signing.pub is not the PEM of the log's key {self.kid} (altered or replaced)")
        self.genesis = rf.genesis_hash(self.header)

    def _snapshot(self) -> tuple[list[tuple[int, int, bool]], list[int]]:
        """Segments (first, size, closed) and stored checkpoint sizes, all taken under one shared lock.

        Writers append and checkpoint under the exclusive lock, so this is one consistent state
        of a live log: no commit half-seen, no checkpoint newer than the records listed.
        """
        lock = self.root / "lock"
        fd = os.open(lock, os.O_RDONLY) if lock.exists() else None
        try:
            with nullcontext() if fd is None else holding_lock(fd, shared=True):
                segs = self.store.segments() if self.store.log_dir.exists() else []
                checkpoints = self.store.checkpoints() if self.store.checkpoint_dir.exists() else []
                return [(f, self.store.size(f), self.store.is_sealed(f)) for f in segs], checkpoints
        finally:
            if fd is not None:
                os.close(fd)

    def _plan(self, snapshot: list[tuple[int, int, bool]], parallel: bool) -> list[Chunk]:
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
                    i = data.find(b"\n" + SEAL_START, at)
                    j = -1 if i < 0 else data.find(b"\n", i + 1)
                    if j < 0 or j + 1 >= size:
                        break
                    cuts.append(j + 1)
                    at = j + 1 + target
                seqs = [first]
                for a, b in zip(cuts, cuts[1:]):
                    seqs.append(seqs[-1] + data.count(b"\n" + RECORD_START, a - 1 if a else 0, b - 1)
                                + (1 if a == 0 and data.startswith(RECORD_START) else 0))
            else:
                seqs = [first]
            bounds = cuts + [size]
            for k, seq0 in enumerate(seqs):
                chunks.append(Chunk(first, path, name, bounds[k], bounds[k + 1], seq0, k == len(seqs) - 1, self.log_id,
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
                self._assemble(chunks, pool.map(verify_chunk, chunks), closed, firsts)
        else:
            self._assemble(chunks, map(verify_chunk, chunks), closed, firsts)

    def _key_transitions(self, snapshot: list[tuple[int, int, bool]]) -> None:
        """Follow the signed signing-key transitions, so each commit is checked with the key of its time.

        Found by a byte search before the records are verified; each transition must be signed by
        the key it replaces, and its own commit's seal (by that key) is checked with the rest.
        """
        for first, size, _ in snapshot:
            if self.end is not None and first >= self.end:
                break
            data = self.store.read(first, 0, size)
            at = data.find(TRANSITION_KIND)
            while at >= 0:
                start = data.rfind(b"\n", 0, at) + 1
                stop = data.find(b"\n", at)
                try:
                    obj = rf.parse_record(data[start:stop if stop >= 0 else len(data)])
                except RecordFormatError:
                    at = data.find(TRANSITION_KIND, at + 1)
                    continue  # the record check names it
                if obj["kind"] == "signing_key_rotation":
                    try:
                        self.schedule.add(self.log_id, obj["seq"], obj["fields"])
                    except ValueError as exc:
                        raise Problem(obj["seq"], str(exc)) from None
                at = data.find(TRANSITION_KIND, at + 1)

    def _worth_forking(self, snapshot: list[tuple[int, int, bool]]) -> bool:
        total = sum(size for _, size, _ in snapshot)
        if total * _SECONDS_PER_BYTE >= _PARALLEL_FROM_SECONDS:
            return True
        if total < 64 << 10:
            return False
        seals = sum(self.store.read(first, 0, size).count(b"\n" + SEAL_START) for first, size, _ in snapshot)
        return total * _SECONDS_PER_BYTE + seals * _SECONDS_PER_SEAL >= _PARALLEL_FROM_SECONDS

    def _assemble(self, chunks: list[Chunk], results, closed: dict[int, bool], firsts: list[int]) -> None:
        seq, prev_hex = 0, self.genesis.hex()
        for chunk, res in zip(chunks, results, strict=True):
            first = chunk.segment
            if chunk.start == 0 and first != seq:
                raise Problem(seq, f"{chunk.name} starts at record {first}, but the previous segments end before "
                                    f"record {seq}: records are missing or duplicated between segments")
            if chunk.seq0 != seq:
                raise Problem(seq, f"{chunk.name}: expected record {seq} at byte {chunk.start}, found {chunk.seq0}")
            if res.first_prev is not None and res.first_prev != prev_hex:
                if res.first_commit_authentic:
                    if seq == 0:
                        raise Problem(None, "audit.json was altered: record 0 (intact under its seal) was chained "
                                             "to a different header")
                    raise Problem(seq - 1, f"record {seq - 1} was altered: its hash no longer matches the prev that "
                                            f"record {seq} (intact under its seal) recorded")
                raise Problem(seq, f"record {seq} was altered: its prev does not link to the record before it and "
                                    "its commit does not match its seal")
            self.tree.extend_hashes(res.leaves)
            self.n_checked += res.n_checked
            self.n_seals += res.n_seals
            self.commit_ends += res.commit_ends
            self.recoveries += res.recoveries
            if res.problem is not None:
                raise Problem(*res.problem)
            seq += res.n_records
            if res.last_hash is not None:
                prev_hex = res.last_hash
            if self.end is not None and seq >= self.end:
                return
            if chunk.last_of_segment:
                if closed[first]:
                    self._segment_checkpoint(first, seq)
                elif first != firsts[-1]:
                    raise Problem(seq, f"{chunk.name} is not closed (no checkpoint beside it) but another segment "
                                        "follows")


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
