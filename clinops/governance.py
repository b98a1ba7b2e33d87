"""Layer 4 governance: model state machine, escalation, review queue, override records.

The rules (``params/policies/governance.yaml``, loaded by :class:`GovernancePolicy`):

- The model is in one of two states (:class:`ModelState`): ``ACTIVE`` or
  ``SUSPENDED-PENDING-REVIEW``. There is no other state: in particular nothing here retrains,
  re-fits or replaces a model. Suspension routes every prediction to human review; it ends only
  when a person with an allowed role resumes the model with a note.
- **Degradation** (:meth:`GovernanceStateMachine.on_degradation`): a relative AUROC drop
  ``(reference - current) / reference`` at or above ``degradation_trigger`` (paper: 5 %)
  suspends an active model. Measured degradation is evidence of harm, so it suspends whether
  or not a drift detector fired first.
- **Drift** (:meth:`GovernanceStateMachine.on_drift`): a drift alarm *alone* never changes
  the state. It records a ``drift_watch`` event ("human review recommended") and, with a
  review queue attached, opens a review item. Only when the caller also supplies a measured
  degradation at or above the trigger does the model become suspended (the paper's scenario:
  drift detected, AUROC 6.4 % lower, escalation).
- **Fairness** (:meth:`GovernanceStateMachine.on_fairness_alert`): records a
  ``fairness_alert`` event and opens a review item; it suspends only if the policy says so
  (``fairness_alert_action: suspend``; default ``review``).
- **Resume** (:meth:`GovernanceStateMachine.resume`): only by a role in ``resume_roles``, with
  a note; anything else raises :class:`GovernanceError`.
- **Per prediction** (:func:`escalation_reasons`): a suspended model, an empty or ambiguous
  conformal set, or an out-of-distribution input routes the case to human review.
- **Overrides** (:class:`OverrideLog`): every clinician decision on a prediction (accepted or
  overridden) is recorded; :meth:`OverrideLog.rate` and :func:`override_rate_flags` watch the
  override rate at both extremes (paper: a high rate may signal drift, a zero rate may signal
  automation bias).

Every state change or record is a :class:`GovernanceEvent` (UTC time, kind, reason, details)
passed to an optional ``sink`` callable, so the server can write it to its audit log; this
module does not know about the audit log. State is saved as JSON (:meth:`save` / :meth:`load`)
so notebooks and the server share one format; the review queue and override log live in SQLite
so a server restart keeps them.

Wiring the drift monitor to governance (the Layer 4 hook)::

    machine = GovernanceStateMachine(GovernancePolicy.load("params/policies/governance.yaml"),
                                     path="state/governance.json", sink=audit_write,
                                     review_queue=ReviewQueue("state/review.sqlite"))
    monitor = StreamMonitor.from_policy(drift_policy, psi_reference, reference_scores=s_train,
                                        on_event=lambda ev: ev.kind == "drift" and machine.on_drift(
                                            detector=f"{ev.detector}:{ev.feature or 'score'}",
                                            details=ev.to_dict()))
    # later, once outcomes are known for the period:
    machine.on_degradation(reference_auroc=0.847, current_auroc=0.793)   # -> SUSPENDED
"""
from __future__ import annotations

import fcntl
import json
import math
import os
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from clinops.policy import PolicyError, read_policy
from clinops.statefiles import connect_private_sqlite, purge_deleted

__all__ = [
    "ModelState",
    "EventKind",
    "TRANSITIONS",
    "ESCALATION_REASONS",
    "GovernanceError",
    "PolicyError",
    "GovernancePolicy",
    "GovernanceEvent",
    "GovernanceStateMachine",
    "relative_degradation",
    "escalation_reasons",
    "ReviewItem",
    "ReviewQueue",
    "OverrideRecord",
    "OverrideRate",
    "OverrideLog",
    "override_rate_flags",
]


class ModelState(str, Enum):
    """The only two states a deployed model can be in."""

    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED-PENDING-REVIEW"


class EventKind(str, Enum):
    """Kinds of :class:`GovernanceEvent`."""

    DRIFT_WATCH = "drift_watch"              # drift alarm, no suspension: human review recommended
    PERFORMANCE_CHECK = "performance_check"  # degradation measured below the trigger (or already suspended)
    SUSPENDED = "suspended"                  # ACTIVE -> SUSPENDED-PENDING-REVIEW
    RESUMED = "resumed"                      # SUSPENDED-PENDING-REVIEW -> ACTIVE, by an allowed role
    FAIRNESS_ALERT = "fairness_alert"        # fairness rule broken: human review
    PERIODIC_REVIEW = "periodic_review"      # scheduled review recorded
    REVIEW_ITEM_ADDED = "review_item_added"
    REVIEW_ITEM_RESOLVED = "review_item_resolved"
    DECISION_RECORDED = "decision_recorded"  # clinician accepted / overrode a prediction


#: Every allowed state change: (from, to) -> the triggers that may cause it. Nothing else.
TRANSITIONS: dict[tuple[ModelState, ModelState], tuple[str, ...]] = {
    (ModelState.ACTIVE, ModelState.SUSPENDED): ("degradation", "fairness_alert", "manual"),
    (ModelState.SUSPENDED, ModelState.ACTIVE): ("resume",),
}

#: Reason codes of :func:`escalation_reasons`, in the order they are reported.
ESCALATION_REASONS: tuple[str, ...] = (
    "model_suspended", "empty_conformal_set", "ambiguous_conformal_set", "out_of_distribution",
    "mostly_imputed",
)


class GovernanceError(RuntimeError):
    """A governance action was refused (wrong role, wrong state, missing note, ...)."""


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _iso(t: datetime) -> str:
    if t.tzinfo is None:
        raise ValueError("times must be timezone-aware (UTC)")
    return t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _parse_iso(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).astimezone(timezone.utc)


