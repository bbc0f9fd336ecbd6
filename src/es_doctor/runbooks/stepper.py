"""The stepper: one step of a run, with its timeout, its retries and Ctrl-C.

A step's action runs in a worker thread; a step that times out or is interrupted is stopped (its
cancel event set, the programs it started killed with their process group) and waited for. Ctrl-C
during a step raises :class:`StepInterrupted`, which says whether the step really stopped; while a
stopped step is recorded or a rollback runs, further Ctrl-C are deferred (:func:`ctrl_c_deferred`).

Hooks: each :class:`StepHook` in ``Stepper.hooks`` is called before a step's action runs (its inputs
rendered) and after it ends, with the result. This is where a before/after snapshot of what a step
touches belongs (``runbooks/snapshot.py``). A hook that raises is audited (``fix.hook-error``) and
said; the step goes on (a hook observes, it does not decide).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from es_doctor.runbooks.actions import REGISTRY, ActionContext, ActionError, Inputs, validate_inputs
from es_doctor.runbooks.audit import AuditLog, mask
from es_doctor.runbooks.model import Step
from es_doctor.runbooks.outcome import StepResult
from es_doctor.runbooks.templating import TemplateError, render

#: how long a cancelled step may take to stop (its programs get SIGTERM, then SIGKILL after 5 s)
STOP_GRACE_S = 15.0


class StepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a step: ``stopped`` says whether the step (and its programs) really stopped."""

    def __init__(self, stopped: bool) -> None:
        super().__init__()
        self.stopped = stopped
        self.step: str | None = None
        self.result: Any = None  #: the interrupted step's StepResult


class StepHook:
    """Called around every step the stepper runs (main, precondition and rollback phases). The base
    does nothing; a subclass overrides what it needs."""

    def before_step(self, step: Step, phase: str, inputs: dict[str, Any], ctx: ActionContext) -> None:
        """Before the action runs (after its inputs are rendered)."""

    def after_step(self, step: Step, phase: str, inputs: dict[str, Any], ctx: ActionContext,
                   result: StepResult) -> None:
        """After the action ended (ok or not), before the step is audited."""


