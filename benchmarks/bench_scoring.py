"""What one prediction costs before any HTTP or audit: ``RiskPredictor.predict_one`` on a model.

Prints, for the registered model of a run (default ``params/default.yaml``; ``--bundle DIR`` for
any saved bundle):

- the XGBoost steps of one prediction, each timed alone: building the one-row ``DMatrix``, the
  score (``predict``) and the exact TreeSHAP contributions (``pred_contribs=True``), single row
  and per row in a batch of 32 (TreeSHAP is linear in rows, so batching saves little);
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


def _per_call_us(function, n: int) -> float:
    function()
    started = time.perf_counter()
    for _ in range(n):
        function()
    return (time.perf_counter() - started) / n * 1e6


def main(argv: list[str] | None = None) -> int:
    from clinops.modeling import ModelBundle
    from clinops.uncertainty import RiskPredictor

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
    rng = np.random.default_rng(0)
    batch = xgb.DMatrix(np.tile(x, (32, 1)) * rng.uniform(0.9, 1.1, (32, x.shape[1])), nthread=1)
    n = args.n
    print(f"one-row DMatrix:            {_per_call_us(lambda: xgb.DMatrix(x, nthread=1), n):8.1f} us")
    print(f"predict (score):            {_per_call_us(lambda: booster.predict(dm, validate_features=False), n):8.1f} us")
    contribs = _per_call_us(lambda: booster.predict(dm, pred_contribs=True, validate_features=False), n)
    print(f"TreeSHAP, one row:          {contribs:8.1f} us")
    per_row = _per_call_us(lambda: booster.predict(batch, pred_contribs=True, validate_features=False),
                           max(10, n // 32)) / 32
    print(f"TreeSHAP, per row of 32:    {per_row:8.1f} us")

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