def _jsonable(v: Any) -> Any:
    """Plain JSON types only (numpy scalars -> Python, NaN -> None, dataclasses -> dicts)."""
    if hasattr(v, "to_dict") and callable(v.to_dict):
        v = v.to_dict()
    if isinstance(v, Enum):
        return v.value
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set, frozenset, np.ndarray)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, datetime):
        return _iso(v)
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    return str(v)


# --------------------------------------------------------------------------------------------
# policy


@dataclass(frozen=True)
class GovernancePolicy:
    """Governance rules (``params/policies/governance.yaml``); see that file for the reasons.

    Attributes
    ----------
    degradation_trigger : relative AUROC drop that suspends an active model (0.05 = 5 %)
    fairness_alert_action : 'review' (record + review item) or 'suspend'
    fairness_policy : path of the fairness alert rules (thresholds live there, once)
    escalate_empty_set, escalate_ambiguous_set, escalate_out_of_distribution : per-prediction
        escalation rules of :func:`escalation_reasons`
    escalate_imputed_share : a prediction with more than this share of its features imputed
        escalates (default 0.5, the cohort's rule: a stay with more than half of its features
        missing is excluded from training, so the model never learned from such a record)
    resume_roles : roles that may resume a suspended model
    suspend_roles : roles that may suspend by hand
    review_roles : roles that may record a periodic review and resolve review items
    require_resume_note : a resume must carry a non-empty note
    periodic_review_days : days between scheduled reviews (paper: e.g. quarterly)
    override_min_decisions : decisions needed before the override rate is judged
    override_rate_high : an override rate at or above this flags review
    override_flag_zero : a zero override rate (with enough decisions) flags review
    """

    degradation_trigger: float = 0.05
    fairness_alert_action: str = "review"
    fairness_policy: str | None = None
    escalate_empty_set: bool = True
    escalate_ambiguous_set: bool = True
    escalate_out_of_distribution: bool = True
    escalate_imputed_share: float = 0.5
    resume_roles: tuple[str, ...] = ("reviewer",)
    suspend_roles: tuple[str, ...] = ("reviewer", "clinician")
    review_roles: tuple[str, ...] = ("reviewer",)
    require_resume_note: bool = True
    periodic_review_days: int = 90
    override_min_decisions: int = 50
    override_rate_high: float = 0.25
    override_flag_zero: bool = True

    def __post_init__(self) -> None:
        where = "GovernancePolicy"
        if not (0 < float(self.degradation_trigger) < 1):
            raise PolicyError(f"{where}.degradation_trigger: must be in (0, 1) (a relative AUROC drop), "
                              f"got {self.degradation_trigger!r}")
        if self.fairness_alert_action not in ("review", "suspend"):
            raise PolicyError(f"{where}.fairness_alert_action: must be 'review' or 'suspend' (never retraining), "
                              f"got {self.fairness_alert_action!r}")
        for name in ("resume_roles", "suspend_roles", "review_roles"):
            roles = getattr(self, name)
            if isinstance(roles, str) or not roles or not all(isinstance(r, str) and r for r in roles):
                raise PolicyError(f"{where}.{name}: must be a non-empty list of role names, got {roles!r}")
            object.__setattr__(self, name, tuple(roles))
        for name in ("escalate_empty_set", "escalate_ambiguous_set", "escalate_out_of_distribution",
                     "require_resume_note", "override_flag_zero"):
            if not isinstance(getattr(self, name), bool):
                raise PolicyError(f"{where}.{name}: must be true or false, got {getattr(self, name)!r}")
        share = self.escalate_imputed_share
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share < 1:
            raise PolicyError(f"{where}.escalate_imputed_share: must be a share in [0, 1) (imputed features "
                              f"above it escalate), got {share!r}")
        if not (isinstance(self.periodic_review_days, int) and self.periodic_review_days > 0):
            raise PolicyError(f"{where}.periodic_review_days: must be a positive integer")
        if not (isinstance(self.override_min_decisions, int) and self.override_min_decisions > 0):
            raise PolicyError(f"{where}.override_min_decisions: must be a positive integer")
        if not (0 < float(self.override_rate_high) <= 1):
            raise PolicyError(f"{where}.override_rate_high: must be in (0, 1]")

    @classmethod
    def load(cls, path: str | Path, *, task: str | None = None) -> "GovernancePolicy":
        """Read a policy YAML; ``task`` applies that entry of its ``tasks:`` overrides.

        ``fairness_policy`` is resolved relative to the governance file's folder.
        """
        p = Path(path)
        raw = read_policy(p, task)
        flat: dict[str, Any] = {}
        for key, value in raw.items():
            if key == "escalation":
                for k, v in (value or {}).items():
                    flat[f"escalate_{k}"] = v
            elif key == "override_review":
                for k, v in (value or {}).items():
                    flat[f"override_{k}"] = v
            else:
                flat[key] = value
        allowed = set(cls.__dataclass_fields__)
        unknown = sorted(set(flat) - allowed)
        if unknown:
            raise PolicyError(f"{p}: unknown key(s) {unknown}")
        if flat.get("fairness_policy"):
            fp = Path(flat["fairness_policy"])
            flat["fairness_policy"] = str(fp if fp.is_absolute() else (p.parent / fp).resolve())
        try:
            return cls(**flat)
        except PolicyError as e:
            raise PolicyError(f"{p}: {e}") from None
        except TypeError as e:
            raise PolicyError(f"{p}: {e}") from None

    def fairness(self, *, task: str | None = None):
        """The :class:`clinops.fairness.FairnessPolicy` named by ``fairness_policy``."""
        from clinops.fairness import FairnessPolicy

        if not self.fairness_policy:
            raise PolicyError("GovernancePolicy.fairness_policy: not set")
        return FairnessPolicy.load(self.fairness_policy, task=task)


