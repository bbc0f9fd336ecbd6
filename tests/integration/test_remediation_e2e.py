"""Remediation from alerts, end to end with real parts: the lab (docker mode), ``es-doctor serve`` (a
process, its token in its environment), a private Prometheus scraping serve every second and loading
es-doctor's ``--serve`` alert rule over ``es_doctor_check_status``, the real Alertmanager (Debian's
``prometheus-alertmanager``) configured from ``serve --print-alertmanager-config`` and routing to serve's
``POST /api/v1/alerts``, and a local HTTP receiver standing for the notification channel.

The rule is ``EsDoctorCheckCritical`` as ``alert-rules --serve`` prints it, narrowed to the checks these
tests trip and with ``for: 2s`` instead of ``1m`` (CI budget); Alertmanager's group wait and interval are
1 s and its repeat interval 4 s (so repeats are seen). Nothing else is changed.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from conftest import require

pytestmark = [pytest.mark.integration, pytest.mark.docker]

TOKEN = "e2e-remediation-token-5f1c"
CHECKS = ("inter-manager.discovery", "inter-manager.status", "inter-manager.event-bus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"


@dataclass
class Rig:
    serve: str
    prometheus: str
    alertmanager: str
    work: Path
    config: Path
    notes: list[dict[str, Any]] = field(default_factory=list)

    def requests(self) -> list[dict[str, Any]]:
        got = httpx.get(f"{self.serve}/api/v1/requests", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
        assert got.status_code == 200, got.text
        return got.json()["requests"]  # type: ignore[no-any-return]

    def request(self, rid: str) -> dict[str, Any]:
        got = httpx.get(f"{self.serve}/api/v1/requests/{rid}", headers={"Authorization": f"Bearer {TOKEN}"},
                        timeout=5)
        assert got.status_code == 200, got.text
        return got.json()  # type: ignore[no-any-return]

    def latest_for(self, finding: str, since: float) -> dict[str, Any] | None:
        found = [r for r in self.requests() if r["finding"] == finding and r["created"] >= since]
        return found[0] if found else None

    def am_alerts(self, check: str) -> list[dict[str, Any]]:
        got = httpx.get(f"{self.alertmanager}/api/v2/alerts", params={"filter": f'check="{check}"', "active": "true"},
                        timeout=5)
        return got.json() if got.status_code == 200 else []  # type: ignore[no-any-return]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ES_DOCTOR_")}
        env["ES_DOCTOR_SERVE_TOKEN"] = TOKEN
        return subprocess.run([sys.executable, "-m", "es_doctor", "-c", str(self.config), "requests", *args,
                               "--server", self.serve], capture_output=True, text=True, timeout=60, env=env,
                              check=False)


def _wait(predicate: Any, timeout: float, what: str, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout:g}s (last: {last!r})")


def _sink(notes: list[dict[str, Any]]) -> http.server.ThreadingHTTPServer:
    class Sink(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            notes.append({"at": time.time(), **json.loads(body)})
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def rig(lab_stack: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    from es_doctor.lab import infra
    from es_doctor.lab.stack import LabStack
    from es_doctor.serve.fleet import serve_rules

    assert isinstance(lab_stack, LabStack)
    require("Alertmanager", None if Path(ALERTMANAGER).exists() else "prometheus-alertmanager is not installed")
    work = tmp_path_factory.mktemp("remediation")
    notes: list[dict[str, Any]] = []
    sink = _sink(notes)
    config = {
        "state_dir": str(work / "state"), "audit_log": str(work / "audit.jsonl"),
        "serve": {"interval_s": 2, "jitter_pct": 0, "token": "env:ESD_E2E_TOKEN"},
        "escalation": {"channels": {"hook": {"type": "webhook", "url": f"http://127.0.0.1:{sink.server_port}/n",
                                             "retries": 0, "timeout_s": 5}},
                       "levels": {1: {"channels": ["hook"]}, 2: {"channels": ["hook"]}, 3: {"channels": ["hook"]}}},
        "remediation": {"findings": {"inter-manager.event-bus": "approve"}},
        "targets": {"spare": {}},
    }
    config_path = work / "es-doctor.yaml"
    config_path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ES_DOCTOR_")}
    env["ES_DOCTOR_LAB_DIR"] = str(lab_stack.lab_dir)
    env["ESD_E2E_TOKEN"] = TOKEN
    serve_port, prom_port, am_port = infra.free_port(), infra.free_port(), infra.free_port()
    argv = [sys.executable, "-m", "es_doctor", "-c", str(config_path), "serve", "--targets", "lab",
            "--listen", f"127.0.0.1:{serve_port}"]
    # Alertmanager's configuration is the one serve prints (its token in a file, as printed)
    printed = subprocess.run([*argv, "--print-alertmanager-config"], capture_output=True, text=True, env=env,
                             timeout=60, check=True).stdout
    assert TOKEN not in printed
    am_config = yaml.safe_load(printed)
    token_file = work / "am.token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    am_config["receivers"][0]["webhook_configs"][0]["http_config"]["authorization"]["credentials_file"] = \
        str(token_file)
    am_config["route"].update({"group_wait": "1s", "group_interval": "1s", "repeat_interval": "4s"})
    (work / "am.yml").write_text(yaml.safe_dump(am_config))
    # Prometheus: scrapes serve, loads the serve rule, sends to Alertmanager
    rule = next(r for r in serve_rules(2)["groups"][0]["rules"] if r["alert"] == "EsDoctorCheckCritical")
    rule["expr"] = f'es_doctor_check_status{{check=~"{"|".join(c.replace(".", "[.]") for c in CHECKS)}"}} == 2'
    rule["for"] = "2s"
    (work / "rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "es-doctor-serve", "rules": [rule]}]}))
    prom_cfg = infra.prometheus_config([f"127.0.0.1:{serve_port}"], job="es-doctor",
                                       rule_files=[str(work / "rules.yml")])
    prom_cfg["scrape_configs"][0]["authorization"] = {"type": "Bearer", "credentials_file": str(token_file)}
    prom_cfg["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]}
    infra.write_prometheus_config(work / "prometheus.yml", prom_cfg)
    log = (work / "serve.log").open("w")
    procs = [
        subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work),
        subprocess.Popen([ALERTMANAGER, f"--config.file={work / 'am.yml'}", f"--storage.path={work / 'am'}",
                          f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="],
                         stdout=subprocess.DEVNULL, stderr=(work / "am.log").open("w")),
        subprocess.Popen(infra.prometheus_argv(work / "prometheus.yml", prom_port, work / "prom"),
                         stdout=subprocess.DEVNULL, stderr=(work / "prometheus.log").open("w")),
    ]
    serve_url = f"http://127.0.0.1:{serve_port}"
    try:
        _wait(lambda: infra.http_ok(f"{serve_url}/healthz"), 30, "serve answers /healthz")
        _wait(lambda: infra.http_ok(f"http://127.0.0.1:{am_port}/-/ready"), 30, "Alertmanager is ready")
        _wait(lambda: infra.prometheus_target_up(f"http://127.0.0.1:{prom_port}", "es-doctor"), 40,
              "Prometheus scrapes serve")
        yield Rig(serve_url, f"http://127.0.0.1:{prom_port}", f"http://127.0.0.1:{am_port}", work, config_path,
                  notes)
    finally:
        for child in procs:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(5)
        sink.shutdown()
        log.close()
        print((work / "serve.log").read_text()[-3000:])
        print((work / "am.log").read_text()[-2000:])


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
    assert done["state"] == "fixed" and done["approved_by"] == "oncall-alice" and done["runs"] == 1
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
