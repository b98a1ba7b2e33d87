"""Settings resolved once: one frozen object per task, validated, stored in the bundle, used by the server."""
from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from clinops.config import ParamsError, load_params
from clinops.fairness import age_groups, fairness_alerts, subgroup_table
from clinops.modeling import ModelBundle
from clinops.settings import SettingsError, TaskSettings, resolve_task_settings
from serving.testing import ServerThread, build_demo_bundle, demo_app, demo_frame, demo_settings, demo_token

from tests.fixtures.params import tiny_raw


def _project(tmp_path: Path, params: dict, *, fairness: dict | None = None, governance: dict | None = None) -> Path:
    """A parameter file and its own policy files in a temporary folder (never the live ones)."""
    pol = tmp_path / "policies"
    pol.mkdir()
    (pol / "fairness.yaml").write_text(yaml.safe_dump(fairness or {
        "action": "human_review", "min_group_size": 30, "pairwise_gap_limits": {"auroc": 0.03},
        "tasks": {"mortality": {}, "readmission": {"pairwise_gap_limits": {"auroc": 0.05}}}}))
    (pol / "drift.yaml").write_text(yaml.safe_dump({"psi": {"bins": 8}, "tasks": {"mortality": {},
                                                                                  "readmission": {"psi": {"bins": 6}}}}))
    (pol / "governance.yaml").write_text(yaml.safe_dump(governance or {
        "degradation_trigger": 0.05, "fairness_policy": "fairness.yaml",
        "tasks": {"mortality": {}, "readmission": {"degradation_trigger": 0.07}}}))
    raw = tiny_raw(tmp_path, name="settings-test", policies={section: str(pol / f"{section}.yaml")
                                                             for section in ("fairness", "drift", "governance")})
    for key, value in params.items():  # merge a section, do not replace it
        raw[key] = {**raw[key], **value} if isinstance(raw.get(key), dict) else value
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_each_task_gets_its_overrides_from_the_one_place_that_names_them(tmp_path):
    P = load_params(_project(tmp_path, {"readmission": {"modeling": {"threshold": 0.2}}}))
    primary, readm = resolve_task_settings(P, "primary"), resolve_task_settings(P, "readmission")
    assert (primary.operating_threshold, readm.operating_threshold) == (0.40, 0.2)
    assert (primary.fairness.pairwise_gap_limits["auroc"], readm.fairness.pairwise_gap_limits["auroc"]) == (0.03, 0.05)
    assert (primary.drift.psi_bins, readm.drift.psi_bins) == (8, 6)
    assert (primary.governance.degradation_trigger, readm.governance.degradation_trigger) == (0.05, 0.07)
    assert (primary.age_feature, readm.age_feature) == ("age", None)
    assert any(s.endswith("run.yaml") for s in primary.sources)
    assert any(s.endswith("policies/fairness.yaml") for s in primary.sources)


def test_a_run_overrides_a_policy_rule_by_name_and_it_is_validated(tmp_path):
    P = load_params(_project(tmp_path, {"fairness": {"policy_overrides": {"min_group_size": 12}}}))
    assert resolve_task_settings(P, "primary").fairness.min_group_size == 12
    (tmp_path / "bad").mkdir()
    bad = load_params(_project(tmp_path / "bad", {"fairness": {"policy_overrides": {"pairwise_gap_limits": {"auroc": 3}}}}))
    with pytest.raises(SettingsError, match=r"fairness.policy_overrides.*pairwise_gap_limits.auroc"):
        resolve_task_settings(bad, "primary")


@pytest.mark.parametrize("key, place", [("threshold", "modeling.threshold"), ("auroc_gap", "pairwise_gap_limits.auroc"),
                                        ("min_group_size", "policy_overrides.min_group_size")])
def test_a_key_that_said_the_same_as_another_is_refused_naming_where_it_lives(tmp_path, key, place):
    with pytest.raises(ParamsError, match=rf"fairness.{key}: no longer a parameter.*{re.escape(place)}"):
        load_params(_project(tmp_path, {"fairness": {key: 0.1 if key != "min_group_size" else 5}}))


