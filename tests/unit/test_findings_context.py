"""Findings read together (issue 21, items 1, 3, 4, 6): the cause named among the findings, problems
cause first, every printed command complete and one the target can run, alerts clearing, uptime lost to
es-doctor's own runs, FIXED verifying what a runbook cures, and Nagios' UNKNOWN on every error path."""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from es_doctor import causality
from es_doctor.checks.context import CheckContext
from es_doctor.checks.registry import Outcome, load_all
from es_doctor.config import Target
from es_doctor.findings import REPORT_SCHEMA_VERSION, Evidence, Finding, Report, Status
from es_doctor.render import json_report, nagios
from es_doctor.runner import _finding as finding_of
from es_doctor.runner import in_context


def _f(check_id: str, status: Status, summary: str = "", cause: str | None = None,
       evidence: list[Evidence] | None = None) -> Finding:
    """A finding as the runner makes it from a check's outcome (its cure from the one table)."""
    return finding_of(load_all()[check_id], Outcome(status, summary or f"{check_id} {status.value}",
                                                    evidence or [], cause), 1.0)


def _report(findings: list[Finding], target: Target | None = None, name: str = "prod",
            config: str | None = None) -> Report:
    ctx = CheckContext(target or Target(service={"config_file": "/srv/email-sender/config.yaml"}), name)
    try:
        linked = in_context(findings, ctx, config)
    finally:
        ctx.close()
    return Report(tool_version="t", target=name, started_at=dt.datetime.now(dt.UTC), duration_ms=1.0,
                  findings=linked)


def _config_missing_report() -> Report:
    """What the lab's config-missing fault gives in Docker mode: the container exits, so the port
    refuses, the stack is incomplete and the metrics endpoint is down; only the config file is the cause."""
    return _report([
        _f("deploy.containers", Status.CRIT, "email-sender-go is exited"),
        _f("monitoring.metrics-endpoint", Status.CRIT, "metrics endpoint down", cause="service-down"),
        _f("startup.api-port", Status.CRIT, "nothing accepts connections on 127.0.0.1:8080"),
        _f("startup.config-file", Status.CRIT, "config.yaml is missing"),
        _f("startup.container", Status.CRIT, "container exited (code 1)"),
        _f("performance.memory", Status.OK, "fine"),
        _f("inter-manager.status", Status.SKIP, "skipped: prerequisite startup.api-port is CRIT: …"),
    ], Target(service={"config_file": "/srv/email-sender/config.yaml"}))


def test_the_cause_of_a_service_failing_at_start_is_its_root_and_comes_first() -> None:
    report = _config_missing_report()
    problems = report.problems()
    assert problems[0].id == "startup.config-file"
    assert [f.id for f in report.roots()] == ["startup.config-file"]
    for finding in problems[1:]:
        assert finding.consequence_of == "startup.config-file", finding
    assert set(report.consequences("startup.config-file")) == {
        "deploy.containers", "monitoring.metrics-endpoint", "startup.api-port", "startup.container"}
    # the cure printed first is the cause's, and a consequence prints its root's cure, not its own
    assert problems[0].fix_command() == "es-doctor -t prod fix config-missing"
    assert {f.fix_command() for f in problems} == {"es-doctor -t prod fix config-missing"}
    assert next(f for f in report.findings if f.id == "deploy.containers").runbook == "stack-restart"


def test_the_port_owner_is_the_root_when_another_process_holds_the_port() -> None:
    report = _report([_f("startup.api-port", Status.CRIT), _f("deploy.containers", Status.CRIT),
                      _f("startup.port-owner", Status.CRIT, "pid 42 (nc) holds port 8080"),
                      _f("monitoring.metrics-endpoint", Status.CRIT, cause="service-down")])
    assert [f.id for f in report.roots()] == ["startup.port-owner"]
    assert report.problems()[0].fix_command() == "es-doctor -t prod fix port-in-use"


def test_problems_are_roots_by_severity_then_consequences_and_ok_or_skip_are_not_problems() -> None:
    report = _report([_f("performance.memory", Status.WARN), _f("startup.qdrant", Status.CRIT),
                      _f("vectors.qdrant", Status.CRIT), _f("startup.health", Status.UNKNOWN),
                      _f("deploy.volumes", Status.SKIP), _f("startup.postgres", Status.OK)])
    assert [f.id for f in report.problems()] == ["startup.qdrant", "performance.memory", "vectors.qdrant",
                                                 "startup.health"]
    assert report.problems()[2].consequence_of == "startup.qdrant"


