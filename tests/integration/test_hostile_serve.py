"""``es-doctor serve`` against hostile clients and a damaged store (issue 24 items 10, 11): real sockets
on loopback against the real server (in this process, so its threads can be counted), a real SQLite file
overwritten with garbage."""

from __future__ import annotations

import socket
import sqlite3
import struct
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from es_doctor.config import Target, load_targets
from es_doctor.findings import Evidence, Finding, Report, Status
from es_doctor.serve.daemon import Daemon, settings_from

pytestmark = pytest.mark.integration


def fake_run(name: str, target: Target) -> Report:
    import datetime as dt

    finding = Finding(**{"id": "startup.api-port", "class": "startup", "status": Status.OK, "summary": "ok",
                         "evidence": [Evidence(name="url", value=target.service.api_url)]})
    return Report(tool_version="t", target=name, started_at=dt.datetime.now(dt.UTC), duration_ms=1.0,
                  findings=[finding])


def config(tmp_path: Path) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(f"state_dir: {tmp_path / 'state'}\nserve:\n  interval_s: 1\n  jitter_pct: 0\n"
                    "targets:\n  a:\n    service:\n      api_url: http://127.0.0.1:1\n")
    return path


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Daemon]]:
    from es_doctor.serve.http import Server

    daemon = Daemon(lambda: settings_from(load_targets(str(config(tmp_path)), [], True), "127.0.0.1:0"),
                    run=fake_run, widgets=False)
    server = Server(daemon)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    daemon.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", daemon
    finally:
        server.shutdown()
        server.server_close()
        daemon.stop()


def timed_get(url: str, timeout: float = 10) -> tuple[int, float]:
    started = time.monotonic()
    with urllib.request.urlopen(url, timeout=timeout) as response:
        response.read()
        return response.status, time.monotonic() - started


def test_slowloris_sockets_neither_take_every_thread_nor_silence_healthz(served: tuple[str, Daemon]) -> None:
    from es_doctor.serve.http import HEAD_DEADLINE_S, MAX_CONNECTIONS

    base, _ = served
    port = int(base.rsplit(":", 1)[1])
    threads_before = threading.active_count()
    slow: list[socket.socket] = []
    try:
        for _ in range(300):  # each sends half a request head, then nothing
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            slow.append(sock)
        time.sleep(1.0)
        assert threading.active_count() - threads_before <= MAX_CONNECTIONS + 2, threading.active_count()
        for path in ("/healthz", "/metrics"):
            status, took = timed_get(base + path)
            assert status == 200 and took < 5.0, (path, took)
        # one dripping a byte at a time is cut at the head deadline, whatever its pace
        drip = socket.create_connection(("127.0.0.1", port), timeout=HEAD_DEADLINE_S + 10)
        started = time.monotonic()
        closed_after = None
        try:
            for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 200:
                drip.sendall(bytes([byte]))
                time.sleep(0.2)
                if time.monotonic() - started > HEAD_DEADLINE_S + 8:
                    break
        except OSError:
            closed_after = time.monotonic() - started
        if closed_after is None:
            drip.settimeout(5)
            try:
                closed_after = time.monotonic() - started if drip.recv(1) == b"" else None
            except OSError:
                closed_after = time.monotonic() - started
        drip.close()
        assert closed_after is not None and closed_after < HEAD_DEADLINE_S + 8, closed_after
        assert threading.active_count() - threads_before <= MAX_CONNECTIONS + 2
    finally:
        for sock in slow:
            sock.close()
    deadline = time.monotonic() + HEAD_DEADLINE_S + 5
    while threading.active_count() > threads_before + 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert threading.active_count() <= threads_before + 2, "connection threads were left behind"


def test_a_client_that_resets_its_connection_logs_no_traceback(served: tuple[str, Daemon],
                                                               capfd: pytest.CaptureFixture[str]) -> None:
    base, _ = served
    port = int(base.rsplit(":", 1)[1])
    for _ in range(5):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
        sock.close()
    time.sleep(1.0)
    assert timed_get(base + "/healthz")[0] == 200
    err = capfd.readouterr().err
    assert "Traceback" not in err and "ConnectionResetError" not in err, err


def test_a_corrupt_store_is_set_aside_and_serve_starts_afresh(tmp_path: Path,
                                                              capfd: pytest.CaptureFixture[str]) -> None:
    from es_doctor.serve.store import Store

    path = tmp_path / "state" / "serve" / "serve.db"
    path.parent.mkdir(parents=True, mode=0o700)
    garbage = b"SQLite format 3\x00" + b"\xff" * 4096  # a database header, then nothing readable
    path.write_bytes(garbage)
    path.chmod(0o600)
    store = Store(path, 30.0)
    try:
        store.record(fake_run("a", Target()))
        assert store.latest("a") is not None
    finally:
        store.close()
    [aside] = list(path.parent.glob("serve.db.corrupt-*"))
    assert aside.read_bytes() == garbage  # the damaged file is kept, not lost
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM latest").fetchone() == (1,)
    err = capfd.readouterr().err
    assert "set aside as serve.db.corrupt-" in err and "Traceback" not in err, err
    # the daemon over the same directory: a garbage file again, it starts
    path.write_bytes(b"not a database at all" * 100)
    daemon = Daemon(lambda: settings_from(load_targets(str(config(tmp_path)), [], True), "127.0.0.1:0"),
                    run=fake_run, widgets=False)
    daemon.stop()
    assert len(list(path.parent.glob("serve.db.corrupt-*"))) == 2  # both damaged files kept
