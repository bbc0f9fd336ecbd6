"""Planted secrets never leave es-doctor: every output format, the plan, the audit log, the incident
bundle, the webhook body and the argv of the programs it runs. The CLI runs as a subprocess against
real things: a hostile HTTP "service" (a real process holding secrets in its environment and answering
with escape sequences), real PostgreSQL and the real pg_dump behind a recording shim.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml

from es_doctor.lab.infra import free_port

pytestmark = pytest.mark.integration

PY = sys.executable

#: planted secrets: each must never appear in any output
API_KEY = "APIKEY-PLANTED-q1"
PG_PASSWORD = "PGPW-PLANTED@:/q1"
PG_QUERY_PASSWORD = "PGQUERY-PLANTED-q1"
QDRANT_KEY = "QDKEY-PLANTED-q1"
QDRANT_URL_PASSWORD = "QDPASS-PLANTED-q1"
PROM_PASSWORD = "PROMPASS-PLANTED-q1"
METRICS_PASSWORD = "METRICSPASS-PLANTED-q1"
OPENAI_KEY = "OPENAI-PLANTED-q1"
SERVICE_ENV_SECRET = "SEKRET-OPENAI-PLANTED-q1"
BODY_PASSWORD = "BODYPASS-PLANTED-q1"
HOOK_TOKEN = "HOOK-PLANTED-q1"
PLANTED = (API_KEY, PG_PASSWORD, PG_QUERY_PASSWORD, QDRANT_KEY, QDRANT_URL_PASSWORD, PROM_PASSWORD,
           METRICS_PASSWORD, OPENAI_KEY, SERVICE_ENV_SECRET, BODY_PASSWORD, HOOK_TOKEN)

#: a server answering every request with escape sequences, a NUL and a URL carrying a password
HOSTILE_SERVICE = textwrap.dedent("""
    import json, sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    BODY = json.dumps({"status": "ok\\u001b[2J\\u001b]0;pwned\\u0007\\u0000",
                       "uptime": "see http://admin:%s@evil.example/x"}).encode()
    RECORD = sys.argv[2]

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, code):
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)

        def do_GET(self):
            self._answer(500 if "managers" in self.path else 200)

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            with open(RECORD, "ab") as out:
                out.write(self.path.encode() + b"\\n" + self.rfile.read(length) + b"\\n")
            self._answer(200)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    print("ready", flush=True)
    server.serve_forever()
