"""Benchmark the 17 mortality features on DuckDB, PostgreSQL and Spark (issue 19, item 6).

    export PYTHONPATH=$PWD
    .venv/bin/python benchmarks/bench_engines.py [--scale 1] [--seed 20260318] [--data-dir DIR]
        [--parquet-dir DIR] [--engines duckdb,postgres,spark] [--master 'local[2]'] [--write | --out DIR]

What is measured, per engine, on the synthetic MIMIC-IV of ``--scale`` (1.0 = paper scale,
about 35 M chartevents rows; 3 = about 100 M): the mortality task's cohort SQL
(:func:`clinops.tasks.mortality.cohort.build_icu_cohort`, paper definitions) followed by its
17-feature SQL (:func:`clinops.features.extract_features`, the ``mortality`` manifest), exactly
as the pipeline runs them on that engine:

- ``duckdb``: DuckDB views over the parquet copy (the pipeline's default);
- ``postgres``: a real server started here (``initdb`` + ``pg_ctl`` in a temporary directory, a
  free port, ``fsync=off``, otherwise PostgreSQL's default settings), loaded with
  ``clinops load-postgres`` from the csv.gz directory (keys and mimic-code's indexes included);
  the features are measured with the indexes, then again after dropping every index and
  primary key of the two schemas, after which the same definitions are re-created (timed: the
  load time without indexes is the load time minus that);
- ``spark``: PySpark over the parquet copy, ``--master`` (default ``local[2]``).

Every measured engine runs in its own child process. Figures: wall time of cohort + features
(session start-up reported apart), chartevents rows per second of that wall time, peak memory
of the whole process tree (the child, the JVM it starts, and the PostgreSQL server's processes;
sampled every 0.25 s, PSS where the kernel gives it, else RSS), the machine's load average
before and after each step (the machine may be shared: read the timings with it), and whether
the feature table equals DuckDB's (counts exact, floats within 1e-9).

Data directories are the pipeline's default locations (``data/synthetic/scale<S>-seed<N>``,
``data/parquet/scale<S>-seed<N>``), generated or converted once and reused only while the
pipeline's own check (:mod:`clinops.data.freshness`) says they are current, made again otherwise;
``--data-dir`` and ``--parquet-dir`` point at existing ones (read only: refused when stale). The table is printed; ``--write`` also
writes it to ``reports/engines/benchmark.{json,md}`` (one entry per scale, merged with what is
there), ``--out DIR`` to ``DIR/benchmark.{json,md}`` (e.g. ``reports/engines/scale3``): the
Markdown is always made from the JSON's recorded measurements, never pasted. All data are
synthetic: no number here describes real patients.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

import psutil  # process-tree memory (a core dependency)

from clinops.data import freshness, postgres, spark, synthetic
from clinops.data.postgres.devserver import PostgresServer
from clinops.data.convert import convert_to_parquet
from clinops.data.mimic import open_mimic
from clinops.features import FeatureManifest, extract_features
from clinops.tasks.mortality.cohort import build_icu_cohort

ROOT = Path(__file__).resolve().parents[1]
REPORT_DIR = ROOT / "reports" / "engines"
DEFAULT_SEED = 20260318  # params/default.yaml's seed: the paper-scale directory the pipeline makes
SAMPLE_SECONDS = 0.25


# ---------------------------------------------------------------------------------------------
# the machine: load average and process-tree memory
# ---------------------------------------------------------------------------------------------
def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _proc_mem_bytes(pid: int) -> int:
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup")
        key = "Pss:" if rollup.exists() else "VmRSS:"
        text = (rollup if rollup.exists() else Path(f"/proc/{pid}/status")).read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    return 0


def tree_memory_bytes(roots: list[int]) -> int:
    """PSS (else RSS) summed over ``roots`` and all their descendants."""
    pids: set[int] = set()
    for root in roots:
        try:
            proc = psutil.Process(root)
            pids |= {root} | {c.pid for c in proc.children(recursive=True)}
        except psutil.Error:
            continue
    return sum(_proc_mem_bytes(pid) for pid in pids)


class PeakMemory:
    """Samples the memory of process trees in a thread; ``peak_mb`` after ``stop``."""

    def __init__(self, roots: list[int]):
        self.roots, self.peak, self._stop = list(roots), 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_memory_bytes(self.roots))
            self._stop.wait(SAMPLE_SECONDS)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mb(self) -> float:
        return round(self.peak / 2**20, 1)


# ---------------------------------------------------------------------------------------------
# PostgreSQL: keys and indexes, statements (the server itself: clinops.data.postgres.devserver)
# ---------------------------------------------------------------------------------------------

def index_definitions(dsn: str) -> tuple[list[str], list[str]]:
    """(drop, create) statements for every primary key and index of the two MIMIC-IV schemas."""
    conn = postgres.connect(dsn)
    try:
        keys = conn.execute(
            "SELECT n.nspname, t.relname, c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c "
            "JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace "
            "WHERE c.contype = 'p' AND n.nspname IN ('mimiciv_hosp', 'mimiciv_icu')").fetchall()
        indexes = conn.execute(
            "SELECT i.schemaname, i.indexname, i.indexdef FROM pg_indexes i WHERE i.schemaname IN "
            "('mimiciv_hosp', 'mimiciv_icu') AND NOT EXISTS (SELECT 1 FROM pg_constraint c "
            "WHERE c.conname = i.indexname AND c.contype = 'p')").fetchall()
    finally:
        conn.close()
    drop = [f'ALTER TABLE "{s}"."{t}" DROP CONSTRAINT "{c}"' for s, t, c, _ in keys]
    drop += [f'DROP INDEX "{s}"."{i}"' for s, i, _ in indexes]
    create = [f'ALTER TABLE "{s}"."{t}" ADD CONSTRAINT "{c}" {d}' for s, t, c, d in keys]
    create += [d for _, _, d in indexes]
    return drop, create


def run_statements(dsn: str, statements: list[str]) -> float:
    conn = postgres.connect(dsn)
    try:
        t0 = time.perf_counter()
        for stmt in statements:
            conn.execute(stmt)
        conn.execute("ANALYZE")  # fresh statistics for the planner after the change
        return time.perf_counter() - t0
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# one engine, in a child process
# ---------------------------------------------------------------------------------------------
def child(engine: str, source: str, out: Path, *, master: str, driver_memory: str) -> None:
    """Cohort + 17 features on one engine; writes timings to ``out`` and the features beside it."""
    t0 = time.perf_counter()
    if engine == "duckdb":
        db = open_mimic(source)
    elif engine == "postgres":
        db = postgres.open_postgres(source)
    else:
        session = spark.spark_session(master, config={"spark.driver.memory": driver_memory})
        db = spark.open_spark(source, master=master, spark=session)
    startup = time.perf_counter() - t0
    with db:
        t1 = time.perf_counter()
        cohort, _ = build_icu_cohort(db)
        t2 = time.perf_counter()
        features, _ = extract_features(db, cohort, manifest=FeatureManifest.load("mortality"),
                                       window_hours=24, max_missing_fraction=0.5)
        t3 = time.perf_counter()
    features.reset_index().to_parquet(out.with_suffix(".parquet"))
    out.write_text(json.dumps({"startup_s": startup, "cohort_s": t2 - t1, "features_s": t3 - t2,
                               "n_stays": len(cohort), "n_feature_rows": len(features),
                               "n_features": features.shape[1]}))


def run_child(engine: str, source: str, work: Path, label: str, args: argparse.Namespace,
              extra_roots: list[int]) -> dict:
    out = work / f"{label}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", engine, "--source", source,
           "--child-out", str(out), "--master", args.master, "--spark-driver-memory", args.spark_driver_memory]
    before = load_average()
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=os.environ.copy())
    with PeakMemory([proc.pid, *extra_roots]) as mem:
        code = proc.wait()
    elapsed = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"bench_engines: the {label} run failed (exit {code})")
    result = json.loads(out.read_text())
    result.update(run=label, engine=engine, peak_memory_mb=mem.peak_mb, process_s=elapsed,
                  load_before=before, load_after=load_average())
    result["wall_s"] = result["cohort_s"] + result["features_s"]
    return result


def same_as(reference: Path, other: Path) -> str:
    """'yes' when two feature tables are equal (counts exact, floats within 1e-9), else the reason."""
    a, b = pd.read_parquet(reference), pd.read_parquet(other)
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        return f"no: shape {b.shape} vs {a.shape}"
    a, b = a.sort_values("stay_id").reset_index(drop=True), b.sort_values("stay_id").reset_index(drop=True)
    worst = 0.0
    for col in a.columns:
        if not pd.api.types.is_numeric_dtype(a[col]) or pd.api.types.is_bool_dtype(a[col]):
            if a[col].astype(object).where(a[col].notna(), None).tolist() != \
                    b[col].astype(object).where(b[col].notna(), None).tolist():
                return f"no: values differ in {col}"
            continue
        ea, eb = a[col].astype(float).to_numpy(), pd.to_numeric(b[col]).astype(float).to_numpy()
        if not np.array_equal(np.isnan(ea), np.isnan(eb)):
            return f"no: missing values differ in {col}"
        ok = ~np.isnan(ea)
        worst = max(worst, float(np.max(np.abs(ea[ok] - eb[ok]), initial=0.0)))
    return "yes" if worst <= 1e-9 else f"no: max difference {worst:.3g}"


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------
def _other_data(manifest_path: Path, args: argparse.Namespace) -> str | None:
    """Why a current synthetic directory is still not the one asked for (scale, seed), or None."""
    manifest = json.loads(manifest_path.read_text())
    wrong = [f"{field} {manifest.get(field)!r}, not --{field} {shown}" for field, want, shown, kind in
             (("scale", args.scale, f"{args.scale:g}", float), ("seed", args.seed, f"{args.seed}", int))
             if manifest.get(field) is None or kind(manifest[field]) != want]
    return f"{manifest_path}: " + "; ".join(wrong) if wrong else None


def ensure_data(args: argparse.Namespace) -> tuple[Path, Path, dict]:
    """The csv.gz directory and its parquet copy, reused only when the pipeline would reuse them.

    Current means what the data step means (:mod:`clinops.data.freshness`, the same functions
    :func:`clinops.pipeline.context.ensure_data` calls): a synthetic directory whose
    ``SYNTHETIC.json`` records this generator's code hash (and, here, ``--scale`` and ``--seed``),
    a parquet copy whose ``clinops_convert.json`` names exactly the csv.gz files' SHA-256s. A stale
    default directory is made again; a stale ``--data-dir`` or ``--parquet-dir`` (read only) is
    refused with the reason, which names the file and the field.
    """
    tag = f"scale{args.scale:g}-seed{args.seed}"
    csv_dir = Path(args.data_dir) if args.data_dir else ROOT / "data" / "synthetic" / tag
    parquet_dir = Path(args.parquet_dir) if args.parquet_dir else ROOT / "data" / "parquet" / tag
    timings = {}
    stale = freshness.synthetic_staleness(csv_dir) or _other_data(csv_dir / "SYNTHETIC.json", args)
    if stale is not None:
        if args.data_dir:
            raise SystemExit(f"bench_engines: --data-dir {csv_dir} is not current synthetic data of this generator "
                             f"(rule: a `clinops synth` directory of this code, --scale and --seed): {stale}")
        print(f"{'regenerating' if csv_dir.exists() else 'generating'} synthetic MIMIC-IV scale "
              f"{args.scale:g} seed {args.seed} -> {csv_dir} ({stale})", flush=True)
        t0 = time.perf_counter()
        synthetic.generate(csv_dir, scale=args.scale, seed=args.seed, overwrite=True)
        timings["generate_s"] = time.perf_counter() - t0
    manifest = json.loads((csv_dir / "SYNTHETIC.json").read_text())
    with open_mimic(csv_dir) as db:
        hashes = db.file_sha256()
    stale = freshness.parquet_staleness(parquet_dir, hashes)
    if stale is not None:
        if args.parquet_dir:
            raise SystemExit(f"bench_engines: --parquet-dir {parquet_dir} is not a copy of {csv_dir} "
                             f"(rule: made by `clinops convert` from these files): {stale}")
        print(f"converting to parquet -> {parquet_dir} ({stale})", flush=True)
        t0 = time.perf_counter()
        convert_to_parquet(csv_dir, parquet_dir, overwrite=True)
        timings["convert_s"] = time.perf_counter() - t0
    return csv_dir, parquet_dir, {"manifest": manifest, **timings}


def run(args: argparse.Namespace) -> dict:
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = set(engines) - {"duckdb", "postgres", "spark"}
    if unknown:
        raise SystemExit(f"bench_engines: --engines: unknown {sorted(unknown)} (rule: duckdb, postgres, spark)")
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    load_start = load_average()
    print(f"load average at start (1, 5, 15 min): {load_start}; {os.cpu_count()} cores", flush=True)
    csv_dir, parquet_dir, data = ensure_data(args)
    chart_rows = int(data["manifest"]["rows"]["icu/chartevents"])
    work = Path(tempfile.mkdtemp(prefix="bench-engines-", dir=args.work))
    runs, loads = [], {}
    try:
        if "duckdb" in engines:
            runs.append(run_child("duckdb", str(parquet_dir), work, "duckdb", args, []))
        if "postgres" in engines:
            server = PostgresServer(work / "pg")
            dsn = server.start()
            try:
                before = load_average()
                t0 = time.perf_counter()
                cmd = [sys.executable, "-m", "clinops", "load-postgres", str(csv_dir), "--dsn", dsn]
                proc = subprocess.Popen(cmd, env=os.environ.copy(), stdout=subprocess.DEVNULL)
                with PeakMemory([proc.pid, server.pid]) as mem:
                    code = proc.wait()
                if code != 0:
                    raise SystemExit(f"bench_engines: clinops load-postgres failed (exit {code})")
                loads["load_with_indexes_s"] = time.perf_counter() - t0
                loads.update(load_peak_memory_mb=mem.peak_mb, load_before=before, load_after=load_average())
                runs.append(run_child("postgres", dsn, work, "postgres", args, [server.pid]))
                if not args.skip_no_index:
                    drop, create = index_definitions(dsn)
                    run_statements(dsn, drop)
                    runs.append(run_child("postgres", dsn, work, "postgres-no-indexes", args, [server.pid]))
                    before = load_average()
                    loads["indexes_s"] = run_statements(dsn, create)
                    loads["n_keys_and_indexes"] = len(create)
                    loads["load_without_indexes_s"] = loads["load_with_indexes_s"] - loads["indexes_s"]
                    loads["indexes_load"] = [before, load_average()]
            finally:
                server.stop()
        if "spark" in engines:
            runs.append(run_child("spark", str(parquet_dir), work, "spark", args, []))
        reference = work / "duckdb.parquet"
        for r in runs:
            r["chartevents_rows_per_s"] = chart_rows / r["wall_s"]
            r["same_features_as_duckdb"] = (same_as(reference, work / f"{r['run']}.parquet")
                                            if reference.is_file() else "not compared")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    duck = next((r for r in runs if r["run"] == "duckdb"), None)
    for r in runs:
        r["x_duckdb"] = r["wall_s"] / duck["wall_s"] if duck else None
    return {"scale": args.scale, "seed": args.seed, "data": f"synthetic MIMIC-IV (generated, not real patients): {csv_dir.name}",
            "chartevents_rows": chart_rows, "started_at": started_at, "cores": os.cpu_count(),
            "load_average_start": load_start, "load_average_end": load_average(),
            "spark_master": args.master, "spark_driver_memory": args.spark_driver_memory,
            "data_preparation": {k: v for k, v in data.items() if k != "manifest"},
            "postgres_load": loads, "runs": runs}


def markdown(results: dict[str, dict], command: str = "benchmarks/bench_engines.py --write") -> str:
    lines = ["# Engines benchmark: the 17 mortality features on DuckDB, PostgreSQL and Spark", "",
             f"Made by `{command}` (README, \"The same SQL on PostgreSQL and Spark\"). "
             "Data: **synthetic MIMIC-IV** (generated, not real patients). Wall time = the mortality cohort SQL "
             "+ the 17-feature SQL, engine start-up apart; rows/s = chartevents rows / wall time; peak memory = "
             "the process tree (child, JVM, PostgreSQL server), PSS. Load average (1, 5, 15 min) is the "
             "machine's before and after each run: the machine may be shared, read timings with it.", ""]
    for key in sorted(results, key=float):
        res = results[key]
        lines += [f"## Scale {res['scale']:g} ({res['chartevents_rows']:,} chartevents rows; {res['data']})", "",
                  f"{res['cores']} cores; started {res['started_at']}; load average at start {res['load_average_start']}, "
                  f"at end {res['load_average_end']}; Spark master `{res['spark_master']}`, driver memory "
                  f"{res['spark_driver_memory']}.", "",
                  "| run | start-up s | cohort s | features s | wall s | x DuckDB | chartevents rows/s | peak memory MB "
                  "| same features as DuckDB | load avg before -> after |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
        for r in res["runs"]:
            lines.append(f"| {r['run']} | {r['startup_s']:.1f} | {r['cohort_s']:.1f} | {r['features_s']:.1f} | "
                         f"{r['wall_s']:.1f} | {r['x_duckdb']:.1f} | {r['chartevents_rows_per_s']:,.0f} | "
                         f"{r['peak_memory_mb']:,.0f} | {r['same_features_as_duckdb']} | "
                         f"{r['load_before'][0]} -> {r['load_after'][0]} |")
        pl = res["postgres_load"]
        if pl:
            lines += ["", f"PostgreSQL load (`clinops load-postgres`, csv.gz, keys and mimic-code's indexes): "
                      f"{pl['load_with_indexes_s']:.0f} s, peak memory {pl['load_peak_memory_mb']:,.0f} MB "
                      f"(client + server), load average {pl['load_before'][0]} -> {pl['load_after'][0]}."]
            if "indexes_s" in pl:
                lines.append(f"Of which the {pl['n_keys_and_indexes']} keys and indexes (dropped and re-created, "
                             f"timed): {pl['indexes_s']:.0f} s; without them the load takes about "
                             f"{pl['load_without_indexes_s']:.0f} s.")
        prep = res.get("data_preparation") or {}
        if prep:
            lines += ["", "Data preparation in this run: " + ", ".join(f"{k} {v:.0f} s" for k, v in prep.items()) + "."]
        lines.append("")
    return "\n".join(lines)


def write(result: dict, folder: Path = REPORT_DIR) -> None:
    """Merge ``result`` (one entry per scale) into ``folder/benchmark.json``; write the table from it.

    ``benchmark.md`` is always made from the whole of ``benchmark.json``, never typed: every figure
    in it is a recorded measurement.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "benchmark.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    results[f"{result['scale']:g}"] = result
    path.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    try:
        shown = folder.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        shown = str(folder)
    command = ("benchmarks/bench_engines.py --write" if folder.resolve() == REPORT_DIR.resolve()
               else f"benchmarks/bench_engines.py --out {shown}")
    (folder / "benchmark.md").write_text(markdown(results, command))
    print(f"wrote {path} and {folder / 'benchmark.md'}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, default=1.0, help="synthetic scale (1 = paper, 3 = ~100 M chartevents rows)")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--data-dir", help="an existing `clinops synth` csv.gz directory of this scale (read only)")
    ap.add_argument("--parquet-dir", help="an existing parquet copy of it (read only)")
    ap.add_argument("--engines", default="duckdb,postgres,spark")
    ap.add_argument("--master", default="local[2]", help="Spark master")
    ap.add_argument("--spark-driver-memory", default="2g")
    ap.add_argument("--skip-no-index", action="store_true", help="PostgreSQL: skip the run without indexes")
    ap.add_argument("--work", default=None, help="parent folder of the temporary work folder (default: $TMPDIR)")
    written = ap.add_mutually_exclusive_group()
    written.add_argument("--write", action="store_true", help="write reports/engines/benchmark.{json,md}")
    written.add_argument("--out", metavar="DIR", help="write DIR/benchmark.{json,md} instead, e.g. reports/engines/scale3")
    ap.add_argument("--child", choices=["duckdb", "postgres", "spark"], help=argparse.SUPPRESS)
    ap.add_argument("--source", help=argparse.SUPPRESS)
    ap.add_argument("--child-out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, args.source, Path(args.child_out), master=args.master, driver_memory=args.spark_driver_memory)
        return 0
    result = run(args)
    # the printout names the command that made it, and says when nothing was written
    shown = " ".join(["benchmarks/bench_engines.py", *(sys.argv[1:] if argv is None else argv)])
    print(markdown({f"{result['scale']:g}": result},
                   shown if args.write or args.out else f"{shown} (printed only, not written)"))
    if args.write or args.out:
        write(result, Path(args.out) if args.out else REPORT_DIR)
    return 0


if __name__ == "__main__":
    sys.exit(main())
