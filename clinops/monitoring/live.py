"""What a server monitors while it serves: input and score drift, and live metrics on outcomes.

- :class:`LiveDriftMonitor`: fed every served prediction (its features and calibrated
  probability). PSI of every feature over the last ``window`` predictions against the
  bundle's training bins, re-evaluated every tenth of a window once the window is full; and
  the drift policy's stream detectors (:data:`clinops.drift.detectors.DETECTORS`: the same
  ones, with the same settings and false-alarm budget, that the workflow's
  :class:`clinops.drift.StreamMonitor` runs, :func:`clinops.drift.plan_detectors`) on the score
  and, with the policy's ``monitor.feature_streams``, on every feature stream. A feature newly at
  the alert level, or a detection, is reported to governance (``on_drift``: a review item; a
  drift alarm alone never suspends). With every PSI evaluation the AUROC and event rate the
  window's calibrated probabilities imply (CBPE, :mod:`clinops.drift.cbpe`) are estimated,
  before any outcome.
- :class:`OutcomeWindow`: live ECE, AUROC and per-group AUROC over the most recent linked
  outcomes (beside the CBPE estimate on the same probabilities), and the degradation and fairness
  rules on them.

Several server processes can share one state: what they must agree on (which features
already drifted, the last PSI and live metrics, which fairness alerts were raised) goes through
a :class:`SharedState` (the server's outcome store). The server keeps no drift loop of its own.
"""
from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from clinops.drift import DriftPolicy, PsiReference, psi_status
from clinops.drift.cbpe import expected_auroc, expected_event_rate
from clinops.drift.detectors import StreamDetector
from clinops.drift.streams import SCORE, FeatureStream, PlannedDetector, build_planned, feature_streams_from, \
    plan_detectors, stream_label
from clinops.fairness import FairnessPolicy, age_groups, fairness_alerts, subgroup_table
from clinops.features import FeatureManifest
from clinops.uncertainty import expected_calibration_error

__all__ = ["LiveDriftMonitor", "OutcomeWindow", "SharedState"]

log = logging.getLogger(__name__)


class SharedState(Protocol):
    """Values shared by the server's processes, with one exclusive transaction at a time."""

    def transaction(self) -> AbstractContextManager["SharedState"]: ...
    def get(self, key: str, default: Any = None) -> Any: ...
    def set(self, key: str, value: Any) -> None: ...


class DriftSink(Protocol):
    """Where alarms go: :meth:`clinops.governance.GovernanceStateMachine.on_drift`."""

    def on_drift(self, *, detector: str, details: Mapping[str, Any]) -> Any: ...


def _inline(job: Callable[[], Any]) -> None:
    job()


