"""Schemathesis against the live app's OpenAPI schema: no 5xx on generated input.

Each operation is called with a token of a role it allows (otherwise nearly every case would
stop at the 403 and the handlers would never see generated bodies), with valid (positive) and
schema-violating (negative) inputs. The number of cases run is printed.
"""
from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from serving.testing import ServerThread, build_demo_bundle, demo_app, demo_token

EXAMPLES_PER_OPERATION = 15

# a role each operation allows (the role matrix itself is tested in test_serving_api.py)
ROLE_FOR = {
    "/v1/predictions": "clinician",
    "/v1/predictions/{prediction_id}/override": "clinician",
    "/v1/review-queue": "reviewer",
    "/v1/review-queue/{item_id}/resolve": "reviewer",
    "/v1/governance": "reviewer",
    "/v1/governance/review": "reviewer",
    "/v1/governance/suspend": "reviewer",
    "/v1/governance/resume": "reviewer",
    "/v1/outcomes": "system",
    "/v1/audit/verify": "auditor",
    "/v1/audit/predictions/{prediction_id}": "auditor",
    "/v1/subjects/{encounter_id}": "dpo",
    "/metrics": "system",
    "/healthz": "system",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    bundle = build_demo_bundle(tmp_path_factory.mktemp("bundle"), n=800, seed=5)
    # negative cases send many wrong tokens: no failed-authentication limit here (tested elsewhere)
    with ServerThread(demo_app(bundle, tmp_path_factory.mktemp("state"), max_failed_auth=10 ** 6)) as running:
        yield running


def test_no_server_error_on_generated_input(server):
    schema = schemathesis.openapi.from_url(f"{server.base_url}/openapi.json")
    counts = {"cases": 0, "operations": 0, "no_negative": 0}
    statuses: dict[int, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        assert operation.path in ROLE_FOR, f"no role chosen for {operation.path}: add it to ROLE_FOR"
        headers = demo_token(ROLE_FOR[operation.path])
        counts["operations"] += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            positive = mode is GenerationMode.POSITIVE

            @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case):
                checks = [not_a_server_error]
                if positive:
                    checks += [status_code_conformance, response_schema_conformance]
                response = case.call_and_validate(base_url=server.base_url, headers=headers, checks=checks)
                counts["cases"] += 1
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

            try:
                run()
            except Unsatisfiable:
                # an operation without parameters or body has no invalid input to generate
                assert not positive, f"no valid input could be generated for {operation.path}"
                counts["no_negative"] += 1
    print(f"\nschemathesis: {counts['cases']} cases over {counts['operations']} operations; "
          f"status counts {dict(sorted(statuses.items()))}; "
          f"{counts['no_negative']} operations without negative cases")
    assert counts["operations"] == len(ROLE_FOR)
    assert counts["cases"] >= counts["operations"] * 2
    assert not any(status >= 500 for status in statuses)
    # the service is still healthy and its audit trail intact after the fuzzing
    assert httpx.get(f"{server.base_url}/healthz").status_code == 200
    assert httpx.get(f"{server.base_url}/v1/audit/verify", headers=demo_token("auditor")).json()["ok"] is True
