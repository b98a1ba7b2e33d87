"""Attacks by an insider who can write the log directory but holds neither the signing key nor
the witness key (issue "An audit trail that someone outside can trust", defects 1-10).

Each test reproduces one attack on a real trail in a temporary directory and checks that it now
fails safely: the writer refuses to build on it (``AuditIntegrityError``, nothing written), or
``verify`` fails naming the problem. The witness tests start ``clinops audit witness`` as a real
process on a free loopback port.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from clinops.audit import AuditIntegrityError, AuditTrail, AuditWriteError, Checkpoint, Ed25519Signer, verify_log
from clinops.audit import records as rf
from clinops.audit.cli import main as cli_main
from clinops.audit.devservers import start_witness
from clinops.audit.keys import public_key_pem, public_key_raw
from clinops.audit.merkle import leaf_hash
from clinops.audit.proofs import ProofError, verify_bundle, verify_receipt
from clinops.audit.witness import WitnessClient, WitnessKey
from tests.fixtures.clocks import DayClock

ROOT = Path(__file__).resolve().parents[1]


def review(i: int) -> dict:
    return {"requester": "dr-a", "n": i}


def pinned(root: Path) -> Ed25519PublicKey:
    """The log's public key as an auditor holds it, obtained out of band (not the log's signing.pub)."""
    return Ed25519Signer.load(root / "private" / "signing.key").public_key


def open_segment(root: Path) -> Path:
    return max((root / "log").glob("seg-*.jsonl"))


def forge_commit(root: Path, kind: str = "override", fields: dict | None = None) -> None:
    """Append a well-formed record and seal to the open segment, signed with a key that is not the log's."""
    seg = open_segment(root)
    lines = [line for line in seg.read_bytes().split(b"\n") if line]
    last_record = [line for line in lines if line.startswith(b'{"seq":')][-1]
    seq = json.loads(last_record)["seq"] + 1
    doc = rf.parse_header((root / "audit.json").read_bytes())
    ts = rf.utc_text(rf.parse_utc(json.loads(last_record)["ts"]))
    line = rf.record_line(seq, leaf_hash(last_record).hex(), ts, kind, uuid.uuid4().hex, None,
                          rf.canonical_json(fields or {"requester": "dr-a", "prediction_id": "pred-1"}), "null")
    head = leaf_hash(line).hex()
    seal = rf.seal_line(seq, head, ts, doc["signing_key_id"], os.urandom(64))
    with open(seg, "ab") as fh:
        fh.write(line + b"\n" + seal + b"\n")


def cut_last_commit(root: Path) -> bytes:
    """Remove the last commit (records and seal) from the open segment; returns the removed bytes."""
    seg = open_segment(root)
    data = seg.read_bytes()
    seals = [i for i in range(len(data)) if data.startswith(b'\n{"seal":', i)]
    keep = seals[-2] + 1 + data[seals[-2] + 1:].index(b"\n") + 1
    seg.write_bytes(data[:keep])
    return data[keep:]


# -- defect 1: the writer signed over commits it never verified ------------------------------------
def test_a_forged_commit_is_refused_by_the_writer_and_never_checkpointed(tmp_path: Path) -> None:
    root = tmp_path / "audit"
    with AuditTrail.open(root, checkpoint_every=4) as trail:
        for i in range(3):
            trail.append("review", review(i))
        forge_commit(root)                                  # the insider, while the writer runs
        before = open_segment(root).read_bytes()
        with pytest.raises(AuditIntegrityError, match="seal ending at record 3 has an invalid Ed25519 signature"):
            trail.append("review", review(3))               # would have crossed a checkpoint over the forgery
        with pytest.raises(AuditIntegrityError, match="refuses to write"):
            trail.append("review", review(4))
        with pytest.raises(AuditIntegrityError):
            trail.checkpoint()
    assert open_segment(root).read_bytes() == before        # nothing written on top of it
    assert all(Checkpoint.from_bytes(p.read_bytes()).size <= 3 for p in (root / "checkpoints").glob("*"))
    with pytest.raises(AuditIntegrityError, match="invalid Ed25519 signature"):
        AuditTrail.open(root)                               # a restarted writer refuses too
    report = verify_log(root, public_key=pinned(root))
    assert not report.ok and report.first_bad_seq == 3 and "invalid Ed25519 signature" in report.problem


