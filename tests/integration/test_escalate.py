"""``es-doctor escalate`` end to end: the CLI as a subprocess, real HTTP to receivers on 127.0.0.1.

The receivers are written here: a Slack-shaped incoming webhook (200 ``ok``), a PagerDuty Events
API v2-shaped endpoint (202 ``{"status": "success", ...}``), a generic webhook, and a flaky one.
Secrets are planted in the config (a webhook token in a URL path, a routing key, a URL query token,
a DSN password) and in a log line; none may appear anywhere but where the API needs it (the
routing key in PagerDuty's own body).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from es_doctor.config import Config
from es_doctor.secrets import masked_dump, secret_values

pytestmark = pytest.mark.integration

PY = sys.executable
SLACK_TOKEN = "SLACKTOKEN-PLANTED-x9"
ROUTING_KEY = "ROUTINGKEY-PLANTED-x9"
WEBHOOK_TOKEN = "HOOKTOKEN-PLANTED-x9"
DSN_PASSWORD = "DSNPASS-PLANTED-x9"
PLANTED = (SLACK_TOKEN, ROUTING_KEY, WEBHOOK_TOKEN, DSN_PASSWORD)
PD_PAYLOAD_KEYS = {"summary", "source", "severity", "timestamp", "component", "group", "class", "custom_details"}


# --------------------------------------------------------------------------- receivers


@dataclass
class Receiver:
    """An HTTP endpoint on 127.0.0.1 that records every request and answers from a script."""

    kind: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    #: statuses to answer before the normal answer (for the flaky receiver)
    failures_first: list[int] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.server_address[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, body: dict[str, Any]) -> tuple[int, str, bytes]:
        if self.failures_first:
            return self.failures_first.pop(0), "text/plain", b"try later"
        if self.kind == "slack":
            return 200, "text/plain", b"ok"
        if self.kind == "pagerduty":
            if body.get("event_action") not in ("trigger", "acknowledge", "resolve") or not body.get("routing_key"):
                return 400, "application/json", json.dumps({"status": "invalid event",
                                                            "message": "Event object is invalid"}).encode()
            return 202, "application/json", json.dumps({"status": "success", "message": "Event processed",
                                                        "dedup_key": body.get("dedup_key")}).encode()
        return 200, "application/json", b'{"received": true}'

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                body = json.loads(raw)
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "raw": raw.decode(),
                                          "body": body})
                status, ctype, data = receiver.answer(body)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        assert self.server is not None and self.thread is not None
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def receivers() -> Iterator[dict[str, Receiver]]:
    started = {name: Receiver(name).start() for name in ("slack", "pagerduty", "webhook", "flaky")}
    started["flaky"].failures_first = [503, 500]
    yield started
    for receiver in started.values():
        receiver.stop()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- setup


@dataclass
class Env:
    tmp: Path
    config: Path
    env: dict[str, str]
    state: Path
    logs: Path


def make_env(tmp_path: Path, receivers: dict[str, Receiver], levels: dict[int, list[str]]) -> Env:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "email-sender.log").write_text(
        json.dumps({"level": "INFO", "msg": "started"}) + "\n"
        + json.dumps({"level": "ERROR", "msg": f"db: postgresql://u:{DSN_PASSWORD}@db/x refused"}) + "\n"
        + json.dumps({"level": "INFO", "msg": "request ok"}) + "\n"
        + json.dumps({"level": "FATAL", "msg": "qdrant unreachable"}) + "\n")
    (logs / "email-sender-error.log").write_text(json.dumps({"level": "ERROR", "msg": "openai quota"}) + "\n")
    audit = tmp_path / "audit.jsonl"
    audit.write_text("".join(json.dumps({"event": "step", "n": n}) + "\n" for n in range(25)))
    dead = closed_port()
    config = {
        "targets": {"t1": {
            "service": {"api_url": "http://127.0.0.1:9", "metrics_url": "http://127.0.0.1:9/metrics",
                        "pprof_url": "http://127.0.0.1:9/debug/pprof", "log_dir": str(logs)},
            "qdrant": {"url": "http://127.0.0.1:9"},
            "postgres": {"dsn": f"postgresql://u:{DSN_PASSWORD}@127.0.0.1:9/db"},
            "prometheus": {"url": "http://127.0.0.1:9"},
            "grafana": {"url": "http://127.0.0.1:9"},
            "absent": {"docker": "test"},
            "check_timeout_s": 1.0,
            "deadline_s": 4.0,
        }},
        "escalation": {
            "levels": {n: {"channels": names} for n, names in levels.items()},
            "channels": {
                "ops-slack": {"type": "slack", "url": "env:ESC_TEST_SLACK_URL", "retries": 1, "backoff_s": 0.05},
                "pd": {"type": "pagerduty", "url": receivers["pagerduty"].url("/v2/enqueue"),
                       "routing_key": "env:ESC_TEST_ROUTING_KEY", "retries": 1, "backoff_s": 0.05},
                "hook": {"type": "webhook", "url": receivers["webhook"].url(f"/incidents?token={WEBHOOK_TOKEN}"),
                         "retries": 0},
                "flaky": {"type": "webhook", "url": receivers["flaky"].url("/hook"), "retries": 3,
                          "backoff_s": 0.05},
                "dead": {"type": "webhook", "url": f"http://127.0.0.1:{dead}/{WEBHOOK_TOKEN}", "retries": 2,
                         "backoff_s": 0.05, "timeout_s": 2},
            },
        },
    }
    path = tmp_path / "es-doctor.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ES_DOCTOR_") and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env.update({
        "ES_DOCTOR_STATE_DIR": str(tmp_path / "state"),
        "ES_DOCTOR_AUDIT_LOG": str(audit),
        "ES_DOCTOR_LAB_DIR": str(tmp_path / "nolab"),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
        "ESC_TEST_SLACK_URL": receivers["slack"].url(f"/services/T000/B000/{SLACK_TOKEN}"),
        "ESC_TEST_ROUTING_KEY": ROUTING_KEY,
        "NO_PROXY": "127.0.0.1,localhost",
    })
    return Env(tmp_path, path, env, tmp_path / "state", logs)


def run(e: Env, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "es_doctor", "-c", str(e.config), "-t", "t1", "escalate", *args],
                          capture_output=True, text=True, env=e.env, cwd=e.tmp, timeout=timeout, check=False)


def only_bundle(e: Env) -> Path:
    bundles = list((e.state / "incidents").iterdir())
    assert len(bundles) == 1, bundles
    return bundles[0]


def bundle_text(bundle: Path) -> str:
    return "\n".join(p.read_text() for p in sorted(bundle.iterdir()))


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in PLANTED:
            assert secret not in text, f"{secret} leaked into: {text[:300]}"


# --------------------------------------------------------------------------- tests


def test_trigger_sends_each_documented_shape_and_writes_the_bundle(
        tmp_path: Path, receivers: dict[str, Receiver]) -> None:
    e = make_env(tmp_path, receivers, {2: ["ops-slack", "pd", "hook"]})
    result = run(e, "--level", "2", "--issue", "Qdrant unreachable from the service", "--severity", "high",
                 "--no-attach-diagnosis")
    assert result.returncode == 0, result.stderr
    bundle = only_bundle(e)
    incident = json.loads((bundle / "incident.json").read_text())
    assert incident["id"] == bundle.name
    assert incident["id"] in result.stdout and str(bundle) in result.stdout
    assert incident["target"] == "t1" and incident["level"] == 2 and incident["severity"] == "high"
    assert incident["team"] == "DevOps"
    assert incident["responsibilities"] == ["Problèmes infrastructure", "Déploiement/rollback",
                                            "Configuration réseau"]
    assert incident["diagnosis"] is None
    stamp = dt.datetime.fromisoformat(incident["time"])
    assert stamp.utcoffset() == dt.timedelta(0)
    # recent errors: main log ERROR/FATAL lines and the error log, scrubbed; audit tail: the last 20
    errors = "\n".join(incident["log_errors"])
    assert "qdrant unreachable" in errors and "openai quota" in errors and "request ok" not in errors
    assert "u:********@db" in errors
    assert [r["n"] for r in incident["audit_tail"]] == list(range(5, 25))
    md = (bundle / "incident.md").read_text()
    assert incident["id"] in md and "DevOps" in md and "Qdrant unreachable from the service" in md

    # Slack incoming webhook: text + blocks (header, section with mrkdwn text, section with mrkdwn fields)
    [slack] = receivers["slack"].requests
    assert slack["path"] == f"/services/T000/B000/{SLACK_TOKEN}"  # the URL was resolved from env:
    assert slack["headers"]["Content-Type"] == "application/json"
    body = slack["body"]
    assert set(body) == {"text", "blocks"}
    assert incident["id"] in body["text"] and "Qdrant unreachable" in body["text"]
    types = [b["type"] for b in body["blocks"]]
    assert types[0] == "header" and "section" in types
    assert body["blocks"][0]["text"]["type"] == "plain_text" and len(body["blocks"][0]["text"]["text"]) <= 150
    sections = [b for b in body["blocks"] if b["type"] == "section"]
    assert any(b.get("text", {}).get("type") == "mrkdwn" for b in sections)
    fields = next(b["fields"] for b in sections if "fields" in b)
    assert 1 <= len(fields) <= 10 and all(f["type"] == "mrkdwn" for f in fields)
    assert any("high" in f["text"] for f in fields)

    # PagerDuty Events API v2 trigger
    [pd] = receivers["pagerduty"].requests
    event = pd["body"]
    assert pd["path"] == "/v2/enqueue"
    assert event["routing_key"] == ROUTING_KEY
    assert event["event_action"] == "trigger"
    assert event["dedup_key"] == incident["id"]
    assert set(event["payload"]) == PD_PAYLOAD_KEYS
    assert event["payload"]["severity"] == "error"
    assert event["payload"]["source"] == "127.0.0.1"
    assert event["payload"]["group"] == "t1"
    assert event["payload"]["component"] == "email-sender-go"
    assert event["payload"]["class"] == "escalation-level-2"
    assert dt.datetime.fromisoformat(event["payload"]["timestamp"]) == stamp
    assert "Qdrant unreachable" in event["payload"]["summary"] and len(event["payload"]["summary"]) <= 1024
    assert event["payload"]["custom_details"]["incident_id"] == incident["id"]

    # generic webhook: the incident record itself
    [hook] = receivers["webhook"].requests
    assert hook["path"] == f"/incidents?token={WEBHOOK_TOKEN}"
    assert hook["body"] == incident

    deliveries = json.loads((bundle / "delivery.json").read_text())
    assert [(d["channel"], d["ok"], d["attempts"]) for d in deliveries] == [
        ("ops-slack", True, 1), ("pd", True, 1), ("hook", True, 1)]

    # no planted secret anywhere: output, bundle, payloads (the routing key only in PagerDuty's own field)
    pd_without_key = {k: v for k, v in event.items() if k != "routing_key"}
    assert_no_secret(result.stdout, result.stderr, bundle_text(bundle), slack["raw"], hook["raw"],
                     json.dumps(pd_without_key))
    assert pd["raw"].count(ROUTING_KEY) == 1


@pytest.mark.parametrize(("severity", "expected"),
                         [("critical", "critical"), ("medium", "warning"), ("low", "info")])
def test_pagerduty_severity_mapping(tmp_path: Path, receivers: dict[str, Receiver], severity: str,
                                    expected: str) -> None:
    e = make_env(tmp_path, receivers, {3: ["pd"]})
    result = run(e, "--level", "3", "--issue", "vectors corrupted", "--severity", severity, "--no-attach-diagnosis")
    assert result.returncode == 0, result.stderr
    [pd] = receivers["pagerduty"].requests
    assert pd["body"]["payload"]["severity"] == expected
    assert pd["body"]["payload"]["class"] == "escalation-level-3"
    incident = json.loads((only_bundle(e) / "incident.json").read_text())
    assert incident["team"] == "Expertise"
    assert "Corruption données" in incident["responsibilities"]


def test_resolve_sends_a_pagerduty_resolve_with_the_same_dedup_key(
        tmp_path: Path, receivers: dict[str, Receiver]) -> None:
    e = make_env(tmp_path, receivers, {2: ["pd", "ops-slack", "hook"]})
    assert run(e, "--level", "2", "--issue", "deploy failed", "--severity", "critical",
               "--no-attach-diagnosis").returncode == 0
    bundle = only_bundle(e)
    before = (bundle / "incident.json").read_bytes()
    incident_id = bundle.name

    result = run(e, "--resolve", incident_id)
    assert result.returncode == 0, result.stderr
    trigger, resolve = (r["body"] for r in receivers["pagerduty"].requests)
    assert trigger["event_action"] == "trigger"
    assert resolve == {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": incident_id}
    assert resolve["dedup_key"] == trigger["dedup_key"]
    assert "Resolved" in receivers["slack"].requests[-1]["body"]["text"]
    assert receivers["webhook"].requests[-1]["body"]["status"] == "resolved"
    marker = json.loads((bundle / "resolved.json").read_text())
    assert marker["id"] == incident_id and all(d["ok"] for d in marker["deliveries"])
    assert (bundle / "incident.json").read_bytes() == before  # never rewritten
    assert_no_secret(result.stdout, result.stderr, bundle_text(bundle))

    again = run(e, "--resolve", incident_id)
    assert again.returncode == 0
    assert "already resolved" in again.stdout
    assert len(receivers["pagerduty"].requests) == 2


def test_unreachable_channel_keeps_the_bundle_and_exits_69(
        tmp_path: Path, receivers: dict[str, Receiver]) -> None:
    e = make_env(tmp_path, receivers, {1: ["ops-slack", "dead"]})
    result = run(e, "--level", "1", "--issue", "service down", "--severity", "high", "--no-attach-diagnosis")
    assert result.returncode == 69, result.stdout + result.stderr
    bundle = only_bundle(e)
    assert (bundle / "incident.json").is_file() and (bundle / "incident.md").is_file()
    assert "dead (webhook): FAILED after 3 attempt(s)" in result.stderr
    assert f"the bundle is kept at {bundle}" in result.stderr
    assert len(receivers["slack"].requests) == 1  # the other channel still got it
    deliveries = {d["channel"]: d for d in json.loads((bundle / "delivery.json").read_text())}
    assert deliveries["dead"]["ok"] is False and deliveries["dead"]["attempts"] == 3
    assert deliveries["ops-slack"]["ok"] is True
    assert_no_secret(result.stdout, result.stderr, bundle_text(bundle))


def test_failing_then_answering_channel_is_retried_with_backoff(
        tmp_path: Path, receivers: dict[str, Receiver]) -> None:
    e = make_env(tmp_path, receivers, {1: ["flaky"]})
    result = run(e, "--level", "1", "--issue", "slow api", "--severity", "medium", "--no-attach-diagnosis")
    assert result.returncode == 0, result.stderr
    assert len(receivers["flaky"].requests) == 3  # 503, 500, then 200
    [delivery] = json.loads((only_bundle(e) / "delivery.json").read_text())
    assert delivery["ok"] is True and delivery["attempts"] == 3


def test_rejected_event_is_not_retried_and_fails(tmp_path: Path, receivers: dict[str, Receiver]) -> None:
    e = make_env(tmp_path, receivers, {3: ["pd"]})
    e.env["ESC_TEST_ROUTING_KEY"] = ""  # unset secret: nothing is sent, the channel fails
    result = run(e, "--level", "3", "--issue", "x", "--severity", "low", "--no-attach-diagnosis")
    assert result.returncode == 69
    assert "routing_key env:ESC_TEST_ROUTING_KEY is not set" in result.stderr
    assert receivers["pagerduty"].requests == []
    assert (only_bundle(e) / "incident.json").is_file()


def test_no_channel_for_the_level_writes_the_bundle_and_exits_0(
        tmp_path: Path, receivers: dict[str, Receiver]) -> None:
    e = make_env(tmp_path, receivers, {})
    result = run(e, "--level", "1", "--issue", "restart loop", "--severity", "low", "--no-attach-diagnosis")
    assert result.returncode == 0, result.stderr
    assert "no channel configured for level 1" in result.stdout
    incident = json.loads((only_bundle(e) / "incident.json").read_text())
    assert incident["team"] == "Équipe Dev" and incident["channels"] == []
    assert all(r.requests == [] for r in receivers.values())


def test_attached_diagnosis_is_bounded_scrubbed_and_sent(tmp_path: Path, receivers: dict[str, Receiver]) -> None:
    e = make_env(tmp_path, receivers, {2: ["ops-slack", "pd"]})
    result = run(e, "--level", "2", "--issue", "everything is down", "--severity", "critical")
    assert result.returncode == 0, result.stderr
    bundle = only_bundle(e)
    incident = json.loads((bundle / "incident.json").read_text())
    diagnosis = incident["diagnosis"]
    assert diagnosis["target"] == "t1" and diagnosis["status"] == "CRIT"
    assert diagnosis["counts"]["CRIT"] >= 1
    statuses = {f["id"]: f["status"] for f in diagnosis["findings"]}
    assert statuses["startup.api-port"] == "CRIT"  # nothing listens on 127.0.0.1:9
    assert statuses["startup.docker-engine"] == "SKIP"  # absent: {docker: test}
    assert all(len(f["evidence"]) <= 8 for f in diagnosis["findings"])
    assert "status **CRIT**" in (bundle / "incident.md").read_text()
    event = receivers["pagerduty"].requests[0]["body"]
    assert event["payload"]["custom_details"]["diagnosis_status"] == "CRIT"
    assert event["payload"]["custom_details"]["findings"]
    pd_without_key = {k: v for k, v in event.items() if k != "routing_key"}
    assert_no_secret(result.stdout, result.stderr, bundle_text(bundle), receivers["slack"].requests[0]["raw"],
                     json.dumps(pd_without_key))


@pytest.mark.parametrize("args", [
    ["--level", "2", "--issue", "x"],
    ["--level", "4", "--issue", "x", "--severity", "low"],
    ["--level", "1", "--issue", "x", "--severity", "urgent"],
    ["--level", "1", "--issue", "  ", "--severity", "low"],
    ["--resolve", "../../etc"],
    ["--resolve", "INC-20240101-000000-abcd"],
    ["--resolve", "INC-20240101-000000-abcd", "--level", "1"],
])
def test_bad_usage_exits_64_and_writes_nothing(tmp_path: Path, receivers: dict[str, Receiver],
                                               args: list[str]) -> None:
    e = make_env(tmp_path, receivers, {1: ["ops-slack"]})
    result = run(e, *args)
    assert result.returncode == 64, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert not (e.state / "incidents").exists() or not any((e.state / "incidents").iterdir())
    assert receivers["slack"].requests == []


def test_level_naming_an_unknown_channel_is_a_config_error(tmp_path: Path, receivers: dict[str, Receiver]) -> None:
    e = make_env(tmp_path, receivers, {1: ["nope"]})
    result = run(e, "--level", "1", "--issue", "x", "--severity", "low", "--no-attach-diagnosis")
    assert result.returncode == 78
    assert "unknown channel(s): nope" in result.stderr
    assert not (e.state / "incidents").exists()


def test_escalation_secrets_are_masked_and_known_to_the_scrubber(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESC_TEST_ROUTING_KEY", ROUTING_KEY)
    config = Config.model_validate({"escalation": {"channels": {
        "s": {"type": "slack", "url": f"https://hooks.slack.com/services/T0/B0/{SLACK_TOKEN}"},
        "p": {"type": "pagerduty", "routing_key": "env:ESC_TEST_ROUTING_KEY"},
        "w": {"type": "webhook", "url": f"https://hooks.example/x?token={WEBHOOK_TOKEN}"},
    }}})
    assert_no_secret(json.dumps(masked_dump(config), default=str))
    known = secret_values(config)
    assert ROUTING_KEY in known
    assert any(SLACK_TOKEN in s for s in known) and any(WEBHOOK_TOKEN in s for s in known)
