"""The endpoints of ``serve`` that can start or approve a cure (POST only), and the requests' API.

``POST /api/v1/alerts`` Alertmanager's webhook (v4) · ``POST /api/v1/requests/{id}/approve`` and ``/deny``
(JSON ``{"by": "who"}``) · ``POST /requests/{id}/approve`` the status page's button (a form: the token
typed in it, same origin only) · ``GET /api/v1/requests[/{id}]``.

Every POST needs the bearer token, on loopback too (any local user could otherwise start a cure); a daemon
configured without ``serve.token`` keeps them off (503, saying why). A body needs a Content-Length and is
capped (``remediation.max_body_bytes``); what is refused is answered 4xx with the reason and recorded.
"""

from __future__ import annotations

import hmac
import json
import re
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from es_doctor.remediation.alerts import PayloadError, parse_webhook

if TYPE_CHECKING:
    from es_doctor.serve.http import Handler

REQUEST_ID = re.compile(r"r-[0-9a-f]{16}")
APPROVE_PATH = re.compile(r"/api/v1/requests/(r-[0-9a-f]{16})/(approve|deny)")
PAGE_APPROVE_PATH = re.compile(r"/requests/(r-[0-9a-f]{16})/(approve|deny)")
MAX_BY_CHARS = 120


def token_matches(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode(), token.encode())


def bearer(handler: Handler) -> str:
    scheme, _, value = handler.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def _remote(handler: Handler) -> str:
    return str(handler.client_address[0]) if handler.client_address else "?"


def _reply(handler: Handler, status: int, body: dict[str, Any], extra: dict[str, str] | None = None) -> None:
    handler._send(HTTPStatus(status), json.dumps(body, indent=2, ensure_ascii=False).encode(), "application/json",
                  extra=extra)


def _refuse(handler: Handler, status: int, reason: str, size: int = 0, close: bool = False,
            extra: dict[str, str] | None = None) -> None:
    handler.server.doctor.store.requests.receipt(status, reason, _remote(handler), size)
    if close:
        handler.close_connection = True
        extra = {**(extra or {}), "Connection": "close"}
    _reply(handler, status, {"error": reason}, extra)


def read_body(handler: Handler, cap: int) -> bytes | None:
    """The body (Content-Length only, at most ``cap`` bytes), or None after answering why not."""
    if handler.headers.get("Transfer-Encoding"):
        _refuse(handler, 411, "a Content-Length is required (no chunked bodies)", close=True)
        return None
    length_text = handler.headers.get("Content-Length")
    if length_text is None or not length_text.strip().isdigit():
        _refuse(handler, 411, "a Content-Length is required", close=True)
        return None
    length = int(length_text)
    if length > cap:
        _refuse(handler, 413, f"the body is {length} bytes; at most {cap} (remediation.max_body_bytes)", length,
                close=True)
        return None
    body = handler.rfile.read(length)
    if len(body) != length:
        _refuse(handler, 400, "the body ended before its Content-Length", len(body), close=True)
        return None
    return body


def post(handler: Handler, path: str) -> None:
    """Route a POST: alerts, approvals (API and page)."""
    doctor = handler.server.doctor
    token = doctor.settings.token
    page = PAGE_APPROVE_PATH.fullmatch(path)
    if path != "/api/v1/alerts" and not APPROVE_PATH.fullmatch(path) and not page:
        handler._send(HTTPStatus.METHOD_NOT_ALLOWED, b"GET and HEAD only here\n", "text/plain; charset=utf-8",
                      extra={"Allow": "GET, HEAD"})
        return
    if not token:
        _refuse(handler, 503, "the alert receiver and approvals are off: serve.token is not set (they need a "
                              "bearer token, on loopback too)", close=True)
        return
    cap = next(iter(doctor.settings.loaded.values())).config.remediation.max_body_bytes \
        if doctor.settings.loaded else 262144
    if page:
        _page_action(handler, page.group(1), page.group(2), token, cap)
        return
    given = bearer(handler)
    if not given or not token_matches(given, token):
        _refuse(handler, 401, "a valid bearer token is required" if given else "a bearer token is required",
                close=True, extra={"WWW-Authenticate": 'Bearer realm="es-doctor"'})
        return
    body = read_body(handler, cap)
    if body is None:
        return
    if path == "/api/v1/alerts":
        _alerts(handler, body)
        return
    match = APPROVE_PATH.fullmatch(path)
    assert match is not None
    try:
        data = json.loads(body.decode("utf-8") or "{}")
    except (UnicodeDecodeError, ValueError):
        _refuse(handler, 400, "the body is not JSON", len(body))
        return
    by = data.get("by") if isinstance(data, dict) else None
    if not isinstance(by, str) or not by.strip() or len(by) > MAX_BY_CHARS or any(ord(c) < 32 for c in by):
        _refuse(handler, 400, f"the body must name who decides: {{\"by\": \"name\"}} (at most {MAX_BY_CHARS} "
                              "printable characters)", len(body))
        return
    _decide(handler, match.group(1), match.group(2), by.strip())