class _HeldElsewhere:
    """A signer that is not an :class:`Ed25519Signer` (as a KMS or OpenBao signer would be)."""

    def __init__(self, inner: Ed25519Signer) -> None:
        self._inner = inner

    @property
    def key_id(self) -> str:
        return self._inner.key_id

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._inner.public_key

    def sign(self, message: bytes) -> bytes:
        return self._inner.sign(message)


def test_two_writers_check_each_others_seals_by_signing_again_or_by_verifying(tmp_path: Path, monkeypatch) -> None:
    """A writer holding the log's key checks another process's seal by signing its message again
    (Ed25519 is deterministic); one whose signer is not a local key verifies; a forgery fails both."""
    root = tmp_path / "audit"
    checks: list[bool] = []
    made = Ed25519Signer.made
    monkeypatch.setattr(Ed25519Signer, "made", lambda self, sig, msg: checks.append(made(self, sig, msg)) or checks[-1])
    local = AuditTrail.open(root)
    remote = AuditTrail.open(root, signer=_HeldElsewhere(Ed25519Signer.load(root / "private" / "signing.key")))
    try:
        local.append("review", review(0))
        remote.append("review", review(1))                  # verifies local's seal (no made() call)
        assert checks == []
        local.append("review", review(2))                   # re-signs remote's seal: the same bytes
        assert checks == [True]
        forge_commit(root)                                  # an insider's commit, random signature bytes
        with pytest.raises(AuditIntegrityError, match="invalid Ed25519 signature"):
            local.append("review", review(3))
        assert checks == [True, False]                      # not made by the key, then verified and refused
        with pytest.raises(AuditIntegrityError, match="invalid Ed25519 signature"):
            remote.append("review", review(3))
    finally:
        local._release()
        remote._release()
    report = verify_log(root, public_key=pinned(root))
    assert not report.ok and report.first_bad_seq == 3


