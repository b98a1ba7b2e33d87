"""Layer 2 drift: PSI, stream detectors, the stream monitor, shift simulation, Evidently report.

One module per idea:

- :mod:`~clinops.drift.psi`: the PSI, its bins (:func:`reference_statistics`, the one binning
  and the one stored format) and :class:`PsiReference`;
- :mod:`~clinops.drift.detectors`: one file per stream detector on the predicted score behind
  river's ``update(x) -> self`` / ``drift_detected`` contract, and the registry
  :data:`DETECTORS`;
- :mod:`~clinops.drift.policy`: :class:`DriftPolicy` (``params/policies/drift.yaml``);
- :mod:`~clinops.drift.monitor`: :class:`StreamMonitor` and :class:`MonitorEvent`;
- :mod:`~clinops.drift.simulate`: controlled shifts, :func:`shift_scenario`,
  :func:`simulate_stream`; :mod:`~clinops.drift.summary`: :func:`stream_summary`;
- :mod:`~clinops.drift.thresholds`: thresholds from one false-alarm budget;
  :mod:`~clinops.drift.streams`: which detectors watch the score and each feature stream;
- :mod:`~clinops.drift.strength`: :func:`scenario_strength` (is a scenario strong enough?);
  :mod:`~clinops.drift.concept`: :func:`simulate_concept_shift` (not the paper's scenario);
- :mod:`~clinops.drift.cbpe`: performance expected from calibrated probabilities (CBPE);
- :mod:`~clinops.drift.benchmark`: delay and false alarms over many seeded streams;
- :mod:`~clinops.drift.report`: :func:`evidently_report`; :mod:`~clinops.drift.plots`: figures.

The server's live monitor is :mod:`clinops.monitoring.live`.
"""
from __future__ import annotations

from clinops.drift.benchmark import NO_SHIFT, StreamPool, benchmark_runs, benchmark_table, targets_verdict
from clinops.drift.cbpe import cbpe_summary, expected_auroc, expected_event_rate
from clinops.drift.concept import simulate_concept_shift
from clinops.drift.detectors import DETECTORS, StreamDetector
from clinops.drift.monitor import MonitorEvent, StreamMonitor
from clinops.drift.plots import plot_psi_over_time, plot_stream
from clinops.drift.policy import DriftPolicy, PolicyError
from clinops.drift.psi import PSI_EPS, PsiReference, psi, psi_status, reference_statistics
from clinops.drift.report import evidently_report
from clinops.drift.simulate import (
    ShiftScenario,
    prevalence_shift_scenario,
    shift_scenario,
    simulate_additive_shift,
    simulate_prevalence_shift,
    simulate_stream,
)
from clinops.drift.strength import ScenarioStrength, scenario_strength
from clinops.drift.streams import FeatureStream, plan_detectors, stream_label
from clinops.drift.summary import stream_summary
from clinops.drift.thresholds import FalseAlarmBudget

__all__ = [
    "DETECTORS",
    "NO_SHIFT",
    "FalseAlarmBudget",
    "FeatureStream",
    "ScenarioStrength",
    "StreamPool",
    "benchmark_runs",
    "benchmark_table",
    "cbpe_summary",
    "expected_auroc",
    "expected_event_rate",
    "plan_detectors",
    "scenario_strength",
    "simulate_concept_shift",
    "stream_label",
    "targets_verdict",
    "PSI_EPS",
    "DriftPolicy",
    "PolicyError",
    "PsiReference",
    "MonitorEvent",
    "StreamDetector",
    "StreamMonitor",
    "ShiftScenario",
    "psi",
    "psi_status",
    "reference_statistics",
    "shift_scenario",
    "simulate_prevalence_shift",
    "simulate_additive_shift",
    "prevalence_shift_scenario",
    "simulate_stream",
    "stream_summary",
    "evidently_report",
    "plot_stream",
    "plot_psi_over_time",
]
