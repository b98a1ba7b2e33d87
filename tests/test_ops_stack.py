"""The dashboard against a real Prometheus scraping the real server (two workers).

The server runs as `python -m serving --workers 2`; Prometheus (Debian package `prometheus`,
installed by .ci/run) scrapes it every second with the committed rule files. After predictions
(some with missing features), outcomes, overrides, a suspension and a drift scenario, every
query of every panel of the committed dashboard must return data carrying the labels the panel
is about. Then Prometheus is stopped and predictions must go on.
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

from clinops.drift import DriftPolicy
from clinops.features import FeatureManifest
from clinops.ops.dashboard import dashboard_queries
from clinops.ops.files import DASHBOARD, OPS_DIR
from clinops.ops.stack import PrometheusServer, demo_metrics_token, prometheus_binary
from serving.testing import REPO_ROOT, build_demo_bundle, demo_frame, demo_settings, demo_token, free_port

pytestmark = pytest.mark.skipif(prometheus_binary() is None,
                                reason="prometheus missing: apt-get install prometheus (.ci/run installs it)")

TASK = "mortality"
DRIFT_WINDOW = 50
# Labels a panel's series must carry, by the metric or recording rule its query reads.
LABELS_BY_SIGNAL = {
    "clinops_live_group_auroc": {"attribute", "group"},
    "clinops:live_group_auroc:gap": {"attribute"},
    "clinops_drift_psi": {"feature"},
    "clinops:escalation_rate_by_reason": {"reason"},
    "clinops:imputed_share_by_feature": {"feature"},
    "clinops:request_latency_seconds": {"route"},
    "clinops_model_state": {"state"},
}


def _records(n, seed, shift_lactate=False):
    X, _ = demo_frame(n, seed=seed)
    if shift_lactate:
        X["lactate"] = np.clip(X["lactate"].fillna(2.0) + 5.0, None, 9.0)
    records = []
    for i, row in enumerate(X.to_dict("records")):
        record = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
        if i % 4 == 0:
            record.pop("albumin")  # missing: imputed with the training median
        # 0/1 features as integers: the server's schema refuses 1.0 for a binary field
        records.append({k: (int(v) if k in BINARY else v) for k, v in record.items() if v is not None})
    return records


BINARY = {spec.name for spec in FeatureManifest.load("mortality").specs if spec.kind == "binary"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("stack")
    # The server applies the bundle's rules: a drift window of a few dozen predictions, so that
    # a drift scenario takes seconds, not 500 admissions.
    settings = demo_settings()
    settings = dataclasses.replace(settings, drift=DriftPolicy(**{**settings.drift.to_dict(), "psi_window": DRIFT_WINDOW}))
    bundle = build_demo_bundle(root / "bundle", n=1500, seed=7, settings=settings)
    port = free_port()
    log = (root / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "serving", "--model-dir", str(bundle), "--state-dir", str(root / "state"),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "2", "--min-outcomes", "10",
         "--reference-auroc", "0.8", "--demo"],
        cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    prometheus = PrometheusServer(root / "prometheus", root=REPO_ROOT, target=f"127.0.0.1:{port}", task=TASK,
                                  metrics_token=demo_metrics_token(), port=free_port(), scrape_interval="1s")
    try:
        prometheus.start()
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while (root / "server.log").read_text().count("worker ready") < 2:
            assert server.poll() is None, (root / "server.log").read_text()
            assert time.monotonic() < deadline, "the two workers did not start"
            time.sleep(0.2)
        yield url, prometheus
    finally:
        prometheus.stop()
        server.terminate()
        server.wait(timeout=60)
        log.close()


def predict(client, record, encounter="30000001"):
    r = client.post("/v1/predictions", json={"encounter_id": encounter, "purpose": "direct_care", "features": record},
                    headers=demo_token("system"))
    assert r.status_code == 200, r.text
    return r.json()


def test_every_panel_query_returns_data_with_its_labels(stack):
    url, prometheus = stack
    with httpx.Client(base_url=url, timeout=30) as client:
        records = _records(80, seed=11)
        served = [predict(client, r) for r in records]
        for i, body in enumerate(served):  # both outcomes in each sex and age group
            r = client.post("/v1/outcomes", json={"prediction_id": body["prediction_id"], "outcome": (i // 2) % 2},
                            headers=demo_token("system"))
            assert r.status_code == 200, r.text
        for body in served[:6]:
            r = client.post(f"/v1/predictions/{body['prediction_id']}/override", json={"reason": "looks better"},
                            headers=demo_token("clinician"))
            assert r.status_code == 200, r.text
        # outcomes unrelated to the risk: the live AUROC has probably suspended the model already
        if predict(client, records[0])["governance_state"] == "ACTIVE":
            assert client.post("/v1/governance/suspend", json={"reason": "dashboard test"},
                               headers=demo_token("reviewer")).status_code == 200
        assert "model_suspended" in predict(client, records[0])["escalation_reasons"]
        assert client.post("/v1/governance/resume", json={"note": "checked"},
                           headers=demo_token("reviewer")).status_code == 200
        for record in _records(DRIFT_WINDOW + 10, seed=12, shift_lactate=True):
            predict(client, record)

    model = json.loads((REPO_ROOT / OPS_DIR / DASHBOARD).read_text())
    queries = dashboard_queries(model)
    assert len(queries) >= 20
    results = {}
    deadline = time.monotonic() + 30  # scrapes and rule evaluations every second
    while len(results) < len(queries) and time.monotonic() < deadline:
        for query in queries:
            result = [] if query in results else prometheus.query(query[1])
            if any(s["value"][1] != "NaN" for s in result):  # NaN: e.g. a route without requests lately
                results[query] = [s for s in result if s["value"][1] != "NaN"]
        time.sleep(1)
    empty = [query for query in queries if query not in results]
    assert not empty, f"panels without data: {empty}"
    for (title, expr), result in results.items():
        for series in result:
            labels = series["metric"]
            assert labels.get("task") == TASK and labels.get("job") == "clinops-serving", (title, expr, labels)
            for signal, wanted in LABELS_BY_SIGNAL.items():
                if signal in expr:
                    assert wanted <= set(labels), (title, expr, labels)
    # the drift scenario shows: lactate is the most shifted feature, above the alert level
    psi = eventually(prometheus, "clinops_drift_psi", lambda psi: psi.get("lactate", 0) >= 0.2)
    assert psi["lactate"] == max(psi.values())
    n_served = 80 + 2 + DRIFT_WINDOW + 10
    eventually(prometheus, 'clinops_override_rate{task="mortality"}',
               lambda rate: rate and list(rate.values())[0] == pytest.approx(6 / n_served))


def eventually(prometheus, expr, predicate, timeout=20):
    """``{feature or "": value}`` of ``expr`` once ``predicate`` holds for it (scrapes and the
    server's background drift evaluation run on their own clocks)."""
    deadline = time.monotonic() + timeout
    while True:
        values = {s["metric"].get("feature", ""): float(s["value"][1]) for s in prometheus.query(expr)}
        if predicate(values):
            return values
        assert time.monotonic() < deadline, (expr, values)
        time.sleep(0.5)


def test_predictions_go_on_with_prometheus_stopped(stack):
    url, prometheus = stack
    prometheus.stop()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{prometheus.url}/-/ready", timeout=2)
    with httpx.Client(base_url=url, timeout=30) as client:
        for record in _records(10, seed=13):
            assert predict(client, record)["prediction_id"]


def test_one_command_starts_both_prints_the_urls_and_ctrl_c_stops_both(tmp_path):
    bundle = build_demo_bundle(tmp_path / "bundle", n=400)
    port, prometheus_port = free_port(), free_port()
    stack = subprocess.Popen(
        [sys.executable, "-m", "clinops", "ops", "stack", "--target", f"127.0.0.1:{port}", "--prometheus-port",
         str(prometheus_port), "--scrape-interval", "1s", "--dir", str(tmp_path / "stack"), "--",
         sys.executable, "-m", "serving", "--model-dir", str(bundle), "--state-dir", str(tmp_path / "state"),
         "--port", str(port), "--workers", "1", "--demo", "--log-level", "warning"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        lines = []
        while not any("Ctrl-C stops both" in line for line in lines):
            line = stack.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        printed = "".join(lines)
        assert f"http://127.0.0.1:{port}/review" in printed and f"http://127.0.0.1:{prometheus_port}" in printed
        deadline = time.monotonic() + 60
        while True:  # Prometheus scrapes the server with the demo token
            targets = httpx.get(f"http://127.0.0.1:{prometheus_port}/api/v1/targets", timeout=5).json()
            if [t["health"] for t in targets["data"]["activeTargets"]] == ["up"]:
                break
            assert time.monotonic() < deadline, targets
            time.sleep(0.5)
    finally:
        os.killpg(stack.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole foreground group
        assert stack.wait(timeout=90) == 0
    for stopped in (port, prometheus_port):
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{stopped}/", timeout=2)
