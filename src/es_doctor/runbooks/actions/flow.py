"""Steps that orchestrate: ``wait_for``, ``notify``, ``shell``, ``fail``."""

from __future__ import annotations

import time
from typing import Any

from es_doctor.findings import words
from es_doctor.runbooks.actions.base import (
    ActionContext,
    ActionError,
    action,
    argv_words,
    need,
    run_program,
)
from es_doctor.secrets import resolve_secret


@action("wait_for", lambda i: f"wait until {words(i.get('check'))} is OK (up to {i.get('timeout', 60)} s)")
def wait_for(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    from es_doctor.checks.registry import load_all
    from es_doctor.findings import Status
    from es_doctor.runner import diagnose

    wanted = inputs.get("check")
    ids = [str(c) for c in (wanted if isinstance(wanted, list) else [need(inputs, "check")])]
    registry = load_all()
    unknown = [c for c in ids if c not in registry]
    if unknown:
        raise ActionError(f"unknown check(s): {', '.join(unknown)}")
    deadline = time.monotonic() + float(inputs.get("timeout", 60))
    while True:
        report = diagnose(ctx.target, ctx.target_name, ids)
        findings = {f.id: f for f in report.findings if f.id in ids}
        bad = {i: f"{f.status.value}: {f.summary}" for i, f in findings.items() if f.status is not Status.OK}
        if not bad:
            return {"ok": ids}
        if time.monotonic() > deadline:
            raise ActionError("; ".join(f"{i} {s}" for i, s in bad.items()))
        ctx.sleep(float(inputs.get("interval", 1.0)))


@action("notify", lambda i: f"notify: {i.get('message')}" + (" (webhook)" if i.get("webhook") else ""),
        retry_safe=lambda _i: False)
def notify(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    message = str(need(inputs, "message"))  # the step's line (→ name: notify: <message>) already shows it
    webhook = resolve_secret(inputs.get("webhook"))
    if webhook:
        answer = ctx.probes.plain_http().request(
            "POST", webhook, json_body={"text": message, "target": ctx.target_name}, timeout=10, max_body=64 * 1024)
        if answer.failure is not None:
            # the message names no URL: the webhook is a secret
            what = answer.failure.status_code or answer.failure.kind.value
            raise ActionError(f"webhook failed: {what}", retryable=answer.meta.get("sent") == "no")
        return {"message": message, "webhook_status": answer.unwrap().status_code}
    return {"message": message}


@action("shell", lambda i: f"run {argv_words(i.get('argv'))}", retry_safe=lambda i: bool(i.get("idempotent")))
def shell(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    """An argv in its own process group, no stdin, output read while it runs and capped (head and
    tail); killed with its group when the step is cancelled or times out."""
    argv = need(inputs, "argv", list)
    if not argv or not all(isinstance(a, (str, int, float)) for a in argv):
        raise ActionError("argv must be a non-empty list of strings (no shell string)")
    output = run_program([str(a) for a in argv], None, float(inputs.get("timeout", 300)), ctx, keep=64 * 1024)
    return {"output": output[-4000:]}


@action("fail", lambda i: f"fail on purpose: {i.get('message', 'test step')}")
def fail(inputs: dict[str, Any], _ctx: ActionContext) -> dict[str, Any]:
    raise ActionError(str(inputs.get("message", "this step fails on purpose")))
