"""Unit tests for clinops.governance: the state machine's transitions, no retraining, roles,
persistence, escalation of single predictions, the SQLite review queue and override log."""
from __future__ import annotations

import inspect
import json
import threading
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

import clinops.governance as gov
from clinops.fairness import FairnessAlert
from clinops.governance import (
    TRANSITIONS,
    EventKind,
    GovernanceError,
    GovernancePolicy,
    GovernanceStateMachine,
    ModelState,
    OverrideLog,
    OverrideRate,
    ReviewQueue,
    escalation_reasons,
    override_rate_flags,
    relative_degradation,
)

POLICY_PATH = "params/policies/governance.yaml"
T0 = datetime(2026, 3, 18, 12, 0, tzinfo=timezone.utc)


class FakeClock:
    """A clock that advances one minute per reading (deterministic event times)."""

    def __init__(self, start: datetime = T0):
        self.t = start

    def __call__(self) -> datetime:
        self.t += timedelta(minutes=1)
        return self.t


@pytest.fixture
def policy() -> GovernancePolicy:
    return GovernancePolicy.load(POLICY_PATH)


def test_policy_file_values(policy):
    assert policy.degradation_trigger == 0.05
    assert policy.fairness_alert_action == "review"
    assert policy.resume_roles == ("reviewer",)
    assert policy.fairness().pairwise_gap_limits == {"auroc": 0.03}
    assert policy.fairness(task="readmission").pairwise_gap_limits == {"auroc": 0.05}


@pytest.mark.parametrize("text, match", [
    ("degradation_trigger: 1.5\n", "degradation_trigger: must be in \\(0, 1\\)"),
    ("fairness_alert_action: retrain\n", "fairness_alert_action: must be 'review' or 'suspend'"),
    ("resume_roles: []\n", "resume_roles: must be a non-empty list"),
    ("auto_retrain: true\n", "unknown key"),
    ("escalation: {ambiguous_set: maybe}\n", "escalate_ambiguous_set: must be true or false"),
])
def test_policy_refuses_bad_files(tmp_path, text, match):
    p = tmp_path / "g.yaml"
    p.write_text(text)
    with pytest.raises(ValueError, match=match):
        GovernancePolicy.load(p)


def test_relative_degradation_paper_numbers():
    assert relative_degradation(0.847, 0.793) == pytest.approx((0.847 - 0.793) / 0.847, abs=1e-15)  # 6.4 %
    assert relative_degradation(0.8, 0.84) < 0
    with pytest.raises(ValueError, match="current_auroc"):
        relative_degradation(0.8, 1.2)


def test_drift_alone_never_suspends(policy):
    m = GovernanceStateMachine(policy, clock=FakeClock())
    for i in range(50):                                     # an alarm storm
        events = m.on_drift(detector=f"psi:feature{i % 3}", details={"psi": 0.4})
        assert [e.kind for e in events] == ["drift_watch"]
        assert "human review recommended" in events[0].reason
    assert m.state is ModelState.ACTIVE
    ev = m.on_drift(detector="adwin", degradation=0.049)   # measured, but below the 5 % trigger
    assert [e.kind for e in ev] == ["drift_watch"] and m.state is ModelState.ACTIVE
    assert all(e.state_before == e.state_after == "ACTIVE" for e in m.history)


def test_drift_with_degradation_at_trigger_suspends(policy):
    m = GovernanceStateMachine(policy, clock=FakeClock())
    drop = relative_degradation(0.847, 0.793)
    events = m.on_drift(detector="psi:mech_vent", degradation=drop)
    assert [e.kind for e in events] == ["drift_watch", "suspended"]
    assert m.state is ModelState.SUSPENDED
    s = events[1]
    assert (s.state_before, s.state_after) == ("ACTIVE", "SUSPENDED-PENDING-REVIEW")
    assert s.details["trigger"] == "degradation"
    assert s.details["relative_degradation"] == pytest.approx(0.06375, abs=1e-5)
    # further drift while suspended: recorded, no second suspension
    assert [e.kind for e in m.on_drift(detector="adwin", degradation=0.1)] == ["drift_watch"]


def test_degradation_trigger_is_inclusive_and_below_is_a_check(policy):
    m = GovernanceStateMachine(replace(policy, degradation_trigger=0.25), clock=FakeClock())
    assert [e.kind for e in m.on_degradation(reference_auroc=1.0, current_auroc=0.76)] == ["performance_check"]
    assert m.state is ModelState.ACTIVE
    assert [e.kind for e in m.on_degradation(reference_auroc=1.0, current_auroc=0.75)] == ["suspended"]  # exactly 25 %
    assert m.state is ModelState.SUSPENDED


