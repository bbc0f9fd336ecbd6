"""monitoring.uptime against the lab's real Prometheus (scraping the service every second): a service stopped
for part of the window trips it, the history Prometheus holds is said when it is shorter than the window,
and the generated uptime alert rules compute the same uptime."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
import yaml

from es_doctor.alert_rules import RuleOptions, render_rules
from es_doctor.config import Target
from es_doctor.findings import Finding, Status
from es_doctor.lab.layout import LAB_UPTIME_WINDOW_S, SERVICE

pytestmark = [pytest.mark.integration, pytest.mark.docker]

CHECK = "monitoring.uptime"


def uptime(target: Target) -> Finding:
    from es_doctor.runner import diagnose

    return {f.id: f for f in diagnose(target, "lab", (CHECK,)).findings}[CHECK]


def wait_for(target: Target, wanted: set[Status], timeout: float) -> Finding:
    deadline = time.monotonic() + timeout
    finding = uptime(target)
    while finding.status not in wanted and time.monotonic() < deadline:
        time.sleep(1.0)
        finding = uptime(target)
    assert finding.status in wanted, f"expected {wanted}, got {finding.status}: {finding.summary}"
    return finding


def evidence(finding: Finding) -> dict[str, Any]:
    return {e.name: e.value for e in finding.evidence}


def test_a_service_stopped_for_part_of_the_window_trips_the_uptime(healthy_lab: Any) -> None:
    target: Target = healthy_lab.target
    assert target.thresholds.uptime_window_s == LAB_UPTIME_WINDOW_S
    # an earlier test may have restarted the service: its outage must first leave the window
    healthy = wait_for(target, {Status.OK}, LAB_UPTIME_WINDOW_S + 30)
    assert evidence(healthy)["failed scrapes"] == 0 and evidence(healthy)["scrapes"] > 0, healthy.evidence

    healthy_lab.stack.stop_component(SERVICE)
    try:
        # one failed scrape of ~30 is under 99 %: CRITICAL
        down = wait_for(target, {Status.CRIT}, 20)
    finally:
        time.sleep(3.0)  # a few more failed scrapes: an outage of several seconds
        healthy_lab.stack.start_component(SERVICE)
        healthy_lab.stack.wait_healthy(60)
    assert "scrapes failed" in down.summary and "CRITICAL under 99 %" in down.summary, down.summary
    assert down.escalate == 1 and down.runbook is None, down

    # the service is back, the outage is still in the window: the uptime remembers it
    after = uptime(target)
    assert after.status is Status.CRIT, after.summary
    failed = evidence(after)["failed scrapes"]
    assert failed >= 3, after.evidence
    assert evidence(after)["uptime"] < 99.0

    # over the default day, Prometheus holds only this session's minutes: the check says how much
    day = target.model_copy(deep=True)
    day.thresholds.uptime_window_s = 86_400
    over_day = uptime(day)
    assert over_day.status in (Status.WARN, Status.CRIT), over_day.summary
    assert "of history (window 24 h)" in over_day.summary, over_day.summary
    assert evidence(over_day)["window"] == "24 h" and evidence(over_day)["history"] != "24 h"
    assert evidence(over_day)["failed scrapes"] >= failed

    # the thresholds are the target's: nothing is CRITICAL under 0 %
    lenient = target.model_copy(deep=True)
    lenient.thresholds.uptime_crit_pct = 0
    assert uptime(lenient).status is Status.WARN

    # once the outage has left the window, OK again
    wait_for(target, {Status.OK}, LAB_UPTIME_WINDOW_S + 30)


def test_the_generated_uptime_rules_compute_the_checks_uptime(healthy_lab: Any) -> None:
    """The rules es-doctor generates (and the lab's Prometheus loads) evaluate on the real Prometheus over
    the same window, to the same value as the check."""
    target: Target = healthy_lab.target
    rules = {r["alert"]: r for r in yaml.safe_load(render_rules(target, RuleOptions("lab")))["groups"][0]["rules"]}
    expr = rules["EmailSenderUptimeWarning"]["expr"].rsplit(" < ", 1)[0]
    assert expr.endswith("[30s])"), expr
    finding = uptime(target)
    answer = httpx.get(f"{target.prometheus.url}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert answer["status"] == "success", answer
    [series] = answer["data"]["result"]
    ratio = float(series["value"][1])
    assert 0.0 <= ratio <= 1.0
    # the check's figure is cut to two decimals; a scrape may land between the two queries
    assert abs(ratio * 100 - evidence(finding)["uptime"]) <= 100 / LAB_UPTIME_WINDOW_S + 0.01, (ratio, finding)
    loaded = httpx.get(f"{target.prometheus.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
    assert "EmailSenderUptimeCritical" in {r["name"] for g in loaded for r in g["rules"]}
