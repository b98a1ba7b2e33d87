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

Prints a Markdown table and one JSON line.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from clinops.audit import AuditTrail, verify_log

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


def _median_verify(root: Path, public_key: Path, workers: int = 2) -> tuple[float, int]:
    times, n = [], 0
    for _ in range(3):
        t0 = time.perf_counter()
        report = verify_log(root, public_key=public_key, workers=workers)
        times.append(time.perf_counter() - t0)
        if not report.ok:
            raise SystemExit(f"verification failed: {report.summary()}")
        n = report.n_records
    return statistics.median(times), n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=20_000, help="records in the group-commit run")
    ap.add_argument("--batch", type=int, default=100, help="records per append_many call")
    ap.add_argument("--threads", type=int, default=8, help="threads in the threaded run")
    ap.add_argument("--single", type=int, default=2_000, help="records in the single-append run")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    results: dict[str, float | int | str] = {"fsync_policy": "fdatasync per commit, before any append returns"}
    with tempfile.TemporaryDirectory(prefix="bench-audit-", dir="/tmp") as tmp:
        # group commit
        root = Path(tmp) / "group"
        with AuditTrail.open(root) as trail:
            events = [_event(rng, i) for i in range(args.records)]
            t0 = time.perf_counter()
            for i in range(0, len(events), args.batch):
                trail.append_many(events[i:i + args.batch])
            dt = time.perf_counter() - t0
        results["group_commit_batch"] = args.batch
        results["group_commit_appends_per_s"] = round(args.records / dt)
        secs, n = _median_verify(root, root / "signing.pub")
        results["verify_group_log_records"] = n
        results["verify_group_log_records_per_s"] = round(n / secs)
        secs, n = _median_verify(root, root / "signing.pub", workers=1)
        results["verify_group_log_records_per_s_1_process"] = round(n / secs)

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
        secs, n = _median_verify(root, root / "signing.pub")
        results["verify_single_log_records"] = n
        results["verify_single_log_records_per_s"] = round(n / secs)

    print("| measure | value |")
    print("|---|---|")
    print(f"| durable appends/s, group commit (append_many of {args.batch}) | {results['group_commit_appends_per_s']:,} |")
    print(f"| durable appends/s, {args.threads} threads calling append | {results['threaded_appends_per_s']:,} |")
    print(f"| durable appends/s, one append at a time | {results['single_appends_per_s']:,} |")
    print(f"| records verified/s, group-commit log ({results['verify_group_log_records']:,} records) | "
          f"{results['verify_group_log_records_per_s']:,} |")
    print(f"| records verified/s, same log, one process | {results['verify_group_log_records_per_s_1_process']:,} |")
    print(f"| records verified/s, single-append log (one seal per record) | "
          f"{results['verify_single_log_records_per_s']:,} |")
    print(f"fsync policy: {results['fsync_policy']}")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