def relative_degradation(reference_auroc: float, current_auroc: float) -> float:
    """Relative AUROC drop ``(reference - current) / reference`` (negative = improvement)."""
    for name, v in (("reference_auroc", reference_auroc), ("current_auroc", current_auroc)):
        if not (isinstance(v, (int, float, np.floating)) and 0 <= float(v) <= 1):
            raise ValueError(f"{name}: must be an AUROC in [0, 1], got {v!r}")
    if float(reference_auroc) <= 0:
        raise ValueError("reference_auroc: must be > 0")
    return (float(reference_auroc) - float(current_auroc)) / float(reference_auroc)


# --------------------------------------------------------------------------------------------
# events and the state machine


@dataclass(frozen=True)
class GovernanceEvent:
    """One recorded governance event.

    ``time_utc`` is timezone-aware UTC; ``kind`` an :class:`EventKind` value; ``reason`` a
    sentence for people; ``details`` JSON-safe data; ``state_before`` / ``state_after`` the
    model state around the event; ``actor`` / ``role`` the person when a person acted.
    """

    time_utc: datetime
    kind: str
    reason: str
    details: Mapping[str, Any] = field(default_factory=dict)
    state_before: str | None = None
    state_after: str | None = None
    actor: str | None = None
    role: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"time_utc": _iso(self.time_utc), "kind": self.kind, "reason": self.reason,
                "details": _jsonable(dict(self.details)), "state_before": self.state_before,
                "state_after": self.state_after, "actor": self.actor, "role": self.role}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "GovernanceEvent":
        return cls(time_utc=_parse_iso(d["time_utc"]), kind=d["kind"], reason=d["reason"],
                   details=dict(d.get("details") or {}), state_before=d.get("state_before"),
                   state_after=d.get("state_after"), actor=d.get("actor"), role=d.get("role"))


Sink = Callable[[GovernanceEvent], None]


