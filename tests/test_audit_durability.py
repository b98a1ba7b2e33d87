"""Durability and concurrency with real processes.

- Crash test: a writer process is killed with SIGKILL 24 times in a row: at random moments
  during single appends and during large ``append_many`` batches, and (every fourth round) at
  the moment half of a commit is on disk, by a test-only hook that stops its ``write`` half-way,
  because a random SIGKILL rarely lands inside the ``write`` call itself. The writer prints
  ``seq prediction_id`` only after ``append`` returned; after every kill the next writer opens
  (recovers) the same log, and at the end every acknowledged record is there, unchanged, the
  torn tails were cut and logged, and the log verifies.
- Concurrency test: two writer processes append 2,000 records each at the same time (half the
  calls one record, half a batch of 2..10, so there are over a thousand interleaved commits);
  the result is one valid chain of 4,000 records holding both processes' records.

This file is also the writer: ``python tests/test_audit_durability.py writer ROOT MODE N SEED TAG``.
"""
from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from clinops.audit import AuditTrail, Ed25519Signer, verify_log

N_KILLS = 24
SEGMENT_RECORDS = 500
CHECKPOINT_EVERY = 100


def _event(rng: random.Random, pid: str) -> dict:
    return {"kind": "prediction", "subject": f"hadm-{rng.randrange(25)}",
            "payload": {"lactate": round(rng.uniform(0.5, 9), 2), "map": rng.randint(40, 110)},
            "fields": {"model_version": "run-1", "dataset_sha256": "cd" * 32, "raw_score": round(rng.gauss(0, 1), 4),
                       "probability": round(rng.random(), 4), "conformal_set": [1], "requester": "ehr",
                       "purpose": "treatment", "prediction_id": pid}}


