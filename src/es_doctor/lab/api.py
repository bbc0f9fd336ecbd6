"""The service's HTTP API (STACK.md shapes), with the request-level runtime faults."""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from es_doctor.lab.fault_table import used
from es_doctor.lab.httpbase import LabHandler, serve
from es_doctor.lab.vectors import VectorError

#: the runtime faults this program acts on (names checked against the lab's fault table)
FAULTS = used("service", "slow-api-crit", "slow-api-warn", "errors-crit", "errors-warn")

if TYPE_CHECKING:
    from es_doctor.lab.service import App

Reply = tuple[int, dict[str, Any]]
#: (method, path) → handler name on :class:`Routes`
ROUTES: dict[tuple[str, str], str] = {
    ("GET", "/health"): "health",
    ("GET", "/ready"): "ready",
    ("GET", "/api/v1/managers/status"): "managers_status",
    ("GET", "/api/v1/managers/discovery"): "discovery",
    ("POST", "/api/v1/managers/discovery/restart"): "discovery_restart",
    ("POST", "/api/v1/events/purge"): "events_purge",
    ("GET", "/api/v1/maintenance"): "maintenance",
    ("POST", "/api/v1/maintenance/readonly"): "readonly",
    ("POST", "/api/v1/maintenance/enable"): "maintenance_enable",
    ("POST", "/api/v1/maintenance/disable"): "maintenance_disable",
    ("POST", "/api/v1/tasks"): "create_task",
    ("GET", "/api/v1/tasks/search"): "search_tasks",
    ("GET", "/_lab/faults"): "lab_faults",
    ("GET", "/_lab/state"): "lab_state",
    ("POST", "/_lab/reload"): "lab_reload",
}
UNFAULTED = ("/health", "/ready")
SLOW_MS = {"slow-api-crit": (600, 1000), "slow-api-warn": (150, 250)}
#: errors-warn sits at 4 %: far enough over the 1 % WARN (and under the 5 % CRIT) that a minute of the lab's
#: traffic grades it WARN every time by the error rate's Wilson bound (es_doctor.signals)
ERROR_RATE = {"errors-crit": 0.15, "errors-warn": 0.04}
SLOW_REQUEST_MS = 100.0


class Routes:
    """One instance per request: the handlers of :data:`ROUTES`."""

    def __init__(self, app: App, query: dict[str, list[str]], body: dict[str, Any], request_id: str) -> None:
        self.app, self.query, self.body, self.request_id = app, query, body, request_id

    def health(self) -> Reply:
        return 200, {"status": "ok"}

    def ready(self) -> Reply:
        waiting = self.app.waiting_for()
        return (503, {"ready": False, "waiting_for": waiting}) if waiting else (200, {"ready": True})

    def managers_status(self) -> Reply:
        return 200, {"managers": self.app.managers.status()}

    def discovery(self) -> Reply:
        return 200, self.app.managers.discovery()

    def discovery_restart(self) -> Reply:
        self.app.managers.restart_discovery()
        return 202, {"status": "restarting"}

    def events_purge(self) -> Reply:
        return 200, {"purged": self.app.bus.purge()}

    def maintenance(self) -> Reply:
        return 200, self.app.mode()

    def readonly(self) -> Reply:
        enabled = self.body.get("enabled", True)
        if not isinstance(enabled, bool):
            return 400, {"error": "'enabled' must be a boolean"}
        self.app.set_mode("readonly", enabled)
        return 200, {"readonly": enabled}

    def maintenance_enable(self) -> Reply:
        self.app.set_mode("maintenance", True)
        return 200, {"maintenance": True}

    def maintenance_disable(self) -> Reply:
        self.app.set_mode("maintenance", False)
        return 200, {"maintenance": False}

    def create_task(self) -> Reply:
        mode = self.app.mode()
        if mode["readonly"] or mode["maintenance"]:
            return 503, {"error": "read-only"}
        title = self.body.get("title")
        if not isinstance(title, str) or not title.strip():
            return 400, {"error": "'title' (a non-empty string) is required"}
        task_id = self.app.store_task(title)
        self.app.bus.publish("task.created", task_id=task_id)
        try:
            self.app.vectors.insert(task_id, title, request_id=self.request_id)
        except VectorError as exc:
            return 201, {"id": task_id, "vectorized": False, "error": str(exc)}
        return 201, {"id": task_id, "vectorized": True}

    def search_tasks(self) -> Reply:
        text = (self.query.get("q") or self.query.get("query") or ["email"])[0]
        try:
            limit = max(1, min(100, int((self.query.get("limit") or ["5"])[0])))
        except ValueError:
            return 400, {"error": "'limit' must be an integer"}
        try:
            results = self.app.vectors.search(text, limit, request_id=self.request_id)
        except VectorError as exc:
            return 200, {"query": text, "results": [], "degraded": True, "error": str(exc)}
        return 200, {"query": text, "results": results}

    def lab_faults(self) -> Reply:
        return 200, {"faults": self.app.faults.names()}

    def lab_state(self) -> Reply:
        """What the lab's orchestrator reads to tell which faults are still in effect (lab/fault_state.py)."""
        return 200, self.app.lab_state()

    def lab_reload(self) -> Reply:
        self.app.faults.reload()
        return 200, {"faults": self.app.faults.names()}