def test_json_names_roots_and_consequences_in_the_shipped_schema() -> None:
    data = json_report.as_dict(_config_missing_report())
    schema = json.loads((Path(__file__).parents[2] / "docs" / "report.schema.json").read_text())
    assert schema == json_report.report_schema()
    assert set(schema["required"]) <= set(data)
    finding_schema = schema["$defs"]["Finding"]
    for finding in data["findings"]:
        assert set(finding) <= set(finding_schema["properties"]) and set(finding_schema["required"]) <= set(finding)
    assert data["schema_version"] == REPORT_SCHEMA_VERSION
    assert data["root_causes"] == ["startup.config-file"]
    assert data["problems"][0] == "startup.config-file"
    by_id = {f["id"]: f for f in data["findings"]}
    assert by_id["startup.api-port"]["consequence_of"] == "startup.config-file"
    assert "startup.api-port" in by_id["startup.config-file"]["consequences"]
    assert by_id["startup.config-file"]["fix_command"] == "es-doctor -t prod fix config-missing"


def test_nagios_puts_the_cause_before_the_symptom() -> None:
    report = _report([_f("monitoring.metrics-endpoint", Status.CRIT, "metrics endpoint refused",
                         cause="service-down"),
                      _f("startup.api-port", Status.CRIT, "nothing accepts connections on 127.0.0.1:8080")])
    first = nagios.first_line(report)
    assert first.index("startup.api-port") < first.index("monitoring.metrics-endpoint"), first
    long_text = nagios.long_text(report)
    assert long_text[0].startswith("CRIT startup.api-port:")
    assert "[consequence of startup.api-port]" in long_text[1]


def test_no_cycle_in_the_cause_table() -> None:
    for start in causality.CAUSED_BY:
        seen = {start}
        frontier = list(causality.CAUSED_BY[start])
        while frontier:
            current = frontier.pop()
            assert current != start, f"{start} is its own cause"
            if current not in seen:
                seen.add(current)
                frontier.extend(causality.CAUSED_BY.get(current, ()))


def test_every_printed_command_names_the_target_and_the_config_file_quoted(tmp_path: Path) -> None:
    config = str(tmp_path / "my config.yaml")
    report = _report([_f("performance.latency", Status.CRIT)], Target(service={"config_file": "/etc/x.yaml"}),
                     name="eu west", config=config)
    command = report.problems()[0].fix_command()
    assert command == f"es-doctor -c '{config}' -t 'eu west' fix vector-cache-tune"
    assert shlex.split(command)[1:5] == ["-c", config, "-t", "eu west"]


def test_a_cure_the_target_cannot_run_is_not_printed_the_labs_restart_or_the_escalation_is() -> None:
    no_docker = Target(absent={"docker": "the lab runs in process mode (no Docker engine)"})
    lab = _report([_f("startup.postgres", Status.CRIT, "PostgreSQL refuses connections")], no_docker, name="lab")
    finding = lab.problems()[0]
    assert finding.runbook == "dependency-restart"  # what cures it where Docker is
    assert finding.fix_command() == "es-doctor lab restart postgres"
    other = _report([_f("startup.postgres", Status.CRIT, "PostgreSQL refuses connections")], no_docker)
    finding = other.problems()[0]
    assert finding.fix_command() is None
    assert finding.escalate_command == ("es-doctor -t prod escalate --level 1 --severity high --issue "
                                        "'startup.postgres: PostgreSQL refuses connections'")
    assert "…" not in finding.escalate_command


def test_a_runbook_parameter_the_hint_cannot_give_is_never_printed_without_it() -> None:
    docker = Target()
    without = _report([_f("deploy.deployment-log", Status.CRIT, "latest deployment log has 2 error line(s)")],
                      docker).problems()[0]
    assert without.fix_command() is None  # deploy-rollback needs previous_image: nothing names it here
    assert without.escalate_command is not None and "--level 2" in without.escalate_command
    given = _report([_f("deploy.deployment-log", Status.CRIT, "errors",
                        evidence=[Evidence(name="previous image", value="email-sender-go:1.4.2")])],
                    docker).problems()[0]
    assert given.fix_command() == "es-doctor -t prod fix deploy-rollback -p previous_image=email-sender-go:1.4.2"


def test_every_finding_a_runbook_cures_is_among_what_it_verifies() -> None:
    from es_doctor.runbooks.loader import load_runbooks

    for rb in load_runbooks([]).runbooks.values():
        assert set(rb.cures) <= set(rb.verify), f"{rb.id} cures {sorted(set(rb.cures) - set(rb.verify))} unverified"


def _alerts(firing: dict[str, str], critical: list[str]) -> Finding:
    return _f("monitoring.alerts", Status.CRIT if critical else Status.WARN, "alerts firing",
              cause="alert:" + next(iter(firing.values())),
              evidence=[Evidence(name="rules", value=12), Evidence(name="firing", value=list(firing)),
                        Evidence(name="watching", value=firing), Evidence(name="critical", value=critical)])


