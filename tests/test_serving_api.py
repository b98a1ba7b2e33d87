"""The serving API over real HTTP (uvicorn in a thread, httpx), on a real small model bundle.

Audit records are read back from disk with a separate read-only AuditTrail, so each check
sees what an auditor would see, not the server's memory.
"""
from __future__ import annotations

import contextlib
import math

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.metrics import roc_auc_score

from clinops.audit.keys import Ed25519Signer
from clinops.audit.log import AuditTrail
from clinops.governance import ReviewQueue
from clinops.audit.proofs import verify_receipt
from clinops.modeling import ModelBundle
from clinops.privacy import ROLES
from clinops.uncertainty import RiskPredictor, expected_calibration_error
from serving.testing import ServerThread, build_demo_bundle, demo_app, demo_frame, demo_token

CONSENTED = "30000001"          # direct_care, quality_improvement (serving/config/consent.example.yaml)
RESEARCH_ONLY = "30000004"      # research only
RECORD = {"age": 71.0, "sex_male": 1, "dx_chapter": "respiratory", "gcs": 11.0, "map": 61.0,
          "heart_rate": 112.0, "resp_rate": 26.0, "lactate": 3.4, "vasopressor": 1}


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    return build_demo_bundle(tmp_path_factory.mktemp("bundle"), n=1500, seed=7)


@pytest.fixture(scope="module")
def predictor(bundle_dir):
    return RiskPredictor(ModelBundle.load(bundle_dir))


@pytest.fixture(scope="module")
def served(bundle_dir, tmp_path_factory):
    """One long-lived server for tests that do not change the model state."""
    state = tmp_path_factory.mktemp("state")
    with ServerThread(demo_app(bundle_dir, state)) as server, httpx.Client(base_url=server.base_url, timeout=30) as client:
        yield client, state


@pytest.fixture()
def fresh(bundle_dir, tmp_path):
    """A factory of new servers (own state) for tests that suspend the model or break things."""
    stack = contextlib.ExitStack()

    def start(**options):
        state = tmp_path / f"state{len(stack._exit_callbacks)}"
        server = stack.enter_context(ServerThread(demo_app(bundle_dir, state, **options)))
        client = stack.enter_context(httpx.Client(base_url=server.base_url, timeout=30))
        return client, state, server

    with stack:
        yield start


def audit_records(state, kind=None, **equals):
    trail = AuditTrail.open(state / "audit", read_only=True)
    try:
        return trail.find(kind, **equals)
    finally:
        trail.close()


def predict(client, record=None, encounter=CONSENTED, purpose="direct_care", role="clinician"):
    body = {"encounter_id": encounter, "purpose": purpose, "features": RECORD if record is None else record}
    return client.post("/v1/predictions", json=body, headers=demo_token(role))


def only_error(response, status):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"errors"} and body["errors"]
    for error in body["errors"]:
        assert set(error) == {"field", "rule"} and error["field"] and error["rule"]
    return body["errors"][0]


# --------------------------------------------------------------------------------- auth


def test_healthz_needs_no_token(served):
    client, _ = served
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "model_version": "demo-run", "governance_state": "ACTIVE"}


ENDPOINTS = [
    ("POST", "/v1/predictions", {"encounter_id": CONSENTED, "purpose": "direct_care", "features": {}}, {"system", "clinician"}),
    ("POST", "/v1/predictions/abc/override", {}, {"clinician", "reviewer"}),
    ("GET", "/v1/review-queue", None, {"clinician", "reviewer"}),
    ("POST", "/v1/review-queue/1/resolve", {}, {"clinician", "reviewer"}),
    ("GET", "/v1/governance", None, set(ROLES)),
    ("POST", "/v1/governance/review", {"documentation_complete": True, "sign_off": True}, {"reviewer"}),
    ("POST", "/v1/governance/suspend", {"reason": "x"}, {"reviewer", "clinician"}),
    ("POST", "/v1/governance/resume", {"note": "x"}, {"reviewer"}),
    ("POST", "/v1/outcomes", {"prediction_id": "abc", "outcome": 1}, {"system"}),
    ("GET", "/v1/audit/verify", None, {"auditor"}),
    ("GET", "/v1/audit/predictions/abc", None, {"auditor"}),
    ("DELETE", "/v1/subjects/30000005", None, {"dpo"}),
    ("GET", "/metrics", None, {"system", "reviewer", "auditor"}),
]


