"""serve's alert receiver and remediation worker over its real HTTP server on loopback: the real store,
the real engine of ``fix`` (a stand-in runbook that only says something), real notification channels (a
local HTTP receiver). Only the findings' checks are stood in for (what a check reads is the lab's job:
tests/integration/test_remediation_e2e.py)."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from es_doctor import cures
from es_doctor.config import LoadedConfig, Target, load_targets
from es_doctor.findings import Finding, Report, Status
from es_doctor.serve.daemon import Daemon, settings_from

TOKEN = "s3cret-remediation-token"
STAND_IN = """id: {id}
title: test stand-in (says something, changes nothing)
class: inter-manager
cures: [{cures}]
unattended: {unattended}
steps:
  - name: say
    action: notify
    inputs: {{message: "stand-in cure ran"}}
"""


class Sink(http.server.BaseHTTPRequestHandler):
    got: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).got.append(json.loads(body))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def sink() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    got: list[dict[str, Any]] = []
    handler = type("SinkHandler", (Sink,), {"got": got})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/notify", got
    server.shutdown()


class Checks:
    """Stands in for the findings' checks: a finding is bad until its cure ran (when ``curable``)."""

    def __init__(self, audit: Path) -> None:
        self.bad: set[str] = set()
        self.curable = True
        self.audit = audit
        self.calls = 0

    def runs(self, runbook: str) -> int:
        if not self.audit.exists():
            return 0
        # the stand-in cure's step has run (the engine verifies before it writes fix.end)
        return sum(1 for line in self.audit.read_text().splitlines()
                   if json.loads(line).get("event") == "fix.step" and json.loads(line).get("runbook") == runbook
                   and json.loads(line).get("status") == "ok")

    def __call__(self, loaded: LoadedConfig, ids: list[str]) -> Report:
        self.calls += 1
        findings = []
        for check in ids:
            remedy = cures.remedy_for(check)
            bad = check in self.bad and not (self.curable and remedy is not None and self.runs(remedy.runbook))
            findings.append(Finding(id=check, check_class=check.split(".")[0],
                                    status=Status.CRIT if bad else Status.OK, summary="bad" if bad else "fine",
                                    runbook=remedy.runbook if bad and remedy else None))
        return Report(tool_version="test", target=loaded.target_name, started_at=dt.datetime.now(dt.UTC),
                      duration_ms=1.0, findings=findings)


def fake_run(name: str, target: Target) -> Report:
    return Report(tool_version="test", target=name, started_at=dt.datetime.now(dt.UTC), duration_ms=1.0, findings=[])


