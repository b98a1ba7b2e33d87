"""Benchmark the audit trail: durable appends per second and records verified per second.

Usage::

    .venv/bin/python benchmarks/bench_audit.py [--records 20000] [--batch 100] [--threads 8] [--seed 0]

What is measured (all on a fresh trail in a temporary directory on the same disk as /tmp):

- group commit: ``append_many`` of ``--batch`` prediction records (each with a subject out of
  1,000 and a 17-feature encrypted payload) per call. Every call is one commit: one ``write``,
  one ``fdatasync`` of the segment, one Ed25519 seal, plus a SQLite commit (fsync) when new
  pseudonyms or data keys are created. An append counts only once its call has returned.
- threads: ``--threads`` threads calling ``append`` one record at a time; concurrent calls are
  gathered into one commit (leader/follower group commit).
- single: one ``append`` at a time from one thread (one commit, one fdatasync per record).
- verify: :func:`clinops.audit.verify_log` over the whole log (every record's layout, seq and
  link, every seal's Ed25519 signature, the Merkle tree, every checkpoint), median of 3 runs,
  with 2 worker processes (the default; logs of 8 MiB or more) and with one process, for the
  group-commit log and for the single-append log (one seal, so one Ed25519 check, per record).
- witness and store: the cost of publishing a checkpoint to a witness (``clinops audit
  witness``, a separate process on a loopback port) and of uploading it to an S3 bucket with
  Object Lock (SeaweedFS ``weed mini``, skipped when it is not installed): ``--checkpoints``
  calls of ``checkpoint()`` after one append each, locally, with the witness (consistency proof,
  HTTP round trip, the witness's checks and cosignature) and with the Object Lock upload; and
  the group-commit rate with the witness attached.

- lookup: ``AuditTrail.show`` of one prediction in a log of ``--lookup-records`` records (issue
  16, item 9), median of 5 ids spread over the log: through the record index (a lookup reads
  the records it names; the first lookup after the trail's creation builds the index, timed
  apart, as is a lookup after reopening), against the full scan ``show`` did before
  (``AuditTrail.find(prediction_id=...)``, every record read).

Wall-clock rates depend on what else runs on the machine; the benchmark also reports rates per
CPU-second (this process and its verify workers), which do not, and the load average at the end.
Prints a Markdown table and one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

from clinops.audit import AuditTrail, Ed25519Signer, verify_log
from clinops.audit.devservers import binary, start_seaweedfs, start_witness
from clinops.audit.keys import public_key_pem
from clinops.audit.witness import WitnessClient, WitnessKey

FEATURES = ("age", "sex_male", "dx_chapter", "gcs", "map", "heart_rate", "resp_rate", "temperature", "spo2",
            "creatinine", "lactate", "albumin", "bilirubin", "platelets", "inr", "vasopressor", "mech_vent")


def _event(rng: random.Random, i: int) -> dict:
    p = rng.random()
    return {"kind": "prediction",
            "fields": {"model_version": "3f2a9c1e8b7d4c6a9e0f1a2b3c4d5e6f", "dataset_sha256": "ab" * 32,
                       "raw_score": round(rng.gauss(0, 1), 6), "probability": round(p, 6),
                       "conformal_set": [1] if p > 0.6 else [0] if p < 0.2 else [0, 1],
                       "requester": "ehr-gateway", "purpose": "treatment", "prediction_id": f"pred-{i:08d}"},
            "subject": f"enc-{rng.randrange(1000):06d}",
            "payload": {name: round(rng.uniform(0, 200), 3) for name in FEATURES}}


def _cpu() -> float:
    """CPU seconds used so far by this process and its reaped children (verify's workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _median_verify(root: Path, public_key: Path, workers: int = 2) -> tuple[float, float, int]:
    """Median wall seconds, median CPU seconds, records; over 3 runs."""
    times, cpus, n = [], [], 0
    for _ in range(3):
        c0, t0 = _cpu(), time.perf_counter()
        report = verify_log(root, public_key=public_key, workers=workers, parallel=workers > 1)
        times.append(time.perf_counter() - t0)
        cpus.append(_cpu() - c0)
        if not report.ok:
            raise SystemExit(f"verification failed: {report.summary()}")
        n = report.n_records
    return statistics.median(times), statistics.median(cpus), n


def _pinned(root: Path):
    """The public key as an auditor pins it (from the private key, not the log's own signing.pub)."""
    return Ed25519Signer.load(root / "private" / "signing.key").public_key


def _checkpoint_seconds(root: Path, n: int, signer: Ed25519Signer, **publish) -> float:
    """Mean seconds of one checkpoint() (sign, publish to a witness / archive when given, store)."""
    with AuditTrail.open(root, signer=signer, **publish) as trail:
        total = 0.0
        for i in range(n):
            trail.append("review", {"requester": "bench", "n": i})
            t0 = time.perf_counter()
            trail.checkpoint()
            total += time.perf_counter() - t0
    return total / n


def _lookup(root: Path, n: int, batch: int, rng: random.Random) -> dict[str, float | int]:
    """Median ``show`` time through the index and by the scan ``show`` used before (issue 16, item 9)."""
    with AuditTrail.open(root) as trail:
        for i in range(0, n, max(batch, 1000)):
            trail.append_many([_event(rng, j) for j in range(i, min(n, i + max(batch, 1000)))])
    ids = [f"pred-{int(n * k / 5):08d}" for k in range(5)]

    def median_ms(call) -> float:
        times = []
        for pid in ids:
            t0 = time.perf_counter()
            call(pid)
            times.append(time.perf_counter() - t0)
        return round(1e3 * statistics.median(times), 3)

    with AuditTrail.open(root) as trail:
        t0 = time.perf_counter()
        trail.show(ids[0])                                      # builds the index: one pass over the log
        build = time.perf_counter() - t0
        indexed = median_ms(trail.show)
        scan = median_ms(lambda pid: trail.find(prediction_id=pid))
    with AuditTrail.open(root) as trail:
        reopened = median_ms(trail.show)
    return {"lookup_log_records": n, "lookup_index_build_s": round(build, 2), "lookup_ms_indexed": indexed,
            "lookup_ms_indexed_after_reopen": reopened, "lookup_ms_scan": scan}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=20_000, help="records in the group-commit run")
    ap.add_argument("--batch", type=int, default=100, help="records per append_many call")
    ap.add_argument("--threads", type=int, default=8, help="threads in the threaded run")
    ap.add_argument("--single", type=int, default=2_000, help="records in the single-append run")
    ap.add_argument("--checkpoints", type=int, default=200, help="checkpoints timed with and without the witness")
    ap.add_argument("--lookup-records", type=int, default=100_000,
                    help="records in the log the prediction lookup is timed on (0: skip)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    results: dict[str, float | int | str] = {"fsync_policy": "fdatasync per commit, before any append returns"}
    with tempfile.TemporaryDirectory(prefix="bench-audit-", dir="/tmp") as tmp:
        # group commit
        root = Path(tmp) / "group"
        with AuditTrail.open(root) as trail:
            events = [_event(rng, i) for i in range(args.records)]
            c0, t0 = _cpu(), time.perf_counter()
            for i in range(0, len(events), args.batch):
                trail.append_many(events[i:i + args.batch])
            dt, cpu = time.perf_counter() - t0, _cpu() - c0
        results["group_commit_batch"] = args.batch
        results["group_commit_appends_per_s"] = round(args.records / dt)
        results["group_commit_appends_per_cpu_s"] = round(args.records / cpu)
        secs, cpu, n = _median_verify(root, _pinned(root))
        results["verify_group_log_records"] = n
        results["verify_group_log_records_per_s"] = round(n / secs)
        results["verify_group_log_records_per_cpu_s_2_processes"] = round(n / cpu)
        secs, cpu, n = _median_verify(root, _pinned(root), workers=1)
        results["verify_group_log_records_per_s_1_process"] = round(n / secs)
        results["verify_group_log_records_per_cpu_s_1_process"] = round(n / cpu)

        # threads, one append per call
        root = Path(tmp) / "threads"
        per_thread = max(1, args.single // args.threads) * 2
        with AuditTrail.open(root) as trail:
            thread_events = [[_event(random.Random(args.seed * 1000 + t), t * per_thread + i) for i in range(per_thread)]
                             for t in range(args.threads)]

            def work(evs: list[dict]) -> None:
                for ev in evs:
                    trail.append(ev["kind"], ev["fields"], subject=ev["subject"], payload=ev["payload"])

            threads = [threading.Thread(target=work, args=(evs,)) for evs in thread_events]
            t0 = time.perf_counter()
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            dt = time.perf_counter() - t0
        total = per_thread * args.threads
        results["threads"] = args.threads
        results["threaded_appends_per_s"] = round(total / dt)

        # single appends
        root = Path(tmp) / "single"
        with AuditTrail.open(root) as trail:
            events = [_event(rng, i) for i in range(args.single)]
            for ev in events[:50]:  # pseudonyms and day keys of most subjects created first
                trail.append(ev["kind"], ev["fields"], subject=ev["subject"], payload=ev["payload"])
            t0 = time.perf_counter()
            for ev in events[50:]:
                trail.append(ev["kind"], ev["fields"], subject=ev["subject"], payload=ev["payload"])
            dt = time.perf_counter() - t0
        results["single_appends_per_s"] = round((args.single - 50) / dt)
        secs, cpu, n = _median_verify(root, _pinned(root))
        results["verify_single_log_records"] = n
        results["verify_single_log_records_per_s"] = round(n / secs)
        results["verify_single_log_records_per_cpu_s"] = round(n / cpu)

        # witness and store: publishing cost per checkpoint, and group commit with the witness attached
        signer = Ed25519Signer.generate()
        (Path(tmp) / "log.pub").write_bytes(public_key_pem(signer.public_key))
        results["checkpoint_ms_local"] = round(1e3 * _checkpoint_seconds(Path(tmp) / "cp-local", args.checkpoints,
                                                                         signer), 2)
        with start_witness(Path(tmp) / "witness", [Path(tmp) / "log.pub"]) as server:
            witness = WitnessClient(server.url, WitnessKey.load(server.extra["public_key"]))
            results["checkpoint_ms_witnessed"] = round(1e3 * _checkpoint_seconds(
                Path(tmp) / "cp-witnessed", args.checkpoints, signer, witness=witness), 2)
            root = Path(tmp) / "group-witnessed"
            events = [_event(rng, i) for i in range(args.records)]
            with AuditTrail.open(root, signer=signer, witness=witness) as trail:
                t0 = time.perf_counter()
                for i in range(0, len(events), args.batch):
                    trail.append_many(events[i:i + args.batch])
                dt = time.perf_counter() - t0
            results["group_commit_witnessed_appends_per_s"] = round(args.records / dt)
        results["checkpoint_ms_object_lock"] = None
        if binary("weed") is not None:
            from clinops.audit.objectlock import ObjectLockArchive
            with start_seaweedfs(Path(tmp) / "seaweedfs") as server:
                archive = ObjectLockArchive(server.extra["client"], "clinops-bench", retention=timedelta(days=1))
                archive.create_bucket()
                results["checkpoint_ms_object_lock"] = round(1e3 * _checkpoint_seconds(
                    Path(tmp) / "cp-archived", args.checkpoints, signer, archive=archive), 2)

        if args.lookup_records:
            results.update(_lookup(Path(tmp) / "lookup", args.lookup_records, args.batch, rng))

    results["load_average_1min_at_end"] = os.getloadavg()[0]
    r = results
    print("| measure | per second (wall clock) | per CPU-second |")
    print("|---|---|---|")
    print(f"| durable appends, group commit (append_many of {args.batch}) | {r['group_commit_appends_per_s']:,} | "
          f"{r['group_commit_appends_per_cpu_s']:,} |")
    print(f"| durable appends, {args.threads} threads calling append | {r['threaded_appends_per_s']:,} | |")
    print(f"| durable appends, one append at a time | {r['single_appends_per_s']:,} | |")
    print(f"| records verified, group-commit log ({r['verify_group_log_records']:,} records), 2 processes | "
          f"{r['verify_group_log_records_per_s']:,} | {r['verify_group_log_records_per_cpu_s_2_processes']:,} |")
    print(f"| records verified, same log, 1 process | {r['verify_group_log_records_per_s_1_process']:,} | "
          f"{r['verify_group_log_records_per_cpu_s_1_process']:,} |")
    print(f"| records verified, single-append log (one seal per record), 2 processes | "
          f"{r['verify_single_log_records_per_s']:,} | {r['verify_single_log_records_per_cpu_s']:,} |")
    print(f"| durable appends, group commit, every checkpoint published to a witness | "
          f"{r['group_commit_witnessed_appends_per_s']:,} | |")
    locked = ("not measured (weed not installed)" if r["checkpoint_ms_object_lock"] is None
              else f"{r['checkpoint_ms_object_lock']} ms also uploaded with Object Lock")
    print(f"checkpoint cost (mean of {args.checkpoints}): {r['checkpoint_ms_local']} ms signed and stored locally, "
          f"{r['checkpoint_ms_witnessed']} ms with the witness's consistency check and cosignature, {locked}")
    if args.lookup_records:
        print(f"prediction lookup (show) in a log of {r['lookup_log_records']:,} records: "
              f"{r['lookup_ms_indexed']} ms through the record index ({r['lookup_ms_indexed_after_reopen']} ms "
              f"after reopening; building the index at the first lookup: {r['lookup_index_build_s']} s), "
              f"{r['lookup_ms_scan']} ms by scanning the log as before")
    print(f"fsync policy: {r['fsync_policy']}; 1-minute load average at the end: {r['load_average_1min_at_end']:.2f} "
          f"on {os.cpu_count()} CPUs")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
