"""The runbook engine: plan, confirm, act (timeouts, retries, on_failure), verify, roll back, audit.

A run is ``plan()`` then ``Engine.run(plan)``. Every event goes to the audit log with secrets masked.
One fix at a time per target (a lock file); Ctrl-C stops the running step, is audited as
``interrupted`` and offers the rollback.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from es_doctor.config import Target
from es_doctor.errors import ExitStatus, UnavailableError, UsageError
from es_doctor.files import private_dir
from es_doctor.runbooks.actions import REGISTRY, RUN_ENV, ActionContext, ActionError
from es_doctor.runbooks.audit import AuditLog, fix_lock, mask, target_lock
from es_doctor.runbooks.model import Runbook, Step
from es_doctor.runbooks.templating import TemplateError, evaluate_condition, render
from es_doctor.secrets import clean, secret_values

#: how long a cancelled step may take to stop (its programs get SIGTERM, then SIGKILL after 5 s)
STOP_GRACE_S = 15.0


class StepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a step: ``stopped`` says whether the step (and its programs) really stopped."""

    def __init__(self, stopped: bool) -> None:
        super().__init__()
        self.stopped = stopped
        self.step: str | None = None
        self.result: Any = None  #: the interrupted step's StepResult


def _processes_of_run(run_id: str) -> list[dict[str, Any]]:
    """Live processes started by run ``run_id`` (they carry it in ``ESDOCTOR_RUN_ID``)."""
    import psutil

    if not run_id:
        return []
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "name"]):
        try:
            if proc.environ().get(RUN_ENV) == run_id and proc.status() != psutil.STATUS_ZOMBIE:
                found.append({"pid": proc.pid,
                              "command": " ".join(proc.info.get("cmdline") or []) or str(proc.info.get("name"))})
        except (psutil.Error, OSError):
            continue
    return found


class RunOutcome(StrEnum):
    FIXED = "FIXED"
    DONE = "DONE"  #: a procedure (a runbook that cures no finding, e.g. a backup) ran and verified
    NOT_FIXED = "NOT FIXED"
    ROLLED_BACK = "FAILED, ROLLED BACK"
    FAILED = "FAILED"
    DECLINED = "DECLINED"
    INTERRUPTED = "INTERRUPTED"
    PLANNED = "PLANNED (dry run)"
    REFUSED = "REFUSED"  #: the target lacks what the runbook needs: nothing was run

    @property
    def exit_status(self) -> ExitStatus:
        if self in (RunOutcome.FIXED, RunOutcome.DONE, RunOutcome.PLANNED):
            return ExitStatus.OK
        if self is RunOutcome.INTERRUPTED:
            return ExitStatus.INTERRUPTED
        if self is RunOutcome.REFUSED:
            return ExitStatus.UNAVAILABLE
        return ExitStatus.WARNING


@dataclass
class PlannedStep:
    step: Step
    phase: str  #: "steps" or "rollback"
    description: str
    inputs: dict[str, Any] | None  #: None when they depend on earlier steps' outputs (resolved at run time)
    destructive: bool


@dataclass
class Plan:
    runbook: Runbook
    params: dict[str, Any]
    target_name: str
    steps: list[PlannedStep]
    rollback: list[PlannedStep]
    #: why the target cannot run this runbook (its ``requires:`` unmet); empty when it can
    missing: list[str] = field(default_factory=list)

    @property
    def destructive(self) -> bool:
        return bool(self.runbook.flags.destructive) or any(s.destructive for s in self.steps)


@dataclass
class StepResult:
    name: str
    phase: str
    status: str  #: ok, failed, skipped, timeout, interrupted, declined, running (could not be stopped)
    duration_ms: float = 0.0
    attempts: int = 0
    output: dict[str, Any] = field(default_factory=dict)
    error: str = ""


@dataclass
class FixResult:
    runbook: str
    outcome: RunOutcome
    run_id: str
    steps: list[StepResult] = field(default_factory=list)
    verify: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""


