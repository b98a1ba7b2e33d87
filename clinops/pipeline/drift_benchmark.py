"""The drift benchmark of a built model: the stage's table and ``benchmarks/bench_drift.py`` share it.

The scenarios are the run's own shift (for the primary task: the paper's ventilation 38 -> 72 %)
and the smaller ones of ``drift.benchmark_prevalences`` (a binary feature) or
``drift.benchmark_shifts`` (a numeric one); every stream runs the same monitor as the drift
stage (score and feature-stream detectors, thresholds from the policy's false-alarm budget).
Seeds are ``seed, seed + 1, ...`` (``drift.benchmark_seeds`` of them) from the run's seed.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from clinops import drift
from clinops.config import Params
from clinops.modeling import ModelBundle
from clinops.pipeline.context import load_task_table, task_config
from clinops.tasks.temporal_split import analysis_masks
from clinops.uncertainty import RiskPredictor

__all__ = ["BENCHMARK_CHANGE_AT_HOURS", "DRIFT_DEFAULTS", "BuiltScenario", "benchmark_scenarios", "build_scenarios",
           "drift_setup", "run_benchmark"]

#: Unshifted admissions before the change in a benchmark stream (as in the stage's own run).
BENCHMARK_CHANGE_AT_HOURS = 48.0

#: The issue-18 keys of the ``drift`` section as ``params/default.yaml`` sets them, for a parameter
#: file that does not extend it (the schema has validated whatever a file does set).
DRIFT_DEFAULTS: dict[str, Any] = {"min_effect_size": 0.2, "concept_fraction": 0.3, "benchmark_seeds": 100,
                                  "benchmark_hours_after_change": 48, "benchmark_prevalences": [0.5, 0.6],
                                  "benchmark_shifts": []}


def _label(column: str, kind: str, before: float, value: float) -> str:
    return f"{column} {before:.2f} -> {value:.2f}" if kind == "prevalence" else f"{column} {value:+g}"


def benchmark_scenarios(d: dict[str, Any], *, column_values: Any) -> list[tuple[str, str, float]]:
    """(name, kind, value) of each benchmark scenario, the run's own last (named 'scenario: ...')."""
    before = float(np.nanmean(np.asarray(column_values, dtype=float)))
    if d.get("shift") is None:
        own = float(d["target_prevalence"])
        values = sorted({float(v) for v in d.get("benchmark_prevalences", [])} - {own})
        kind = "prevalence"
    else:
        own = float(d["shift"])
        values = sorted({float(v) for v in d.get("benchmark_shifts", [])} - {own})
        kind = "additive"
    out = [(_label(d["feature"], kind, before, v), kind, v) for v in values]
    out.append(("scenario: " + _label(d["feature"], kind, before, own), kind, own))
    return out


def drift_setup(P: Params, task: str = "primary") -> SimpleNamespace:
    """What the drift stage and the benchmark share for a built task: the model's ``predict``, the
    test rows, the training reference and ``new_monitor()`` (the one monitor both run).

    ``cusum_threshold`` is the budgeted threshold (nats) of the scenario feature's CUSUM (None
    when that feature has none: numeric, or no feature streams).
    """
    t = task_config(P, task)
    d = {**DRIFT_DEFAULTS, **t.settings["drift"]}
    bundle = ModelBundle.load(t.bundle_dir)
    predictor = RiskPredictor(bundle)
    manifest = t.manifest()
    preds = pd.read_parquet(t.predictions_path)
    X_test = preds[manifest.names].reset_index(drop=True)
    y_test = preds["label"].to_numpy(dtype=int)

    def predict(frame: pd.DataFrame) -> np.ndarray:
        return predictor.predict_frame(frame)["probability"].to_numpy()

    policy = t.resolved.drift
    reference = drift.PsiReference.from_dict(bundle.reference, eps=policy.psi_eps)
    train_rows = load_task_table(t)
    train_rows = train_rows[analysis_masks(train_rows)[0]]  # in_analysis & split == "train"
    ref_scores = predict(train_rows[manifest.names])
    # The PSI bins in the bundle were fixed on encoded training features (categories as codes).
    ref_features = manifest.encode(train_rows[manifest.names])

    def new_monitor(on_event: Callable[[drift.MonitorEvent], None] | None = None) -> drift.StreamMonitor:
        return drift.StreamMonitor.from_policy(policy, reference, reference_scores=ref_scores,
                                               eval_minutes=d["eval_minutes"], on_event=on_event,
                                               reference_features=ref_features)

    cusum = new_monitor().feature_detectors.get((d["feature"], "cusum"))
    return SimpleNamespace(t=t, d=d, seed=t.seed, bundle=bundle, manifest=manifest, X_test=X_test, y_test=y_test,
                           predict=predict, policy=policy, train_rows=train_rows, new_monitor=new_monitor,
                           encode=manifest.encode,
                           cusum_threshold=float(getattr(cusum, "threshold")) if cusum is not None else None)


