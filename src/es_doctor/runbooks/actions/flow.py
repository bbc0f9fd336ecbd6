"""Steps that orchestrate: ``wait_for``, ``notify``, ``shell``, ``fail``."""

from __future__ import annotations

import time
from typing import Annotated, Any

from pydantic import Field, WithJsonSchema, field_validator

from es_doctor.findings import words
from es_doctor.runbooks.actions.base import (
    ActionContext,
    ActionError,
    Inputs,
    action,
    argv_words,
    run_program,
)
from es_doctor.secrets import resolve_secret

#: one check id or a list of them, as the schema shows it (the model keeps a list)
_ONE_OR_MANY = WithJsonSchema({"anyOf": [{"type": "string"},
                                         {"type": "array", "items": {"type": "string"}, "minItems": 1}]})


class WaitForInputs(Inputs):
    check: Annotated[list[str], _ONE_OR_MANY] = Field(
        min_length=1, description="a check id, or a list of them (``runbooks validate`` checks each against "
        "the registry)")
    timeout: float = Field(default=60.0, gt=0, description="seconds to wait for every check to be OK")
    interval: float = Field(default=1.0, gt=0, description="seconds between two rounds")

    @field_validator("check", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class NotifyInputs(Inputs):
    message: str = Field(description="what to say (printed, audited, and sent to the webhook)")
    webhook: str | None = Field(default=None, description="a webhook URL, or a secret reference (env:NAME, "
                                "file:PATH) that holds one")


class ShellInputs(Inputs):
    argv: list[str | int | float] = Field(min_length=1, description="the program and its arguments (no shell "
                                          "string: an argv)")
    timeout: float = Field(default=300.0, gt=0, description="seconds before the program is killed")
    idempotent: bool = Field(default=False, description="may be run again after a timeout")


class FailInputs(Inputs):
    message: str = Field(default="this step fails on purpose", description="the failure's message")


@action("wait_for", lambda i: f"wait until {words(i.get('check'))} is OK (up to {i.get('timeout', 60)} s)",
        WaitForInputs)
def wait_for(inputs: WaitForInputs, ctx: ActionContext) -> dict[str, Any]:
    from es_doctor.checks.registry import load_all
    from es_doctor.findings import Status
    from es_doctor.runner import diagnose

    ids = inputs.check
    registry = load_all()
    unknown = [c for c in ids if c not in registry]
    if unknown:
        raise ActionError(f"unknown check(s): {', '.join(unknown)}")
    deadline = time.monotonic() + inputs.timeout
    while True:
        report = diagnose(ctx.target, ctx.target_name, ids)
        findings = {f.id: f for f in report.findings if f.id in ids}
        bad = {i: f"{f.status.value}: {f.summary}" for i, f in findings.items() if f.status is not Status.OK}
        if not bad:
            return {"ok": ids}
        if time.monotonic() > deadline:
            raise ActionError("; ".join(f"{i} {s}" for i, s in bad.items()))
        ctx.sleep(inputs.interval)


@action("notify", lambda i: f"notify: {i.get('message')}" + (" (webhook)" if i.get("webhook") else ""),
        NotifyInputs, retry_safe=lambda _i: False)
def notify(inputs: NotifyInputs, ctx: ActionContext) -> dict[str, Any]:
    message = inputs.message  # the step's line (→ name: notify: <message>) already shows it
    webhook = resolve_secret(inputs.webhook)
    if webhook:
        answer = ctx.probes.plain_http().request(
            "POST", webhook, json_body={"text": message, "target": ctx.target_name}, timeout=10, max_body=64 * 1024)
        if answer.failure is not None:
            # the message names no URL: the webhook is a secret
            what = answer.failure.status_code or answer.failure.kind.value
            raise ActionError(f"webhook failed: {what}", retryable=answer.meta.get("sent") == "no")
        return {"message": message, "webhook_status": answer.unwrap().status_code}
    return {"message": message}


@action("shell", lambda i: f"run {argv_words(i.get('argv'))}", ShellInputs,
        retry_safe=lambda i: bool(i.get("idempotent")))
def shell(inputs: ShellInputs, ctx: ActionContext) -> dict[str, Any]:
    """An argv in its own process group, no stdin, output read while it runs and capped (head and
    tail); killed with its group when the step is cancelled or times out."""
    output = run_program([str(a) for a in inputs.argv], None, inputs.timeout, ctx, keep=64 * 1024)
    return {"output": output[-4000:]}


@action("fail", lambda i: f"fail on purpose: {i.get('message', 'test step')}", FailInputs)
def fail(inputs: FailInputs, _ctx: ActionContext) -> dict[str, Any]:
    raise ActionError(inputs.message)