def coerce_params(runbook: Runbook, given: dict[str, str]) -> dict[str, Any]:
    """``--param k=v`` values typed by the runbook's declarations, defaults filled in."""
    unknown = sorted(set(given) - set(runbook.params))
    if unknown:
        raise UsageError(f"runbook {runbook.id} has no parameter {', '.join(unknown)} "
                         f"(known: {', '.join(runbook.params) or 'none'})")
    out: dict[str, Any] = {}
    for name, param in runbook.params.items():
        if name not in given:
            if param.required and param.default is None:
                raise UsageError(f"runbook {runbook.id} needs --param {name}=… ({param.description or param.type})")
            out[name] = param.default
            continue
        raw = given[name]
        try:
            if param.type == "int":
                out[name] = int(raw)
            elif param.type == "float":
                out[name] = float(raw)
            elif param.type == "bool":
                out[name] = _boolean(raw)
            else:
                out[name] = raw
        except ValueError:
            raise UsageError(f"--param {name}={raw!r}: expected {param.type}") from None
    return out


def _boolean(raw: str) -> bool:
    if raw.lower() not in {"true", "false", "1", "0", "yes", "no"}:
        raise ValueError(raw)
    return raw.lower() in {"true", "1", "yes"}


def template_context(target: Target, params: dict[str, Any], outputs: dict[str, Any],
                     finding: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"params": params, "target": target.model_dump(mode="json"), "steps": outputs, "finding": finding or {}}


def _is_destructive(step: Step, runbook: Runbook) -> bool:
    spec = REGISTRY.get(step.action)
    return bool(step.destructive or (spec is not None and spec.destructive))


def missing_requirements(runbook: Runbook, target: Target) -> list[str]:
    """Each of the runbook's ``requires:`` the target lacks, with the reason."""
    from urllib.parse import urlsplit

    from es_doctor.probes.ports import is_local_host

    out = []
    for need in runbook.requires:
        if need == "local":
            host = urlsplit(target.service.api_url).hostname or "localhost"
            local, why = is_local_host(host)
            if not local:
                out.append(f"needs the service on this host: {why}")
        elif need == "config-file":
            if not target.service.config_file:
                out.append("needs the service's config file on this host (service.config_file is not set)")
        elif need == "restart":
            docker, why = target.is_present("docker")
            if not docker and not target.service.restart_command:
                out.append(f"needs a way to restart the service: no Docker ({why}) and no service.restart_command")
        else:
            present, why = target.is_present(need)
            if not present:
                out.append(f"needs {need}: {why}")
    return out


def _plan_steps(steps: list[Step], phase: str, runbook: Runbook, context: dict[str, Any], known: list[str],
                target: Target | None = None, missing: list[str] | None = None) -> list[PlannedStep]:
    """The plan of ``steps``: descriptions with secrets masked (the plan is printed and audited)."""
    planned = []
    for step in steps:
        problem = ""
        try:
            inputs: dict[str, Any] | None = render(step.inputs, context)
        except TemplateError as exc:
            inputs = None  # needs an earlier step's output, or cannot be rendered at all
            problem = "" if "'steps'" in exc.message or "steps." in exc.message else exc.message
        spec = REGISTRY[step.action]
        description = (spec.describe(inputs) if inputs is not None else
                       f"{step.action} (template error, the step will fail: {problem})" if problem else
                       f"{step.action} (inputs from earlier steps)")
        if spec.preview is not None and inputs is not None and target is not None and not missing:
            description += spec.preview(inputs, target)
        planned.append(PlannedStep(step, phase, clean(description, known), inputs, _is_destructive(step, runbook)))
    return planned


def plan(runbook: Runbook, target: Target, target_name: str, params: dict[str, str] | None = None) -> Plan:
    typed = coerce_params(runbook, params or {})
    context = template_context(target, typed, {})
    known = secret_values(target)
    missing = missing_requirements(runbook, target)
    return Plan(runbook, typed, target_name,
                _plan_steps(list(runbook.steps), "steps", runbook, context, known, target, missing),
                _plan_steps(list(runbook.rollback), "rollback", runbook, context, known), missing)


