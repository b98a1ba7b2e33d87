"""Benchmark the feature extraction: DuckDB (the pipeline) against the obvious pandas version.

    .venv/bin/python benchmarks/bench_features.py --data DIR [--work DIR] [--skip-pandas]

DIR is a MIMIC-IV directory (csv.gz or parquet). A csv.gz directory is first converted to
parquet once (``clinops convert``, timed separately), because the pipeline runs on parquet.
Every measured step runs in its own child process, so each peak RSS (``ru_maxrss``) is that
step's alone:

- ``cohort``: the ICU cohort (not timed against pandas; written to the work directory);
- ``duckdb``: :func:`clinops.features.extract_features` with the full 17-feature manifest;
- ``duckdb-vitals``: the same function with a manifest of the five vital signs only, i.e.
  exactly the work the pandas version does;
- ``pandas``: the obvious pandas version: read chartevents with pandas (the whole table),
  filter the vital-sign items, merge with the cohort, keep the window, drop outliers, convert
  Fahrenheit, mean per charttime, worst value per stay;
- ``pandas-4col``: the same, reading only the 4 columns it needs (a tuned pandas baseline).

Printed: chartevents rows, seconds, chartevents rows per second, peak RSS per step, the
pandas / DuckDB time ratio, and the largest difference between the two results (they must
agree). ``--json PATH`` also writes the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VITALS = ["map", "heart_rate", "resp_rate", "temperature", "spo2"]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _child(mode: str, data: str, work: str, memory_limit: str, threads: int) -> dict:
    import pandas as pd

    from clinops.data.mimic import open_mimic

    work_p = Path(work)
    if mode == "cohort":
        from clinops.tasks.mortality.cohort import build_icu_cohort

        with open_mimic(data, memory_limit=memory_limit, threads=threads) as db:
            t0 = time.perf_counter()
            cohort, flow = build_icu_cohort(db)
            seconds = time.perf_counter() - t0
            n_chart = db.con.execute("SELECT count(*) FROM mimiciv_icu.chartevents"
                                     ).fetchone()[0]
        cohort.to_parquet(work_p / "cohort.parquet")
        return {"seconds": seconds, "n_stays": len(cohort), "chartevents_rows": int(n_chart),
                "peak_rss_mb": _peak_rss_mb()}

    cohort = pd.read_parquet(work_p / "cohort.parquet")
    if mode in ("duckdb", "duckdb-vitals"):
        from clinops.features import FeatureManifest, extract_features

        manifest = FeatureManifest.load("mortality")
        if mode == "duckdb-vitals":
            d = manifest.to_dict()
            d["features"] = [f for f in d["features"] if f["name"] in VITALS]
            manifest = FeatureManifest.from_dict(d)
        with open_mimic(data, memory_limit=memory_limit, threads=threads) as db:
            t0 = time.perf_counter()
            features, step = extract_features(db, cohort, manifest=manifest,
                                              max_missing_fraction=1.0)
            seconds = time.perf_counter() - t0
        features.to_parquet(work_p / f"{mode}.parquet")
        return {"seconds": seconds, "n_stays": len(features), "peak_rss_mb": _peak_rss_mb(),
                "missing_pct": {c: round(100 * float(features[c].isna().mean()), 2)
                                for c in features.columns}}

    if mode in ("pandas", "pandas-4col"):
        cols = ["stay_id", "charttime", "itemid", "valuenum"] if mode == "pandas-4col" else None
        result, seconds = _pandas_vitals(data, cohort, cols)
        result.to_parquet(work_p / f"{mode}.parquet")
        return {"seconds": seconds, "n_stays": len(result), "peak_rss_mb": _peak_rss_mb()}
    raise ValueError(f"mode: unknown {mode!r}")


def _pandas_vitals(data: str, cohort, cols: list[str] | None):
    """The obvious pandas extraction of the five vital signs (same rules as the SQL)."""
    import numpy as np
    import pandas as pd

    from clinops.features import FeatureManifest

    manifest = FeatureManifest.load("mortality")
    path = Path(data) / "icu" / "chartevents.parquet"
    if not path.exists():
        path = Path(data) / "icu" / "chartevents.csv.gz"
    t0 = time.perf_counter()
    if path.suffix == ".parquet":
        ce = pd.read_parquet(path, columns=cols)
    else:
        ce = pd.read_csv(path, usecols=cols, parse_dates=["charttime"])
    item_to_feature, rules = {}, {}
    for name in VITALS:
        s = manifest[name]
        f_ids = set(s.source.get("fahrenheit_itemids", []))
        for item in s.source["itemids"]:
            item_to_feature[item] = name
            if item in f_ids:
                lo, hi = s.source["fahrenheit_range"]
                rules[item] = (lo, hi, False, False, True)
            else:
                rules[item] = (*s.plausible_range, *s.range_closed, False)
    ce = ce[ce["itemid"].isin(list(item_to_feature))]
    ce = ce.merge(cohort[["stay_id", "intime"]], on="stay_id")
    ce = ce[(ce["charttime"] >= ce["intime"])
            & (ce["charttime"] <= ce["intime"] + pd.Timedelta(hours=24))]
    keep = np.zeros(len(ce), dtype=bool)
    v = ce["valuenum"].to_numpy()
    value = v.copy()
    for item, (lo, hi, lo_c, hi_c, fahrenheit) in rules.items():
        m = (ce["itemid"] == item).to_numpy()
        ok = ((v >= lo) if lo_c else (v > lo)) & ((v <= hi) if hi_c else (v < hi))
        keep |= m & ok
        if fahrenheit:
            value = np.where(m, (v - 32) / 1.8, value)
    ce = ce.assign(value=value, feature=ce["itemid"].map(item_to_feature))[keep]
    temp = ce["feature"] == "temperature"
    ce.loc[temp, "value"] = ce.loc[temp, "value"].round(2)
    per_time = ce.groupby(["stay_id", "charttime", "feature"])["value"].mean().reset_index()
    worst = {n: manifest[n].aggregate for n in VITALS}
    parts = []
    for name, g in per_time.groupby("feature"):
        agg = g.groupby("stay_id")["value"].agg(worst[name])
        parts.append(agg.rename(name))
    out = pd.concat(parts, axis=1).reindex(cohort["stay_id"].to_numpy())
    out.index.name = "stay_id"
    return out[VITALS], time.perf_counter() - t0


def _run_child(mode: str, args, work: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--data", str(args.data_pq),
           "--work", str(work), "--memory-limit", args.memory_limit,
           "--threads", str(args.threads)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="MIMIC-IV directory (csv.gz or parquet)")
    ap.add_argument("--work", default=None, help="work directory (default: a temp dir)")
    ap.add_argument("--memory-limit", default="3GB", help="DuckDB memory limit")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--skip-pandas", action="store_true", help="DuckDB only (full scale)")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.data, args.work, args.memory_limit,
                                args.threads)))
        return 0

    from clinops.data.convert import convert_to_parquet
    from clinops.data.mimic import open_mimic

    work = Path(args.work or tempfile.mkdtemp(prefix="bench_features_"))
    work.mkdir(parents=True, exist_ok=True)
    report: dict = {"data": str(Path(args.data).resolve()), "threads": args.threads,
                    "memory_limit": args.memory_limit}
    with open_mimic(args.data) as db:
        fmt = db.format
    if fmt == "csv":
        pq = work / "parquet"
        if not pq.exists():
            t0 = time.perf_counter()
            convert_to_parquet(args.data, pq, memory_limit=args.memory_limit,
                               threads=args.threads)
            report["convert_seconds"] = time.perf_counter() - t0
        args.data_pq = pq
    else:
        args.data_pq = Path(args.data)

    report["cohort"] = _run_child("cohort", args, work)
    n_rows = report["cohort"]["chartevents_rows"]
    modes = ["duckdb", "duckdb-vitals"] + ([] if args.skip_pandas else
                                           ["pandas", "pandas-4col"])
    for mode in modes:
        report[mode] = r = _run_child(mode, args, work)
        r["chartevents_rows_per_s"] = n_rows / r["seconds"]
    if not args.skip_pandas:
        import numpy as np
        import pandas as pd

        a = pd.read_parquet(work / "duckdb-vitals.parquet")[VITALS]
        for mode in ("pandas", "pandas-4col"):
            b = pd.read_parquet(work / f"{mode}.parquet")[VITALS].reindex(a.index)
            same_missing = bool((a.isna() == b.isna()).all().all())
            diff = float(np.nanmax(np.abs(a.to_numpy() - b.to_numpy()))) if len(a) else 0.0
            report[f"{mode}_vs_duckdb_vitals"] = {
                "time_ratio": report[mode]["seconds"] / report["duckdb-vitals"]["seconds"],
                "time_ratio_vs_full_17": report[mode]["seconds"] / report["duckdb"]["seconds"],
                "max_abs_difference": diff, "same_missing_pattern": same_missing}

    print(f"data: {report['data']} ({fmt}; parquet used: {args.data_pq})")
    if "convert_seconds" in report:
        print(f"csv.gz -> parquet conversion: {report['convert_seconds']:.1f} s")
    print(f"chartevents rows: {n_rows:,}; cohort: {report['cohort']['n_stays']:,} stays "
          f"({report['cohort']['seconds']:.2f} s, peak RSS "
          f"{report['cohort']['peak_rss_mb']:.0f} MB)")
    print(f"{'step':<32}{'seconds':>9}{'chartevents rows/s':>20}{'peak RSS MB':>13}")
    for mode, label in [("duckdb", "DuckDB, 17 features"),
                        ("duckdb-vitals", "DuckDB, 5 vital signs"),
                        ("pandas", "pandas, 5 vital signs"),
                        ("pandas-4col", "pandas 4 columns, 5 vital signs")]:
        if mode in report:
            r = report[mode]
            print(f"{label:<32}{r['seconds']:>9.2f}{r['chartevents_rows_per_s']:>20,.0f}"
                  f"{r['peak_rss_mb']:>13.0f}")
    for mode in ("pandas", "pandas-4col"):
        if f"{mode}_vs_duckdb_vitals" in report:
            c = report[f"{mode}_vs_duckdb_vitals"]
            print(f"{mode} / DuckDB time, same 5 vital signs: {c['time_ratio']:.1f}x "
                  f"({mode} 5 vitals / DuckDB all 17: {c['time_ratio_vs_full_17']:.1f}x); "
                  f"results agree: max |diff| = {c['max_abs_difference']:.2e}, "
                  f"same missing pattern = {c['same_missing_pattern']}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
