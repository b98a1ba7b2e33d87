"""The audit trail's behaviour on real files: records, encryption, pseudonyms, erasure, retention,
rotation, segments, checkpoints, proofs, recovery from torn writes, and the CLI."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from clinops.audit import (
    AuditIntegrityError,
    AuditTrail,
    Checkpoint,
    Ed25519Signer,
    ProofError,
    verify_bundle,
    verify_log,
)
from clinops.audit.cli import main as cli_main
from clinops.audit.keys import public_key_pem
from clinops.audit.merkle import leaf_hash

FEATURES = {"age": 71.0, "gcs": 9.0, "lactate": 3.4, "map": 62.0, "vasopressor": 1}


class Clock:
    """A settable UTC clock, so days (data keys, retention) are under the test's control."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


def pred(i: int, **extra: object) -> dict:
    return {"model_version": "run-7f3a", "dataset_sha256": "5e" * 32, "raw_score": -1.25 + i / 100,
            "probability": 0.1 + i / 1000, "conformal_set": [0, 1], "requester": "ehr-gateway",
            "purpose": "treatment", "prediction_id": f"pred-{i}", **extra}


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2024, 3, 1, 8, 0, tzinfo=timezone.utc))


@pytest.fixture
def trail(tmp_path: Path, clock: Clock):
    t = AuditTrail.open(tmp_path / "audit", segment_records=8, checkpoint_every=5, clock=clock)
    yield t
    t.close()


def pinned_key(root: Path):
    """The trail's public key as an auditor gets it out of band (here: from the private key file)."""
    return Ed25519Signer.load(root / "private" / "signing.key").public_key


def _log_bytes(root: Path) -> bytes:
    """Every byte of the log itself (not the private key store)."""
    out = b""
    for p in sorted(root.rglob("*")):
        if p.is_file() and "private" not in p.parts:
            out += p.read_bytes()
    return out


# -- records --------------------------------------------------------------------------------
def test_append_returns_receipts_that_match_the_bytes_on_disk(trail: AuditTrail) -> None:
    r0 = trail.append("prediction", pred(0), subject="hadm-20001", payload=FEATURES)
    r1, r2 = trail.append_many([{"kind": "prediction", "fields": pred(1), "subject": 20002, "payload": FEATURES},
                                {"kind": "override", "fields": {"prediction_id": "pred-0", "requester": "dr-lee",
                                                                "reason": "clinical judgement"}}])
    assert [r0.seq, r1.seq, r2.seq] == [0, 1, 2]
    lines = [ln for ln in (trail.root / "log" / "seg-00000000000000000000.jsonl").read_bytes().split(b"\n")
             if ln.startswith(b'{"seq"')]
    assert [leaf_hash(ln).hex() for ln in lines] == [r0.record_hash, r1.record_hash, r2.record_hash]
    assert json.loads(lines[1])["prev"] == r0.record_hash and json.loads(lines[2])["prev"] == r1.record_hash
    view = trail.record(0)
    assert view.kind == "prediction" and view.timestamp == "2024-03-01T08:00:00.000000Z"
    assert view.fields["probability"] == 0.1 and view.subject.startswith("ps-")
    assert trail.decrypt_payload(view) == FEATURES
    assert trail.verify().ok


def test_identifiers_and_features_never_reach_the_log_in_clear(trail: AuditTrail) -> None:
    for i in range(3):
        trail.append("prediction", pred(i), subject="hadm-31415926", payload={"lactate_marker": 98765.4321})
    trail.close()
    log = _log_bytes(trail.root)
    assert b"31415926" not in log and b"98765.4321" not in log
    # The pseudonym store holds an HMAC of the id, not the id.
    assert b"31415926" not in (trail.root / "private" / "subjects.sqlite").read_bytes()


