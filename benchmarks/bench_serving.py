"""Latency and throughput of ``POST /v1/predictions``, auditing on and off, in one run.

Two real servers (``python -m serving`` subprocesses on the same small model bundle, one with
``--audit on``, one with ``--audit off``) are driven by an asyncio httpx client with 1, 8 and 32
concurrent connections. Rounds alternate between the two servers so that background load on a
shared machine hits both alike; latencies of all rounds are pooled per (audit, clients).

Targets (issue 7): p99 under 25 ms at 8 clients with auditing on; audited p50 at most 1.5 times
the unaudited p50.

Run by hand (not part of the test suite)::

    .venv/bin/python benchmarks/bench_serving.py                 # writes reports/serving/benchmark.{json,md}
    .venv/bin/python benchmarks/bench_serving.py --requests 200 --rounds 2   # quicker
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from serving.testing import build_demo_bundle, demo_frame, demo_token, free_port  # noqa: E402

ENCOUNTERS = ["30000001", "30000002", "30000003", "30000005"]  # direct_care in the demo consent seed


def _records(n: int, seed: int) -> list[dict]:
    X, _ = demo_frame(n, seed=seed)
    out = []
    for _, row in X.iterrows():
        record = {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))}
        for name in ("sex_male", "vasopressor", "mech_vent"):
            record[name] = int(record[name])
        out.append(record)
    return out


def _fdatasync_ms(path: Path, n: int = 200) -> dict[str, float]:
    """p50 / p99 of one small append + fdatasync on the state directory's file system: the floor
    of every durable audit commit (the audit trail makes each commit durable before answering)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    times = []
    try:
        for _ in range(n):
            started = time.perf_counter()
            os.write(fd, b"x" * 600)
            os.fdatasync(fd)
            times.append((time.perf_counter() - started) * 1000)
    finally:
        os.close(fd)
    return {"p50": float(np.percentile(times, 50)), "p99": float(np.percentile(times, 99))}


