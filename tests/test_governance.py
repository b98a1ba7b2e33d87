"""Unit tests for clinops.governance: the policy, the state machine's transitions, no retraining,
roles, persistence, escalation of single predictions, the SQLite review queue and override log.

Every policy is built in the test (or written to a temporary file): the live params/ files are
not read here.
"""
from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import threading
import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
import yaml

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
from clinops.policy import PolicyError
from clinops.statefiles import file_lock

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
    """The paper's rules, stated here (not read from params/)."""
    return GovernancePolicy(degradation_trigger=0.05, fairness_alert_action="review",
                            resume_roles=["reviewer"], suspend_roles=["reviewer", "clinician"],
                            review_roles=["reviewer"], periodic_review_days=90,
                            override_min_decisions=50, override_rate_high=0.25, override_flag_zero=True)


def with_(policy: GovernancePolicy, **changes) -> GovernancePolicy:
    """``policy`` with some settings changed (validated again, as a file would be)."""
    return GovernancePolicy(**{**policy.to_dict(), **changes})


# -- the policy ---------------------------------------------------------------------------------


def _write(path, document) -> str:
    path.write_text(yaml.safe_dump(document))
    return path


def test_policy_file_sections_and_task_overrides(tmp_path):
    _write(tmp_path / "fair.yaml", {"pairwise_gap_limits": {"auroc": 0.02},
                                    "tasks": {"a": {}, "b": {"pairwise_gap_limits": {"auroc": 0.09}}}})
    (tmp_path / "sub").mkdir()
    path = _write(tmp_path / "sub" / "gov.yaml", {
        "degradation_trigger": 0.1, "fairness_policy": "../fair.yaml",
        "escalation": {"empty_set": False, "imputed_share": 0.3},
        "override_review": {"min_decisions": 7, "flag_zero": False},
        "tasks": {"a": {}, "b": {"degradation_trigger": 0.2, "escalation": {"imputed_share": 0.4}}}})
    a, b = GovernancePolicy.load(path, task="a"), GovernancePolicy.load(path, task="b")
    # each section's setting lands on its flat field; what the file leaves out keeps the default
    assert (a.escalate_empty_set, a.escalate_imputed_share, a.escalate_ambiguous_set) == (False, 0.3, True)
    assert (a.override_min_decisions, a.override_flag_zero) == (7, False)
    assert a.override_rate_high == GovernancePolicy().override_rate_high
    # a task's overrides replace top-level values and one entry of a section
    assert (a.degradation_trigger, b.degradation_trigger) == (0.1, 0.2)
    assert (b.escalate_imputed_share, b.escalate_empty_set) == (0.4, False)
    # the fairness rules are found relative to the governance file, with the same task
    assert a.fairness_policy == str((tmp_path / "fair.yaml").resolve())
    assert a.fairness(task="a").pairwise_gap_limits == {"auroc": 0.02}
    assert b.fairness(task="b").pairwise_gap_limits == {"auroc": 0.09}
    with pytest.raises(PolicyError, match="fairness_policy: not set"):
        GovernancePolicy().fairness()


def test_policy_flat_form_round_trips(policy):
    """The flat dict is what settings store in a model bundle (JSON: tuples come back as lists)."""
    flat = policy.to_dict()
    assert list(flat) == list(GovernancePolicy.model_fields)
    assert flat["resume_roles"] == ("reviewer",) and isinstance(flat["suspend_roles"], tuple)
    assert GovernancePolicy(**flat) == policy
    assert GovernancePolicy(**json.loads(json.dumps(flat))) == policy
    with pytest.raises(Exception):
        policy.degradation_trigger = 0.5            # frozen: a policy is not changed in place


