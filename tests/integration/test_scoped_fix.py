"""Scoped destruction and declared needs (issue 11, items 4 and 8), with real processes and no lab:

* ``process.free-port`` never terminates a local process for a target whose API is on another host,
  never the service itself, and names pid and command in the plan;
* a runbook whose ``requires:`` the target lacks is refused up front (also under ``--dry-run``),
  before any step, and ``fix --all`` goes on with the runbooks the target can run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from es_doctor.lab.infra import free_port

pytestmark = [pytest.mark.integration]

LISTENER = textwrap.dedent("""
    import socket, sys, time
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(16)
    print("listening", flush=True)
    while True:
        c, _ = s.accept(); c.close()  # a stranger: accepts and hangs up, speaks no HTTP
""")
#: a process that answers like the service (GET /health → {"status": "ok"})
SERVICE_LIKE = textwrap.dedent("""
    import json, sys
    from http.server import BaseHTTPRequestHandler, HTTPServer
    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"status": "ok"}).encode()
            self.send_response(200); self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
        def log_message(self, *a): pass
    srv = HTTPServer(("127.0.0.1", int(sys.argv[1])), H)
    print("listening", flush=True)
    srv.serve_forever()
""")
FREE_ONLY = """id: free-only
title: free the API port, nothing else
class: startup
flags: {destructive: true}
steps:
  - name: free-port
    action: process.free-port
    inputs: {port: "{{ target.service.api_url | port }}"}
"""


def start(script: str, port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", script, str(port)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "listening"
    return proc


@pytest.fixture
def listener() -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    proc = start(LISTENER, port)
    yield proc, port
    proc.kill()
    proc.wait()


def write_config(tmp_path: Path, api_host: str, port: int, **extra: object) -> Path:
    rb_dir = tmp_path / "runbooks"
    rb_dir.mkdir(exist_ok=True)
    (rb_dir / "free-only.yaml").write_text(FREE_ONLY)
    target = {"service": {"api_url": f"http://{api_host}:{port}", "metrics_url": f"http://{api_host}:1/metrics",
                          "pprof_url": f"http://{api_host}:1/debug/pprof"},
              "absent": {"docker": "no Docker on this target", "grafana": "none", "redis": "none",
                         "prometheus": "none", "postgres": "none", "qdrant": "none"},
              **extra}
    config = tmp_path / "es-doctor.yaml"
    config.write_text(json.dumps({"targets": {"t": target}, "runbook_dirs": [str(rb_dir)],
                                  "state_dir": str(tmp_path / "state"),
                                  "audit_log": str(tmp_path / "audit.jsonl")}))
    return config


def es_doctor(config: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("ES_DOCTOR_TARGET", None)
    return subprocess.run([sys.executable, "-m", "es_doctor", "--config", str(config), "-t", "t", *args],
                          capture_output=True, text=True, timeout=timeout, env=env, check=False)


def audit_events(tmp_path: Path) -> list[dict[str, object]]:
    path = tmp_path / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


@pytest.mark.parametrize("host", ["10.255.255.1", "remote-api.invalid"])
def test_remote_api_target_never_kills_the_local_listener_on_its_port(
        tmp_path: Path, listener: tuple[subprocess.Popen[str], int], host: str) -> None:
    proc, port = listener
    config = write_config(tmp_path, host, port)
    # the shipped runbook declares `requires: [docker, local]`: refused up front, nothing run
    shipped = es_doctor(config, "fix", "port-in-use", "--yes")
    assert shipped.returncode == 69, shipped.stdout + shipped.stderr
    assert "REFUSED: target t needs the service on this host" in shipped.stdout, shipped.stdout
    assert any(why in shipped.stdout for why in ("not an address of this host", "resolve")), shipped.stdout
    # a runbook with only the step (no requires:): the step itself proves the process is not the target's
    bare = es_doctor(config, "fix", "free-only", "--yes")
    assert bare.returncode == 1, bare.stdout + bare.stderr
    assert f"target's API (http://{host}:{port}) is not on this host" in bare.stdout, bare.stdout
    time.sleep(0.3)
    assert proc.poll() is None, "the unrelated local listener was killed"
    steps = [e for e in audit_events(tmp_path) if e["event"] == "fix.step"]
    assert steps and steps[-1]["status"] == "failed" and "not on this host" in str(steps[-1]["error"])


def test_local_target_plan_names_the_stranger_then_terminates_only_it(
        tmp_path: Path, listener: tuple[subprocess.Popen[str], int]) -> None:
    proc, port = listener
    config = write_config(tmp_path, "127.0.0.1", port)
    planned = es_doctor(config, "fix", "free-only", "--dry-run")
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert f"would terminate pid {proc.pid}" in planned.stdout and "socket" in planned.stdout, planned.stdout
    assert proc.poll() is None
    done = es_doctor(config, "fix", "free-only", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    proc.wait(timeout=10)
    assert not psutil.pid_exists(proc.pid) or psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE


def test_the_service_itself_is_kept(tmp_path: Path) -> None:
    port = free_port()
    service = start(SERVICE_LIKE, port)
    try:
        config = write_config(tmp_path, "localhost", port)
        planned = es_doctor(config, "fix", "free-only", "--dry-run")
        assert f"keeps the service's own pid {service.pid}" in planned.stdout, planned.stdout
        done = es_doctor(config, "fix", "free-only", "--yes")
        assert done.returncode == 0, done.stdout + done.stderr
        assert service.poll() is None, "the service itself was terminated"
        step = next(e for e in audit_events(tmp_path) if e["event"] == "fix.step")
        assert step["output"] == {"port": port, "terminated": [], "kept_service": [service.pid]}
    finally:
        service.kill()
        service.wait()


def test_a_port_that_is_not_the_targets_is_refused(tmp_path: Path,
                                                   listener: tuple[subprocess.Popen[str], int]) -> None:
    proc, port = listener
    config = write_config(tmp_path, "127.0.0.1", free_port())
    result = es_doctor(config, "fix", "free-only", "--yes", "--param", "x=1")
    assert result.returncode == 64  # free-only has no parameter: a usage error, nothing run
    (tmp_path / "runbooks" / "free-only.yaml").write_text(FREE_ONLY.replace(
        "{{ target.service.api_url | port }}", str(port)))
    result = es_doctor(config, "fix", "free-only", "--yes")
    assert result.returncode == 1 and f"port {port} is not a port of the target's service" in result.stdout
    assert proc.poll() is None


def test_requires_refuses_up_front_and_dry_run_says_so(tmp_path: Path) -> None:
    """A process-mode target (no Docker): the runbooks that restart containers are refused before any
    step, so the config they would change stays untouched."""
    service_config = tmp_path / "config.yaml"
    service_config.write_text("vector_cache:\n  max_size: 1000\n")
    before = service_config.read_bytes()
    config = write_config(tmp_path, "127.0.0.1", free_port())
    data = json.loads(config.read_text())
    data["targets"]["t"]["service"]["config_file"] = str(service_config)
    config.write_text(json.dumps(data))
    dry = es_doctor(config, "fix", "vector-cache-tune", "--dry-run")
    assert dry.returncode == 69, dry.stdout + dry.stderr
    assert "REFUSED: target t needs a way to restart the service: no Docker (no Docker on this target)" \
        in dry.stdout
    assert "(dry run)" in dry.stdout
    for runbook in ("vector-cache-tune", "dependency-restart", "config-missing", "service-restart"):
        result = es_doctor(config, "fix", runbook, "--yes")
        assert result.returncode == 69, result.stdout + result.stderr
        assert "needs docker" in result.stdout or "needs a way to restart the service" in result.stdout
    assert service_config.read_bytes() == before
    events = audit_events(tmp_path)
    assert {e["event"] for e in events} == {"fix.refused"}, events


#: the service refusing es-doctor's credentials (a wrong api_key): every request answers 401
REFUSING = textwrap.dedent("""
    import sys
    from http.server import BaseHTTPRequestHandler, HTTPServer
    STATUS = int(sys.argv[2])
    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"<html>unauthorized</html>" if STATUS != 200 else b"<html>a page</html>"
            self.send_response(STATUS); self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
        def log_message(self, *a): pass
    srv = HTTPServer(("127.0.0.1", int(sys.argv[1])), H)
    print("listening", flush=True)
    srv.serve_forever()
