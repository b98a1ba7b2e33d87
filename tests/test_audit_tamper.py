"""Property-based tamper suite: every mutation of a ~2,000-record log is detected by verify.

One log is built per module (about 2,000 records in commits of 1..12, three segments, periodic
checkpoints) and copied once into a workspace; each hypothesis example mutates the workspace,
runs ``verify_log`` with the pinned public key and the witness's latest checkpoint, asserts the
failure is reported (at the right record where one record is to blame), and restores the files.

Mutations: flip any bit of any byte of the log (segments, seals, checkpoints, header, public
key), delete / insert / duplicate / reorder records, truncate the log at any byte, replace a
signature, re-sign everything with another key, roll back to an older checkpoint, and rewrite
history with the real key (a fork). The last two are invisible without a checkpoint kept
outside the log; the suite asserts that too, because it is the threat model.
"""
from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clinops.audit import AuditTrail, Checkpoint, Ed25519Signer, VerifyReport, verify_log
from clinops.audit import records as rf
from clinops.audit import verify as verify_module
from clinops.audit.keys import load_public_key, public_key_pem, public_key_raw
from clinops.audit.merkle import MerkleTree, leaf_hash

N_RECORDS = 2_000
SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
DETECTED: Counter = Counter()
TRIED: Counter = Counter()


@dataclass(repr=False)
class Model:
    """The pristine log, parsed once: where every record and seal sits."""

    files: dict[str, bytes]                  # relative path -> bytes (everything verify reads)
    segs: list[tuple[str, list[bytes]]]      # segment path, its lines (no newline)
    recs: list[tuple[int, int]]              # seq -> (segment index, line index)
    seals: list[tuple[int, int, int, int]]   # (segment index, line index, first seq, last seq)
    checkpoints: list[str]                   # checkpoint files (checkpoints/ and log/*.checkpoint)
    log_id: str

    def __repr__(self) -> str:  # hypothesis prints the arguments of a failing example
        return f"<log {self.log_id}: {len(self.recs)} records>"

    def commit_of(self, seq: int) -> tuple[int, int]:
        for _, _, first, last in self.seals:
            if first <= seq <= last:
                return first, last
        raise AssertionError(seq)