def writer(root: str, mode: str, n: int, seed: int, tag: str) -> None:
    """Append ``n`` records; print ``seq prediction_id`` for each once its append has returned."""
    rng = random.Random(seed)
    trail = AuditTrail.open(Path(root), segment_records=SEGMENT_RECORDS, checkpoint_every=CHECKPOINT_EVERY)
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    if sys.stdin.readline().strip() != "go":
        return
    i = 0
    if mode == "torn":  # a few honest commits, then one whose write stops half-way until SIGKILL
        for _ in range(rng.randint(1, 4)):
            events = [_event(rng, f"{tag}-{i + j}") for j in range(rng.randint(1, 30))]
            receipts = trail.append_many(events)
            out.write("".join(f"{r.seq} {e['fields']['prediction_id']}\n" for r, e in zip(receipts, events)))
            out.flush()
            i += len(events)
        store = trail._store
        real_append = store.append

        def half_then_hang(first: int, data: bytes) -> None:
            real_append(first, data[:len(data) // 2])
            out.write("torn\n")
            out.flush()
            time.sleep(120)

        store.append = half_then_hang
        trail.append_many([_event(rng, f"{tag}-{i + j}") for j in range(40)])
        return
    while i < n:
        size = {"batch": rng.randint(50, 800), "single": 1, "mixed": rng.choice([1, rng.randint(2, 10)])}[mode]
        size = min(size, n - i)
        events = [_event(rng, f"{tag}-{i + j}") for j in range(size)]
        if size == 1:
            receipts = [trail.append(events[0]["kind"], events[0]["fields"], subject=events[0]["subject"],
                                     payload=events[0]["payload"])]
        else:
            receipts = trail.append_many(events)
        out.write("".join(f"{r.seq} {e['fields']['prediction_id']}\n" for r, e in zip(receipts, events)))
        out.flush()
        i += size
    trail.close()
    out.write("done\n")
    out.flush()


def _spawn(root: Path, mode: str, n: int, seed: int, tag: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, __file__, "writer", str(root), mode, str(n), str(seed), tag],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    return proc


def _acks(text: str) -> dict[int, str]:
    """Acknowledged records from a writer's output; a line cut by the kill is ignored."""
    acked = {}
    for line in text.splitlines(keepends=True):
        parts = line.split()
        if line.endswith("\n") and len(parts) == 2 and parts[0].isdigit():
            acked[int(parts[0])] = parts[1]
    return acked


def test_sigkill_at_random_points_loses_no_acknowledged_record(tmp_path: Path) -> None:
    root = tmp_path / "audit"
    rng = random.Random(7)
    acked: dict[int, str] = {}
    killed_mid_batch = torn_rounds = 0
    for round_ in range(N_KILLS):
        mode = ("single", "batch", "single", "torn")[round_ % 4]
        proc = _spawn(root, mode, 100_000, seed=round_, tag=f"r{round_}")
        proc.stdin.write("go\n")
        proc.stdin.flush()
        if mode == "torn":  # kill exactly while half a commit is on disk
            lines = []
            while not lines or lines[-1] != "torn\n":
                lines.append(proc.stdout.readline())
                assert lines[-1], "writer exited before tearing its commit"
        else:
            time.sleep(rng.uniform(0.005, 0.12))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        if mode == "torn":
            out = "".join(lines) + out
            torn_rounds += 1
        assert proc.returncode == -signal.SIGKILL
        got = _acks(out)
        assert not set(got) & set(acked), "a sequence number was handed out twice"
        acked.update(got)
        killed_mid_batch += mode == "batch"
    assert len(acked) > 100, "the writers should have acknowledged records before being killed"

    with AuditTrail.open(root) as trail:
        report = trail.verify()
        assert report.ok, report
        for seq, pid in acked.items():
            assert trail.record(seq).fields["prediction_id"] == pid
        recoveries = trail.find("recovery")
        predictions = trail.find("prediction")
    assert len(recoveries) >= torn_rounds and all(r.fields["bytes"] > 0 for r in recoveries)
    quarantined = list((root / "quarantine").iterdir())
    assert len(quarantined) == len(recoveries)
    # Every prediction in the log is one some writer made (recovery never invents records), and
    # the log holds exactly the acknowledged ones plus those whose ack was lost with the process.
    # Commits are atomic and in order, so each writer's records form a gap-free prefix of what it
    # tried to write, containing every record it acknowledged: nothing lost, nothing invented.
    by_round: dict[str, list[int]] = {}
    for view in predictions:
        tag, index = view.fields["prediction_id"].split("-")
        by_round.setdefault(tag, []).append(int(index))
    for tag, indexes in by_round.items():
        assert indexes == list(range(len(indexes))), f"round {tag}: records missing or out of order"
    for pid in acked.values():
        tag, index = pid.split("-")
        assert int(index) < len(by_round[tag])
    print(f"crash test: {N_KILLS} SIGKILLs ({killed_mid_batch} at random points during large batches, {torn_rounds} "
          f"while half a commit was written), {len(acked)} acknowledged records all present, {len(recoveries)} torn "
          f"tails recovered and logged, log of {report.n_records} records verifies")


def test_two_processes_appending_at_once_make_one_valid_chain(tmp_path: Path) -> None:
    root = tmp_path / "audit"
    AuditTrail.open(root, segment_records=SEGMENT_RECORDS, checkpoint_every=CHECKPOINT_EVERY).close()
    n = 2_000  # per process; half the calls append one record, half a batch of 2..10
    procs = {tag: _spawn(root, "mixed", n, seed=i, tag=tag) for i, tag in enumerate(("A", "B"))}
    for proc in procs.values():
        proc.stdin.write("go\n")
        proc.stdin.flush()
    outs = {tag: proc.communicate(timeout=300)[0] for tag, proc in procs.items()}
    assert all(proc.returncode == 0 for proc in procs.values())
    acks = {tag: _acks(out) for tag, out in outs.items()}
    assert len(acks["A"]) == len(acks["B"]) == n
    assert not set(acks["A"]) & set(acks["B"])
    assert set(acks["A"]) | set(acks["B"]) == set(range(2 * n))
    owner = [("A" if seq in acks["A"] else "B") for seq in range(2 * n)]
    switches = sum(a != b for a, b in zip(owner, owner[1:]))
    assert switches >= 2, "the two writers never interleaved"
    # The key pinned as an auditor would hold it (signing.pub in the log directory proves nothing).
    report = verify_log(root, public_key=Ed25519Signer.load(root / "private" / "signing.key").public_key)
    assert report.ok and report.n_records == 2 * n, report
    with AuditTrail.open(root, read_only=True) as trail:
        for tag in ("A", "B"):
            for seq, pid in list(acks[tag].items())[::97]:
                assert trail.record(seq).fields["prediction_id"] == pid
    print(f"concurrency test: 2 processes x {n} appends, {switches} hand-overs between them, one chain of "
          f"{report.n_records} records, {report.n_seals} seals, verifies")


if __name__ == "__main__" and len(sys.argv) == 7 and sys.argv[1] == "writer":
    writer(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
