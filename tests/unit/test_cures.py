"""One answer to "what cures this finding": es_doctor.cures, and everything that derives from it.

Fails when any two statements of a cure disagree (the table, the runbooks' ``cures:``, the alert
rules' labels, ``es-doctor checks``, the report's hint, ``fix <finding-id>``), when a check has
neither a cure nor an escalation level, or when a runbook cures a finding that does not exist.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from es_doctor import cures
from es_doctor.alert_rules import FINDINGS, RuleOptions, render_rules
from es_doctor.checks.registry import load_all
from es_doctor.config import Target
from es_doctor.runbooks.loader import load_runbooks


@pytest.fixture(scope="module")
def runbooks() -> dict[str, object]:
    return dict(load_runbooks([]).runbooks)


def test_every_check_has_a_cure_or_an_escalation_and_no_cure_names_an_unknown_check() -> None:
    checks = load_all()
    assert set(cures.CURES) == set(checks), "the cure table and the registered checks must name the same findings"
    for check_id in checks:
        cure = cures.cure_of(check_id)
        assert cure.default is not None or cure.escalate in (1, 2, 3), check_id
        for cause, remedy in cure.causes.items():
            assert remedy is not None or cure.escalate in (1, 2, 3), f"{check_id} ({cause}): no runbook, no level"


def test_every_cure_is_a_shipped_runbook_and_its_params_are_declared(runbooks: dict[str, object]) -> None:
    for check_id, cure in cures.CURES.items():
        for remedy in (cure.default, *cure.causes.values()):
            if remedy is None:
                continue
            assert remedy.runbook in runbooks, f"{check_id}: cure {remedy.runbook} is not a runbook"
            declared = runbooks[remedy.runbook].params  # type: ignore[attr-defined]
            for name in remedy.params:
                assert name in declared, f"{check_id}: {remedy.runbook} has no parameter {name}"


def test_the_runbooks_cures_lists_equal_the_table(runbooks: dict[str, object]) -> None:
    checks = load_all()
    stated = set()
    for rb_id, rb in runbooks.items():
        for finding in rb.cures:  # type: ignore[attr-defined]
            assert finding in checks, f"runbook {rb_id} cures {finding!r}, which no check reports"
            stated.add((finding, rb_id))
    assert stated == cures.pairs(), (
        f"only in runbooks' cures: {sorted(stated - cures.pairs())}; only in es_doctor.cures: "
        f"{sorted(cures.pairs() - stated)}")


def test_alert_rules_name_the_finding_and_its_cure() -> None:
    rules = yaml.safe_load(render_rules(Target(), RuleOptions("prod")))["groups"][0]["rules"]
    assert {r["alert"] for r in rules} == set(FINDINGS)
    checks = load_all()
    for rule in rules:
        finding = rule["labels"]["finding"]
        assert finding in checks
        remedy = cures.remedy_for(finding)
        if remedy is None:
            assert rule["labels"]["escalate"] == str(cures.escalation_for(finding))
            level = rule["labels"]["escalate"]
            assert f"es-doctor -t prod escalate --level {level}" in rule["annotations"]["description"]
        else:
            assert rule["labels"]["runbook"] == remedy.runbook
            # the operator paged by the alert is told the command that applies the finding's cure
            assert f"es-doctor -t prod fix {finding}" in rule["annotations"]["description"]


def test_causes_pick_the_specific_cure_and_alerts_follow_their_finding() -> None:
    assert cures.remedy_for("vectors.insert-errors") == cures.Remedy("qdrant-dimension-fix")
    assert cures.remedy_for("vectors.insert-errors", cures.COLLECTION_MISSING).runbook == "qdrant-collection-recreate"  # type: ignore[union-attr]
    qdrant = cures.remedy_for("vectors.insert-errors", cures.QDRANT_DOWN)
    assert qdrant is not None and qdrant.runbook == "dependency-restart"
    assert dict(qdrant.params) == {"component": "qdrant"}
    assert cures.remedy_for("performance.error-rate", cures.READ_ONLY).runbook == "service-writes-resume"  # type: ignore[union-attr]
    assert cures.remedy_for("performance.error-rate") is None
    assert cures.escalation_for("performance.error-rate") == 1
    assert cures.escalation_for("startup.docker-engine") == 2
    assert cures.remedy_for("monitoring.alerts", "alert:performance.memory") == cures.remedy_for("performance.memory")
    assert cures.remedy_for("monitoring.alerts", cures.UNKNOWN_ALERT) is None
    assert cures.escalation_for("monitoring.alerts", cures.UNKNOWN_ALERT) == 1
    # a cause the table does not know falls back to the default cure
    assert cures.remedy_for("startup.api-port", "no-such-cause") == cures.remedy_for("startup.api-port")
    assert cures.Remedy("dependency-restart", {"component": "postgres"}).command() == \
        "es-doctor fix dependency-restart -p component=postgres"


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("ES_DOCTOR_")}
    full.update(env)
    return subprocess.run([sys.executable, "-m", "es_doctor", *args], capture_output=True, text=True, env=full,
                          timeout=120, check=False)


@pytest.fixture
def dead_stack(tmp_path: Path) -> dict[str, str]:
    """A target whose every component refuses connections (real refusals on closed loopback ports)."""
    config = tmp_path / "es-doctor.yaml"
    config.write_text(yaml.safe_dump({
        "state_dir": str(tmp_path / "state"), "audit_log": str(tmp_path / "state" / "audit.jsonl"),
        "targets": {"dead": {
            "service": {"api_url": "http://127.0.0.1:9", "metrics_url": "http://127.0.0.1:9/metrics",
                        "log_dir": str(tmp_path / "logs")},
            "qdrant": {"url": "http://127.0.0.1:9"},
            "postgres": {"dsn": "postgresql://u@127.0.0.1:9/db"},
            "prometheus": {"url": "http://127.0.0.1:9"},
            "absent": {"docker": "not in this test", "grafana": "not in this test", "redis": "not in this test"},
        }}}))
    return {"ES_DOCTOR_CONFIG": str(config), "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
            "ES_DOCTOR_LAB_DIR": str(tmp_path / "nolab")}


def test_fix_of_a_finding_runs_exactly_the_cure_the_report_printed(dead_stack: dict[str, str]) -> None:
    report = _cli("diagnose", "--format", "json", env=dead_stack)
    findings = {f["id"]: f for f in json.loads(report.stdout)["findings"]}
    table = _cli("diagnose", env=dead_stack).stdout
    assert findings["startup.postgres"]["runbook"] == "dependency-restart"
    assert findings["startup.postgres"]["runbook_params"] == {"component": "postgres"}
    # no Docker on this target: the restart cannot run here, so the printed command is the escalation
    # (complete: target, level, severity, issue), never a fix that would be REFUSED
    assert "fix: es-doctor fix dependency-restart" not in table
    assert findings["startup.postgres"]["fix_command"] is None
    assert findings["startup.postgres"]["escalate_command"].startswith(
        "es-doctor -t dead escalate --level 1 --severity high --issue 'startup.postgres: ")
    assert findings["startup.postgres"]["escalate_command"] in table
    for finding_id in ("startup.postgres", "startup.qdrant", "startup.api-port", "monitoring.prometheus"):
        finding = findings[finding_id]
        assert finding["status"] == "CRIT", finding
        planned = _cli("fix", finding_id, "--dry-run", env=dead_stack)
        assert f"Plan: {finding['runbook']} " in planned.stdout, planned.stdout + planned.stderr
        if finding["fix_command"] is None:  # the target cannot run it: REFUSED, and what to run instead
            assert "REFUSED" in planned.stdout and f"instead: {finding['escalate_command']}" in planned.stdout
        for key, value in finding["runbook_params"].items():
            assert f"{key}={value}" in planned.stdout


def test_fix_of_a_finding_without_a_runbook_names_the_escalation(dead_stack: dict[str, str], tmp_path: Path) -> None:
    config = Path(dead_stack["ES_DOCTOR_CONFIG"])
    data = yaml.safe_load(config.read_text())
    data["targets"]["dead"]["absent"].pop("docker")
    data["targets"]["dead"]["docker"] = {"host": f"unix://{tmp_path}/no-docker.sock"}
    config.write_text(yaml.safe_dump(data))
    result = _cli("fix", "startup.docker-engine", "--dry-run", env=dead_stack)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "es-doctor -t dead escalate --level 2 --severity high --issue 'startup.docker-engine: " in result.stderr
    assert "Plan:" not in result.stdout


def test_checks_lists_each_cure_from_the_table(dead_stack: dict[str, str]) -> None:
    result = _cli("checks", env={**dead_stack, "COLUMNS": "300"})
    assert result.returncode == 0
    assert "service-writes-resume" in result.stdout and "escalate level 2" in result.stdout
