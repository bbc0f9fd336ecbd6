"""Stand-in for the Qdrant server: a subset of its REST API over qdrant-client's embedded mode.

``python -m es_doctor.lab.qdrant_server --port P --storage DIR [--host 127.0.0.1] [--faults-file F]
[--init-collection NAME:SIZE:DISTANCE]``. The real ``QdrantClient(url=...)`` works against it for
collections, points (upsert, query, search, count, scroll, retrieve, delete) and snapshots.
Runtime fault: ``slow-vector-search`` (+80 ms on every search/query). SIGTERM → exit 0.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from es_doctor.lab.fault_table import used
from es_doctor.lab.httpbase import LabHandler
from es_doctor.lab.qdrant_ops import QdrantError, Store
from es_doctor.lab.runtime_faults import FaultWatcher

#: the runtime faults this program acts on (names checked against the lab's fault table)
FAULTS = used("qdrant", "slow-vector-search")

VERSION = "1.12.0"
SLOW_SEARCH_S = 0.080
C = r"/collections/(?P<c>[^/]+)"
ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (m, re.compile(f"^{p}$"), h) for m, p, h in [
        ("GET", "/", "root"),
        ("GET", "/(?:healthz|livez|readyz)", "health"),
        ("GET", "/metrics", "metrics"),
        ("GET", "/collections", "list_collections"),
        ("GET", C, "get_collection"),
        ("GET", C + "/exists", "collection_exists"),
        ("PUT", C, "create_collection"),
        ("PATCH", C, "update_collection"),
        ("DELETE", C, "delete_collection"),
        ("PUT", C + "/points", "upsert"),
        ("POST", C + "/points", "retrieve"),
        ("GET", C + "/points/(?P<id>[^/]+)", "get_point"),
        ("POST", C + "/points/delete", "delete_points"),
        ("POST", C + "/points/query", "query"),
        ("POST", C + "/points/search", "search"),
        ("POST", C + "/points/count", "count"),
        ("POST", C + "/points/scroll", "scroll"),
        ("PUT", C + "/index", "create_index"),
        ("POST", C + "/snapshots", "create_snapshot"),
        ("GET", C + "/snapshots", "list_snapshots"),
        ("PUT", C + "/snapshots/recover", "recover_snapshot"),
        ("POST", C + "/snapshots/upload", "upload_snapshot"),
        ("GET", C + "/snapshots/(?P<snap>[^/]+)", "download_snapshot"),
        ("DELETE", C + "/snapshots/(?P<snap>[^/]+)", "delete_snapshot"),
    ]
]
SEARCHES = ("query", "search")


def endpoint_label(pattern: re.Pattern[str]) -> str:
    """``/collections/{name}/points/{id}`` from a route's regex."""
    text = pattern.pattern.strip("^$").replace("[^/]+", "")
    return re.sub(r"\(\?P<(\w+)>\)", r"{\1}", text).replace("{c}", "{name}")


class Server:
    def __init__(self, store: Store, faults: FaultWatcher) -> None:
        self.store, self.faults = store, faults
        self.responses: Counter[tuple[str, str, int]] = Counter()
        self._lock = threading.Lock()

    def metrics_text(self) -> str:
        names = self.store.collection_names()
        lines = [
            "# HELP app_info information about qdrant server", "# TYPE app_info gauge",
            f'app_info{{name="qdrant",version="{VERSION}"}} 1',
            "# TYPE collections_total gauge", f"collections_total {len(names)}",
            "# TYPE collections_vector_total gauge",
            f"collections_vector_total {sum(self.store.count_points(n) for n in names)}",
            "# TYPE rest_responses_total counter",
        ]
        with self._lock:
            items = sorted(self.responses.items())
        lines.extend(f'rest_responses_total{{method="{m}",endpoint="{e}",status="{s}"}} {n}'
                     for (m, e, s), n in items)
        return "\n".join(lines) + "\n"

    def record(self, method: str, endpoint: str, status: int) -> None:
        with self._lock:
            self.responses[(method, endpoint, status)] += 1