def test_an_alert_whose_check_is_ok_now_is_clearing_with_no_cure() -> None:
    report = _report([_alerts({"EsDoctorQdrantDown": "vectors.qdrant"}, ["EsDoctorQdrantDown"]),
                      _f("vectors.qdrant", Status.OK, "Qdrant answers")])
    alerts = next(f for f in report.findings if f.id == "monitoring.alerts")
    assert alerts.status is Status.OK
    assert "clearing (alert still in its window)" in alerts.summary
    assert alerts.fix_command() is None and alerts.escalate_command is None and alerts.runbook is None


def test_an_alert_whose_check_is_still_bad_keeps_its_cure_and_follows_it() -> None:
    report = _report([_alerts({"EsDoctorQdrantDown": "vectors.qdrant"}, ["EsDoctorQdrantDown"]),
                      _f("vectors.qdrant", Status.CRIT, "Qdrant refuses")])
    alerts = next(f for f in report.findings if f.id == "monitoring.alerts")
    assert alerts.status is Status.CRIT and alerts.consequence_of == "vectors.qdrant"


def test_partly_clearing_alerts_keep_the_live_ones_cure() -> None:
    report = _report([_alerts({"A": "vectors.qdrant", "B": "performance.memory"}, ["A"]),
                      _f("vectors.qdrant", Status.OK), _f("performance.memory", Status.WARN)])
    alerts = next(f for f in report.findings if f.id == "monitoring.alerts")
    assert alerts.status is Status.WARN and alerts.cause == "alert:performance.memory"
    assert "clearing" in alerts.summary and "A (vectors.qdrant OK now)" in alerts.summary


def test_own_runs_are_read_from_the_audit_log_of_this_target(tmp_path: Path) -> None:
    from es_doctor.own_runs import runs

    log = tmp_path / "audit.jsonl"
    now = time.time()

    def stamp(t: float) -> str:
        return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    lines = [{"time": stamp(now - 20), "event": "fix.start", "run_id": "a1", "target": "lab",
              "runbook": "service-restart"},
             {"time": stamp(now - 15), "event": "fix.end", "run_id": "a1", "target": "lab"},
             {"time": stamp(now - 10), "event": "fix.start", "run_id": "b2", "target": "prod",
              "runbook": "stack-restart"},
             {"time": stamp(now - 3600), "event": "fix.start", "run_id": "c3", "target": "lab", "runbook": "x"},
             {"time": stamp(now - 3590), "event": "fix.end", "run_id": "c3", "target": "lab"}]
    log.write_text("cut line\n" + "\n".join(json.dumps(x) for x in lines) + "\n")
    found = runs(log, "lab", now - 30, now)
    assert [(r.run_id, r.runbook) for r in found] == [("a1", "service-restart")]
    assert 4.5 < found[0].overlap(now - 30, now) < 5.5
    assert runs(tmp_path / "none.jsonl", "lab", now - 30, now) == []
    os.mkfifo(tmp_path / "fifo")
    assert runs(tmp_path / "fifo", "lab", now - 30, now) == []  # refused at once, never waited on


@pytest.fixture
def nagios_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ES_DOCTOR_")}
    config = tmp_path / "es-doctor.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "state"), "targets": {"dead": {
        "service": {"api_url": "http://127.0.0.1:9"}, "absent": {"docker": "x", "qdrant": "x", "postgres": "x",
                                                                  "prometheus": "x", "grafana": "x", "redis": "x"}}}}))
    env.update({"ES_DOCTOR_CONFIG": str(config), "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "x"),
                "ES_DOCTOR_LAB_DIR": str(tmp_path / "nolab")})
    return env


@pytest.mark.parametrize("args", [
    ["-t", "nosuch", "diagnose", "-f", "nagios"],
    ["diagnose", "--check", "nosuch", "--format", "nagios"],
    ["diagnose", "--format=nagios", "--deadline", "0"],
    ["diagnose", "-f", "nagios", "--no-such-option"],
    ["-t", "lab", "diagnose", "-f", "nagios"],  # the lab is not running
    ["-c", "BROKEN", "diagnose", "-f", "nagios"],
])
def test_nagios_says_unknown_and_exits_3_on_every_error(args: list[str], nagios_env: dict[str, str],
                                                        tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("targets: [unclosed\n")
    args = [str(broken) if a == "BROKEN" else a for a in args]
    result = subprocess.run([sys.executable, "-m", "es_doctor", *args], capture_output=True, text=True,
                            env=nagios_env, timeout=120, check=False)
    assert result.returncode == 3, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ES-DOCTOR UNKNOWN: ") and len(lines[0]) > 25, result.stdout


def test_nagios_on_a_real_run_is_unchanged(nagios_env: dict[str, str]) -> None:
    result = subprocess.run([sys.executable, "-m", "es_doctor", "diagnose", "-f", "nagios"], capture_output=True,
                            text=True, env=nagios_env, timeout=120, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout.startswith("ES-DOCTOR CRITICAL: startup.api-port CRIT")
