"""The Prometheus configuration and alert rules, as promtool and an operator see them.

promtool accepts the scrape configuration and the rules, and the rules pass
their unit tests. Every alert has a test in which it fires and one in which it
stays quiet, so a new alert without tests fails here. Every alert tells the
operator how bad it is, what happened and where the runbook is, and selects
the scrape job the configuration actually has.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
CONFIG = PROMETHEUS / "prometheus.yml"
RULES = PROMETHEUS / "alerts.yml"
RULE_TESTS = PROMETHEUS / "alerts_test.yml"

JOB = "executor"
SEVERITIES = {"critical", "warning"}
ANNOTATIONS = {"summary", "description", "runbook"}
RUNBOOK = "README.md#alerts"
# A metric selector in PromQL: a name followed by an optional label matcher block.
SELECTOR = re.compile(r"\b((?:executor|process)_[a-z_]+|up)\b(\{[^}]*\})?")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary is not None, (
        "promtool is not on PATH: install the Debian package `prometheus` "
        "(python3 tasks.py test does so when it runs as root)"
    )
    return subprocess.run(
        [binary, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def load_yaml(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document


def alerts() -> list[dict[str, Any]]:
    groups = load_yaml(RULES)["groups"]
    assert [g["name"] for g in groups] == [JOB]
    rules: list[dict[str, Any]] = groups[0]["rules"]
    found = [r for r in rules if "alert" in r]
    assert found, "alerts.yml has no alerts"
    return found


def rule_cases() -> list[dict[str, Any]]:
    return [case for test in load_yaml(RULE_TESTS)["tests"] for case in test["alert_rule_test"]]


def test_promtool_accepts_the_scrape_configuration_and_the_rule_file_it_loads() -> None:
    result = promtool("check", "config", str(CONFIG.relative_to(ROOT)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_promtool_accepts_the_alert_rules() -> None:
    result = promtool("check", "rules", str(RULES.relative_to(ROOT)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(alerts())} rules found" in result.stdout


def test_the_alert_rules_pass_their_unit_tests() -> None:
    result = promtool("test", "rules", str(RULE_TESTS.relative_to(ROOT)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_prometheus_scrapes_the_compose_service_every_5s_and_loads_the_alerts() -> None:
    config = load_yaml(CONFIG)
    assert config["global"]["scrape_interval"] == "5s"
    assert config["global"]["evaluation_interval"] == "5s"
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert list(jobs) == [JOB]
    assert jobs[JOB]["static_configs"] == [{"targets": ["executor:9464"]}]


def test_every_alert_fires_in_a_test_that_checks_its_labels_and_annotations() -> None:
    firing: set[str] = set()
    for case in rule_cases():
        for expected in case["exp_alerts"]:
            assert set(expected["exp_annotations"]) == ANNOTATIONS, case["alertname"]
            assert expected["exp_labels"]["severity"] in SEVERITIES, case["alertname"]
            firing.add(case["alertname"])
    untested = sorted({a["alert"] for a in alerts()} - firing)
    assert untested == [], f"alerts with no test case in which they fire: {untested}"


def test_every_alert_stays_quiet_in_a_test() -> None:
    quiet = {case["alertname"] for case in rule_cases() if case["exp_alerts"] == []}
    untested = sorted({a["alert"] for a in alerts()} - quiet)
    assert untested == [], f"alerts with no test case in which they stay quiet: {untested}"


def test_the_unit_tests_name_only_alerts_that_exist() -> None:
    names = {a["alert"] for a in alerts()}
    unknown = sorted({case["alertname"] for case in rule_cases()} - names)
    assert unknown == []


def test_every_alert_has_a_severity_a_summary_a_description_and_the_runbook() -> None:
    names = [a["alert"] for a in alerts()]
    assert len(names) == len(set(names)), "two alerts share a name"
    for alert in alerts():
        name = alert["alert"]
        assert alert["labels"]["severity"] in SEVERITIES, name
        annotations = alert["annotations"]
        assert set(annotations) >= ANNOTATIONS, name
        assert annotations["summary"].strip(), name
        assert "{{" in annotations["description"], f"{name}: the description names no value"
        assert annotations["runbook"] == RUNBOOK, name


def test_every_metric_in_the_alerts_is_selected_from_the_executor_job() -> None:
    unscoped = [
        (alert["alert"], match.group(0))
        for alert in alerts()
        for match in SELECTOR.finditer(alert["expr"])
        if f'job="{JOB}"' not in (match.group(2) or "")
    ]
    assert unscoped == []
