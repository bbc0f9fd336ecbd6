"""HTTP (httpx), bounded: the service API, its metrics and pprof endpoints, Prometheus, Grafana,
the runbooks' ``http`` and ``notify`` actions, escalation webhooks and Qdrant's REST API.

Every request made through :func:`bounded_client` (the one way es-doctor builds an httpx client,
also handed to qdrant-client) has

* a total deadline: every socket read, write and connect waits at most what is left of it, so a
  server dripping one byte at a time is cut at the deadline, not only a silent one;
* a size cap applied to the decoded body: es-doctor asks for gzip/deflate only and decompresses
  itself, a bounded piece at a time, so a gzip bomb stops at the cap with bounded memory;
* JSON parsed with a nesting-depth limit (:func:`parse_json`): a 200,000-deep array is a clean
  ``ValueError``, never a ``RecursionError``;
* ``Retry-After`` read with a cap per try (:func:`retry_after`) and over all tries (:class:`RetryBudget`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import json
import re
import ssl
import threading
import time
import urllib.request
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpcore
import httpx

from es_doctor.probes.result import FailureKind, Result, Stopwatch, failed, short, success

MAX_BODY = 8 * 1024 * 1024  #: a hostile server cannot make us read more than this (decoded)
MAX_JSON_DEPTH = 128  #: deeper JSON is refused before parsing
MAX_RETRY_AFTER_S = 60.0  #: a server asking to wait longer is waited for this long at most
MAX_RETRY_WAIT_TOTAL_S = 60.0  #: all the waits between the tries of one call together, at most
ALL_STATUSES = tuple(range(100, 600))  #: ``accept`` value that makes every HTTP answer a value

CANCEL_POLL_S = 0.25  #: how often a waiting read looks at the cancel event

_local = threading.local()  # the deadline of the request the current thread is making, its cancel event


class BodyTooLargeError(httpx.ReadError):
    """The decoded body went over the cap."""


# --------------------------------------------------------------------------- deadline on every socket call


@contextlib.contextmanager
def cancellable(cancel: threading.Event | None) -> Iterator[None]:
    """Requests made by this thread inside the block stop (a read error) soon after ``cancel`` is set:
    the engine runs each step's action inside it, so a cancelled step's HTTP call ends at once."""
    previous = getattr(_local, "cancel", None)
    _local.cancel = cancel
    try:
        yield
    finally:
        _local.cancel = previous


def current_cancel() -> threading.Event | None:
    """The cancel event of the :func:`cancellable` block this thread runs in (None outside one): other
    probes (PostgreSQL) watch it to cancel their own calls."""
    cancel: threading.Event | None = getattr(_local, "cancel", None)
    return cancel


def _left(timeout: float | None, error: type[Exception]) -> float | None:
    cancel: threading.Event | None = getattr(_local, "cancel", None)
    if cancel is not None and cancel.is_set():
        raise error("cancelled")
    deadline: float | None = getattr(_local, "deadline", None)
    if deadline is None:
        return timeout
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise error("total deadline of the request reached")
    return remaining if timeout is None else min(timeout, remaining)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self.inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """Waits at most ``timeout`` and what is left of the deadline, in slices of CANCEL_POLL_S so a
        cancel is seen (a timed-out recv consumed nothing: reading again is safe)."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = _left(None if end is None else end - time.monotonic(), httpcore.ReadTimeout)
            if wait is not None and wait <= 0:
                raise httpcore.ReadTimeout("no data within the read timeout")
            try:
                return self.inner.read(max_bytes, CANCEL_POLL_S if wait is None else min(wait, CANCEL_POLL_S))
            except httpcore.ReadTimeout:
                if wait is not None and wait <= CANCEL_POLL_S:
                    raise

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.inner.write(buffer, _left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self.inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        if ssl_context is _UNBUILT_TLS:  # the first handshake of the process builds the verifying context
            ssl_context = verifying_tls_context()
            ssl_context.set_alpn_protocols(["http/1.1"])
        return _DeadlineStream(self.inner.start_tls(ssl_context, server_hostname,
                                                    _left(timeout, httpcore.ConnectTimeout)))

    def get_extra_info(self, info: str) -> Any:
        return self.inner.get_extra_info(info)


class _DeadlineBackend(httpcore.SyncBackend):
    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        return _DeadlineStream(super().connect_tcp(host, port, _left(timeout, httpcore.ConnectTimeout),
                                                   local_address, socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Any = None) -> httpcore.NetworkStream:
        return _DeadlineStream(super().connect_unix_socket(path, _left(timeout, httpcore.ConnectTimeout),
                                                           socket_options))


# --------------------------------------------------------------------------- decoded size cap


class _BoundedBody(httpx.SyncByteStream):
    """The raw body, decompressed a bounded piece at a time, cut at the deadline and at the cap."""

    def __init__(self, raw: httpx.SyncByteStream, encoding: str, deadline: float, max_body: int | None) -> None:
        self.raw, self.encoding, self.deadline, self.max_body = raw, encoding, deadline, max_body

    def __iter__(self) -> Iterator[bytes]:
        decoder = zlib.decompressobj(zlib.MAX_WBITS | 32) if self.encoding in ("gzip", "x-gzip", "deflate") else None
        size = 0
        _local.deadline = self.deadline  # the body may be read after handle_request returned
        for chunk in self.raw:
            _left(None, httpx.ReadTimeout)
            pending = chunk
            while pending:
                if decoder is None:
                    piece, pending = pending, b""
                else:
                    try:
                        piece = decoder.decompress(pending, 1 << 16)
                    except zlib.error as exc:
                        raise httpx.DecodingError(f"bad {self.encoding} body: {exc}") from None
                    pending = decoder.unconsumed_tail
                size += len(piece)
                if self.max_body is not None and size > self.max_body:
                    raise BodyTooLargeError(f"body larger than {self.max_body} bytes (decoded)")
                if piece:
                    yield piece

    def close(self) -> None:
        self.raw.close()


_TLS: list[ssl.SSLContext] = []
_TLS_LOCK = threading.Lock()
#: what a verifying transport holds until a handshake needs the real context (see _DeadlineStream.start_tls):
#: it verifies and trusts no CA, so were it ever used for a handshake, that handshake would fail, never pass
_UNBUILT_TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def verifying_tls_context() -> ssl.SSLContext:
    """The one certificate-verifying TLS context of the process (httpx's default: ``SSL_CERT_FILE``,
    ``SSL_CERT_DIR`` or certifi's bundle), built at the first TLS handshake: loading the bundle costs
    15-60 ms of CPU, es-doctor builds a client per request, and a diagnosis over plain HTTP needs
    none. An SSLContext is safe to share between threads."""
    with _TLS_LOCK:
        if not _TLS:
            _TLS.append(httpx.create_ssl_context())
        return _TLS[0]


class BoundedTransport(httpx.HTTPTransport):
    """httpx's transport with a total deadline per request and a decoded-size cap on bodies."""

    def __init__(self, *, deadline_s: float, max_body: int | None = MAX_BODY, proxy: str | None = None,
                 verify: bool = True, uds: str | None = None) -> None:
        super().__init__(proxy=proxy, verify=_UNBUILT_TLS if verify else False, uds=uds)
        if not hasattr(self._pool, "_network_backend"):  # pragma: no cover - guards an httpcore change
            raise RuntimeError("httpcore changed: its pool has no network backend to bound")
        self._pool._network_backend = _DeadlineBackend()
        self.deadline_s, self.max_body = deadline_s, max_body

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        deadline = time.monotonic() + self.deadline_s
        cap: float | None = getattr(_local, "cap", None)  # one deadline for a request and its redirects
        if cap is not None:
            deadline = min(deadline, cap)
        _local.deadline = deadline
        request.headers["Accept-Encoding"] = "gzip, deflate"  # the encodings decoded below, nothing else
        response = super().handle_request(request)
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("identity", "", "gzip", "x-gzip", "deflate"):
            response.close()
            raise httpx.DecodingError(f"unsupported Content-Encoding {encoding!r}", request=request)
        headers = [(k, v) for k, v in response.headers.multi_items()
                   if k.lower() not in ("content-encoding", "content-length")]
        assert isinstance(response.stream, httpx.SyncByteStream)
        return httpx.Response(response.status_code, headers=headers,
                              stream=_BoundedBody(response.stream, encoding, deadline, self.max_body),
                              extensions=response.extensions)


def _proxy_for(url: str) -> str | None:
    """The proxy the standard environment variables name for ``url`` (``no_proxy`` honoured)."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    proxies = urllib.request.getproxies()
    if not scheme or scheme not in proxies or (host and urllib.request.proxy_bypass(host.split(":")[0])):
        return None
    return proxies[scheme]


def bounded_client(url: str, *, deadline_s: float, max_body: int | None = MAX_BODY,
                   headers: dict[str, str] | None = None, follow_redirects: bool = False,
                   base_url: bool = False, uds: str | None = None) -> httpx.Client:
    """An httpx client whose every request is bounded (see the module's doc). ``url``: what it
    will talk to (its proxy is chosen from the environment); ``base_url``: make it the base;
    ``uds``: a Unix socket to connect to instead (the Docker engine; no proxy then)."""
    transport = BoundedTransport(deadline_s=deadline_s, max_body=max_body,
                                 proxy=None if uds else _proxy_for(url), uds=uds)
    timeout = httpx.Timeout(deadline_s)
    if base_url:
        return httpx.Client(base_url=url, transport=transport, timeout=timeout, headers=headers,
                            follow_redirects=follow_redirects, trust_env=False)
    return httpx.Client(transport=transport, timeout=timeout, headers=headers, follow_redirects=follow_redirects,
                        trust_env=False)


def bounded_client_args(url: str, deadline_s: float, max_body: int | None = MAX_BODY) -> dict[str, Any]:
    """Keyword arguments for an SDK that builds its own httpx client (qdrant-client passes them on)."""
    return {"transport": BoundedTransport(deadline_s=deadline_s, max_body=max_body, proxy=_proxy_for(url)),
            "trust_env": False}


# --------------------------------------------------------------------------- JSON and Retry-After

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")


@dataclass(frozen=True)
class PostAttempt:
    """One POST through a bounded client: the answer, or why there is none and whether to try again."""

    status_code: int | None
    text: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    detail: str = ""
    retryable: bool = True


def post_once(client: httpx.Client, url: str, content: bytes, headers: dict[str, str],
              deadline_s: float) -> PostAttempt:
    """POST ``content``; transport failures become a PostAttempt (the only httpx exceptions callers see)."""
    try:
        response = client.post(url, content=content, headers=headers)
    except httpx.TimeoutException:
        return PostAttempt(None, detail=f"no complete answer within {deadline_s:g} s")
    except BodyTooLargeError as exc:
        return PostAttempt(None, detail=f"answer refused: {exc}")
    except httpx.TransportError as exc:
        return PostAttempt(None, detail=f"unreachable: {type(exc).__name__}: {exc}")
    except (httpx.InvalidURL, httpx.UnsupportedProtocol, ValueError) as exc:
        return PostAttempt(None, detail=f"invalid URL: {exc}", retryable=False)
    return PostAttempt(response.status_code, response.text, dict(response.headers))


class Poster:
    """A bounded client for POSTs to one URL (a notification webhook), closed with ``with``: made by
    :func:`poster`, so the client is built here and nowhere else."""

    def __init__(self, client: httpx.Client, url: str, deadline_s: float) -> None:
        self._client, self.url, self.deadline_s = client, url, deadline_s

    def post(self, content: bytes, headers: dict[str, str]) -> PostAttempt:
        return post_once(self._client, self.url, content, headers, self.deadline_s)

    def __enter__(self) -> Poster:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._client.close()


def poster(url: str, *, deadline_s: float, max_body: int | None = MAX_BODY) -> Poster:
    """A :class:`Poster` for ``url``; ValueError on a client that cannot be made (a malformed proxy setting)."""
    return Poster(bounded_client(url, deadline_s=deadline_s, max_body=max_body), url, deadline_s)


class JsonTooDeepError(ValueError):
    """JSON nested deeper than the limit."""


def parse_json(data: bytes | str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` with a nesting-depth limit (checked first, without recursion): ValueError."""
    raw = data.encode("utf-8", errors="replace") if isinstance(data, str) else data
    depth = 0
    for c in _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS):
        depth += 1 if c in (0x5B, 0x7B) else -1
        if depth > max_depth:
            raise JsonTooDeepError(f"JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(raw)
    except RecursionError:  # pragma: no cover - the check above comes first
        raise JsonTooDeepError(f"JSON nested deeper than {max_depth} levels") from None


def retry_after(headers: httpx.Headers | dict[str, str], default: float, cap: float = MAX_RETRY_AFTER_S) -> float:
    """Seconds to wait before trying again: the server's ``Retry-After`` (seconds or an HTTP date),
    else ``default``; never more than ``cap``, never negative."""
    value = (headers.get("Retry-After") or headers.get("retry-after") or "").strip()
    wait = default
    if value.isdigit():
        wait = float(value)
    elif value:
        try:
            when = email.utils.parsedate_to_datetime(value)
            wait = (when - dt.datetime.now(dt.UTC)).total_seconds()
        except (TypeError, ValueError):
            wait = default
    return max(0.0, min(wait, cap))


class RetryBudget:
    """The waiting one call may still do between its tries (``Retry-After`` and backoff together): each
    wait is cut to what is left; once nothing is left the call stops retrying."""

    def __init__(self, total: float = MAX_RETRY_WAIT_TOTAL_S) -> None:
        self.total = total
        self.left = total

    def take(self, wait: float) -> float | None:
        """The part of ``wait`` the budget allows (None: the budget is spent, do not retry)."""
        if self.left <= 0:
            return None
        granted = max(0.0, min(wait, self.left))
        self.left -= granted
        return granted


# --------------------------------------------------------------------------- the probe


@dataclass(frozen=True)
class HttpResponse:
    status_code: int
    text: str
    headers: dict[str, str]
    elapsed_ms: float

    def json(self) -> Any:
        return parse_json(self.text)


def bearer_headers(token: str | None) -> dict[str, str]:
    """The ``Authorization`` header of a bearer token (none without a token): the one place it is built."""
    return {"Authorization": f"Bearer {token}"} if token else {}


class HttpProbe:
    """Every request returns a Result; 2xx is a value, anything else a typed failure.

    ``accept`` lists extra status codes that are values rather than failures (e.g. 503 on
    /health carries a reason in its body). ``timeout`` is the total deadline of a request. A
    failure whose request surely never reached the server has ``meta["sent"] == "no"``.
    """

    def __init__(self, timeout: float = 5.0, headers: dict[str, str] | None = None,
                 max_body: int = MAX_BODY) -> None:
        self.timeout = timeout
        self.headers = headers or {}
        self.max_body = max_body

    def request(
        self,
        method: str,
        url: str,
        *,
        json_body: Any = None,
        accept: tuple[int, ...] = (),
        timeout: float | None = None,
        max_body: int | None = None,
    ) -> Result[HttpResponse]:
        """``timeout`` and ``max_body`` override the probe's own for this request."""
        watch = Stopwatch()
        limit = timeout if timeout is not None else self.timeout
        cap = max_body if max_body is not None else self.max_body
        outer = getattr(_local, "cap", None)
        _local.cap = time.monotonic() + limit if outer is None else min(outer, time.monotonic() + limit)
        try:
            with (
                bounded_client(url, deadline_s=limit, max_body=cap, headers=self.headers,
                               follow_redirects=True) as client,
                client.stream(method, url, json=json_body) as response,
            ):
                body = response.read().decode(response.encoding or "utf-8", errors="replace")
                result = HttpResponse(response.status_code, body, dict(response.headers), watch.ms)
        except BodyTooLargeError as exc:
            return failed(FailureKind.BAD_RESPONSE, f"{method} {url}: {exc}", elapsed_ms=watch.ms)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            kind = FailureKind.TIMEOUT if isinstance(exc, httpx.ConnectTimeout) else FailureKind.REFUSED
            return Result(failure=failed(kind, f"{method} {url}: {short(exc)}").failure, elapsed_ms=watch.ms,
                          meta={"sent": "no"})
        except httpx.TimeoutException as exc:
            return failed(FailureKind.TIMEOUT, f"{method} {url}: no complete answer within {limit:g}s "
                                               f"({type(exc).__name__})", elapsed_ms=watch.ms)
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            return failed(FailureKind.REFUSED, f"{method} {url}: {short(exc)}", elapsed_ms=watch.ms)
        except httpx.UnsupportedProtocol as exc:
            return Result(failure=failed(FailureKind.ERROR, f"{method} {url}: {short(exc)}").failure,
                          elapsed_ms=watch.ms, meta={"sent": "no"})
        except (httpx.HTTPError, OSError, ValueError) as exc:
            return failed(FailureKind.ERROR, f"{method} {url}: {short(exc)}", elapsed_ms=watch.ms)
        finally:
            _local.cap = outer
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

    def status_of(self, url: str, timeout: float | None = None) -> int | None:
        """The HTTP status ``url`` answers (any status: 200, 401, 404, 500…), None when what listens there
        speaks no HTTP (refuses, hangs up, times out, answers garbage): whether a port's holder is a web
        server at all."""
        got = self.request("GET", url, accept=ALL_STATUSES, timeout=timeout)
        return got.value.status_code if got.value is not None else None

    def get_json(self, url: str, *, accept: tuple[int, ...] = (), timeout: float | None = None) -> Result[Any]:
        """GET and parse JSON; bad JSON is a BAD_RESPONSE failure."""
        response = self.get(url, accept=accept, timeout=timeout)
        return as_json(response)


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


def call_with_token(method: str, url: str, token: str, *, json_body: Any = None, timeout: float,
                    max_body: int) -> Result[HttpResponse]:
    """One call to an es-doctor API that is not a target's (``serve``'s, for ``es-doctor requests``): bounded
    as every probe's (one deadline, the answer capped), with the bearer token; every HTTP status is a value."""
    probe = HttpProbe(timeout, headers=bearer_headers(token), max_body=max_body)
    return probe.request(method, url, json_body=json_body, accept=ALL_STATUSES)
