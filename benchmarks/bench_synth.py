"""Benchmark of the synthetic MIMIC-IV generator: wall time, CPU time, peak memory, rows.

Runs ``clinops synth`` in a child process (so the measurement includes its worker processes)
and prints wall time, CPU time, the peak resident memory of the whole process tree (sampled
every 0.2 s) and of its largest process, the rows of every table and the rows per second.
The machine's load average is printed too: the machine is shared, so read the wall time
together with it (the CPU time is the load-independent figure).

Usage::

    .venv/bin/python benchmarks/bench_synth.py                 # paper scale (--scale 1.0)
    .venv/bin/python benchmarks/bench_synth.py --full          # --scale 3: > 100 M chartevents rows
    .venv/bin/python benchmarks/bench_synth.py --scale 0.2 --keep /tmp/synth-0.2
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psutil

FULL_SCALE = 3.0


def _tree_rss(proc: psutil.Process) -> tuple[int, int]:
    """(sum, max) resident bytes of a process and all its descendants."""
    total = biggest = 0
    try:
        procs = [proc] + proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0, 0
    for p in procs:
        try:
            rss = p.memory_info().rss
        except psutil.NoSuchProcess:
            continue
        total += rss
        biggest = max(biggest, rss)
    return total, biggest


def run(scale: float, seed: int, out: Path, workers: int | None) -> dict:
    cmd = [sys.executable, "-m", "clinops.data.synthetic", "--out", str(out), "--scale", str(scale),
           "--seed", str(seed), "--quiet"]
    if workers:
        cmd += ["--workers", str(workers)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    proc = psutil.Popen(cmd)
    peak_sum = peak_one = 0
    while proc.poll() is None:
        total, biggest = _tree_rss(proc)
        peak_sum, peak_one = max(peak_sum, total), max(peak_one, biggest)
        time.sleep(0.2)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"clinops synth failed with exit code {proc.returncode}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    rows = json.loads((out / "SYNTHETIC.json").read_text())["rows"]
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {
        "scale": scale, "seed": seed, "workers": workers or min(2, os.cpu_count() or 1),
        "cpu_count": os.cpu_count(), "wall_s": wall,
        "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "peak_rss_tree_mb": peak_sum / 2**20, "peak_rss_largest_process_mb": peak_one / 2**20,
        "max_rss_any_child_mb": after.ru_maxrss / 1024,
        "load_avg_before": load_before, "load_avg_after": os.getloadavg(),
        "rows": rows, "total_rows": sum(rows.values()), "rows_per_s": sum(rows.values()) / wall,
        "chartevents_rows_per_s": rows["icu/chartevents"] / wall, "bytes_on_disk": size,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--full", action="store_true", help=f"use --scale {FULL_SCALE}")
    parser.add_argument("--seed", type=int, default=20260318)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--keep", type=Path, default=None, help="write here and keep the data")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    scale = FULL_SCALE if args.full else args.scale

    tmp = None
    if args.keep:
        out = args.keep
    else:
        tmp = Path(tempfile.mkdtemp(prefix="bench-synth-"))
        out = tmp / "mimic"
    try:
        r = run(scale, args.seed, out, args.workers)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    print(f"synthetic MIMIC-IV, scale {r['scale']}, seed {r['seed']}, "
          f"{r['workers']} worker processes on {r['cpu_count']} cores")
    print(f"  wall time          {r['wall_s']:8.1f} s")
    print(f"  CPU time           {r['cpu_s']:8.1f} s (user + system, all processes)")
    print(f"  peak RSS, tree     {r['peak_rss_tree_mb']:8.0f} MB (sum over processes, sampled)")
    print(f"  peak RSS, largest  {r['max_rss_any_child_mb']:8.0f} MB (one process)")
    print(f"  load average       {r['load_avg_before'][0]:.1f} before, {r['load_avg_after'][0]:.1f} after")
    print(f"  on disk            {r['bytes_on_disk'] / 2**20:8.0f} MB")
    print(f"  rows               {r['total_rows']:>12,}  ({r['rows_per_s']:,.0f} rows/s; "
          f"chartevents {r['chartevents_rows_per_s']:,.0f} rows/s)")
    for table, n in r["rows"].items():
        print(f"    {table:<24} {n:>12,}")
    if args.json:
        args.json.write_text(json.dumps(r, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