def write_config(tmp: Path, sink_url: str, remediation: str = "", token: bool = True,
                 unattended: bool = True) -> Path:
    rb_dir = tmp / "rb"
    rb_dir.mkdir(exist_ok=True)
    (rb_dir / "manager-discovery-restart.yaml").write_text(STAND_IN.format(
        id="manager-discovery-restart", cures="inter-manager.discovery, inter-manager.status",
        unattended=str(unattended).lower()))
    (rb_dir / "event-bus-purge.yaml").write_text(STAND_IN.format(id="event-bus-purge", cures="inter-manager.event-bus",
                                                                 unattended="true"))
    lines = [f"state_dir: {tmp / 'state'}", f"audit_log: {tmp / 'audit.jsonl'}", f"runbook_dirs: [{rb_dir}]",
             "serve:", "  interval_s: 60", "  jitter_pct: 0"]
    if token:
        lines.append("  token: env:ESD_TEST_TOKEN")
    lines += ["escalation:", "  channels:", "    hook:", "      type: webhook", f"      url: {sink_url}",
              "      retries: 0", "      timeout_s: 3", "  levels:", "    1: {channels: [hook]}",
              "    2: {channels: [hook]}", "    3: {channels: [hook]}",
              "remediation:", "  escalate_level: 1", "  verify_timeout_s: 5",
              *[f"  {line}" for line in remediation.splitlines()],
              "targets:", "  a:", "    service: {api_url: 'http://127.0.0.1:9', metrics_url: 'http://127.0.0.1:9/m',"
              " log_dir: " + str(tmp / "logs") + "}",
              "    absent: {postgres: none, qdrant: none, redis: none, prometheus: none, grafana: none, docker: none}"]
    path = tmp / "c.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Served:
    def __init__(self, tmp: Path, config: Path) -> None:
        from es_doctor.serve.http import Server

        self.daemon = Daemon(lambda: settings_from(load_targets(str(config), [], True), "127.0.0.1:0"), run=fake_run,
                             widgets=False)
        self.checks = Checks(tmp / "audit.jsonl")
        self.daemon.remediator._diagnose = self.checks
        self.server = Server(self.daemon)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.daemon.start()
        self.base = f"http://127.0.0.1:{self.server.server_port}"

    def post(self, path: str, body: bytes, token: str | None = TOKEN,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(self.base + path, data=body, method="POST", headers={
            "Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {}),
            **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            return exc.code, json.loads(raw) if raw.startswith(b"{") else {"text": raw.decode()}

    def request(self, rid: str) -> dict[str, Any]:
        got = self.daemon.store.requests.get(rid)
        assert got is not None
        return got

    def wait_state(self, rid: str, states: tuple[str, ...], timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.daemon.store.requests.get(rid)
            if got is not None and got["state"] in states:
                return got
            time.sleep(0.05)
        raise AssertionError(f"{rid} never reached {states}: {self.daemon.store.requests.get(rid)}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.daemon.stop()


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
           sink: tuple[str, list[dict[str, Any]]]) -> Iterator[Any]:
    monkeypatch.setenv("ESD_TEST_TOKEN", TOKEN)
    made: list[Served] = []

    def make(remediation: str = "", token: bool = True, unattended: bool = True) -> Served:
        one = Served(tmp_path, write_config(tmp_path, sink[0], remediation, token, unattended))
        # the engine verifies a cure with the finding's checks: the same stand-ins as the remediator's
        checks = one.checks
        monkeypatch.setattr("es_doctor.runner.diagnose", lambda target, name, check_ids=None, *_a, **_k:
                            checks(SimpleNamespace(target_name=name), list(check_ids or [])))  # type: ignore[arg-type]
        made.append(one)
        return one

    yield make
    for one in made:
        one.close()


def hook(finding: str, status: str = "firing", starts: str = "2026-12-07T03:00:00.5Z", **labels: str) -> bytes:
    alert = {"status": status, "labels": {"alertname": "EsDoctorCheckCritical", "finding": finding, **labels},
             "annotations": {}, "startsAt": starts, "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "",
             "fingerprint": "f00d"}
    return json.dumps({"version": "4", "groupKey": "k", "truncatedAlerts": 0, "status": status,
                       "receiver": "es-doctor", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
                       "externalURL": "", "alerts": [alert]}).encode()


def audit_events(tmp: Path) -> list[str]:
    return [json.loads(line)["event"] for line in (tmp / "audit.jsonl").read_text().splitlines()]


# --------------------------------------------------------------------------- bad input


def test_without_a_token_the_receiver_is_off(served: Any) -> None:
    one = served(token=False)
    status, body = one.post("/api/v1/alerts", hook("inter-manager.discovery"), token=None)
    assert status == 503 and "serve.token is not set" in body["error"]
    assert one.daemon.store.requests.find() == []


def test_bad_input_gets_a_clear_4xx_and_a_record(served: Any) -> None:
    one = served()
    body = hook("inter-manager.discovery")
    assert one.post("/api/v1/alerts", body, token=None)[0] == 401  # loopback included
    assert one.post("/api/v1/alerts", body, token="wrong")[0] == 401
    status, answer = one.post("/api/v1/alerts", b"x" * 300_000)
    assert status == 413 and "at most 262144" in answer["error"]
    assert one.post("/api/v1/alerts", b"{nope")[0] == 400
    old = json.loads(body)
    old["version"] = "3"
    assert one.post("/api/v1/alerts", json.dumps(old).encode())[0] == 422
    many = json.loads(body)
    many["alerts"] = many["alerts"] * 1000
    status, answer = one.post("/api/v1/alerts", json.dumps(many).encode())
    assert status == 413 and "1000 alerts" in answer["error"]
    status, answer = one.post("/api/v1/alerts", hook("nope.nope"))
    assert status == 422 and "unknown finding" in answer["alerts"][0]["reason"]
    status, answer = one.post("/api/v1/alerts", hook("inter-manager.discovery", runbook="event-bus-purge"))
    assert status == 422 and "does not cure" in answer["alerts"][0]["reason"]
    status, answer = one.post("/api/v1/alerts", hook("inter-manager.discovery", target="prod"))
    assert status == 422 and "unknown target" in answer["alerts"][0]["reason"]
    # nothing became a request; every refusal is on record
    assert one.daemon.store.requests.find() == []
    receipts = one.daemon.store.requests.receipts()
    assert {r["status"] for r in receipts} >= {401, 413, 400, 422}
    assert TOKEN not in json.dumps(receipts) and TOKEN not in one.daemon.store.path.read_text(errors="replace")
    # GET changes nothing and POST elsewhere is refused
    assert one.post("/api/v1/targets", b"{}")[0] == 405


def test_a_firing_alert_is_cured_verified_and_told_once(served: Any, sink: tuple[str, list[dict[str, Any]]],
                                                        tmp_path: Path) -> None:
    one = served()
    one.checks.bad.add("inter-manager.discovery")
    status, answer = one.post("/api/v1/alerts", hook("inter-manager.discovery"))
    assert status == 202 and answer["alerts"][0]["result"] == "new"
    rid = answer["alerts"][0]["request"]
    done = one.wait_state(rid, ("fixed", "not-fixed", "failed", "escalated"))
    assert done["state"] == "fixed" and done["runs"] == 1 and done["runbook"] == "manager-discovery-restart"
    # Alertmanager's repeats and a replay of the same payload run nothing again
    status, answer = one.post("/api/v1/alerts", hook("inter-manager.discovery"))
    assert status == 202 and answer["alerts"][0]["result"] == "replay"
    time.sleep(1.5)
    assert one.checks.runs("manager-discovery-restart") == 1 and one.request(rid)["runs"] == 1
    events = [e["event"] for e in one.daemon.store.requests.events(rid)]
    assert events[0] == "alert.firing" and "policy" in events and "run.start" in events
    assert "request.fixed" in events and "notify.resolve" in events and "alert.replay" in events
    assert any(n.get("event") == "resolve" and n.get("id") == f"REQ-{rid}" for n in sink[1])
    assert {"remediation.request", "remediation.decision", "fix.start", "fix.end",
            "remediation.verdict"} <= set(audit_events(tmp_path))


def test_a_stale_alert_runs_nothing(served: Any) -> None:
    one = served()
    _status, answer = one.post("/api/v1/alerts", hook("inter-manager.discovery"))
    rid = answer["alerts"][0]["request"]
    done = one.wait_state(rid, ("cleared", "fixed", "escalated"))
    assert done["state"] == "cleared" and done["runs"] == 0 and "OK now" in done["reason"]
    assert one.checks.runs("manager-discovery-restart") == 0


def test_not_fixed_escalates_with_the_bundle_and_never_tries_again(served: Any,
                                                                   sink: tuple[str, list[dict[str, Any]]]) -> None:
    one = served()
    one.checks.bad.add("inter-manager.discovery")
    one.checks.curable = False
    rid = one.post("/api/v1/alerts", hook("inter-manager.discovery"))[1]["alerts"][0]["request"]
    done = one.wait_state(rid, ("fixed", "not-fixed", "failed"))
    assert done["state"] == "not-fixed"
    _wait(lambda: any(e["event"] == "notify.escalate" for e in one.daemon.store.requests.events(rid)))
    escalated = next(e for e in one.daemon.store.requests.events(rid) if e["event"] == "notify.escalate")
    assert Path(escalated["detail"]["bundle"]).is_dir() and escalated["detail"]["deliveries"][0]["ok"]
    assert any(str(n.get("id", "")).startswith("INC-") for n in sink[1])
    # the alert fires again (a new startsAt: a new request): escalated, not run a second time
    again = one.post("/api/v1/alerts", hook("inter-manager.discovery", starts="2026-12-07T03:30:00Z"))
    rid2 = again[1]["alerts"][0]["request"]
    assert rid2 != rid
    second = one.wait_state(rid2, ("escalated", "fixed", "not-fixed"))
    assert second["state"] == "escalated" and "NOT FIXED" in second["reason"] and second["runs"] == 0
    assert one.checks.runs("manager-discovery-restart") == 1


def test_rate_limit_escalates_instead(served: Any) -> None:
    one = served("max_runs_per_hour: 1")
    one.checks.bad.add("inter-manager.discovery")
    rid = one.post("/api/v1/alerts", hook("inter-manager.discovery"))[1]["alerts"][0]["request"]
    assert one.wait_state(rid, ("fixed", "not-fixed"))["state"] == "fixed"
    one.checks.curable = False  # it comes back
    rid2 = one.post("/api/v1/alerts", hook("inter-manager.discovery", starts="2026-12-07T03:10:00Z"))[1][
        "alerts"][0]["request"]
    second = one.wait_state(rid2, ("escalated", "fixed", "not-fixed"))
    assert second["state"] == "escalated" and "rate limit" in second["reason"]


def test_observe_mode_records_and_tells_but_runs_nothing(served: Any, sink: tuple[str, list[dict[str, Any]]]) -> None:
    one = served("observe: true")
    one.checks.bad.add("inter-manager.discovery")
    rid = one.post("/api/v1/alerts", hook("inter-manager.discovery"))[1]["alerts"][0]["request"]
    done = one.wait_state(rid, ("observed", "fixed"))
    assert done["state"] == "observed" and "would run manager-discovery-restart" in done["reason"]
    _wait(lambda: any("observe mode" in str(n.get("issue", "")) for n in sink[1]))
    assert one.checks.runs("manager-discovery-restart") == 0


def test_approval_names_who_and_runs_once(served: Any) -> None:
    one = served(unattended=False)
    one.checks.bad.add("inter-manager.discovery")
    rid = one.post("/api/v1/alerts", hook("inter-manager.discovery"))[1]["alerts"][0]["request"]
    one.wait_state(rid, ("waiting-approval",))
    assert one.post(f"/api/v1/requests/{rid}/approve", b"{}")[0] == 400  # who approves must be named
    assert one.post(f"/api/v1/requests/{rid}/approve", b'{"by": "alice"}', token="wrong")[0] == 401
    status, answer = one.post(f"/api/v1/requests/{rid}/approve", b'{"by": "alice"}')
    assert status == 200 and "approved by alice" in answer["result"]
    done = one.wait_state(rid, ("fixed", "not-fixed", "failed"))
    assert done["state"] == "fixed" and done["approved_by"] == "alice" and done["runs"] == 1
    status, answer = one.post(f"/api/v1/requests/{rid}/approve", b'{"by": "bob"}')
    assert status == 409 and "not waiting" in answer["error"]
    assert one.post("/api/v1/requests/r-0000000000000000/approve", b'{"by": "bob"}')[0] == 404


def test_a_request_past_its_expiry_is_escalated_not_run(served: Any) -> None:
    one = served("approval_expiry_s: 1", unattended=False)
    one.checks.bad.add("inter-manager.discovery")
    rid = one.post("/api/v1/alerts", hook("inter-manager.discovery"))[1]["alerts"][0]["request"]
    one.wait_state(rid, ("waiting-approval",))
    time.sleep(1.2)
    status, _answer = one.post(f"/api/v1/requests/{rid}/approve", b'{"by": "alice"}')
    assert status == 409
    assert one.wait_state(rid, ("expired",))["runs"] == 0
    assert one.checks.runs("manager-discovery-restart") == 0


def test_an_alert_resolved_before_it_ran_closes_by_itself(served: Any) -> None:
    one = served(unattended=False)
    one.checks.bad.add("inter-manager.discovery")
    rid = one.post("/api/v1/alerts", hook("inter-manager.discovery"))[1]["alerts"][0]["request"]
    one.wait_state(rid, ("waiting-approval",))
    status, answer = one.post("/api/v1/alerts", hook("inter-manager.discovery", status="resolved"))
    assert status == 202 and answer["alerts"][0]["result"] == "resolved"
    assert one.request(rid)["state"] == "resolved-by-itself"


def test_the_cause_runs_first_and_its_symptoms_close_when_ok(served: Any) -> None:
    one = served()
    # discovery and status are one cure (manager-discovery-restart): one run answers both requests
    one.checks.bad |= {"inter-manager.discovery", "inter-manager.status"}
    first = one.post("/api/v1/alerts", hook("inter-manager.discovery"))[1]["alerts"][0]["request"]
    second = one.post("/api/v1/alerts", hook("inter-manager.status"))[1]["alerts"][0]["request"]
    a = one.wait_state(first, ("fixed", "not-fixed", "cleared"))
    b = one.wait_state(second, ("fixed", "not-fixed", "cleared"))
    assert {a["state"], b["state"]} <= {"fixed", "cleared"}
    assert one.checks.runs("manager-discovery-restart") == 1


def test_one_approval_runs_the_cure_for_every_request_it_answers(served: Any) -> None:
    """Two findings one cure answers, both waiting for a person: approving one runs the cure once for both
    (the other waited for ever before: a waiting request held back an approved one)."""
    one = served(unattended=False)
    one.checks.bad |= {"inter-manager.discovery", "inter-manager.status"}
    first = one.post("/api/v1/alerts", hook("inter-manager.discovery"))[1]["alerts"][0]["request"]
    second = one.post("/api/v1/alerts", hook("inter-manager.status"))[1]["alerts"][0]["request"]
    one.wait_state(first, ("waiting-approval",))
    one.wait_state(second, ("waiting-approval",))
    status, _answer = one.post(f"/api/v1/requests/{first}/approve", b'{"by": "alice"}')
    assert status == 200
    a = one.wait_state(first, ("fixed", "not-fixed", "failed", "cleared"))
    b = one.wait_state(second, ("fixed", "not-fixed", "failed", "cleared"))
    assert (a["state"], b["state"]) == ("fixed", "fixed"), (a, b)
    assert a["approved_by"] == b["approved_by"] == "alice"
    assert one.checks.runs("manager-discovery-restart") == 1
    assert any(e["event"] == "request.approved" and e["detail"].get("with") == first
               for e in one.daemon.store.requests.events(second))


def test_the_breaker_runs_nothing_when_many_findings_fire(served: Any) -> None:
    one = served("breaker_findings: 2")
    one.checks.bad |= {"inter-manager.discovery", "inter-manager.event-bus"}
    both = json.loads(hook("inter-manager.discovery"))
    # one group: both recorded before the worker looks
    both["alerts"] += json.loads(hook("inter-manager.event-bus"))["alerts"]
    answer = one.post("/api/v1/alerts", json.dumps(both).encode())[1]
    r1, r2 = (item["request"] for item in answer["alerts"])
    one.wait_state(r1, ("escalated", "fixed"))
    one.wait_state(r2, ("escalated", "fixed"))
    assert one.request(r1)["state"] == one.request(r2)["state"] == "escalated"
    assert "breaker" in one.request(r1)["reason"]
    assert one.checks.runs("manager-discovery-restart") == one.checks.runs("event-bus-purge") == 0


def _wait(predicate: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


# --------------------------------------------------------------------------- the CLI and Alertmanager's config


def test_requests_cli_lists_shows_and_approves(served: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from es_doctor.cli.main import main

    one = served(unattended=False)
    one.checks.bad.add("inter-manager.discovery")
    rid = one.post("/api/v1/alerts", hook("inter-manager.discovery"))[1]["alerts"][0]["request"]
    one.wait_state(rid, ("waiting-approval",))
    config = str(tmp_path / "c.yaml")
    capsys.readouterr()
    assert main(["requests", "list", "--format", "json", "--server", one.base, "-c", config]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [{k: r[k] for k in ("id", "target", "finding", "runbook", "state", "runs")} for r in listed] == [
        {"id": rid, "target": "a", "finding": "inter-manager.discovery", "runbook": "manager-discovery-restart",
         "state": "waiting-approval", "runs": 0}]
    assert main(["requests", "approve", rid, "--by", "carol", "--server", one.base, "-c", config]) == 0
    assert "approved by carol" in capsys.readouterr().out
    one.wait_state(rid, ("fixed",))
    assert main(["requests", "show", rid, "--server", one.base, "-c", config]) == 0
    shown = capsys.readouterr().out
    assert "fixed" in shown and "request.approved" in shown and "run.start" in shown and "decided by carol" in shown
    assert TOKEN not in shown
    # a second approval of a request that ran: refused, said so
    assert main(["requests", "approve", rid, "--server", one.base, "-c", config]) == 64
    assert "not waiting for an approval" in capsys.readouterr().err
    # a wrong token from the environment wins over the config, and is refused
    monkeypatch.setenv("ES_DOCTOR_SERVE_TOKEN", "wrong")
    assert main(["requests", "list", "--server", one.base, "-c", config]) == 69
    assert "401" in capsys.readouterr().err


def test_printed_alertmanager_config_passes_amtool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import shutil
    import subprocess

    from es_doctor.cli.main import main

    amtool = shutil.which("amtool")
    assert amtool, "amtool is missing: scripts/install-test-deps.sh installs prometheus-alertmanager"
    monkeypatch.setenv("ESD_TEST_TOKEN", TOKEN)
    config = write_config(tmp_path, "http://127.0.0.1:9/x")
    capsys.readouterr()
    assert main(["-c", str(config), "serve", "--all-targets", "--listen", "127.0.0.1:9311",
                 "--print-alertmanager-config"]) == 0
    printed = capsys.readouterr().out
    assert TOKEN not in printed and "http://127.0.0.1:9311/api/v1/alerts" in printed
    (tmp_path / "am.yml").write_text(printed)
    done = subprocess.run([amtool, "check-config", str(tmp_path / "am.yml")], capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_status_page_approves_by_post_from_its_own_origin_only(served: Any) -> None:
    import http.client
    from urllib.parse import urlencode

    one = served(unattended=False)
    one.checks.bad.add("inter-manager.discovery")
    rid = one.post("/api/v1/alerts", hook("inter-manager.discovery"))[1]["alerts"][0]["request"]
    one.wait_state(rid, ("waiting-approval",))
    one.server.prerender()
    status, page = _get(one.base + "/", TOKEN)
    assert status == 200 and f'action="/requests/{rid}/approve"' in page and 'method="post"' in page
    assert TOKEN not in page
    # GET changes nothing
    assert _get(f"{one.base}/requests/{rid}/approve", TOKEN)[0] == 404
    assert one.request(rid)["state"] == "waiting-approval"
    host = one.base.removeprefix("http://")

    def form(origin: str | None, token: str) -> int:
        conn = http.client.HTTPConnection(host, timeout=10)
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if origin:
            headers["Origin"] = origin
        conn.request("POST", f"/requests/{rid}/approve", body=urlencode({"token": token, "by": "dave"}),
                     headers=headers)
        got = conn.getresponse().status
        conn.close()
        return got

    assert form("http://evil.example", TOKEN) == 403
    assert form(None, TOKEN) == 403
    assert form(one.base, "wrong") == 401
    assert one.request(rid)["state"] == "waiting-approval"
    assert form(one.base, TOKEN) == 303
    assert one.wait_state(rid, ("fixed",))["approved_by"] == "dave (status page)"


def _get(url: str, token: str) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