@dataclass(frozen=True)
class BuiltScenario:
    """One benchmark scenario, built once: its shifted admissions and its strength.

    ``name``, ``kind`` and ``value`` are :func:`benchmark_scenarios`' entry; ``scenario`` is
    :func:`clinops.drift.shift_scenario` on the test rows, ``strength`` is
    :func:`clinops.drift.scenario_strength` with the setup's budgeted CUSUM threshold.
    """

    name: str
    kind: str
    value: float
    scenario: drift.ShiftScenario
    strength: drift.ScenarioStrength


def build_scenarios(setup: SimpleNamespace) -> list[BuiltScenario]:
    """Every benchmark scenario of ``setup`` (:func:`drift_setup`) built once, the run's own last.

    The one place a drift scenario and its strength are built: the drift stage takes its own
    scenario (the last) from here and passes the list on to :func:`run_benchmark`.
    """
    d, seed, predict, X_test, y_test = setup.d, setup.seed, setup.predict, setup.X_test, setup.y_test
    column, n = d["feature"], min(int(d["n_shifted"]), len(X_test))
    rate = float(d["rate_per_hour"])
    out = []
    for name, kind, value in benchmark_scenarios(d, column_values=X_test[column]):
        arg = {"target_prevalence": value} if kind == "prevalence" else {"shift": value}
        sc = drift.shift_scenario(predict, X_test, y_test, column=column, n=n, seed=seed, **arg)
        st = drift.scenario_strength(X_test[column], column=column, threshold_nats=setup.cusum_threshold,
                                     rate_per_hour=rate, min_effect=float(d["min_effect_size"]), **arg)
        out.append(BuiltScenario(name=name, kind=kind, value=value, scenario=sc, strength=st))
    return out


def run_benchmark(setup: SimpleNamespace, *, n_seeds: int | None = None,
                  scenarios: list[BuiltScenario] | None = None) -> SimpleNamespace:
    """Run every benchmark scenario over ``drift.benchmark_seeds`` seeds (or ``n_seeds``); the table and verdict.

    ``scenarios`` are :func:`build_scenarios`' (built here when not given: the drift stage passes
    the ones it already built).

    Returns ``runs`` (one row per scenario, seed and detector), ``table``
    (:func:`clinops.drift.benchmark_table`), ``strength`` (one row per scenario:
    :func:`clinops.drift.scenario_strength`) and ``verdict`` (:func:`clinops.drift.targets_verdict`
    on the run's own scenario).
    """
    d, seed, predict, X_test, encode = setup.d, setup.seed, setup.predict, setup.X_test, setup.encode
    rate = float(d["rate_per_hour"])
    built = build_scenarios(setup) if scenarios is None else scenarios
    pools: dict[str, drift.StreamPool] = {}
    strength_rows, bounds, unshifted_index = [], {}, None
    for b in built:
        pools[b.name] = drift.StreamPool(b.scenario.scores_after, encode(b.scenario.X_shifted))
        unshifted_index = X_test.index.difference(b.scenario.X_shifted.index)
        strength_rows.append({"scenario": b.name, **b.strength.to_dict()})
        bounds[b.name] = (b.strength.bound_admissions, b.strength.bound_hours)
    unshifted = X_test.loc[unshifted_index]
    before = drift.StreamPool(predict(unshifted), encode(unshifted))
    seeds = [seed + k for k in range(int(n_seeds if n_seeds is not None else d["benchmark_seeds"]))]
    runs = drift.benchmark_runs(setup.new_monitor, before=before, scenarios=pools, seeds=seeds, rate_per_hour=rate,
                                change_at_hours=BENCHMARK_CHANGE_AT_HOURS,
                                after_hours=float(d["benchmark_hours_after_change"]),
                                no_shift_hours=float(d["no_shift_days"]) * 24)
    table = drift.benchmark_table(runs, bounds=bounds)
    own = list(pools)[-1]
    verdict = drift.targets_verdict(table, scenario=own)
    return SimpleNamespace(runs=runs, table=table, strength=pd.DataFrame(strength_rows), verdict=verdict,
                           scenario=own, seeds=seeds)