def test_resume_needs_an_allowed_role_and_a_note(policy):
    m = GovernanceStateMachine(policy, clock=FakeClock())
    with pytest.raises(GovernanceError, match="only a suspended model can be resumed"):
        m.resume("dr.a", "reviewer", "nothing to do")
    m.on_degradation(reference_auroc=0.847, current_auroc=0.793)
    with pytest.raises(GovernanceError, match="role 'clinician' may not resume; allowed roles: \\['reviewer'\\]"):
        m.resume("dr.b", "clinician", "looks fine")
    with pytest.raises(GovernanceError, match="note: required"):
        m.resume("dr.a", "reviewer", "  ")
    with pytest.raises(GovernanceError, match="must be named"):
        m.resume("", "reviewer", "ok")
    assert m.state is ModelState.SUSPENDED
    ev = m.resume("dr.a", "reviewer", "ventilation protocol change confirmed; recalibration planned by humans")
    assert m.state is ModelState.ACTIVE
    assert (ev.kind, ev.actor, ev.role, ev.state_after) == ("resumed", "dr.a", "reviewer", "ACTIVE")


def test_no_transition_into_anything_like_retraining(policy):
    forbidden = ("retrain", "refit", "train", "update_model", "replace")
    assert {s.value for s in ModelState} == {"ACTIVE", "SUSPENDED-PENDING-REVIEW"}
    for (src, dst), triggers in TRANSITIONS.items():
        assert src in ModelState and dst in ModelState
        assert not any(f in t for t in triggers for f in forbidden)
    assert not any(f in k.value for k in EventKind for f in forbidden)
    public = [n for n, _ in inspect.getmembers(GovernanceStateMachine) if not n.startswith("_")]
    assert not any(f in n.lower() for n in public for f in forbidden), public
    # every recorded transition in a busy history is one of TRANSITIONS
    m = GovernanceStateMachine(policy, clock=FakeClock())
    m.on_drift(detector="adwin")
    m.on_drift(detector="psi:mech_vent", degradation=0.064)
    m.resume("dr.a", "reviewer", "reviewed")
    m.suspend("nurse.c", "clinician", "odd scores on ward 3")
    for e in m.history:
        if e.state_before != e.state_after:
            assert (ModelState(e.state_before), ModelState(e.state_after)) in TRANSITIONS


def test_fairness_alerts_open_review_and_suspend_only_by_policy(policy, tmp_path):
    alert = FairnessAlert("age_group", "65-79", "18-44", "auroc", 0.032, 0.03, 0.853, 0.821)
    q = ReviewQueue(tmp_path / "q.sqlite")
    m = GovernanceStateMachine(policy, review_queue=q, clock=FakeClock())
    assert m.on_fairness_alert([]) == []
    ev = m.on_fairness_alert([alert])
    assert [e.kind for e in ev] == ["fairness_alert"] and m.state is ModelState.ACTIVE
    assert ev[0].details["alerts"][0]["group_a"] == "65-79"
    items = q.list()
    assert [i.kind for i in items] == ["fairness_alert"] and ev[0].details["review_item"] == items[0].item_id
    strict = GovernanceStateMachine(replace(policy, fairness_alert_action="suspend"), clock=FakeClock())
    assert [e.kind for e in strict.on_fairness_alert([alert])] == ["fairness_alert", "suspended"]
    assert strict.state is ModelState.SUSPENDED


def test_events_reach_the_sink_in_order_and_carry_utc_times(policy):
    seen = []
    m = GovernanceStateMachine(policy, sink=seen.append, clock=FakeClock())
    m.on_drift(detector="adwin")
    m.on_degradation(reference_auroc=0.847, current_auroc=0.793)
    m.resume("dr.a", "reviewer", "ok after review")
    assert [e.kind for e in seen] == ["drift_watch", "suspended", "resumed"]
    assert seen == m.history
    assert all(e.time_utc.tzinfo is not None and e.time_utc.utcoffset() == timedelta(0) for e in seen)
    assert [e.time_utc for e in seen] == sorted(e.time_utc for e in seen)

    def broken(_):
        raise OSError("audit log unavailable")

    m2 = GovernanceStateMachine(policy, sink=broken, clock=FakeClock())
    with pytest.raises(OSError):
        m2.on_degradation(reference_auroc=0.847, current_auroc=0.793)
    assert m2.state is ModelState.SUSPENDED          # the suspension stands


