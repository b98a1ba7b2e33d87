"""Layer 2 fairness: disaggregated performance, fairness gaps with bootstrap CIs, alert rules.

What this package gives (paper, "Fairness evaluation", Table 2):

- :mod:`~clinops.fairness.groups`: :func:`age_groups` (the paper's ``18-44, 45-64, 65-79, 80+``)
  and the group order.
- :mod:`~clinops.fairness.metrics`: the metric registry -- :data:`SUBGROUP_METRICS` (AUROC,
  sensitivity, specificity, PPV) and :data:`GAP_DEFINITIONS` (equalized-odds,
  demographic-parity and predictive-parity differences). Everything below reads it.
- :mod:`~clinops.fairness.table`: :func:`subgroup_table`, overall and per group, each metric
  with a percentile bootstrap CI (:mod:`clinops.bootstrap`, the same resamples as fairlearn's
  ``MetricFrame`` and as the test-set AUROC interval); small or one-class groups are NOT
  ESTIMABLE, never a noisy number.
- :mod:`~clinops.fairness.gaps`: :func:`fairness_gaps` for one attribute, each with a CI and the
  groups that define it.
- :mod:`~clinops.fairness.policy` / :mod:`~clinops.fairness.alerts`: :class:`FairnessPolicy`
  (``params/policies/fairness.yaml``) and :func:`fairness_alerts`. An alert always means *human
  review*; the policy refuses any other action, so no fairness result can start retraining.
- :mod:`~clinops.fairness.alert_rules`: the ``point`` and ``ci_excludes`` rules side by side
  (:func:`pairwise_gap_intervals`, :func:`alerts_by_rule`, :func:`rule_fires`).
- :mod:`~clinops.fairness.plots`: :func:`plot_subgroups`, the forest plot.
"""
from clinops.fairness.alert_rules import alerts_by_rule, pairwise_gap_intervals, rule_fires
from clinops.fairness.alerts import FairnessAlert, fairness_alerts
from clinops.fairness.gaps import fairness_gaps
from clinops.fairness.groups import OVERALL, SEX_OUTSIDE_GAPS, age_groups, sex_groups
from clinops.fairness.metrics import GAP_DEFINITIONS, GAP_METRICS, SUBGROUP_METRICS, TABLE_METRICS
from clinops.fairness.plots import plot_subgroups
from clinops.fairness.policy import ALERT_ACTION, ALERT_RULES, FairnessPolicy
from clinops.fairness.table import subgroup_table
from clinops.policy import PolicyError

__all__ = [
    "TABLE_METRICS", "GAP_METRICS", "SUBGROUP_METRICS", "GAP_DEFINITIONS", "OVERALL", "ALERT_ACTION",
    "FairnessPolicy", "PolicyError", "FairnessAlert", "age_groups", "subgroup_table", "fairness_gaps",
    "fairness_alerts", "plot_subgroups", "ALERT_RULES", "alerts_by_rule", "SEX_OUTSIDE_GAPS", "sex_groups", "pairwise_gap_intervals", "rule_fires",
]
