"""The deployed model's governance state: ACTIVE or SUSPENDED-PENDING-REVIEW, and its history.

- The model is in one of two states (:class:`ModelState`). There is no other state: in
  particular nothing here retrains, re-fits or replaces a model. Suspension routes every
  prediction to human review; it ends only when a person with an allowed role resumes the
  model with a note.
- **Degradation** (:meth:`GovernanceStateMachine.on_degradation`): a relative AUROC drop
  ``(reference - current) / reference`` at or above ``degradation_trigger`` (paper: 5 %)
  suspends an active model, whether or not a drift detector fired first.
- **Drift** (:meth:`GovernanceStateMachine.on_drift`): a drift alarm *alone* never changes the
  state. It records a ``drift_watch`` event ("human review recommended") and, with a review
  queue attached, opens a review item. Only a measured degradation at or above the trigger,
  supplied with it, suspends (the paper's scenario: drift detected, AUROC 6.4 % lower).
- **Fairness** (:meth:`GovernanceStateMachine.on_fairness_alert`): records a
  ``fairness_alert`` event and opens a review item; it suspends only if the policy says so.
- **Resume** (:meth:`GovernanceStateMachine.resume`): only by a role in ``resume_roles``, with
  a note; anything else raises :class:`~clinops.governance.events.GovernanceError`.

Where the state is kept between processes is :mod:`clinops.governance.state_file`'s concern;
this module holds the transitions.

Examples
--------
>>> from clinops.governance import GovernancePolicy
>>> machine = GovernanceStateMachine(GovernancePolicy(degradation_trigger=0.05))
>>> [e.kind for e in machine.on_drift(detector="adwin")]          # an alarm alone: watch
['drift_watch']
>>> [e.kind for e in machine.on_degradation(reference_auroc=0.847, current_auroc=0.793)]
['suspended']
>>> machine.state.value
'SUSPENDED-PENDING-REVIEW'
>>> machine.resume("dr.a", "clinician", "looks fine")
Traceback (most recent call last):
...
clinops.governance.events.GovernanceError: resume: role 'clinician' may not resume; allowed roles: ['reviewer']
>>> machine.resume("dr.a", "reviewer", "protocol change confirmed").state_after
'ACTIVE'
"""
from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from clinops.governance.events import (
    EventKind,
    GovernanceError,
    GovernanceEvent,
    Sink,
    jsonable,
    parse_utc_iso,
    utc_iso,
    utcnow,
)
from clinops.governance.policy import GovernancePolicy
from clinops.governance.review_queue import ReviewQueue
from clinops.governance.state_file import SharedStateFile, write_json_atomically

__all__ = ["ModelState", "TRANSITIONS", "GovernanceStateMachine", "relative_degradation"]


class ModelState(str, Enum):
    """The only two states a deployed model can be in."""

    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED-PENDING-REVIEW"


#: Every allowed state change: (from, to) -> the triggers that may cause it. Nothing else.
TRANSITIONS: dict[tuple[ModelState, ModelState], tuple[str, ...]] = {
    (ModelState.ACTIVE, ModelState.SUSPENDED): ("degradation", "fairness_alert", "manual"),
    (ModelState.SUSPENDED, ModelState.ACTIVE): ("resume",),
}


