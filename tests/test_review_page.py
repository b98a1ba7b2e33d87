"""The review page end to end in headless Chromium (Debian's chromium driven by Playwright).

A clinician signs in, sees an escalated case with its probability, conformal set, reasons and
top contributions, overrides it with a reason, then resolves it; the audit trail on disk must
hold the override. A screenshot is saved in the test's folder; CLINOPS_UPDATE_SCREENSHOT=1 writes it to
reports/serving/review_page.png (the committed picture) instead, so `make test` leaves the tree clean.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import httpx
import pytest

from clinops.audit.log import AuditTrail
from clinops.modeling import ModelBundle
from clinops.uncertainty import RiskPredictor
from serving.testing import REPO_ROOT, ServerThread, build_demo_bundle, demo_app, demo_frame, demo_token

CHROMIUM = Path("/usr/bin/chromium")
COMMITTED_SCREENSHOT = REPO_ROOT / "reports" / "serving" / "review_page.png"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed "
                       "(apt-get install -y chromium); .ci/run installs it"),
]


def _ambiguous_record(predictor: RiskPredictor) -> dict:
    X, _ = demo_frame(400, seed=11)
    for _, row in X.iterrows():
        record = {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))}
        for name in ("sex_male", "vasopressor", "mech_vent"):
            record[name] = int(record[name])
        result = predictor.predict_one(record)
        if result.conformal_set == (0, 1) and not result.out_of_distribution:
            return record
    pytest.fail("no ambiguous-set case in the demo rows")


def test_clinician_overrides_a_case_on_the_review_page(tmp_path):
    SCREENSHOT = COMMITTED_SCREENSHOT if os.environ.get("CLINOPS_UPDATE_SCREENSHOT") == "1" else tmp_path / "review.png"
    from playwright.sync_api import expect, sync_playwright

    bundle_dir = build_demo_bundle(tmp_path / "bundle", n=1500, seed=7)
    record = _ambiguous_record(RiskPredictor(ModelBundle.load(bundle_dir)))
    state = tmp_path / "state"
    with ServerThread(demo_app(bundle_dir, state)) as server, httpx.Client(base_url=server.base_url) as api:
        made = api.post("/v1/predictions", headers=demo_token("system"), json={
            "encounter_id": "30000002", "purpose": "direct_care", "features": record}).json()
        assert made["needs_review"], made
        pid = made["prediction_id"]

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1100, "height": 800})
                page.goto(f"{server.base_url}/review")
                # wrong token first: the page shows the API's error, naming the field and rule
                page.get_by_test_id("token").fill("not-a-token")
                page.get_by_test_id("signin").click()
                expect(page.get_by_test_id("status")).to_contain_text("401: Authorization: unknown bearer token")

                page.get_by_test_id("token").fill("demo-clinician-token")
                page.get_by_test_id("signin").click()
                case = page.locator(f'[data-testid="case"][data-prediction-id="{pid}"]')
                expect(case).to_be_visible()
                expect(page.get_by_test_id("model-state")).to_have_text("model state: ACTIVE")
                expect(case.get_by_test_id("probability")).to_have_text(f"{100 * made['probability']:.1f} %")
                expect(case.get_by_test_id("conformal-set")).to_have_text("conformal set {0, 1}")
                expect(case.get_by_test_id("reasons")).to_contain_text("ambiguous conformal set")
                rows = case.get_by_test_id("contributions").locator("tbody tr")
                expect(rows).to_have_count(len(made["contributions"]))
                expect(rows.first).to_contain_text(made["contributions"][0]["feature"])

                case.get_by_test_id("override").click()
                case.get_by_test_id("override-reason").fill("Lactate already clearing; bedside review.")
                case.get_by_test_id("confirm-override").click()
                expect(page.get_by_test_id("status")).to_contain_text(f"Override recorded for {pid}")
                case = page.locator(f'[data-testid="case"][data-prediction-id="{pid}"]')
                expect(case.get_by_test_id("conformal-set")).to_contain_text("overridden")
                SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(SCREENSHOT), full_page=True)

                case.get_by_test_id("resolve").click()
                case.get_by_test_id("confirm-resolve").click()
                expect(page.get_by_test_id("status")).to_contain_text("resolved")
                expect(page.locator(f'[data-testid="case"][data-prediction-id="{pid}"]')).to_have_count(0)
            finally:
                browser.close()

        shown = api.get(f"/v1/audit/predictions/{pid}", headers=demo_token("auditor")).json()
        kinds = [r["kind"] for r in shown["related"]]
        assert "override" in kinds and "review" in kinds

    trail = AuditTrail.open(state / "audit", read_only=True)
    try:
        overrides = trail.find("override", prediction_id=pid)
        assert len(overrides) == 1
        assert overrides[0].fields["requester"] == "dr-demo-clinician" and overrides[0].fields["reason_given"] is True
        reason = trail.decrypt_payload(overrides[0])
        assert reason == {"reason": "Lactate already clearing; bedside review."}
        assert trail.verify().ok
    finally:
        trail.close()
    assert SCREENSHOT.stat().st_size > 10_000
