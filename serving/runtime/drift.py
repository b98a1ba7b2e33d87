"""The live drift monitor's figures as gauges: the two callbacks :class:`clinops.monitoring.LiveDriftMonitor`
is built with (``on_psi``: PSI of the served window, ``on_estimate``: its CBPE estimate, performance
before outcomes)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["Drift"]


class Drift:
    """The drift part of :class:`serving.runtime.ServingRuntime` (``drift_monitor`` and ``metrics`` set up there)."""

    def _export_psi(self, psi: Mapping[str, float], window: int) -> None:
        """PSI per feature of the drift window and its size as gauges."""
        self.metrics.drift_window.set(window)
        for name, value in psi.items():
            self.metrics.drift_psi.labels(name).set(value)

    def _export_estimate(self, estimate: dict[str, Any]) -> None:
        """The CBPE estimate of the drift window (:class:`clinops.monitoring.LiveDriftMonitor`) as gauges."""
        if estimate["cbpe_auroc"] == estimate["cbpe_auroc"]:  # NaN when every probability is the same
            self.metrics.cbpe_auroc.set(estimate["cbpe_auroc"])
        self.metrics.cbpe_event_rate.set(estimate["cbpe_event_rate"])
