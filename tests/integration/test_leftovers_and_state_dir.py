"""Nothing left behind, nothing half-written: a failed Qdrant snapshot download deletes the
snapshot on the server (the lab's Qdrant stand-in, a real subprocess, behind a local relay that
breaks the download); a state directory that cannot be written makes fix, backup and escalate
exit 73 naming the path (tests run as root, which ignores mode bits: the state dir is placed under
a regular file, and on a read-only mount where one can be made)."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from es_doctor.config import Target
from es_doctor.lab.infra import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def qdrant_server(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "es_doctor.lab.qdrant_server", "--port", str(port),
                             "--storage", str(tmp_path / "qdrant"), "--init-collection", "tasks:4:Cosine"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/collections/tasks")
            if conn.getresponse().status == 200:
                break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("the Qdrant stand-in did not start")
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def breaking_relay(qdrant_server: str) -> Iterator[str]:
    """Relays to Qdrant, except a snapshot download: its headers promise 10 MB, 100 bytes come, then the
    connection closes."""
    upstream = qdrant_server.rsplit(":", 1)[1]

    class Relay(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _relay(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.command == "GET" and "/snapshots/" in self.path:
                self.send_response(200)
                self.send_header("Content-Length", str(10 * 1024 * 1024))
                self.end_headers()
                self.wfile.write(b"x" * 100)
                self.wfile.flush()
                self.close_connection = True
                return
            conn = http.client.HTTPConnection("127.0.0.1", int(upstream), timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
            conn.request(self.command, self.path, body=body or None, headers=headers)
            answer = conn.getresponse()
            data = answer.read()
            self.send_response(answer.status)
            for key, value in answer.getheaders():
                if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _relay

    server = ThreadingHTTPServer(("127.0.0.1", 0), Relay)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_failed_snapshot_download_deletes_the_snapshot_on_the_server(
        qdrant_server: str, breaking_relay: str, tmp_path: Path) -> None:
    from es_doctor.backup import Backup, BackupError, BackupStore
    from es_doctor.probes.qdrant import QdrantProbe
    from es_doctor.probes.session import ProbeSession

    direct = QdrantProbe(qdrant_server, timeout=10)
    assert direct.client().unwrap().list_snapshots("tasks") == []
    target = Target.model_validate({"qdrant": {"url": breaking_relay}})
    partial = tmp_path / "partial"
    partial.mkdir()
    said: list[str] = []
    with ProbeSession(target, timeout=60) as session:
        job = Backup(session, "t", BackupStore(tmp_path / "store"), say=said.append)
        with pytest.raises(BackupError, match="download of snapshot"):
            job._qdrant(session, partial, {"skipped": {}})
    assert list((partial / "qdrant").iterdir()) == [], "a partial snapshot file was left"
    assert direct.client().unwrap().list_snapshots("tasks") == [], "the snapshot was left on the Qdrant server"
    assert any("snapshot" in line for line in said)


# --------------------------------------------------------------------------- a state dir that cannot be written


def _env(tmp_path: Path, state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ES_DOCTOR_")}
    config = tmp_path / "es-doctor.yaml"
    config.write_text(f"state_dir: {state}\naudit_log: {state}/audit.jsonl\n"
                      "targets: {default: {absent: {docker: test}, check_timeout_s: 1, deadline_s: 3}}\n")
    env.update({"ES_DOCTOR_CONFIG": str(config), "ES_DOCTOR_LAB_DIR": str(tmp_path / "nolab")})
    return env


def _unwritable_states(tmp_path: Path) -> Iterator[Path]:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    yield blocker / "state"  # ENOTDIR, for root too
    yield Path("/proc/es-doctor-state")  # procfs refuses new entries, for root too


@pytest.mark.parametrize("command", [
    ["fix", "emergency-maintenance", "--param", "enabled=true", "--yes"],
    ["emergency", "backup"],
    ["escalate", "--level", "1", "--issue", "disk full", "--severity", "high", "--no-attach-diagnosis"],
])
def test_an_unwritable_state_dir_exits_73_naming_the_path(tmp_path: Path, command: list[str]) -> None:
    for state in _unwritable_states(tmp_path):
        proc = subprocess.run([sys.executable, "-m", "es_doctor", *command], capture_output=True, text=True,
                              env=_env(tmp_path, state), timeout=60, check=False)
        assert proc.returncode == 73, (state, proc.returncode, proc.stdout, proc.stderr)
        assert str(state) in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr


def _file_size_limit(limit: int) -> Any:
    import resource

    def apply() -> None:  # a full disk, for root too: writes past ``limit`` bytes fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.parametrize("command", [
    ["fix", "emergency-maintenance", "--param", "enabled=true", "--yes"],
    ["emergency", "backup"],
    ["escalate", "--level", "1", "--issue", "disk full", "--severity", "high", "--no-attach-diagnosis"],
])
def test_a_full_state_dir_exits_73_before_any_change(tmp_path: Path, command: list[str]) -> None:
    state = tmp_path / "state"
    proc = subprocess.run([sys.executable, "-m", "es_doctor", *command], capture_output=True, text=True,
                          env=_env(tmp_path, state), timeout=60, check=False, preexec_fn=_file_size_limit(8192))
    assert proc.returncode == 73, (proc.returncode, proc.stdout, proc.stderr)
    assert str(state) in proc.stderr and "nothing was changed" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_disk_that_fills_up_during_a_fix_exits_73_naming_the_place(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "audit.jsonl").write_text("{}\n" * (100 * 1024 // 3))  # the next record goes past the limit
    proc = subprocess.run([sys.executable, "-m", "es_doctor", "fix", "emergency-maintenance", "--param",
                           "enabled=true", "--yes"], capture_output=True, text=True, env=_env(tmp_path, state),
                          timeout=60, check=False, preexec_fn=_file_size_limit(100 * 1024))
    assert proc.returncode == 73, (proc.returncode, proc.stdout, proc.stderr)
    assert f"{state}/audit.jsonl" in proc.stderr and "File too large" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