def _start(bundle: Path, state: Path, audit: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "serving", "--model-dir", str(bundle), "--state-dir", str(state), "--host", "127.0.0.1",
         "--port", str(port), "--audit", audit, "--log-level", "warning"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            if process.poll() is not None:
                raise RuntimeError(f"server ({audit}) exited: {process.stderr.read()}")
            time.sleep(0.1)
    raise RuntimeError(f"server ({audit}) did not start")


async def _load(url: str, clients: int, n_requests: int, records: list[dict], offset: int) -> tuple[list[float], float]:
    """``n_requests`` predictions over ``clients`` connections; returns latencies (s) and wall time (s)."""
    latencies: list[float] = []
    counter = iter(range(n_requests))
    headers = demo_token("system")
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        async def worker() -> None:
            for i in counter:
                body = {"encounter_id": ENCOUNTERS[i % len(ENCOUNTERS)], "purpose": "direct_care",
                        "features": records[(offset + i) % len(records)]}
                started = time.perf_counter()
                response = await client.post("/v1/predictions", json=body, headers=headers)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    raise RuntimeError(f"{response.status_code}: {response.text}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.perf_counter() - started
    return latencies, wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=400, help="requests per (audit, clients) per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--seed", type=int, default=20260318)
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "serving")
    args = parser.parse_args(argv)

    records = _records(1000, seed=args.seed)
    load_before = os.getloadavg()  # the machine is shared: say how busy it was
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        tmp = Path(tmp)
        bundle = build_demo_bundle(tmp / "bundle", n=1500, seed=7)
        fsync = _fdatasync_ms(tmp / "fsync-probe")
        servers = {mode: _start(bundle, tmp / f"state-{mode}", mode) for mode in ("off", "on")}
        try:
            for mode, (_, url) in servers.items():
                asyncio.run(_load(url, 4, args.warmup, records, 0))
            pooled = {(mode, c): ([], 0.0, 0, 0.0) for mode in servers for c in args.clients}
            for c in args.clients:
                for r in range(args.rounds):
                    for mode, (process, url) in servers.items():
                        cpu_before = sum(psutil.Process(process.pid).cpu_times()[:2])
                        lat, wall = asyncio.run(_load(url, c, args.requests, records, r * args.requests))
                        cpu = sum(psutil.Process(process.pid).cpu_times()[:2]) - cpu_before
                        old = pooled[(mode, c)]
                        pooled[(mode, c)] = (old[0] + lat, old[1] + wall, old[2] + len(lat), old[3] + cpu)
            for (mode, c), (lat, wall, n, cpu) in pooled.items():
                ms = np.array(lat) * 1000
                results[f"audit_{mode}/clients_{c}"] = {
                    "audit": mode, "clients": c, "requests": n, "p50_ms": float(np.percentile(ms, 50)),
                    "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()),
                    "throughput_rps": n / wall, "server_cpu_ms_per_request": 1000 * cpu / n}
        finally:
            for process, _ in servers.values():
                process.terminate()
                process.wait(timeout=30)

    ratios = {}
    for c in args.clients:
        on, off = results[f"audit_on/clients_{c}"], results[f"audit_off/clients_{c}"]
        ratios[f"clients_{c}"] = {"p50_on_over_off": on["p50_ms"] / off["p50_ms"],
                                  "p99_on_over_off": on["p99_ms"] / off["p99_ms"],
                                  "throughput_on_over_off": on["throughput_rps"] / off["throughput_rps"]}
    targets = {}
    if 8 in args.clients:
        targets = {"p99_ms_audit_on_8_clients": results["audit_on/clients_8"]["p99_ms"],
                   "p99_under_25_ms": results["audit_on/clients_8"]["p99_ms"] < 25.0,
                   "p50_ratio_8_clients": ratios["clients_8"]["p50_on_over_off"],
                   "p50_ratio_at_most_1.5": ratios["clients_8"]["p50_on_over_off"] <= 1.5}
    load_after = os.getloadavg()
    summary = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                           "load_average_before": load_before, "load_average_after": load_after,
                           "fdatasync_ms": fsync},
               "settings": vars(args) | {"out": str(args.out)}, "results": results, "ratios": ratios, "targets": targets}

    lines = ["# Serving benchmark: POST /v1/predictions", "",
             f"{os.cpu_count()} CPUs, {args.rounds} rounds x {args.requests} requests per cell, audit on/off alternated; "
             f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after (shared machine); one "
             f"fdatasync on the state file system: p50 {fsync['p50']:.2f} ms, p99 {fsync['p99']:.2f} ms.",
             "", "| audit | clients | requests | p50 ms | p99 ms | mean ms | throughput req/s | server CPU ms/req |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in results.values():
        lines.append(f"| {row['audit']} | {row['clients']} | {row['requests']} | {row['p50_ms']:.2f} | "
                     f"{row['p99_ms']:.2f} | {row['mean_ms']:.2f} | {row['throughput_rps']:.0f} | "
                     f"{row['server_cpu_ms_per_request']:.2f} |")
    lines += ["", "| clients | p50 on/off | p99 on/off | throughput on/off |", "|---:|---:|---:|---:|"]
    for key, ratio in ratios.items():
        lines.append(f"| {key.split('_')[1]} | {ratio['p50_on_over_off']:.2f} | {ratio['p99_on_over_off']:.2f} | "
                     f"{ratio['throughput_on_over_off']:.2f} |")
    if targets:
        lines += ["", f"Targets: p99 at 8 clients with auditing on = {targets['p99_ms_audit_on_8_clients']:.2f} ms "
                      f"(< 25 ms: {'met' if targets['p99_under_25_ms'] else 'NOT met'}); audited/unaudited p50 at 8 "
                      f"clients = {targets['p50_ratio_8_clients']:.2f} (<= 1.5: "
                      f"{'met' if targets['p50_ratio_at_most_1.5'] else 'NOT met'})."]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmark.json").write_text(json.dumps(summary, indent=2))
    (args.out / "benchmark.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
