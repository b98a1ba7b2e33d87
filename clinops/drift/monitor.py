"""The stream monitor: scores to the policy's detectors, features to PSI, on a clock."""
from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from clinops.drift.cbpe import expected_auroc
from clinops.drift.detectors import DETECTORS, StreamDetector
from clinops.drift.policy import DriftPolicy
from clinops.drift.psi import PsiReference
from clinops.drift.streams import SCORE, FeatureStream, build_planned, feature_streams_from, plan_detectors, \
    stream_label

__all__ = ["MonitorEvent", "StreamMonitor", "PsiStates"]

_RANK = {"stable": 0, "watch": 1, "drift": 2}


@dataclass(frozen=True)
class MonitorEvent:
    """One alarm of a monitor.

    ``detector`` is a name of :data:`clinops.drift.detectors.DETECTORS` ('adwin',
    'page_hinkley', ...) or 'psi'; ``kind`` is 'drift' (a detection, PSI >= alert) or 'watch'
    (watch <= PSI < alert); ``feature`` names the feature for PSI; ``value`` is what the
    detector reports (ADWIN: its mean estimate; the others: the mean score of the evaluated
    batch) or the PSI; ``t_hours`` is the evaluation time; ``n_seen`` the admissions processed.

    Examples
    --------
    >>> MonitorEvent(2.25, "psi", "drift", 0.31, 120, "lactate").message
    't = 2.25 h: drift: PSI of lactate = 0.310'
    """

    t_hours: float
    detector: str
    kind: str
    value: float
    n_seen: int
    feature: str | None = None

    @property
    def message(self) -> str:
        if self.detector == "psi":
            what = f"PSI of {self.feature} = {self.value:.3f}"
        else:
            what = f"{self.detector} change in the {self.feature or 'score'} stream (value {self.value:.4f})"
        return f"t = {self.t_hours:.2f} h: {self.kind}: {what}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class PsiStates:
    """Each feature's PSI state ('stable', 'watch', 'drift') with hysteresis.

    A feature leaves a state only when its PSI falls ``hysteresis`` below that state's level,
    so one noisy crossing is not counted many times. :meth:`update` returns the features that
    entered a higher state.
    """

    def __init__(self, features: Sequence[str], *, watch: float, alert: float, hysteresis: float):
        if not (0 < watch < alert):
            raise ValueError(f"psi_watch, psi_alert: need 0 < psi_watch < psi_alert, got {watch}, {alert}")
        self.watch, self.alert, self.hysteresis = float(watch), float(alert), float(hysteresis)
        self.state = {f: "stable" for f in features}

    def next_state(self, state: str, v: float) -> str:
        h = self.hysteresis
        if v >= self.alert:
            return "drift"
        if state == "drift" and v >= self.alert - h:
            return "drift"
        if v >= self.watch:
            return "watch"
        if state in ("watch", "drift") and v >= self.watch - h:
            return "watch"
        return "stable"

    def update(self, values: Mapping[str, float]) -> list[tuple[str, str]]:
        """New PSI values; returns (feature, new state) for each feature that rose."""
        risen = []
        for feat, v in values.items():
            new = self.next_state(self.state[feat], float(v))
            if _RANK[new] > _RANK[self.state[feat]]:
                risen.append((feat, new))
            self.state[feat] = new
        return risen


