"""The service's pprof endpoints (Go's ``net/http/pprof``): a profile's raw bytes, bounded.

The body is binary (gzip protobuf), so it is read as bytes through :func:`es_doctor.probes.http.bounded_client`
(total deadline, size cap on the body; a gzip ``Content-Encoding`` is undone by the transport, the
profile's own gzip is left for the parser). Every outcome is a :class:`Result`: a refused
connection, a timeout, a 404 (profiling not enabled), another status or an oversized body is a typed
failure; a cancel event (Ctrl-C) stops a waiting read within a quarter of a second.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import httpx

from es_doctor.probes.http import BodyTooLargeError, bounded_client, cancellable
from es_doctor.probes.result import FailureKind, Result, Stopwatch, failed, short, success

#: a profile body larger than this is refused (Go's profiles are KiB to a few MiB)
MAX_PROFILE = 64 * 1024 * 1024


@dataclass(frozen=True)
class ProfileBody:
    data: bytes
    content_type: str
    url: str


def fetch(url: str, *, timeout: float, max_body: int = MAX_PROFILE,
          cancel: threading.Event | None = None) -> Result[ProfileBody]:
    """GET ``url``; the body as bytes when the answer is 2xx."""
    watch = Stopwatch()
    try:
        with (
            cancellable(cancel),
            bounded_client(url, deadline_s=timeout, max_body=max_body, follow_redirects=True) as client,
            client.stream("GET", url) as response,
        ):
            data = response.read()
            status, content_type = response.status_code, response.headers.get("content-type", "")
    except BodyTooLargeError as exc:
        return failed(FailureKind.BAD_RESPONSE, f"GET {url}: {exc}", elapsed_ms=watch.ms)
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        if cancel is not None and cancel.is_set():
            return failed(FailureKind.ERROR, f"GET {url}: cancelled", elapsed_ms=watch.ms)
        kind = FailureKind.TIMEOUT if isinstance(exc, httpx.ConnectTimeout) else FailureKind.REFUSED
        return failed(kind, f"GET {url}: {short(exc)}", elapsed_ms=watch.ms)
    except httpx.TimeoutException as exc:
        if cancel is not None and cancel.is_set():
            return failed(FailureKind.ERROR, f"GET {url}: cancelled", elapsed_ms=watch.ms)
        return failed(FailureKind.TIMEOUT, f"GET {url}: no complete answer within {timeout:g} s "
                                           f"({type(exc).__name__})", elapsed_ms=watch.ms)
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
        if cancel is not None and cancel.is_set():
            return failed(FailureKind.ERROR, f"GET {url}: cancelled", elapsed_ms=watch.ms)
        return failed(FailureKind.REFUSED, f"GET {url}: {short(exc)}", elapsed_ms=watch.ms)
    except (httpx.HTTPError, OSError, ValueError) as exc:
        return failed(FailureKind.ERROR, f"GET {url}: {short(exc)}", elapsed_ms=watch.ms)
    if 200 <= status < 300:
        return success(ProfileBody(data, content_type, url), watch.ms)
    kind = {404: FailureKind.NOT_FOUND, 401: FailureKind.AUTH, 403: FailureKind.AUTH}.get(status,
                                                                                          FailureKind.HTTP_ERROR)
    snippet = data[:300].decode("utf-8", errors="replace").strip().replace("\n", " ")[:200]
    return failed(kind, f"GET {url} answered {status}: {snippet}", status_code=status, elapsed_ms=watch.ms)