@pytest.mark.parametrize("text, match", [
    ("degradation_trigger: 1.5\n", r"g\.yaml: degradation_trigger: Input should be less than 1, got 1\.5"),
    ("degradation_trigger: '0.05'\n", r"degradation_trigger: Input should be a valid number"),
    ("fairness_alert_action: retrain\n", r"fairness_alert_action: Input should be 'review' or 'suspend'"),
    ("resume_roles: []\n", r"resume_roles: Tuple should have at least 1 item"),
    ("resume_roles: reviewer\n", r"resume_roles: Input should be a valid tuple"),
    ("suspend_roles: ['']\n", r"suspend_roles\.0: String should have at least 1 character"),
    ("auto_retrain: true\n", r"auto_retrain: unknown setting"),
    ("escalation: {ambiguous_set: maybe}\n", r"escalation\.ambiguous_set: Input should be a valid boolean"),
    ("escalation: {retrain_on_drift: true}\n", r"escalation\.retrain_on_drift: unknown setting"),
    ("escalation: [empty_set]\n", r"escalation: must be a mapping"),
    ("override_review: {min_decisions: 0}\n", r"override_review\.min_decisions: Input should be greater than 0"),
    ("periodic_review_days: 90.5\n", r"periodic_review_days: Input should be a valid integer"),
])
def test_policy_refuses_bad_files(tmp_path, text, match):
    p = tmp_path / "g.yaml"
    p.write_text(text)
    with pytest.raises(PolicyError, match=match):
        GovernancePolicy.load(p)


def test_policy_built_in_code_checks_the_same_rules(policy):
    with pytest.raises(PolicyError, match=r"^GovernancePolicy: escalate_imputed_share: Input should be less than 1"):
        GovernancePolicy(escalate_imputed_share=1.0)
    with pytest.raises(PolicyError, match="override_rate_high: Input should be less than or equal to 1"):
        with_(policy, override_rate_high=1.01)
    assert with_(policy, override_rate_high=1.0).override_rate_high == 1.0     # the bound is inclusive
    assert with_(policy, escalate_imputed_share=0.0).escalate_imputed_share == 0.0


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


def test_degradation_suspends_at_exactly_the_trigger_and_not_just_below(policy):
    strict = with_(policy, degradation_trigger=0.25)
    just_below = float(np.nextafter(0.75, 1.0))        # a drop a hair under 25 %
    m = GovernanceStateMachine(strict, clock=FakeClock())
    assert relative_degradation(1.0, just_below) < 0.25
    assert [e.kind for e in m.on_degradation(reference_auroc=1.0, current_auroc=just_below)] == ["performance_check"]
    assert m.state is ModelState.ACTIVE
    assert [e.kind for e in m.on_degradation(reference_auroc=1.0, current_auroc=0.75)] == ["suspended"]  # exactly 25 %
    assert m.state is ModelState.SUSPENDED
    # the same edge through a drift alarm that carries a measured drop
    d = GovernanceStateMachine(strict, clock=FakeClock())
    assert [e.kind for e in d.on_drift(detector="adwin", degradation=relative_degradation(1.0, just_below))] \
        == ["drift_watch"]
    assert [e.kind for e in d.on_drift(detector="adwin", degradation=0.25)] == ["drift_watch", "suspended"]
    # the trigger is the policy's, not a constant: the 25 % drop does not suspend under 0.3
    lax = GovernanceStateMachine(with_(policy, degradation_trigger=0.3), clock=FakeClock())
    lax.on_degradation(reference_auroc=1.0, current_auroc=0.75)
    assert lax.state is ModelState.ACTIVE


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
    assert set(TRANSITIONS) == {(ModelState.ACTIVE, ModelState.SUSPENDED), (ModelState.SUSPENDED, ModelState.ACTIVE)}
    for triggers in TRANSITIONS.values():
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
    strict = GovernanceStateMachine(with_(policy, fairness_alert_action="suspend"), clock=FakeClock())
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
    relaxed = with_(policy, escalate_ambiguous_set=False, escalate_out_of_distribution=False)
    assert escalation_reasons(state="ACTIVE", conformal_set={0, 1}, out_of_distribution=True, policy=relaxed) == []
    with pytest.raises(ValueError, match="state: must be one of"):
        escalation_reasons(state="RETRAINING")


