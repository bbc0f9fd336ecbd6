"""Hostile HTTP servers on 127.0.0.1 (threads in this test): a body dripped one byte every 0.5 s,
headers dripped, an endless chunked body, a gzip bomb, a 200,000-deep JSON array, a huge body, an
API that answers after 30 s, a 429 with Retry-After. Every reader of es-doctor (probes, the
``http`` and ``notify`` actions, escalation webhooks, Qdrant, ``emergency status``) turns each into
a clean failure within its bound, with bounded memory."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import psutil
import pytest

from es_doctor.config import EscalationChannel, Target
from es_doctor.probes.http import MAX_BODY, HttpProbe, parse_json
from es_doctor.probes.result import FailureKind

pytestmark = pytest.mark.integration

DEEP = b"[" * 200_000 + b"]" * 200_000


def _gzip_bomb() -> bytes:
    """1 GiB of zeros, gzip-compressed (about 1 MB)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = b"\0" * (1 << 20)
    return b"".join(comp.compress(zeros) for _ in range(1024)) + comp.flush()


class Hostile(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    bomb = b""
    hits: ClassVar[dict[str, int]] = {}

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _any(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        path = self.path.split("?")[0].rstrip("/")
        Hostile.hits[path] = Hostile.hits.get(path, 0) + 1
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            getattr(self, "route_" + path.strip("/").replace("/", "_").replace("-", "_"), self.route_ok)()

    do_GET = do_POST = do_PUT = _any

    def route_ok(self) -> None:
        self._send(200, b'{"ok": true}')

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {"Content-Type": "application/json"}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def route_drip(self) -> None:  # a valid status line and headers, then one byte every 0.5 s
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "100000")
        self.end_headers()
        for _ in range(100000):
            self.wfile.write(b" ")
            self.wfile.flush()
            time.sleep(0.5)

    def route_drip_headers(self) -> None:  # headers that never end
        self.wfile.write(b"HTTP/1.1 200 OK\r\n")
        for _ in range(100000):
            self.wfile.write(b"X: y\r\n")
            self.wfile.flush()
            time.sleep(0.5)

    def route_endless(self) -> None:  # chunked, never ends
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = b"a" * 65536
        while True:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))

    def route_gzip_bomb(self) -> None:
        self._send(200, Hostile.bomb, {"Content-Type": "application/json", "Content-Encoding": "gzip"})

    def route_deep(self) -> None:
        self._send(200, DEEP)

    def route_huge(self) -> None:  # 1 GiB announced and sent
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(1 << 30))
        self.end_headers()
        block = b"x" * (1 << 20)
        for _ in range(1024):
            self.wfile.write(block)

    def route_slow(self) -> None:
        time.sleep(30)
        self.route_ok()

    def route_api_v1_maintenance(self) -> None:
        self.route_slow()

    def route_collections(self) -> None:  # what qdrant-client reads: an endless answer
        self.route_endless()

    def route_redirect_loop(self) -> None:  # each hop answers in time, the chain never ends
        time.sleep(0.8)
        self._send(302, b"", {"Location": "/redirect-loop?again"})

    def route_always_busy(self) -> None:  # asks for an hour every time
        self._send(429, b"slow down", {"Retry-After": "3600"})

    def route_busy(self) -> None:
        if Hostile.hits["/busy"] % 2:
            self._send(429, b"slow down", {"Retry-After": "1"})
        else:
            self.route_ok()


@pytest.fixture(scope="module")
def hostile() -> Iterator[str]:
    Hostile.bomb = _gzip_bomb()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def rss() -> int:
    return int(psutil.Process().memory_info().rss)


@pytest.mark.parametrize("path", ["/drip", "/drip-headers"])
def test_a_dripping_server_is_cut_at_the_total_deadline(hostile: str, path: str) -> None:
    started = time.monotonic()
    result = HttpProbe(timeout=2).get(hostile + path)
    took = time.monotonic() - started
    assert result.failure is not None and result.failure.kind is FailureKind.TIMEOUT, result
    assert took < 3.0, f"{took:.1f}s for a 2 s deadline"


def test_one_deadline_covers_a_request_and_its_redirects(hostile: str) -> None:
    started = time.monotonic()
    result = HttpProbe(timeout=2).get(hostile + "/redirect-loop")
    assert result.failure is not None and result.failure.kind is FailureKind.TIMEOUT, result
    assert time.monotonic() - started < 3.0


@pytest.mark.parametrize("path", ["/endless", "/gzip-bomb", "/huge"])
def test_a_body_over_the_cap_is_refused_with_bounded_memory(hostile: str, path: str) -> None:
    before = rss()
    started = time.monotonic()
    result = HttpProbe(timeout=20).get(hostile + path)
    assert result.failure is not None and result.failure.kind is FailureKind.BAD_RESPONSE, result
    assert f"larger than {MAX_BODY} bytes" in result.failure.message
    assert time.monotonic() - started < 10
    assert rss() - before < 64 * 1024 * 1024