class GovernanceStateMachine:
    """The deployed model's governance state and its history.

    Parameters
    ----------
    policy : GovernancePolicy
    path : str or Path, optional
        JSON state file written (atomically) after every event. Must not exist yet; use
        :meth:`load` to continue from an existing file.
    sink : callable(GovernanceEvent), optional
        Receives every event after it is applied and saved (e.g. the server's audit log). An
        exception from the sink propagates to the caller; the state change stands (a
        suspension must not be undone because a log write failed).
    review_queue : ReviewQueue, optional
        When given, suspensions, drift watches and fairness alerts open review items.
    model_id : str, optional
        Which model this state belongs to (stored in the file).
    clock : callable() -> aware datetime, optional (tests)

    Thread-safe: every method runs under one re-entrant lock. Process-safe when ``path`` is
    given: several server processes can share one state file. Readers reload it when it changed
    on disk (one ``stat`` per read); every change runs under an exclusive lock on
    ``<path>.lock`` and starts from the file's current content, so a suspension made by one
    process is seen by the next prediction of every other.
    """

    FORMAT = "clinops.governance.state"
    VERSION = 1

    def __init__(self, policy: GovernancePolicy, *, path: str | Path | None = None, sink: Sink | None = None,
                 review_queue: "ReviewQueue | None" = None, model_id: str | None = None,
                 clock: Callable[[], datetime] | None = None, _restore: Mapping[str, Any] | None = None):
        if not isinstance(policy, GovernancePolicy):
            raise TypeError("policy: must be a GovernancePolicy")
        self.policy = policy
        self.path = Path(path) if path is not None else None
        self.sink = sink
        self.review_queue = review_queue
        self._clock = clock or _utcnow
        self._lock = threading.RLock()
        self._file_signature: tuple[int, int, int] | None = None
        self._exclusive_depth = 0
        if _restore is None:
            if self.path is not None and self.path.exists():
                raise GovernanceError(f"path: {self.path} already holds a governance state; "
                                      "use GovernanceStateMachine.load to continue it")
            self.model_id = model_id
            self._state = ModelState.ACTIVE
            self._history: list[GovernanceEvent] = []
            self.created_utc = self._now()
            if self.path is not None:
                self._save_locked(self.path)
        else:
            self._restore(_restore)
            if self.path is not None:
                self._file_signature = self._signature()

    def _restore(self, d: Mapping[str, Any]) -> None:
        self.model_id = d.get("model_id")
        self._state = ModelState(d["state"])
        self._history = [GovernanceEvent.from_dict(e) for e in d.get("history", [])]
        self.created_utc = _parse_iso(d["created_utc"])

    # -- sharing the state file between processes ------------------------------------------

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)  # type: ignore[arg-type]
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _reload_if_changed(self) -> None:
        """Pick up a change another process saved (lock held)."""
        if self.path is None:
            return
        signature = self._signature()
        if signature is None or signature == self._file_signature:
            return
        d = json.loads(self.path.read_text())
        if d.get("format") == self.FORMAT:
            self._restore(d)
        self._file_signature = signature

    @contextmanager
    def _fresh(self) -> Iterator[None]:
        with self._lock:
            self._reload_if_changed()
            yield

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Thread lock + exclusive file lock (re-entrant), state reloaded from the file first."""
        with self._lock:
            if self.path is None or self._exclusive_depth:
                self._exclusive_depth += 1
                try:
                    yield
                finally:
                    self._exclusive_depth -= 1
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._reload_if_changed()
                self._exclusive_depth = 1
                try:
                    yield
                finally:
                    self._exclusive_depth = 0
            finally:
                os.close(fd)  # releases the lock

    # -- state ------------------------------------------------------------------------------

    @property
    def state(self) -> ModelState:
        with self._fresh():
            return self._state

    @property
    def history(self) -> list[GovernanceEvent]:
        with self._fresh():
            return list(self._history)

    @property
    def is_active(self) -> bool:
        return self.state is ModelState.ACTIVE

    def _now(self) -> datetime:
        t = self._clock()
        if t.tzinfo is None:
            raise ValueError("clock: must return timezone-aware datetimes")
        return t.astimezone(timezone.utc)

    def _record(self, kind: EventKind, reason: str, details: Mapping[str, Any] | None = None, *,
                new_state: ModelState | None = None, trigger: str | None = None,
                actor: str | None = None, role: str | None = None) -> GovernanceEvent:
        before = self._state
        after = before if new_state is None else new_state
        if after is not before and trigger not in TRANSITIONS.get((before, after), ()):
            raise GovernanceError(f"transition {before.value} -> {after.value} by {trigger!r} is not allowed")
        ev = GovernanceEvent(time_utc=self._now(), kind=kind.value, reason=reason,
                             details=_jsonable(dict(details or {})), state_before=before.value,
                             state_after=after.value, actor=actor, role=role)
        self._state = after
        self._history.append(ev)
        if self.path is not None:
            self._save_locked(self.path)
        if self.sink is not None:
            self.sink(ev)
        return ev

    def _queue(self, kind: str, reason: str, details: Mapping[str, Any]) -> int | None:
        if self.review_queue is None:
            return None
        return self.review_queue.add(kind, reason, details=details).item_id

    # -- signals ----------------------------------------------------------------------------

    def on_drift(self, *, detector: str, details: Mapping[str, Any] | None = None,
                 degradation: float | None = None) -> list[GovernanceEvent]:
        """A drift alarm (e.g. ADWIN, Page-Hinkley, PSI of a feature).

        Parameters
        ----------
        detector : which detector fired (free text, e.g. 'psi:mech_vent')
        details : JSON-safe data to keep with the event
        degradation : relative AUROC drop measured on labelled data for the same period, if
            known (see :func:`relative_degradation`)

        Returns
        -------
        The events recorded: always a ``drift_watch`` event (human review recommended; the
        state does not change), followed by a ``suspended`` event when ``degradation`` is at or
        above the trigger and the model is active.
        """
        with self._exclusive():
            d = {"detector": detector, **dict(details or {})}
            if degradation is not None:
                d["relative_degradation"] = float(degradation)
                d["degradation_trigger"] = self.policy.degradation_trigger
            crosses = degradation is not None and float(degradation) >= self.policy.degradation_trigger
            if not crosses and self.review_queue is not None:
                # one open item per detector: repeated alarms join it instead of flooding reviewers
                same = [i for i in self.review_queue.list("open", kind="drift_watch")
                        if i.details.get("detector") == detector]
                d["review_item"] = same[0].item_id if same else \
                    self._queue("drift_watch", f"drift detected by {detector}", d)
            events = [self._record(EventKind.DRIFT_WATCH,
                                   f"drift detected by {detector}; human review recommended "
                                   "(a drift alarm alone does not suspend the model)", d)]
            if crosses:
                events += self._suspend_auto("degradation", float(degradation), d)
            return events

    def on_degradation(self, *, reference_auroc: float, current_auroc: float,
                       details: Mapping[str, Any] | None = None) -> list[GovernanceEvent]:
        """A performance check on labelled data: suspends when the relative drop >= trigger.

        Returns
        -------
        ``[suspended]`` when the drop crosses the trigger and the model is active, otherwise
        ``[performance_check]`` (state unchanged).
        """
        with self._exclusive():
            drop = relative_degradation(reference_auroc, current_auroc)
            d = {"reference_auroc": float(reference_auroc), "current_auroc": float(current_auroc),
                 "relative_degradation": drop, "degradation_trigger": self.policy.degradation_trigger,
                 **dict(details or {})}
            if drop >= self.policy.degradation_trigger and self._state is ModelState.ACTIVE:
                return self._suspend_auto("degradation", drop, d)
            verdict = "at or above" if drop >= self.policy.degradation_trigger else "below"
            return [self._record(EventKind.PERFORMANCE_CHECK,
                                 f"relative AUROC drop {drop:.1%} {verdict} the {self.policy.degradation_trigger:.0%} "
                                 f"trigger; state {self._state.value} unchanged", d)]

    def _suspend_auto(self, trigger: str, value: float, details: Mapping[str, Any]) -> list[GovernanceEvent]:
        if self._state is not ModelState.ACTIVE:
            return []
        if trigger == "degradation":
            reason = (f"relative AUROC drop {value:.1%} >= trigger {self.policy.degradation_trigger:.0%}: "
                      "model suspended pending human review")
        else:
            reason = "fairness alert: model suspended pending human review (policy fairness_alert_action: suspend)"
        d = {"trigger": trigger, **dict(details)}
        item = self._queue("suspension", reason, d)
        if item is not None:
            d["review_item"] = item
        return [self._record(EventKind.SUSPENDED, reason, d, new_state=ModelState.SUSPENDED, trigger=trigger)]

    def on_fairness_alert(self, alerts: Sequence[Any], *, details: Mapping[str, Any] | None = None
                          ) -> list[GovernanceEvent]:
        """Fairness alerts (e.g. :class:`clinops.fairness.FairnessAlert`); empty -> nothing recorded.

        Records one ``fairness_alert`` event (and a review item); suspends only when the policy's
        ``fairness_alert_action`` is 'suspend'.
        """
        alerts = list(alerts)
        if not alerts:
            return []
        with self._exclusive():
            listed = [_jsonable(a) for a in alerts]
            d = {"alerts": listed, "action": self.policy.fairness_alert_action, **dict(details or {})}
            item = self._queue("fairness_alert", f"{len(alerts)} fairness alert(s)", d)
            if item is not None:
                d["review_item"] = item
            events = [self._record(EventKind.FAIRNESS_ALERT,
                                   f"{len(alerts)} fairness alert(s): structured human review", d)]
            if self.policy.fairness_alert_action == "suspend":
                events += self._suspend_auto("fairness_alert", math.nan, d)
            return events

    # -- people -----------------------------------------------------------------------------

    def _check_person(self, actor: str, role: str, allowed: Collection[str], action: str) -> None:
        if not isinstance(actor, str) or not actor.strip():
            raise GovernanceError(f"{action}: reviewer/actor must be named")
        if role not in allowed:
            raise GovernanceError(f"{action}: role {role!r} may not {action}; allowed roles: {sorted(allowed)}")

    def resume(self, reviewer: str, role: str, note: str) -> GovernanceEvent:
        """Return a suspended model to ACTIVE after human review.

        Raises
        ------
        GovernanceError : model not suspended, role not in ``resume_roles``, reviewer unnamed,
            or (with ``require_resume_note``) an empty note.
        """
        with self._exclusive():
            if self._state is not ModelState.SUSPENDED:
                raise GovernanceError(f"resume: model is {self._state.value}; only a suspended model can be resumed")
            self._check_person(reviewer, role, self.policy.resume_roles, "resume")
            if self.policy.require_resume_note and not (isinstance(note, str) and note.strip()):
                raise GovernanceError("resume: note: required (what was reviewed and why the model may run again)")
            return self._record(EventKind.RESUMED, f"resumed after review by {reviewer} ({role})",
                                {"note": note}, new_state=ModelState.ACTIVE, trigger="resume",
                                actor=reviewer, role=role)

    def suspend(self, actor: str, role: str, reason: str) -> GovernanceEvent:
        """Suspend by hand (a role in ``suspend_roles``); a reason is required."""
        with self._exclusive():
            self._check_person(actor, role, self.policy.suspend_roles, "suspend")
            if not (isinstance(reason, str) and reason.strip()):
                raise GovernanceError("suspend: reason: required")
            if self._state is ModelState.SUSPENDED:
                raise GovernanceError("suspend: model is already SUSPENDED-PENDING-REVIEW")
            d = {"trigger": "manual"}
            item = self._queue("suspension", reason, {**d, "actor": actor})
            if item is not None:
                d["review_item"] = item
            return self._record(EventKind.SUSPENDED, f"suspended by {actor} ({role}): {reason}", d,
                                new_state=ModelState.SUSPENDED, trigger="manual", actor=actor, role=role)

    def record_periodic_review(self, reviewer: str, role: str, note: str,
                               details: Mapping[str, Any] | None = None) -> GovernanceEvent:
        """Record a scheduled review (calibration, fairness, incidents, documentation)."""
        with self._exclusive():
            self._check_person(reviewer, role, self.policy.review_roles, "record a periodic review")
            if not (isinstance(note, str) and note.strip()):
                raise GovernanceError("record_periodic_review: note: required")
            return self._record(EventKind.PERIODIC_REVIEW, f"periodic review by {reviewer} ({role})",
                                {"note": note, **dict(details or {})}, actor=reviewer, role=role)

    def last_review_utc(self) -> datetime:
        """Time of the last periodic review or resume (creation time when none)."""
        with self._fresh():
            times = [e.time_utc for e in self._history
                     if e.kind in (EventKind.PERIODIC_REVIEW.value, EventKind.RESUMED.value)]
            return max(times) if times else self.created_utc

    def periodic_review_due(self, now: datetime | None = None) -> bool:
        """True when ``periodic_review_days`` have passed since :meth:`last_review_utc`."""
        now = now or self._now()
        return now - self.last_review_utc() >= timedelta(days=self.policy.periodic_review_days)

    # -- persistence ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            return {"format": self.FORMAT, "version": self.VERSION, "model_id": self.model_id,
                    "state": self._state.value, "created_utc": _iso(self.created_utc),
                    "history": [e.to_dict() for e in self._history]}

    def _save_locked(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(self.to_dict(), fh, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)        # atomic: a reader never sees half a file
            if path == self.path:
                self._file_signature = self._signature()
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def save(self, path: str | Path) -> Path:
        """Write the state and history as JSON (atomically)."""
        with self._lock:
            p = Path(path)
            self._save_locked(p)
            return p

    @classmethod
    def load(cls, path: str | Path, policy: GovernancePolicy, *, sink: Sink | None = None,
             review_queue: "ReviewQueue | None" = None, clock: Callable[[], datetime] | None = None,
             autosave: bool = True) -> "GovernanceStateMachine":
        """Continue from a saved state file; with ``autosave`` later events are written back to it."""
        p = Path(path)
        d = json.loads(p.read_text())
        if d.get("format") != cls.FORMAT:
            raise GovernanceError(f"{p}: format: expected {cls.FORMAT!r}, got {d.get('format')!r}")
        if d.get("version") != cls.VERSION:
            raise GovernanceError(f"{p}: version: expected {cls.VERSION}, got {d.get('version')!r}")
        try:
            ModelState(d["state"])
        except (KeyError, ValueError):
            raise GovernanceError(f"{p}: state: must be one of {[s.value for s in ModelState]}") from None
        return cls(policy, path=p if autosave else None, sink=sink, review_queue=review_queue,
                   clock=clock, _restore=d)


# --------------------------------------------------------------------------------------------
# one prediction


def escalation_reasons(*, state: ModelState | str, conformal_set: Any = None,
                       out_of_distribution: bool = False, imputed_share: float | None = None,
                       policy: GovernancePolicy | None = None) -> list[str]:
    """Why one prediction must go to human review (empty list: no escalation).

    Parameters
    ----------
    state : the model's :class:`ModelState` (or its value)
    conformal_set : the prediction's conformal set, optional. Either a collection of labels
        (``{0, 1}``, ``[1]``, ``[]``) or a boolean mask over the classes (shape (n_classes,),
        as MAPIE's ``predict_set`` gives per row). ``None`` = no set available (no reason).
    out_of_distribution : the input lies outside the training distribution (decided by the
        caller, e.g. from the feature ranges or PSI bins of the model bundle)
    imputed_share : share of the record's features that were missing and imputed, optional;
        above ``policy.escalate_imputed_share`` the answer rests mostly on training medians
        (an integration that drops every vital sign must never look like a low-risk patient)
    policy : which rules apply (default: all of them)

    Returns
    -------
    list of reason codes from :data:`ESCALATION_REASONS`, in that order.
    """
    policy = policy or GovernancePolicy()
    try:
        st = ModelState(state)
    except ValueError:
        raise ValueError(f"state: must be one of {[s.value for s in ModelState]}, got {state!r}") from None
    reasons = []
    if st is ModelState.SUSPENDED:
        reasons.append("model_suspended")
    if conformal_set is not None:
        arr = np.asarray(list(conformal_set) if isinstance(conformal_set, (set, frozenset)) else conformal_set)
        if arr.dtype == bool:
            if arr.ndim == 2 and arr.shape[1] == 1:      # MAPIE row: (n_classes, n_levels=1)
                arr = arr[:, 0]
            if arr.ndim != 1:
                raise ValueError(f"conformal_set: a boolean mask must be one-dimensional, got shape {arr.shape}")
            size = int(arr.sum())
        else:
            size = len(set(arr.ravel().tolist()))
        if size == 0 and policy.escalate_empty_set:
            reasons.append("empty_conformal_set")
        elif size > 1 and policy.escalate_ambiguous_set:
            reasons.append("ambiguous_conformal_set")
    if bool(out_of_distribution) and policy.escalate_out_of_distribution:
        reasons.append("out_of_distribution")
    if imputed_share is not None and imputed_share > policy.escalate_imputed_share:
        reasons.append("mostly_imputed")
    return reasons


# --------------------------------------------------------------------------------------------
# SQLite-backed review queue and override log


class _SqliteStore:
    """A SQLite file opened per operation under a lock (safe across threads and restarts)."""

    def __init__(self, path: str | Path, schema: str, *, sink: Sink | None = None,
                 clock: Callable[[], datetime] | None = None):
        self.path = Path(path)
        self.sink = sink
        self._clock = clock or _utcnow
        self._lock = threading.Lock()
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(schema)

    def _connect(self):
        # private (0600) and overwriting what it deletes: the stores hold notes and case details
        con = connect_private_sqlite(self.path, timeout=30, isolation_level=None)
        con.row_factory = sqlite3.Row
        return closing(con)

    def _now(self) -> str:
        return _iso(self._clock())

    def _emit(self, kind: EventKind, reason: str, details: Mapping[str, Any], actor: str | None = None,
              role: str | None = None) -> None:
        if self.sink is not None:
            self.sink(GovernanceEvent(time_utc=_parse_iso(self._now()), kind=kind.value, reason=reason,
                                      details=_jsonable(dict(details)), actor=actor, role=role))


@dataclass(frozen=True)
class ReviewItem:
    """A case or model-level issue waiting for (or closed by) human review."""

    item_id: int
    created_utc: str
    kind: str
    reason: str
    details: Mapping[str, Any]
    subject: str | None
    status: str
    resolved_utc: str | None = None
    reviewer: str | None = None
    role: str | None = None
    resolution: str | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: _jsonable(getattr(self, k)) for k in self.__dataclass_fields__}


_REVIEW_SCHEMA = """
CREATE TABLE IF NOT EXISTS review_items (
    item_id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_utc TEXT NOT NULL,
    kind TEXT NOT NULL,
    reason TEXT NOT NULL,
    details TEXT NOT NULL,
    subject TEXT,
    status TEXT NOT NULL CHECK (status IN ('open', 'resolved')),
    resolved_utc TEXT, reviewer TEXT, role TEXT, resolution TEXT, note TEXT
);
CREATE INDEX IF NOT EXISTS review_items_status ON review_items(status);
"""


class ReviewQueue(_SqliteStore):
    """Items for human review, persisted in SQLite (a server restart keeps them); thread-safe.

    Parameters
    ----------
    path : SQLite file (created with its folder if missing)
    resolve_roles : roles allowed to resolve items (None: any named role)
    sink : callable(GovernanceEvent), optional -- 'review_item_added' / 'review_item_resolved'
    clock : callable() -> aware datetime, optional (tests)
    """

    def __init__(self, path: str | Path, *, resolve_roles: Collection[str] | None = None,
                 sink: Sink | None = None, clock: Callable[[], datetime] | None = None):
        super().__init__(path, _REVIEW_SCHEMA, sink=sink, clock=clock)
        self.resolve_roles = tuple(resolve_roles) if resolve_roles is not None else None

    @staticmethod
    def _item(row: sqlite3.Row) -> ReviewItem:
        d = dict(row)
        d["details"] = json.loads(d["details"])
        return ReviewItem(**d)

    def add(self, kind: str, reason: str, *, details: Mapping[str, Any] | None = None,
            subject: str | None = None) -> ReviewItem:
        """Open an item. ``subject``: what it is about (e.g. a pseudonymous prediction id)."""
        if not (isinstance(kind, str) and kind.strip()):
            raise ValueError("kind: required")
        if not (isinstance(reason, str) and reason.strip()):
            raise ValueError("reason: required")
        payload = json.dumps(_jsonable(dict(details or {})))
        with self._lock, self._connect() as con:
            cur = con.execute("INSERT INTO review_items (created_utc, kind, reason, details, subject, status) "
                              "VALUES (?, ?, ?, ?, ?, 'open')", (self._now(), kind, reason, payload, subject))
            item = self._item(con.execute("SELECT * FROM review_items WHERE item_id = ?",
                                          (cur.lastrowid,)).fetchone())
        self._emit(EventKind.REVIEW_ITEM_ADDED, f"review item {item.item_id} ({kind}): {reason}",
                   {"item_id": item.item_id, "kind": kind, "subject": subject})
        return item

    def get(self, item_id: int) -> ReviewItem:
        with self._lock, self._connect() as con:
            row = con.execute("SELECT * FROM review_items WHERE item_id = ?", (int(item_id),)).fetchone()
        if row is None:
            raise GovernanceError(f"item_id: no review item {item_id}")
        return self._item(row)

    def list(self, status: str | None = "open", *, kind: str | None = None, after: int = 0,
             limit: int | None = None) -> list[ReviewItem]:
        """Items oldest first; ``status`` 'open', 'resolved' or None (all); a page of at most
        ``limit`` items with ``item_id > after``."""
        if status not in ("open", "resolved", None):
            raise ValueError(f"status: must be 'open', 'resolved' or None, got {status!r}")
        sql, args = "SELECT * FROM review_items WHERE item_id > ?", [int(after)]
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        if kind is not None:
            sql += " AND kind = ?"
            args.append(kind)
        sql += " ORDER BY item_id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        with self._lock, self._connect() as con:
            rows = con.execute(sql, args).fetchall()
        return [self._item(r) for r in rows]

    def count(self, status: str | None = "open") -> int:
        """Number of items with ``status`` (None: all)."""
        with self._lock, self._connect() as con:
            if status is None:
                return int(con.execute("SELECT COUNT(*) FROM review_items").fetchone()[0])
            return int(con.execute("SELECT COUNT(*) FROM review_items WHERE status = ?", (status,)).fetchone()[0])

    def resolve(self, item_id: int, *, reviewer: str, role: str, resolution: str,
                note: str | None = None) -> ReviewItem:
        """Close an open item. Raises GovernanceError for an unknown / closed item or a wrong role."""
        if not (isinstance(reviewer, str) and reviewer.strip()):
            raise GovernanceError("resolve: reviewer must be named")
        if self.resolve_roles is not None and role not in self.resolve_roles:
            raise GovernanceError(f"resolve: role {role!r} may not resolve review items; "
                                  f"allowed roles: {sorted(self.resolve_roles)}")
        if not (isinstance(resolution, str) and resolution.strip()):
            raise GovernanceError("resolve: resolution: required")
        with self._lock, self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            row = con.execute("SELECT status FROM review_items WHERE item_id = ?", (int(item_id),)).fetchone()
            if row is None:
                con.execute("ROLLBACK")
                raise GovernanceError(f"item_id: no review item {item_id}")
            if row["status"] != "open":
                con.execute("ROLLBACK")
                raise GovernanceError(f"item_id: review item {item_id} is already resolved")
            con.execute("UPDATE review_items SET status = 'resolved', resolved_utc = ?, reviewer = ?, role = ?, "
                        "resolution = ?, note = ? WHERE item_id = ?",
                        (self._now(), reviewer, role, resolution, note, int(item_id)))
            con.execute("COMMIT")
            item = self._item(con.execute("SELECT * FROM review_items WHERE item_id = ?", (int(item_id),)).fetchone())
        self._emit(EventKind.REVIEW_ITEM_RESOLVED, f"review item {item_id} resolved by {reviewer} ({role}): {resolution}",
                   {"item_id": int(item_id), "resolution": resolution}, actor=reviewer, role=role)
        return item


    def redact(self, field: str, values: Collection[str], *, keep: Collection[str] = ()) -> int:
        """Erase the personal data of every item whose ``details[field]`` is one of ``values``.

        Such an item keeps only the ``keep`` keys of its details (plus ``"redacted": true``)
        and loses its note; its status, times and reviewer stay (the oversight record). Deleted
        content is overwritten in the database file and the write-ahead log is emptied.
        Returns the number of items redacted.
        """
        wanted = sorted(set(values))
        if not wanted:
            return 0
        marks = ", ".join("?" * len(wanted))
        with self._lock, self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            rows = con.execute(f"SELECT item_id, details FROM review_items "
                               f"WHERE json_extract(details, ?) IN ({marks})", [f"$.{field}", *wanted]).fetchall()
            for row in rows:
                details = json.loads(row["details"])
                kept = {k: details[k] for k in keep if k in details}
                con.execute("UPDATE review_items SET details = ?, note = NULL WHERE item_id = ?",
                            (json.dumps({**kept, "redacted": True}), row["item_id"]))
            con.execute("COMMIT")
            purge_deleted(con)
        return len(rows)


@dataclass(frozen=True)
class OverrideRecord:
    """A clinician's decision on one prediction: 'accepted' or 'overridden'."""

    record_id: int
    time_utc: str
    prediction_id: str
    clinician: str
    role: str
    action: str
    model_output: Any
    clinician_decision: Any
    note: str | None

    def to_dict(self) -> dict[str, Any]:
        return {k: _jsonable(getattr(self, k)) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class OverrideRate:
    """``n_overrides / n_decisions`` (NaN when there are no decisions)."""

    n_decisions: int
    n_overrides: int

    @property
    def rate(self) -> float:
        return self.n_overrides / self.n_decisions if self.n_decisions else math.nan


_OVERRIDE_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    record_id INTEGER PRIMARY KEY AUTOINCREMENT,
    time_utc TEXT NOT NULL,
    prediction_id TEXT NOT NULL,
    clinician TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('accepted', 'overridden')),
    model_output TEXT NOT NULL,
    clinician_decision TEXT NOT NULL,
    note TEXT
);
CREATE INDEX IF NOT EXISTS decisions_time ON decisions(time_utc);
CREATE INDEX IF NOT EXISTS decisions_prediction ON decisions(prediction_id, clinician);
"""

DECISION_ACTIONS = ("accepted", "overridden")


class OverrideLog(_SqliteStore):
    """Clinician decisions on predictions (SQLite; thread-safe) and the override rate.

    An override needs no justification beyond ordinary clinical documentation (paper, Layer 4),
    so ``note`` is optional.
    """

    def __init__(self, path: str | Path, *, sink: Sink | None = None, clock: Callable[[], datetime] | None = None):
        super().__init__(path, _OVERRIDE_SCHEMA, sink=sink, clock=clock)

    @staticmethod
    def _record(row: sqlite3.Row) -> OverrideRecord:
        d = dict(row)
        d["model_output"] = json.loads(d["model_output"])
        d["clinician_decision"] = json.loads(d["clinician_decision"])
        return OverrideRecord(**d)

    def record(self, prediction_id: str, *, clinician: str, role: str, action: str, model_output: Any = None,
               clinician_decision: Any = None, note: str | None = None) -> OverrideRecord:
        """Record one decision; ``action`` is 'accepted' or 'overridden'."""
        if action not in DECISION_ACTIONS:
            raise ValueError(f"action: must be one of {DECISION_ACTIONS}, got {action!r}")
        for name, v in (("prediction_id", prediction_id), ("clinician", clinician), ("role", role)):
            if not (isinstance(v, str) and v.strip()):
                raise ValueError(f"{name}: required (non-empty text)")
        with self._lock, self._connect() as con:
            cur = con.execute(
                "INSERT INTO decisions (time_utc, prediction_id, clinician, role, action, model_output, "
                "clinician_decision, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (self._now(), prediction_id, clinician, role, action, json.dumps(_jsonable(model_output)),
                 json.dumps(_jsonable(clinician_decision)), note))
            rec = self._record(con.execute("SELECT * FROM decisions WHERE record_id = ?", (cur.lastrowid,)).fetchone())
        self._emit(EventKind.DECISION_RECORDED, f"prediction {prediction_id} {action} by {clinician} ({role})",
                   {"record_id": rec.record_id, "prediction_id": prediction_id, "action": action},
                   actor=clinician, role=role)
        return rec

    @staticmethod
    def _window(since: datetime | None, until: datetime | None) -> tuple[str, list[str]]:
        sql, args = " WHERE 1 = 1", []
        if since is not None:
            sql += " AND time_utc >= ?"
            args.append(_iso(since))
        if until is not None:
            sql += " AND time_utc < ?"
            args.append(_iso(until))
        return sql, args

    def records(self, *, since: datetime | None = None, until: datetime | None = None) -> list[OverrideRecord]:
        """Decisions in ``[since, until)`` (UTC), oldest first."""
        where, args = self._window(since, until)
        with self._lock, self._connect() as con:
            return [self._record(r) for r in con.execute(f"SELECT * FROM decisions{where} ORDER BY record_id",
                                                         args).fetchall()]

    def drop_notes(self) -> int:
        """Remove every stored note (overwritten in the file, write-ahead log emptied); returns
        how many. For a caller that keeps notes elsewhere, erasably (the serving demo keeps
        override reasons only in the audit trail's encrypted payloads)."""
        with self._lock, self._connect() as con:
            n = con.execute("UPDATE decisions SET note = NULL WHERE note IS NOT NULL").rowcount
            if n:
                purge_deleted(con)
        return n

    def decided(self, prediction_id: str, clinician: str) -> bool:
        """Whether ``clinician`` already recorded a decision on ``prediction_id`` (indexed)."""
        with self._lock, self._connect() as con:
            return con.execute("SELECT 1 FROM decisions WHERE prediction_id = ? AND clinician = ? LIMIT 1",
                               (prediction_id, clinician)).fetchone() is not None

    def overridden_among(self, prediction_ids: Sequence[str]) -> set[str]:
        """Which of ``prediction_ids`` were overridden (indexed lookups, not a scan)."""
        if not prediction_ids:
            return set()
        marks = ", ".join("?" * len(prediction_ids))
        with self._lock, self._connect() as con:
            return {row[0] for row in con.execute(
                f"SELECT DISTINCT prediction_id FROM decisions WHERE action = 'overridden' "
                f"AND prediction_id IN ({marks})", list(prediction_ids))}

    def overridden_predictions(self) -> int:
        """Distinct predictions overridden at least once (what an override rate counts: one
        token overriding one prediction 300 times is one overridden prediction)."""
        with self._lock, self._connect() as con:
            return int(con.execute("SELECT COUNT(DISTINCT prediction_id) FROM decisions "
                                   "WHERE action = 'overridden'").fetchone()[0])

    def rate(self, *, since: datetime | None = None, until: datetime | None = None) -> OverrideRate:
        """Override rate over decisions in ``[since, until)`` (counted in SQL: no record is read)."""
        where, args = self._window(since, until)
        with self._lock, self._connect() as con:
            n, overridden = con.execute(f"SELECT COUNT(*), COALESCE(SUM(action = 'overridden'), 0) FROM decisions"
                                        f"{where}", args).fetchone()
        return OverrideRate(n_decisions=int(n), n_overrides=int(overridden))


def override_rate_flags(rate: OverrideRate, policy: GovernancePolicy) -> list[str]:
    """Review flags for an override rate: 'override_rate_high' or 'override_rate_zero'.

    Judged only with at least ``policy.override_min_decisions`` decisions (otherwise []).
    """
    if rate.n_decisions < policy.override_min_decisions:
        return []
    if rate.rate >= policy.override_rate_high:
        return ["override_rate_high"]
    if policy.override_flag_zero and rate.n_overrides == 0:
        return ["override_rate_zero"]
    return []