@pytest.mark.parametrize("method, path, body, allowed", ENDPOINTS, ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS])
def test_every_route_needs_a_token_and_an_allowed_role(served, method, path, body, allowed):
    client, _ = served
    error = only_error(client.request(method, path, json=body), 401)
    assert error == {"field": "Authorization", "rule": "a bearer token is required"}
    error = only_error(client.request(method, path, json=body, headers={"Authorization": "Bearer wrong"}), 401)
    assert error["rule"] == "unknown bearer token"
    for role in sorted(set(ROLES) - allowed):
        error = only_error(client.request(method, path, json=body, headers=demo_token(role)), 403)
        assert error["field"] == "role" and repr(role) in error["rule"]


# --------------------------------------------------------------------------------- predictions


def test_prediction_is_the_predictors_answer_and_is_audited(served, predictor):
    client, state = served
    r = predict(client)
    assert r.status_code == 200, r.text
    body = r.json()
    expected = predictor.predict_one(RECORD)
    assert body["probability"] == pytest.approx(expected.probability, abs=1e-12)
    assert body["raw_score"] == pytest.approx(expected.raw_score, abs=1e-7)
    assert body["conformal_set"] == list(expected.conformal_set)
    assert body["imputed"] == list(expected.imputed)
    assert set(body["imputed"]) == set(predictor.feature_names) - set(RECORD)
    shap = {k: v for k, v in expected.contributions.items() if k != "bias"}
    top = sorted(shap, key=lambda k: -abs(shap[k]))[:5]
    assert [c["feature"] for c in body["contributions"]] == top
    assert [c["contribution"] for c in body["contributions"]] == pytest.approx([shap[k] for k in top], abs=1e-6)
    assert body["model_version"] == "demo-run" and body["governance_state"] == "ACTIVE"
    # exact TreeSHAP: contributions + bias sum to the raw score's logit
    assert sum(expected.contributions.values()) == pytest.approx(math.log(expected.raw_score / (1 - expected.raw_score)), abs=1e-4)

    records = audit_records(state, "prediction", prediction_id=body["prediction_id"])
    assert len(records) == 1
    fields = records[0].fields
    assert records[0].record_id == body["audit_record_id"]
    assert fields["probability"] == body["probability"] and fields["conformal_set"] == body["conformal_set"]
    assert fields["requester"] == "dr-demo-clinician" and fields["purpose"] == "direct_care"
    assert records[0].subject.startswith("ps-") and records[0].subject != CONSENTED
    # the answer carries the log's signed receipt for that record, checkable offline
    receipt = body["audit_receipt"]
    assert receipt["record_id"] == body["audit_record_id"] and receipt["record_hash"] == records[0].record_hash
    log_key = Ed25519Signer.load(state / "audit" / "private" / "signing.key").public_key
    assert "accepted record" in verify_receipt(receipt, log_key)
    # the encounter id is never written in clear
    assert CONSENTED.encode() not in b"".join(p.read_bytes() for p in (state / "audit" / "log").glob("*.jsonl"))