def test_deep_json_is_a_clean_failure(hostile: str) -> None:
    result = HttpProbe(timeout=10).get_json(hostile + "/deep")
    assert result.failure is not None and result.failure.kind is FailureKind.BAD_RESPONSE
    assert "nested deeper" in result.failure.message
    with pytest.raises(ValueError, match="nested deeper"):
        parse_json(DEEP)
    assert parse_json(b'{"a": [1, {"b": "[[[[ in a string ]"}]}') == {"a": [1, {"b": "[[[[ in a string ]"}]}


# --------------------------------------------------------------------------- the readers of es-doctor


def _channel(**extra: Any) -> EscalationChannel:
    return EscalationChannel.model_validate({"type": "webhook", "url": "env:X", **extra})


@pytest.mark.parametrize("path", ["/drip", "/endless", "/gzip-bomb", "/slow"])
def test_an_escalation_webhook_is_bounded_by_its_timeout(hostile: str, path: str) -> None:
    from es_doctor.escalation import post_with_retry

    before = rss()
    started = time.monotonic()
    delivery = post_with_retry("hook", _channel(timeout_s=2, retries=0), hostile + path, {"x": 1}, [])
    assert not delivery.ok and time.monotonic() - started < 3.0, delivery
    assert rss() - before < 64 * 1024 * 1024


def test_an_escalation_webhook_answering_429_is_retried_after_its_retry_after(hostile: str) -> None:
    from es_doctor.escalation import post_with_retry

    waits: list[float] = []
    Hostile.hits["/busy"] = 0
    delivery = post_with_retry("hook", _channel(retries=2, backoff_s=0.01), hostile + "/busy", {"x": 1}, [],
                               sleep=lambda s: (waits.append(s), time.sleep(s))[1])
    assert delivery.ok and delivery.attempts == 2 and waits == [1.0]


def test_retry_after_waits_are_capped_in_total_not_only_per_try(hostile: str) -> None:
    """Issue 24 item 17: two retries of a server asking for an hour waited 60 s each (121 s in all)."""
    from es_doctor.escalation import post_with_retry
    from es_doctor.probes.http import MAX_RETRY_AFTER_S, MAX_RETRY_WAIT_TOTAL_S

    waits: list[float] = []
    delivery = post_with_retry("hook", _channel(retries=4, backoff_s=0.01), hostile + "/always-busy", {"x": 1}, [],
                               sleep=waits.append)  # the waits are recorded, not slept: the server is real
    assert not delivery.ok and delivery.status_code == 429
    assert sum(waits) <= MAX_RETRY_WAIT_TOTAL_S <= MAX_RETRY_AFTER_S * 2, waits
    assert waits == [MAX_RETRY_WAIT_TOTAL_S] and delivery.attempts == 2, (waits, delivery)
    assert "spent" in delivery.detail


def _ctx(hostile: str, tmp_path: Path) -> Any:
    from es_doctor.runbooks.actions import ActionContext

    target = Target.model_validate({"service": {"api_url": hostile}, "qdrant": {"url": hostile}})
    work = tmp_path / "state" / "runs" / "r1"
    work.mkdir(parents=True)
    return ActionContext(target, "t", work)


@pytest.mark.parametrize(("path", "message"), [("/huge", "larger than"), ("/drip", "no complete answer"),
                                               ("/gzip-bomb", "larger than"), ("/deep", None)])
def test_the_http_action_is_bounded(hostile: str, tmp_path: Path, path: str, message: str | None) -> None:
    from es_doctor.runbooks.actions import REGISTRY, ActionError

    before = rss()
    started = time.monotonic()
    if message is None:  # deep JSON: kept as (truncated) text, never a RecursionError
        out = REGISTRY["http"].call({"url": path, "timeout": 3}, _ctx(hostile, tmp_path))
        assert isinstance(out["body"], str) and len(out["body"]) == 2000
    else:
        with pytest.raises(ActionError, match=message) as caught:
            REGISTRY["http"].call({"method": "POST", "url": path, "timeout": 2}, _ctx(hostile, tmp_path))
        assert caught.value.retryable is False  # a POST that reached the server may have taken effect
    assert time.monotonic() - started < 4
    assert rss() - before < 64 * 1024 * 1024


def test_the_http_action_retries_only_what_never_left(tmp_path: Path) -> None:
    from es_doctor.runbooks.actions import REGISTRY, ActionError

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    with pytest.raises(ActionError) as caught:
        REGISTRY["http"].call({"method": "POST", "url": "/x", "timeout": 2},
                             _ctx(f"http://127.0.0.1:{closed}", tmp_path))
    assert caught.value.retryable is True  # refused: nothing was sent


