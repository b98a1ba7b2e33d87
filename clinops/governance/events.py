"""What governance records: events, their kinds, and the JSON form every record is written in.

Every state change, review item and clinician decision is a :class:`GovernanceEvent` (UTC
time, kind, reason, details) handed to an optional ``sink`` callable, so that a server can
write it to its audit log; governance itself does not know about the audit log. Records hold
only plain JSON values (:func:`jsonable`) and timezone-aware UTC times written with a ``Z``
(:func:`utc_iso`), so notebooks, the server and the stores share one format.

Examples
--------
>>> from datetime import datetime, timezone
>>> event = GovernanceEvent(time_utc=datetime(2026, 3, 18, 12, 0, tzinfo=timezone.utc),
...                         kind=EventKind.DRIFT_WATCH.value, reason="drift detected by adwin",
...                         details={"psi": float("nan")}, state_before="ACTIVE", state_after="ACTIVE")
>>> event.to_dict()["time_utc"], event.to_dict()["details"]
('2026-03-18T12:00:00Z', {'psi': None})
>>> GovernanceEvent.from_dict(event.to_dict()).time_utc == event.time_utc
True
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any

import numpy as np

__all__ = ["EventKind", "GovernanceError", "GovernanceEvent", "Sink", "jsonable", "utc_iso", "parse_utc_iso",
           "utcnow"]


class GovernanceError(RuntimeError):
    """A governance action was refused (wrong role, wrong state, missing note, ...)."""


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


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (the default clock of every governance object)."""
    return datetime.now(timezone.utc)


def utc_iso(t: datetime) -> str:
    """``t`` in UTC as ISO 8601 with a ``Z`` (naive times are refused: their zone is unknown)."""
    if t.tzinfo is None:
        raise ValueError("times must be timezone-aware (UTC)")
    return t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def parse_utc_iso(s: str) -> datetime:
    """Inverse of :func:`utc_iso`: a timezone-aware UTC datetime."""
    return datetime.fromisoformat(s.replace("Z", "+00:00")).astimezone(timezone.utc)


def jsonable(v: Any) -> Any:
    """Plain JSON types only (numpy scalars -> Python, NaN -> None, objects with ``to_dict`` -> dicts)."""
    if hasattr(v, "to_dict") and callable(v.to_dict):
        v = v.to_dict()
    if isinstance(v, Enum):
        return v.value
    if isinstance(v, Mapping):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set, frozenset, np.ndarray)):
        return [jsonable(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, datetime):
        return utc_iso(v)
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    return str(v)


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
        return {"time_utc": utc_iso(self.time_utc), "kind": self.kind, "reason": self.reason,
                "details": jsonable(dict(self.details)), "state_before": self.state_before,
                "state_after": self.state_after, "actor": self.actor, "role": self.role}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "GovernanceEvent":
        return cls(time_utc=parse_utc_iso(d["time_utc"]), kind=d["kind"], reason=d["reason"],
                   details=dict(d.get("details") or {}), state_before=d.get("state_before"),
                   state_after=d.get("state_after"), actor=d.get("actor"), role=d.get("role"))


#: Receives every event (e.g. the server's audit-log writer).
Sink = Callable[[GovernanceEvent], None]