def _decide(handler: Handler, rid: str, action: str, by: str) -> None:
    remediator = handler.server.doctor.remediator
    status, message = (remediator.approve if action == "approve" else remediator.deny)(rid, by)
    _reply(handler, status, {"request": rid, "result": message} if status == 200 else {"request": rid,
                                                                                       "error": message})


def _alerts(handler: Handler, body: bytes) -> None:
    doctor = handler.server.doctor
    config = next(iter(doctor.settings.loaded.values())).config.remediation if doctor.settings.loaded else None
    try:
        hook = parse_webhook(body, config.max_alerts if config else 100)
    except PayloadError as exc:
        _refuse(handler, exc.status, exc.reason, len(body))
        return
    results = doctor.remediator.receive(hook)
    accepted = [r for r in results if r["result"] != "refused"]
    if results and not accepted:
        doctor.store.requests.receipt(422, "every alert refused", _remote(handler), len(body))
        _reply(handler, 422, {"error": "no alert of the payload maps to a cure es-doctor knows", "alerts": results})
        return
    doctor.store.requests.receipt(202, f"{len(accepted)} alert(s) recorded", _remote(handler), len(body))
    _reply(handler, 202, {"alerts": results})


def _page_action(handler: Handler, rid: str, action: str, token: str, cap: int) -> None:
    """The status page's button: a form (the token typed in it), from the page's own origin only."""
    host = handler.headers.get("Host", "")
    origin = handler.headers.get("Origin") or ""
    if not origin or urlsplit(origin).netloc != host:
        _refuse(handler, 403, "cross-origin (or Origin-less) form posts are refused", close=True)
        return
    body = read_body(handler, min(cap, 4096))
    if body is None:
        return
    form = parse_qs(body.decode("utf-8", "replace"))
    given = (form.get("token") or [""])[0]
    if not given or not token_matches(given, token):
        _refuse(handler, 401, "the token typed in the form is not serve's token", len(body))
        return
    by = (form.get("by") or [""])[0].strip()
    if not by or len(by) > MAX_BY_CHARS or any(ord(c) < 32 for c in by):
        _refuse(handler, 400, "the form must name who decides", len(body))
        return
    remediator = handler.server.doctor.remediator
    status, message = (remediator.approve if action == "approve" else remediator.deny)(rid, f"{by} (status page)")
    if status == 200:  # back to the page, where the request now reads as decided
        handler._send(HTTPStatus.SEE_OTHER, f"{message}\n".encode(), "text/plain; charset=utf-8",
                      extra={"Location": "/#remediation"})
    else:
        _reply(handler, status, {"request": rid, "error": message})


def get(handler: Handler, path: str, head: bool) -> bool:
    """``GET /api/v1/requests[/{id}]``; False when the path is not one of these."""
    requests = handler.server.doctor.store.requests
    if path == "/api/v1/requests":
        handler._json(HTTPStatus.OK, {"requests": requests.find(limit=500)}, head)
        return True
    if path.startswith("/api/v1/requests/"):
        rid = path.rsplit("/", 1)[1]
        request = requests.get(rid) if REQUEST_ID.fullmatch(rid) else None
        if request is None:
            handler._json(HTTPStatus.NOT_FOUND, {"error": f"no request {rid[:40]}"}, head)
        else:
            handler._json(HTTPStatus.OK, {**request, "events": requests.events(rid)}, head)
        return True
    if path == "/api/v1/alerts/receipts":
        handler._json(HTTPStatus.OK, {"receipts": requests.receipts()}, head)
        return True
    return False