class LiveDriftMonitor:
    """PSI of recent inputs and the policy's stream detectors on served scores.

    Parameters
    ----------
    reference : PsiReference
        The bundle's training bins (:meth:`PsiReference.from_dict` of ``bundle.reference``).
    policy : DriftPolicy
        The bundle's drift policy: PSI levels, window and the enabled detectors.
    manifest : FeatureManifest
        Encodes each record (:meth:`clinops.features.FeatureManifest.encode_records`).
    sink : object with ``on_drift(detector=, details=)``
        Governance.
    shared : SharedState
        Which features already drifted and the last PSI, agreed between processes.
    window : int, optional
        Predictions per PSI evaluation (default: the policy's ``psi.window``). The stream
        detectors take the first ``window`` served predictions (scores and encoded features) as
        their reference (the bundle holds no training scores or rows): they run from the next
        prediction on. A detector whose reference cannot be used (no spread) waits for a newer one.
    run_later : callable(job), optional
        Runs evaluations and alarm reports off the request path (default: at once).
    on_psi : callable(psi: dict, window: int), optional
        Called with every PSI evaluation (e.g. to export it as metrics).
    on_estimate : callable(estimate: dict), optional
        Called with every CBPE estimate (``cbpe_auroc``, ``cbpe_event_rate``, ``window``).

    Examples
    --------
    >>> class Governance:
    ...     def on_drift(self, *, detector, details): print("drift:", detector)
    >>> class Shared(dict):
    ...     def transaction(self): return contextlib.nullcontext(self)
    ...     def set(self, key, value): self[key] = value
    >>> import contextlib
    >>> manifest = FeatureManifest.load("mortality")
    >>> train = pd.DataFrame({n: [0.0, 1.0] * 50 for n in manifest.names})
    >>> live = LiveDriftMonitor(PsiReference.fit(train, {"mech_vent": "categorical"}), DriftPolicy(),
    ...                         manifest=manifest, sink=Governance(), shared=Shared(), window=20)
    >>> for _ in range(20):
    ...     live.observe({"mech_vent": 1}, score=0.3)
    drift: psi:mech_vent
    """

    def __init__(self, reference: PsiReference, policy: DriftPolicy, *, manifest: FeatureManifest,
                 sink: DriftSink, shared: SharedState, window: int | None = None,
                 run_later: Callable[[Callable[[], Any]], None] | None = None,
                 on_psi: Callable[[dict[str, float], int], None] | None = None,
                 on_estimate: Callable[[dict[str, float]], None] | None = None):
        self.reference, self.policy, self.manifest = reference, policy, manifest
        self.sink, self.shared = sink, shared
        self.window = int(window or policy.psi_window)
        if self.window < 1:
            raise ValueError(f"window: must be >= 1, got {window}")
        self.run_later = run_later or _inline
        self.on_psi = on_psi
        self.on_estimate = on_estimate
        self._lock = threading.Lock()
        self._drain_lock = threading.Lock()  # one drain of the stream detectors at a time
        # The window lives in memory only and is binned when evaluated (every tenth of a
        # window), which keeps pandas out of the per-request path.
        self._rows: deque[list[float]] = deque(maxlen=self.window)
        self._since_eval = 0
        # The detectors' reference: the most recent `window` scores until each could be built
        # (a reference with no spread, e.g. one record served again and again, cannot scale
        # Page-Hinkley: it is retried every tenth of a window on the newer scores).
        self._reference_scores: deque[float] = deque(maxlen=self.window)
        self._window_scores: deque[float] = deque(maxlen=self.window)
        self._since_build = 0
        self._waiting: list[PlannedDetector] | None = None   # planned once the first window is in
        self._detectors: dict[tuple[str, str], StreamDetector] = {}
        self._streams: dict[str, FeatureStream] = {}
        self._column = {name: j for j, name in enumerate(self.manifest.names)}
        self.n_scored = 0
        # Served rows waiting for the stream detectors, with how many detectors ran when each was
        # served: the updates (dozens of detectors per row) run in run_later, off the request path.
        self._pending: list[tuple[list[float], float, int]] = []
        self._drain_scheduled = False

    @property
    def detectors(self) -> list[str]:
        """The score-stream detectors this monitor runs (the policy's enabled ones)."""
        return list(self.policy.enabled_detectors)

    def observe(self, features: Mapping[str, Any], score: float) -> None:
        """One served prediction: its (validated) features and calibrated probability."""
        row = self.manifest.encode_records([features])[0].tolist()
        with self._lock:
            self._rows.append(row)
            self._window_scores.append(float(score))
            self._since_eval += 1
            due = len(self._rows) == self.window and self._since_eval >= max(1, self.window // 10)
            if due:
                self._since_eval = 0
                rows, scores = list(self._rows), list(self._window_scores)
            if self._detectors:
                self._pending.append((row, float(score), len(self._detectors)))
                self.n_scored += 1
            drain = bool(self._pending) and not self._drain_scheduled
            self._drain_scheduled |= drain
            if self._waiting is None or self._waiting:
                self._reference_scores.append(float(score))
                self._since_build += 1
                if len(self._reference_scores) == self.window and self._since_build >= max(1, self.window // 10):
                    self._since_build = 0
                    self._build_waiting(list(self._rows))
        if drain:
            self.run_later(self._update_detectors)
        if due:
            self.run_later(lambda: self.evaluate_psi(pd.DataFrame(rows, columns=self.manifest.names), scores))

    def _update_detectors(self) -> None:
        """Feed every waiting served row to the detectors that were running when it was served, in
        serving order, and report each detection."""
        detections: list[tuple[str, float]] = []
        # The monitor's lock guards only the hand-over: observe() (on the server's event loop)
        # must never wait for dozens of detector updates. Drains run one at a time.
        with self._drain_lock:
            with self._lock:
                pending, self._pending, self._drain_scheduled = self._pending, [], False
                detectors = list(self._detectors.items())  # a detector built later is appended at the end
                streams = self._streams
            if not pending:
                return
            # each stream's values for every waiting row in one transform (not one per row and detector)
            columns = np.array([row for row, _, _ in pending], dtype=float).reshape(len(pending), -1)
            values = {stream: streams[stream].transform(columns[:, self._column[stream]]).tolist()
                      for stream in {stream for (stream, _), _ in detectors if stream != SCORE}}
            for i, (_, score, n_active) in enumerate(pending):
                for (stream, name), detector in detectors[:n_active]:
                    value = score if stream == SCORE else values[stream][i]
                    if value == value and detector.update(value).drift_detected:  # NaN: a missing feature value
                        detections.append((stream_label(name, stream), value))
        for name, value in detections:
            self._report_detection(name, value)

    def _build_waiting(self, rows: list[list[float]]) -> None:
        if self._waiting is None:  # the plan (and the budget's thresholds) is fixed by the first window's features
            reference = pd.DataFrame(rows, columns=self.manifest.names)
            self._streams = feature_streams_from(reference, self.reference.features) \
                if self.policy.monitor.feature_streams else {}
            self._waiting = plan_detectors(self.policy, self._streams)
        for planned in list(self._waiting):
            try:
                built = build_planned([planned], reference_scores=list(self._reference_scores),
                                      feature_streams=self._streams)
            except ValueError as exc:
                log.info("drift detector %s not started yet: %s", planned.label, exc)
                continue
            self._detectors.update(built)
            self._waiting.remove(planned)

    @property
    def running(self) -> list[str]:
        """The detectors running now, by report name (the others still wait for a usable reference)."""
        with self._lock:
            return [stream_label(name, stream) for stream, name in self._detectors]

    def evaluate_psi(self, window: pd.DataFrame, scores: Sequence[float] | None = None) -> dict[str, float]:
        """PSI of every feature over ``window`` (encoded features, one row per prediction).

        A feature that newly reaches the alert level (newly: across every process sharing
        :attr:`shared`) is reported to the sink as ``psi:<feature>``. With the window's
        ``scores``, the CBPE estimate goes to ``on_estimate``.
        """
        psi = {name: float(v) for name, v in self.reference.psi(window).items()}
        if self.on_psi is not None:
            self.on_psi(psi, len(window))
        if scores:
            estimate = {"cbpe_auroc": expected_auroc(scores), "cbpe_event_rate": expected_event_rate(scores),
                        "window": len(scores)}
            if self.on_estimate is not None:
                self.on_estimate(estimate)
        drifted = {n for n, v in psi.items()
                   if psi_status(v, watch=self.policy.psi_watch, alert=self.policy.psi_alert) == "drift"}
        with self.shared.transaction() as shared:  # processes agree on which features newly drifted
            new = sorted(drifted - set(shared.get("drifted", [])))
            shared.set("drifted", sorted(drifted))
            shared.set("last_psi", psi)
        for name in new:
            self.sink.on_drift(detector=f"psi:{name}",
                               details={"psi": psi[name], "psi_alert": self.policy.psi_alert, "window": len(window)})
        return psi

    def _report_detection(self, name: str, value: float) -> None:
        self.sink.on_drift(detector=name, details={"value": value, "scores_monitored": self.n_scored,
                                                   "reference_scores": self.window})


class OutcomeWindow:
    """Live calibration, discrimination and fairness over the most recent linked outcomes.

    Parameters
    ----------
    sink : object with ``on_degradation(...)`` and ``on_fairness_alert(...)``
        Governance (:class:`clinops.governance.GovernanceStateMachine`).
    fairness_policy : FairnessPolicy
    operating_threshold : float
        Threshold of the fairness table's sensitivity / specificity / PPV.
    age_edges : sequence of float
        The model's age groups (as in its fairness report).
    min_outcomes : int
        Outcomes needed before metrics and rules are evaluated.
    reference_auroc : float, optional
        The model's test AUROC; without it no degradation check is made.

    Examples
    --------
    >>> class Shared(dict):
    ...     def set(self, key, value): self[key] = value
    >>> window = OutcomeWindow(sink=None, fairness_policy=FairnessPolicy(), operating_threshold=0.4,
    ...                        age_edges=(18, 65), min_outcomes=10)
    >>> outcomes = [(0.1 * (i % 10), int(i % 10 >= 5), None, None) for i in range(20)]
    >>> live = window.evaluate(outcomes, Shared())
    >>> live["n"], live["auroc"]
    (20, 1.0)
    """

    def __init__(self, *, sink: Any, fairness_policy: FairnessPolicy, operating_threshold: float,
                 age_edges: Sequence[float], min_outcomes: int, reference_auroc: float | None = None):
        self.sink = sink
        self.fairness_policy = fairness_policy
        self.operating_threshold = float(operating_threshold)
        self.age_edges = list(age_edges)
        self.min_outcomes = int(min_outcomes)
        self.reference_auroc = reference_auroc

    def evaluate(self, window: list[tuple[float, int, str | None, float | None]],
                 shared: SharedState) -> dict[str, Any]:
        """Metrics of ``window`` ((probability, outcome, sex, age), oldest first) and the rules.

        Call inside ``shared.transaction()`` so that alerts are decided on a consistent window;
        stores the result as ``shared['live']`` and returns it (``n``, ``min_outcomes``, then,
        with enough outcomes, ``ece``, ``cbpe_auroc`` (the AUROC the window's probabilities
        imply if calibrated), ``auroc``, ``group_auroc``, ``fairness_alerts``).
        """
        prob = np.array([w[0] for w in window])
        y = np.array([w[1] for w in window])
        live: dict[str, Any] = {"n": len(window), "min_outcomes": self.min_outcomes}
        if len(window) < self.min_outcomes:
            shared.set("live", live)
            return live
        live["ece"] = expected_calibration_error(y, prob)
        live["cbpe_auroc"] = expected_auroc(prob)   # what the probabilities promised, beside the realised AUROC
        if 0 < y.sum() < len(y):
            live["auroc"] = float(roc_auc_score(y, prob))
            if self.reference_auroc is not None:
                self.sink.on_degradation(reference_auroc=self.reference_auroc, current_auroc=live["auroc"],
                                         details={"source": "live outcomes", "window": len(window)})
        groups = self.groups(window)
        if groups:
            table = subgroup_table(y, prob, groups, threshold=self.operating_threshold, n_boot=0, seed=None,
                                   min_group_size=self.fairness_policy.min_group_size)
            per_group: dict[str, dict[str, float]] = {}
            for (attribute, group), row in table.iterrows():
                if attribute == "overall" or not bool(row["estimable"]):
                    continue
                per_group.setdefault(attribute, {})[str(group)] = float(row["auroc"])
            live["group_auroc"] = per_group
            alerts = fairness_alerts(table, self.fairness_policy)
            live["fairness_alerts"] = [a.to_dict() for a in alerts]
            keys = frozenset((a.attribute, a.group_a, a.group_b, a.metric) for a in alerts)
            # alert once per new set of broken rules, not on every outcome while it persists
            if alerts and keys != frozenset(tuple(k) for k in shared.get("fairness_alerted", [])):
                self.sink.on_fairness_alert(alerts, details={"source": "live outcomes", "window": len(window)})
            shared.set("fairness_alerted", sorted(keys))
        shared.set("live", live)
        return live

    def groups(self, window) -> dict[str, np.ndarray]:
        """The attributes live fairness groups outcomes by: sex and age group, when every
        outcome of the window has them."""
        groups: dict[str, np.ndarray] = {}
        sexes = [w[2] for w in window]
        if all(s is not None for s in sexes):
            groups["sex"] = np.array(sexes)
        ages = [w[3] for w in window]
        if all(a is not None for a in ages):
            # The model's own age groups (e.g. an own cohort's edges), as in its fairness report.
            groups["age_group"] = age_groups(np.array(ages, dtype=float), edges=self.age_edges).astype(str).to_numpy()
        return groups
