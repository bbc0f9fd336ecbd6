"""Every check against the real lab, engine, PostgreSQL and Prometheus.

On a healthy stack every check is OK (no false alarm). For each check, the lab fault that
should trip it does trip it, with the right id and status.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from es_doctor.checks.registry import load_all
from es_doctor.config import Target
from es_doctor.findings import Finding, Status
from es_doctor.lab.fault_table import HISTORY_CHECKS, TABLE, FaultSpec

pytestmark = [pytest.mark.integration, pytest.mark.docker]


def diagnose(target: Target, *check_ids: str) -> dict[str, Finding]:
    from es_doctor.runner import diagnose as run

    return {f.id: f for f in run(target, "lab", check_ids).findings}


def wait_for_status(target: Target, check_id: str, expected: Status, timeout: float = 30.0) -> Finding:
    """Re-run one check until it reads ``expected`` (the fault's effect must show in a new window)."""
    deadline = time.monotonic() + timeout
    finding = diagnose(target, check_id)[check_id]
    while finding.status is not expected and time.monotonic() < deadline:
        time.sleep(1.0)
        finding = diagnose(target, check_id)[check_id]
    assert finding.status is expected, f"{check_id}: expected {expected}, got {finding.status}: {finding.summary}"
    return finding


def wait_uptime_recovered(target: Target) -> None:
    """monitoring.uptime reports history: an earlier test's restart of the service shows there until it leaves
    the lab's window (30 s), so a healthy stack is one whose window holds no outage any more."""
    wait_for_status(target, "monitoring.uptime", Status.OK, timeout=target.thresholds.uptime_window_s + 30)


def test_healthy_stack_has_no_false_alarm(healthy_lab: Any) -> None:
    wait_uptime_recovered(healthy_lab.target)
    findings = diagnose(healthy_lab.target)
    problems = {i: f"{f.status.value}: {f.summary}" for i, f in findings.items()
                if f.status not in (Status.OK, Status.SKIP)}
    assert problems == {}
    skipped = {i: f.summary for i, f in findings.items() if f.status is Status.SKIP}
    assert skipped == {}, "every component of the lab is present: nothing should be skipped"
    assert len(findings) == len([s for s in load_all().values() if not s.on_demand])


def test_cli_on_healthy_lab_exits_0(healthy_lab: Any) -> None:
    wait_uptime_recovered(healthy_lab.target)
    env = {**os.environ, "ES_DOCTOR_LAB_DIR": str(healthy_lab.lab_dir)}
    result = subprocess.run([sys.executable, "-m", "es_doctor", "diagnose", "-t", "lab", "--format", "json"],
                            capture_output=True, text=True, env=env, timeout=120, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == "OK"
    assert report["counts"]["OK"] == len([s for s in load_all().values() if not s.on_demand])


#: words the finding's summary must hold, per (fault, check); the statuses come from the lab's fault table
TEXT: dict[tuple[str, str], str] = {
    ("service-exits", "startup.api-port"): "connection refused",
    ("service-exits", "startup.container"): "exit code 1",
    ("service-exits", "deploy.containers"): "email-sender-go (exited)",
    ("config-missing", "startup.config-file"): "missing",
    ("go-env-unset", "startup.go-env"): "GO_ENV",
    ("go-env-unset", "startup.health"): "config",
    ("port-taken", "startup.port-owner"): "squatter",
    ("qdrant-down", "startup.qdrant"): "unreachable",
    ("qdrant-down", "vectors.qdrant"): "unreachable",
    ("qdrant-down", "vectors.collection"): "prerequisite vectors.qdrant",
    ("postgres-down", "startup.postgres"): "PostgreSQL",
    ("slow-api-warn", "performance.latency"): "p95",
    ("slow-api-crit", "performance.latency"): "p95",
    ("errors-warn", "performance.error-rate"): "error rate",
    ("errors-crit", "performance.error-rate"): "error rate",
    ("memory-pressure", "performance.memory"): "MiB",
    ("memory-critical", "performance.memory"): "MiB",
    ("slow-logs", "performance.slow-log"): "SLOW",
    ("collection-missing", "vectors.collection"): "does not exist",
    ("collection-missing", "vectors.dimensions"): "prerequisite vectors.collection",
    ("wrong-vector-size", "vectors.dimensions"): "size 768, expected 1536",
    ("vector-insert-errors", "vectors.insert-errors"): "insert errors",
    ("qdrant-flaky", "vectors.connection-errors"): "Qdrant connection error",
    ("slow-vector-search", "vectors.search"): "search",
    ("manager-down", "inter-manager.status"): "notification-manager",
    ("discovery-broken", "inter-manager.discovery"): "misses",
    ("event-bus-saturated", "inter-manager.event-bus"): "dropped",
    ("event-bus-saturated", "inter-manager.eventbus-log"): "EventBus",
    ("metrics-off", "monitoring.metrics-endpoint"): "unreachable",
    ("metrics-off", "monitoring.prometheus-target"): "down",
    ("prometheus-down", "monitoring.prometheus"): "unreachable",
    ("deploy-log-errors", "deploy.deployment-log"): "error line",
    ("deploy-log-errors", "deploy.migration-log"): "error line",
    ("image-drift", "deploy.image-drift"): "drift",
    ("qdrant-flaky", "monitoring.alerts"): "EmailSenderQdrantConnectionErrors",
}
TRIPPING = [spec for spec in TABLE if spec.trips]


def test_the_text_table_follows_the_fault_table() -> None:
    assert set(TEXT) == {(spec.name, check) for spec in TABLE for check in spec.trips}


@pytest.mark.parametrize("spec", TRIPPING, ids=[spec.name for spec in TRIPPING])
def test_fault_trips_its_checks_and_nothing_else(healthy_lab: Any, spec: FaultSpec) -> None:
    """The fault trips the checks the lab's fault table lists, with evidence and the cure the table
    names; no other check goes WARN/CRIT but those the table says the fault really causes."""
    healthy_lab.add_fault(spec.name)
    for check_id, status in spec.trips.items():
        # a check reading the signal window (a minute of Prometheus' history) trips once it holds the fault
        timeout = 45.0 + (healthy_lab.target.thresholds.signal_window_s if check_id in HISTORY_CHECKS else 0.0)
        finding = wait_for_status(healthy_lab.target, check_id, Status(status), timeout=timeout)
        assert TEXT[(spec.name, check_id)] in finding.summary, finding.summary
        if finding.status in (Status.WARN, Status.CRIT):
            assert finding.runbook or finding.escalate, f"{check_id} names neither a runbook nor an escalation level"
            assert finding.evidence, f"{check_id} gives no evidence"
    # a fault that restarts the service leaves it starting for a moment, and a loaded host can make
    # one window noisy: what counts is the fault's steady state, read again for up to 30 s
    allowed = set(spec.trips) | spec.also | HISTORY_CHECKS
    deadline = time.monotonic() + 30
    while True:
        findings = diagnose(healthy_lab.target)
        others = {i: f"{f.status.value}: {f.summary}" for i, f in findings.items()
                  if f.status in (Status.WARN, Status.CRIT) and i not in allowed}
        if not others or time.monotonic() > deadline:
            break
        time.sleep(2.0)
    assert others == {}, f"{spec.name} trips checks its table entry does not list"
    if spec.cure is not None:
        runbook, params = spec.cure
        finding = findings[spec.cure_finding or ""]
        assert (finding.runbook, finding.runbook_params) == (runbook, dict(params)), finding


# a symptom that is the consequence of another failure names that cause and its cure
# (fault, check id, expected status, cause, runbook)
CAUSES: list[tuple[str, str, Status, str, str]] = [
    ("collection-missing", "vectors.insert-errors", Status.WARN, "collection-missing", "qdrant-collection-recreate"),
    ("qdrant-down", "vectors.insert-errors", Status.WARN, "qdrant-down", "dependency-restart"),
    ("go-env-unset", "startup.health", Status.CRIT, "config", "config-missing"),
]


@pytest.mark.parametrize(("fault", "check_id", "expected", "cause", "runbook"), CAUSES,
                         ids=[f"{c[0]}->{c[1]}" for c in CAUSES])
def test_a_consequence_points_at_its_cause(healthy_lab: Any, fault: str, check_id: str, expected: Status,
                                           cause: str, runbook: str) -> None:
    healthy_lab.add_fault(fault)
    timeout = 45.0 + (healthy_lab.target.thresholds.signal_window_s if check_id in HISTORY_CHECKS else 0.0)
    finding = wait_for_status(healthy_lab.target, check_id, expected, timeout=timeout)
    assert (finding.cause, finding.runbook) == (cause, runbook), finding


def test_read_only_mode_is_shown_and_explains_the_refused_writes(healthy_lab: Any) -> None:
    api = f"http://127.0.0.1:{healthy_lab.stack.settings.ports.api}"
    httpx.post(f"{api}/api/v1/maintenance/readonly", json={"enabled": True}, timeout=5).raise_for_status()
    mode = wait_for_status(healthy_lab.target, "startup.service-mode", Status.WARN)
    assert "read-only mode is on" in mode.summary and mode.runbook == "service-writes-resume"
    # the lab's own traffic keeps writing: its 503s are the mode's doing, at most WARN, with that cure
    errors = wait_for_status(healthy_lab.target, "performance.error-rate", Status.WARN,
                             timeout=45.0 + healthy_lab.target.thresholds.signal_window_s)
    assert errors.cause == "read-only" and errors.runbook == "service-writes-resume", errors
    assert "read-only mode is on" in errors.summary


def test_manager_timeouts_are_not_slow_requests(healthy_lab: Any) -> None:
    healthy_lab.add_fault("discovery-broken")
    wait_for_status(healthy_lab.target, "inter-manager.discovery", Status.CRIT)
    time.sleep(2.0)  # the lab logs its discovery timeouts meanwhile
    slow = diagnose(healthy_lab.target, "performance.slow-log")["performance.slow-log"]
    evidence = {e.name: e.value for e in slow.evidence}
    assert evidence["timeouts"] == 0, slow.summary
    assert evidence["manager timeouts (not counted: see inter-manager)"] > 0, slow.evidence


def test_every_check_is_tripped_by_some_case() -> None:
    tripped = {check_id for spec in TABLE for check_id, status in spec.trips.items() if status in ("WARN", "CRIT")}
    # tripped elsewhere: the engine by test_diagnose_unreachable, volumes by test_missing_volume_is_critical,
    # the service's mode by test_read_only_mode_is_shown…, coverage by test_fix_lab's recreated collection,
    # the uptime by test_uptime_lab's stopped service
    elsewhere = {"startup.docker-engine", "deploy.volumes", "startup.service-mode", "vectors.coverage",
                 "monitoring.uptime"}
    untested = set(load_all()) - tripped - elsewhere
    assert untested == set(), f"checks no fault trips: {sorted(untested)}"


def test_missing_volume_is_critical(healthy_lab: Any) -> None:
    target = healthy_lab.target.model_copy(deep=True)
    target.docker.volumes = [*target.docker.volumes, "email_sender_volume_that_does_not_exist"]
    finding = diagnose(target, "deploy.volumes")["deploy.volumes"]
    assert finding.status is Status.CRIT
    assert "email_sender_volume_that_does_not_exist" in finding.summary


def test_an_unserved_endpoint_is_unknown_not_down(healthy_lab: Any) -> None:
    target = healthy_lab.target.model_copy(deep=True)
    target.service.api_url = target.service.api_url.rstrip("/") + "/old-version-prefix"
    finding = diagnose(target, "inter-manager.discovery")["inter-manager.discovery"]
    assert finding.status is Status.UNKNOWN
    assert "not served by this version" in finding.summary


def test_metrics_window_starts_at_prometheus_last_scrape(healthy_lab: Any) -> None:
    """With Prometheus scraping the service, the window's first scrape is Prometheus' own (no
    waiting); without it, es-doctor scrapes twice."""
    from es_doctor.checks.context import CheckContext
    from es_doctor.probes.metrics import counter_delta

    target = healthy_lab.target
    name = f"{target.metrics.request_duration}_count"
    # Prometheus scrapes the lab every second; right after a test restarted the service, its last
    # scrapes may belong to the previous process (then es-doctor scrapes twice): wait for a fresh one
    deadline = time.monotonic() + 30
    window = CheckContext(target, "lab").metrics_window().unwrap()
    while not window.source.startswith("Prometheus") and time.monotonic() < deadline:
        time.sleep(1.0)
        window = CheckContext(target, "lab").metrics_window().unwrap()
    assert window.source.startswith("Prometheus"), window.source
    assert target.thresholds.scrape_window_s <= window.seconds <= 60
    before, after = window.before.total(name), window.after.total(name)
    # (right after a restart, Prometheus' scrape may predate the histogram's first observation)
    assert after is not None and after >= (before or 0.0)
    assert counter_delta(window.before, window.after, name) is not None

    alone = target.model_copy(update={"absent": {**target.absent, "prometheus": "not in this test"}})
    own = CheckContext(alone, "lab").metrics_window().unwrap()
    assert own.source == "two scrapes" and own.seconds >= alone.thresholds.scrape_window_s