def test_concurrent_predictions_are_each_answered_and_audited_once(fresh, predictor):
    """Concurrent requests are scored in batches and share audit commits, but each gets its own
    record and its own answer; an invalid request among them fails alone; the chain verifies."""
    import asyncio

    client, state, server = fresh()
    X, _ = demo_frame(48, seed=11)
    records = predictor.manifest.records(X)
    invalid = {**records[0], "heart_rate": 400.0}  # outside the manifest's plausible range

    async def send_all():
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as aclient:
            return await asyncio.gather(*(
                aclient.post("/v1/predictions", headers=demo_token("system"),
                             json={"encounter_id": CONSENTED, "purpose": "direct_care", "features": rec})
                for rec in [*records[:24], invalid, *records[24:]]))

    responses = asyncio.run(send_all())
    assert responses[24].status_code == 422 and responses[24].json()["errors"][0]["field"] == "features.heart_rate"
    responses = responses[:24] + responses[25:]
    assert [r.status_code for r in responses] == [200] * len(records)
    bodies = [r.json() for r in responses]
    assert len({b["prediction_id"] for b in bodies}) == len(records)
    for rec, body in zip(records, bodies):  # each answer is its own record's, not a neighbour's
        expected = predictor.predict_one(rec)
        assert body["probability"] == expected.probability and body["raw_score"] == expected.raw_score
    logged = {r.fields["prediction_id"]: r for r in audit_records(state, "prediction")}
    assert set(logged) == {b["prediction_id"] for b in bodies}
    for body in bodies:
        assert logged[body["prediction_id"]].record_id == body["audit_record_id"]
        assert logged[body["prediction_id"]].fields["probability"] == body["probability"]
    # every valid prediction went through exactly one scoring batch
    scraped = _metrics(client)
    assert scraped["clinops_scoring_batch_size_sum"] == len(records)
    assert 1 <= scraped["clinops_scoring_batch_size_count"] <= len(records)
    verify = client.get("/v1/audit/verify", headers=demo_token("auditor")).json()
    assert verify["ok"] and verify["n_records"] >= len(records)


@pytest.mark.parametrize(
    "body_patch, field, rule_part",
    [
        ({"features": {**RECORD, "zip_code": "02115"}}, "features.zip_code", "data minimisation"),
        ({"features": {**RECORD, "map": 400}}, "features.map", "outside the plausible range (0, 300) mmHg"),
        ({"features": {**RECORD, "gcs": 2}}, "features.gcs", "outside the plausible range [3, 15]"),
        ({"features": {**RECORD, "age": "old"}}, "features.age", "number"),
        ({"features": {**RECORD, "dx_chapter": "cardiology"}}, "features.dx_chapter", "infectious"),
        ({"features": {**RECORD, "vasopressor": 2}}, "features.vasopressor", "0 or 1"),
        ({"patient_name": "Jane Doe"}, "patient_name", "data minimisation"),
        ({"purpose": "marketing"}, "purpose", "direct_care"),
        ({"encounter_id": "../etc"}, "encounter_id", "pattern"),
    ],
)
def test_bad_input_is_422_naming_field_and_rule_and_never_predicted(served, body_patch, field, rule_part):
    client, state = served
    before = len(audit_records(state, "prediction"))
    body = {"encounter_id": CONSENTED, "purpose": "direct_care", "features": RECORD, **body_patch}
    error = only_error(client.post("/v1/predictions", json=body, headers=demo_token("clinician")), 422)
    assert error["field"] == field
    assert rule_part in error["rule"]
    assert len(audit_records(state, "prediction")) == before


def test_missing_field_and_malformed_json(served):
    client, _ = served
    error = only_error(client.post("/v1/predictions", json={"purpose": "direct_care", "features": {}},
                                   headers=demo_token("system")), 422)
    assert error == {"field": "encounter_id", "rule": "is required"}
    error = only_error(client.post("/v1/predictions", content=b"{not json", headers={
        **demo_token("system"), "Content-Type": "application/json"}), 422)
    assert error["field"] == "body" and "valid JSON" in error["rule"]


def test_consent_refusal_is_403_and_audited(served):
    client, state = served
    before = len(audit_records(state, "consent_refusal"))
    error = only_error(predict(client, encounter=RESEARCH_ONLY, purpose="direct_care"), 403)
    assert error == {"field": "purpose", "rule": "consent for this encounter covers ['research'], not 'direct_care'"}
    error = only_error(predict(client, encounter="99999999"), 403)
    assert error["rule"] == "no consent is recorded for this encounter"
    refusals = audit_records(state, "consent_refusal")
    assert len(refusals) == before + 2
    assert refusals[-2].fields["purpose"] == "direct_care" and refusals[-2].fields["requester"] == "dr-demo-clinician"
    # a purpose the consent covers is served
    assert predict(client, encounter=RESEARCH_ONLY, purpose="research", role="system").status_code == 200


