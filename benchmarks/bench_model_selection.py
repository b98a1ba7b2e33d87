"""Model selection time at paper scale (stage 1 + stage 2), run by hand.

    .venv/bin/python benchmarks/bench_model_selection.py [--rows 17000] [--features 17] [--n-iter 100]

Prints wall time and CPU seconds (this process and its workers) of stage 1 (three candidates,
5-fold CV) and stage 2 (random search, 100 configurations, 5-fold CV) on synthetic data of the
paper's size. Target (issue #3): the whole `make all` under 15 min, so stage 1 + 2 well under
4 min per task on 2 cores. On a shared machine CPU seconds / 2 is the fairer figure.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import psutil

from clinops import modeling


def cpu_seconds() -> float:
    total = 0.0
    for proc in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=17_000)
    ap.add_argument("--features", type=int, default=17)
    ap.add_argument("--n-iter", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    X = rng.normal(size=(args.rows, args.features))
    logit = X[:, :5] @ np.array([1, .8, .6, .4, .3]) - 2.3
    y = (rng.random(args.rows) < 1 / (1 + np.exp(-logit))).astype(int)
    X[rng.random(X.shape) < 0.1] = np.nan
    print(f"load average before: {psutil.getloadavg()}")
    w0, c0 = time.perf_counter(), cpu_seconds()
    modeling.cross_validate_candidates(X, y, seed=args.seed, n_jobs=2)
    w1, c1 = time.perf_counter(), cpu_seconds()
    modeling.random_search_xgb(X, y, n_iter=args.n_iter, seed=args.seed, n_jobs=2)
    w2, c2 = time.perf_counter(), cpu_seconds()
    print(f"stage 1 (3 candidates, 5-fold CV, {args.rows:,} x {args.features}): wall {w1 - w0:.1f} s, CPU {c1 - c0:.1f} s")
    print(f"stage 2 (random search, {args.n_iter} configurations, 5-fold CV): wall {w2 - w1:.1f} s, CPU {c2 - c1:.1f} s")
    print(f"stage 1 + 2: wall {w2 - w0:.1f} s, CPU/2 {(c2 - c0) / 2:.1f} s")
    print(f"load average after: {psutil.getloadavg()}")


if __name__ == "__main__":
    main()
