"""Latency and throughput of ``POST /v1/predictions``, auditing on and off, in one run.

Two real servers (``python -m serving`` subprocesses, one with ``--audit on``, one with
``--audit off``) serve the model that ``make serve`` serves: the registered champion of the
params file (default ``params/default.yaml``, so run ``make all`` first), loaded from the MLflow
registry exactly as ``make serve`` does. Requests carry the test-year rows of that run's task
table (real feature distributions, so the share of escalated cases is the model's own). With
``--demo`` the small toy model of the test suite and its synthetic rows are used instead (no
``make all`` needed; the toy model has 60 trees, so TreeSHAP is ~10x cheaper than on the real one).

Each server runs ``--workers 2`` by default (two processes sharing one state directory, one per
core; ``--workers 1`` for a single process).

Clients: 1, 8 and 32 concurrent keep-alive connections, each sending its next request when the
previous answer arrives (closed loop, no think time). Rounds alternate between the two servers so
that background load on a shared machine hits both alike; latencies of all rounds are pooled per
(audit, clients). The load generator is a minimal asyncio HTTP/1.1 client (pre-encoded bodies,
every answer checked for status 200 and parsed): it shares the machine's 2 cores with the server,
and a full client library (httpx) would spend ~3 ms of CPU per request there, about as much as the
server itself. Its CPU per request is reported beside the server's.

Targets (issue 7): p99 under 25 ms at 8 clients with auditing on; audited p50 at most 1.5 times
the unaudited p50.

Run by hand (not part of the test suite)::

    .venv/bin/python benchmarks/bench_serving.py                 # writes reports/serving/benchmark.{json,md}
    .venv/bin/python benchmarks/bench_serving.py --requests 200 --rounds 2   # quicker
    .venv/bin/python benchmarks/bench_serving.py --demo --out /tmp/bench    # toy model, no make all needed
"""
from __future__ import annotations

import argparse
import asyncio
import json
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


# --------------------------------------------------------------------------------- inputs
def _demo_inputs(tmp: Path, n: int, seed: int) -> tuple[list[str], list[dict], str]:
    from clinops.features import FeatureManifest

    bundle = build_demo_bundle(tmp / "bundle", n=1500, seed=7)
    X, _ = demo_frame(n, seed=seed)
    return (["--model-dir", str(bundle)], FeatureManifest.load("mortality").records(X),
            "toy demo model (serving.testing.build_demo_bundle: 60 trees, depth 3) on synthetic demo rows")


def _registered_inputs(params: Path, n: int) -> tuple[list[str], list[dict], str]:
    from clinops.pipeline import load, load_task_table, task_config

    P = load(params)
    task = task_config(P, "primary")
    name = task.settings["mlflow"]["registered_model"]
    table = load_task_table(task)
    test = table[table["split"] == "test"].head(n)
    booster_trees = None
    try:
        from clinops.modeling import ModelBundle

        booster_trees = ModelBundle.load(task.bundle_dir).booster.num_boosted_rounds()
    except Exception:  # the description only; the server loads the registered model itself
        pass
    trees = f", {booster_trees} trees" if booster_trees else ""
    return (["--registered", f"{name}@champion", "--project-root", str(ROOT)], task.manifest().records(test),
            f"registered model {name}@champion{trees} (run '{P.name}', {P.data_label}) on {len(test)} "
            f"test-year rows of its task table")


# --------------------------------------------------------------------------------- servers
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