def _low_confidence_record(predictor):
    X, _ = demo_frame(400, seed=11)
    for _, row in X.iterrows():
        record = {k: (None if (isinstance(v, float) and math.isnan(v)) else v) for k, v in row.items()}
        record["sex_male"] = int(record["sex_male"])
        record["vasopressor"], record["mech_vent"] = int(record["vasopressor"]), int(record["mech_vent"])
        result = predictor.predict_one(record)
        if result.conformal_set == (0, 1) and not result.out_of_distribution:
            return {k: v for k, v in record.items() if v is not None}
    pytest.fail("no ambiguous-set case in the demo rows")


def test_low_confidence_case_is_answered_flagged_and_queued(served, predictor):
    client, state = served
    record = _low_confidence_record(predictor)
    body = predict(client, record).json()
    assert body["conformal_set"] == [0, 1] and body["low_confidence"] is True
    assert body["needs_review"] is True and body["escalation_reasons"] == ["ambiguous_conformal_set"]
    assert 0 < body["probability"] < 1  # the prediction is still shown, not suppressed
    queue = client.get("/v1/review-queue", headers=demo_token("clinician")).json()["items"]
    item = next(i for i in queue if i["prediction_id"] == body["prediction_id"])
    assert item["kind"] == "prediction_escalation" and item["status"] == "open"
    assert item["details"]["probability"] == body["probability"]
    assert item["details"]["contributions"] == body["contributions"]
    escalations = audit_records(state, "escalation", prediction_id=body["prediction_id"])
    assert [e.fields["reasons"] for e in escalations] == [["ambiguous_conformal_set"]]


# --------------------------------------------------------------------------------- oversight


def test_override_needs_no_reason_and_is_audited(served):
    client, state = served
    pid = predict(client).json()["prediction_id"]
    r = client.post(f"/v1/predictions/{pid}/override", json={}, headers=demo_token("clinician"))
    assert r.status_code == 200, r.text
    assert r.json()["overridden_by"] == "dr-demo-clinician"
    secret = "patient looked far better at the bedside"
    r = client.post(f"/v1/predictions/{pid}/override", json={"reason": secret}, headers=demo_token("reviewer"))
    assert r.status_code == 200
    records = audit_records(state, "override", prediction_id=pid)
    assert [rec.fields["reason_given"] for rec in records] == [False, True]
    assert records[1].payload is not None  # the free text is encrypted under the subject's key
    assert secret.encode() not in b"".join(p.read_bytes() for p in (state / "audit" / "log").glob("*.jsonl"))
    shown = client.get(f"/v1/audit/predictions/{pid}", headers=demo_token("auditor")).json()
    assert [rel["kind"] for rel in shown["related"]].count("override") == 2
    error = only_error(client.post("/v1/predictions/nosuchid/override", json={}, headers=demo_token("clinician")), 404)
    assert error["field"] == "prediction_id"
    metrics = _metrics(client)
    assert metrics["clinops_overrides_total"] >= 2
    assert 0 < metrics["clinops_override_rate"] <= 1


def test_resolve_review_item(served, predictor):
    client, state = served
    pid = predict(client, _low_confidence_record(predictor)).json()["prediction_id"]
    items = client.get("/v1/review-queue", headers=demo_token("reviewer")).json()["items"]
    item_id = next(i["item_id"] for i in items if i["prediction_id"] == pid)
    r = client.post(f"/v1/review-queue/{item_id}/resolve", json={"note": "seen"}, headers=demo_token("clinician"))
    assert r.status_code == 200 and r.json()["status"] == "resolved"
    assert audit_records(state, "review", review_item=item_id)[0].fields["requester"] == "dr-demo-clinician"
    only_error(client.post(f"/v1/review-queue/{item_id}/resolve", json={}, headers=demo_token("clinician")), 409)
    only_error(client.post("/v1/review-queue/999999/resolve", json={}, headers=demo_token("clinician")), 404)
    resolved = client.get("/v1/review-queue?status=resolved", headers=demo_token("clinician")).json()["items"]
    assert any(i["item_id"] == item_id and i["reviewer"] == "dr-demo-clinician" for i in resolved)


