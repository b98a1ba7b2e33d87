"""Prometheus metrics of the serving demo, on a registry private to one app instance.

A private :class:`prometheus_client.CollectorRegistry` (not the global default) lets several
apps live in one process (tests, the benchmark) without duplicate-metric errors.

With several worker processes (``python -m serving --workers N``) the server sets
``PROMETHEUS_MULTIPROC_DIR`` before any worker starts: counters and the latency histogram are
then summed over the workers at scrape time, and every gauge reports the value most recently
set by any worker (``multiprocess_mode="mostrecent"``; the gauges describe shared state, which
whichever worker answers a scrape refreshes first).
"""
from __future__ import annotations

import os
import time
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import Gauge as _Gauge
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Fine buckets below 25 ms: the latency target is p99 < 25 ms.
LATENCY_BUCKETS_SECONDS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServingMetrics:
    """All metrics the service exports (``GET /metrics``)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry

        def Gauge(*args, **kwargs) -> _Gauge:  # noqa: N802 -- every gauge: most recent value of any worker
            return _Gauge(*args, multiprocess_mode="mostrecent", **kwargs)

        self.request_latency = Histogram(
            "clinops_request_latency_seconds", "Request latency by route template, method and status",
            ["method", "route", "status"], buckets=LATENCY_BUCKETS_SECONDS, registry=r)
        self.predictions = Counter("clinops_predictions", "Predictions returned", registry=r)
        self.scoring_batch_size = Histogram(
            "clinops_scoring_batch_size", "Concurrent predictions scored and audited together (one XGBoost call, "
            "one audit commit)", buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32), registry=r)
        self.escalations = Counter(
            "clinops_escalations", "Predictions marked for human review, by reason", ["reason"], registry=r)
        self.escalated_predictions = Counter(
            "clinops_escalated_predictions", "Predictions marked for human review (any reason)", registry=r)
        self.overrides = Counter("clinops_overrides", "Clinician overrides", registry=r)
        self.override_rate = Gauge("clinops_override_rate", "Overrides per prediction served from this state directory", registry=r)
        self.consent_refusals = Counter("clinops_consent_refusals", "Requests refused by the consent registry", registry=r)
        self.audit_failures = Counter("clinops_audit_write_failures", "Audit writes that failed (request failed too)", registry=r)
        self.review_queue_write_failures = Counter(
            "clinops_review_queue_write_failures", "Escalated cases the review queue did not take (restored from "
            "the audit trail at the next start)", registry=r)
        self.review_queue_open = Gauge("clinops_review_queue_open", "Open cases in the review queue", registry=r)
        self.model_state = Gauge("clinops_model_state", "1 for the governance state the model is in", ["state"], registry=r)
        self.drift_psi = Gauge("clinops_drift_psi", "PSI of recent inputs against the training bins", ["feature"], registry=r)
        self.drift_window = Gauge("clinops_drift_window_size", "Predictions in the drift window", registry=r)
        self.live_outcomes = Gauge("clinops_live_outcomes", "Linked outcomes in the sliding window", registry=r)
        self.live_ece = Gauge("clinops_live_ece", "Expected calibration error over linked outcomes", registry=r)
        self.live_auroc = Gauge("clinops_live_auroc", "AUROC over linked outcomes", registry=r)
        # CBPE (clinops.drift.cbpe): what the calibrated probabilities imply, before outcomes arrive
        self.cbpe_auroc = Gauge(
            "clinops_cbpe_auroc", "AUROC expected from the calibrated probabilities of the drift window (CBPE: "
            "assumes calibration holds; blind to a concept shift), before any outcome", registry=r)
        self.cbpe_event_rate = Gauge(
            "clinops_cbpe_event_rate", "Event rate expected from the calibrated probabilities of the drift window "
            "(CBPE)", registry=r)
        self.live_cbpe_auroc = Gauge(
            "clinops_live_cbpe_auroc", "AUROC expected (CBPE) from the probabilities of the linked-outcome window: "
            "compare with clinops_live_auroc, realised on the same predictions", registry=r)
        self.live_group_auroc = Gauge(
            "clinops_live_group_auroc", "AUROC over linked outcomes per group", ["attribute", "group"], registry=r)
        # Signals the Prometheus rules of serving/ops need (clinops.ops.prometheus).
        self.imputed_values = Counter(
            "clinops_imputed_values", "Feature values absent from a prediction request and imputed with the frozen "
            "training median, by feature", ["feature"], registry=r)
        self.feature_values = Counter(
            "clinops_feature_values", "Feature values scored (present or imputed): the imputed share's denominator",
            registry=r)
        self.override_decisions = Gauge(
            "clinops_override_decisions", "Predictions the override rate is judged on (served from this state "
            "directory)", registry=r)
        self.reference_auroc = Gauge(
            "clinops_reference_auroc", "Test AUROC of the served model: the reference of the live degradation rule",
            registry=r)
        # One value per process start: with several workers "max" is the latest worker start and
        # "min" the first, so a worker that (re)started long after the first one shows as a gap.
        started = time.time()
        _Gauge("clinops_worker_start_time_seconds", "Start time of the most recently started worker process "
               "(Unix seconds)", multiprocess_mode="max", registry=r).set(started)
        _Gauge("clinops_first_worker_start_time_seconds", "Start time of the first worker process of this server "
               "run (Unix seconds)", multiprocess_mode="min", registry=r).set(started)

    def observe_imputation(self, imputed: Sequence[str], n_features: int) -> None:
        """Count one scored request: ``n_features`` values, of which the features named in ``imputed``
        were missing and imputed."""
        self.feature_values.inc(n_features)
        for feature in imputed:
            self.imputed_values.labels(feature).inc()

    def render(self) -> bytes:
        """The exposition text (Prometheus text format 0.0.4), summed over worker processes if any."""
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if directory:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=directory)
            return generate_latest(registry)
        return generate_latest(self.registry)


class LatencyMiddleware:
    """Pure ASGI middleware timing every HTTP request into ``request_latency``.

    The route label is the matched route template (``/v1/predictions/{prediction_id}/override``),
    never the raw path, so arbitrary URLs cannot blow up label cardinality.
    """

    def __init__(self, app: ASGIApp, metrics: ServingMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.request_latency.labels(scope["method"], template, str(status["code"])).observe(
                time.perf_counter() - started)
