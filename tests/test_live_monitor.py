"""The server's monitoring (clinops.monitoring.live), and a detector enabled by a policy being run
by both the workflow's drift path and the server (the CUSUM example, over real HTTP)."""
from __future__ import annotations

import contextlib
import dataclasses

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from clinops.drift import DriftPolicy, PsiReference, StreamMonitor, reference_statistics, simulate_stream, stream_summary
from clinops.fairness import FairnessPolicy
from clinops.features import FeatureManifest
from clinops.drift.streams import SCORE, stream_label
from clinops.monitoring import LiveDriftMonitor, OutcomeWindow
from clinops.uncertainty import expected_calibration_error
from serving.testing import ServerThread, build_demo_bundle, demo_app, demo_frame, demo_settings, demo_token

CUSUM_ONLY = "adwin: {enabled: false}\npage_hinkley: {enabled: false}\ncusum: {enabled: true, threshold: 3}\n"


class Shared(dict):
    """The outcome store's shared values, in memory (one per state directory)."""

    def transaction(self):
        return contextlib.nullcontext(self)

    def set(self, key, value):
        self[key] = value


class Governance:
    def __init__(self):
        self.drift, self.degradation, self.fairness = [], [], []

    def on_drift(self, *, detector, details):
        self.drift.append((detector, dict(details)))

    def on_degradation(self, **kwargs):
        self.degradation.append(kwargs)

    def on_fairness_alert(self, alerts, *, details):
        self.fairness.append(list(alerts))


@pytest.fixture(scope="module")
def manifest():
    return FeatureManifest.load("mortality")


@pytest.fixture(scope="module")
def reference(manifest):
    """The training bins of the ventilation flag (~35 % ventilated), as a bundle stores them."""
    X, _ = demo_frame(600, seed=3, manifest=manifest)
    return PsiReference.from_dict({"mech_vent": reference_statistics(manifest.encode(X))["mech_vent"]})


def _records(manifest, n, seed, **fixed):
    X, _ = demo_frame(n, seed=seed, manifest=manifest)
    binary = {s.name for s in manifest.specs if s.kind == "binary"}
    for row in X.to_dict("records"):
        yield {k: (None if isinstance(v, float) and np.isnan(v) else int(v) if k in binary else v)
               for k, v in {**row, **fixed}.items()}


def test_psi_is_evaluated_every_tenth_window_and_workers_agree_on_new_drift(manifest, reference):
    shared, governance = Shared(), Governance()
    seen = []
    workers = [LiveDriftMonitor(reference, DriftPolicy(), manifest=manifest, sink=governance, shared=shared,
                                window=20, on_psi=lambda psi, n: seen.append(n)) for _ in range(2)]
    for worker in workers:
        for record in _records(manifest, 40, seed=5, mech_vent=1):
            worker.observe(record, score=0.2)
    assert seen == [20] * 22                # full at 20, then every 2 predictions, in each worker
    assert shared["last_psi"]["mech_vent"] > 0.2
    # the second worker finds mech_vent already drifted: one review, not one per worker
    assert [d for d, _ in governance.drift] == ["psi:mech_vent"]


def test_stream_detectors_start_on_the_first_window_of_scores(manifest, reference):
    governance = Governance()
    policy = DriftPolicy.from_mapping({"adwin": {"enabled": False}, "page_hinkley": {"enabled": False},
                                       "cusum": {"enabled": True, "threshold": 3}})
    records = list(_records(manifest, 60, seed=6))
    waiting = LiveDriftMonitor(reference, policy, manifest=manifest, sink=governance, shared=Shared(), window=20)
    for record in records[:30]:
        waiting.observe(record, score=0.3)          # no spread: CUSUM cannot start on this
    assert waiting.running == []
    live = LiveDriftMonitor(reference, policy, manifest=manifest, sink=governance, shared=Shared(), window=20)
    rng = np.random.default_rng(0)
    for record in records[:20]:
        live.observe(record, score=float(rng.uniform(0.0, 0.5)))
    assert live.running == ["cusum"] and governance.drift == []
    for record in records[20:]:
        live.observe(record, score=0.9)             # every score now in the reference's top decile
    detections = [d for d, details in governance.drift if not d.startswith("psi:")]
    assert detections and detections[0] == "cusum"
    first = next(details for d, details in governance.drift if d == "cusum")
    assert first["scores_monitored"] <= 8


def test_outcome_window_metrics_and_rules():
    governance = Governance()
    window = OutcomeWindow(sink=governance, fairness_policy=FairnessPolicy(min_group_size=10), operating_threshold=0.4,
                           age_edges=(18, 65), min_outcomes=20, reference_auroc=0.9)
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 80)
    sex = np.where(np.arange(80) % 2 == 0, "male", "female")
    # males ranked perfectly, females inverted
    prob = np.where(sex == "male", 0.2 + 0.6 * y, 0.8 - 0.6 * y) + rng.uniform(-0.05, 0.05, 80)
    outcomes = [(float(p), int(o), s, 70.0) for p, o, s in zip(prob, y, sex)]
    shared = Shared()
    assert window.evaluate(outcomes[:10], shared) == {"n": 10, "min_outcomes": 20}
    live = window.evaluate(outcomes, shared)
    assert live["ece"] == pytest.approx(expected_calibration_error(y, prob))
    assert live["auroc"] == pytest.approx(roc_auc_score(y, prob))
    male = sex == "male"
    assert live["group_auroc"]["sex"]["male"] == pytest.approx(roc_auc_score(y[male], prob[male]))
    assert governance.degradation and len(governance.fairness) == 1
    window.evaluate(outcomes, shared)              # the same broken rules: not alerted again
    assert len(governance.fairness) == 1 and shared["live"] == live