class Workspace:
    """A copy of the log that mutations edit and ``restore`` puts back."""

    def __init__(self, model: Model, root: Path) -> None:
        self.model, self.root = model, root
        for rel, data in model.files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
        self.touched: set[str] = set()

    def write(self, rel: str, data: bytes) -> None:
        (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
        (self.root / rel).write_bytes(data)
        self.touched.add(rel)

    def delete(self, rel: str) -> None:
        (self.root / rel).unlink(missing_ok=True)
        self.touched.add(rel)

    def write_segment(self, index: int, lines: list[bytes]) -> None:
        self.write(self.model.segs[index][0], b"".join(line + b"\n" for line in lines))

    def restore(self) -> None:
        for rel in self.touched:
            if rel in self.model.files:
                (self.root / rel).write_bytes(self.model.files[rel])
            else:
                (self.root / rel).unlink(missing_ok=True)
        self.touched.clear()


class Built(tuple):
    def __repr__(self) -> str:
        return "<module log>"


class StepClock:
    def __init__(self) -> None:
        self.now = datetime(2024, 3, 1, 8, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=250)
        return self.now


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("tamper") / "audit"
    rng = random.Random(20240301)
    seq = 0
    with AuditTrail.open(root, segment_records=700, checkpoint_every=250, clock=StepClock()) as trail:
        while seq < N_RECORDS:
            batch = []
            for _ in range(rng.randint(1, 12)):
                r = rng.random()
                if r < 0.7:
                    p = rng.random()
                    batch.append({"kind": "prediction", "subject": f"hadm-{rng.randrange(40)}",
                                  "payload": {"lactate": round(rng.uniform(0.5, 9), 2), "gcs": rng.randint(3, 15)},
                                  "fields": {"model_version": "run-1", "dataset_sha256": "ab" * 32,
                                             "raw_score": round(rng.gauss(0, 1), 4), "probability": round(p, 4),
                                             "conformal_set": [0, 1], "requester": "ehr", "purpose": "treatment",
                                             "prediction_id": f"pred-{seq + len(batch)}"}})
                else:
                    batch.append({"kind": rng.choice(["override", "review"]),
                                  "fields": {"requester": "dr-a", "prediction_id": f"pred-{rng.randrange(seq + 1)}"}})
            seq += len(trail.append_many(batch))
        signer = Ed25519Signer.load(root / "private" / "signing.key")
    trusted = Checkpoint.from_bytes(max((root / "checkpoints").glob("*.checkpoint")).read_bytes())
    files = {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*")
             if p.is_file() and p.relative_to(root).parts[0] in ("log", "checkpoints", "audit.json", "signing.pub")}
    segs, recs, seals = [], [], []
    for rel in sorted(f for f in files if f.endswith(".jsonl")):
        lines = files[rel].split(b"\n")[:-1]
        first = None
        for i, line in enumerate(lines):
            if line.startswith(b'{"seq":'):
                first = len(recs) if first is None else first
                recs.append((len(segs), i))
            else:
                seals.append((len(segs), i, first, len(recs) - 1))
                first = None
        segs.append((rel, lines))
    model = Model(files, segs, recs, seals, sorted(f for f in files if f.endswith(".checkpoint")),
                  rf.parse_header(files["audit.json"])["log_id"])
    work = tmp_path_factory.mktemp("tamper-work")
    ws = Workspace(model, work)
    pinned = load_public_key(root / "signing.pub")
    assert len(recs) >= N_RECORDS and len(segs) == 3
    baseline = verify_log(work, public_key=pinned, trusted=trusted, parallel=False)
    assert baseline.ok and baseline.n_records == len(recs), baseline
    saved, verify_module._MIN_CHUNK_BYTES = verify_module._MIN_CHUNK_BYTES, 40_000
    try:
        assert verify_log(work, public_key=pinned, trusted=trusted, parallel=True) == baseline
    finally:
        verify_module._MIN_CHUNK_BYTES = saved
    return Built((model, ws, pinned, trusted, signer))


@pytest.fixture(scope="module", autouse=True)
def _report_counts(request: pytest.FixtureRequest):
    yield
    lines = [f"  {kind:<46} {DETECTED[kind]:>4} / {TRIED[kind]:<4} detected" for kind in sorted(TRIED)]
    total = f"  {'all mutations':<46} {sum(DETECTED.values()):>4} / {sum(TRIED.values()):<4} detected"
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():  # shown in every run, not only with -s
            reporter.write_line("")
            reporter.write_line("audit tamper suite (mutations detected / tried):")
            for line in lines + [total]:
                reporter.write_line(line)


def check(ws: Workspace, kind: str, pinned, trusted, *, bad_seq: int | None = None,
          near: tuple[int, int] | None = None) -> VerifyReport:
    """Verify the mutated workspace, count, restore; the report must fail (and blame the right record)."""
    try:
        report = verify_log(ws.root, public_key=pinned, trusted=trusted, parallel=False)
    finally:
        ws.restore()
    TRIED[kind] += 1
    DETECTED[kind] += not report.ok
    assert not report.ok, f"{kind}: mutation not detected"
    if bad_seq is not None:
        assert report.first_bad_seq == bad_seq, report
    if near is not None:
        assert report.first_bad_seq is not None and near[0] <= report.first_bad_seq <= near[1], report
    return report


def _print(kind: str) -> None:
    print(f"tamper[{kind}]: {DETECTED[kind]} of {TRIED[kind]} mutations detected")


# -- byte-level ---------------------------------------------------------------------------------
@settings(max_examples=80, **SETTINGS)
@given(where=st.floats(0, 1, exclude_max=True), bit=st.integers(0, 7))
def test_flipping_any_bit_of_any_byte_is_detected(built, where: float, bit: int) -> None:
    model, ws, pinned, trusted, _ = built
    rels = sorted(model.files)
    total = sum(len(model.files[r]) for r in rels)
    offset = int(where * total)
    for rel in rels:
        if offset < len(model.files[rel]):
            break
        offset -= len(model.files[rel])
    data = bytearray(model.files[rel])
    data[offset] ^= 1 << bit
    ws.write(rel, bytes(data))
    report = check(ws, "flip a bit", pinned, trusted)
    if rel.endswith(".jsonl"):  # blame: the record whose line holds the byte, or the first of a damaged seal's commit
        seg = next(i for i, (r, _) in enumerate(model.segs) if r == rel)
        line_no = model.files[rel][:offset].count(b"\n")
        rec = [s for s, (si, li) in enumerate(model.recs) if si == seg and li == line_no]
        if rec:
            first, last = model.commit_of(rec[0])
            # The last record of a commit is covered only by the seal's head, and a change anywhere in a
            # commit could have been re-chained up to it: then the whole commit is blamed, from its first.
            allowed = {rec[0], first} if rec[0] == last else {rec[0]}
        else:
            allowed = {next(first for si, li, first, _ in model.seals if si == seg and li == line_no)}
        assert report.first_bad_seq in allowed, report
    _print("flip a bit")


@settings(max_examples=12, **SETTINGS)
@given(where=st.floats(0, 1, exclude_max=True), bit=st.integers(0, 7), kind=st.sampled_from(["flip", "delete"]))
def test_parallel_verifier_reaches_the_same_verdict(built, where: float, bit: int, kind: str) -> None:
    """Worker processes on ~40 kB chunks (many per segment) blame the same record as one process."""
    model, ws, pinned, trusted, _ = built
    if kind == "flip":
        rel = model.segs[int(where * len(model.segs))][0]
        data = bytearray(model.files[rel])
        data[int(where * 997) % len(data)] ^= 1 << bit
        ws.write(rel, bytes(data))
    else:
        si, li = model.recs[int(where * len(model.recs))]
        lines = list(model.segs[si][1])
        del lines[li]
        ws.write_segment(si, lines)
    saved = verify_module._MIN_CHUNK_BYTES
    verify_module._MIN_CHUNK_BYTES = 40_000
    try:
        one = verify_log(ws.root, public_key=pinned, trusted=trusted, parallel=False)
        two = verify_log(ws.root, public_key=pinned, trusted=trusted, parallel=True, workers=2)
    finally:
        verify_module._MIN_CHUNK_BYTES = saved
        ws.restore()
    TRIED["parallel verifier agrees"] += 1
    DETECTED["parallel verifier agrees"] += not two.ok and (two.first_bad_seq, two.problem) == (one.first_bad_seq,
                                                                                             one.problem)
    assert not one.ok and not two.ok
    assert (two.first_bad_seq, two.problem) == (one.first_bad_seq, one.problem)
    _print("parallel verifier agrees")


# -- record-level ------------------------------------------------------------------------------
@settings(max_examples=20, **SETTINGS)
@given(seq=st.integers(0, N_RECORDS - 1))
def test_deleting_a_record_is_detected(built, seq: int) -> None:
    model, ws, pinned, trusted, _ = built
    si, li = model.recs[seq]
    lines = list(model.segs[si][1])
    del lines[li]
    ws.write_segment(si, lines)
    check(ws, "delete a record", pinned, trusted, near=(seq - 1, model.commit_of(seq)[1]))
    _print("delete a record")


@settings(max_examples=20, **SETTINGS)
@given(src=st.integers(0, N_RECORDS - 1), dst=st.integers(0, N_RECORDS - 1))
def test_inserting_a_record_is_detected(built, src: int, dst: int) -> None:
    model, ws, pinned, trusted, _ = built
    si, li = model.recs[dst]
    lines = list(model.segs[si][1])
    lines.insert(li, model.segs[model.recs[src][0]][1][model.recs[src][1]])
    ws.write_segment(si, lines)
    check(ws, "insert a record", pinned, trusted, near=(dst - 1, dst + 1))
    _print("insert a record")


@settings(max_examples=15, **SETTINGS)
@given(seq=st.integers(0, N_RECORDS - 1))
def test_duplicating_a_record_is_detected(built, seq: int) -> None:
    model, ws, pinned, trusted, _ = built
    si, li = model.recs[seq]
    lines = list(model.segs[si][1])
    lines.insert(li + 1, lines[li])
    ws.write_segment(si, lines)
    check(ws, "duplicate a record", pinned, trusted, near=(seq, seq + 1))
    _print("duplicate a record")


@settings(max_examples=20, **SETTINGS)
@given(a=st.integers(0, N_RECORDS - 1), b=st.integers(0, N_RECORDS - 1))
def test_reordering_records_is_detected(built, a: int, b: int) -> None:
    model, ws, pinned, trusted, _ = built
    if a == b:
        b = (a + 1) % N_RECORDS
    (sa, la), (sb, lb) = model.recs[a], model.recs[b]
    segs = {sa: list(model.segs[sa][1]), sb: list(model.segs[sb][1])}
    segs[sa][la], segs[sb][lb] = model.segs[sb][1][lb], model.segs[sa][1][la]
    for si, lines in segs.items():
        ws.write_segment(si, lines)
    check(ws, "reorder records", pinned, trusted, bad_seq=min(a, b))
    _print("reorder records")


@settings(max_examples=25, **SETTINGS)
@given(where=st.floats(0, 1, exclude_max=True))
def test_truncating_the_log_anywhere_is_detected(built, where: float) -> None:
    model, ws, pinned, trusted, _ = built
    sizes = [len(model.files[rel]) for rel, _ in model.segs]
    offset = int(where * sum(sizes))
    for i, (rel, _) in enumerate(model.segs):
        if offset < sizes[i]:
            ws.write(rel, model.files[rel][:offset])
            for later, _ in model.segs[i + 1:]:
                ws.delete(later)
            break
        offset -= sizes[i]
    check(ws, "truncate the log", pinned, trusted)
    _print("truncate the log")


# -- signatures and keys -------------------------------------------------------------------------
@settings(max_examples=20, **SETTINGS)
@given(target=st.integers(0, 10_000), source=st.integers(0, 10_000), junk=st.binary(min_size=64, max_size=64),
       use_junk=st.booleans())
def test_replacing_a_signature_is_detected(built, target: int, source: int, junk: bytes, use_junk: bool) -> None:
    model, ws, pinned, trusted, _ = built
    n_seals, n_cps = len(model.seals), len(model.checkpoints)
    target %= n_seals + n_cps
    other = model.seals[source % n_seals]
    other_sig = rf.parse_seal(model.segs[other[0]][1][other[1]]).sig
    if target < n_seals:
        si, li, first, last = model.seals[target]
        seal = rf.parse_seal(model.segs[si][1][li])
        sig = junk if use_junk or other_sig == seal.sig else other_sig
        lines = list(model.segs[si][1])
        lines[li] = rf.seal_line(seal.seq, seal.head, seal.ts, seal.kid, sig)
        ws.write_segment(si, lines)
        check(ws, "replace a signature", pinned, trusted, bad_seq=first)
    else:
        rel = model.checkpoints[target - n_seals]
        cp = Checkpoint.from_bytes(model.files[rel])
        sig = junk if use_junk or other_sig == cp.sig else other_sig
        ws.write(rel, Checkpoint(cp.log_id, cp.size, cp.root, cp.ts, cp.kid, sig).to_bytes())
        check(ws, "replace a signature", pinned, trusted)
    _print("replace a signature")


def rebuild(model: Model, signer: Ed25519Signer, header: bytes, alter: int | None = None) -> dict[str, bytes]:
    """Rewrite the whole log as a key holder could: records (record ``alter`` changed), chain,
    seals and checkpoints, all consistent and signed by ``signer``."""
    out: dict[str, bytes] = {"audit.json": header, "signing.pub": public_key_pem(signer.public_key)}
    prev, tree = rf.genesis_hash(header).hex(), MerkleTree()
    for rel, lines in model.segs:
        new = []
        for line in lines:
            if line.startswith(b'{"seq":'):
                obj = json.loads(line)
                if obj["seq"] == alter:
                    obj["fields"]["requester"] = "someone-else"
                env = obj["payload"]
                payload = "null" if env is None else rf.payload_json(env["dk"], rf.unb64(env["iv"]), rf.unb64(env["ct"]))
                line = rf.record_line(obj["seq"], prev, obj["ts"], obj["kind"], obj["id"], obj["subject"],
                                      rf.canonical_json(obj["fields"]), payload)
                h = leaf_hash(line)
                tree.append(h)
                prev = h.hex()
            else:
                seal = rf.parse_seal(line)
                line = rf.seal_line(seal.seq, prev, seal.ts, signer.key_id,
                                    signer.sign(rf.seal_message(model.log_id, seal.seq, prev, seal.ts)))
            new.append(line)
        out[rel] = b"".join(line + b"\n" for line in new)
    for rel in model.checkpoints:
        cp = Checkpoint.from_bytes(model.files[rel])
        out[rel] = Checkpoint.signed(cp.log_id, cp.size, tree.root(cp.size).hex(), cp.ts, signer).to_bytes()
    return out


def test_rebuild_with_the_real_key_reproduces_the_log_exactly(built) -> None:
    model, _, _, _, signer = built
    out = rebuild(model, signer, model.files["audit.json"])
    assert len(out) == len(model.segs) + len(model.checkpoints) + 2
    assert all(out[rel] == model.files[rel] for rel in out)  # so the forgeries below differ only where intended


@settings(max_examples=6, **SETTINGS)
@given(seq=st.integers(0, N_RECORDS - 1))
def test_re_signing_with_another_key_is_detected(built, seq: int) -> None:
    model, ws, pinned, trusted, _ = built
    attacker = Ed25519Signer(Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"attacker %d" % seq).digest()))
    doc = rf.parse_header(model.files["audit.json"])
    header = rf.header_bytes(doc["log_id"], doc["created"], doc["segment_records"], doc["checkpoint_every"],
                             attacker.key_id, public_key_raw(attacker.public_key))
    forged = rebuild(model, attacker, header, alter=seq)
    for rel, data in forged.items():
        ws.write(rel, data)
    report = check(ws, "re-sign with another key", pinned, trusted)
    assert "pinned key" in report.problem
    # Without a pinned key nothing is verified at all: the forged log's own key would vouch for it.
    with pytest.raises(ValueError, match="public_key: required"):
        verify_log(ws.root, public_key=None, trusted=trusted)
    _print("re-sign with another key")


