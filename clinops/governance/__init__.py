"""Layer 4 governance: the model's state, escalation, the review queue and the override log.

The rules are :class:`GovernancePolicy` (``params/policies/governance.yaml``). One module per idea:

- :mod:`~clinops.governance.policy` -- :class:`GovernancePolicy`, the rules as a typed policy.
- :mod:`~clinops.governance.events` -- :class:`GovernanceEvent`, :class:`EventKind`,
  :class:`GovernanceError`: what every state change or record is, and its JSON form.
- :mod:`~clinops.governance.state` -- :class:`GovernanceStateMachine`: ACTIVE or
  SUSPENDED-PENDING-REVIEW (:class:`ModelState`, :data:`TRANSITIONS`) and the signals that move
  it (degradation, drift, fairness, a person). Nothing here retrains, re-fits or replaces a model.
- :mod:`~clinops.governance.state_file` -- the JSON state file that several processes share.
- :mod:`~clinops.governance.escalation` -- :func:`escalation_reasons`: why one prediction goes
  to a person.
- :mod:`~clinops.governance.review_queue` -- :class:`ReviewQueue`: items for human review (SQLite).
- :mod:`~clinops.governance.overrides` -- :class:`OverrideLog`: clinician decisions and the
  override rate, :func:`override_rate_flags` at both extremes.
- :mod:`~clinops.governance.store` -- the SQLite store under the queue and the log.

Every state change or record is a :class:`GovernanceEvent` passed to an optional ``sink``
callable, so the server can write it to its audit log; this package does not know about the
audit log.

Wiring the drift monitor to governance (the Layer 4 hook)::

    machine = GovernanceStateMachine(GovernancePolicy.load("params/policies/governance.yaml"),
                                     path="state/governance.json", sink=audit_write,
                                     review_queue=ReviewQueue("state/review.sqlite"))
    monitor = StreamMonitor.from_policy(drift_policy, psi_reference, reference_scores=s_train,
                                        on_event=lambda ev: ev.kind == "drift" and machine.on_drift(
                                            detector=f"{ev.detector}:{ev.feature or 'score'}",
                                            details=ev.to_dict()))
    # later, once outcomes are known for the period:
    machine.on_degradation(reference_auroc=0.847, current_auroc=0.793)   # -> SUSPENDED

Examples
--------
>>> policy = GovernancePolicy(degradation_trigger=0.05)
>>> machine = GovernanceStateMachine(policy)
>>> [e.kind for e in machine.on_degradation(reference_auroc=0.80, current_auroc=0.77)]   # 3.75 %
['performance_check']
>>> escalation_reasons(state=machine.state, conformal_set={0, 1}, policy=policy)
['ambiguous_conformal_set']
"""
from clinops.governance.escalation import ESCALATION_REASONS, escalation_reasons
from clinops.governance.events import EventKind, GovernanceError, GovernanceEvent, Sink
from clinops.governance.overrides import DECISION_ACTIONS, OverrideLog, OverrideRate, OverrideRecord, override_rate_flags
from clinops.governance.policy import GovernancePolicy
from clinops.governance.review_queue import ReviewItem, ReviewQueue
from clinops.governance.state import TRANSITIONS, GovernanceStateMachine, ModelState, relative_degradation
from clinops.policy import PolicyError

__all__ = [
    "ModelState",
    "EventKind",
    "TRANSITIONS",
    "ESCALATION_REASONS",
    "GovernanceError",
    "PolicyError",
    "GovernancePolicy",
    "GovernanceEvent",
    "GovernanceStateMachine",
    "relative_degradation",
    "escalation_reasons",
    "ReviewItem",
    "ReviewQueue",
    "OverrideRecord",
    "OverrideRate",
    "OverrideLog",
    "override_rate_flags",
    "DECISION_ACTIONS",
]