# ------------------------------------------------------------------ one detector, both paths

@pytest.fixture(scope="module")
def cusum_policy(tmp_path_factory):
    path = tmp_path_factory.mktemp("policy") / "drift.yaml"
    path.write_text(CUSUM_ONLY)
    return DriftPolicy.load(path)


def test_a_policy_enabled_detector_runs_in_the_workflows_stream(cusum_policy):
    """The drift stage's path: StreamMonitor.from_policy -> simulate_stream -> stream_summary."""
    rng = np.random.default_rng(7)
    Xb = pd.DataFrame({"noise": rng.normal(size=3000)})
    Xa = pd.DataFrame({"noise": rng.normal(size=1000)})
    reference = PsiReference.fit(pd.DataFrame({"noise": rng.normal(size=3000)}))
    monitor = StreamMonitor.from_policy(cusum_policy, reference, reference_scores=rng.beta(2, 12, 3000))
    _, alarms = simulate_stream(rng.beta(2, 12, 3000), rng.beta(4, 12, 1000), Xb, Xa, monitor=monitor,
                                rate_per_hour=20, change_at_hours=48.0, duration_hours=96.0, seed=1)
    summary = stream_summary(alarms, change_at_hours=48.0, duration_hours=96.0)
    assert list(summary.index) == ["cusum", "psi_drift", "psi_watch", "any"]
    assert summary.loc["cusum", "detected"] and summary.loc["cusum", "delay_hours"] < 12


def test_a_policy_enabled_detector_runs_in_the_server(cusum_policy, manifest, tmp_path):
    """The bundle carries the policy; the server's live monitor runs CUSUM and opens a review."""
    settings = dataclasses.replace(demo_settings(), drift=cusum_policy)
    bundle_dir = build_demo_bundle(tmp_path / "bundle", n=800, seed=11, settings=settings)
    extreme = {"age": 94.0, "gcs": 3.0, "map": 36.0, "lactate": 8.9, "vasopressor": 1}
    with ServerThread(demo_app(bundle_dir, tmp_path / "state", psi_window=20)) as server, \
            httpx.Client(base_url=server.base_url, timeout=30) as client:
        def predict(record):
            body = {"encounter_id": "30000001", "purpose": "direct_care", "features": record}
            response = client.post("/v1/predictions", json=body, headers=demo_token("clinician"))
            assert response.status_code == 200, response.text
            return response.json()["probability"]

        warmup = [predict(r) for r in _records(manifest, 20, seed=12)]
        assert len(set(warmup)) >= 3             # isotonic calibration: a few levels
        shifted = [predict(r) for r in _records(manifest, 12, seed=13, **extreme)]
        assert min(shifted) >= np.quantile(warmup, 0.9)
        items = client.get("/v1/review-queue", headers=demo_token("reviewer")).json()["items"]
    assert any(i["kind"] == "drift_watch" and i["reason"] == "drift detected by cusum" for i in items), items


class PerRowFormula(LiveDriftMonitor):
    """The reference: the drain as first written, one transform per row and detector."""

    def _update_detectors(self):
        detections = []
        with self._lock:
            pending, self._pending, self._drain_scheduled = self._pending, [], False
            detectors = list(self._detectors.items())
            for row, score, n_active in pending:
                for (stream, name), detector in detectors[:n_active]:
                    value = score if stream == SCORE else \
                        float(self._streams[stream].transform(row[self._column[stream]]))
                    if value == value and detector.update(value).drift_detected:
                        detections.append((stream_label(name, stream), value))
        for name, value in detections:
            self._report_detection(name, value)


def test_feature_streams_drained_in_bulk_see_what_the_per_row_formula_sees(manifest):
    """The stream detectors' updates run off the request path, several served rows at a time: each
    stream is transformed once per drain. Same inputs, same detections (and values) as the
    per-row formula, with one row per drain or 25."""
    X, _ = demo_frame(600, seed=3, manifest=manifest)
    reference = PsiReference.from_dict(reference_statistics(manifest.encode(X)))
    policy = DriftPolicy.from_mapping({"monitor": {"feature_streams": True}})
    records = list(_records(manifest, 120, seed=8)) + list(_records(manifest, 240, seed=9, mech_vent=1, heart_rate=150.0))
    rng = np.random.default_rng(1)
    scores = [float(s) for s in rng.uniform(0.0, 0.5, 120)] + [float(s) for s in rng.uniform(0.4, 0.9, 240)]
    results = []
    for monitor, bulk in ((PerRowFormula, False), (LiveDriftMonitor, False), (LiveDriftMonitor, True)):
        governance, jobs = Governance(), []
        live = monitor(reference, policy, manifest=manifest, sink=governance, shared=Shared(), window=40,
                       run_later=jobs.append if bulk else None)
        for i, (record, score) in enumerate(zip(records, scores)):
            live.observe(record, score=score)
            if bulk and i % 25 == 24:                  # a busy server: 25 rows wait for one drain
                while jobs:
                    jobs.pop(0)()
        while jobs:
            jobs.pop(0)()
        assert len(live.running) > 20                  # the score's and every feature's streams
        results.append(([(d, details["value"]) for d, details in governance.drift if not d.startswith("psi:")],
                        {label: getattr(det, "statistic", None) for label, det in zip(live.running, live._detectors.values())}))
    (formula, stats_formula), (row_by_row, stats_row), (bulk, stats_bulk) = results
    assert formula, "the shift must be detected for this test to mean anything"
    assert row_by_row == formula and bulk == formula
    assert stats_row == pytest.approx(stats_formula, nan_ok=True)
    assert stats_bulk == pytest.approx(stats_formula, nan_ok=True)
