"""The HTTP server of ``es-doctor serve`` (the stdlib's ThreadingHTTPServer), read-only: GET and HEAD only.

``/healthz`` the daemon works · ``/ready`` every target diagnosed once · ``/metrics`` Prometheus ·
``/`` the status page · ``/assets/style.css`` · ``/api/v1/targets`` · ``/api/v1/targets/{name}/report``
(the JSON of ``diagnose --format json``) · ``/api/v1/targets/{name}/history``.
With a token configured, every path but ``/healthz`` needs ``Authorization: Bearer <token>``.

Slow clients cannot take the server: at most :data:`MAX_CONNECTIONS` connections are served at once (one
thread each); a request's whole head (request line and headers, or the wait for the next request of a
kept-alive connection) must arrive within :data:`HEAD_DEADLINE_S`, else the connection is closed; and
when every slot is taken, the connection that has waited longest for its head is closed to make room, so
``/healthz`` and ``/metrics`` keep answering under a slowloris. A client that resets its connection is
not news: nothing is logged.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from es_doctor.render.json_report import as_dict
from es_doctor.serve.daemon import Daemon
from es_doctor.serve.exposition import exposition, process_registry, reports_registry
from es_doctor.serve.page import render_page, stylesheet

#: how often the daemon's own process metrics are sampled (seconds)
PROCESS_SAMPLE_S = 1.0
#: connections served at once (each holds one thread); more wait for a slot, see the module's docstring
MAX_CONNECTIONS = 64
#: seconds a connection may take to send a request's whole head (or to start its next request)
HEAD_DEADLINE_S = 10.0
#: how often connections past their head deadline are looked for
REAP_EVERY_S = 0.25
CSP = "default-src 'none'; style-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'"


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    #: the page is made again at least this often (its "2 min ago" words), else only when something changed
    PAGE_MAX_AGE_S = 10.0

    def __init__(self, daemon: Daemon) -> None:
        self.doctor = daemon
        self.reports_registry = reports_registry(daemon)
        self.process_registry = process_registry()
        self.css = stylesheet()
        self._metrics: tuple[int, bytes] = (-1, b"")
        self._page: tuple[int, float, bytes] = (-1, 0.0, b"")
        daemon.on_change(self.prerender)
        # the process metrics read /proc (a few system calls, each giving the GIL away while checks run):
        # sampled once a second by their own thread, so a scrape only copies bytes
        self._process = exposition(self.process_registry)
        self._closed = threading.Event()
        threading.Thread(target=self._sample_process, name="serve:process-metrics", daemon=True).start()
        family_host = daemon.settings.host
        if ":" in family_host:
            import socket

            self.address_family = socket.AF_INET6
        self._init_connections()
        super().__init__((family_host, daemon.settings.port), Handler)

    def server_close(self) -> None:
        self._closed.set()
        super().server_close()

    # ------------------------------------------------------------------ bounded connections

    def _init_connections(self) -> None:
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._conn_lock = threading.Lock()
        #: each connection served: [when it began waiting for a head (None: a request is being answered)]
        self._conns: dict[socket.socket, list[float | None]] = {}
        threading.Thread(target=self._reap, name="serve:reaper", daemon=True).start()

    def process_request(self, request: Any, client_address: Any) -> None:
        """One thread per connection, at most MAX_CONNECTIONS: when none is free, the connection that has
        waited longest for its request head is closed to make room (a slowloris, never a request being
        answered); when every slot is answering, the new connection is closed."""
        if not self._slots.acquire(blocking=False):
            self._evict_oldest_waiting()
            if not self._slots.acquire(timeout=2.0):
                self.shutdown_request(request)
                return
        with self._conn_lock:
            self._conns[request] = [time.monotonic()]
        try:
            threading.Thread(target=self._serve_connection, args=(request, client_address),
                             name="serve:connection", daemon=True).start()
        except RuntimeError:  # cannot start a thread: the connection is refused, the slot given back
            self._forget(request)
            self.shutdown_request(request)

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            self._forget(request)

    def _forget(self, request: Any) -> None:
        with self._conn_lock:
            known = self._conns.pop(request, None)
        if known is not None:
            self._slots.release()

    def waiting_for_head(self, request: Any, waiting: bool) -> None:
        """The handler's word: ``request`` now waits for a request head (True) or answers one (False)."""
        with self._conn_lock:
            if request in self._conns:
                self._conns[request][0] = time.monotonic() if waiting else None

    def _evict_oldest_waiting(self) -> None:
        with self._conn_lock:
            waiting = [(since, conn) for conn, (since,) in self._conns.items() if since is not None]
        if waiting:
            _close(min(waiting, key=lambda item: item[0])[1])

    def _reap(self) -> None:
        while not self._closed.wait(REAP_EVERY_S):
            limit = time.monotonic() - HEAD_DEADLINE_S
            with self._conn_lock:
                late = [conn for conn, (since,) in self._conns.items() if since is not None and since < limit]
            for conn in late:
                _close(conn)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that resets, closes early or is cut at its deadline is not news; anything else is one
        line on stderr (no traceback)."""
        exc = sys.exc_info()[1]
        if exc is None or isinstance(exc, OSError):  # ConnectionResetError, BrokenPipeError, TimeoutError…
            return
        print(f"es-doctor serve: a connection from {client_address[0]} failed: {type(exc).__name__}: {exc}",
              file=sys.stderr)

    def _sample_process(self) -> None:
        while not self._closed.wait(PROCESS_SAMPLE_S):
            self._process = exposition(self.process_registry)

    def metrics(self) -> bytes:
        return self.metrics_of_reports() + self._process

    def prerender(self) -> None:
        """Render the reports' series and the page now (in the scheduler's thread, after each new report):
        a request then only copies the bytes made last, and never waits for a render in progress."""
        self._metrics = self._render_metrics()
        self._page = self._render_page()

    def _render_metrics(self) -> tuple[int, bytes]:
        version = self.doctor.version
        return version, exposition(self.reports_registry)

    def _render_page(self) -> tuple[int, float, bytes]:
        version = self.doctor.version
        refresh = max(5, min(60, int(self.doctor.settings.interval_s)))
        from es_doctor.serve.requests_page import PAGE_LIMIT, requests_section

        extra = requests_section(self.doctor.store.requests.find(limit=PAGE_LIMIT))
        return version, time.monotonic(), render_page(self.doctor.views(), refresh, extra=extra).encode()

    def metrics_of_reports(self) -> bytes:
        made = self._metrics
        if made[0] < 0:  # nothing rendered yet
            made = self._metrics = self._render_metrics()
        return made[1]

    def page(self) -> bytes:
        made = self._page
        if made[0] < 0 or time.monotonic() - made[1] > self.PAGE_MAX_AGE_S:  # first, or its "ago" words aged
            made = self._page = self._render_page()
        return made[2]


def _close(conn: socket.socket) -> None:
    """Wake the thread reading ``conn`` (its read returns at once) and end the connection."""
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)


class Handler(BaseHTTPRequestHandler):
    server: Server
    server_version = "es-doctor"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    #: headers and body are two writes: without TCP_NODELAY, Nagle + the client's delayed ACK add 40 ms
    disable_nagle_algorithm = True
    timeout = 15  # a client that stalls cannot hold a thread forever

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: a scrape every few seconds is not news

    def handle_one_request(self) -> None:
        self.server.waiting_for_head(self.request, True)  # the head deadline runs from now
        super().handle_one_request()

    def parse_request(self) -> bool:
        parsed = super().parse_request()
        self.server.waiting_for_head(self.request, False)  # the head is in: answering is not bounded by it
        return parsed

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    def do_POST(self) -> None:
        from es_doctor.serve import receiver

        path = urlsplit(self.path).path.rstrip("/") or "/"
        try:
            receiver.post(self, path)
        except BrokenPipeError:
            return
        except Exception as exc:  # noqa: BLE001 - one bad request must not stop the server
            print(f"es-doctor serve: POST {path}: {type(exc).__name__}: {exc}", file=sys.stderr)
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, b"internal error\n", "text/plain; charset=utf-8")

    def do_PUT(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"GET, HEAD and POST only\n", "text/plain; charset=utf-8",
                   extra={"Allow": "GET, HEAD, POST"})

    do_DELETE = do_PATCH = do_PUT  # noqa: N815

    # ------------------------------------------------------------------ routing

    def _authorized(self) -> bool:
        token = self.server.doctor.settings.token
        if not token:
            return True
        given = self.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())

    def _dispatch(self, head: bool) -> None:
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        try:
            if path == "/healthz":
                self._send(HTTPStatus.OK, b"ok\n", "text/plain; charset=utf-8", head=head)
                return
            if not self._authorized():
                self._send(HTTPStatus.UNAUTHORIZED, b"a bearer token is required\n", "text/plain; charset=utf-8",
                           head=head, extra={"WWW-Authenticate": 'Bearer realm="es-doctor"'})
                return
            self._route(path, parse_qs(parts.query), head)
        except BrokenPipeError:
            return
        except Exception as exc:  # noqa: BLE001 - one bad request must not stop the server
            print(f"es-doctor serve: {self.command} {path}: {type(exc).__name__}: {exc}", file=sys.stderr)
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, b"internal error\n", "text/plain; charset=utf-8", head=head)

    def _route(self, path: str, query: dict[str, list[str]], head: bool) -> None:
        doctor = self.server.doctor
        if path == "/metrics":
            self._send(HTTPStatus.OK, self.server.metrics(), "text/plain; version=0.0.4; charset=utf-8", head=head)
        elif path == "/":
            self._send(HTTPStatus.OK, self.server.page(), "text/html; charset=utf-8", head=head)
        elif path == "/assets/style.css":
            self._send(HTTPStatus.OK, self.server.css, "text/css; charset=utf-8", head=head,
                       extra={"Cache-Control": "max-age=300"})
        elif path == "/ready":
            ready, waiting = doctor.ready()
            self._json(HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE,
                       {"ready": ready, "waiting_for": waiting}, head)
        elif path.startswith(("/api/v1/requests", "/api/v1/alerts")):
            from es_doctor.serve import receiver

            if not receiver.get(self, path, head):
                self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8", head=head)
        elif path == "/api/v1/targets":
            reports = doctor.reports()
            stats = doctor.scheduler.stats()
            self._json(HTTPStatus.OK, [
                {"name": n, "status": reports[n].status.value if n in reports else None,
                 "started_at": reports[n].started_at.isoformat() if n in reports else None,
                 "duration_s": reports[n].duration_ms / 1000 if n in reports else None,
                 "running": bool(stats[n].running) if n in stats else False}
                for n in doctor.names()], head)
        elif path.startswith("/api/v1/targets/"):
            rest = path[len("/api/v1/targets/"):]
            name, _, what = rest.rpartition("/")
            name = unquote(name)
            if name not in doctor.names() or what not in ("report", "history"):
                self._json(HTTPStatus.NOT_FOUND, {"error": "no such target or resource"}, head)
            elif what == "report":
                report = doctor.reports().get(name)
                if report is None:
                    self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": f"target {name} not diagnosed yet"}, head)
                else:
                    self._json(HTTPStatus.OK, as_dict(report), head)
            else:
                try:
                    limit = max(1, min(1000, int(query.get("limit", ["200"])[0])))
                except ValueError:
                    limit = 200
                self._json(HTTPStatus.OK, {"target": name, "changes": doctor.store.history(name, limit)}, head)
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8", head=head)

    # ------------------------------------------------------------------ responses

    def _json(self, status: HTTPStatus, body: Any, head: bool) -> None:
        self._send(status, json.dumps(body, indent=2, ensure_ascii=False).encode(), "application/json", head=head)

    def _send(self, status: HTTPStatus, body: bytes, content_type: str, head: bool = False,
              extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if "Cache-Control" not in (extra or {}):
            self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("Referrer-Policy", "no-referrer")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)
