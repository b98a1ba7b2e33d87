"""Escalation of one prediction to human review, and why.

A suspended model, an empty or ambiguous conformal set, an out-of-distribution input or a
record mostly made of imputed values routes the case to a person; the policy
(:class:`~clinops.governance.policy.GovernancePolicy`, ``escalate_*``) switches each rule.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from clinops.governance.policy import GovernancePolicy
from clinops.governance.state import ModelState

__all__ = ["ESCALATION_REASONS", "escalation_reasons"]

#: Reason codes of :func:`escalation_reasons`, in the order they are reported.
ESCALATION_REASONS: tuple[str, ...] = (
    "model_suspended", "empty_conformal_set", "ambiguous_conformal_set", "out_of_distribution",
    "mostly_imputed", "contradicting_singleton",
)

_ALL_RULES = GovernancePolicy()  # built once: this runs for every prediction


def escalation_reasons(*, state: ModelState | str, conformal_set: Any = None,
                       out_of_distribution: bool = False, imputed_share: float | None = None,
                       contradicting_singleton: bool = False, policy: GovernancePolicy | None = None) -> list[str]:
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
    contradicting_singleton : the set is the singleton {survives} beside a high calibrated
        probability (:attr:`clinops.uncertainty.RiskResult.contradicting_singleton`): a confident
        set that the model's own probability contradicts
    policy : which rules apply (default: all of them)

    Returns
    -------
    list of reason codes from :data:`ESCALATION_REASONS`, in that order.

    Examples
    --------
    >>> escalation_reasons(state="ACTIVE", conformal_set={1})
    []
    >>> escalation_reasons(state="SUSPENDED-PENDING-REVIEW", conformal_set={0, 1}, imputed_share=0.6)
    ['model_suspended', 'ambiguous_conformal_set', 'mostly_imputed']
    >>> escalation_reasons(state="ACTIVE", conformal_set={0, 1},
    ...                    policy=GovernancePolicy(escalate_ambiguous_set=False))
    []
    >>> escalation_reasons(state="ACTIVE", conformal_set={0}, contradicting_singleton=True)
    ['contradicting_singleton']
    """
    policy = policy or _ALL_RULES
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
    if bool(contradicting_singleton) and policy.escalate_contradicting_singleton:
        reasons.append("contradicting_singleton")
    return reasons