def test_two_different_fairness_policies_are_refused(tmp_path):
    path = _project(tmp_path, {}, governance={"fairness_policy": "elsewhere.yaml", "tasks": {"mortality": {},
                                                                                             "readmission": {}}})
    with pytest.raises(SettingsError, match="one fairness policy per run"):
        resolve_task_settings(load_params(path), "primary")


def test_settings_survive_the_bundle_round_trip(tmp_path):
    settings = resolve_task_settings(load_params(_project(tmp_path, {})), "readmission")
    assert TaskSettings.from_dict(settings.to_dict()) == settings
    bundle_dir = build_demo_bundle(tmp_path / "bundle", n=400, seed=1, settings=settings)
    loaded = ModelBundle.load(bundle_dir)
    assert loaded.task_settings() == settings
    assert loaded.threshold == settings.operating_threshold
    assert len(loaded.reference[loaded.feature_names[0]]["bin_edges"]) <= settings.drift.psi_bins + 1
    unsettled = dataclasses.replace(loaded, settings=None)
    with pytest.raises(SettingsError, match="settings: missing"):
        unsettled.task_settings()


def test_the_server_alerts_with_the_settings_of_the_reports(tmp_path):
    """A readmission model (AUROC gap 0.05, threshold 0.15) and an own-cohort model with other age
    edges: the live fairness rules, groups and threshold are the bundle's, computed as the reports do."""
    base = demo_settings()
    readm = dataclasses.replace(demo_settings(task="readmission"), age_feature="age", sex_feature="sex_male")
    own = dataclasses.replace(base, age_edges=(18.0, 50.0, 75.0))
    for settings in (readm, own):
        bundle_dir = build_demo_bundle(tmp_path / f"b{len(list(tmp_path.iterdir()))}", n=600, seed=3, settings=settings)
        state = tmp_path / f"state-{settings.operating_threshold}-{len(settings.age_edges)}"
        with ServerThread(demo_app(bundle_dir, state, min_outcomes=60)) as server, \
                httpx.Client(base_url=server.base_url, timeout=30) as client:
            X, _ = demo_frame(100, seed=11)
            rows = []
            for i, (_, row) in enumerate(X.iterrows()):
                record = {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))}
                record.update(sex_male=i % 2, vasopressor=int(record["vasopressor"]),
                              mech_vent=int(record["mech_vent"]), age=float(20 + (i * 7) % 75))
                r = client.post("/v1/predictions", json={"encounter_id": "30000001", "purpose": "direct_care",
                                                         "features": record}, headers=demo_token("system"))
                assert r.status_code == 200, r.text
                rows.append((r.json()["prediction_id"], r.json()["probability"], record["age"], i % 2))
            rng = np.random.default_rng(5)
            y = (rng.random(len(rows)) < 0.3).astype(int)
            for (pid, *_), outcome in zip(rows, y):
                r = client.post("/v1/outcomes", json={"prediction_id": pid, "outcome": int(outcome)},
                                headers=demo_token("system"))
                assert r.status_code == 200, r.text
            live = r.json()["live"]
        prob = np.array([p for _, p, _, _ in rows])
        groups = {"sex": np.where(np.array([m for *_, m in rows]) == 1, "male", "female"),
                  "age_group": age_groups(np.array([a for _, _, a, _ in rows]),
                                          edges=list(settings.age_edges)).astype(str).to_numpy()}
        table = subgroup_table(y, prob, groups, threshold=settings.operating_threshold, n_boot=0, seed=None,
                               min_group_size=settings.fairness.min_group_size)
        expected = [a.to_dict() for a in fairness_alerts(table, settings.fairness)]
        assert expected, "the scenario must break a rule, or the comparison proves nothing"
        assert live["fairness_alerts"] == expected
        estimable = {(a, str(g)): float(r["auroc"]) for (a, g), r in table.iterrows()
                     if a != "overall" and bool(r["estimable"])}
        got = {(a, g): v for a, per in live["group_auroc"].items() for g, v in per.items()}
        assert got and got == pytest.approx(estimable, abs=1e-12)
        assert {g for a, g in got if a == "age_group"} <= {str(x) for x in age_groups(
            np.array([30.0, 60.0, 90.0]), edges=list(settings.age_edges))}, "the bundle's age groups"
        for alert in live["fairness_alerts"]:
            assert alert["threshold"] == settings.fairness.pairwise_gap_limits[alert["metric"]]

