"""The record index (issue 16, item 9): a prediction lookup reads the records it names, not the log.

Each test compares the indexed lookup with what a scan of the log finds (``AuditTrail.find``),
and makes the scan fail where the lookup must not scan.
"""
from __future__ import annotations

import shutil
import sqlite3
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from clinops.audit import AuditIntegrityError, AuditTrail

FEATURES = {"age": 71.0, "lactate": 3.4}


def pred(i: int) -> dict:
    return {"model_version": "run-7f3a", "dataset_sha256": "5e" * 32, "raw_score": -1.25 + i / 100,
            "probability": 0.1 + i / 1000, "conformal_set": [0, 1], "requester": "ehr-gateway",
            "purpose": "treatment", "prediction_id": f"pred-{i}"}


def fill(trail: AuditTrail, n: int) -> None:
    """``n`` predictions (subject hadm-<i % 3>), an override of every fifth, a review of pred-1."""
    events = []
    for i in range(n):
        events.append({"kind": "prediction", "fields": pred(i), "subject": f"hadm-{i % 3}", "payload": FEATURES})
        if i % 5 == 0:
            events.append({"kind": "override", "fields": {"prediction_id": f"pred-{i}", "requester": "dr-lee"}})
    events.append({"kind": "review", "fields": {"prediction_id": "pred-1", "requester": "dr-kim"}})
    for start in range(0, len(events), 7):  # several commits
        trail.append_many(events[start:start + 7])


def scanned(trail: AuditTrail, prediction_id: str) -> dict:
    """What ``show`` answered before the index: the records a full scan finds."""
    views = trail.find(prediction_id=prediction_id)
    (rec,) = [v for v in views if v.kind == "prediction"]
    return {"seq": rec.seq, "record_hash": rec.record_hash, "fields": rec.fields,
            "related": [(v.seq, v.kind, v.fields) for v in views if v.seq != rec.seq]}


def shown(trail: AuditTrail, prediction_id: str) -> dict:
    out = trail.show(prediction_id)
    return {"seq": out["seq"], "record_hash": out["record_hash"], "fields": out["fields"],
            "related": [(r["seq"], r["kind"], r["fields"]) for r in out["related"]]}


def no_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("the lookup scanned the log")

    monkeypatch.setattr(AuditTrail, "_record_lines", refuse)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "audit"
    with AuditTrail.open(root, segment_records=20, checkpoint_every=8) as trail:
        fill(trail, 30)
    return root


def test_a_lookup_after_a_restart_reads_the_index_and_answers_as_a_scan(root: Path, monkeypatch) -> None:
    with AuditTrail.open(root) as trail:
        expected = {pid: scanned(trail, pid) for pid in ("pred-0", "pred-1", "pred-17", "pred-29")}
    index = root / "index" / "records.sqlite"
    with AuditTrail.open(root) as trail:  # a first lookup builds the index
        assert shown(trail, "pred-0") == expected["pred-0"]
    assert stat.S_IMODE(index.stat().st_mode) == 0o600 and stat.S_IMODE(index.parent.stat().st_mode) == 0o700
    no_scan(monkeypatch)
    with AuditTrail.open(root) as trail:  # after a restart: the index on disk, extended, never a scan
        for pid, answer in expected.items():
            assert shown(trail, pid) == answer
        assert trail.show("pred-1")["related"][0]["kind"] == "review"
        with pytest.raises(LookupError, match="no prediction record"):
            trail.show("pred-999")


def test_records_appended_by_another_writer_are_found(root: Path, monkeypatch) -> None:
    with AuditTrail.open(root) as first, AuditTrail.open(root) as second:
        assert first.show("pred-3")["seq"] == second.show("pred-3")["seq"]
        second.append("prediction", pred(100), subject="hadm-9", payload=FEATURES)
        second.append("override", {"prediction_id": "pred-3", "requester": "dr-new"})
        expected = scanned(first, "pred-3")
        no_scan(monkeypatch)
        assert first.show("pred-100")["features"] == FEATURES
        assert shown(first, "pred-3") == expected and expected["related"][-1][2]["requester"] == "dr-new"


