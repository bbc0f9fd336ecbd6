"""The lab's HTTP handler scaffolding, written once: the API, the metrics/pprof server and the
Qdrant stand-in subclass :class:`LabHandler` and implement :meth:`LabHandler.handle_request`."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class LabHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: avoid 40 ms delayed-ACK stalls

    def log_message(self, format: str, *args: object) -> None:
        return

    def send_body(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, code: int, payload: Any) -> None:
        self.send_body(code, json.dumps(payload).encode(), "application/json")

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def handle_request(self) -> None:
        raise NotImplementedError

    def do_GET(self) -> None:
        self.handle_request()

    def do_HEAD(self) -> None:
        self.handle_request()

    def do_POST(self) -> None:
        self.handle_request()

    def do_PUT(self) -> None:
        self.handle_request()

    def do_PATCH(self) -> None:
        self.handle_request()

    def do_DELETE(self) -> None:
        self.handle_request()


def serve(host: str, port: int, handler: type[LabHandler]) -> ThreadingHTTPServer:
    """Bind (raises OSError when the port is taken) a threading server for ``handler``."""
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server