def test_a_seal_the_writer_cannot_remake_is_still_verified_and_accepted(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "audit"
    monkeypatch.setattr(Ed25519Signer, "made", lambda self, sig, msg: False)   # as if signed elsewhere
    with AuditTrail.open(root) as first, AuditTrail.open(root) as second:
        first.append("review", review(0))
        second.append("review", review(1))              # verifies first's genuine seal: accepted
        first.append("review", review(2))
    assert verify_log(root, public_key=pinned(root)).ok


def test_after_a_rotation_a_writer_holding_the_retired_key_refuses_a_seal_that_claims_the_new_key(tmp_path: Path) -> None:
    """Remaking a seal proves only that the writer's own key made it: a seal labelled with the new
    key but made with the retired one must be verified under the new key, and fails."""
    root = tmp_path / "audit"
    rotating = AuditTrail.open(root)
    retired = Ed25519Signer.load(root / "private" / "signing.key")
    stale = AuditTrail.open(root, signer=retired)
    try:
        rotating.append("review", review(0))
        rotating.rotate_signing_key(requester="secops")     # private/signing.key now holds the new key
        new_kid = rotating.key_id
        assert new_kid != retired.key_id
        rotating.append("review", review(1))
        # the insider appends a commit labelled with the new key id, sealed with the retired key
        seg = open_segment(root)
        lines = [line for line in seg.read_bytes().split(b"\n") if line]
        last = [line for line in lines if line.startswith(b'{"seq":')][-1]
        seq = json.loads(last)["seq"] + 1
        ts = json.loads(last)["ts"]
        line = rf.record_line(seq, leaf_hash(last).hex(), ts, "review", uuid.uuid4().hex, None,
                              rf.canonical_json({"requester": "dr-a", "n": 2}), "null")
        head = leaf_hash(line).hex()
        sig = retired.sign(rf.seal_message(rotating.log_id, seq, head, ts))
        with open(seg, "ab") as fh:
            fh.write(line + b"\n" + rf.seal_line(seq, head, ts, new_kid, sig) + b"\n")
        with pytest.raises(AuditIntegrityError, match="invalid Ed25519 signature"):
            stale.append("review", review(3))
    finally:
        rotating._release()
        stale._release()


def test_a_commit_sealed_under_another_key_id_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "audit"
    with AuditTrail.open(root) as trail:
        trail.append("review", review(0))
    seg = open_segment(root)
    data = seg.read_bytes()
    forge_commit(root)
    forged = seg.read_bytes()[len(data):]
    seal = rf.parse_seal(forged.split(b"\n")[1])
    seg.write_bytes(data + forged.split(b"\n")[0] + b"\n"
                    + rf.seal_line(seal.seq, seal.head, seal.ts, "0" * 16, seal.sig) + b"\n")
    with pytest.raises(AuditIntegrityError, match="not by this log's key"):
        AuditTrail.open(root)


# -- defect 2: verify on a live log ------------------------------------------------------------------
WRITER = """
import sys
from clinops.audit import AuditTrail
with AuditTrail.open(sys.argv[1]) as trail:
    print("ready", flush=True)
    for i in range(int(sys.argv[2])):
        trail.append("review", {"requester": "load", "n": i})
"""


def test_verify_on_a_live_log_never_raises_a_false_alarm(tmp_path: Path) -> None:
    """A writer process signs a checkpoint after every commit (checkpoint_every=1) while verify runs
    over and over: every run must see one consistent state, until 1,000 checkpoints exist."""
    root = tmp_path / "audit"
    AuditTrail.open(root, checkpoint_every=1, segment_records=400).close()
    key = pinned(root)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(root), "1100"], stdout=subprocess.PIPE, text=True,
                              env=env)
    try:
        assert writer.stdout.readline().strip() == "ready"
        runs, sizes = 0, set()
        while writer.poll() is None or runs == 0:
            report = verify_log(root, public_key=key, parallel=False)
            assert report.ok, f"false alarm on a live log after {runs} good runs: {report.summary()}"
            runs += 1
            sizes.add(report.log_size)
    finally:
        writer.wait(timeout=120)
    assert writer.returncode == 0
    final = verify_log(root, public_key=key)
    assert final.ok and final.n_checkpoints >= 1_000, final
    assert len(sizes) >= 3, "verify should have run while the log grew"
    print(f"live verify: {runs} runs while the log grew to {final.log_size} records and {final.n_checkpoints} "
          "checkpoints, no false alarm")


# -- defects 3, 5: truncation and rollback ------------------------------------------------------------
def test_a_writer_refuses_a_log_cut_shorter_than_a_stored_checkpoint(tmp_path: Path) -> None:
    root = tmp_path / "audit"
    with AuditTrail.open(root, checkpoint_every=5) as trail:
        for i in range(10):
            trail.append("review", review(i))
    cut_last_commit(root)                                   # records 9 gone, checkpoint at 10 kept
    with pytest.raises(AuditIntegrityError, match="covers 10 records but the log holds 9: the log was truncated"):
        AuditTrail.open(root)


def test_a_writer_refuses_to_sign_a_fork_under_an_existing_checkpoint(tmp_path: Path) -> None:
    root, copy = tmp_path / "audit", tmp_path / "copy"
    with AuditTrail.open(root, checkpoint_every=3) as trail:
        for i in range(5):
            trail.append("review", review(i))
        shutil.copytree(root, copy)
        with AuditTrail.open(copy) as other:                # same key, different sixth record
            other.append("review", {"requester": "someone-else"})
        name = f"{6:020d}.checkpoint"
        shutil.copy(copy / "checkpoints" / name, root / "checkpoints" / name)
        receipt = trail.append("review", review(5))         # durable; the checkpoint at 6 disagrees with it
        assert receipt.checkpoint_error is not None and "does not match the records" in receipt.checkpoint_error
        with pytest.raises(AuditIntegrityError, match="refuses to write"):
            trail.append("review", review(6))
    with pytest.raises(AuditIntegrityError, match="does not match the records"):
        AuditTrail.open(root)