def test_suspend_escalates_everything_and_only_a_reviewer_resumes(fresh):
    client, state, _ = fresh()
    r = client.post("/v1/governance/suspend", json={"reason": "bedside concern"}, headers=demo_token("clinician"))
    assert r.status_code == 200 and r.json()["state"] == "SUSPENDED-PENDING-REVIEW"
    body = predict(client).json()
    assert body["governance_state"] == "SUSPENDED-PENDING-REVIEW"
    assert body["needs_review"] and body["escalation_reasons"][0] == "model_suspended"
    only_error(client.post("/v1/governance/resume", json={"note": "fine"}, headers=demo_token("clinician")), 403)
    error = only_error(client.post("/v1/governance/resume", json={"note": "  "}, headers=demo_token("reviewer")), 422)
    assert error["field"] == "note"
    r = client.post("/v1/governance/resume", json={"note": "reviewed calibration"}, headers=demo_token("reviewer"))
    assert r.status_code == 200 and r.json()["state"] == "ACTIVE"
    error = only_error(client.post("/v1/governance/resume", json={"note": "again"}, headers=demo_token("reviewer")), 409)
    assert error["field"] == "state"
    events = [rec.fields["event"]["kind"] for rec in audit_records(state, "governance")]
    assert events == ["suspended", "resumed"]


def test_periodic_review_record(fresh):
    client, state, _ = fresh()
    r = client.post("/v1/governance/review", headers=demo_token("reviewer"), json={
        "incidents": ["none reported"], "documentation_complete": True, "sign_off": True, "note": "Q3 review"})
    assert r.status_code == 200, r.text
    review = r.json()["review"]
    assert review["kind"] == "periodic_review" and review["actor"] == "demo-model-reviewer"
    assert review["details"]["incidents"] == ["none reported"] and review["details"]["sign_off"] is True
    record = audit_records(state, "governance")[-1]
    assert record.record_id == r.json()["audit_record_id"]
    assert record.fields["event"]["details"]["documentation_complete"] is True


# --------------------------------------------------------------------------------- outcomes


