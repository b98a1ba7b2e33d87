"""The Grafana dashboard of the serving demo, built with grafana-foundation-sdk.

Every panel queries the Prometheus data source chosen in the dashboard's ``datasource``
variable, so the JSON loads into any Grafana through file provisioning
(``serving/ops/grafana/provisioning``) or the "Import dashboard" page. Threshold lines come from
the policy files (:func:`clinops.ops.prometheus.task_thresholds`) where every task has the same
value; where tasks differ, the panel's description says so and the alert rules hold the values.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.builders import common, prometheus, stat, timeseries
from grafana_foundation_sdk.builders.dashboard import DatasourceVariable, Row, ThresholdsConfig
from grafana_foundation_sdk.builders.dashboard import Dashboard as DashboardBuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import GraphThresholdsStyleMode
from grafana_foundation_sdk.models.dashboard import DataSourceRef, Threshold, ThresholdsMode

from clinops.ops.prometheus import LATENCY_QUANTILES, RATE_WINDOW, SERVING_JOB, TaskThresholds

DASHBOARD_UID = "clinops-serving"
_DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")


@dataclass(frozen=True)
class PanelSpec:
    """One panel: its queries (PromQL, legend) and where its threshold line comes from."""

    title: str
    description: str
    queries: list[tuple[str, str]]
    unit: str = "none"
    kind: str = "timeseries"
    threshold: str | None = None  # a TaskThresholds attribute


def panel_specs() -> list[tuple[str, list[PanelSpec]]]:
    """The dashboard's rows and panels, clinical signals first."""
    w = RATE_WINDOW
    return [
        ("Model performance on linked outcomes", [
            PanelSpec("Live AUROC and reference", "AUROC over the outcome window; the reference is the model's "
                      "test AUROC (the live degradation rule's baseline).",
                      [("clinops_live_auroc", "live {{task}}"), ("clinops_reference_auroc", "reference {{task}}")]),
            PanelSpec("Relative AUROC drop", "(reference - live) / reference; at the degradation trigger the "
                      "model is suspended pending review (governance.yaml degradation_trigger).",
                      [("clinops:live_auroc:relative_drop", "{{task}}")], unit="percentunit",
                      threshold="degradation_trigger"),
            PanelSpec("Live ECE", "Expected calibration error over the outcome window.",
                      [("clinops_live_ece", "{{task}}")]),
            PanelSpec("Linked outcomes in the window", "Outcomes the live metrics are computed on.",
                      [("clinops_live_outcomes", "{{task}}")], kind="stat"),
        ]),
        ("Fairness", [
            PanelSpec("Live AUROC per group", "Per-group AUROC over the outcome window (estimable groups only).",
                      [("clinops_live_group_auroc", "{{attribute}} = {{group}}")]),
            PanelSpec("Largest AUROC gap between groups", "max - min per attribute; fairness.yaml "
                      "pairwise_gap_limits.auroc (per task) raises ClinopsGroupAurocGap above it.",
                      [("clinops:live_group_auroc:gap", "{{task}} {{attribute}}")], threshold="group_auroc_gap"),
        ]),
        ("Drift", [
            PanelSpec("PSI per feature", "Population stability index of the recent inputs against the training "
                      "bins (drift.yaml psi.watch / psi.alert).",
                      [("clinops_drift_psi", "{{feature}}")], threshold="psi_alert"),
            PanelSpec("Largest PSI", "The most shifted feature's PSI.", [("clinops:drift_psi:max", "{{task}}")],
                      kind="stat", threshold="psi_alert"),
            PanelSpec("Predictions in the drift window", "Inputs the PSI is computed on.",
                      [("clinops_drift_window_size", "{{task}}")], kind="stat"),
        ]),
        ("Human oversight", [
            PanelSpec("Override rate", "Overrides per prediction served from the state directory "
                      "(governance.yaml override_review: review when high, and when zero).",
                      [("clinops_override_rate", "all decisions {{task}}"),
                       (f"clinops:override_rate:ratio_{w}", f"last {w} {{{{task}}}}")],
                      unit="percentunit", threshold="override_rate_high"),
            PanelSpec("Escalation rate by reason", f"Share of predictions escalated to human review, last {w}.",
                      [(f"clinops:escalation_rate_by_reason:ratio_{w}", "{{reason}}"),
                       (f"clinops:escalation_rate:ratio_{w}", "any reason")], unit="percentunit"),
            PanelSpec("Open review cases", "Cases waiting in the review queue.",
                      [("clinops_review_queue_open", "{{task}}")], kind="stat"),
            PanelSpec("Model state", "1 for the governance state the model is in.",
                      [("clinops_model_state == 1", "{{state}}")], kind="stat"),
        ]),
        ("Inputs", [
            PanelSpec("Share of imputed feature values", f"Feature values missing from requests and imputed "
                      f"with the training median, last {w}.",
                      [(f"clinops:imputed_share:ratio_{w}", "{{task}}")], unit="percentunit"),
            PanelSpec("Imputed, by feature", f"Share of predictions with the feature imputed, last {w}.",
                      [(f"clinops:imputed_share_by_feature:ratio_{w}", "{{feature}}")], unit="percentunit"),
        ]),
        ("Service", [
            PanelSpec("Request latency quantiles", "Per route, over 5 minutes.",
                      [(f"clinops:request_latency_seconds:p{round(q * 100)}", f"p{round(q * 100)} {{{{route}}}}")
                       for q in LATENCY_QUANTILES], unit="s"),
            PanelSpec("Predictions per second", "", [("rate(clinops_predictions_total[5m])", "{{task}}")],
                      unit="reqps"),
            PanelSpec("Audit write failures (1 h)", "Requests refused because their audit record could not be "
                      "written.", [("increase(clinops_audit_write_failures_total[1h])", "{{task}}")], kind="stat"),
            PanelSpec("Scrape target up", "1 while Prometheus can scrape the server's /metrics.",
                      [(f'up{{job="{SERVING_JOB}"}}', "{{instance}}")], kind="stat"),
            PanelSpec("Worker starts", "Latest and first worker start of the server run (Unix time).",
                      [("clinops_worker_start_time_seconds", "latest"),
                       ("clinops_first_worker_start_time_seconds", "first")], unit="dateTimeAsIso", kind="stat"),
        ]),
    ]


