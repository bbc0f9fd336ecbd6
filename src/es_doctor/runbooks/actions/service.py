"""The service's own API and plain HTTP: ``http``, ``service.mode``."""

from __future__ import annotations

import time
from typing import Any

from es_doctor.runbooks.actions.base import (
    ActionContext,
    ActionError,
    action,
    as_bool,
    need,
)

HTTP_ACTION_MAX_BODY = 1024 * 1024  #: the largest (decoded) answer an ``http`` step reads


def _url(inputs: dict[str, Any], ctx: ActionContext) -> str:
    url = str(need(inputs, "url"))
    return ctx.target.service.api_url.rstrip("/") + url if url.startswith("/") else url


#: HTTP methods that may be sent again after a timeout (RFC 9110 idempotent methods)
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


def _http_retry_safe(inputs: dict[str, Any]) -> bool:
    return str(inputs.get("method", "GET")).upper() in IDEMPOTENT_METHODS or bool(inputs.get("idempotent"))


@action("http", lambda i: f"{i.get('method', 'GET')} {i.get('url')} (expect {i.get('expect_status', '2xx')})",
        retry_safe=_http_retry_safe)
def http(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    from es_doctor.probes.http import ALL_STATUSES, parse_json, retry_after

    # the service's bearer token goes only to the service's own API (a path), never to another URL
    probe = ctx.probes.http() if str(inputs.get("url", "")).startswith("/") else ctx.probes.plain_http()
    method = str(inputs.get("method", "GET")).upper()
    # bounded: a total deadline (``timeout``), the body capped after decoding, JSON depth limited
    answer = probe.request(method, _url(inputs, ctx), json_body=inputs.get("json"), accept=ALL_STATUSES,
                           timeout=float(inputs.get("timeout", 30)), max_body=HTTP_ACTION_MAX_BODY)
    if answer.failure is not None:
        # a request that reached the server may have taken effect: not retried unless idempotent
        sent = answer.meta.get("sent") != "no"
        raise ActionError(answer.failure.message, retryable=not sent or _http_retry_safe(inputs))
    resp = answer.unwrap()
    expected = inputs.get("expect_status")
    ok = resp.status_code == int(expected) if expected is not None else 200 <= resp.status_code < 300
    if not ok:
        wait = retry_after(resp.headers, 0.0) if resp.status_code in (429, 503) else 0.0
        raise ActionError(f"{inputs.get('url')} answered {resp.status_code}: {resp.text[:200]}", retry_after=wait)
    try:
        body: Any = parse_json(resp.text)
    except ValueError:
        body = resp.text[:2000]
    return {"status": resp.status_code, "body": body}


def _mode_describe(i: dict[str, Any]) -> str:
    wanted = [f"{k}={str(i[k]).lower()}" for k in ("readonly", "maintenance") if i.get(k) is not None]
    return ("prove from the service's own state (GET /api/v1/maintenance) that " + " and ".join(wanted)
            if wanted else "read the service's mode (GET /api/v1/maintenance)")


@action("service.mode", _mode_describe)
def service_mode(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    """The service's read-only and maintenance mode, as it reports them; with ``readonly``/``maintenance``
    given, the step fails unless the service says so within ``wait`` seconds. No write is attempted:
    proving a mode never writes production data."""
    api = ctx.service()
    wanted = {k: as_bool(inputs[k]) for k in ("readonly", "maintenance") if inputs.get(k) is not None}
    deadline = time.monotonic() + float(inputs.get("wait", 5))
    while True:
        answer = api.mode(timeout=float(inputs.get("timeout", 10)))
        if answer.failure is not None:
            raise ActionError(f"cannot read the service's mode (GET /api/v1/maintenance: {answer.failure.message}); "
                              "without it the mode cannot be proven, and es-doctor proves none by writing")
        mode = answer.unwrap()
        if len(mode.stated) < 2:
            raise ActionError("GET /api/v1/maintenance answered without a true/false readonly and maintenance "
                              f"(it states {', '.join(mode.stated) or 'neither'}): the mode cannot be proven")
        got = {"readonly": mode.readonly, "maintenance": mode.maintenance}
        wrong = {k: got[k] for k, v in wanted.items() if got[k] is not v}
        if not wrong:
            writes = "refused" if got["readonly"] or got["maintenance"] else "accepted"
            ctx.say(f"  the service says readonly={str(got['readonly']).lower()} "
                    f"maintenance={str(got['maintenance']).lower()}: writes are {writes}")
            return {**got, "writes": writes}
        if time.monotonic() > deadline:
            raise ActionError("the service says " + ", ".join(f"{k}={str(v).lower()}" for k, v in wrong.items())
                              + ", not " + ", ".join(f"{k}={str(wanted[k]).lower()}" for k in wrong))
        ctx.sleep(0.5)
