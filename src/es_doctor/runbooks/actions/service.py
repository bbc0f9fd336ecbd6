"""The service's own API and plain HTTP: ``http``, ``service.mode``."""

from __future__ import annotations

import time
from typing import Any

from pydantic import Field, JsonValue

from es_doctor.runbooks.actions.base import (
    ActionContext,
    ActionError,
    Inputs,
    action,
)

HTTP_ACTION_MAX_BODY = 1024 * 1024  #: the largest (decoded) answer an ``http`` step reads


class HttpInputs(Inputs):
    url: str = Field(min_length=1, description="an absolute URL, or a path of the service's API (/api/…: "
                     "sent with its bearer token)")
    method: str = Field(default="GET", description="the HTTP method")
    json_body: JsonValue = Field(default=None, alias="json", description="a JSON body to send")
    expect_status: int | None = Field(default=None, description="the status expected (default: any 2xx)")
    timeout: float = Field(default=30.0, gt=0, description="seconds for the whole request")
    idempotent: bool = Field(default=False, description="may be sent again after a timeout")


class ModeInputs(Inputs):
    readonly: bool | None = Field(default=None, description="the read-only mode the service must report")
    maintenance: bool | None = Field(default=None, description="the maintenance mode the service must report")
    wait: float = Field(default=5.0, ge=0, description="seconds to wait for the service to report it")
    timeout: float = Field(default=10.0, gt=0, description="seconds per read")


def _url(inputs: HttpInputs, ctx: ActionContext) -> str:
    url = inputs.url
    return ctx.target.service.api_url.rstrip("/") + url if url.startswith("/") else url


#: HTTP methods that may be sent again after a timeout (RFC 9110 idempotent methods)
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


def _http_retry_safe(inputs: dict[str, Any]) -> bool:
    return str(inputs.get("method", "GET")).upper() in IDEMPOTENT_METHODS or bool(inputs.get("idempotent"))


@action("http", lambda i: f"{i.get('method', 'GET')} {i.get('url')} (expect {i.get('expect_status', '2xx')})",
        HttpInputs, retry_safe=_http_retry_safe)
def http(inputs: HttpInputs, ctx: ActionContext) -> dict[str, Any]:
    from es_doctor.probes.http import ALL_STATUSES, parse_json, retry_after

    # the service's bearer token goes only to the service's own API (a path), never to another URL
    probe = ctx.probes.http() if inputs.url.startswith("/") else ctx.probes.plain_http()
    method = inputs.method.upper()
    # bounded: a total deadline (``timeout``), the body capped after decoding, JSON depth limited
    answer = probe.request(method, _url(inputs, ctx), json_body=inputs.json_body, accept=ALL_STATUSES,
                           timeout=inputs.timeout, max_body=HTTP_ACTION_MAX_BODY)
    if answer.failure is not None:
        # a request that reached the server may have taken effect: not retried unless idempotent
        sent = answer.meta.get("sent") != "no"
        raise ActionError(answer.failure.message, retryable=not sent or _http_retry_safe(inputs.model_dump()))
    resp = answer.unwrap()
    expected = inputs.expect_status
    ok = resp.status_code == expected if expected is not None else 200 <= resp.status_code < 300
    if not ok:
        wait = retry_after(resp.headers, 0.0) if resp.status_code in (429, 503) else 0.0
        raise ActionError(f"{inputs.url} answered {resp.status_code}: {resp.text[:200]}", retry_after=wait)
    try:
        body: Any = parse_json(resp.text)
    except ValueError:
        body = resp.text[:2000]
    return {"status": resp.status_code, "body": body}


def _mode_describe(i: dict[str, Any]) -> str:
    wanted = [f"{k}={str(i[k]).lower()}" for k in ("readonly", "maintenance") if i.get(k) is not None]
    return ("prove from the service's own state (GET /api/v1/maintenance) that " + " and ".join(wanted)
            if wanted else "read the service's mode (GET /api/v1/maintenance)")


@action("service.mode", _mode_describe, ModeInputs)
def service_mode(inputs: ModeInputs, ctx: ActionContext) -> dict[str, Any]:
    """The service's read-only and maintenance mode, as it reports them; with ``readonly``/``maintenance``
    given, the step fails unless the service says so within ``wait`` seconds. No write is attempted:
    proving a mode never writes production data."""
    api = ctx.service()
    wanted = {k: v for k, v in (("readonly", inputs.readonly), ("maintenance", inputs.maintenance))
              if v is not None}
    deadline = time.monotonic() + inputs.wait
    while True:
        answer = api.mode(timeout=inputs.timeout)
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