class StreamMonitor:
    """Live drift monitor: scores to the stream detectors, features to PSI, on a clock.

    Feed admissions one at a time with :meth:`add`; every ``eval_minutes`` of clock time the
    monitor evaluates (see below) and returns alarms. Thread-safe (one lock).

    At each evaluation time ``T_k = k * eval_minutes`` (hours from the monitor's start):

    1. the admissions that arrived in ``(T_{k-1}, T_k]`` are fed, in arrival order, to every
       detector on the predicted score; a detection is an alarm dated ``T_k`` (the monitor only
       reports at evaluation times);
    2. the PSI of every feature over the last ``psi_window`` admissions is recomputed against
       the reference (only once the window is full: a PSI from a few dozen admissions is
       mostly noise); a feature entering 'watch' or 'drift' is an alarm (:class:`PsiStates`).

    Parameters
    ----------
    reference : PsiReference fixed on the training data
    detectors : mapping name -> StreamDetector
        Fresh detectors (:func:`clinops.drift.detectors.build_detectors`); :meth:`from_policy`
        builds the policy's.
    eval_minutes : float
        Clock time between evaluations.
    psi_window, psi_watch, psi_alert, psi_hysteresis : PSI settings (admissions, PSI units)
    on_event : callable(MonitorEvent), optional
        Called for every alarm (e.g. to notify governance / write the audit log).
    feature_detectors : mapping (feature, name) -> StreamDetector, optional
        Detectors on feature streams (:mod:`clinops.drift.streams`); an alarm names the
        feature. Each admission's value of the feature, through ``feature_streams[feature]``,
        is fed to them in arrival order (missing values are skipped).
    feature_streams : mapping feature -> FeatureStream, required with ``feature_detectors``

    Each evaluation also records ``cbpe_auroc``: the AUROC expected from the last
    ``psi_window`` scores if they are calibrated (:func:`clinops.drift.cbpe.expected_auroc`).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> train = pd.DataFrame({"vent": (rng.random(2000) < 0.3).astype(int)})
    >>> monitor = StreamMonitor.from_policy(DriftPolicy(psi_window=100), PsiReference.fit(train),
    ...                                     reference_scores=rng.beta(2, 8, 2000))
    >>> events = monitor.add_many(np.arange(300) / 60, rng.beta(2, 8, 300), pd.DataFrame({"vent": [1] * 300}))
    >>> sorted({(e.detector, e.feature) for e in events})
    [('psi', 'vent')]
    """

    def __init__(self, reference: PsiReference, detectors: Mapping[str, StreamDetector] | None = None, *,
                 eval_minutes: float = 15.0, psi_window: int = 500, psi_watch: float = 0.1,
                 psi_alert: float = 0.2, psi_hysteresis: float = 0.02,
                 on_event: Callable[[MonitorEvent], None] | None = None,
                 feature_detectors: Mapping[tuple[str, str], StreamDetector] | None = None,
                 feature_streams: Mapping[str, FeatureStream] | None = None):
        if not (eval_minutes > 0):
            raise ValueError(f"eval_minutes: must be > 0, got {eval_minutes}")
        if not (isinstance(psi_window, (int, np.integer)) and psi_window >= 10):
            raise ValueError(f"psi_window: must be an integer >= 10, got {psi_window!r}")
        unknown = [name for name in (detectors or {}) if name not in DETECTORS]
        if unknown:
            raise ValueError(f"detectors: {unknown} not in clinops.drift.detectors.DETECTORS")
        self.reference = reference
        self.detectors = dict(detectors or {})
        self.feature_detectors = dict(feature_detectors or {})
        self.feature_streams = dict(feature_streams or {})
        missing = sorted({f for f, _ in self.feature_detectors} - set(self.feature_streams))
        if missing:
            raise ValueError(f"feature_streams: no stream for the feature detectors of {missing}")
        self._stream_names = sorted({f for f, _ in self.feature_detectors})
        self.eval_hours = float(eval_minutes) / 60.0
        self.psi_window = int(psi_window)
        self._psi = PsiStates(reference.features, watch=psi_watch, alert=psi_alert, hysteresis=psi_hysteresis)
        self.psi_watch, self.psi_alert, self.psi_hysteresis = self._psi.watch, self._psi.alert, self._psi.hysteresis
        self.on_event = on_event
        self._lock = threading.Lock()
        self._pending: list[tuple[float, float, np.ndarray, np.ndarray]] = []
        self._codes: deque[np.ndarray] = deque(maxlen=self.psi_window)
        self._scores: deque[float] = deque(maxlen=self.psi_window)
        self._next_eval = self.eval_hours
        self._last_t = -math.inf
        self.n_seen = 0
        self._rows: list[dict[str, Any]] = []
        self.events: list[MonitorEvent] = []

    @classmethod
    def from_policy(cls, policy: DriftPolicy, reference: PsiReference, *, reference_scores: Any,
                    eval_minutes: float = 15.0, on_event: Callable[[MonitorEvent], None] | None = None,
                    reference_features: pd.DataFrame | None = None) -> "StreamMonitor":
        """Build from a :class:`DriftPolicy`: its PSI settings and its detectors.

        ``reference_scores`` (n,): predicted probabilities on reference data (e.g. the training
        or calibration set), from which detectors turn scale-free settings into numbers
        (Page-Hinkley: the score SD). ``reference_features`` (n, p), encoded features of
        reference rows: with the policy's ``monitor.feature_streams`` each feature of
        ``reference`` gets its detectors (:func:`clinops.drift.streams.plan_detectors`, which
        also applies the false-alarm budget).
        """
        streams = feature_streams_from(reference_features, reference.features) if policy.monitor.feature_streams else {}
        plan = plan_detectors(policy, streams)
        built = build_planned(plan, reference_scores=reference_scores, feature_streams=streams)
        return cls(reference, {name: d for (stream, name), d in built.items() if stream == SCORE},
                   eval_minutes=eval_minutes, psi_window=policy.psi_window,
                   psi_watch=policy.psi_watch, psi_alert=policy.psi_alert, psi_hysteresis=policy.psi_hysteresis,
                   on_event=on_event, feature_detectors={k: d for k, d in built.items() if k[0] != SCORE},
                   feature_streams=streams)

    @property
    def labels(self) -> list[str]:
        """Every detector's report name: the score's, then each feature's (``cusum[mech_vent]``)."""
        return [*self.detectors, *(stream_label(name, f) for f, name in self.feature_detectors)]

    @property
    def is_fresh(self) -> bool:
        """No admission fed yet."""
        return not (self.n_seen or self._pending)

    # -- feeding ------------------------------------------------------------------------------

    def add(self, t_hours: float, score: float, features: Mapping[str, Any] | pd.Series) -> list[MonitorEvent]:
        """One admission at clock time ``t_hours`` (non-decreasing) with its score and features.

        Runs every evaluation due before ``t_hours`` first, then queues the admission for the
        next evaluation. Returns the alarms raised by those evaluations.
        """
        return self.add_many([t_hours], [score], pd.DataFrame([dict(features)]))

    def add_many(self, t_hours: Sequence[float], scores: Sequence[float], X: pd.DataFrame) -> list[MonitorEvent]:
        """Several admissions at once (times non-decreasing); same semantics as :meth:`add`."""
        t = np.asarray(t_hours, dtype=float)
        s = np.asarray(scores, dtype=float)
        if not (len(t) == len(s) == len(X)):
            raise ValueError(f"t_hours, scores, X: lengths differ ({len(t)}, {len(s)}, {len(X)})")
        if len(t) and (not np.isfinite(s).all() or (np.diff(t) < 0).any() or not np.isfinite(t).all()):
            raise ValueError("t_hours must be finite and non-decreasing and scores finite")
        codes = self.reference.codes(X) if len(X) else np.empty((0, len(self.reference.features)), dtype=np.int64)
        values = np.column_stack([self.feature_streams[f].transform(X[f]) if f in X else np.full(len(X), np.nan)
                                  for f in self._stream_names]) if self._stream_names and len(X) else \
            np.empty((len(X), len(self._stream_names)))
        events: list[MonitorEvent] = []
        with self._lock:
            if len(t) and t[0] < self._last_t:
                raise ValueError(f"t_hours: {t[0]} is earlier than the last admission ({self._last_t})")
            for i in range(len(t)):
                events += self._run_due(t[i], inclusive=False)
                self._pending.append((t[i], s[i], codes[i], values[i]))
                self._last_t = t[i]
        return events

    def advance(self, t_hours: float) -> list[MonitorEvent]:
        """Run every evaluation due at or before ``t_hours`` (clock moves with no admission)."""
        with self._lock:
            if t_hours < self._last_t:
                raise ValueError(f"t_hours: {t_hours} is earlier than the last admission ({self._last_t})")
            return self._run_due(float(t_hours), inclusive=True)

    # -- evaluation ---------------------------------------------------------------------------

    def _run_due(self, t: float, *, inclusive: bool) -> list[MonitorEvent]:
        events: list[MonitorEvent] = []
        eps = 1e-12
        while (self._next_eval < t - eps) or (inclusive and self._next_eval <= t + eps):
            events += self._evaluate(self._next_eval)
            self._next_eval += self.eval_hours
        return events

    def _emit(self, ev: MonitorEvent, out: list[MonitorEvent]) -> None:
        out.append(ev)
        self.events.append(ev)
        if self.on_event is not None:
            self.on_event(ev)

    def _evaluate(self, T: float) -> list[MonitorEvent]:
        out: list[MonitorEvent] = []
        batch, self._pending = self._pending, []
        hits = {name: False for name in self.detectors}
        feature_hits = {key: False for key in self.feature_detectors}
        column = {f: j for j, f in enumerate(self._stream_names)}
        for _, score, code, values in batch:
            self.n_seen += 1
            for name, detector in self.detectors.items():
                hits[name] |= bool(detector.update(score).drift_detected)
            for (feature, name), detector in self.feature_detectors.items():
                v = values[column[feature]]
                if v == v:  # not NaN: a missing value says nothing about the feature's distribution
                    feature_hits[(feature, name)] |= bool(detector.update(float(v)).drift_detected)
            self._codes.append(code)
            self._scores.append(score)
        batch_mean = float(np.mean([b[1] for b in batch])) if batch else np.nan
        for name, detector in self.detectors.items():
            if hits[name]:
                self._emit(MonitorEvent(T, name, "drift", float(detector.alarm_value(batch_mean)), self.n_seen), out)
        for (feature, name), hit in feature_hits.items():
            if hit:
                mean = float(np.nanmean([b[3][column[feature]] for b in batch]))
                self._emit(MonitorEvent(T, name, "drift", mean, self.n_seen, feature), out)
        row: dict[str, Any] = {"t_hours": T, "n_seen": self.n_seen, "n_batch": len(batch),
                               "score_mean_batch": batch_mean,
                               "score_mean_window": float(np.mean(self._scores)) if self._scores else np.nan,
                               "cbpe_auroc": expected_auroc(list(self._scores)) if self._scores else np.nan}
        for detector in self.detectors.values():
            row.update(detector.state())
        for name, detector in self.detectors.items():
            row[f"{type(detector).flat_prefix}alarm"] = hits[name]
        full = len(self._codes) >= self.psi_window
        values = self.reference.psi_from_codes(np.vstack(self._codes)) if full else \
            np.full(len(self.reference.features), np.nan)
        for feat, v in zip(self.reference.features, values):
            row[f"psi[{feat}]"] = float(v)
        if full:
            for feat, new in self._psi.update(dict(zip(self.reference.features, values))):
                self._emit(MonitorEvent(T, "psi", new, float(row[f"psi[{feat}]"]), self.n_seen, feat), out)
        row["psi_drift_features"] = ",".join(f for f, st in self._psi.state.items() if st == "drift")
        self._rows.append(row)
        return out

    # -- results ------------------------------------------------------------------------------

    @property
    def feature_states(self) -> dict[str, str]:
        """Current PSI state of every feature: 'stable', 'watch' or 'drift'."""
        with self._lock:
            return dict(self._psi.state)

    def drifted_features(self, level: str = "drift") -> list[str]:
        """Features whose PSI state is ``level`` ('drift': PSI >= alert; 'watch')."""
        return [f for f, s in self.feature_states.items() if s == level]

    def timeline(self) -> pd.DataFrame:
        """One row per evaluation: time, counts, score means, detector state, PSI per feature."""
        with self._lock:
            return pd.DataFrame(self._rows)

    def alarms(self) -> pd.DataFrame:
        """All alarms so far, one row each (columns of :class:`MonitorEvent`); ``attrs['detectors']``
        names the detectors that ran (for :func:`clinops.drift.stream_summary`)."""
        with self._lock:
            cols = ["t_hours", "detector", "kind", "value", "n_seen", "feature"]
            frame = pd.DataFrame([e.to_dict() for e in self.events], columns=cols)
        frame.attrs["detectors"] = self.labels
        return frame
