"""Remediation from alerts, end to end with real parts (the rig: remediation_rig.py): the lab (docker mode),
``es-doctor serve``, a private Prometheus with es-doctor's ``--serve`` alert rule, the real Alertmanager
configured from ``serve --print-alertmanager-config``, and a local receiver standing for the notification
channel. A lab fault is injected; the alert fires, the cure runs under the policy (or an approval from the
CLI), the finding's checks pass, the alert resolves in Alertmanager, the notification arrives."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from remediation_rig import TOKEN, Rig, start_rig
from remediation_rig import wait as _wait

pytestmark = [pytest.mark.integration, pytest.mark.docker]


@pytest.fixture(scope="module")
def rig(lab_stack: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with start_rig(lab_stack, tmp_path_factory.mktemp("remediation"),
                   remediation={"findings": {"inter-manager.event-bus": "approve"}}) as got:
        yield got


def _ended(rig: Rig, rid: str, open_states: tuple[str, ...] = ("queued", "running", "approved")) -> Any:
    got = rig.request(rid)
    return got if got["state"] not in open_states else None


def _waiting(rig: Rig, finding: str, since: float) -> Any:
    got = rig.latest_for(finding, since)
    return got if got and got["state"] == "waiting-approval" else None


def _events(rig: Rig, rid: str) -> list[str]:
    return [e["event"] for e in rig.request(rid)["events"]]


def test_an_alert_cures_an_unattended_finding_and_resolves(rig: Rig, healthy_lab: Any) -> None:
    since = time.time()
    healthy_lab.add_fault("discovery-broken")
    injected = time.time()
    request = _wait(lambda: rig.latest_for("inter-manager.discovery", since), 90, "the alert reaches serve")
    rid = request["id"]
    done = _wait(lambda: _ended(rig, rid), 120, "the cure is verified")
    assert done["state"] == "fixed", done
    assert done["runs"] == 1 and done["runbook"] == "manager-discovery-restart" and done["approved_by"] is None
    events = _events(rig, rid)
    assert events[:1] == ["alert.firing"] and {"policy", "run.start", "request.running", "request.fixed",
                                               "run.end", "notify.resolve"} <= set(events)
    # the channel was told (a resolve for this request)
    assert any(n.get("event") == "resolve" and n.get("id") == f"REQ-{rid}" for n in rig.notes)
    # the alert resolves in Alertmanager once serve's next diagnosis is OK
    _wait(lambda: not rig.am_alerts("inter-manager.discovery"), 90, "the alert resolves in Alertmanager")
    resolved = time.time()
    # the whole chain is in the audit log: the request, the decision, the engine's run, the verdict
    audit = [json.loads(line) for line in (rig.work / "audit.jsonl").read_text().splitlines()]
    mine = [a["event"] for a in audit if a.get("request") == rid or a.get("runbook") == "manager-discovery-restart"]
    assert {"remediation.request", "remediation.decision", "fix.start", "fix.end", "remediation.verdict"} <= set(mine)
    assert TOKEN not in (rig.work / "audit.jsonl").read_text()
    print(f"fault -> alert at serve {done['created'] - injected:.1f}s, webhook -> FIXED "
          f"{done['updated'] - done['created']:.1f}s, fault -> resolved in Alertmanager {resolved - injected:.1f}s")


def test_a_cure_waiting_for_approval_runs_when_approved_from_the_cli(rig: Rig, healthy_lab: Any) -> None:
    since = time.time()
    healthy_lab.add_fault("event-bus-saturated")
    request = _wait(lambda: _waiting(rig, "inter-manager.event-bus", since), 120, "the request waits for an approval")
    rid = request["id"]
    listed = rig.cli("list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    row = next(r for r in json.loads(listed.stdout) if r["id"] == rid)
    assert (row["runbook"], row["state"], row["runs"]) == ("event-bus-purge", "waiting-approval", 0)
    approved = rig.cli("approve", rid, "--by", "oncall-alice")
    assert approved.returncode == 0 and "approved by oncall-alice" in approved.stdout, approved.stderr
    done = _wait(lambda: _ended(rig, rid, ("queued", "running", "approved", "waiting-approval")), 120,
                 "the approved cure is verified")
    assert done["state"] == "fixed" and done["approved_by"] == "oncall-alice" and done["runs"] == 1, done
    shown = rig.cli("show", rid)
    assert shown.returncode == 0 and "request.approved" in shown.stdout and TOKEN not in shown.stdout
    again = rig.cli("approve", rid)
    assert again.returncode == 64 and "not waiting for an approval" in again.stderr


def test_a_cure_that_cannot_work_escalates_and_is_not_tried_again(rig: Rig, healthy_lab: Any) -> None:
    since = time.time()
    healthy_lab.add_fault("manager-down")  # inter-manager.status CRIT; discovery restart does not bring it back
    request = _wait(lambda: rig.latest_for("inter-manager.status", since), 90, "the alert reaches serve")
    rid = request["id"]
    done = _wait(lambda: _ended(rig, rid), 180, "the cure is judged")
    assert done["state"] == "not-fixed", done
    _wait(lambda: "notify.escalate" in _events(rig, rid), 60, "the escalation is sent")
    assert any(str(n.get("id", "")).startswith("INC-") and rid in str(n.get("issue", "")) for n in rig.notes)
    # Alertmanager repeats the firing alert (repeat_interval 4 s): nothing runs a second time
    _wait(lambda: "alert.replay" in _events(rig, rid), 30, "a repeat of the alert")
    assert rig.request(rid)["runs"] == 1
    assert sum(r["runs"] for r in rig.requests() if r["finding"] == "inter-manager.status") == 1


def test_an_alert_that_outlives_its_problem_runs_nothing(rig: Rig, healthy_lab: Any) -> None:
    """An alert still firing on a healthy stack (its for: and evaluation windows outlive the fault): posted to
    the real Alertmanager as Prometheus would, routed to serve, checked now, cleared."""
    since = time.time()
    posted = httpx.post(f"{rig.alertmanager}/api/v2/alerts", json=[{
        "labels": {"alertname": "EsDoctorCheckCritical", "target": "lab", "check": "inter-manager.discovery",
                   "severity": "critical", "source": "es-doctor"},
        "annotations": {"summary": "lab: inter-manager.discovery is CRIT"}}], timeout=5)
    assert posted.status_code == 200, posted.text
    request = _wait(lambda: rig.latest_for("inter-manager.discovery", since), 60, "the stale alert reaches serve")
    done = _wait(lambda: _ended(rig, request["id"]), 60, "the request is judged")
    assert done["state"] == "cleared" and done["runs"] == 0, done
    assert "run.start" not in _events(rig, request["id"])
