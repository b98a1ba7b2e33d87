"""Unit tests of the pieces issue 16 added to the package (the HTTP behaviour they give is
tested over real HTTP in test_serving_attack.py)."""
from __future__ import annotations

import json
import os
import stat

import pytest

from clinops.features import FeatureManifest
from clinops.governance import GovernancePolicy, OverrideLog, PolicyError, ReviewQueue, escalation_reasons
from clinops.privacy import AuthorizationError, Principal
from clinops.statefiles import private_directory, private_file
from serving.__main__ import RestartPolicy, is_loopback
from serving.gate import FailedAuthLimiter, strict_json_loads

MANIFEST = FeatureManifest.load("mortality")


@pytest.mark.parametrize("text, rule", [
    ('{"age": NaN}', "NaN is not JSON"),
    ('{"age": -Infinity}', "-Infinity is not JSON"),
    ('{"features": {"age": 1, "age": 2}}', "duplicate key 'age'"),
])
def test_strict_json_refuses_non_finite_constants_and_duplicate_keys(text, rule):
    with pytest.raises(json.JSONDecodeError, match=rule):
        strict_json_loads(text)
    assert strict_json_loads('{"a": [1.5, -0.0, {"b": null}]}') == {"a": [1.5, -0.0, {"b": None}]}


def test_number_problem_is_the_manifest_rule_for_every_numeric_feature():
    for spec in MANIFEST.specs:
        if spec.kind != "numeric":
            continue
        lo, hi = spec.plausible_range
        assert spec.number_problem((lo + hi) / 2) is None, spec.name
        for bad in (float("nan"), float("inf"), -float("inf"), hi * 2 + 1, lo - 1):
            assert "outside the plausible range" in spec.number_problem(bad), (spec.name, bad)
    # every mortality feature is bounded above now (bilirubin, platelets and INR were not)
    assert all(spec.plausible_range[1] < float("inf") for spec in MANIFEST.specs if spec.kind == "numeric")


def test_huge_integer_is_a_validation_error_not_an_overflow():
    from clinops.features import FeatureValidationError

    with pytest.raises(FeatureValidationError, match="age"):
        MANIFEST.validate_record({"age": 10 ** 400})


def test_failed_auth_limiter_blocks_after_the_limit_and_forgets_after_the_window():
    now = [0.0]
    limiter = FailedAuthLimiter(max_failures=3, window_seconds=10, clock=lambda: now[0])
    for _ in range(2):
        limiter.failed("a")
    assert limiter.blocked("a") == 0
    limiter.failed("a")
    assert limiter.blocked("a") == pytest.approx(10) and limiter.blocked("b") == 0
    now[0] = 10.5
    assert limiter.blocked("a") == 0
    limiter.max_addresses = 5
    for i in range(20):
        limiter.failed(f"host-{i}")
    assert len(limiter._failures) <= 5  # noqa: SLF001 -- memory stays bounded


def test_restart_policy_backs_off_and_gives_up():
    policy = RestartPolicy(first_delay=0.5, max_delay=2.0, max_restarts=3, window_seconds=60)
    assert [policy.next_delay(t) for t in (0, 1, 2)] == [0.5, 1.0, 2.0]
    assert policy.next_delay(3) is None  # a fourth crash within the window
    assert policy.next_delay(70) == 0.5  # the window has passed


def test_loopback_addresses():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.5") and not is_loopback("example.org")


def test_mostly_imputed_escalates_above_the_policy_share():
    assert escalation_reasons(state="ACTIVE", imputed_share=1.0) == ["mostly_imputed"]
    assert escalation_reasons(state="ACTIVE", imputed_share=0.5) == []  # the cohort keeps half missing
    assert escalation_reasons(state="ACTIVE", imputed_share=0.3,
                              policy=GovernancePolicy(escalate_imputed_share=0.25)) == ["mostly_imputed"]
    with pytest.raises(PolicyError, match="escalate_imputed_share"):
        GovernancePolicy(escalate_imputed_share=1.5)


def test_override_log_counts_overridden_predictions(tmp_path):
    log = OverrideLog(tmp_path / "overrides.sqlite")
    for clinician in ("a", "a", "b"):
        log.record("p1", clinician=clinician, role="clinician", action="overridden")
    log.record("p2", clinician="a", role="clinician", action="accepted")
    assert log.overridden_predictions() == 1
    assert log.decided("p1", "a") and not log.decided("p2", "b")
    assert log.overridden_among(["p1", "p2", "p3"]) == {"p1"}
    log.record("p3", clinician="c", role="clinician", action="overridden", note="bed 4, daughter Quixote")
    assert log.drop_notes() == 1 and log.drop_notes() == 0
    assert all(r.note is None for r in log.records())
    assert b"Quixote" not in b"".join(p.read_bytes() for p in tmp_path.iterdir())


def test_review_queue_redact_keeps_only_what_is_named(tmp_path):
    queue = ReviewQueue(tmp_path / "queue.sqlite")
    mine = queue.add("prediction_escalation", "x", details={"prediction_id": "p1", "subject_key": "k1",
                                                           "contributions": [{"value": 87.625}]})
    other = queue.add("prediction_escalation", "x", details={"prediction_id": "p2", "subject_key": "k2"})
    queue.resolve(mine.item_id, reviewer="r", role="reviewer", resolution="resolved", note="secret note")
    assert queue.redact("subject_key", ["k1", "k9"], keep=("prediction_id",)) == 1
    redacted = queue.get(mine.item_id)
    assert redacted.details == {"prediction_id": "p1", "redacted": True} and redacted.note is None
    assert redacted.status == "resolved" and queue.get(other.item_id).details["subject_key"] == "k2"
    assert [i.item_id for i in queue.list(None, after=mine.item_id, limit=1)] == [other.item_id]
    assert queue.count(None) == 2
    assert b"secret note" not in b"".join(p.read_bytes() for p in tmp_path.iterdir())


def test_private_paths_whatever_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        directory = private_directory(tmp_path / "a" / "b")
        path = private_file(directory / "x.sqlite")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700 and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_principal_purposes():
    Principal("x", "system").check_purpose("research")  # no list: any purpose
    with pytest.raises(AuthorizationError, match="may declare only direct_care"):
        Principal("x", "clinician", ("direct_care",)).check_purpose("research")
