"""The service's Prometheus metrics (STACK.md names) and the metrics port (with pprof-shaped pages)."""

from __future__ import annotations

import collections
import gc
import sys
import threading
import time
import traceback
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from es_doctor.lab.httpbase import LabHandler, serve

HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
PROFILE_MAX_S = 30.0


class Metrics:
    """Every metric the service exports, in its own registry."""

    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call] # a Go client exports no ``*_created`` series
        r = self.registry = CollectorRegistry()
        ProcessCollector(registry=r)
        self.http_requests = Counter(
            "email_sender_http_requests_total", "HTTP requests", ["route", "method", "status"], registry=r
        )
        self.http_duration = Histogram(
            "email_sender_http_request_duration_seconds", "HTTP request duration", ["route"],
            buckets=HTTP_BUCKETS, registry=r,
        )
        self.errors = Counter("email_sender_errors_total", "Errors by route", ["route"], registry=r)
        self.bus_depth = Gauge("email_sender_event_bus_queue_depth", "Event bus queue depth", registry=r)
        self.bus_capacity = Gauge("email_sender_event_bus_capacity", "Event bus capacity", registry=r)
        self.bus_dropped = Counter("email_sender_event_bus_dropped_total", "Dropped events", registry=r)
        self.bus_published = Counter(
            "email_sender_event_bus_published_total", "Published events", registry=r
        )
        self.vector_ops = Counter(
            "email_sender_vector_operations_total", "Vector operations", ["op", "result"], registry=r
        )
        self.vector_search = Histogram(
            "email_sender_vector_search_duration_seconds", "Vector search duration",
            buckets=HTTP_BUCKETS, registry=r,
        )
        self.qdrant_conn_errors = Counter(
            "email_sender_qdrant_connection_errors_total", "Qdrant connection errors", registry=r
        )
        self.managers_up = Gauge("email_sender_managers_up", "Manager up (1) or down (0)", ["manager"],
                                 registry=r)
        self.db_connections = Gauge("email_sender_db_connections", "DB connections", ["state"], registry=r)
        for result in ("ok", "error"):
            for op in ("insert", "search"):
                self.vector_ops.labels(op=op, result=result)
        for state in ("active", "idle"):
            self.db_connections.labels(state=state).set(0)


def goroutine_dump() -> str:
    """Every Python thread's stack, in the shape of Go's ``goroutine?debug=2``."""
    names = {t.ident: t.name for t in threading.enumerate()}
    frames = sys._current_frames()
    out = [f"goroutine profile: total {len(frames)}"]
    for n, (ident, frame) in enumerate(sorted(frames.items()), start=1):
        out.append(f"\ngoroutine {n} [running]: thread {names.get(ident, '?')} ({ident})")
        out.extend(line.rstrip() for line in traceback.format_stack(frame))
    return "\n".join(out) + "\n"


def heap_summary(top: int = 30) -> str:
    """Live objects by type plus process memory, in the spirit of ``/debug/pprof/heap?debug=1``."""
    counts: collections.Counter[str] = collections.Counter(type(o).__name__ for o in gc.get_objects())
    from es_doctor.lab.effects import resident_bytes

    out = [
        f"heap profile: {sum(counts.values())} objects tracked by the GC",
        f"# RSS = {resident_bytes()}",
        f"# GC counts = {gc.get_count()}",
        "",
    ]
    out.extend(f"{n:>10} {name}" for name, n in counts.most_common(top))
    return "\n".join(out) + "\n"


def cpu_profile(seconds: float, interval: float = 0.01) -> str:
    """Sample every thread's innermost frames for ``seconds`` (capped) and summarise."""
    seconds = max(0.0, min(seconds, PROFILE_MAX_S))
    me = threading.get_ident()
    samples: collections.Counter[str] = collections.Counter()
    total = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for ident, frame in sys._current_frames().items():
            if ident == me:
                continue
            code = frame.f_code
            samples[f"{code.co_name} {code.co_filename}:{frame.f_lineno}"] += 1
            total += 1
        time.sleep(interval)
    out = [f"cpu profile: {seconds:.0f}s, {total} samples, interval {interval * 1000:.0f}ms", "", "flat  flat%"]
    out.extend(f"{n:>5} {100.0 * n / max(total, 1):5.1f}% {where}" for where, n in samples.most_common(40))
    return "\n".join(out) + "\n"


#: first line of the stand-in's profile pages: what `es-doctor profile` shows when it gets one instead of a Go profile
NOT_GO_PPROF = ("# es-doctor lab: pprof unavailable (no Go here; this stand-in serves text): "
                "apt-get install golang-go, then es-doctor lab down && es-doctor lab up\n")

PPROF_INDEX = """<html><head><title>/debug/pprof/</title></head><body>
/debug/pprof/<br><br>Types of profiles available:<br>
<a href="goroutine?debug=1">goroutine</a><br>
<a href="heap?debug=1">heap</a><br>
<a href="profile?seconds=30">profile</a> (CPU, ?seconds=N, capped at 30)<br>
</body></html>
"""


def make_metrics_server(host: str, port: int, path: str, metrics: Metrics) -> ThreadingHTTPServer:
    """Bind (raises OSError when the port is taken) the metrics + pprof server."""

    class Handler(LabHandler):
        def handle_request(self) -> None:
            url = urlsplit(self.path)
            text = "text/plain; charset=utf-8"
            if url.path == path:
                self.send_body(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
            elif url.path in ("/debug/pprof", "/debug/pprof/"):
                self.send_body(200, PPROF_INDEX.encode(), "text/html; charset=utf-8")
            elif url.path == "/debug/pprof/heap":
                self.send_body(200, (NOT_GO_PPROF + heap_summary()).encode(), text)
            elif url.path == "/debug/pprof/goroutine":
                self.send_body(200, (NOT_GO_PPROF + goroutine_dump()).encode(), text)
            elif url.path == "/debug/pprof/profile":
                raw = parse_qs(url.query).get("seconds", ["30"])[0]
                try:
                    seconds = float(raw)
                except ValueError:
                    seconds = 30.0
                self.send_body(200, (NOT_GO_PPROF + cpu_profile(seconds)).encode(), text)
            else:
                self.send_body(404, b"404 page not found\n", text)

    return serve(host, port, Handler)
