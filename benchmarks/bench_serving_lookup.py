"""Benchmark the prediction lookups of the serving routes (override, outcome, audit lookup).

Usage::

    .venv/bin/python benchmarks/bench_serving_lookup.py [--records 1000000] [--lookups 5000] [--workers 2]

What is measured: :class:`serving.shared.PredictionMemory`, the index the routes look a
prediction id up in (issue 16, item 9: an unknown or pruned id used to scan the whole audit
trail, 1.0 s at 100k records). ``--records`` predictions are remembered, spread over
``--workers`` worker files as the server writes them (one transaction per batch of 32, the
scoring batch); then ``--lookups`` lookups of known ids (random, from every worker's file) and
of unknown ids are timed one by one through :meth:`PredictionMemory.recall`, from the first
worker's view (it opens the others' files read-side), and the size on disk is reported.
Prints a Markdown table, the load average, and one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from serving.shared import PredictionMemo, PredictionMemory  # noqa: E402


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.records < args.workers or args.lookups < 1 or args.workers < 1:
        parser.error("--records >= --workers >= 1 and --lookups >= 1 are required")
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="bench-lookup-") as tmp:
        directory = Path(tmp) / "private"
        memories = [PredictionMemory(directory, limit=args.records) for _ in range(args.workers)]
        known: list[str] = []
        started = time.perf_counter()
        per_worker = args.records // args.workers
        for memory in memories:
            for start in range(0, per_worker, 32):
                batch = {uuid.UUID(int=rng.getrandbits(128)).hex: PredictionMemo(
                    encounter_id=str(30000000 + rng.randrange(50000)), probability=rng.random(),
                    conformal_set=[0], sex="male", age=float(rng.randrange(18, 95)))
                    for _ in range(min(32, per_worker - start))}
                memory.remember(batch)
                if rng.random() < args.lookups * 32 / per_worker:
                    known.append(next(iter(batch)))
        fill_seconds = time.perf_counter() - started
        reader = memories[0]
        known = [rng.choice(known) for _ in range(args.lookups)]
        unknown = [uuid.UUID(int=rng.getrandbits(128)).hex for _ in range(args.lookups)]
        times: dict[str, list[float]] = {"known": [], "unknown": []}
        for name, ids in (("known", known), ("unknown", unknown)):
            for prediction_id in ids:
                t0 = time.perf_counter()
                found = reader.recall(prediction_id)
                times[name].append(time.perf_counter() - t0)
                if (found is None) != (name == "unknown"):
                    raise SystemExit(f"lookup of a {name} id gave the wrong answer: {prediction_id}")
        size = sum(p.stat().st_size for p in directory.iterdir())
        for memory in memories:
            memory.close()
    rows = {name: {"p50_us": statistics.median(t) * 1e6, "p99_us": _percentile(t, 0.99) * 1e6,
                   "max_us": max(t) * 1e6} for name, t in times.items()}
    print(f"{args.records} predictions in {args.workers} worker files ({size / 1e6:.0f} MB), "
          f"filled in {fill_seconds:.1f} s; {args.lookups} lookups of each kind\n")
    print("| lookup | p50 (us) | p99 (us) | max (us) |\n|---|---:|---:|---:|")
    for name, row in rows.items():
        print(f"| {name} id | {row['p50_us']:.0f} | {row['p99_us']:.0f} | {row['max_us']:.0f} |")
    load = os.getloadavg()
    print(f"\nload average: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(json.dumps({"records": args.records, "workers": args.workers, "bytes": size,
                      "fill_seconds": fill_seconds, "lookups": rows, "loadavg": load}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
