"""Remediation's limits, end to end with real parts (the rig of remediation_rig.py: the lab in docker mode,
``es-doctor serve``, the real Prometheus with the ``--serve`` rule and the real Alertmanager routing to serve):
observe mode runs nothing, a cure past its rate limit is escalated instead, and a cause firing with its
symptom is cured once, by the cause's cure, never by the symptom's own default."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from remediation_rig import Rig, start_rig
from remediation_rig import wait as _wait

pytestmark = [pytest.mark.integration, pytest.mark.docker]

OPEN = ("queued", "running", "approved", "waiting-approval")


def _ended(rig: Rig, rid: str) -> Any:
    got = rig.request(rid)
    return got if got["state"] not in OPEN else None


def _fault_judged(rig: Rig, lab: Any, fault: str, finding: str, timeout: float) -> tuple[dict[str, Any], Any]:
    """Inject ``fault``; its alert's request once serve has judged it: (the request as created, as ended)."""
    since = time.time()
    lab.add_fault(fault)
    request = _wait(lambda: rig.latest_for(finding, since), 90, f"the alert for {finding} reaches serve")
    return request, _wait(lambda: _ended(rig, request["id"]), timeout, f"the request for {finding} is judged")


def _events(rig: Rig, rid: str) -> list[str]:
    return [e["event"] for e in rig.request(rid)["events"]]


def _runs_of(work: Path, runbook: str) -> int:
    """The engine's runs of ``runbook`` in serve's audit log (``fix.start`` records)."""
    path = work / "audit.jsonl"
    if not path.exists():
        return 0
    return sum(1 for line in path.read_text().splitlines()
               if (record := json.loads(line)).get("event") == "fix.start" and record.get("runbook") == runbook)


@pytest.fixture
def observing(lab_stack: object, tmp_path: Path) -> Iterator[Rig]:
    with start_rig(lab_stack, tmp_path, remediation={"observe": True}) as got:
        yield got


@pytest.fixture
def limited(lab_stack: object, tmp_path: Path) -> Iterator[Rig]:
    with start_rig(lab_stack, tmp_path, remediation={"max_runs_per_hour": 1}) as got:
        yield got


@pytest.fixture
def cause_and_symptom(lab_stack: object, tmp_path: Path) -> Iterator[Rig]:
    # startup.go-env is the cause; startup.health its symptom (its own default cure: service-restart, unattended)
    with start_rig(lab_stack, tmp_path, checks=("startup.go-env", "startup.health")) as got:
        yield got


def test_observe_mode_records_and_tells_but_runs_nothing(observing: Rig, healthy_lab: Any) -> None:
    rig = observing
    _request, done = _fault_judged(rig, healthy_lab, "discovery-broken", "inter-manager.discovery", 60)
    assert done["state"] == "observed" and done["runs"] == 0, done
    assert "would run manager-discovery-restart" in done["reason"] or "observe" in done["reason"], done
    _wait(lambda: any("observe mode" in str(n.get("issue", "")) and "manager-discovery-restart" in str(n.get("issue"))
                      for n in rig.notes), 30, "the channel is told what would have run")
    assert _runs_of(rig.work, "manager-discovery-restart") == 0
    # nothing ran: the fault is still there, and the alert still fires in Alertmanager
    from es_doctor.lab import faults

    assert "discovery-broken" in faults.active(healthy_lab.stack)
    assert rig.am_alerts("inter-manager.discovery")


def test_past_the_rate_limit_a_cure_is_escalated_instead(limited: Rig, healthy_lab: Any) -> None:
    rig = limited
    first, done = _fault_judged(rig, healthy_lab, "discovery-broken", "inter-manager.discovery", 120)
    assert done["state"] == "fixed" and done["runs"] == 1, done
    _wait(lambda: not rig.am_alerts("inter-manager.discovery"), 90, "the alert resolves in Alertmanager")
    # it comes back within the hour (the lab fires a one-shot fault when it appears in its faults file)
    from es_doctor.lab import fault_state, faults

    faults.clear(healthy_lab.stack, "discovery-broken", wait=60)
    def gone() -> bool:
        state = fault_state.Probe(healthy_lab.stack).service()
        return state is not None and "discovery-broken" not in state.get("faults", [])

    _wait(gone, 30, "the service saw the fault go")
    again = time.time()
    healthy_lab.add_fault("discovery-broken")
    second = _wait(lambda: rig.latest_for("inter-manager.discovery", again), 90, "the new alert reaches serve")
    assert second["id"] != first["id"]
    judged = _wait(lambda: _ended(rig, second["id"]), 60, "the second request is judged")
    assert judged["state"] == "escalated" and judged["runs"] == 0, judged
    assert "rate limit" in judged["reason"], judged
    _wait(lambda: "notify.escalate" in _events(rig, second["id"]), 60, "the escalation is sent")
    assert any(str(n.get("id", "")).startswith("INC-") and second["id"] in str(n.get("issue", "")) for n in rig.notes)
    assert _runs_of(rig.work, "manager-discovery-restart") == 1


def test_a_cause_and_its_symptom_are_cured_once_by_the_causes_cure(cause_and_symptom: Rig, healthy_lab: Any) -> None:
    """go-env-unset: startup.go-env (the cause) and startup.health (CRIT because of it) fire together. The
    symptom's own default cure (service-restart, unattended) must not run: its check names the cause, whose
    cure (config-missing, which writes the service's config: it waits for a person) answers both requests;
    one approval runs it once."""
    rig = cause_and_symptom
    since = time.time()
    healthy_lab.add_fault("go-env-unset")
    cause = _wait(lambda: rig.latest_for("startup.go-env", since), 120, "the cause's alert reaches serve")
    symptom = _wait(lambda: rig.latest_for("startup.health", since), 120, "the symptom's alert reaches serve")
    assert symptom["runbook"] == "service-restart"  # its default cure, as the alert maps it
    for request in (cause, symptom):
        _wait(lambda request=request: rig.request(request["id"])["state"] == "waiting-approval", 60,
              f"{request['finding']} waits for an approval of the cause's cure")
    time.sleep(3)  # serve's worker has looked again (1 s tick): still nothing runs without a person
    assert _runs_of(rig.work, "service-restart") == 0 and _runs_of(rig.work, "config-missing") == 0
    # the decision is noted on the request that leads the group (either): the cause's cure, waiting
    policy = [e for r in (cause, symptom) for e in rig.request(r["id"])["events"] if e["event"] == "policy"]
    assert policy and {e["detail"]["runbook"] for e in policy} == {"config-missing"}, policy
    assert {e["detail"]["action"] for e in policy} == {"wait-approval"}, policy
    approved = rig.cli("approve", cause["id"], "--by", "oncall-bob")
    assert approved.returncode == 0, approved.stderr
    a = _wait(lambda: _ended(rig, cause["id"]), 180, "the cause's cure is verified")
    b = _wait(lambda: _ended(rig, symptom["id"]), 60, "the symptom's request is closed")
    assert a["state"] == "fixed", a
    assert b["state"] in ("fixed", "cleared"), b
    assert _runs_of(rig.work, "config-missing") == 1
    assert _runs_of(rig.work, "service-restart") == 0