@pytest.mark.parametrize("kind,fields,kw,error,match", [
    ("prediction", {k: v for k, v in pred(0).items() if k != "purpose"}, {}, ValueError, r"fields\.purpose: required"),
    ("prediction", pred(0, dataset_sha256="abc"), {}, ValueError, r"fields\.dataset_sha256: must be 64"),
    ("prediction", pred(0, probability=1.5), {}, ValueError, r"fields\.probability: must be in \[0, 1\]"),
    ("prediction", pred(0, raw_score=float("nan")), {}, ValueError, r"fields\.raw_score: must be a finite"),
    ("prediction", pred(0, hadm_id=12), {}, ValueError, r"fields\.hadm_id: patient identifiers"),
    ("prediction", pred(0, note="hadm-9"), {"subject": "hadm-9"}, ValueError, r"fields\.note: holds the subject"),
    ("prediction", pred(0, timestamp="now"), {}, ValueError, r"fields\.timestamp: reserved"),
    ("prediction", pred(0, obj=object()), {}, TypeError, r"fields\.obj: object is not a JSON type"),
    ("override", {"prediction_id": "p"}, {}, ValueError, r"fields\.requester: required"),
    ("erasure", {"requester": "x"}, {}, ValueError, r"kind: 'erasure' is reserved"),
    ("Bad Kind", {"requester": "x"}, {}, ValueError, r"kind: must match"),
    ("review", {"requester": "x"}, {"payload": {"a": 1}}, ValueError, r"payload: needs subject="),
    ("review", {"requester": "x"}, {"subject": "s", "payload": {"mrn": 1}}, ValueError, r"payload\.mrn: patient"),
    ("review", {"requester": "x"}, {"subject": 3.5}, TypeError, r"subject: must be a str or int"),
])
def test_bad_input_is_refused_naming_the_field_and_rule(trail: AuditTrail, kind, fields, kw, error, match) -> None:
    with pytest.raises(error, match=match):
        trail.append(kind, fields, **kw)
    assert trail.size == 0


def test_a_batch_with_one_bad_event_writes_nothing(trail: AuditTrail) -> None:
    with pytest.raises(ValueError, match=r"events\[1\]\.fields\.probability"):
        trail.append_many([{"kind": "prediction", "fields": pred(0)},
                           {"kind": "prediction", "fields": pred(1, probability=-0.1)}])
    assert trail.size == 0


def test_naive_clock_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="clock: timestamps must be timezone-aware"):
        AuditTrail.open(tmp_path / "a", clock=lambda: datetime(2024, 1, 1))
    assert not (tmp_path / "a").exists()