# -- history: rollback and fork -------------------------------------------------------------------
@settings(max_examples=6, **SETTINGS)
@given(pick=st.integers(0, 1_000))
def test_rollback_to_an_older_checkpoint_needs_the_witness(built, pick: int) -> None:
    model, ws, pinned, trusted, _ = built
    sizes = sorted({Checkpoint.from_bytes(model.files[rel]).size for rel in model.checkpoints} - {trusted.size})
    size = sizes[pick % len(sizes)]
    last = size - 1
    si = model.recs[last][0]
    seal_line = next(li for s, li, _, end in model.seals if s == si and end == last)
    ws.write_segment(si, model.segs[si][1][:seal_line + 1])
    cp_rel = model.segs[si][0].replace(".jsonl", ".checkpoint")
    if cp_rel in model.files and Checkpoint.from_bytes(model.files[cp_rel]).size != size:
        ws.delete(cp_rel)  # the segment was still open at that size
    for rel, _ in model.segs[si + 1:]:
        ws.delete(rel)
        ws.delete(rel.replace(".jsonl", ".checkpoint"))
    for rel in model.checkpoints:
        if rel.startswith("checkpoints/") and Checkpoint.from_bytes(model.files[rel]).size > size:
            ws.delete(rel)
    touched = {rel: (ws.root / rel).read_bytes() if (ws.root / rel).exists() else None for rel in ws.touched}
    alone = verify_log(ws.root, public_key=pinned, parallel=False)
    assert alone.ok, f"rollback to {size} should look like an honest older log: {alone}"
    ws.touched = set(touched)
    report = check(ws, "roll back to an older checkpoint", pinned, trusted)
    assert "truncated or rolled back" in report.problem
    _print("roll back to an older checkpoint")


@settings(max_examples=6, **SETTINGS)
@given(seq=st.integers(0, N_RECORDS - 1))
def test_history_rewritten_with_the_real_key_needs_the_witness(built, seq: int) -> None:
    model, ws, pinned, trusted, signer = built
    forged = rebuild(model, signer, model.files["audit.json"], alter=seq)
    for rel, data in forged.items():
        ws.write(rel, data)
    alone = verify_log(ws.root, public_key=pinned, parallel=False)
    assert alone.ok, "an operator holding the key can rewrite history undetectably without a witness"
    report = check(ws, "fork with the real key (witness)", pinned, trusted)
    assert "rewritten (forked)" in report.problem
    _print("fork with the real key (witness)")