@contextlib.contextmanager
def ctrl_c_deferred(say: Callable[[str], None], why: str) -> Iterator[None]:
    """Further Ctrl-C only say ``why`` while the interrupted step is stopped, the rollback runs and
    the audit is written: a second press never leaves a half-done rollback or a torn record."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda _signum, _frame: say(f"  Ctrl-C: {why}"))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class Stepper:
    """Runs single steps for one run: audits each, masks secrets in what it says."""

    def __init__(self, audit: AuditLog, say: Callable[[str], None], secrets: list[str],
                 hooks: list[StepHook] | None = None) -> None:
        self.audit, self.say, self.secrets = audit, say, secrets
        self.hooks: list[StepHook] = hooks if hooks is not None else []

    def _call_hooks(self, when: str, base: dict[str, Any], step: Step, *args: Any) -> None:
        for hook in self.hooks:
            try:
                getattr(hook, when)(step, *args)
            except Exception as exc:  # noqa: BLE001 - a hook observes; its failure is said, not fatal
                error = mask(f"{type(hook).__name__}.{when}: {type(exc).__name__}: {exc}", self.secrets)
                self.audit.write("fix.hook-error", **base, step=step.name, error=error)
                self.say(f"    ! {error}")

    def execute(self, step: Step, phase: str, context: dict[str, Any], ctx: ActionContext,
                base: dict[str, Any]) -> StepResult:
        spec = REGISTRY[step.action]
        started = time.monotonic()
        try:
            inputs = render(step.inputs, context)
            typed = validate_inputs(spec, inputs)
        except (TemplateError, ActionError) as exc:
            res = StepResult(step.name, phase, "failed",
                             error=f"template: {exc}" if isinstance(exc, TemplateError) else str(exc))
            self.audit.write("fix.step", **base, phase=phase, step=step.name, action=step.action, status="failed",
                             error=res.error)
            self.say(f"  ✗ {step.name}: {res.error}")
            return res
        self.say(f"  → {step.name}: {spec.describe(inputs)}")
        self.audit.write("fix.step-start", **base, phase=phase, step=step.name, action=step.action)
        self._call_hooks("before_step", base, step, phase, inputs, ctx)
        res = StepResult(step.name, phase, "failed")
        for attempt in range(1, step.retries + 2):
            res.attempts = attempt
            try:
                status, output, error, retryable, wait = self.attempt(spec.run, typed, ctx, step.timeout)
            except StepInterrupted as exc:
                res.status, res.error = ("interrupted" if exc.stopped else "running"), "interrupted (Ctrl-C)"
                res.duration_ms = round((time.monotonic() - started) * 1000, 1)
                self.audit.write("fix.step", **base, phase=phase, step=step.name, action=step.action, inputs=inputs,
                                 status=res.status, attempts=attempt, stopped=exc.stopped,
                                 error=res.error if exc.stopped else "interrupted; the step could not be stopped",
                                 duration_ms=res.duration_ms)
                exc.step, exc.result = step.name, res
                self._call_hooks("after_step", base, step, phase, inputs, ctx, res)
                raise
            res.status, res.output, res.error = status, output, error
            if status == "ok" or attempt > step.retries or status == "running":
                break
            if status == "timeout" and not spec.retry_safe(inputs):
                res.error += "; not retried: it may have taken effect (the action is not idempotent)"
                break
            if not retryable:
                break
            delay = max(step.delay, wait)  # the server's Retry-After, capped
            self.say(f"    attempt {attempt} failed ({error}); retrying in {delay:g}s")
            ctx.sleep(delay)
        res.duration_ms = round((time.monotonic() - started) * 1000, 1)
        self._call_hooks("after_step", base, step, phase, inputs, ctx, res)
        self.audit.write("fix.step", **base, phase=phase, step=step.name, action=step.action, inputs=inputs,
                         status=res.status, attempts=res.attempts, error=res.error, output=res.output,
                         duration_ms=res.duration_ms)
        mark = "✓" if res.status == "ok" else "✗"
        detail = f" ({res.error})" if res.error else ""
        self.say(mask(f"    {mark} {res.status} in {res.duration_ms / 1000:.1f}s{detail}", self.secrets))
        return res

    def attempt(self, fn: Callable[[Any, ActionContext], dict[str, Any]], inputs: Inputs,
                 ctx: ActionContext, timeout: float) -> tuple[str, dict[str, Any], str, bool, float]:
        """One try of an action in a worker thread: (status, output, error, retryable, the server's
        Retry-After in seconds). A step that
        times out or is interrupted is stopped (its cancel event set, its programs killed with their
        process group) and waited for before this returns; ``running`` when it could not be."""
        box: dict[str, Any] = {}
        done = threading.Event()  # not Thread.is_alive(): on 3.11 an interrupted join() makes it lie

        def target() -> None:
            from es_doctor.probes.http import cancellable

            try:
                with cancellable(ctx.cancel):  # its HTTP calls (http, notify, Qdrant) end when it is cancelled
                    box["output"] = fn(inputs, ctx)
            except ActionError as exc:
                box["error"], box["retryable"], box["retry_after"] = str(exc), exc.retryable, exc.retry_after
            except Exception as exc:  # noqa: BLE001 - an action bug is a failed step, never a traceback
                box["error"] = f"{type(exc).__name__}: {exc}"
            finally:
                done.set()

        worker = threading.Thread(target=target, name="runbook-step", daemon=True)
        worker.start()
        deadline = time.monotonic() + timeout
        try:
            while not done.wait(0.1):
                if time.monotonic() > deadline:
                    if not self.stop_step(ctx, done):
                        return "running", {}, f"timed out after {timeout:g}s and could not be stopped", False, 0.0
                    ctx.cancel.clear()
                    return "timeout", {}, f"timed out after {timeout:g}s (stopped)", True, 0.0
        except KeyboardInterrupt:
            with ctrl_c_deferred(self.say, "stopping the step…"):
                stopped = self.stop_step(ctx, done)
            raise StepInterrupted(stopped) from None
        if "error" in box:
            return ("failed", {}, str(mask(box["error"], self.secrets)), bool(box.get("retryable", True)),
                    float(box.get("retry_after") or 0.0))
        return "ok", dict(box.get("output") or {}), "", True, 0.0

    def stop_step(self, ctx: ActionContext, done: threading.Event) -> bool:
        """Cancel the running step and wait until it has stopped; the programs it started are killed
        with their process group. False if it would not stop. (A Ctrl-C while a timed-out step is
        being stopped turns the timeout into an interruption: see _attempt.)"""
        from es_doctor.tools import kill_group, live_groups

        ctx.cancel.set()
        end = time.monotonic() + STOP_GRACE_S
        while not done.is_set() and time.monotonic() < end:
            done.wait(0.1)
        for pgid in live_groups():  # a program its action did not stop (one step runs at a time)
            kill_group(pgid, grace=1.0)
        stopped = done.is_set() and not live_groups()
        if not stopped:
            self.say("  ✗ the step could not be stopped: it may still be running")
        return stopped