# -- keys -----------------------------------------------------------------------------------
def test_key_files_are_owner_only_and_loose_permissions_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "a"
    AuditTrail.open(root).close()
    for name in ("signing.key", "keyring.json", "subjects.sqlite"):
        assert stat.S_IMODE((root / "private" / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE((root / "private").stat().st_mode) == 0o700
    os.chmod(root / "private" / "keyring.json", 0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        AuditTrail.open(root)


def test_rotation_keeps_old_payloads_readable(trail: AuditTrail, clock: Clock) -> None:
    old = trail.append("prediction", pred(0), subject="s1", payload=FEATURES)
    keyring = json.loads((trail.root / "private" / "keyring.json").read_text())
    first_kek = keyring["active"]
    receipt = trail.rotate_key(requester="secops")
    keyring = json.loads((trail.root / "private" / "keyring.json").read_text())
    # The old KEK is destroyed once nothing is wrapped under it (a pre-rotation copy opens nothing).
    assert keyring["active"] != first_kek and first_kek not in keyring["keys"] and keyring["destroyed"] == [first_kek]
    new = trail.append("prediction", pred(1), subject="s1", payload={"x": 1})
    assert trail.decrypt_payload(trail.record(old.seq)) == FEATURES
    assert trail.decrypt_payload(trail.record(new.seq)) == {"x": 1}
    rot = trail.record(receipt.seq)
    assert rot.kind == "key_rotation" and rot.fields["old_kek_id"] == first_kek
    assert rot.fields["data_keys_rewrapped"] == 1 and rot.fields["kek_ids_destroyed"] == [first_kek]
    kept = trail.rotate_key(destroy_retired=False)
    keyring = json.loads((trail.root / "private" / "keyring.json").read_text())
    assert keyring["keys"][trail.record(kept.seq).fields["old_kek_id"]]["status"] == "retired"
    assert trail.verify().ok


# -- erasure and retention ------------------------------------------------------------------
def test_erasure_shreds_payloads_and_mapping_and_the_log_still_verifies(trail: AuditTrail, clock: Clock) -> None:
    a = [trail.append("prediction", pred(0), subject="hadm-A", payload=FEATURES)]
    b = trail.append("prediction", pred(1), subject="hadm-B", payload=FEATURES)
    clock.advance(days=1)
    a.append(trail.append("prediction", pred(2), subject="hadm-A", payload=FEATURES))  # a second day key
    pseudonym_a = trail.pseudonym("hadm-A", create=False)
    before = trail.verify()

    receipt = trail.erase("hadm-A", requester="dpo@hospital")

    assert all(trail.decrypt_payload(trail.record(r.seq)) is None for r in a)
    assert trail.decrypt_payload(trail.record(b.seq)) == FEATURES
    assert trail.pseudonym("hadm-A", create=False) is None
    erasure = trail.record(receipt.seq)
    assert erasure.kind == "erasure" and erasure.subject is None
    assert erasure.fields == {"pseudonym": pseudonym_a, "requester": "dpo@hospital", "data_keys_destroyed": 2}
    assert b"hadm-A" not in _log_bytes(trail.root)
    report = trail.verify()
    assert report.ok and report.n_records == before.n_records + 1
    shown = trail.show("pred-0")
    assert shown["features"] is None and shown["features_status"] == "shredded"
    assert shown["shredded_by"]["kind"] == "erasure" and shown["shredded_by"]["seq"] == receipt.seq
    with pytest.raises(LookupError, match="no pseudonym"):
        trail.erase("hadm-A", requester="dpo@hospital")
    # The same encounter logged again gets a new, unrelated pseudonym.
    again = trail.append("prediction", pred(3), subject="hadm-A", payload=FEATURES)
    assert trail.record(again.seq).subject not in (None, pseudonym_a)


def test_retention_shreds_whole_days_older_than_the_period(trail: AuditTrail, clock: Clock) -> None:
    old = trail.append("prediction", pred(0), subject="s1", payload=FEATURES)       # 2024-03-01
    clock.advance(days=40)
    recent = trail.append("prediction", pred(1), subject="s1", payload=FEATURES)    # 2024-04-10
    clock.advance(days=5)                                                           # now 2024-04-15
    report = trail.retention(timedelta(days=30), requester="records-office")
    assert report.data_keys_destroyed == 1 and report.cutoff.startswith("2024-03-16")
    assert trail.decrypt_payload(trail.record(old.seq)) is None
    assert trail.decrypt_payload(trail.record(recent.seq)) == FEATURES
    assert trail.show("pred-0")["shredded_by"]["kind"] == "retention"
    assert trail.pseudonym("s1", create=False) is not None  # retention shreds payloads, not the mapping
    assert trail.verify().ok
    with pytest.raises(ValueError, match="older_than"):
        trail.retention(timedelta(days=-1))


# -- reading --------------------------------------------------------------------------------
def test_show_reconstructs_a_prediction_with_its_related_records(trail: AuditTrail) -> None:
    trail.append("prediction", pred(4), subject="hadm-4", payload=FEATURES)
    trail.append("escalation", {"prediction_id": "pred-4", "requester": "monitor", "reason": "uncertain"})
    trail.append("override", {"prediction_id": "pred-4", "requester": "dr-ng", "decision": "admit"})
    shown = trail.show("pred-4")
    assert (shown["model_version"], shown["dataset_sha256"], shown["requester"]) == ("run-7f3a", "5e" * 32,
                                                                                   "ehr-gateway")
    assert shown["probability"] == pytest.approx(0.104) and shown["conformal_set"] == [0, 1]
    assert shown["features"] == FEATURES and shown["features_status"] == "decrypted"
    assert [r["kind"] for r in shown["related"]] == ["escalation", "override"]
    assert trail.show("pred-4", decrypt=False)["features_status"] == "withheld"
    with pytest.raises(LookupError, match="no prediction record"):
        trail.show("pred-404")
    assert [v.seq for v in trail.find("override", prediction_id="pred-4")] == [2]
    assert [v.seq for v in trail.find(prediction_id="pred-4")] == [0, 1, 2]


def test_read_only_auditor_without_private_keys(trail: AuditTrail, tmp_path: Path) -> None:
    trail.append("prediction", pred(0), subject="s", payload=FEATURES)
    trail.close()
    copy = tmp_path / "auditor"
    shutil.copytree(trail.root, copy, ignore=shutil.ignore_patterns("private", "lock"))
    pinned = Ed25519Signer.load(trail.root / "private" / "signing.key").public_key  # handed over out of band
    with AuditTrail.open(copy, read_only=True) as ro:
        assert ro.show("pred-0", decrypt=False)["probability"] == 0.1
        with pytest.raises(ValueError, match="public_key: required"):
            ro.verify()  # the copy's own signing.pub proves nothing
        assert ro.verify(public_key=pinned).ok
        with pytest.raises(PermissionError, match="keyring"):
            ro.show("pred-0")
        with pytest.raises(PermissionError, match="read-only"):
            ro.append("review", {"requester": "x"})
    # The auditor can still hand out a proof: a stored checkpoint covers the record.
    assert cli_main(["prove", "0", "--root", str(copy), "--out", str(tmp_path / "p.json")]) == 0
    assert "record 0 (prediction" in verify_bundle(tmp_path / "p.json", copy / "signing.pub")
    assert not (copy / "private").exists()


def test_use_after_fork_is_refused(trail: AuditTrail) -> None:
    trail.append("review", {"requester": "qa"})
    pid = os.fork()
    if pid == 0:  # the child shares the parent's lock descriptor: it must not write
        try:
            trail.append("review", {"requester": "child"})
        except RuntimeError as exc:
            os._exit(0 if "after fork" in str(exc) else 2)
        os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert trail.size == 1


# -- segments, checkpoints, proofs ------------------------------------------------------------
def test_closed_segments_are_read_only_beside_their_checkpoint(trail: AuditTrail) -> None:
    for i in range(19):
        trail.append("review", {"requester": "qa", "n": i})
    log = trail.root / "log"
    closed = sorted(p.name for p in log.glob("*.checkpoint"))
    assert closed == ["seg-00000000000000000000.checkpoint", "seg-00000000000000000008.checkpoint"]
    for first in (0, 8):
        seg = log / f"seg-{first:020d}.jsonl"
        assert stat.S_IMODE(seg.stat().st_mode) == 0o400
        cp = Checkpoint.from_bytes((log / f"seg-{first:020d}.checkpoint").read_bytes())
        assert cp.size == first + 8
    assert stat.S_IMODE((log / "seg-00000000000000000016.jsonl").stat().st_mode) == 0o600
    sizes = sorted(int(p.stem) for p in (trail.root / "checkpoints").glob("*.checkpoint"))
    assert sizes == [5, 8, 10, 15, 16]  # every 5 records, and at each segment close
    assert trail.verify().n_checkpoints == 7


def test_inclusion_proof_checks_offline_and_tampering_is_caught(trail: AuditTrail, tmp_path: Path) -> None:
    for i in range(13):
        trail.append("prediction", pred(i), subject=f"s{i % 3}", payload=FEATURES)
    bundle = trail.prove(6)
    pub = trail.root / "signing.pub"
    assert "record 6 (prediction" in verify_bundle(json.dumps(bundle), pub)
    bad_record = dict(bundle, record=bundle["record"].replace('"probability":0.106', '"probability":0.9'))
    bad_path = dict(bundle, proof=[bundle["proof"][0][:-1] + ("0" if bundle["proof"][0][-1] != "0" else "1")]
                    + bundle["proof"][1:])
    bad_seq = dict(bundle, seq=7)
    for forged, match in [(bad_record, "do not lead"), (bad_path, "do not lead"), (bad_seq, "has seq 6")]:
        with pytest.raises(ProofError, match=match):
            verify_bundle(forged, pub)
    other = AuditTrail.open(tmp_path / "other")
    with pytest.raises(ProofError, match="not validly signed by the given public key"):
        verify_bundle(bundle, other.root / "signing.pub")
    other.close()


def test_the_documented_hashlib_only_check_agrees(trail: AuditTrail, tmp_path: Path) -> None:
    doc = (Path(__file__).resolve().parents[1] / "clinops" / "docs" / "audit.md").read_text()
    code = doc.split("<!-- offline-check", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    for i in range(11):
        trail.append("review", {"requester": "qa", "n": i})
    for seq in (0, 5, 10):
        good = tmp_path / f"good{seq}.json"
        good.write_text(json.dumps(trail.prove(seq)))
        run = subprocess.run([sys.executable, "-c", code, str(good)], capture_output=True, text=True, check=True)
        assert run.stdout.strip() == "record included"
        bundle = trail.prove(seq)
        bundle["record"] = bundle["record"].replace('"n":', '"n":1')
        good.write_text(json.dumps(bundle))
        run = subprocess.run([sys.executable, "-c", code, str(good)], capture_output=True, text=True, check=True)
        assert run.stdout.strip() == "NOT INCLUDED"


def test_consistency_proof_between_checkpoints(trail: AuditTrail) -> None:
    for i in range(6):
        trail.append("review", {"requester": "qa", "n": i})
    old = trail.checkpoint()
    for i in range(9):
        trail.append("review", {"requester": "qa", "n": i})
    bundle = trail.consistency_proof(old)
    assert "extends size 6" in verify_bundle(bundle, trail.root / "signing.pub")
    forged_old = Checkpoint(old.log_id, old.size, "00" * 32, old.ts, old.kid, old.sig)
    with pytest.raises(ProofError):
        verify_bundle(dict(bundle, old=forged_old.to_dict()), trail.root / "signing.pub")


def test_range_verification_and_the_parallel_path_agree(trail: AuditTrail) -> None:
    for i in range(30):
        trail.append("review", {"requester": "qa", "n": i})
    trail.close()
    key = pinned_key(trail.root)
    report = verify_log(trail.root, public_key=key, start=10, end=20)
    assert report.ok and report.n_records == 10
    parallel = verify_log(trail.root, public_key=key, parallel=True, workers=2)
    assert parallel.ok and parallel.n_records == 30 == verify_log(trail.root, public_key=key, parallel=False).n_records
    # Damage record 25: a range that ends before it still verifies, the whole log does not.
    seg = trail.root / "log" / "seg-00000000000000000024.jsonl"
    os.chmod(seg, 0o600)
    seg.write_bytes(seg.read_bytes().replace(b'"n":25', b'"n":52'))
    assert verify_log(trail.root, public_key=key, end=20).ok
    for parallel in (False, True):
        report = verify_log(trail.root, public_key=key, parallel=parallel)
        assert not report.ok and report.first_bad_seq == 25, report


# -- threads, recovery ----------------------------------------------------------------------
def test_concurrent_threads_share_commits(trail: AuditTrail) -> None:
    receipts: list = []

    def work(t: int) -> None:
        for i in range(40):
            receipts.append(trail.append("review", {"requester": f"t{t}", "i": i}))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(r.seq for r in receipts) == list(range(240))
    report = trail.verify()
    assert report.ok and report.n_records == 240
    assert report.n_seals < 240  # concurrent appends were grouped into shared commits


@pytest.mark.parametrize("tail", [
    b'{"seq":5,"prev":"',                                     # a torn line
    None,                                                     # complete records whose seal never came
    b"\x00" * 300,                                            # zero-filled blocks after power loss
])
def test_torn_tail_is_cut_kept_and_logged_on_open(tmp_path: Path, clock: Clock, tail: bytes | None) -> None:
    root = tmp_path / "a"
    with AuditTrail.open(root, clock=clock) as t:
        acked = [t.append("review", {"requester": "qa", "n": i}) for i in range(5)]
    seg = root / "log" / "seg-00000000000000000000.jsonl"
    clean = seg.read_bytes()
    if tail is None:  # the two records of a 6th commit, written in full but not its seal
        shutil.copytree(root, tmp_path / "b")
        with AuditTrail.open(tmp_path / "b", clock=clock) as other:
            other.append_many([{"kind": "review", "fields": {"requester": "qa"}}] * 2)
        added = (tmp_path / "b" / seg.relative_to(root)).read_bytes()[len(clean):]
        tail = added[:added.index(b'{"seal":')]
        assert tail.count(b"\n") == 2
    seg.write_bytes(clean + tail)
    report = verify_log(root, public_key=pinned_key(root))
    assert not report.ok and report.first_bad_seq == 5
    assert ("torn" in report.problem or "not sealed" in report.problem), report.problem

    with AuditTrail.open(root, clock=clock) as t:
        assert len(t.recoveries) == 1
        rec = t.recoveries[0]
        assert rec.offset == len(clean) and rec.n_bytes == len(tail)
        assert rec.n_records_dropped == (2 if tail.endswith(b"\n") else 0)
        assert Path(rec.quarantine).read_bytes() == tail
        assert [t.record(r.seq).record_hash for r in acked] == [r.record_hash for r in acked]
        logged = t.find("recovery")
        assert len(logged) == 1 and logged[0].fields["bytes"] == len(tail)
        assert t.verify().ok


def test_damage_followed_by_sealed_commits_is_not_repaired(tmp_path: Path) -> None:
    root = tmp_path / "a"
    with AuditTrail.open(root) as t:
        for i in range(6):
            t.append("review", {"requester": "qa", "n": i})
    seg = root / "log" / "seg-00000000000000000000.jsonl"
    data = seg.read_bytes()
    seg.write_bytes(data.replace(b'"n":1', b'"n":7', 1))
    with pytest.raises(AuditIntegrityError, match="a complete seal follows the damage"):
        AuditTrail.open(root)
    assert seg.read_bytes() != data  # left as found, for investigation


# -- CLI ------------------------------------------------------------------------------------
def test_cli_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "audit"
    with AuditTrail.open(root) as t:
        for i in range(4):
            t.append("prediction", pred(i), subject=f"hadm-{i}", payload=FEATURES)
    r = ["--root", str(root)]
    assert cli_main(["verify", *r, "--public-key", str(root / "signing.pub")]) == 1
    assert "outside the log" in capsys.readouterr().err  # the log's own copy of its key proves nothing
    assert cli_main(["verify", *r]) == 2  # no pinned key: usage error
    pub = str(tmp_path / "pinned.pub")  # handed over out of band
    Path(pub).write_bytes(public_key_pem(pinned_key(root)))
    assert cli_main(["verify", *r, "--public-key", pub]) == 0
    assert "OK: 4 records" in capsys.readouterr().out
    assert cli_main(["show", "pred-2", *r]) == 0
    assert json.loads(capsys.readouterr().out)["features"] == FEATURES
    assert cli_main(["prove", "2", *r, "--out", str(tmp_path / "proof.json")]) == 0
    assert cli_main(["check-proof", str(tmp_path / "proof.json"), "--public-key", pub]) == 0
    assert "record 2 (prediction" in capsys.readouterr().out
    assert cli_main(["checkpoint", *r, "--out", str(tmp_path / "witness.json")]) == 0
    assert cli_main(["erase", "hadm-2", *r, "--requester", "dpo"]) == 0
    assert cli_main(["erase", "hadm-2", *r, "--requester", "dpo"]) == 1
    assert "no pseudonym" in capsys.readouterr().err
    assert cli_main(["retention", *r, "--days", "3650"]) == 0
    assert cli_main(["rotate-key", *r]) == 0
    assert cli_main(["recover", *r]) == 0
    assert cli_main(["prove", *r, "--consistency", str(tmp_path / "witness.json"), "--out",
                     str(tmp_path / "cons.json")]) == 0
    assert cli_main(["check-proof", str(tmp_path / "cons.json"), "--public-key", pub]) == 0
    capsys.readouterr()
    assert cli_main(["verify", *r, "--public-key", pub, "--trusted", str(tmp_path / "witness.json")]) == 0
    assert capsys.readouterr().out.startswith("OK: ")
    # Break one record: exit code 1 and the record named.
    seg = next((root / "log").glob("seg-*.jsonl"))
    os.chmod(seg, 0o600)
    seg.write_bytes(seg.read_bytes().replace(b'"prediction_id":"pred-1"', b'"prediction_id":"pred-X"'))
    assert cli_main(["verify", *r, "--public-key", pub]) == 1
    assert "FAILED: record 1:" in capsys.readouterr().out
    assert cli_main(["show", "nope", *r]) == 1