def test_a_lookup_after_an_erasure_says_shredded_and_by_which_record(root: Path, monkeypatch) -> None:
    with AuditTrail.open(root) as trail:
        assert trail.show("pred-4")["features_status"] == "decrypted"
        receipt = trail.erase("hadm-1", requester="dpo@hospital")          # pred-1, pred-4, ... are hadm-1's
        after = trail.show("pred-4")
        assert after["features"] is None and after["features_status"] == "shredded"
        assert after["shredded_by"] == {"kind": "erasure", "seq": receipt.seq, "timestamp": receipt.ts}
        assert trail.show("pred-3")["features_status"] == "decrypted"      # another subject
    no_scan(monkeypatch)
    with AuditTrail.open(root) as trail:                                   # and after a restart
        again = trail.show("pred-4")
        assert (again["features_status"], again["shredded_by"]) == ("shredded", after["shredded_by"])
        assert again["record_hash"] == after["record_hash"]


def test_a_retention_cut_is_named_as_the_shredder(tmp_path: Path) -> None:
    clock = [datetime(2024, 3, 1, 8, tzinfo=timezone.utc)]
    with AuditTrail.open(tmp_path / "audit", clock=lambda: clock[0]) as trail:
        trail.append("prediction", pred(0), subject="hadm-0", payload=FEATURES)
        clock[0] = datetime(2024, 3, 9, 8, tzinfo=timezone.utc)
        report = trail.retention(timedelta(days=3))
        answer = trail.show("pred-0")
    assert answer["features_status"] == "shredded"
    assert answer["shredded_by"] == {"kind": "retention", "seq": report.receipt.seq, "timestamp": report.receipt.ts}


def test_a_deleted_or_corrupt_index_is_rebuilt(root: Path) -> None:
    with AuditTrail.open(root) as trail:
        expected = scanned(trail, "pred-12")
        assert shown(trail, "pred-12") == expected
    index = root / "index" / "records.sqlite"
    index.unlink()
    with AuditTrail.open(root) as trail:
        assert shown(trail, "pred-12") == expected
    index.write_bytes(b"not a database" * 100)
    with AuditTrail.open(root) as trail:
        assert shown(trail, "pred-12") == expected
    con = sqlite3.connect(index)
    con.executescript("DROP TABLE entries; CREATE TABLE entries (x);")   # a database, not an index any more
    con.close()
    with AuditTrail.open(root) as trail:
        assert shown(trail, "pred-12") == expected


def test_an_index_that_points_elsewhere_cannot_change_the_answer(root: Path, caplog) -> None:
    with AuditTrail.open(root) as trail:
        expected = scanned(trail, "pred-12")
        shown(trail, "pred-12")
    con = sqlite3.connect(root / "index" / "records.sqlite")
    with con:  # point pred-12's prediction at another record's bytes (pred-13's)
        other = con.execute("SELECT segment, start, length FROM entries WHERE key = ?", ('p"pred-13"',)).fetchone()
        con.execute("UPDATE entries SET segment = ?, start = ?, length = ? WHERE key = ? AND seq = ?",
                    (*other, 'p"pred-12"', expected["seq"]))
    con.close()
    with AuditTrail.open(root) as trail:
        assert shown(trail, "pred-12") == expected
    assert "rebuilding it from the log" in caplog.text


def test_an_index_of_a_longer_or_other_log_is_thrown_away_on_open(root: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    with AuditTrail.open(root) as trail:
        trail.append("prediction", pred(200), subject="hadm-0", payload=FEATURES)
        trail.show("pred-200")                        # the index now covers one more record than the copy
    assert not (copy / "index").exists()
    shutil.copytree(root / "index", copy / "index")
    with AuditTrail.open(copy) as trail:
        with pytest.raises(LookupError):
            trail.show("pred-200")
        assert trail.show("pred-7")["seq"] == scanned(trail, "pred-7")["seq"]


def test_a_record_altered_on_disk_after_open_is_refused(root: Path) -> None:
    with AuditTrail.open(root) as trail:
        seq = trail.show("pred-2")["seq"]
        segment = root / "log" / "seg-00000000000000000000.jsonl"
        data = segment.read_bytes()
        segment.write_bytes(data.replace(b'"raw_score":-1.23', b'"raw_score":-9.23', 1))
        with pytest.raises(AuditIntegrityError, match=f"record {seq}"):
            trail.show("pred-2")


def test_a_read_only_trail_keeps_its_index_in_memory(root: Path, tmp_path: Path) -> None:
    copy = tmp_path / "handed-to-auditor"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("private", "lock", "index"))
    with AuditTrail.open(copy, read_only=True) as reader:
        answer = reader.show("pred-5", decrypt=False)
        assert answer["features_status"] == "withheld" and answer["seq"] == scanned(reader, "pred-5")["seq"]
    assert not (copy / "index").exists()
