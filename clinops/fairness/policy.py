"""The fairness alert rules as a typed policy (``params/policies/fairness.yaml``).

An alert always means *human review*: the policy refuses any other ``action``, so no fairness
result can ever start retraining. The field defaults below are the one statement of each rule's
default; the allowed metric names are those of the metric registry
(:mod:`clinops.fairness.metrics`).

Examples
--------
>>> FairnessPolicy().to_dict()
{'pairwise_gap_limits': {'auroc': 0.03}, 'disparity_limits': {}, 'min_group_size': 30, 'action': 'human_review', 'alert_rule': 'point'}
>>> FairnessPolicy(pairwise_gap_limits={"auroc": 0.05}, min_group_size=50).min_group_size
50
>>> FairnessPolicy.from_mapping({"action": "retrain"}, where="fairness.yaml")
Traceback (most recent call last):
...
clinops.policy.PolicyError: fairness.yaml: action: Value error, must be 'human_review' (a fairness alert means human review, never retraining), got 'retrain'
>>> FairnessPolicy.from_mapping({"disparity_limits": {"odds": 0.1}}, where="fairness.yaml")
Traceback (most recent call last):
...
clinops.policy.PolicyError: fairness.yaml: disparity_limits: Value error, unknown metric 'odds'; allowed: ['equalized_odds_difference', 'demographic_parity_difference', 'predictive_parity_difference'], got {'odds': 0.1}
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from clinops.fairness.metrics import GAP_DEFINITIONS, SUBGROUP_METRICS
from clinops.policy import PolicyModel

__all__ = ["FairnessPolicy", "ALERT_ACTION", "ALERT_RULES"]

#: The only action a fairness alert may lead to (paper, Layer 2: alerts prompt structured review).
ALERT_ACTION = "human_review"

#: How a gap is compared with its limit: ``point`` (the paper's: the point estimate strictly above
#: the limit) or ``ci_excludes`` (the whole bootstrap CI of the gap strictly above the limit, so a
#: gap that may be within the limit does not alert).
ALERT_RULES: tuple[str, ...] = ("point", "ci_excludes")

#: A limit on a metric difference, in the metric's own units.
Limit = Annotated[float, Field(strict=True, gt=0, le=1)]


def _known(limits: dict[str, float], allowed: tuple[str, ...]) -> dict[str, float]:
    unknown = [m for m in limits if m not in allowed]
    if unknown:
        raise ValueError(f"unknown metric {unknown[0]!r}; allowed: {list(allowed)}")
    return limits


class FairnessPolicy(PolicyModel):
    """Fairness alert rules.

    Attributes
    ----------
    pairwise_gap_limits : metric -> largest tolerated difference (absolute units of the metric)
        between any two estimable groups of one attribute in
        :func:`clinops.fairness.subgroup_table`, e.g. ``{"auroc": 0.03}``. A larger gap raises
        one alert per offending pair. Metrics: those of :data:`~clinops.fairness.metrics.SUBGROUP_METRICS`.
    disparity_limits : metric -> largest tolerated value from
        :func:`clinops.fairness.fairness_gaps`. Metrics:
        those of :data:`~clinops.fairness.metrics.GAP_DEFINITIONS`.
    min_group_size : rows below which a group is not estimable (and never alerts).
    action : always ``"human_review"``.
    alert_rule : ``"point"`` (default, the paper's) or ``"ci_excludes"``, see :data:`ALERT_RULES`.
    """

    pairwise_gap_limits: dict[str, Limit] = Field(default_factory=lambda: {"auroc": 0.03})
    disparity_limits: dict[str, Limit] = Field(default_factory=dict)
    min_group_size: int = Field(30, strict=True, ge=1)
    action: str = ALERT_ACTION
    alert_rule: Literal["point", "ci_excludes"] = "point"

    @field_validator("pairwise_gap_limits")
    @classmethod
    def _table_metrics(cls, v: dict[str, float]) -> dict[str, float]:
        return _known(v, tuple(SUBGROUP_METRICS))

    @field_validator("disparity_limits")
    @classmethod
    def _gap_metrics(cls, v: dict[str, float]) -> dict[str, float]:
        return _known(v, tuple(GAP_DEFINITIONS))

    @field_validator("action")
    @classmethod
    def _human_review(cls, v: str) -> str:
        if v != ALERT_ACTION:
            raise ValueError(f"must be {ALERT_ACTION!r} (a fairness alert means human review, "
                             "never retraining)")
        return v

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the rules (what the model bundle stores)."""
        return {"pairwise_gap_limits": dict(self.pairwise_gap_limits),
                "disparity_limits": dict(self.disparity_limits),
                "min_group_size": int(self.min_group_size), "action": self.action,
                "alert_rule": self.alert_rule}
