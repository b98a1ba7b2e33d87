"""Prometheus configuration, recording rules, alerting rules and their promtool unit tests.

Every threshold in an alerting rule is read from the policy files through the loaders that the
pipeline and the server use (:class:`clinops.governance.GovernancePolicy`,
:class:`clinops.fairness.FairnessPolicy`, :class:`clinops.drift.DriftPolicy`), once per task of
the policy files' ``tasks:`` sections; a task-specific rule selects the task through the
``task`` label that the scrape configuration puts on the serving target. Nothing here is typed
twice: the promtool unit tests are derived from the same thresholds (a value just above and
just below each one, and the threshold itself for a ``>=`` rule), so a rule whose expression,
comparison or label is wrong fails them, while the committed files are compared with what the
policies give (:func:`clinops.ops.files.check`).

With ``python -m serving --workers N`` every worker writes its metrics into one multiprocess
directory and whichever worker answers a scrape sums them all (serving/metrics.py): one scrape
target covers every worker of a server.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinops.drift import DriftPolicy
from clinops.governance import GovernancePolicy, ModelState
from clinops.policy import policy_tasks

SERVING_JOB = "clinops-serving"
#: Window of the ratio recording rules (escalation, override and imputation rates).
RATE_WINDOW = "1h"
#: Window of the latency quantiles.
LATENCY_WINDOW = "5m"
LATENCY_QUANTILES = (0.5, 0.9, 0.99)
#: A worker that starts this long after the first worker of its server is a restart (the
#: workers of one start come up together, within seconds).
WORKER_RESTART_GRACE_SECONDS = 120
#: An override-rate extreme must hold this long: the paper asks about a *consistently* high
#: (or zero) rate, not one spike.
OVERRIDE_FOR = "15m"
SERVING_DOWN_FOR = "2m"
RECORDING_FILE = "clinops-recording.yml"
ALERTS_FILE = "clinops-alerts.yml"
ALERT_TESTS_FILE = "clinops-alerts.test.yml"
#: The scrape target of the promtool unit tests' input series.
_TEST_TARGET = {"job": SERVING_JOB, "instance": "serving.example:8000"}
_VALUE = '{{ $value | printf "%.3f" }}'


@dataclass(frozen=True)
class TaskThresholds:
    """The alert thresholds of one task, as the policy files give them.

    Attributes
    ----------
    task : task name (the ``task`` label of the serving target)
    group_auroc_gap : fairness.yaml ``pairwise_gap_limits.auroc``; a gap strictly above alerts
        (None: no AUROC gap rule for this task)
    psi_watch, psi_alert : drift.yaml ``psi.watch`` / ``psi.alert``; PSI at or above alerts
    degradation_trigger : governance.yaml ``degradation_trigger``; a relative AUROC drop at or
        above alerts
    override_min_decisions, override_rate_high, override_flag_zero : governance.yaml
        ``override_review``
    """

    task: str
    group_auroc_gap: float | None
    psi_watch: float
    psi_alert: float
    degradation_trigger: float
    override_min_decisions: int
    override_rate_high: float
    override_flag_zero: bool


def task_thresholds(policy_dir: str | Path) -> list[TaskThresholds]:
    """The thresholds of every task named in ``governance.yaml``'s ``tasks:`` section.

    Parameters
    ----------
    policy_dir : folder holding ``governance.yaml`` and ``drift.yaml``; the fairness file is the
        one ``governance.yaml`` names (``fairness_policy``).

    Raises
    ------
    clinops.policy.PolicyError : a policy file breaks one of its loader's rules.
    """
    policy_dir = Path(policy_dir)
    governance_path, drift_path = policy_dir / "governance.yaml", policy_dir / "drift.yaml"
    out = []
    for task in policy_tasks(governance_path):
        governance = GovernancePolicy.load(governance_path, task=task)
        fairness = governance.fairness(task=task)
        drift = DriftPolicy.load(drift_path, task=task)
        out.append(TaskThresholds(
            task=task, group_auroc_gap=fairness.pairwise_gap_limits.get("auroc"),
            psi_watch=drift.psi_watch, psi_alert=drift.psi_alert,
            degradation_trigger=governance.degradation_trigger,
            override_min_decisions=governance.override_min_decisions,
            override_rate_high=governance.override_rate_high, override_flag_zero=governance.override_flag_zero))
    return out


# ------------------------------------------------------------------------------ recording rules


def _ratio(numerator: str, denominator: str) -> str:
    return f"increase({numerator}[{RATE_WINDOW}]) / increase({denominator}[{RATE_WINDOW}])"


def recording_rules() -> dict[str, Any]:
    """The recording rules (one group): the paper's clinical signals as the dashboard shows them.

    Live AUROC, ECE, per-group AUROC and PSI per feature are already computed by the server over
    its outcome / drift window (gauges ``clinops_live_auroc``, ``clinops_live_ece``,
    ``clinops_live_group_auroc``, ``clinops_drift_psi``); the rules derive what the alerts and
    panels compare with the policies.
    """
    window = RATE_WINDOW
    rules = [
        {"record": "clinops:live_auroc:relative_drop",
         "expr": "(clinops_reference_auroc - clinops_live_auroc) / clinops_reference_auroc"},
        {"record": "clinops:live_group_auroc:gap",
         "expr": "max without (group) (clinops_live_group_auroc) - min without (group) (clinops_live_group_auroc)"},
        {"record": "clinops:drift_psi:max", "expr": "max without (feature) (clinops_drift_psi)"},
        {"record": f"clinops:escalation_rate:ratio_{window}",
         "expr": _ratio("clinops_escalated_predictions_total", "clinops_predictions_total")},
        {"record": f"clinops:escalation_rate_by_reason:ratio_{window}",
         "expr": f"increase(clinops_escalations_total[{window}]) / ignoring (reason) group_left "
                 f"increase(clinops_predictions_total[{window}])"},
        {"record": f"clinops:override_rate:ratio_{window}",
         "expr": _ratio("clinops_overrides_total", "clinops_predictions_total")},
        # no imputation yet means no imputed_values series at all: report a share of 0 then
        {"record": f"clinops:imputed_share:ratio_{window}",
         "expr": f"(sum without (feature) (increase(clinops_imputed_values_total[{window}])) "
                 f"or 0 * increase(clinops_feature_values_total[{window}])) "
                 f"/ increase(clinops_feature_values_total[{window}])"},
        {"record": f"clinops:imputed_share_by_feature:ratio_{window}",
         "expr": f"increase(clinops_imputed_values_total[{window}]) / ignoring (feature) group_left "
                 f"increase(clinops_predictions_total[{window}])"},
    ]
    for q in LATENCY_QUANTILES:
        rules.append({
            "record": f"clinops:request_latency_seconds:p{round(q * 100)}",
            "expr": f"histogram_quantile({q}, sum without (method, status) "
                    f"(rate(clinops_request_latency_seconds_bucket[{LATENCY_WINDOW}])))"})
    return {"groups": [{"name": "clinops-signals", "rules": rules}]}


# ------------------------------------------------------------------------------ alerting rules


@dataclass(frozen=True)
class AlertCase:
    """One promtool unit test of an alert rule: input series and whether the alert fires.

    ``series`` maps a metric name with its own labels (besides the scrape target's and the
    task's) to a promtool values string; ``alert_labels`` are the labels the fired alert
    carries besides the rule's, the target's and the task's; ``value`` is the alert's value
    (for the expected annotations).
    """

    name: str
    series: list[tuple[str, dict[str, str], str]]
    fires: bool
    eval_time: str = "20m"
    alert_labels: dict[str, str] = field(default_factory=dict)
    value: float = 0.0


@dataclass(frozen=True)
class Alert:
    """An alerting rule with its promtool cases; ``task`` None: a rule over every target."""

    name: str
    expr: str
    severity: str
    summary: str
    policy: str
    cases: list[AlertCase]
    task: str | None = None
    for_: str = "0m"

    def rule(self) -> dict[str, Any]:
        rule: dict[str, Any] = {"alert": self.name, "expr": self.expr}
        if self.for_ != "0m":
            rule["for"] = self.for_
        # the task label keeps the rules of different tasks distinct (promtool refuses duplicates)
        rule["labels"] = {"severity": self.severity, **({"task": self.task} if self.task else {})}
        rule["annotations"] = {"summary": self.summary, "policy": self.policy}
        return rule


def _sel(task: str, extra: str = "") -> str:
    return "{" + f'task="{task}"' + (f", {extra}" if extra else "") + "}"


def _steady(value: float, samples: int = 30) -> str:
    return f"{value!r}x{samples}"


def _task_alerts(t: TaskThresholds) -> list[Alert]:
    task, sel = t.task, _sel(t.task)
    alerts = []
    if t.group_auroc_gap is not None:
        gap = t.group_auroc_gap
        groups = lambda low: [("clinops_live_group_auroc", {"attribute": "sex", "group": "F"}, _steady(0.8)),  # noqa: E731
                              ("clinops_live_group_auroc", {"attribute": "sex", "group": "M"}, _steady(low))]
        alerts.append(Alert(
            "ClinopsGroupAurocGap", f"clinops:live_group_auroc:gap{sel} > {gap!r}", "warning",
            f"Live AUROC differs by {_VALUE} between {{{{ $labels.attribute }}}} groups (limit {gap!r}, "
            f"task {task}): structured human review",
            "params/policies/fairness.yaml pairwise_gap_limits.auroc", task=task, cases=[
                AlertCase("gap above the limit", groups(0.8 - 1.2 * gap), True,
                          alert_labels={"attribute": "sex"}, value=1.2 * gap),
                AlertCase("gap below the limit", groups(0.8 - 0.8 * gap), False)]))
    psi = lambda v: [("clinops_drift_psi", {"feature": "lactate"}, _steady(v))]  # noqa: E731
    margin = 0.1 * (t.psi_alert - t.psi_watch)

    def psi_level(name: str, expr: str, severity: str, level: float, key: str, *extra: AlertCase) -> Alert:
        return Alert(
            name, expr, severity, f"PSI of {{{{ $labels.feature }}}} is {_VALUE} ({key} level {level!r}, task {task})",
            f"params/policies/drift.yaml psi.{key}", task=task, cases=[
                AlertCase(f"PSI at the {key} level", psi(level), True, alert_labels={"feature": "lactate"},
                          value=level),
                AlertCase(f"PSI just below the {key} level", psi(level - margin), False), *extra])

    alerts.append(psi_level("ClinopsFeatureDrift", f"clinops_drift_psi{sel} >= {t.psi_alert!r}", "warning",
                            t.psi_alert, "alert"))
    alerts.append(psi_level("ClinopsFeatureDriftWatch", f"clinops_drift_psi{sel} >= {t.psi_watch!r} < {t.psi_alert!r}",
                            "info", t.psi_watch, "watch",
                            AlertCase("PSI at the alert level (the drift alert, not the watch)", psi(t.psi_alert),
                                      False)))
    reference = 0.85
    auroc = lambda drop: [("clinops_reference_auroc", {}, _steady(reference)),  # noqa: E731
                          ("clinops_live_auroc", {}, _steady(reference * (1 - drop)))]
    alerts.append(Alert(
        "ClinopsAurocDegradation", f"clinops:live_auroc:relative_drop{sel} >= {t.degradation_trigger!r}", "critical",
        f"Live AUROC is {_VALUE} (relative) below the reference (trigger {t.degradation_trigger!r}, task {task}): "
        f"the model is suspended pending review",
        "params/policies/governance.yaml degradation_trigger", task=task, cases=[
            AlertCase("drop above the trigger", auroc(1.2 * t.degradation_trigger), True,
                      value=1.2 * t.degradation_trigger),
            AlertCase("drop below the trigger", auroc(0.8 * t.degradation_trigger), False)]))
    decisions = lambda rate, n: [("clinops_override_rate", {}, _steady(rate)),  # noqa: E731
                                 ("clinops_override_decisions", {}, _steady(n))]
    n_min, high = t.override_min_decisions, t.override_rate_high
    alerts.append(Alert(
        "ClinopsOverrideRateHigh",
        f"clinops_override_rate{sel} >= {high!r} and clinops_override_decisions{sel} >= {n_min}", "warning",
        f"Clinicians override {_VALUE} of predictions (review at {high!r}, task {task}): calibration drift?",
        "params/policies/governance.yaml override_review.rate_high", task=task, for_=OVERRIDE_FOR, cases=[
            AlertCase("rate at the limit with enough decisions", decisions(high, n_min), True, value=high),
            AlertCase("rate below the limit", decisions(0.8 * high, n_min), False),
            AlertCase("too few decisions to judge", decisions(high, n_min - 1), False),
            AlertCase("not for long enough", decisions(high, n_min), False, eval_time="10m")]))
    if t.override_flag_zero:
        alerts.append(Alert(
            "ClinopsOverrideRateZero",
            f"clinops_override_rate{sel} == 0 and clinops_override_decisions{sel} >= {n_min}", "warning",
            f"No clinician has overridden any of at least {n_min} predictions (task {task}): automation bias?",
            "params/policies/governance.yaml override_review.flag_zero", task=task, for_=OVERRIDE_FOR, cases=[
                AlertCase("zero overrides with enough decisions", decisions(0.0, n_min), True),
                AlertCase("too few decisions to judge", decisions(0.0, n_min - 1), False),
                AlertCase("some overrides", decisions(0.5 / n_min, n_min), False)]))
    return alerts


def _serving_alerts() -> list[Alert]:
    suspended = ModelState.SUSPENDED.value
    state = lambda s: [("clinops_model_state", {"state": ModelState.ACTIVE.value}, _steady(1 - s)),  # noqa: E731
                       ("clinops_model_state", {"state": suspended}, _steady(s))]
    first_start = 1_000_000.0
    starts = lambda latest: [("clinops_first_worker_start_time_seconds", {}, _steady(first_start)),  # noqa: E731
                             ("clinops_worker_start_time_seconds", {}, latest)]
    late = first_start + 10 * WORKER_RESTART_GRACE_SECONDS
    together = first_start + WORKER_RESTART_GRACE_SECONDS / 4
    return [
        Alert("ClinopsModelSuspended", f'clinops_model_state{{state="{suspended}"}} == 1', "critical",
              "The model is SUSPENDED-PENDING-REVIEW: every prediction goes to human review",
              "params/policies/governance.yaml (suspension)", cases=[
                  AlertCase("suspended", state(1.0), True, alert_labels={"state": suspended}, value=1.0),
                  AlertCase("active", state(0.0), False)]),
        Alert("ClinopsAuditWriteFailures", "increase(clinops_audit_write_failures_total[10m]) > 0", "critical",
              f"{_VALUE} audit writes failed in 10 minutes: those requests were refused",
              "serving: no prediction without its audit record", cases=[
                  AlertCase("a failed audit write", [("clinops_audit_write_failures_total", {}, "0x15 1x15")],
                            True, eval_time="18m", value=1.0),
                  AlertCase("no failure", [("clinops_audit_write_failures_total", {}, "0x30")], False)]),
        Alert("ClinopsWorkerRestarted",
              f"changes(clinops_worker_start_time_seconds[15m]) > 0 and (clinops_worker_start_time_seconds "
              f"- clinops_first_worker_start_time_seconds) > {WORKER_RESTART_GRACE_SECONDS}", "warning",
              "A serving worker (re)started after the server had been running: check the server log",
              "serving: python -m serving --workers N", cases=[
                  AlertCase("a worker started long after the first", starts(f"{first_start!r}x10 {late!r}x20"), True,
                            value=1.0),
                  AlertCase("the workers of one start", starts(f"{first_start!r}x2 {together!r}x28"), False),
                  AlertCase("no start at all", starts(_steady(first_start)), False)]),
        Alert("ClinopsServingDown", f'up{{job="{SERVING_JOB}"}} == 0', "critical",
              "Prometheus cannot scrape the serving demo (down, or its metrics token is refused)",
              "serving/ops/prometheus/prometheus.yml", for_=SERVING_DOWN_FOR, cases=[
                  AlertCase("down", [("up", {}, "0x30")], True, value=0.0),
                  AlertCase("up", [("up", {}, "1x30")], False)]),
    ]


def alerts(thresholds: list[TaskThresholds]) -> list[Alert]:
    """Every alerting rule: the per-task rules of each task, then the serving rules."""
    return [a for t in thresholds for a in _task_alerts(t)] + _serving_alerts()


def alerting_rules(alert_list: list[Alert]) -> dict[str, Any]:
    """The rule file of ``alert_list`` (one group)."""
    return {"groups": [{"name": "clinops-alerts", "rules": [a.rule() for a in alert_list]}]}


def _series_name(metric: str, labels: dict[str, str]) -> str:
    return metric + "{" + ", ".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def _annotation(template: str, labels: dict[str, str], value: float) -> str:
    text = template.replace(_VALUE, f"{value:.3f}")
    for key, val in labels.items():
        text = text.replace(f"{{{{ $labels.{key} }}}}", val)
    return text


def alert_tests(alert_list: list[Alert], rule_files: list[str]) -> dict[str, Any]:
    """promtool unit tests (``promtool test rules``) of every case of every alert."""
    tests = []
    for alert in alert_list:
        target = {**_TEST_TARGET, **({"task": alert.task} if alert.task else {})}
        for case in alert.cases:
            labels = {**target, **case.alert_labels}
            expected = [] if not case.fires else [{
                "exp_labels": {"severity": alert.severity, **labels},
                "exp_annotations": {"summary": _annotation(alert.summary, labels, case.value),
                                    "policy": alert.policy}}]
            tests.append({
                "name": f"{alert.name}{f' [{alert.task}]' if alert.task else ''}: {case.name}: "
                        f"{'fires' if case.fires else 'silent'}",
                "interval": "1m",
                "input_series": [{"series": _series_name(metric, {**target, **extra}), "values": values}
                                 for metric, extra, values in case.series],
                "alert_rule_test": [{"eval_time": case.eval_time, "alertname": alert.name, "exp_alerts": expected}],
            })
    return {"rule_files": rule_files, "evaluation_interval": "1m", "tests": tests}


# ------------------------------------------------------------------------------ configuration


def scrape_config(*, target: str, task: str, credentials_file: str, rule_files: list[str],
                  scrape_interval: str = "15s", evaluation_interval: str = "15s", scheme: str = "http",
                  ca_file: str | None = None) -> dict[str, Any]:
    """A Prometheus configuration scraping one serving demo (all of its workers).

    Parameters
    ----------
    target : ``host:port`` of ``python -m serving``
    task : the served model's task: the ``task`` label the per-task rules select
    credentials_file : file holding a bearer token of a role that may read ``/metrics``
        (system, reviewer or auditor)
    rule_files : rule files, relative to the configuration file or absolute
    scheme : ``https`` for a server started with TLS; ``ca_file`` then verifies its certificate
    """
    job: dict[str, Any] = {"job_name": SERVING_JOB, "scheme": scheme, "metrics_path": "/metrics",
                           "authorization": {"type": "Bearer", "credentials_file": credentials_file}}
    if ca_file is not None:
        job["tls_config"] = {"ca_file": ca_file}
    job["static_configs"] = [{"targets": [target], "labels": {"task": task}}]
    return {"global": {"scrape_interval": scrape_interval, "evaluation_interval": evaluation_interval},
            "rule_files": rule_files, "scrape_configs": [job]}
