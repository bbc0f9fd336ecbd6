"""HTTP probe (httpx): the service API, its metrics and pprof endpoints, Prometheus, Grafana."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from es_doctor.probes.result import FailureKind, Result, Stopwatch, failed, short, success

MAX_BODY = 8 * 1024 * 1024  #: a hostile server cannot make us read more than this


@dataclass(frozen=True)
class HttpResponse:
    status_code: int
    text: str
    headers: dict[str, str]
    elapsed_ms: float

    def json(self) -> Any:
        return json.loads(self.text)


class HttpProbe:
    """Every request returns a Result; 2xx is a value, anything else a typed failure.

    ``accept`` lists extra status codes that are values rather than failures (e.g. 503 on
    /health carries a reason in its body).
    """

    def __init__(self, timeout: float = 5.0, headers: dict[str, str] | None = None) -> None:
        self.timeout = timeout
        self.headers = headers or {}

    def request(
        self,
        method: str,
        url: str,
        *,
        json_body: Any = None,
        accept: tuple[int, ...] = (),
        timeout: float | None = None,
    ) -> Result[HttpResponse]:
        watch = Stopwatch()
        limit = timeout if timeout is not None else self.timeout
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(limit), headers=self.headers, follow_redirects=True) as client,
                client.stream(method, url, json=json_body) as response,
            ):
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > MAX_BODY:
                        return failed(
                            FailureKind.BAD_RESPONSE,
                            f"{method} {url}: body larger than {MAX_BODY} bytes",
                            elapsed_ms=watch.ms,
                        )
                    chunks.append(chunk)
                    if watch.ms > limit * 1000 * 2:
                        return failed(FailureKind.TIMEOUT, f"{method} {url}: body too slow", elapsed_ms=watch.ms)
                body = b"".join(chunks).decode(response.encoding or "utf-8", errors="replace")
                result = HttpResponse(response.status_code, body, dict(response.headers), watch.ms)
        except httpx.TimeoutException as exc:
            return failed(FailureKind.TIMEOUT, f"{method} {url}: no answer within {limit:g}s ({type(exc).__name__})",
                          elapsed_ms=watch.ms)
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
            return failed(FailureKind.REFUSED, f"{method} {url}: {short(exc)}", elapsed_ms=watch.ms)
        except (httpx.HTTPError, OSError, ValueError) as exc:
            return failed(FailureKind.ERROR, f"{method} {url}: {short(exc)}", elapsed_ms=watch.ms)
        if 200 <= result.status_code < 300 or result.status_code in accept:
            return success(result, watch.ms)
        kind = FailureKind.NOT_FOUND if result.status_code == 404 else FailureKind.HTTP_ERROR
        if result.status_code in (401, 403):
            kind = FailureKind.AUTH
        snippet = result.text.strip().replace("\n", " ")[:200]
        return failed(kind, f"{method} {url} answered {result.status_code}: {snippet}",
                      status_code=result.status_code, elapsed_ms=watch.ms)

    def get(self, url: str, *, accept: tuple[int, ...] = (), timeout: float | None = None) -> Result[HttpResponse]:
        return self.request("GET", url, accept=accept, timeout=timeout)

    def get_json(self, url: str, *, accept: tuple[int, ...] = (), timeout: float | None = None) -> Result[Any]:
        """GET and parse JSON; bad JSON is a BAD_RESPONSE failure."""
        response = self.get(url, accept=accept, timeout=timeout)
        return as_json(response)

    def post_json(self, url: str, body: Any = None, *, accept: tuple[int, ...] = ()) -> Result[Any]:
        return as_json(self.request("POST", url, json_body=body, accept=accept))


def as_json(response: Result[HttpResponse]) -> Result[Any]:
    if response.failure is not None:
        return Result(failure=response.failure, elapsed_ms=response.elapsed_ms)
    value = response.unwrap()
    try:
        data = value.json()
    except ValueError as exc:
        return failed(FailureKind.BAD_RESPONSE, f"not JSON: {short(exc)}", status_code=value.status_code,
                      elapsed_ms=response.elapsed_ms)
    return Result(value=data, elapsed_ms=response.elapsed_ms, meta={"status_code": str(value.status_code)})