def _start(model_args: list[str], state: Path, audit: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "serving", *model_args, "--state-dir", str(state), "--host", "127.0.0.1",
         "--port", str(port), "--audit", audit, "--demo", "--log-level", "warning"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process, port
        except httpx.TransportError:
            if process.poll() is not None:
                raise RuntimeError(f"server ({audit}) exited: {process.stderr.read()}")
            time.sleep(0.1)
    raise RuntimeError(f"server ({audit}) did not start")


# --------------------------------------------------------------------------------- client
def _requests(records: list[dict], token: str) -> list[bytes]:
    out = []
    for i, record in enumerate(records):
        body = json.dumps({"encounter_id": ENCOUNTERS[i % len(ENCOUNTERS)], "purpose": "direct_care",
                           "features": record}).encode()
        head = (f"POST /v1/predictions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Authorization: {token}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        out.append(head + body)
    return out


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length is None:
        raise RuntimeError("answer without Content-Length (the client reads only sized bodies)")
    return status, await reader.readexactly(length)


async def _load(port: int, clients: int, n_requests: int, requests: list[bytes], offset: int) -> dict:
    """``n_requests`` predictions over ``clients`` keep-alive connections."""
    latencies: list[float] = []
    escalated = 0
    counter = iter(range(n_requests))

    async def worker() -> None:
        nonlocal escalated
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in counter:
                started = time.perf_counter()
                status, body = await asyncio.wait_for(
                    _exchange(reader, writer, requests[(offset + i) % len(requests)]), timeout=60)
                latencies.append(time.perf_counter() - started)
                if status != 200:
                    raise RuntimeError(f"{status}: {body[:500]!r}")
                escalated += bool(json.loads(body)["needs_review"])
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return {"latencies": latencies, "wall": time.perf_counter() - started, "escalated": escalated}


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


# --------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=ROOT / "params" / "default.yaml",
                        help="run whose registered champion is served (default: %(default)s)")
    parser.add_argument("--demo", action="store_true", help="the toy model of the test suite instead")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=400, help="requests per (audit, clients) per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--seed", type=int, default=20260318)
    parser.add_argument("--workers", type=int, default=2,
                        help="worker processes per server (python -m serving --workers; default %(default)s)")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "serving")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()  # the machine is shared: say how busy it was
    results: dict[str, dict] = {}
    me = psutil.Process()
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        tmp = Path(tmp)
        model_args, records, model_text = (_demo_inputs(tmp, 1000, args.seed) if args.demo
                                           else _registered_inputs(args.params, 1000))
        requests = _requests(records, demo_token("system")["Authorization"])
        fsync = _fdatasync_ms(tmp / "fsync-probe")
        servers = {mode: _start([*model_args, "--workers", str(args.workers)], tmp / f"state-{mode}", mode)
                   for mode in ("off", "on")}
        try:
            for mode, (_, port) in servers.items():
                asyncio.run(_load(port, 4, args.warmup, requests, 0))
            pooled = {(mode, c): {"latencies": [], "wall": 0.0, "escalated": 0, "cpu": 0.0, "client_cpu": 0.0}
                      for mode in servers for c in args.clients}
            for c in args.clients:
                for r in range(args.rounds):
                    for mode, (process, port) in servers.items():
                        processes = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
                        cpu_before, client_before = sum(map(_cpu, processes)), _cpu(me)
                        run = asyncio.run(_load(port, c, args.requests, requests, r * args.requests))
                        cell = pooled[(mode, c)]
                        cell["latencies"] += run["latencies"]
                        cell["wall"] += run["wall"]
                        cell["escalated"] += run["escalated"]
                        cell["cpu"] += sum(map(_cpu, processes)) - cpu_before
                        cell["client_cpu"] += _cpu(me) - client_before
            for (mode, c), cell in pooled.items():
                ms = np.array(cell["latencies"]) * 1000
                n = len(ms)
                results[f"audit_{mode}/clients_{c}"] = {
                    "audit": mode, "clients": c, "requests": n, "p50_ms": float(np.percentile(ms, 50)),
                    "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()),
                    "throughput_rps": n / cell["wall"], "server_cpu_ms_per_request": 1000 * cell["cpu"] / n,
                    "client_cpu_ms_per_request": 1000 * cell["client_cpu"] / n,
                    "escalated_share": cell["escalated"] / n}
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
               "model": model_text, "settings": {k: str(v) for k, v in vars(args).items()},
               "results": results, "ratios": ratios, "targets": targets}

    lines = ["# Serving benchmark: POST /v1/predictions", "",
             f"Model: {model_text}.", "",
             f"Server: `python -m serving --workers {args.workers}` (one state directory, audit trail and "
             "metrics shared by the workers).", "",
             f"{os.cpu_count()} CPUs shared by server and load generator, {args.rounds} rounds x {args.requests} "
             f"requests per cell, audit on/off alternated; load average {load_before[0]:.1f} before, "
             f"{load_after[0]:.1f} after (shared machine); one fdatasync on the state file system: "
             f"p50 {fsync['p50']:.2f} ms, p99 {fsync['p99']:.2f} ms.",
             "", "| audit | clients | requests | p50 ms | p99 ms | mean ms | throughput req/s | server CPU ms/req "
                 "| client CPU ms/req | escalated |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in results.values():
        lines.append(f"| {row['audit']} | {row['clients']} | {row['requests']} | {row['p50_ms']:.2f} | "
                     f"{row['p99_ms']:.2f} | {row['mean_ms']:.2f} | {row['throughput_rps']:.0f} | "
                     f"{row['server_cpu_ms_per_request']:.2f} | {row['client_cpu_ms_per_request']:.2f} | "
                     f"{row['escalated_share']:.1%} |")
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
