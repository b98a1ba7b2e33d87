"""The Prometheus rules of serving/ops: generated from the policy files, checked and unit-tested
by promtool (Debian package `prometheus`, installed by .ci/run)."""
from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from clinops.ops.files import ALERTS_FILE, OPS_DIR, POLICY_DIR, RULES_DIR, check, generated, write
from clinops.ops.prometheus import alerts, task_thresholds
from clinops.policy import PolicyError, policy_tasks

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool missing: apt-get install prometheus "
                                                              "(.ci/run installs it)")


@pytest.fixture
def project_copy(project_root, tmp_path):
    """The policies and serving/ops of the repository in a scratch project."""
    shutil.copytree(project_root / POLICY_DIR, tmp_path / POLICY_DIR)
    shutil.copytree(project_root / OPS_DIR, tmp_path / OPS_DIR, ignore=shutil.ignore_patterns("secrets"))
    return tmp_path


def promtool(*args, cwd):
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def edit_first_line(path, containing, old, new):
    """Replace ``old`` by ``new`` in the first line of ``path`` containing ``containing``;
    returns the line's index (0-based)."""
    lines = path.read_text().splitlines()
    number = next(i for i, line in enumerate(lines) if containing in line)
    lines[number] = lines[number].replace(old, new)
    path.write_text("\n".join(lines) + "\n")
    return number


def test_committed_files_agree_with_the_policy_files(project_root):
    assert check(project_root) == []


def test_a_threshold_typed_by_hand_is_named_with_file_and_line(project_copy):
    alerts_file = project_copy / OPS_DIR / RULES_DIR / ALERTS_FILE
    number = edit_first_line(alerts_file, 'gap{task="mortality"} > 0.03', "> 0.03", "> 0.04")
    problems = check(project_copy)
    assert len(problems) == 1
    assert problems[0].startswith(f"{OPS_DIR / RULES_DIR / ALERTS_FILE}:{number + 1}: ")
    assert "> 0.04" in problems[0] and "> 0.03" in problems[0]


def test_a_policy_change_changes_the_rules(project_copy):
    fairness = project_copy / POLICY_DIR / "fairness.yaml"
    policy = yaml.safe_load(fairness.read_text())
    policy["tasks"]["readmission"]["pairwise_gap_limits"]["auroc"] = 0.07
    fairness.write_text(yaml.safe_dump(policy))
    assert any('gap{task="readmission"} > 0.05' in p for p in check(project_copy))  # committed file now stale
    write(project_copy)
    assert check(project_copy) == []
    rules = yaml.safe_load((project_copy / OPS_DIR / RULES_DIR / ALERTS_FILE).read_text())["groups"][0]["rules"]
    gap = {r["labels"]["task"]: r["expr"] for r in rules if r["alert"] == "ClinopsGroupAurocGap"}
    assert gap == {"mortality": 'clinops:live_group_auroc:gap{task="mortality"} > 0.03',
                   "readmission": 'clinops:live_group_auroc:gap{task="readmission"} > 0.07'}


def test_an_invalid_policy_is_refused_naming_the_file(project_copy):
    governance = project_copy / POLICY_DIR / "governance.yaml"
    governance.write_text(governance.read_text().replace("degradation_trigger: 0.05", "degradation_trigger: 5"))
    with pytest.raises(PolicyError, match=r"governance\.yaml.*degradation_trigger"):
        generated(project_copy / POLICY_DIR)
    governance.write_text("tasks: [mortality]\n")
    with pytest.raises(PolicyError, match=r"governance\.yaml: tasks: must be a mapping"):
        policy_tasks(governance)


def test_every_alert_has_a_firing_and_a_silent_case(project_root):
    for alert in alerts(task_thresholds(project_root / POLICY_DIR)):
        outcomes = {case.fires for case in alert.cases}
        assert outcomes == {True, False}, alert.name


@needs_promtool
def test_promtool_accepts_config_and_rules_and_the_unit_tests_pass(project_copy):
    prometheus_dir = project_copy / OPS_DIR / "prometheus"
    (prometheus_dir / "secrets").mkdir()
    (prometheus_dir / "secrets" / "metrics-token").write_text("scrape-token\n")  # never committed
    result = promtool("check", "config", "prometheus.yml", cwd=prometheus_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr
    result = promtool("test", "rules", "tests/clinops-alerts.test.yml", cwd=prometheus_dir)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_names_file_and_line_of_a_broken_expression(project_copy):
    alerts_file = project_copy / OPS_DIR / RULES_DIR / ALERTS_FILE
    number = edit_first_line(alerts_file, "expr: clinops_drift_psi{", "clinops_drift_psi{", "clinops_drift_psi{{")
    result = promtool("check", "rules", str(alerts_file), cwd=project_copy)
    assert result.returncode != 0
    assert f"{alerts_file}: {number + 1}:" in result.stdout + result.stderr, result.stdout + result.stderr


@needs_promtool
def test_the_unit_tests_fail_on_a_wrong_comparison(project_copy):
    """A rule that compares with > where the policy says 'at or above' no longer fires at the
    threshold: the promtool unit tests catch it, naming the alert."""
    alerts_file = project_copy / OPS_DIR / RULES_DIR / ALERTS_FILE
    alerts_file.write_text(alerts_file.read_text().replace('override_rate{task="mortality"} >=',
                                                           'override_rate{task="mortality"} >'))
    result = promtool("test", "rules", "tests/clinops-alerts.test.yml", cwd=project_copy / OPS_DIR / "prometheus")
    assert result.returncode != 0
    assert "ClinopsOverrideRateHigh [mortality]: rate at the limit with enough decisions: fires" in result.stderr
