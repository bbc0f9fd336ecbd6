"""diagnose against a stack that is not there, and against servers that accept and never answer.

Real sockets, no mocks: every finding says why, the run ends within its deadline, the exit code is
2 or 3, and there is no traceback.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import cli_command, isolated_env

pytestmark = pytest.mark.integration


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A server that accepts connections (kernel backlog) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(512)
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


def config_for(tmp_path: Path, port: int) -> Path:
    base = f"127.0.0.1:{port}"
    text = f"""
default_target: gone
targets:
  gone:
    service:
      api_url: http://{base}
      metrics_url: http://{base}/metrics
      log_dir: {tmp_path}/no-logs
    qdrant: {{url: "http://{base}"}}
    postgres: {{dsn: "postgresql://emailsender@{base}/email_sender", password: env:NOPE_PW}}
    prometheus: {{url: "http://{base}"}}
    grafana: {{url: "http://{base}"}}
    docker: {{host: "tcp://{base}"}}
    check_timeout_s: 3
    deadline_s: 8
"""
    path = tmp_path / "es-doctor.yaml"
    path.write_text(text)
    return path


def run_diagnose(config: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    env = isolated_env(tmp_path, drop=("DOCKER_",))
    env["ES_DOCTOR_LAB_DIR"] = str(tmp_path / "nolab")
    env["NOPE_PW"] = "unused"  # set: an unset env: secret would be a configuration finding, not a refusal
    begin = time.monotonic()
    result = subprocess.run(cli_command("--config", str(config), "diagnose",
                             "--format", "json"), capture_output=True, text=True, env=env, timeout=60, check=False)
    return result, time.monotonic() - begin


def assert_explained(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert "Traceback" not in result.stdout + result.stderr
    assert result.returncode in (2, 3), result.stderr
    report = json.loads(result.stdout)
    for finding in report["findings"]:
        assert finding["summary"], finding
        if finding["status"] == "OK":
            continue
        assert len(finding["summary"]) > 10, finding
    return report


def test_every_port_closed(tmp_path: Path) -> None:
    result, elapsed = run_diagnose(config_for(tmp_path, closed_port()), tmp_path)
    report = assert_explained(result)
    assert elapsed < 8 + 6
    by_id = {f["id"]: f for f in report["findings"]}  # type: ignore[index,union-attr]
    assert by_id["startup.api-port"]["status"] == "CRIT"
    assert "connection refused" in by_id["startup.api-port"]["summary"]
    assert by_id["startup.health"]["status"] == "SKIP"  # no 'unhealthy' when nothing listens
    assert by_id["vectors.qdrant"]["status"] == "CRIT"
    assert by_id["vectors.collection"]["status"] == "SKIP"  # no 'collection missing' when Qdrant is down
    assert by_id["startup.postgres"]["status"] == "CRIT"
    assert by_id["monitoring.metrics-endpoint"]["status"] == "CRIT"
    assert by_id["performance.latency"]["status"] == "SKIP"
    assert by_id["startup.docker-engine"]["status"] == "CRIT"
    assert by_id["deploy.containers"]["status"] == "SKIP"


def test_servers_that_accept_and_never_answer(tmp_path: Path, silent_port: int) -> None:
    result, elapsed = run_diagnose(config_for(tmp_path, silent_port), tmp_path)
    report = assert_explained(result)
    assert elapsed < 8 + 6, f"took {elapsed:.1f}s"
    by_id = {f["id"]: f for f in report["findings"]}  # type: ignore[index,union-attr]
    assert by_id["startup.api-port"]["status"] == "OK"  # the port does accept
    health = by_id["startup.health"]
    assert health["status"] in ("CRIT", "UNKNOWN")
    assert "not answering" in health["summary"] or "no result" in health["summary"]
    assert by_id["monitoring.metrics-endpoint"]["status"] in ("CRIT", "UNKNOWN")