class Engine:
    def __init__(self, target: Target, target_name: str, audit: AuditLog, state_dir: Path, *,
                 confirm: Callable[[str], bool], say: Callable[[str], None],
                 verify_timeout: float = 90.0, backup_root: Path | None = None) -> None:
        self.target, self.target_name = target, target_name
        self.backup_root = backup_root
        self.audit, self.state_dir = audit, state_dir.expanduser()
        self.confirm = confirm
        self.verify_timeout = verify_timeout
        self.secrets = secret_values(target)
        self.say: Callable[[str], None] = lambda text: say(clean(str(text), self.secrets))
        self._lock_info: dict[str, Any] = {}

    # ------------------------------------------------------------------ public
    def run(self, the_plan: Plan, *, yes: bool = False, dry_run: bool = False) -> FixResult:
        rb = the_plan.runbook
        run_id = uuid.uuid4().hex[:12]
        base = {"run_id": run_id, "target": self.target_name, "runbook": rb.id}
        if the_plan.missing:  # refused up front: no lock, no step, nothing changed
            message = f"refused: target {self.target_name} " + "; ".join(the_plan.missing) + \
                (" (dry run)" if dry_run else "") + ": nothing was changed"
            self.audit.write("fix.refused", **base, missing=the_plan.missing, dry_run=dry_run)
            return FixResult(rb.id, RunOutcome.REFUSED, run_id, message=message)
        self._preflight_writable(rb)
        if dry_run:
            self.audit.write("fix.dry-run", **base, params=the_plan.params,
                             plan=[{"step": s.step.name, "action": s.step.action, "inputs": s.inputs}
                                   for s in the_plan.steps])
            return FixResult(rb.id, RunOutcome.PLANNED, run_id, message="dry run: nothing was changed")
        try:
            with fix_lock(self.state_dir, self.target_name, rb.id, run_id,
                          on_dead=lambda dead: self._report_dead_run(dead, base)), \
                    target_lock(self.target, rb.id, run_id, self.say) as held:
                self._lock_info = held  # audited with fix.start
                previous = os.environ.get(RUN_ENV)
                os.environ[RUN_ENV] = run_id  # inherited by the programs steps run: a dead run's are found by it
                try:
                    return self._run_locked(the_plan, base, run_id, yes)
                finally:
                    if previous is None:
                        os.environ.pop(RUN_ENV, None)
                    else:
                        os.environ[RUN_ENV] = previous
        except OSError as exc:  # the disk filled up or turned read-only during the run: exit 73
            from es_doctor.statedir import cant_write

            refused = cant_write(exc, f"{self.state_dir} or {self.audit.path}")
            if refused is None:
                raise
            raise refused from None

    def _report_dead_run(self, dead: dict[str, Any], base: dict[str, Any]) -> None:
        """A run that held the lock and died without releasing it (SIGKILL, a crash): say what it was
        doing, from its lock record and the audit log, so the operator knows what may be half-done."""
        records = self.audit.run_records(str(dead.get("run_id") or ""))
        starts = [i for i, r in enumerate(records) if r.get("event") == "fix.step-start"]
        done = [r["step"] for r in records if r.get("event") == "fix.step" and r.get("status") == "ok"]
        last = records[starts[-1]] if starts else None
        text = (f"a previous fix died without finishing: runbook {dead.get('runbook', '?')} by "
                f"{dead.get('user', '?')}@{dead.get('host', '?')} (pid {dead.get('pid', '?')}, run "
                f"{dead.get('run_id') or '?'}) started {dead.get('since', '?')}")
        half = None
        if last is not None:
            end = next((r for r in records[starts[-1] + 1:] if r.get("event") == "fix.step"
                        and (r.get("phase"), r.get("step")) == (last.get("phase"), last.get("step"))), None)
            state = f"ended {end.get('status')}" if end else "never finished: it may be half-done"
            if end is None:
                half = last.get("step")
            text += f"; its last step {last.get('step')} ({last.get('action')}) started {last.get('time')}, {state}"
        elif records:
            text += "; it ran no step"
        else:
            text += "; the audit log holds none of its records"
        if done:
            text += f"; steps it completed: {', '.join(done)}"
        running = _processes_of_run(str(dead.get("run_id") or ""))
        if running:
            text += "; programs it started are still running: " + ", ".join(
                f"pid {p['pid']} ({p['command'][:100]})" for p in running)
        self.say(f"WARNING: {text}. Check the target before going on (es-doctor diagnose).")
        self.audit.write("fix.previous-run-died", **base, previous=dead, last_step=last.get("step") if last else None,
                         half_done=half, completed=done, still_running=running)
        if running:
            raise UnavailableError(f"a step of the dead run {dead.get('run_id')} is still running ("
                                   + ", ".join(f"pid {p['pid']}" for p in running)
                                   + "): wait for it to end or stop it, then run the fix again")

    # ------------------------------------------------------------------ internals
    def _preflight_writable(self, rb: Runbook) -> None:
        """Exit 73 before any change when the state dir, the audit log's or the backups' directory
        cannot be written (a full or read-only file system): a run must be able to leave its record."""
        from es_doctor.statedir import ensure_writable_dir

        ensure_writable_dir(self.state_dir, "state directory")
        ensure_writable_dir(self.audit.path.parent, "audit log directory")
        if self.backup_root is not None and any(s.action == "backup.create" for s in rb.steps):
            ensure_writable_dir(self.backup_root, "backup directory")

    def _run_locked(self, the_plan: Plan, base: dict[str, Any], run_id: str, yes: bool) -> FixResult:
        work_dir = private_dir(self.state_dir / "runs" / run_id)  # dumps and config copies: 0700
        ctx = ActionContext(self.target, self.target_name, work_dir, say=self.say, backup_root=self.backup_root)
        try:
            return self._run_with(ctx, the_plan, base, run_id, yes)
        finally:
            ctx.probes.close()  # the run's clients (an embedded Qdrant holds its storage lock until closed)

    def _run_with(self, ctx: ActionContext, the_plan: Plan, base: dict[str, Any], run_id: str,
                  yes: bool) -> FixResult:
        rb = the_plan.runbook
        result = FixResult(rb.id, RunOutcome.FIXED, run_id)
        self.audit.write("fix.start", **base, params=the_plan.params, destructive=the_plan.destructive,
                         lock=self._lock_info)
        started = time.monotonic()
        if rb.flags.destructive and not yes and not self.confirm(
                f"{rb.id} is destructive ({len(the_plan.steps)} steps, shown above). Proceed?"):
            result.outcome, result.message = RunOutcome.DECLINED, "declined: nothing was changed"
            self.audit.write("fix.end", **base, outcome=result.outcome.value, duration_ms=0)
            return result
        outputs: dict[str, Any] = {}
        preconditions = list(rb.preconditions)
        if rb.flags.needs_maintenance:  # the flag is enforced, not only shown
            preconditions.insert(0, Step(name="writes-stopped", action="backup.require-freeze"))
        for step in preconditions:  # read-only checks: a failing one stops the run before any change
            res = self._execute(step, "preconditions", template_context(self.target, the_plan.params, outputs),
                                ctx, base)
            result.steps.append(res)
            if res.status != "ok":
                result.outcome, result.message = RunOutcome.FAILED, f"precondition {step.name} failed: nothing changed"
                self.audit.write("fix.end", **base, outcome=result.outcome.value, message=result.message,
                                 duration_ms=round((time.monotonic() - started) * 1000, 1))
                return result
            outputs[step.name] = res.output
        try:
            failed_step = self._run_steps(the_plan, ctx, base, outputs, result,
                                          confirmed_all=bool(rb.flags.destructive) or yes)
        except KeyboardInterrupt as exc:
            with self._ctrl_c_deferred("recording the interruption"):
                ctx.cancel.set()
                stopped = getattr(exc, "stopped", True)
                during = getattr(exc, "step", None)
                if isinstance(exc, StepInterrupted) and exc.result is not None:
                    result.steps.append(exc.result)
                self.audit.write("fix.interrupted", **base, step=during, stopped=stopped,
                                 completed=[s.name for s in result.steps if s.status == "ok"])
            result.outcome = RunOutcome.INTERRUPTED
            result.message = f"interrupted during step {during}" if during else "interrupted between steps"
            if not stopped:  # a rollback now would race the step still running
                result.message += ("; the step could not be stopped and may still be running: "
                                   "the rollback was NOT started (check the target, then run it)")
            elif not rb.rollback:
                result.message += "; this runbook has no rollback steps: its completed steps stay done"
            elif yes or self._ask("Interrupted. Run the rollback steps now?"):
                with self._ctrl_c_deferred("the rollback is running; it will finish (each step has a timeout)"):
                    ctx.cancel.clear()
                    try:
                        self._rollback(the_plan, ctx, base, outputs, result)
                        failed = [s.name for s in result.steps
                                  if s.phase == "rollback" and s.status not in ("ok", "skipped")]
                        result.message += (f"; the rollback is incomplete ({', '.join(failed)} failed)" if failed
                                           else "; rolled back")
                    except KeyboardInterrupt:  # only where Ctrl-C cannot be deferred (not the main thread)
                        result.message += "; the rollback was interrupted too"
            else:
                result.message += "; not rolled back (resume with: es-doctor fix " + rb.id + ")"
            with self._ctrl_c_deferred("recording the interruption"):
                self.audit.write("fix.end", **base, outcome=result.outcome.value, message=result.message,
                                 duration_ms=round((time.monotonic() - started) * 1000, 1))
            return result
        if failed_step is not None:
            failed_name, how = failed_step
            result.message = f"step {failed_name} {'declined' if how == 'declined' else 'failed'}"
            if result.steps and result.steps[-1].status == "running":
                result.message += "; it could not be stopped and may still be running: no rollback was started"
            if how == "rollback" and the_plan.runbook.rollback:
                self._rollback(the_plan, ctx, base, outputs, result)
                undone = [s for s in result.steps if s.phase == "rollback" and s.status not in ("ok", "skipped")]
                result.outcome = RunOutcome.FAILED if undone else RunOutcome.ROLLED_BACK
                if undone:
                    result.message += f"; the rollback is incomplete ({', '.join(s.name for s in undone)} failed)"
            elif how == "rollback":
                self._rollback(the_plan, ctx, base, outputs, result)  # says there is none
                result.outcome = RunOutcome.FAILED
            elif how == "declined":
                result.outcome = RunOutcome.DECLINED
            else:
                result.outcome = RunOutcome.FAILED
        else:
            fixed, findings = self._verify(rb)
            result.verify = findings
            result.outcome = (RunOutcome.FIXED if rb.cures else RunOutcome.DONE) if fixed else RunOutcome.NOT_FIXED
            self.audit.write("fix.verify", **base, fixed=fixed, findings=findings)
        self.audit.write("fix.end", **base, outcome=result.outcome.value, message=result.message,
                         duration_ms=round((time.monotonic() - started) * 1000, 1))
        return result

    def _ask(self, question: str) -> bool:
        try:
            return self.confirm(question)
        except (KeyboardInterrupt, EOFError):
            return False

    def _run_steps(self, the_plan: Plan, ctx: ActionContext, base: dict[str, Any], outputs: dict[str, Any],
                   result: FixResult, confirmed_all: bool) -> tuple[str, str] | None:
        """Run the main steps; returns (failed step, "rollback"|"abort"|"declined") or None when all passed."""
        steps = list(the_plan.runbook.steps)
        index, jumps = 0, 0
        while index < len(steps):
            step = steps[index]
            planned = the_plan.steps[index]
            context = template_context(self.target, the_plan.params, outputs)
            if step.when:
                try:
                    go = evaluate_condition(step.when, context)
                except TemplateError as exc:
                    go, ctx_error = False, str(exc)
                    self.say(f"  ✗ {step.name}: condition error: {ctx_error}")
                    result.steps.append(StepResult(step.name, "steps", "failed", error=ctx_error))
                    return step.name, "abort"
                if not go:
                    result.steps.append(StepResult(step.name, "steps", "skipped", error="condition is false"))
                    self.audit.write("fix.step", **base, step=step.name, status="skipped")
                    index += 1
                    continue
            if planned.destructive and not confirmed_all and not self.confirm(
                    f"Step {step.name} is destructive: {planned.description}. Run it?"):
                result.steps.append(StepResult(step.name, "steps", "declined"))
                self.audit.write("fix.step", **base, step=step.name, status="declined")
                return step.name, "declined"
            step_result = self._execute(step, "steps", context, ctx, base)
            result.steps.append(step_result)
            if step_result.status == "ok":
                outputs[step.name] = step_result.output
                index += 1
                continue
            if step_result.status == "running":  # never roll back under a step still running
                return step.name, "abort"
            policy = step.on_failure
            if policy == "continue":
                index += 1
            elif policy.startswith("step:") and jumps < 10:
                jumps += 1
                index = next(i for i, s in enumerate(steps) if s.name == policy[5:])
            elif policy == "abort":
                return step.name, "abort"
            else:
                return step.name, "rollback"
        return None

    def _execute(self, step: Step, phase: str, context: dict[str, Any], ctx: ActionContext,
                 base: dict[str, Any]) -> StepResult:
        spec = REGISTRY[step.action]
        started = time.monotonic()
        try:
            inputs = render(step.inputs, context)
        except TemplateError as exc:
            res = StepResult(step.name, phase, "failed", error=f"template: {exc}")
            self.audit.write("fix.step", **base, phase=phase, step=step.name, action=step.action, status="failed",
                             error=res.error)
            self.say(f"  ✗ {step.name}: {res.error}")
            return res
        self.say(f"  → {step.name}: {spec.describe(inputs)}")
        self.audit.write("fix.step-start", **base, phase=phase, step=step.name, action=step.action)
        res = StepResult(step.name, phase, "failed")
        for attempt in range(1, step.retries + 2):
            res.attempts = attempt
            try:
                status, output, error, retryable, wait = self._attempt(spec.run, inputs, ctx, step.timeout)
            except StepInterrupted as exc:
                res.status, res.error = ("interrupted" if exc.stopped else "running"), "interrupted (Ctrl-C)"
                res.duration_ms = round((time.monotonic() - started) * 1000, 1)
                self.audit.write("fix.step", **base, phase=phase, step=step.name, action=step.action, inputs=inputs,
                                 status=res.status, attempts=attempt, stopped=exc.stopped,
                                 error=res.error if exc.stopped else "interrupted; the step could not be stopped",
                                 duration_ms=res.duration_ms)
                exc.step, exc.result = step.name, res
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
        self.audit.write("fix.step", **base, phase=phase, step=step.name, action=step.action, inputs=inputs,
                         status=res.status, attempts=res.attempts, error=res.error, output=res.output,
                         duration_ms=res.duration_ms)
        mark = "✓" if res.status == "ok" else "✗"
        detail = f" ({res.error})" if res.error else ""
        self.say(mask(f"    {mark} {res.status} in {res.duration_ms / 1000:.1f}s{detail}", self.secrets))
        return res

    def _attempt(self, fn: Callable[[dict[str, Any], ActionContext], dict[str, Any]], inputs: dict[str, Any],
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
                    if not self._stop_step(ctx, done):
                        return "running", {}, f"timed out after {timeout:g}s and could not be stopped", False, 0.0
                    ctx.cancel.clear()
                    return "timeout", {}, f"timed out after {timeout:g}s (stopped)", True, 0.0
        except KeyboardInterrupt:
            with self._ctrl_c_deferred("stopping the step…"):
                stopped = self._stop_step(ctx, done)
            raise StepInterrupted(stopped) from None
        if "error" in box:
            return ("failed", {}, str(mask(box["error"], self.secrets)), bool(box.get("retryable", True)),
                    float(box.get("retry_after") or 0.0))
        return "ok", dict(box.get("output") or {}), "", True, 0.0

    @contextlib.contextmanager
    def _ctrl_c_deferred(self, why: str) -> Iterator[None]:
        """Further Ctrl-C only say ``why`` while the interrupted step is stopped, the rollback runs and
        the audit is written: a second press never leaves a half-done rollback or a torn record."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, lambda _signum, _frame: self.say(f"  Ctrl-C: {why}"))
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _stop_step(self, ctx: ActionContext, done: threading.Event) -> bool:
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

    def _rollback(self, the_plan: Plan, ctx: ActionContext, base: dict[str, Any], outputs: dict[str, Any],
                  result: FixResult) -> None:
        if not the_plan.runbook.rollback:
            self.say("  (this runbook declares no rollback steps)")
            return
        self.say("rolling back:")
        self.audit.write("fix.rollback", **base)
        for step in the_plan.runbook.rollback:
            context = template_context(self.target, the_plan.params, outputs)
            if step.when:
                try:
                    if not evaluate_condition(step.when, context):
                        continue
                except TemplateError:
                    continue
            res = self._execute(step, "rollback", context, ctx, base)
            result.steps.append(res)
            if res.status == "ok":
                outputs[step.name] = res.output

    def _verify(self, rb: Runbook) -> tuple[bool, list[dict[str, Any]]]:
        if not rb.verify:
            return True, []
        from es_doctor.checks.registry import load_all
        from es_doctor.findings import Status
        from es_doctor.runner import diagnose

        registry = load_all()
        ids = [c for c in rb.verify if c in registry]
        self.say(f"verifying: {', '.join(ids)}")
        deadline = time.monotonic() + self.verify_timeout
        while True:
            report = diagnose(self.target, self.target_name, ids)
            findings = [f for f in report.findings if f.id in ids]
            if all(f.status is Status.OK for f in findings) or time.monotonic() > deadline:
                break
            if all(f.status is Status.OK or not registry[f.id].heals for f in findings):
                break  # what is left is missing data: waiting will not change it
            time.sleep(2.0)
        summary = [{"id": f.id, "status": f.status.value, "summary": f.summary, "next": f.fix_command(),
                    "escalate": f.escalate} for f in findings]
        for f in findings:
            self.say(f"  {f.status.symbol} {f.summary} ({f.id})")
        return all(f.status is Status.OK for f in findings), summary
