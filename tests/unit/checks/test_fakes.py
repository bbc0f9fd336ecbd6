"""The fakes tell the truth: FakeHttp classifies answers as the real HttpProbe does (against a real
HTTP server on 127.0.0.1), and the exposition helpers parse with the real parser into what they say."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fakes import Answer, FakeHttp, exposition, histogram

from es_doctor.probes.http import HttpProbe
from es_doctor.probes.metrics import parse_exposition, window_quantile

CASES = [Answer(200, {"status": "ok"}), Answer(202, {"status": "restarting"}), Answer(503, {"ready": False}),
         Answer(404, "404 page not found"), Answer(500, "boom"), Answer(401, "no"), Answer(403, "no"),
         Answer(200, "not json")]


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        answer = CASES[int(self.path.strip("/"))]
        body = answer.text.encode()
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("index", range(len(CASES)))
@pytest.mark.parametrize("accept", [(), (503,)])
def test_fake_http_classifies_like_the_real_probe(server: str, index: int, accept: tuple[int, ...]) -> None:
    url = f"{server}/{index}"
    real = HttpProbe(timeout=2.0).get_json(url, accept=accept)
    fake = FakeHttp({url: CASES[index]}).get_json(url, accept=accept)
    assert (fake.ok, fake.meta.get("status_code")) == (real.ok, real.meta.get("status_code"))
    assert fake.value == real.value
    if real.failure is not None:
        assert fake.failure is not None
        assert (fake.failure.kind, fake.failure.status_code) == (real.failure.kind, real.failure.status_code)


def test_fake_http_unrouted_is_refused_and_sequences_repeat_their_last() -> None:
    http = FakeHttp({"http://x/a": [Answer(500, "boom"), Answer(200, {"n": 1})]})
    assert http.get_json("http://x/b").failure is not None
    assert [http.get_json("http://x/a?q=1").ok for _ in range(3)] == [False, True, True]
    assert json.loads(json.dumps(http.calls[0])) == ["GET", "http://x/b"]


def test_exposition_helpers_parse_into_what_they_say() -> None:
    scrape = parse_exposition(exposition({'email_sender_http_requests_total{status="500"}': 7, "some_gauge": 2.5,
                                          **histogram("lat_seconds", {0.1: 3, 1.0: 1})}))
    assert scrape.total("email_sender_http_requests_total", status="500") == 7
    assert scrape.total("some_gauge") == 2.5
    empty = parse_exposition(exposition(histogram("lat_seconds", {0.1: 0, 1.0: 0})))
    p50, count = window_quantile(empty, scrape, "lat_seconds", 0.5)
    assert count == 4
    assert p50 is not None and abs(p50 - 0.1 * 2 / 3) < 1e-9