def test_notify_webhook_is_bounded(hostile: str, tmp_path: Path) -> None:
    from es_doctor.runbooks.actions import REGISTRY, ActionError

    started = time.monotonic()
    with pytest.raises(ActionError, match="webhook failed") as caught:
        REGISTRY["notify"].call({"message": "m", "webhook": hostile + "/endless"}, _ctx(hostile, tmp_path))
    assert hostile not in str(caught.value)
    assert time.monotonic() - started < 12


def test_qdrant_answers_are_capped(hostile: str) -> None:
    from es_doctor.probes.qdrant import QdrantProbe

    before = rss()
    started = time.monotonic()
    result = QdrantProbe(hostile, timeout=10).collections()
    assert result.failure is not None and result.failure.kind is FailureKind.BAD_RESPONSE, result
    assert "larger than" in result.failure.message
    assert time.monotonic() - started < 12
    assert rss() - before < 128 * 1024 * 1024


def test_emergency_status_against_a_slow_api_ends_within_its_bound(hostile: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ES_DOCTOR_")}
    env.update({"ES_DOCTOR_SERVICE__API_URL": hostile, "ES_DOCTOR_STATE_DIR": str(tmp_path / "state"),
                "ES_DOCTOR_AUDIT_LOG": str(tmp_path / "audit.jsonl"), "ES_DOCTOR_LAB_DIR": str(tmp_path / "nolab"),
                "ES_DOCTOR_CONFIG": str(tmp_path / "none.yaml"), "NO_PROXY": "127.0.0.1"})
    (tmp_path / "none.yaml").write_text("targets: {default: {absent: {docker: test}}}\n")
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "es_doctor", "emergency", "status"], capture_output=True, text=True,
                          env=env, timeout=60, check=False)
    assert time.monotonic() - started < 15, proc.stdout + proc.stderr
    assert "read-only/maintenance: unknown" in proc.stdout, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(("method", "sent"), [("POST", 1), ("GET", 3)])
def test_a_timed_out_http_step_is_stopped_and_a_post_is_not_sent_again(hostile: str, tmp_path: Path,
                                                                       method: str, sent: int) -> None:
    from es_doctor.runbooks.audit import AuditLog
    from es_doctor.runbooks.engine import Engine, plan
    from es_doctor.runbooks.loader import load_runbook_file

    path = tmp_path / "rb.yaml"
    path.write_text(f"""
id: test-slow-api
title: a slow API
description: the API answers after 30 s; the step times out after 1 s
class: deploy
steps:
  - name: call
    action: http
    timeout: 1
    retries: 2
    delay: 0
    inputs: {{method: {method}, url: /slow}}
""")
    target = Target.model_validate({"service": {"api_url": hostile}})
    engine = Engine(target, "t", AuditLog(tmp_path / "audit.jsonl", []), tmp_path / "state",
                    confirm=lambda _q: True, say=lambda _t: None)
    Hostile.hits["/slow"] = 0
    started = time.monotonic()
    result = engine.run(plan(load_runbook_file(path), target, "t"), yes=True)
    took = time.monotonic() - started
    step = result.steps[0]
    assert step.status == "timeout" and "(stopped)" in step.error, step
    assert Hostile.hits["/slow"] == sent and step.attempts == sent
    assert took < sent * 1 + 3, f"{took:.1f}s: the cancelled request was not stopped"


def test_an_http_step_answered_429_waits_for_retry_after(hostile: str, tmp_path: Path) -> None:
    from es_doctor.runbooks.audit import AuditLog
    from es_doctor.runbooks.engine import Engine, RunOutcome, plan
    from es_doctor.runbooks.loader import load_runbook_file

    path = tmp_path / "rb.yaml"
    path.write_text("""
id: test-busy-api
title: a busy API
description: 429 with Retry-After 1, then 200
class: deploy
steps:
  - name: call
    action: http
    retries: 1
    delay: 0
    inputs: {url: /busy}
""")
    target = Target.model_validate({"service": {"api_url": hostile}})
    said: list[str] = []
    engine = Engine(target, "t", AuditLog(tmp_path / "audit.jsonl", []), tmp_path / "state",
                    confirm=lambda _q: True, say=said.append)
    Hostile.hits["/busy"] = 0
    started = time.monotonic()
    result = engine.run(plan(load_runbook_file(path), target, "t"), yes=True)
    assert result.outcome is RunOutcome.DONE and result.steps[0].attempts == 2
    assert time.monotonic() - started >= 1.0
    assert any("retrying in 1s" in line for line in said), said
