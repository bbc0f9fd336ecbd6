"""``es-doctor requests list | show ID | approve ID | deny ID``: serve's remediation requests, through its API.

The server is ``--server URL`` (default: the configured ``serve.listen``); the token comes from the
configuration (``serve.token``, env:NAME) or ``$ES_DOCTOR_SERVE_TOKEN``, never from the command line.
"""

from __future__ import annotations

import datetime as dt
import json
from enum import StrEnum
from typing import Annotated, Any

import typer

from es_doctor.cli.common import ConfigOpt, state
from es_doctor.errors import EsDoctorError, ExitStatus, UnavailableError, UsageError


class ListFormat(StrEnum):
    text = "text"
    json = "json"


requests_app = typer.Typer(help="Remediation requests of es-doctor serve: list, show, approve, deny.",
                           no_args_is_help=True)
TOKEN_ENV = "ES_DOCTOR_SERVE_TOKEN"  # noqa: S105 - the name of a variable
TIMEOUT_S = 10.0
MAX_ANSWER = 4 * 2**20

ServerOpt = Annotated[str | None, typer.Option("--server", metavar="URL",
                                               help="serve's address (default: http:// + serve.listen of the config).",
                                               show_default=False)]


class _Client:
    def __init__(self, ctx: typer.Context, server: str | None, config: str | None) -> None:
        import os

        from es_doctor.config import load_config
        from es_doctor.secrets import resolve_secret

        loaded = None
        try:
            loaded = load_config(config or state(ctx).config_path, None, env_overrides=False)
        except EsDoctorError:
            if server is None:
                raise
        listen = loaded.config.serve.listen if loaded else "127.0.0.1:9109"
        host, _, port = listen.rpartition(":")
        host = host.strip("[]")
        host = "127.0.0.1" if host in ("", "0.0.0.0") else "[::1]" if host == "::" else \
            f"[{host}]" if ":" in host else host
        self.base = (server or f"http://{host}:{port}").rstrip("/")
        if not self.base.startswith(("http://", "https://")):
            raise UsageError(f"--server must be an http(s) URL, not {self.base!r}")
        self.token = os.environ.get(TOKEN_ENV) or (
            resolve_secret(loaded.config.serve.token) if loaded and loaded.config.serve.token else None)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        if not self.token:
            raise UsageError(f"no token: set serve.token in the config (env:NAME) or ${TOKEN_ENV}")
        from es_doctor.probes.http import call_with_token, parse_json

        # one deadline for the whole call (a dripping server cannot hold it), the answer's size capped
        got = call_with_token(method, self.base + path, self.token, json_body=body, timeout=TIMEOUT_S,
                              max_body=MAX_ANSWER)
        if got.value is None:
            reason = got.failure.message if got.failure is not None else "no answer"
            raise UnavailableError(f"cannot reach es-doctor serve at {self.base}: {reason}")
        status, text = got.value.status_code, got.value.text
        try:
            return status, parse_json(text or "null")
        except ValueError:
            if 200 <= status < 300:
                raise UnavailableError(f"es-doctor serve at {self.base} answered no JSON") from None
            return status, {"error": text[:300].strip()}


def _when(at: float | None) -> str:
    return "-" if at is None else dt.datetime.fromtimestamp(float(at), dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _fail(status: int, answer: Any) -> int:
    message = answer.get("error") if isinstance(answer, dict) else str(answer)
    typer.echo(f"es-doctor: serve answered {status}: {message}", err=True)
    return int(ExitStatus.UNAVAILABLE if status >= 500 else ExitStatus.USAGE if status in (400, 404, 409)
               else ExitStatus.UNAVAILABLE)


@requests_app.command("list")
def list_requests(
    ctx: typer.Context,
    fmt: Annotated[ListFormat, typer.Option("--format", "-f", metavar="[text|json]",
                                            help="text, or json (id, target, finding, runbook, state, runs).")]
    = ListFormat.text,
    server: ServerOpt = None,
    config: ConfigOpt = None,
) -> int:
    """Every request (newest first): id, target, finding, runbook, state, runs."""
    status, answer = _Client(ctx, server, config).call("GET", "/api/v1/requests")
    if status != 200:
        return _fail(status, answer)
    rows = answer.get("requests", [])
    if fmt is ListFormat.json:
        keys = ("id", "target", "finding", "runbook", "state", "runs", "approved_by", "created", "updated", "reason")
        typer.echo(json.dumps([{k: r.get(k) for k in keys} for r in rows], indent=2, ensure_ascii=False))
        return int(ExitStatus.OK)
    if not rows:
        typer.echo("no remediation request")
    for r in rows:
        typer.echo(f"{r['id']}  {r['target']}  {r['finding']}  {r.get('runbook') or '-'}  {r['state']}  "
                   f"runs={r['runs']}  {_when(r.get('created'))}")
    return int(ExitStatus.OK)


@requests_app.command("show")
def show(ctx: typer.Context, rid: Annotated[str, typer.Argument(metavar="ID")], server: ServerOpt = None,
         config: ConfigOpt = None) -> int:
    """One request and its whole chain: alert, policy or approval, run, verification, notification."""
    status, answer = _Client(ctx, server, config).call("GET", f"/api/v1/requests/{rid}")
    if status != 200:
        return _fail(status, answer)
    typer.echo(f"{answer['id']}: {answer['state']} - {answer['reason']}")
    decided = f", decided by {answer['approved_by']}" if answer.get("approved_by") else ""
    typer.echo(f"  target {answer['target']}, finding {answer['finding']}, cure {answer.get('runbook') or '-'}, "
               f"runs {answer['runs']}{decided}")
    for event in answer.get("events", []):
        detail = event.get("detail") or {}
        text = detail.get("reason") or detail.get("text") or detail.get("note") or ""
        extra = {k: v for k, v in detail.items() if k in ("runbook", "run_id", "state", "incident", "level", "by")}
        typer.echo(f"  {_when(event['at'])}  {event['event']}  {text}"
                   + (f" {json.dumps(extra, ensure_ascii=False)}" if extra else ""))
    return int(ExitStatus.OK)


def _by(by: str | None) -> str:
    import getpass
    import socket

    return by or f"{getpass.getuser()}@{socket.gethostname()}"


@requests_app.command("approve")
def approve(ctx: typer.Context, rid: Annotated[str, typer.Argument(metavar="ID")],
            by: Annotated[str | None, typer.Option("--by", metavar="NAME",
                                                   help="Who approves (default: user@host).")] = None,
            server: ServerOpt = None, config: ConfigOpt = None) -> int:
    """Approve a request waiting for a person: its cure runs once its finding is checked bad again."""
    status, answer = _Client(ctx, server, config).call("POST", f"/api/v1/requests/{rid}/approve", {"by": _by(by)})
    if status != 200:
        return _fail(status, answer)
    typer.echo(answer["result"])
    return int(ExitStatus.OK)


@requests_app.command("deny")
def deny(ctx: typer.Context, rid: Annotated[str, typer.Argument(metavar="ID")],
         by: Annotated[str | None, typer.Option("--by", metavar="NAME",
                                                help="Who denies (default: user@host).")] = None,
         server: ServerOpt = None, config: ConfigOpt = None) -> int:
    """Deny a request: nothing runs for it."""
    status, answer = _Client(ctx, server, config).call("POST", f"/api/v1/requests/{rid}/deny", {"by": _by(by)})
    if status != 200:
        return _fail(status, answer)
    typer.echo(answer["result"])
    return int(ExitStatus.OK)