def test_outcomes_give_live_metrics_and_rules_can_suspend(fresh):
    """Males ranked perfectly, females inverted: live AUROC drops (degradation suspends) and the
    sex AUROC gap breaks the fairness rule (a review item)."""
    client, state, _ = fresh(min_outcomes=60, reference_auroc=0.9)
    X, _ = demo_frame(80, seed=3)
    rows = []
    for i, (_, row) in enumerate(X.iterrows()):
        record = {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))}
        record.update(sex_male=i % 2, vasopressor=int(record["vasopressor"]), mech_vent=int(record["mech_vent"]))
        body = predict(client, record, role="system").json()
        rows.append((body["prediction_id"], body["probability"], i % 2))
    probs = np.array([p for _, p, _ in rows])
    male = np.array([m for _, _, m in rows]) == 1
    y = np.zeros(len(rows), dtype=int)
    for mask, flip in ((male, False), (~male, True)):
        idx = np.flatnonzero(mask)
        order = idx[np.argsort(probs[idx], kind="stable")]
        high = order[len(order) // 2:] if not flip else order[: len(order) // 2]
        y[high] = 1
    for (pid, _, _), outcome in zip(rows, y):
        r = client.post("/v1/outcomes", json={"prediction_id": pid, "outcome": int(outcome)}, headers=demo_token("system"))
        assert r.status_code == 200, r.text
    live = r.json()["live"]
    assert live["n"] == 80
    assert live["ece"] == pytest.approx(expected_calibration_error(y, probs), abs=1e-12)
    assert live["auroc"] == pytest.approx(roc_auc_score(y, probs), abs=1e-12)
    assert live["group_auroc"]["sex"]["male"] == pytest.approx(roc_auc_score(y[male], probs[male]), abs=1e-12)
    assert live["group_auroc"]["sex"]["male"] - live["group_auroc"]["sex"]["female"] > 0.03
    assert r.json()["governance_state"] == "SUSPENDED-PENDING-REVIEW"
    kinds = [rec.fields["event"]["kind"] for rec in audit_records(state, "governance")]
    assert "suspended" in kinds and "fairness_alert" in kinds
    queue = client.get("/v1/review-queue", headers=demo_token("reviewer")).json()["items"]
    assert {"suspension", "fairness_alert"} <= {i["kind"] for i in queue}
    metrics = _metrics(client)
    assert metrics["clinops_live_auroc"] == pytest.approx(live["auroc"])
    assert metrics["clinops_live_ece"] == pytest.approx(live["ece"])
    assert len(audit_records(state, "outcome")) == 80
    only_error(client.post("/v1/outcomes", json={"prediction_id": rows[0][0], "outcome": 1}, headers=demo_token("system")), 409)
    only_error(client.post("/v1/outcomes", json={"prediction_id": "nosuch", "outcome": 1}, headers=demo_token("system")), 404)
    only_error(client.post("/v1/outcomes", json={"prediction_id": rows[0][0], "outcome": 2}, headers=demo_token("system")), 422)


def test_input_drift_opens_a_review_item(fresh):
    client, state, _ = fresh(psi_window=20)
    for _ in range(20):  # every patient ventilated: far from the training prevalence (~35 %)
        assert predict(client, {**RECORD, "mech_vent": 1}, role="system").status_code == 200
    metrics = _metrics(client, labelled=True)
    assert metrics[("clinops_drift_psi", "mech_vent")] > 0.2
    queue = client.get("/v1/review-queue", headers=demo_token("reviewer")).json()["items"]
    assert any(i["kind"] == "drift_watch" and "psi:mech_vent" in i["reason"] for i in queue)
    # a drift alarm alone never suspends (governance policy)
    assert client.get("/v1/governance", headers=demo_token("reviewer")).json()["state"] == "ACTIVE"


# --------------------------------------------------------------------------------- audit and erasure


def test_verify_and_erasure(fresh):
    client, state, _ = fresh()
    pid = predict(client, encounter="30000003").json()["prediction_id"]
    verify = client.get("/v1/audit/verify", headers=demo_token("auditor")).json()
    assert verify["ok"] is True and verify["n_records"] >= 1
    shown = client.get(f"/v1/audit/predictions/{pid}", headers=demo_token("auditor")).json()
    assert shown["features_status"] == "decrypted" and shown["features"]["features"]["age"] == RECORD["age"]
    r = client.delete("/v1/subjects/30000003", headers=demo_token("dpo"))
    assert r.status_code == 200, r.text
    assert r.json()["consents_withdrawn"] == 3 and r.json()["audit"]["status"] == "erased"
    shown = client.get(f"/v1/audit/predictions/{pid}", headers=demo_token("auditor")).json()
    assert shown["features_status"] == "shredded" and shown["features"] is None
    assert shown["probability"] is not None  # the inference metadata stays for accountability
    assert client.get("/v1/audit/verify", headers=demo_token("auditor")).json()["ok"] is True
    error = only_error(predict(client, encounter="30000003"), 403)
    assert error["field"] == "purpose"
    only_error(client.delete("/v1/subjects/30000003", headers=demo_token("dpo")), 404)
    assert len(audit_records(state, "erasure")) == 1
    # an encounter with consent but no logged data: consents withdrawn, the request audited
    r = client.delete("/v1/subjects/30000005", headers=demo_token("dpo"))
    assert r.status_code == 200 and r.json()["consents_withdrawn"] == 2
    requests = audit_records(state, "erasure_request")
    assert [q.fields["requester"] for q in requests] == ["demo-data-protection-officer"]
    assert requests[0].subject is None and requests[0].record_id == r.json()["audit"]["record_id"]


def test_failed_audit_write_fails_the_request(fresh):
    import asyncio

    client, state, server = fresh()
    server.config.app.state.runtime.audit.close()
    error = only_error(predict(client), 503)
    assert error["field"] == "audit"
    assert _metrics(client)["clinops_audit_write_failures_total"] == 1

    async def several():  # concurrent requests share a batch and its commit: each one fails
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as aclient:
            return await asyncio.gather(*(
                aclient.post("/v1/predictions", headers=demo_token("system"),
                             json={"encounter_id": CONSENTED, "purpose": "direct_care", "features": RECORD})
                for _ in range(6)))

    assert [r.status_code for r in asyncio.run(several())] == [503] * 6
    scraped = _metrics(client)
    assert scraped["clinops_audit_write_failures_total"] == scraped["clinops_scoring_batch_size_count"]
    assert scraped.get("clinops_predictions_total", 0) == 0
    # the queue holds nothing, and reading it is refused too: a read of it must be audited
    assert only_error(client.get("/v1/review-queue", headers=demo_token("clinician")), 503)["field"] == "audit"
    assert ReviewQueue(state / "review_queue.sqlite").list(None) == []


# --------------------------------------------------------------------------------- metrics, errors


def _metrics(client, labelled=False):
    r = client.get("/metrics", headers=demo_token("system"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            if labelled and sample.labels.get("feature"):
                out[(sample.name, sample.labels["feature"])] = sample.value
            elif not sample.labels:
                out[sample.name] = sample.value
    return out


def test_metrics_exposition(served):
    client, _ = served
    predict(client)
    r = client.get("/metrics", headers=demo_token("reviewer"))
    names = {f.name for f in text_string_to_metric_families(r.text)}
    assert {"clinops_request_latency_seconds", "clinops_predictions", "clinops_escalations", "clinops_overrides",
            "clinops_override_rate", "clinops_drift_psi", "clinops_live_ece", "clinops_live_auroc",
            "clinops_model_state"} <= names
    assert 'route="/v1/predictions"' in r.text and "clinops_predictions_total" in r.text


def test_unknown_routes_and_methods_have_the_error_body(served):
    client, _ = served
    assert only_error(client.get("/v2/nothing"), 404)["field"] == "path"
    assert only_error(client.put("/v1/predictions", headers=demo_token("system")), 405)["field"] == "method"
    assert only_error(client.get("/v1/review-queue?status=bogus", headers=demo_token("clinician")), 422)["field"] == "status"


def test_openapi_documents_the_manifest_and_errors(served):
    client, _ = served
    schema = client.get("/openapi.json").json()
    features = schema["components"]["schemas"]["Features"]
    assert features["additionalProperties"] is False
    assert features["properties"]["map"]["exclusiveMaximum"] == 300
    assert features["properties"]["gcs"]["minimum"] == 3
    assert "ErrorBody" in schema["components"]["schemas"]
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_lost_review_queue_is_restored_from_the_audit_trail(bundle_dir, predictor, tmp_path):
    """Escalations are committed to the audit trail with the prediction; the review queue is
    rebuilt from it at start-up if its database was lost (or a crash beat the queue write)."""
    state = tmp_path / "state"
    with ServerThread(demo_app(bundle_dir, state)) as server, httpx.Client(base_url=server.base_url) as client:
        made = predict(client, _low_confidence_record(predictor)).json()
        assert made["needs_review"]
    for name in ("review_queue.sqlite", "review_queue.sqlite-wal", "review_queue.sqlite-shm"):
        (state / name).unlink(missing_ok=True)
    with ServerThread(demo_app(bundle_dir, state)) as server, httpx.Client(base_url=server.base_url) as client:
        items = client.get("/v1/review-queue", headers=demo_token("clinician")).json()["items"]
        assert [i["prediction_id"] for i in items] == [made["prediction_id"]]
        details = items[0]["details"]
        assert details["restored_from_audit"] is True
        assert details["probability"] == made["probability"] and details["reasons"] == made["escalation_reasons"]
        assert details["contributions"] == made["contributions"]
        assert details["audit_record_id"] == made["audit_record_id"]