def relative_degradation(reference_auroc: float, current_auroc: float) -> float:
    """Relative AUROC drop ``(reference - current) / reference`` (negative = improvement)."""
    for name, v in (("reference_auroc", reference_auroc), ("current_auroc", current_auroc)):
        if not (isinstance(v, (int, float, np.floating)) and 0 <= float(v) <= 1):
            raise ValueError(f"{name}: must be an AUROC in [0, 1], got {v!r}")
    if float(reference_auroc) <= 0:
        raise ValueError("reference_auroc: must be > 0")
    return (float(reference_auroc) - float(current_auroc)) / float(reference_auroc)


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
                 review_queue: ReviewQueue | None = None, model_id: str | None = None,
                 clock: Callable[[], datetime] | None = None, _restore: Mapping[str, Any] | None = None):
        if not isinstance(policy, GovernancePolicy):
            raise TypeError("policy: must be a GovernancePolicy")
        self.policy = policy
        self.path = Path(path) if path is not None else None
        self.sink = sink
        self.review_queue = review_queue
        self._clock = clock or utcnow
        self._lock = threading.RLock()
        self._file = SharedStateFile(self.path) if self.path is not None else None
        self._exclusive_depth = 0
        if _restore is None:
            self.model_id = model_id
            self._state = ModelState.ACTIVE
            self._history: list[GovernanceEvent] = []
            self.created_utc = self._now()
            if self._file is not None:
                with self._file.locked():
                    if self._file.exists():
                        raise GovernanceError(f"path: {self.path} already holds a governance state; "
                                              "use GovernanceStateMachine.load to continue it")
                    self._file.write(self.to_dict())
        else:
            self._restore(_restore)
            if self._file is not None:
                self._file.mark_seen()

    def _restore(self, d: Mapping[str, Any]) -> None:
        self.model_id = d.get("model_id")
        self._state = ModelState(d["state"])
        self._history = [GovernanceEvent.from_dict(e) for e in d.get("history", [])]
        self.created_utc = parse_utc_iso(d["created_utc"])

    # -- sharing the state file between processes ------------------------------------------

    def _reload_if_changed(self) -> None:
        """Pick up a change another process saved (lock held)."""
        if self._file is None:
            return
        d = self._file.read_if_changed()
        if d is not None and d.get("format") == self.FORMAT:
            self._restore(d)

    @contextmanager
    def _fresh(self) -> Iterator[None]:
        with self._lock:
            self._reload_if_changed()
            yield

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Thread lock + exclusive file lock (re-entrant), state reloaded from the file first."""
        with self._lock:
            if self._file is None or self._exclusive_depth:
                self._exclusive_depth += 1
                try:
                    yield
                finally:
                    self._exclusive_depth -= 1
                return
            with self._file.locked():
                self._reload_if_changed()
                self._exclusive_depth = 1
                try:
                    yield
                finally:
                    self._exclusive_depth = 0

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
                             details=jsonable(dict(details or {})), state_before=before.value,
                             state_after=after.value, actor=actor, role=role)
        self._state = after
        self._history.append(ev)
        if self._file is not None:
            self._file.write(self.to_dict())
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
            listed = [jsonable(a) for a in alerts]
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
                    "state": self._state.value, "created_utc": utc_iso(self.created_utc),
                    "history": [e.to_dict() for e in self._history]}

    def save(self, path: str | Path) -> Path:
        """Write the state and history as JSON (atomically)."""
        with self._lock:
            p = Path(path)
            if self._file is not None and p == self.path:
                self._file.write(self.to_dict())
                return p
            return write_json_atomically(p, self.to_dict())

    @classmethod
    def load(cls, path: str | Path, policy: GovernancePolicy, *, sink: Sink | None = None,
             review_queue: ReviewQueue | None = None, clock: Callable[[], datetime] | None = None,
             autosave: bool = True) -> "GovernanceStateMachine":
        """Continue from a saved state file; with ``autosave`` later events are written back to it."""
        p = Path(path)
        d = json.loads(p.read_text())
        found = d.get("format") if isinstance(d, dict) else d
        if found != cls.FORMAT:
            raise GovernanceError(f"{p}: format: expected {cls.FORMAT!r}, got {found!r}")
        if d.get("version") != cls.VERSION:
            raise GovernanceError(f"{p}: version: expected {cls.VERSION}, got {d.get('version')!r}")
        try:
            ModelState(d["state"])
        except (KeyError, ValueError):
            raise GovernanceError(f"{p}: state: must be one of {[s.value for s in ModelState]}") from None
        return cls(policy, path=p if autosave else None, sink=sink, review_queue=review_queue,
                   clock=clock, _restore=d)