@pytest.mark.parametrize("rule, case, reason", [
    ("escalate_empty_set", {"conformal_set": []}, "empty_conformal_set"),
    ("escalate_ambiguous_set", {"conformal_set": {0, 1}}, "ambiguous_conformal_set"),
    ("escalate_out_of_distribution", {"out_of_distribution": True}, "out_of_distribution"),
])
def test_each_escalation_reason_appears_exactly_when_its_rule_holds(policy, rule, case, reason):
    everything = dict(conformal_set=[], out_of_distribution=True, imputed_share=0.9)
    on, off = with_(policy, **{rule: True}), with_(policy, **{rule: False})
    assert escalation_reasons(state="ACTIVE", **case, policy=on) == [reason]
    assert escalation_reasons(state="ACTIVE", **case, policy=off) == []
    # switching one rule off removes its reason and no other
    full = escalation_reasons(state="ACTIVE", **{**everything, **case}, policy=on)
    assert reason in full
    assert escalation_reasons(state="ACTIVE", **{**everything, **case}, policy=off) == [r for r in full if r != reason]
    assert escalation_reasons(state="ACTIVE", conformal_set={1}, policy=on) == []      # a clear answer: none


def test_mostly_imputed_escalates_only_above_the_policy_share(policy):
    share = with_(policy, escalate_imputed_share=0.4)
    assert escalation_reasons(state="ACTIVE", imputed_share=0.4, policy=share) == []   # at the share: kept
    assert escalation_reasons(state="ACTIVE", imputed_share=float(np.nextafter(0.4, 1)), policy=share) \
        == ["mostly_imputed"]
    assert escalation_reasons(state="ACTIVE", imputed_share=None, policy=share) == []  # not known: no reason
    # a suspended model escalates every prediction, whatever else holds
    assert escalation_reasons(state=ModelState.SUSPENDED, conformal_set={1}, policy=share) == ["model_suspended"]


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
    log.record("pred-y", clinician="dr.b", role="clinician", action="overridden", note="bed 4, family Quixote")
    assert log.drop_notes() == 1 and log.drop_notes() == 0
    assert b"Quixote" not in b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())


def test_package_has_no_retraining_entry_point():
    modules = [gov] + [importlib.import_module(f"{gov.__name__}.{m.name}") for m in pkgutil.iter_modules(gov.__path__)]
    assert len(modules) > 1
    for module in modules:
        names = [n.lower() for n in dir(module)]
        assert not any("retrain" in n or "refit" in n for n in names), module.__name__


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


def test_a_change_waits_for_the_state_file_lock(policy, tmp_path):
    """Another process holding the state file's lock (here: another descriptor) holds back a
    change until it lets go; the change then starts from the file as that holder left it."""
    path = tmp_path / "governance.json"
    m = GovernanceStateMachine(policy, path=path)
    other = GovernanceStateMachine.load(path, policy)
    done = threading.Event()
    with file_lock(f"{path}.lock"):
        worker = threading.Thread(target=lambda: (m.suspend("nurse.c", "clinician", "odd scores"), done.set()))
        worker.start()
        time.sleep(0.3)
        assert not done.is_set() and other.state is ModelState.ACTIVE
    worker.join(5)
    assert done.is_set() and other.state is ModelState.SUSPENDED


def test_review_queue_redact_keeps_the_oversight_record(tmp_path):
    q = ReviewQueue(tmp_path / "q.sqlite")
    a = q.add("escalation", "ambiguous", details={"subject_key": "k1", "prediction_id": "p1", "age": 83})
    b = q.add("escalation", "ambiguous", details={"subject_key": "k2", "prediction_id": "p2", "age": 41})
    q.resolve(a.item_id, reviewer="dr.a", role="reviewer", resolution="seen", note="daughter Quixote called")
    assert q.redact("subject_key", ["k1", "k9"], keep=("prediction_id",)) == 1
    gone = q.get(a.item_id)
    assert gone.details == {"prediction_id": "p1", "redacted": True} and gone.note is None
    assert (gone.status, gone.reviewer, gone.resolution) == ("resolved", "dr.a", "seen")
    assert q.get(b.item_id).details["age"] == 41                      # other items untouched
    assert b"Quixote" not in b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert q.redact("subject_key", []) == 0