def _common_threshold(thresholds: list[TaskThresholds], attribute: str) -> float | None:
    values = {getattr(t, attribute) for t in thresholds}
    return values.pop() if len(values) == 1 else None


def _panel(spec: PanelSpec, thresholds: list[TaskThresholds]):
    builder = (timeseries.Panel() if spec.kind == "timeseries" else stat.Panel())
    builder = builder.title(spec.title).datasource(_DATASOURCE).unit(spec.unit).height(8).span(8)
    description = spec.description
    line = _common_threshold(thresholds, spec.threshold) if spec.threshold else None
    if spec.threshold and line is None:
        per_task = ", ".join(f"{t.task} {getattr(t, spec.threshold)}" for t in thresholds)
        description += f" Limits per task: {per_task}."
    if line is not None:
        builder = builder.thresholds(ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps(
            [Threshold(value=None, color="green"), Threshold(value=line, color="red")]))
        if spec.kind == "timeseries":
            builder = builder.thresholds_style(common.GraphThresholdsStyleConfig().mode(GraphThresholdsStyleMode.LINE))
    if description:
        builder = builder.description(description)
    for i, (expr, legend) in enumerate(spec.queries):
        builder = builder.with_target(prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(chr(65 + i)))
    return builder


def dashboard(thresholds: list[TaskThresholds]) -> dict[str, Any]:
    """The dashboard JSON model (a dict), ready for provisioning or import."""
    builder = (DashboardBuilder("Clinops serving: clinical and operational signals").uid(DASHBOARD_UID)
               .tags(["clinops", "clinical-mlops"]).refresh("30s").time("now-6h", "now").timezone("utc")
               .with_variable(DatasourceVariable("datasource").label("Prometheus").type("prometheus")))
    for row, specs in panel_specs():
        builder = builder.with_row(Row(row))
        for spec in specs:
            builder = builder.with_panel(_panel(spec, thresholds))
    return json.loads(JSONEncoder(sort_keys=True).encode(builder.build()))


def dashboard_queries(model: dict[str, Any]) -> list[tuple[str, str]]:
    """``(panel title, PromQL)`` of every query of every panel of a dashboard JSON model."""
    panels = []
    for panel in model.get("panels", []):
        panels.extend([panel, *panel.get("panels", [])])  # a collapsed row holds its panels
    return [(p["title"], t["expr"]) for p in panels for t in p.get("targets", [])]
