"""`es-doctor emergency` on the real lab and engine: read-only and maintenance through the API,
the stack restart (down/up in order), the rollback to the previous image, and the restart whose
service fails its health check, cured by the rollback path."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.docker]


def es_doctor(lab: Any, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ES_DOCTOR_LAB_DIR": str(lab.lab_dir), "ES_DOCTOR_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
           "ES_DOCTOR_STATE_DIR": str(tmp_path / "state"), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "es_doctor", "-t", "lab", "emergency", *args], capture_output=True,
                          text=True, env=env, timeout=600, check=False)


def api(lab: Any, path: str) -> str:
    return f"http://127.0.0.1:{lab.stack.settings.ports.api}{path}"


def write_status(lab: Any) -> int:
    return httpx.post(api(lab, "/api/v1/tasks"), json={"title": "probe"}, timeout=10).status_code


def test_readonly_on_refuses_writes_and_off_lifts_it(healthy_lab: Any, tmp_path: Path) -> None:
    assert write_status(healthy_lab) in (200, 201)
    on = es_doctor(healthy_lab, tmp_path, "readonly")
    assert on.returncode == 0, on.stdout + on.stderr
    assert httpx.get(api(healthy_lab, "/api/v1/maintenance")).json()["readonly"] is True
    assert write_status(healthy_lab) == 503
    status = es_doctor(healthy_lab, tmp_path, "status")
    assert "read-only: ON" in status.stdout and "email-sender-go" in status.stdout
    off = es_doctor(healthy_lab, tmp_path, "readonly", "--off")
    assert off.returncode == 0, off.stdout + off.stderr
    assert write_status(healthy_lab) in (200, 201)
    assert "emergency-readonly" in (tmp_path / "audit.jsonl").read_text()


def test_maintenance_enable_disable(healthy_lab: Any, tmp_path: Path) -> None:
    assert es_doctor(healthy_lab, tmp_path, "maintenance", "enable").returncode == 0
    assert httpx.get(api(healthy_lab, "/api/v1/maintenance")).json()["maintenance"] is True
    assert write_status(healthy_lab) == 503
    assert es_doctor(healthy_lab, tmp_path, "maintenance", "disable").returncode == 0
    assert httpx.get(api(healthy_lab, "/api/v1/maintenance")).json()["maintenance"] is False
    assert es_doctor(healthy_lab, tmp_path, "maintenance", "sideways").returncode == 64


def test_restart_stops_in_reverse_order_and_starts_in_order(healthy_lab: Any, tmp_path: Path) -> None:
    client = docker.DockerClient(base_url=healthy_lab.stack.settings.docker_host)
    try:
        names = ["postgres", "qdrant", "email-sender-go", "prometheus"]
        before = {n: client.containers.get(n).attrs["State"]["StartedAt"] for n in names}
        result = es_doctor(healthy_lab, tmp_path, "restart", "--yes")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr
        assert "emergency-restart: DONE" in result.stdout
        after = {n: client.containers.get(n).attrs["State"] for n in names}
        assert all(after[n]["StartedAt"] != before[n] and after[n]["Running"] for n in names)
        started = sorted(names, key=lambda n: after[n]["StartedAt"])
        assert started == names, "started in dependency order (postgres, qdrant, service, prometheus)"
    finally:
        client.close()


def test_rollback_to_a_named_image_then_back_by_the_record(healthy_lab: Any, tmp_path: Path) -> None:
    client = docker.DockerClient(base_url=healthy_lab.stack.settings.docker_host)
    try:
        result = es_doctor(healthy_lab, tmp_path, "rollback", "--to", "email-sender-go:previous", "--yes")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr
        assert client.containers.get("email-sender-go").attrs["Config"]["Image"] == "email-sender-go:previous"
        # the deployment record now knows what ran before: rollback without --to goes back to it
        again = es_doctor(healthy_lab, tmp_path, "rollback", "--yes")
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr
        assert client.containers.get("email-sender-go").attrs["Config"]["Image"] == "email-sender-go:lab"
    finally:
        client.close()


def test_rollback_without_a_record_or_tag_says_what_to_do(healthy_lab: Any, tmp_path: Path) -> None:
    result = es_doctor(healthy_lab, tmp_path, "rollback", "--yes")
    assert result.returncode == 1
    assert "name one: --to TAG" in result.stdout


def test_restart_with_a_service_failing_health_rolls_back(healthy_lab: Any, tmp_path: Path) -> None:
    """The release on email-sender-go:lab crashes at start (fault service-exits); the one before does not."""
    client = docker.DockerClient(base_url=healthy_lab.stack.settings.docker_host)
    try:
        # a deployment from :previous to :lab, recorded by es-doctor
        assert es_doctor(healthy_lab, tmp_path, "rollback", "--to", "email-sender-go:previous", "--yes").returncode == 0
        assert es_doctor(healthy_lab, tmp_path, "rollback", "--to", "email-sender-go:lab", "--yes").returncode == 0
        healthy_lab.add_fault("service-exits")  # the :lab release now fails at start
        failed = es_doctor(healthy_lab, tmp_path, "restart", "--yes")
        assert failed.returncode == 1, failed.stdout[-3000:]
        assert "FAILED" in failed.stdout
        assert client.containers.get("email-sender-go").attrs["Config"]["Image"] == "email-sender-go:lab"
        # --rollback-on-failure puts back what ran (#24 item 20): the :lab release, which still cannot
        # start; it never claims ROLLED BACK for a target that is not as it was, nor swaps the image
        again = es_doctor(healthy_lab, tmp_path, "restart", "--yes", "--rollback-on-failure")
        assert again.returncode == 1 and "FAILED" in again.stdout, again.stdout[-3000:]
        assert "FAILED, ROLLED BACK" not in again.stdout, again.stdout[-3000:]
        assert "redeploy-running" in again.stdout
        assert client.containers.get("email-sender-go").attrs["Config"]["Image"] == "email-sender-go:lab"
        # the guide's "rollback complet" to the release before is its own command (deployment record)
        cured = es_doctor(healthy_lab, tmp_path, "rollback", "--yes")
        assert cured.returncode == 0, cured.stdout[-3000:]
        container = client.containers.get("email-sender-go")
        assert container.attrs["Config"]["Image"] == "email-sender-go:previous"
        assert container.status == "running"
        assert httpx.get(api(healthy_lab, "/health"), timeout=5).status_code == 200
    finally:
        client.close()


def test_security_attack_maintenance_block_list_and_notify(healthy_lab: Any, tmp_path: Path) -> None:
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    received: list[dict[str, Any]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        healthy_lab.add_fault("security-attack")
        log = healthy_lab.stack.paths.logs / "email-sender.log"
        deadline = time.monotonic() + 30
        while log.read_text().count('"SECURITY"') < 30 and time.monotonic() < deadline:
            time.sleep(0.5)
        hook = f"http://127.0.0.1:{server.server_port}/hooks/SECRET-TOKEN-123"
        env_name = "LAB_TEST_SECURITY_HOOK"
        os.environ[env_name] = hook
        try:
            result = es_doctor(healthy_lab, tmp_path, "security", "--yes", "--webhook", f"env:{env_name}")
        finally:
            del os.environ[env_name]
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr
        assert httpx.get(api(healthy_lab, "/api/v1/maintenance")).json()["maintenance"] is True
        blocklists = list((tmp_path / "state" / "runs").glob("*/blocklist.txt"))
        assert len(blocklists) == 1
        blocked = blocklists[0].read_text().split()
        assert set(blocked) == {"203.0.113.7", "203.0.113.8", "198.51.100.23"}
        assert "deny 203.0.113.7;" in blocklists[0].with_name("blocklist.nginx.conf").read_text()
        for written in (blocklists[0], blocklists[0].with_name("blocklist.nginx.conf")):
            assert written.stat().st_mode & 0o777 == 0o600, f"{written.name} is readable by others"
        assert received and "203.0.113.7" in received[0]["text"]
        everything = result.stdout + result.stderr + (tmp_path / "audit.jsonl").read_text()
        assert "SECRET-TOKEN-123" not in everything
    finally:
        server.shutdown()
        server.server_close()