def _inject(app: App, path: str, request_id: str) -> Reply | None:
    """Request-level faults: latency, then (sometimes) a 500."""
    if path in UNFAULTED or path.startswith("/_lab"):
        return None
    for name, (lo, hi) in SLOW_MS.items():
        if app.faults.active(name):
            time.sleep(random.uniform(lo, hi) / 1000.0)
            break
    for name, rate in ERROR_RATE.items():
        if app.faults.active(name):
            if random.random() < rate:
                app.journal.error("http", f"handler failed: {path}", request_id=request_id,
                              error="internal error: upstream call failed: context canceled")
                return 500, {"error": "internal server error", "request_id": request_id}
            break
    return None


LAB_TOKEN = "lab-token"  # noqa: S105 - the lab's own, well-known token


def _authenticate(app: App, headers: Any, path: str, peer: str, request_id: str) -> Reply | None:
    """A request carrying credentials must carry the right ones: a wrong bearer token is a 401 and a
    SECURITY line with the client's address (X-Forwarded-For first, as behind nginx)."""
    auth = headers.get("Authorization")
    if auth is None or auth == f"Bearer {LAB_TOKEN}":
        return None
    client = (headers.get("X-Forwarded-For") or peer).split(",")[0].strip()
    app.journal.warn("SECURITY", f"authentication failed on {path}", request_id=request_id, client_ip=client,
                     error="invalid bearer token")
    return 401, {"error": "unauthorized"}


def make_api_server(host: str, port: int, app: App) -> ThreadingHTTPServer:
    """Bind (raises OSError when the port is taken) the API server."""

    class Handler(LabHandler):
        def handle_request(self) -> None:
            started = time.perf_counter()
            url = urlsplit(self.path)
            path = url.path.rstrip("/") or "/"
            request_id = self.headers.get("X-Request-ID") or f"req-{uuid.uuid4().hex[:12]}"
            body: dict[str, Any] = {}
            raw = self.read_body()
            name = ROUTES.get((self.command, path))
            if raw:
                try:
                    parsed = json.loads(raw)
                    body = parsed if isinstance(parsed, dict) else {}
                except ValueError:
                    name = name and "bad_json"
            denied = _authenticate(app, self.headers, path, self.client_address[0], request_id)
            if denied is not None:
                self.send_json(*denied)
                self._record(path if name else "other", path, denied[0], started, request_id)
                return
            if name is None:
                known = any(p == path for _m, p in ROUTES)
                reply: Reply = (405, {"error": "method not allowed"}) if known else (
                    404, {"error": "not found", "path": path})
                route = path if known else "other"
            else:
                route = path
                reply = _inject(app, path, request_id) or self._call(name, url.query, body, request_id)
            self.send_json(*reply)
            self._record(route, path, reply[0], started, request_id)

        def _call(self, name: str, query: str, body: dict[str, Any], request_id: str) -> Reply:
            if name == "bad_json":
                return 400, {"error": "invalid JSON body"}
            routes = Routes(app, parse_qs(query), body, request_id)
            handler: Callable[[], Reply] = getattr(routes, name)
            try:
                return handler()
            except Exception as exc:  # noqa: BLE001 - a handler crash is a 500, like a recovered panic
                app.journal.error("http", f"panic recovered in {name}", error=repr(exc), request_id=request_id)
                return 500, {"error": "internal server error", "request_id": request_id}

        def _record(self, route: str, path: str, status: int, started: float, request_id: str) -> None:
            elapsed = time.perf_counter() - started
            ms = round(elapsed * 1000, 1)
            if path.startswith("/_lab"):
                app.journal.log("DEBUG", "http", f"{self.command} {path} {status}", request_id=request_id)
                return
            m = app.metrics
            m.http_requests.labels(route=route, method=self.command, status=str(status)).inc()
            m.http_duration.labels(route=route).observe(elapsed)
            if status >= 500:
                m.errors.labels(route=route).inc()
            user = self.headers.get("X-User-ID")
            app.journal.info("http", f"{self.command} {path} {status}", request_id=request_id, user_id=user,
                         duration_ms=ms)
            if ms > SLOW_REQUEST_MS:
                app.journal.warn("http", f"SLOW request: {self.command} {path} took {ms:.0f}ms",
                             request_id=request_id, user_id=user, duration_ms=ms)

    return serve(host, port, Handler)