def _body(name: str, raw: bytes, ctype: str) -> Any:
    if name == "upload_snapshot":
        return {"_raw": raw, "_ctype": ctype}
    try:
        return json.loads(raw) if raw else {}
    except ValueError as exc:
        raise QdrantError(400, f"Format error in JSON body: {exc}") from None


def make_handler(srv: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(LabHandler):
        server_version = f"qdrant/{VERSION}"

        def handle_request(self) -> None:
            started = time.perf_counter()
            url = urlsplit(self.path)
            raw = self.read_body()
            path = url.path.rstrip("/") or "/"
            matches = ((r, r[1].match(path)) for r in ROUTES if r[0] == self.command)
            found = next(((r, mt) for r, mt in matches if mt is not None), None)
            if found is None:
                srv.record(self.command, "unknown", 404)
                self.send_json(404, {"status": {"error": f"Not found: {self.command} {path}"}, "time": 0.0})
                return
            (_method, pattern, name), match = found
            args = {k: v for k, v in match.groupdict().items() if v is not None}
            code = self._dispatch(name, args, parse_qs(url.query), raw, started)
            srv.record(self.command, endpoint_label(pattern), code)

        def _dispatch(self, name: str, args: dict[str, str], query: dict[str, list[str]], raw: bytes,
                      started: float) -> int:
            store = srv.store
            if name == "root":
                self.send_json(200, {"title": "qdrant - vector search engine", "version": VERSION})
                return 200
            if name == "health":
                self.send_body(200, b"healthz check passed", "text/plain")
                return 200
            if name == "metrics":
                self.send_body(200, srv.metrics_text().encode(), "text/plain; version=0.0.4")
                return 200
            if name == "download_snapshot":
                try:
                    data = store.snapshot_bytes(args["c"], args["snap"])
                except QdrantError as exc:
                    self.send_json(exc.code, {"status": {"error": str(exc)}, "time": 0.0})
                    return exc.code
                self.send_body(200, data, "application/octet-stream")
                return 200
            if name in SEARCHES and srv.faults.active("slow-vector-search"):
                time.sleep(SLOW_SEARCH_S)
            try:
                body = _body(name, raw, self.headers.get("Content-Type", ""))
                result = getattr(store, name)(args=args, body=body, query=query)
            except QdrantError as exc:
                self.send_json(exc.code, {"status": {"error": str(exc)}, "time": time.perf_counter() - started})
                return exc.code
            self.send_json(200, {"result": result, "status": "ok", "time": time.perf_counter() - started})
            return 200

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="es_doctor.lab.qdrant_server", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--storage", required=True, help="data directory (persists across restarts)")
    parser.add_argument("--faults-file", default=None)
    parser.add_argument("--init-collection", action="append", default=[], metavar="NAME:SIZE:DISTANCE",
                        help="create this collection at start if absent (repeatable)")
    args = parser.parse_args(argv)
    storage = Path(args.storage)
    storage.mkdir(parents=True, exist_ok=True)
    try:
        server = ThreadingHTTPServer((args.host, args.port), BaseHTTPRequestHandler)
    except OSError as exc:
        sys.stderr.write(f"qdrant: cannot bind {args.host}:{args.port}: {exc.strerror or exc}\n")
        sys.exit(1)
    try:
        store = Store(storage)
    except (RuntimeError, OSError, ValueError) as exc:
        sys.stderr.write(f"qdrant: cannot open storage {storage}: {exc}\n")
        sys.exit(1)
    for spec in args.init_collection:
        try:
            name, size, distance = spec.split(":")
            store.ensure_collection(name, int(size), distance)
        except (ValueError, QdrantError) as exc:
            sys.stderr.write(f"qdrant: bad --init-collection {spec!r}: {exc}\n")
            store.close()
            sys.exit(2)
    faults = FaultWatcher(args.faults_file)
    faults.start()
    server.RequestHandlerClass = make_handler(Server(store, faults))
    server.daemon_threads = True
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    sys.stderr.write(f"qdrant (lab) {VERSION} listening on http://{args.host}:{args.port}, storage {storage}\n")
    sys.stderr.flush()
    while not stop.wait(0.2):
        pass
    server.shutdown()
    server.server_close()
    store.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