# -- defect 4: recovery must not cut a complete, sealed commit ----------------------------------------
def test_recovery_refuses_to_cut_an_altered_last_commit(tmp_path: Path) -> None:
    root = tmp_path / "audit"
    with AuditTrail.open(root, checkpoint_every=100) as trail:
        for i in range(4):
            trail.append_many([{"kind": "review", "fields": review(10 * i + j)} for j in range(3)])
    seg = open_segment(root)
    data = seg.read_bytes()
    seg.write_bytes(data.replace(b'"n":31', b'"n":13'))    # alter the last sealed commit
    for p in (root / "checkpoints").glob("*"):
        p.unlink()                                          # and delete the checkpoint covering it
    altered = seg.read_bytes()
    with pytest.raises(AuditIntegrityError, match="a complete seal follows the damage"):
        AuditTrail.open(root)
    assert seg.read_bytes() == altered and not list((root / "quarantine").glob("*"))


# -- defect 6: an append's result says exactly what is durable ---------------------------------------
def test_a_failed_checkpoint_does_not_fail_a_durable_append(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "audit"
    with AuditTrail.open(root, checkpoint_every=2) as trail:
        trail.append("review", review(0))

        def full_disk(size: int, data: bytes) -> bool:
            raise OSError(28, "No space left on device")

        with monkeypatch.context() as m:
            m.setattr(trail._store, "put_checkpoint", full_disk)
            receipt = trail.append("review", review(1))     # crosses 2: a checkpoint is due and fails
        assert "No space left on device" in receipt.checkpoint_error
        assert trail.record(1).record_id == receipt.record_id      # durable, as the receipt says
        assert not verify_log(root, public_key=pinned(root)).ok    # the owed checkpoint is missing...
        assert trail.append("review", review(2)).checkpoint_error is None
        assert (root / "checkpoints" / f"{2:020d}.checkpoint").exists()  # ...until the next commit signs it
    assert verify_log(root, public_key=pinned(root)).ok


def test_a_failed_fdatasync_rolls_the_commit_back_and_says_so(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "audit"
    with AuditTrail.open(root) as trail:
        trail.append("review", review(0))
        real = os.fdatasync

        def failing(fd: int) -> None:
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(os, "fdatasync", failing)
        with pytest.raises(AuditWriteError) as err:
            trail.append("review", review(1))
        monkeypatch.setattr(os, "fdatasync", real)
        assert err.value.durable is False and len(err.value.record_ids) == 1
        assert "rolled back" in str(err.value)
    with AuditTrail.open(root) as trail:
        assert trail.size == 1 and not trail.find(n=1)      # a retry creates no duplicate


# -- defect 10: quarantine, required checkpoints, blame, log-before-truncate, receipts, format --------
def _torn(root: Path) -> None:
    with open(open_segment(root), "ab") as fh:
        fh.write(b'{"seq":99,"prev":"')


def test_quarantined_bytes_must_match_their_recovery_record(tmp_path: Path) -> None:
    root = tmp_path / "audit"
    with AuditTrail.open(root) as trail:
        trail.append("review", review(0))
    _torn(root)
    with AuditTrail.open(root) as trail:
        (report,) = trail.recoveries
    key = pinned(root)
    assert verify_log(root, public_key=key).ok
    quarantined = Path(report.quarantine)
    os.chmod(quarantined, 0o600)
    quarantined.write_bytes(b"something else")
    bad = verify_log(root, public_key=key)
    assert not bad.ok and bad.first_bad_seq == 1 and "does not match the SHA-256" in bad.problem
    quarantined.unlink()
    bad = verify_log(root, public_key=key)
    assert not bad.ok and "is missing (deleted)" in bad.problem


def test_a_crash_between_cutting_and_logging_is_logged_by_the_next_writer(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "audit"
    with AuditTrail.open(root) as trail:
        trail.append("review", review(0))
    _torn(root)

    def crash(self, requests):
        raise SystemExit("killed after the cut, before the recovery record")

    with monkeypatch.context() as m:
        m.setattr(AuditTrail, "_commit_locked", crash)
        with pytest.raises(SystemExit):
            AuditTrail.open(root)
    assert b'{"seq":99' not in open_segment(root).read_bytes()     # cut, not yet logged
    with AuditTrail.open(root) as trail:
        (logged,) = trail.find("recovery")
        assert logged.fields["bytes"] == len(b'{"seq":99,"prev":"')
    assert not list((root / "quarantine").glob("*.unlogged"))
    assert verify_log(root, public_key=pinned(root)).ok


def test_a_deleted_checkpoint_at_a_documented_size_is_reported(tmp_path: Path) -> None:
    root = tmp_path / "audit"
    with AuditTrail.open(root, checkpoint_every=3) as trail:
        for i in range(7):
            trail.append("review", review(i))
    (root / "checkpoints" / f"{6:020d}.checkpoint").unlink()
    report = verify_log(root, public_key=pinned(root))
    assert not report.ok and report.first_bad_seq == 5 and "is missing" in report.problem


def test_an_alteration_re_chained_inside_a_commit_blames_the_commit(tmp_path: Path) -> None:
    root = tmp_path / "audit"
    with AuditTrail.open(root) as trail:
        trail.append("review", review(0))
        trail.append_many([{"kind": "review", "fields": review(i)} for i in range(1, 6)])  # records 1..5
    seg = open_segment(root)
    lines = seg.read_bytes().split(b"\n")
    prev = None
    for i, line in enumerate(lines):                        # alter record 2, re-chain 3..5 up to the seal
        if line.startswith(b'{"seq":'):
            obj = json.loads(line)
            if obj["seq"] == 2:
                line = line.replace(b'"n":2', b'"n":9')
            elif obj["seq"] > 2:
                line = line.replace(obj["prev"].encode(), prev)
            lines[i] = line
            prev = leaf_hash(line).hex().encode()
    seg.write_bytes(b"\n".join(lines))
    report = verify_log(root, public_key=pinned(root))
    assert not report.ok and report.first_bad_seq == 1 and "records 1..5" in report.problem


def test_receipts_are_signed_promises_checked_offline(tmp_path: Path, capsys) -> None:
    root = tmp_path / "audit"
    with AuditTrail.open(root) as trail:
        receipts = trail.append_many([{"kind": "review", "fields": review(i)} for i in range(5)])
        single = trail.append("review", review(9))
    key = pinned(root)
    with AuditTrail.open(root, read_only=True) as reader:
        for receipt in receipts + [single]:
            assert f"accepted record {receipt.seq}" in verify_receipt(receipt.to_dict(), key)
            assert receipt.record_hash == reader.record(receipt.seq).record_hash
    moved = dict(receipts[1].to_dict(), seq=2)
    other = dict(receipts[1].to_dict(), record_hash=receipts[2].record_hash)
    for forged in (moved, other):
        with pytest.raises(ProofError, match="does not cover this record"):
            verify_receipt(forged, key)
    with pytest.raises(ProofError, match="not the given public key"):
        verify_receipt(receipts[0].to_dict(), Ed25519Signer.generate().public_key)
    (tmp_path / "r.json").write_text(json.dumps(receipts[3].to_dict()))
    (tmp_path / "k.pub").write_bytes(public_key_pem(key))
    assert cli_main(["check-receipt", str(tmp_path / "r.json"), "--public-key", str(tmp_path / "k.pub")]) == 0
    assert "accepted record 3" in capsys.readouterr().out


def test_checkpoints_are_c2sp_signed_notes(tmp_path: Path) -> None:
    """Checked against the C2SP signed-note and tlog-checkpoint texts, with cryptography alone."""
    root = tmp_path / "audit"
    with AuditTrail.open(root, checkpoint_every=2) as trail:
        for i in range(2):
            trail.append("review", review(i))
        log_id = trail.log_id
    text = (root / "checkpoints" / f"{2:020d}.checkpoint").read_text("utf-8")
    body, sig_lines = text.split("\n\n")
    origin, size, root_b64, extension = body.split("\n")
    assert origin == f"clinops.audit/{log_id}" and size == "2" and extension.startswith("ts ")
    with AuditTrail.open(root, read_only=True) as reader:
        assert base64.b64decode(root_b64) == reader._tree.root(2)
    (line,) = sig_lines.strip("\n").split("\n")
    dash, name, blob = line.split(" ")
    assert dash == "\u2014" and name == origin
    raw = base64.b64decode(blob)
    key = pinned(root)
    assert raw[:4] == hashlib.sha256(name.encode() + b"\n\x01" + public_key_raw(key)).digest()[:4]
    key.verify(raw[4:], (body + "\n").encode())             # raises if the note signature is wrong


# -- defect 8: a pinned key from outside the log -------------------------------------------------------
def test_verify_without_an_outside_key_exits_non_zero(tmp_path: Path, capsys) -> None:
    root = tmp_path / "audit"
    with AuditTrail.open(root) as trail:
        trail.append("review", review(0))
    assert cli_main(["verify", "--root", str(root)]) == 2
    assert "--public-key is required" in capsys.readouterr().err
    assert cli_main(["verify", "--root", str(root), "--public-key", str(root / "signing.pub")]) == 1
    assert "inside the log directory" in capsys.readouterr().err
    with pytest.raises(ValueError, match="public_key: required"):
        verify_log(root, public_key=None)


# -- witnessed checkpoints --------------------------------------------------------------------------
@pytest.fixture
def witness(tmp_path: Path):
    """``clinops audit witness`` as a real process on a free port, trusting one log key made here."""
    log_signer = Ed25519Signer.generate()
    (tmp_path / "log.pub").write_bytes(public_key_pem(log_signer.public_key))
    with start_witness(tmp_path / "witness-state", [tmp_path / "log.pub"]) as server:
        yield log_signer, server.url, WitnessKey.load(server.extra["public_key"]), tmp_path / "witness-state"


def test_the_witness_cosigns_and_verify_catches_truncation(tmp_path: Path, witness) -> None:
    signer, url, wkey, _ = witness
    root = tmp_path / "audit"
    with AuditTrail.open(root, signer=signer, checkpoint_every=4, segment_records=6,
                         witness=WitnessClient(url, wkey)) as trail:
        for i in range(14):
            trail.append("review", review(i))
        report = trail.verify()
        assert report.ok and report.n_witnessed >= 4, report
        bundle = trail.prove(3)
    assert "cosigned by witness" in verify_bundle(bundle, signer.public_key, witness=wkey)
    stored = sorted((root / "checkpoints").glob("*"))
    assert all(wkey.cosignature(Checkpoint.from_bytes(p.read_bytes())) for p in stored)
    latest = WitnessClient(url, wkey).latest(AuditTrail.log_id_of(root))
    assert latest.size == 14

    # The insider deletes the newest closed segment, the open one and the newer checkpoints.
    for first in (6, 12):
        (root / "log" / f"seg-{first:020d}.jsonl").unlink()
        (root / "log" / f"seg-{first:020d}.checkpoint").unlink(missing_ok=True)
    for p in stored:
        if Checkpoint.from_bytes(p.read_bytes()).size > 6:
            p.unlink()
    alone = verify_log(root, public_key=signer.public_key)
    assert alone.ok  # looks like an honest older log without the witness: why the witness exists
    report = verify_log(root, public_key=signer.public_key, witness=wkey, trusted=latest)
    assert not report.ok and "truncated or rolled back" in report.problem
    (tmp_path / "w.pub").write_bytes(public_key_pem(wkey.public_key))
    (tmp_path / "l.pub").write_bytes(public_key_pem(signer.public_key))
    assert cli_main(["verify", "--root", str(root), "--public-key", str(tmp_path / "l.pub"),
                     "--witness-key", str(tmp_path / "w.pub"), "--witness-url", url]) == 1
    with pytest.raises(AuditIntegrityError, match="the log was truncated"):
        AuditTrail.open(root, signer=signer, witness=WitnessClient(url, wkey))


def test_the_witness_refuses_a_fork_signed_with_the_real_key(tmp_path: Path, witness) -> None:
    signer, url, wkey, state = witness
    root = tmp_path / "audit"
    with AuditTrail.open(root, signer=signer, checkpoint_every=3, witness=WitnessClient(url, wkey)) as trail:
        for i in range(3):
            trail.append("review", review(i))
    fork = tmp_path / "fork"
    shutil.copytree(root, fork)
    cut_last_commit(fork)                                      # rewrite history from record 2 on
    for p in (fork / "checkpoints").glob("*"):
        p.unlink()
    with AuditTrail.open(fork, signer=signer) as forger:       # the key holder, not asking the witness
        for i in range(5):
            forger.append("review", {"requester": "someone-else", "n": i})
    with pytest.raises(AuditIntegrityError, match="does not match the records"):
        AuditTrail.open(fork, signer=signer, witness=WitnessClient(url, wkey))
    # Publishing the fork directly: the witness checks consistency and refuses (HTTP 422).
    with AuditTrail.open(fork, signer=signer, read_only=True) as reader:
        cp = Checkpoint.from_bytes(max((fork / "checkpoints").glob("*")).read_bytes())
        with pytest.raises(Exception, match="refused the checkpoint"):
            WitnessClient(url, wkey).add_checkpoint(cp, reader._tree)
    report = verify_log(fork, public_key=signer.public_key, witness=wkey)
    assert not report.ok and "no checkpoint cosigned by witness" in report.problem
    bundle_cp = Checkpoint.from_bytes(max((fork / "checkpoints").glob("*")).read_bytes())
    assert wkey.cosignature(bundle_cp) is None
    assert Checkpoint.from_bytes(next((state / "logs").glob("*")).read_bytes()).size == 3


# -- defects 7, 9: crypto-shredding that holds, atomic KEK rotation ------------------------------------


def _predictions(trail: AuditTrail, subject: str, n: int) -> list[int]:
    return [trail.append("prediction", {"model_version": "m", "dataset_sha256": "ab" * 32, "raw_score": 0.1,
                                        "probability": 0.5, "conformal_set": [0], "requester": "ehr",
                                        "purpose": "treatment", "prediction_id": f"{subject}-{i}"},
                         subject=subject, payload={"lactate": i}).seq for i in range(n)]


def test_erasure_finds_data_keys_repointed_to_another_subject(tmp_path: Path) -> None:
    root = tmp_path / "audit"
    with AuditTrail.open(root, clock=DayClock()) as trail:
        seqs = _predictions(trail, "hadm-1", 8)
        _predictions(trail, "hadm-2", 2)
        pseudonym = trail.pseudonym("hadm-1", create=False)
        db = sqlite3.connect(root / "private" / "subjects.sqlite")
        with db:  # the insider hides hadm-1's keys from erasure
            n_rows = db.execute("UPDATE data_keys SET pseudonym = ? WHERE pseudonym = ?",
                                ("ps-" + "0" * 32, pseudonym)).rowcount
        db.close()
        assert n_rows >= 2
        assert trail.decrypt_payload(trail.record(seqs[0])) == {"lactate": 0}  # still readable: the attack's premise
        receipt = trail.erase("hadm-1", requester="dpo")
        assert trail.record(receipt.seq).fields["data_keys_destroyed"] == n_rows
        assert all(trail.decrypt_payload(trail.record(seq)) is None for seq in seqs)
        assert trail.show("hadm-2-0")["features_status"] == "decrypted"


def test_a_copy_of_the_key_database_from_before_erasure_opens_nothing(tmp_path: Path) -> None:
    root = tmp_path / "audit"
    with AuditTrail.open(root, clock=DayClock()) as trail:
        seqs = _predictions(trail, "hadm-1", 4)
        kept = _predictions(trail, "hadm-2", 2)
    backup = tmp_path / "subjects-before-erasure.sqlite"
    shutil.copy(root / "private" / "subjects.sqlite", backup)
    with AuditTrail.open(root, clock=DayClock()) as trail:
        trail.erase("hadm-1", requester="dpo", retire_kek=True)
        assert trail.decrypt_payload(trail.record(kept[0])) == {"lactate": 0}   # re-wrapped, still readable
    for suffix in ("-wal", "-shm"):
        Path(f"{root / 'private' / 'subjects.sqlite'}{suffix}").unlink(missing_ok=True)
    shutil.copy(backup, root / "private" / "subjects.sqlite")                    # the insider restores the copy
    with AuditTrail.open(root, clock=DayClock()) as trail:
        assert all(trail.decrypt_payload(trail.record(seq)) is None for seq in seqs)
        assert trail.show("hadm-1-0")["features_status"] == "shredded"


def test_a_failed_kek_rotation_changes_nothing_and_is_logged(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "audit"
    with AuditTrail.open(root, clock=DayClock()) as trail:
        seqs = _predictions(trail, "hadm-1", 6)
        before = trail._keyring.active_key_id
        real_wrap = trail._keyring.wrap
        calls = []

        def failing_wrap(key: bytes, **kw):
            calls.append(1)
            if len(calls) == 2:
                raise OSError(5, "secrets backend unreachable")
            return real_wrap(key, **kw)

        monkeypatch.setattr(trail._keyring, "wrap", failing_wrap)
        with pytest.raises(AuditWriteError, match="key rotation failed, the active key is still"):
            trail.rotate_key()
        monkeypatch.undo()
        assert trail._keyring.active_key_id == before
        assert all(trail.decrypt_payload(trail.record(seq)) == {"lactate": i} for i, seq in enumerate(seqs))
        (failed,) = trail.find("key_rotation", status="failed")
        assert "secrets backend unreachable" in failed.fields["error"]
        trail.rotate_key()                                     # a retry succeeds
        assert all(trail.decrypt_payload(trail.record(seq)) == {"lactate": i} for i, seq in enumerate(seqs))
    assert verify_log(root, public_key=pinned(root)).ok


# -- defect 9: signing-key rotation with a signed key transition ------------------------------------
def test_signing_key_rotation_is_followed_by_verify_and_offline_proofs(tmp_path: Path) -> None:
    root = tmp_path / "audit"
    with AuditTrail.open(root, checkpoint_every=3) as trail:
        genesis = trail._signer.public_key                  # what auditors pinned when the log was created
        for i in range(4):
            trail.append("review", review(i))
        old_kid = trail.key_id
        rotation = trail.rotate_signing_key(requester="secops")
        assert trail.key_id != old_kid and rotation.kid == old_kid   # the transition is sealed by the old key
        after = trail.append("review", review(9))
        assert after.kid == trail.key_id
        new_public = trail._signer.public_key
    with AuditTrail.open(root) as trail:                   # the new key file is the one in use
        trail.append("review", review(10))
        bundle = trail.prove(trail.size - 1)
    report = verify_log(root, public_key=genesis)
    assert report.ok and report.n_records == 7, report
    assert "record 6" in verify_bundle(bundle, genesis)
    assert verify_receipt(after.to_dict(), new_public)
    # A forged transition: the insider swaps in their own key without the old key's signature.
    seg = open_segment(root)
    data = seg.read_bytes()
    obj = json.loads(next(line for line in data.split(b"\n") if b'"signing_key_rotation"' in line))
    attacker = Ed25519Signer.generate()
    forged = dict(obj["fields"], new_public_key=rf.b64(public_key_raw(attacker.public_key)),
                  new_kid=attacker.key_id)
    bad = dict(bundle, key_transitions=[{"seq": obj["seq"], **forged}])
    with pytest.raises(ProofError, match="not signed by the key it replaces"):
        verify_bundle(bad, genesis)
    seg.write_bytes(data.replace(obj["fields"]["new_public_key"].encode(), forged["new_public_key"].encode()))
    report = verify_log(root, public_key=genesis)
    assert not report.ok and report.first_bad_seq == obj["seq"] and "not signed by the key it replaces" in report.problem