""") % BODY_PASSWORD


@dataclass
class Env:
    tmp: Path
    config: Path
    state: Path
    environ: dict[str, str]
    posts: Path


def assert_clean(*texts: str) -> None:
    for text in texts:
        for secret in PLANTED:
            for form in {secret, quote(secret, safe="")}:
                assert form not in text, f"{form} leaked into: {text[:400]!r}"
        assert "\x1b" not in text and "\x00" not in text and "\x07" not in text, f"control character in {text!r}"


def private(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode == (0o700 if path.is_dir() else 0o600), f"{path} is {oct(mode)}"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    port, closed = free_port(), free_port()
    posts = tmp_path / "posts.log"
    script = tmp_path / "service.py"
    script.write_text(HOSTILE_SERVICE, encoding="utf-8")
    service_env = {**os.environ, "GO_ENV": "production", "ES_OPENAI": SERVICE_ENV_SECRET}
    proc = subprocess.Popen([PY, str(script), str(port), str(posts)], stdout=subprocess.PIPE, env=service_env,
                            text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        (tmp_path / "runbooks").mkdir()
        (tmp_path / "runbooks" / "leak-test.yaml").write_text(textwrap.dedent("""
            id: leak-test
            title: print the addresses (secrets inside)
            class: monitoring
            steps:
              - name: tell
                action: notify
                inputs:
                  message: >-
                    prom {{ target.prometheus.url }} dsn {{ target.postgres.dsn }}
                    metrics {{ target.service.metrics_url }} qdrant {{ target.qdrant.url }}
        """), encoding="utf-8")
        (tmp_path / "logs").mkdir()
        state = tmp_path / "state"
        config = {
            "default_target": "t",
            "runbook_dirs": [str(tmp_path / "runbooks")],
            "state_dir": str(state),
            "audit_log": str(state / "audit.jsonl"),
            "targets": {"t": {
                "service": {"api_url": f"http://127.0.0.1:{port}",
                            "metrics_url": f"http://metrics:{METRICS_PASSWORD}@127.0.0.1:{port}/metrics",
                            "pprof_url": f"http://127.0.0.1:{port}/debug/pprof",
                            "log_dir": str(tmp_path / "logs"),
                            "required_env": ["GO_ENV", "ES_OPENAI"],
                            "api_key": "env:ES_T_API_KEY", "openai_api_key": "env:ES_T_OPENAI"},
                "postgres": {"dsn": f"postgresql://emailsender:env:ES_T_PGPW@127.0.0.1:{closed}/email_sender"
                                    f"?password={PG_QUERY_PASSWORD}&sslmode=disable"},
                "qdrant": {"url": f"http://qd:{QDRANT_URL_PASSWORD}@127.0.0.1:{closed}", "api_key": "env:ES_T_QD"},
                "prometheus": {"url": f"http://admin:{PROM_PASSWORD}@127.0.0.1:{closed}"},
                "absent": {"docker": "no Docker in this test", "grafana": "none", "redis": "none"},
                "check_timeout_s": 3, "deadline_s": 20,
            }},
            "escalation": {"channels": {"hook": {"type": "webhook", "url": "env:ES_T_HOOK", "retries": 0}},
                           "levels": {1: {"channels": ["hook"]}}},
        }
        path = tmp_path / "es-doctor.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        environ = {**os.environ, "ES_T_API_KEY": API_KEY, "ES_T_PGPW": PG_PASSWORD, "ES_T_QD": QDRANT_KEY,
                   "ES_T_OPENAI": OPENAI_KEY, "ES_T_HOOK": f"http://127.0.0.1:{port}/hook/{HOOK_TOKEN}",
                   "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock", "XDG_STATE_HOME": str(tmp_path / "xdg")}
        environ = {k: v for k, v in environ.items() if not k.startswith("ES_DOCTOR_")}
        yield Env(tmp_path, path, state, environ, posts)
    finally:
        proc.terminate()
        proc.wait(10)


def cli(e: Env, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "es_doctor", "-c", str(e.config), *args], capture_output=True, text=True,
                          env=e.environ, timeout=timeout, cwd=e.tmp, check=False)


@pytest.mark.parametrize("fmt", ["table", "json", "junit", "nagios", "prometheus"])
def test_diagnose_output_holds_no_secret_and_no_control_character(env: Env, fmt: str) -> None:
    result = cli(env, "diagnose", "--format", fmt, "--detailed")
    assert result.returncode in (0, 1, 2, 3), result.stderr
    assert_clean(result.stdout, result.stderr)
    assert "ok" in result.stdout or fmt in ("nagios", "prometheus")
    if fmt == "junit":
        root = ET.fromstring(result.stdout.encode())  # well-formed XML despite the server's NUL and ESC
        assert root.tag == "testsuites"
    if fmt == "json":
        report = json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
        by_id = {f["id"]: f for f in report["findings"]}
        go_env = by_id["startup.go-env"]
        shown = next(e["value"] for e in go_env["evidence"] if e["name"] == "env")
        assert shown == {"GO_ENV": "production", "ES_OPENAI": "set"}, shown  # values only for show_env
        assert "ES_OPENAI=set" in go_env["summary"], go_env["summary"]


def test_config_show_plan_run_audit_and_escalation_hold_no_secret(env: Env) -> None:
    shown = cli(env, "config", "show")
    assert shown.returncode == 0, shown.stderr
    assert_clean(shown.stdout, shown.stderr)
    assert "env:ES_T_PGPW" in shown.stdout  # the reference is shown, never its value

    status = cli(env, "emergency", "status")
    assert status.returncode == 0, status.stderr
    assert_clean(status.stdout, status.stderr)

    dry = cli(env, "fix", "leak-test", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert_clean(dry.stdout, dry.stderr)
    assert "prom http://admin:********@127.0.0.1" in dry.stdout, dry.stdout  # the plan prints masked inputs

    run = cli(env, "fix", "leak-test", "--yes")
    assert run.returncode == 0, run.stdout + run.stderr
    assert_clean(run.stdout, run.stderr)
    audit = (env.state / "audit.jsonl").read_text(encoding="utf-8")
    assert "fix.step" in audit
    assert_clean(audit)
    private(env.state / "audit.jsonl")

    escalated = cli(env, "escalate", "--level", "1", "--severity", "high", "--issue", "leak test")
    assert escalated.returncode == 0, escalated.stdout + escalated.stderr
    assert_clean(escalated.stdout, escalated.stderr)
    [bundle] = list((env.state / "incidents").iterdir())
    private(bundle)
    for item in bundle.iterdir():
        private(item)
        assert_clean(item.read_text(encoding="utf-8"))
    posted = env.posts.read_text(encoding="utf-8")
    assert "leak test" in posted  # the webhook got the incident
    body = posted.split("\n", 1)[1]
    assert_clean(body)


def test_an_unset_env_secret_is_a_configuration_finding_naming_the_variable(env: Env) -> None:
    env.environ.pop("ES_T_PGPW")
    result = cli(env, "diagnose", "--format", "json", "--check", "startup.postgres")
    report = json.loads(result.stdout)
    [finding] = [f for f in report["findings"] if f["id"] == "startup.postgres"]
    assert finding["status"] == "UNKNOWN"
    assert "ES_T_PGPW" in finding["summary"] and "not set" in finding["summary"], finding
    assert finding["runbook"] is None  # a configuration problem: no restart hint


# --------------------------------------------------------------------------- real pg_dump, real PostgreSQL


@pytest.fixture
def odd_password(postgres_server: str) -> Iterator[tuple[str, str]]:
    """The application role's password set to one full of URL syntax (restored afterwards)."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict

    original = str(conninfo_to_dict(postgres_server)["password"])
    odd = "SEK@RET:/4x%41 #?&" + PG_PASSWORD
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER ROLE CURRENT_USER PASSWORD {}").format(sql.Literal(odd)))
    try:
        yield postgres_server.replace(f":{original}@", ":{}@"), odd
    finally:
        with psycopg.connect(postgres_server.replace(f":{original}@", f":{quote(odd, safe='')}@"),
                             autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER ROLE CURRENT_USER PASSWORD {}").format(sql.Literal(original)))


@pytest.mark.parametrize("form", ["env-in-userinfo", "percent-encoded-query", "separate-password-field"])
def test_pg_dump_gets_the_decoded_password_through_its_environment_never_argv(
        tmp_path: Path, odd_password: tuple[str, str], form: str) -> None:
    from es_doctor.tools import pg_bin

    template, password = odd_password
    real = pg_bin("pg_dump")
    record = tmp_path / "record"
    record.mkdir()
    shim_dir = tmp_path / "bin"
    shim_dir.mkdir()
    shim = shim_dir / "pg_dump"
    shim.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {record}/argv\nprintf '%s' \"$PGPASSWORD\" > "
                    f"{record}/pgpassword\ncat /proc/$$/cmdline > {record}/cmdline\nexec {real} \"$@\"\n",
                    encoding="utf-8")
    shim.chmod(0o755)
    no_password = template.replace(":{}@", "@")
    postgres: dict[str, str] = {
        "env-in-userinfo": {"dsn": template.format("env:ES_T_PGPW")},
        "percent-encoded-query": {"dsn": f"{no_password}?password={quote(password, safe='')}"},
        "separate-password-field": {"dsn": no_password, "password": "env:ES_T_PGPW"},
    }[form]
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "runbooks" / "dump.yaml").write_text(
        "id: dump-test\ntitle: dump the database\nclass: deploy\nsteps:\n  - name: dump\n    action: postgres.dump\n",
        encoding="utf-8")
    state = tmp_path / "state"
    config = tmp_path / "es-doctor.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(state), "audit_log": str(state / "audit.jsonl"),
                                      "runbook_dirs": [str(tmp_path / "runbooks")],
                                      "targets": {"t": {"postgres": postgres}}}), encoding="utf-8")
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("ES_DOCTOR_", "PG"))}
    environ.update({"PATH": f"{shim_dir}:{environ.get('PATH', '')}", "ES_T_PGPW": password})
    result = subprocess.run([PY, "-m", "es_doctor", "-c", str(config), "fix", "dump-test", "--yes"],
                            capture_output=True, text=True, env=environ, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_clean(result.stdout, result.stderr)
    argv = (record / "argv").read_text(encoding="utf-8")
    cmdline = (record / "cmdline").read_bytes().decode("utf-8", "replace")
    for text in (argv, cmdline):
        # no password on the command line: not its value, not a password= parameter (--no-password is the
        # flag that forbids a prompt)
        assert "password=" not in text.lower() and password not in text and quote(password, safe="") not in text
    assert (record / "pgpassword").read_text(encoding="utf-8") == password  # decoded, exactly
    [run_dir] = list((state / "runs").iterdir())
    [dump] = list(run_dir.glob("postgres-*.dump"))
    assert dump.stat().st_size > 0
    private(run_dir)
    private(dump)
    assert_clean((state / "audit.jsonl").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- encoded forms (issue 24 items 12, 13)

#: a server echoing every request's headers in its answer (/health and a failing webhook POST)
ECHO_SERVICE = textwrap.dedent("""
    import json, sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, code):
            seen = {"echo": self.headers.get("Authorization", ""),
                    "headers": "\\n".join(f"{k}: {v}" for k, v in self.headers.items())}
            body = json.dumps({"status": "seen " + seen["echo"], **seen}).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            self._answer(500 if "managers" in self.path else 200)

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._answer(400)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    print("ready", flush=True)
    server.serve_forever()
""")
URL_USER, URL_PASSWORD = "svc", "USERINFO-PLANTED-q2"
HOOK_USER, HOOK_PASSWORD = "hook", "HOOKINFO-PLANTED-q2"
SESSION = "SESSION-PLANTED-q2"
BEARER = "BEARER-PLANTED-q2"


def encoded_forms() -> list[str]:
    import base64

    out = []
    for pair in (f"{URL_USER}:{URL_PASSWORD}", f"{HOOK_USER}:{HOOK_PASSWORD}", BEARER, API_KEY):
        encoded = base64.b64encode(pair.encode()).decode()
        out += [encoded, encoded.rstrip("=")]
    return [*out, URL_PASSWORD, HOOK_PASSWORD, SESSION, BEARER, API_KEY]


def assert_no_encoded_secret(*texts: str) -> None:
    for text in texts:
        for form in encoded_forms():
            assert form not in text, f"{form} leaked into: {text[:600]!r}"


@pytest.fixture
def echo(tmp_path: Path) -> Iterator[Env]:
    port = free_port()
    script = tmp_path / "echo.py"
    script.write_text(ECHO_SERVICE, encoding="utf-8")
    proc = subprocess.Popen([PY, str(script), str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        logs = tmp_path / "logs"
        logs.mkdir()
        lines = [
            {"level": "ERROR", "msg": f"upstream refused: Authorization: Bearer {BEARER}", "component": "api"},
            {"level": "ERROR", "msg": f"login failed for bob session={SESSION} from 10.0.0.1", "component": "auth"},
        ]
        (logs / "email-sender.log").write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
        (logs / "email-sender-error.log").write_text(
            f"ERROR proxy sent Cookie: session={SESSION}; theme=dark\n"
            f"ERROR retry with headers {{'Authorization': 'Bearer {BEARER}'}}\n", encoding="utf-8")
        state = tmp_path / "state"
        config = {
            "default_target": "t", "state_dir": str(state), "audit_log": str(state / "audit.jsonl"),
            "targets": {"t": {
                "service": {"api_url": f"http://{URL_USER}:{URL_PASSWORD}@127.0.0.1:{port}",
                            "metrics_url": f"http://127.0.0.1:{port}/metrics",
                            "pprof_url": f"http://127.0.0.1:{port}/debug/pprof", "log_dir": str(logs)},
                "absent": {"docker": "none", "grafana": "none", "redis": "none", "postgres": "none",
                           "qdrant": "none", "prometheus": "none"},
                "check_timeout_s": 3, "deadline_s": 20}},
            "escalation": {"channels": {"hook": {"type": "webhook", "retries": 0,
                                                 "url": f"http://{HOOK_USER}:{HOOK_PASSWORD}@127.0.0.1:{port}/h"}},
                           "levels": {1: {"channels": ["hook"]}}},
        }
        path = tmp_path / "es-doctor.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        environ = {k: v for k, v in os.environ.items() if not k.startswith("ES_DOCTOR_")}
        environ.update({"ES_T_API_KEY": API_KEY, "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock",
                        "XDG_STATE_HOME": str(tmp_path / "xdg")})
        yield Env(tmp_path, path, state, environ, tmp_path / "unused")
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("fmt", ["table", "json", "junit", "nagios", "prometheus"])
def test_basic_and_bearer_forms_echoed_by_a_server_never_reach_the_output(echo: Env, fmt: str) -> None:
    result = cli(echo, "diagnose", "--format", fmt, "--detailed")
    assert result.returncode in (0, 1, 2, 3), result.stderr
    assert_no_encoded_secret(result.stdout, result.stderr)
    if fmt == "json":  # the echo did reach the report (masked): the test sees what it means to see
        assert "seen Basic ********" in result.stdout, result.stdout[:3000]


def test_credentials_in_log_lines_and_a_webhook_userinfo_never_reach_the_incident_bundle(echo: Env) -> None:
    logs = cli(echo, "logs", "--format", "json")
    assert_no_encoded_secret(logs.stdout, logs.stderr)
    escalated = cli(echo, "escalate", "--level", "1", "--severity", "high", "--issue", "leak test")
    assert_no_encoded_secret(escalated.stdout, escalated.stderr)
    [bundle] = list((echo.state / "incidents").iterdir())
    names = sorted(p.name for p in bundle.iterdir())
    assert {"incident.json", "incident.md", "delivery.json"} <= set(names), names
    for item in bundle.iterdir():
        assert_no_encoded_secret(item.read_text(encoding="utf-8"))
    markdown = (bundle / "incident.md").read_text(encoding="utf-8")
    assert "session=********" in markdown and "login failed for bob" in markdown, markdown
    delivery = (bundle / "delivery.json").read_text(encoding="utf-8")
    assert "HTTP 400" in delivery, delivery