def test_state_file_round_trip_and_autosave(policy, tmp_path):
    path = tmp_path / "state" / "governance.json"
    m = GovernanceStateMachine(policy, path=path, model_id="clinops-mortality@3", clock=FakeClock())
    assert json.loads(path.read_text())["state"] == "ACTIVE"
    m.on_drift(detector="psi:mech_vent", details={"psi": np.float64(0.41)}, degradation=np.float64(0.064))
    on_disk = json.loads(path.read_text())
    assert on_disk["state"] == "SUSPENDED-PENDING-REVIEW" and len(on_disk["history"]) == 2
    assert on_disk["history"][0]["time_utc"].endswith("Z")
    back = GovernanceStateMachine.load(path, policy, clock=FakeClock(T0 + timedelta(hours=1)))
    assert back.state is ModelState.SUSPENDED and back.model_id == "clinops-mortality@3"
    assert [e.to_dict() for e in back.history] == [e.to_dict() for e in m.history]
    back.resume("dr.a", "reviewer", "reviewed")
    assert json.loads(path.read_text())["state"] == "ACTIVE"    # autosaved by the loaded machine
    with pytest.raises(GovernanceError, match="already holds a governance state"):
        GovernanceStateMachine(policy, path=path)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**on_disk, "state": "RETRAINING"}))
    with pytest.raises(GovernanceError, match="state: must be one of"):
        GovernanceStateMachine.load(bad, policy)


def test_periodic_review_due(policy):
    clock = FakeClock()
    m = GovernanceStateMachine(policy, clock=clock)
    assert not m.periodic_review_due(T0 + timedelta(days=89))
    assert m.periodic_review_due(T0 + timedelta(days=91))
    clock.t = T0 + timedelta(days=91)
    with pytest.raises(GovernanceError, match="may not record a periodic review"):
        m.record_periodic_review("nurse.c", "clinician", "q1")
    m.record_periodic_review("dr.a", "reviewer", "Q1: calibration, fairness, incidents, documentation")
    assert not m.periodic_review_due(T0 + timedelta(days=100))


@pytest.mark.parametrize("state, cset, ood, expected", [
    (ModelState.ACTIVE, {1}, False, []),
    (ModelState.ACTIVE, {0, 1}, False, ["ambiguous_conformal_set"]),
    (ModelState.ACTIVE, [], False, ["empty_conformal_set"]),
    (ModelState.ACTIVE, np.array([True, True]), False, ["ambiguous_conformal_set"]),
    (ModelState.ACTIVE, np.array([[False], [True]]), False, []),          # MAPIE row (n_classes, 1)
    (ModelState.ACTIVE, None, True, ["out_of_distribution"]),
    ("SUSPENDED-PENDING-REVIEW", {0}, False, ["model_suspended"]),
    (ModelState.SUSPENDED, np.array([False, False]), True,
     ["model_suspended", "empty_conformal_set", "out_of_distribution"]),
])
def test_escalation_reasons(state, cset, ood, expected):
    assert escalation_reasons(state=state, conformal_set=cset, out_of_distribution=ood) == expected


def test_escalation_follows_the_policy(policy):
    relaxed = replace(policy, escalate_ambiguous_set=False, escalate_out_of_distribution=False)
    assert escalation_reasons(state="ACTIVE", conformal_set={0, 1}, out_of_distribution=True, policy=relaxed) == []
    with pytest.raises(ValueError, match="state: must be one of"):
        escalation_reasons(state="RETRAINING")


def test_review_queue_persists_and_guards_resolution(tmp_path):
    path = tmp_path / "review.sqlite"
    seen = []
    q = ReviewQueue(path, resolve_roles=["reviewer"], sink=seen.append, clock=FakeClock())
    a = q.add("escalation", "ambiguous conformal set", details={"p": np.float64(0.41)}, subject="pred-1")
    b = q.add("drift_watch", "ADWIN alarm")
    assert [i.item_id for i in q.list()] == [a.item_id, b.item_id] and a.details == {"p": 0.41}
    with pytest.raises(GovernanceError, match="role 'clinician' may not resolve"):
        q.resolve(a.item_id, reviewer="nurse.c", role="clinician", resolution="seen")
    done = q.resolve(a.item_id, reviewer="dr.a", role="reviewer", resolution="clinician decided", note="n")
    assert done.status == "resolved" and done.reviewer == "dr.a"
    with pytest.raises(GovernanceError, match="already resolved"):
        q.resolve(a.item_id, reviewer="dr.a", role="reviewer", resolution="again")
    with pytest.raises(GovernanceError, match="no review item 999"):
        q.resolve(999, reviewer="dr.a", role="reviewer", resolution="x")
    # a restart (new object on the same file) keeps everything
    q2 = ReviewQueue(path)
    assert [i.item_id for i in q2.list("open")] == [b.item_id]
    assert [i.item_id for i in q2.list("resolved")] == [a.item_id]
    assert [e.kind for e in seen] == ["review_item_added", "review_item_added", "review_item_resolved"]


