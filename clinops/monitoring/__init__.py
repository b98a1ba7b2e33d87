"""Monitoring of a served model: the live drift monitor and the outcome window (:mod:`.live`)."""
from __future__ import annotations

from clinops.monitoring.live import LiveDriftMonitor, OutcomeWindow, SharedState

__all__ = ["LiveDriftMonitor", "OutcomeWindow", "SharedState"]
