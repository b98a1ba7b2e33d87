"""The drift benchmark of a built run: detection delay and false alarms over many seeded streams.

For the run's own drift scenario (the paper's: ventilation 38 -> 72 % in the shifted test
admissions) and the smaller shifts of ``drift.benchmark_prevalences`` (38 -> 50 %, 38 -> 60 %),
each over ``drift.benchmark_seeds`` seeded Poisson streams at ``drift.rate_per_hour``, and
no-shift streams of ``drift.no_shift_days``: the median and 90th percentile of the detection
delay (simulated hours and admissions) and the false alarms per 30 days, per detector and for the
combined monitor, beside the CUSUM information bound; then whether the issue's targets are met
(median delay <= 6 h with <= 1 false alarm per 30 days, combined monitor). The same function
(:func:`clinops.pipeline.drift_benchmark.run_benchmark`) writes ``reports/<run>/drift/benchmark``
in the workflow's drift stage; this script prints it (and may override the number of seeds).
Needs the run's model step built first (``make all`` or the Snakefile up to ``model_selection``).

    .venv/bin/python benchmarks/bench_drift.py --params params/quick.yaml --seeds 5
    .venv/bin/python benchmarks/bench_drift.py                      # paper scale: 100 seeds
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clinops import pipeline  # noqa: E402  (after the path line: run as a script)
from clinops.drift.benchmark import COMBINED  # noqa: E402
from clinops.pipeline.drift_benchmark import drift_setup, run_benchmark  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params/default.yaml", help="the run's parameter file")
    parser.add_argument("--task", default="primary", help="run slot: primary or readmission")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per scenario (default: drift.benchmark_seeds)")
    parser.add_argument("--all-detectors", action="store_true", help="print every detector, not only the main ones")
    args = parser.parse_args(argv)
    P = pipeline.load(args.params)
    started = time.perf_counter()
    bench = run_benchmark(drift_setup(P, args.task), n_seeds=args.seeds)
    table = bench.table
    if not args.all_detectors:
        keep = table["detector"].isin([COMBINED, "psi_drift", "adwin", "page_hinkley"]) | \
            table["detector"].str.endswith(f"[{bench.scenario.split(': ', 1)[-1].split(' ')[0]}]")
        table = table[keep]
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_rows", 500):
        print(f"Data: {P.data_label}. {len(bench.seeds)} seeds per scenario, "
              f"{time.perf_counter() - started:.0f} s.")
        print(bench.strength[["scenario", "effect_size", "effect_measure", "too_weak", "bound_hours"]].to_string(index=False))
        print(table.to_string(index=False))
    v = bench.verdict
    print(f"Targets (combined monitor, {bench.scenario}): median delay {v['median_delay_hours']:.2f} h "
          f"(<= {v['max_median_hours']:g}: {'met' if v['delay_met'] else 'NOT met'}), "
          f"{v['false_alarms_per_30_days']:.2f} false alarms per 30 days "
          f"(<= {v['max_false_alarms_per_30_days']:g}: {'met' if v['false_alarms_met'] else 'NOT met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