def test_review_queue_is_thread_safe(tmp_path):
    q = ReviewQueue(tmp_path / "q.sqlite")
    errors = []

    def work(k):
        try:
            for i in range(15):
                q.add("escalation", f"case {k}-{i}")
        except Exception as e:   # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    ids = [i.item_id for i in q.list()]
    assert len(ids) == 90 and len(set(ids)) == 90


def test_override_log_rate_and_flags(tmp_path, policy):
    log = OverrideLog(tmp_path / "overrides.sqlite", clock=FakeClock())
    for i in range(60):
        log.record(f"pred-{i}", clinician="dr.a", role="clinician",
                   action="overridden" if i % 4 == 0 else "accepted",
                   model_output={"p": 0.42, "set": [0, 1]}, clinician_decision="treat")
    r = log.rate()
    assert (r.n_decisions, r.n_overrides, r.rate) == (60, 15, 0.25)
    assert override_rate_flags(r, policy) == ["override_rate_high"]          # >= 25 %
    assert override_rate_flags(OverrideRate(60, 0), policy) == ["override_rate_zero"]
    assert override_rate_flags(OverrideRate(49, 0), policy) == []           # too few decisions to judge
    assert override_rate_flags(OverrideRate(60, 6), policy) == []
    assert np.isnan(OverrideRate(0, 0).rate)
    assert OverrideLog(tmp_path / "overrides.sqlite").rate().n_decisions == 60   # persisted
    first = log.records()[0]
    assert first.model_output == {"p": 0.42, "set": [0, 1]}
    later = log.rate(since=T0 + timedelta(minutes=31))
    assert later.n_decisions == 30
    with pytest.raises(ValueError, match="action: must be one of"):
        log.record("pred-x", clinician="dr.a", role="clinician", action="retrain")


def test_module_has_no_retraining_entry_point():
    names = [n.lower() for n in dir(gov)]
    assert not any("retrain" in n or "refit" in n for n in names)


def test_repeated_drift_alarms_share_one_open_review_item(policy, tmp_path):
    q = ReviewQueue(tmp_path / "q.sqlite")
    m = GovernanceStateMachine(policy, review_queue=q, clock=FakeClock())
    ids = [m.on_drift(detector="psi:mech_vent")[0].details["review_item"] for _ in range(5)]
    other = m.on_drift(detector="adwin")[0].details["review_item"]
    assert len(set(ids)) == 1 and other != ids[0]
    assert [i.details["detector"] for i in q.list()] == ["psi:mech_vent", "adwin"]
    q.resolve(ids[0], reviewer="dr.a", role="reviewer", resolution="known protocol change")
    assert m.on_drift(detector="psi:mech_vent")[0].details["review_item"] not in ids   # new episode, new item
    assert m.state is ModelState.ACTIVE


def test_two_processes_share_one_state_file(policy, tmp_path):
    """Two servers on one state file: a change made by either is seen by the other's next read,
    and each change starts from the file (no lost update)."""
    path = tmp_path / "governance_state.json"
    a = GovernanceStateMachine(policy, path=path)
    b = GovernanceStateMachine.load(path, policy)
    a.suspend("dr.a", "reviewer", "manual stop")
    assert b.state is ModelState.SUSPENDED
    with pytest.raises(GovernanceError, match="already SUSPENDED"):
        b.suspend("dr.b", "reviewer", "again")
    b.resume("dr.b", "reviewer", "checked, back on")
    assert a.state is ModelState.ACTIVE
    a.record_periodic_review("dr.a", "reviewer", "quarterly")
    kinds = [e.kind for e in GovernanceStateMachine.load(path, policy).history]
    assert kinds == ["suspended", "resumed", "periodic_review"]
    assert [e.kind for e in b.history] == kinds