""")


@pytest.mark.parametrize(("status", "grade"), [(401, "OK"), (403, "OK"), (200, "WARN")])
def test_a_holder_that_answers_http_is_never_a_squatter(tmp_path: Path, status: int, grade: str) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", REFUSING, str(port), str(status)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "listening"
        config = write_config(tmp_path, "127.0.0.1", port)
        data = json.loads(config.read_text())
        data["targets"]["t"]["service"]["api_key"] = "a-wrong-key"
        config.write_text(json.dumps(data))
        check = es_doctor(config, "diagnose", "--check", "startup.port-owner", "-f", "json")
        finding = json.loads(check.stdout)["findings"][0]
        assert finding["status"] == grade, finding
        assert "another program" not in finding["summary"] and f"HTTP {status}" in finding["summary"], finding
        done = es_doctor(config, "fix", "free-only", "--yes")
        assert done.returncode == 0, done.stdout + done.stderr
        time.sleep(0.3)
        assert proc.poll() is None, "a holder that answers HTTP was terminated"
        step = next(e for e in audit_events(tmp_path) if e["event"] == "fix.step")
        assert step["output"] == {"port": port, "terminated": [], "kept_service": [proc.pid]}
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("host", ["127.0.0.2", "[::1]"])
def test_a_holder_of_another_address_on_the_same_port_is_not_the_targets(
        tmp_path: Path, listener: tuple[subprocess.Popen[str], int], host: str) -> None:
    proc, port = listener  # bound to 127.0.0.1:port only
    config = write_config(tmp_path, host, port)
    check = es_doctor(config, "diagnose", "--check", "startup.port-owner", "-f", "json")
    finding = json.loads(check.stdout)["findings"][0]
    assert finding["status"] == "OK" and f"port {port} is free" in finding["summary"], finding
    planned = es_doctor(config, "fix", "free-only", "--dry-run")
    assert f"pid {proc.pid}" not in planned.stdout and "nothing else holds" in planned.stdout, planned.stdout
    done = es_doctor(config, "fix", "free-only", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    time.sleep(0.3)
    assert proc.poll() is None, f"a process bound to 127.0.0.1:{port} was killed for a {host} target"
