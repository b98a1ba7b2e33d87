"""What one prediction costs before any HTTP or audit: ``RiskPredictor.predict_one`` on a model.

Prints, for the registered model of a run (default ``params/default.yaml``; ``--bundle DIR`` for
any saved bundle):

- the XGBoost steps of one prediction, each timed alone: building the one-row ``DMatrix``, the
  score (``predict`` on a new ``DMatrix``, as every request pays it: a repeat on the same
  ``DMatrix`` is served from XGBoost's prediction cache and looks ~4x cheaper) and the exact
  TreeSHAP contributions (``pred_contribs=True``);
- ``predict_many`` per row at batch sizes 1, 2, 4, 8 and 32 (the server scores concurrent
  requests as one batch: each call's fixed cost is then shared);
- ``predict_one`` throughput and mean wall time with 1, 2, 4 and 8 threads on this machine
  (XGBoost releases the interpreter lock while it computes, so threads can use both cores).

This is the floor under the serving benchmark (``bench_serving.py``): no request can be answered
faster than its scoring, and no set of clients can be served faster than scoring saturates the
cores.

    .venv/bin/python benchmarks/bench_scoring.py
    .venv/bin/python benchmarks/bench_scoring.py --bundle build/quick/primary/bundle
"""
from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import xgboost as xgb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clinops.bundle import ModelBundle  # noqa: E402  (after the path line: run as a script)
from clinops.uncertainty import RiskPredictor  # noqa: E402


def _per_call_us(function, n: int) -> float:
    function()
    started = time.perf_counter()
    for _ in range(n):
        function()
    return (time.perf_counter() - started) / n * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=ROOT / "params" / "default.yaml")
    parser.add_argument("--bundle", type=Path, help="a saved bundle directory instead of the run's")
    parser.add_argument("--n", type=int, default=1000, help="calls per measurement")
    args = parser.parse_args(argv)

    if args.bundle is not None:
        bundle_dir, records = args.bundle, None
    else:
        from clinops.pipeline import load, load_task_table, task_config

        task = task_config(load(args.params), "primary")
        bundle_dir = task.bundle_dir
        table = load_task_table(task)
        test = table[table["split"] == "test"].head(1000)
        records = task.manifest().records(test)
    bundle = ModelBundle.load(bundle_dir)
    predictor = RiskPredictor(bundle)  # sets nthread=1 on the booster, as the server does
    booster = bundle.booster
    if records is None:
        records = [{}]  # every feature imputed
    trees = booster.num_boosted_rounds()
    print(f"model: {bundle_dir} ({trees} trees, {len(bundle.feature_names)} features)")

    x = np.asarray(bundle.median_vector, dtype=np.float64).reshape(1, -1)
    dm = xgb.DMatrix(x, nthread=1)
    n = args.n
    new_matrix = _per_call_us(lambda: xgb.DMatrix(x, nthread=1), n)
    print(f"one-row DMatrix:                  {new_matrix:8.1f} us")
    scored = _per_call_us(lambda: booster.predict(xgb.DMatrix(x, nthread=1), validate_features=False), n)
    print(f"score on a new DMatrix:           {scored - new_matrix:8.1f} us")
    contribs = _per_call_us(lambda: booster.predict(dm, pred_contribs=True, validate_features=False), n)
    print(f"TreeSHAP, one row:                {contribs:8.1f} us")
    for size in (1, 2, 4, 8, 32):
        batches = [records[i:i + size] for i in range(0, len(records) - size + 1, size)] or [records[:1] * size]
        k = iter(range(10 ** 9))
        per_row = _per_call_us(lambda: predictor.predict_many(batches[next(k) % len(batches)]),
                               max(20, n // size)) / size
        print(f"predict_many, batch of {size:2d}:       {per_row:8.1f} us per row")

    for threads in (1, 2, 4, 8):
        per_thread = max(1, (2 * n) // threads)

        def work(offset: int) -> list[float]:
            walls = []
            for i in range(per_thread):
                started = time.perf_counter()
                predictor.predict_one(records[(offset + i) % len(records)])
                walls.append(time.perf_counter() - started)
            return walls

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=threads) as pool:
            walls = [w for part in pool.map(work, range(0, threads * per_thread, per_thread)) for w in part]
        elapsed = time.perf_counter() - started
        print(f"predict_one, {threads} thread(s):   {per_thread * threads / elapsed:7.0f} predictions/s, "
              f"mean wall {np.mean(walls) * 1000:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
