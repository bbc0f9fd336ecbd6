"""The runbook engine: plan, confirm, act (timeouts, retries, on_failure), verify, roll back, audit.

A run is ``plan()`` then ``Engine.run(plan)``. Every event goes to the audit log with secrets masked.
One fix at a time per target (a lock file); Ctrl-C stops the running step, is audited as
``interrupted`` and offers the rollback.

The engine is the run's flow; its parts live beside it: ``plan`` (parameters, requirements, the
printed plan), ``outcome`` (RunOutcome, StepResult, FixResult), ``stepper`` (one step: timeout,
retries, Ctrl-C, step hooks) and ``recovery`` (a dead run's report). The names callers use
(``Engine``, ``plan``, ``Plan``, ``RunOutcome``, ``FixResult``…) are importable from here.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from es_doctor.config import Target
from es_doctor.files import private_dir
from es_doctor.findings import Finding, Status
from es_doctor.runbooks import snapshot
from es_doctor.runbooks.actions import RUN_ENV, ActionContext
from es_doctor.runbooks.audit import AuditLog, fix_lock, target_lock
from es_doctor.runbooks.model import Runbook
from es_doctor.runbooks.outcome import FixResult, RunOutcome, StepResult
from es_doctor.runbooks.plan import (
    Plan,
    PlannedStep,
    UnverifiableRunbookError,
    coerce_params,
    implicit_preconditions,
    missing_requirements,
    plan,
    template_context,
    verify_ids,
)
from es_doctor.runbooks.recovery import report_dead_run
from es_doctor.runbooks.stepper import StepHook, StepInterrupted, Stepper, ctrl_c_deferred
from es_doctor.runbooks.templating import TemplateError, evaluate_condition
from es_doctor.secrets import clean, secret_values

__all__ = ["Engine", "FixResult", "Plan", "PlannedStep", "RunOutcome", "StepHook", "StepInterrupted",
           "StepResult", "UnverifiableRunbookError", "coerce_params", "missing_requirements", "plan",
           "template_context", "verify_ids"]


#: how long the snapshot after a run waits for a part that does not answer yet (a component the
#: rollback has just started again)
AFTER_PATIENCE_S = 30.0


class Engine:
    def __init__(self, target: Target, target_name: str, audit: AuditLog, state_dir: Path, *,
                 confirm: Callable[[str], bool], say: Callable[[str], None],
                 verify_timeout: float = 90.0, backup_root: Path | None = None,
                 printed_config: str | None = None) -> None:
        self.target, self.target_name = target, target_name
        #: the config file the commands it prints name (None: the default one, see es_doctor.prescribe)
        self.printed_config = printed_config
        self.backup_root = backup_root
        self.audit, self.state_dir = audit, state_dir.expanduser()
        self.confirm = confirm
        self.verify_timeout = verify_timeout
        self.secrets = secret_values(target)
        self.say: Callable[[str], None] = lambda text: say(clean(str(text), self.secrets))
        self._lock_info: dict[str, Any] = {}
        #: step hooks (e.g. before/after snapshots): called around every step this engine runs
        self.hooks: list[StepHook] = []
        self.stepper = Stepper(audit, self.say, self.secrets, self.hooks)

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
                          on_dead=lambda dead: report_dead_run(dead, base, self.audit, self.say)), \
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
        for step in implicit_preconditions(rb):  # read-only checks: a failing one stops the run before any change
            res = self.stepper.execute(step, "preconditions", template_context(self.target, the_plan.params, outputs),
                                ctx, base)
            result.steps.append(res)
            if res.status != "ok":
                result.outcome, result.message = RunOutcome.FAILED, f"precondition {step.name} failed: nothing changed"
                self.audit.write("fix.end", **base, outcome=result.outcome.value, message=result.message,
                                 duration_ms=round((time.monotonic() - started) * 1000, 1))
                return result
            outputs[step.name] = res.output
        before = self._before_snapshots(the_plan, ctx, base)
        try:
            failed_step = self._run_steps(the_plan, ctx, base, outputs, result,
                                          confirmed_all=bool(rb.flags.destructive) or yes)
        except KeyboardInterrupt as exc:
            with ctrl_c_deferred(self.say, "recording the interruption"):
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
                with ctrl_c_deferred(self.say, "the rollback is running; it will finish (each step has a timeout)"):
                    ctx.cancel.clear()
                    try:
                        self._rollback(the_plan, ctx, base, outputs, result)
                        failed = [s.name for s in result.steps
                                  if s.phase == "rollback" and s.status not in ("ok", "skipped")]
                        result.message += (f"; the rollback is incomplete ({', '.join(failed)} failed)" if failed
                                           else "; rolled back")
                        if not failed:
                            result.message += "; " + self._compare(the_plan, ctx, base, before, True)[1]
                    except KeyboardInterrupt:  # only where Ctrl-C cannot be deferred (not the main thread)
                        result.message += "; the rollback was interrupted too"
            else:
                from es_doctor.cures import es_doctor

                resume = es_doctor("fix", rb.id, target=self.target_name, config=self.printed_config)
                result.message += f"; not rolled back (resume with: {resume})"
            with ctrl_c_deferred(self.say, "recording the interruption"):
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
                else:  # ROLLED BACK is a claim: the snapshot before the run and now must be identical
                    same, words = self._compare(the_plan, ctx, base, before, True)
                    result.message += "; " + words
                    if not same:
                        result.outcome = RunOutcome.FAILED
            elif how == "rollback":
                self._rollback(the_plan, ctx, base, outputs, result)  # says there is none
                result.outcome = RunOutcome.FAILED
            elif how == "declined":
                result.outcome = RunOutcome.DECLINED
            else:
                result.outcome = RunOutcome.FAILED
        else:
            fixed, findings = self._verify(rb, list(dict.fromkeys([*the_plan.verify, *the_plan.also_verify])))
            result.verify = findings
            result.outcome = (RunOutcome.FIXED if rb.cures else RunOutcome.DONE) if fixed else RunOutcome.NOT_FIXED
            self.audit.write("fix.verify", **base, fixed=fixed, findings=findings)
            if not fixed:  # NOT FIXED says which of the run's changes stay
                result.message = "; ".join(m for m in (result.message,
                                                       self._compare(the_plan, ctx, base, before, False)[1]) if m)
        self.audit.write("fix.end", **base, outcome=result.outcome.value, message=result.message,
                         duration_ms=round((time.monotonic() - started) * 1000, 1))
        return result

    def _before_snapshots(self, the_plan: Plan, ctx: ActionContext, base: dict[str, Any]) -> _BeforeSnapshot:
        """The snapshot "before" the run, read part by part just before the first step that changes the part
        (see :mod:`es_doctor.runbooks.snapshot`): a hook on every step of this run, main and rollback."""
        self.hooks[:] = [h for h in self.hooks if not isinstance(h, _BeforeSnapshot)]  # a previous run's
        hook = _BeforeSnapshot(self, the_plan, base)
        self.hooks.append(hook)
        return hook

    def _compare(self, the_plan: Plan, ctx: ActionContext, base: dict[str, Any], before: _BeforeSnapshot,
                 rolled_back: bool) -> tuple[bool, str]:
        if not before.parts:
            return True, "nothing to compare (no step changed anything es-doctor reads)"
        steps = [(s.step.action, s.inputs) for s in the_plan.steps]
        after = snapshot.take(steps, self.target, ctx.probes, ctx.work_dir, patience_s=AFTER_PATIENCE_S,
                              before=before.snap, parts=set(before.parts))
        self.audit.write("fix.snapshot", **base, when="after rollback" if rolled_back else "after run",
                         **after.as_record())
        same, words = snapshot.verdict(before.snap, after, rolled_back=rolled_back)
        self.audit.write("fix.compare", **base, identical=same, message=words)
        self.say(f"  {'✓' if same else '✗'} {words}")
        return same, words

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
                    reason = f"skipped: its condition is false (when: {step.when})"
                    result.steps.append(StepResult(step.name, "steps", "skipped", error=reason))
                    self.audit.write("fix.step", **base, phase="steps", step=step.name, action=step.action,
                                     status="skipped", reason=reason)
                    index += 1
                    continue
            if planned.destructive and not confirmed_all and not self.confirm(
                    f"Step {step.name} is destructive: {planned.description}. Run it?"):
                result.steps.append(StepResult(step.name, "steps", "declined"))
                self.audit.write("fix.step", **base, step=step.name, status="declined")
                return step.name, "declined"
            step_result = self.stepper.execute(step, "steps", context, ctx, base)
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

    def _rollback(self, the_plan: Plan, ctx: ActionContext, base: dict[str, Any], outputs: dict[str, Any],
                  result: FixResult) -> None:
        if not the_plan.runbook.rollback:
            self.say("  (this runbook declares no rollback steps)")
            return
        self.say("rolling back:")
        self.audit.write("fix.rollback", **base)
        for step in the_plan.runbook.rollback:
            context = template_context(self.target, the_plan.params, outputs)
            if step.when:  # a skip is recorded with its reason; a condition that cannot be evaluated fails
                try:
                    go = evaluate_condition(step.when, context)
                except TemplateError as exc:
                    error = f"condition error: {exc.message}"
                    self.say(f"  ✗ {step.name}: {error}")
                    self.audit.write("fix.step", **base, phase="rollback", step=step.name, action=step.action,
                                     status="failed", error=error, when=step.when)
                    result.steps.append(StepResult(step.name, "rollback", "failed", error=error))
                    continue
                if not go:
                    reason = f"skipped: its condition is false (when: {step.when})"
                    self.say(f"  - {step.name}: {reason}")
                    self.audit.write("fix.step", **base, phase="rollback", step=step.name, action=step.action,
                                     status="skipped", reason=reason)
                    result.steps.append(StepResult(step.name, "rollback", "skipped", error=reason))
                    continue
            res = self.stepper.execute(step, "rollback", context, ctx, base)
            result.steps.append(res)
            if res.status == "ok":
                outputs[step.name] = res.output

    def _verify(self, rb: Runbook, ids: list[str]) -> tuple[bool, list[dict[str, Any]]]:
        """Run the verifying checks until they are OK (or the time is up). True only when every one of
        ``ids`` ran and is OK; a runbook that cures something and has no check is never verified."""
        if not ids:
            return not rb.cures, []
        from es_doctor.checks.registry import load_all
        from es_doctor.runner import diagnose

        registry = load_all()
        unknown = [c for c in ids if c not in registry]
        if unknown:  # plan() refuses these; a plan built otherwise proves nothing with them
            self.say(f"cannot verify: no check {', '.join(unknown)}")
            return False, [{"id": c, "status": "UNKNOWN", "summary": "no such check", "next": None,
                            "escalate": None} for c in unknown]
        self.say(f"verifying: {', '.join(ids)}")
        deadline = time.monotonic() + self.verify_timeout
        cured_at = time.time()  # the steps have ended: what the service did before is not their result
        while True:
            report = diagnose(self.target, self.target_name, ids, scrapes_dir=self.state_dir / "scrapes",
                              config=self.printed_config, window_after=cured_at)
            findings = [f for f in report.findings if f.id in ids]
            if all(verified(f) for f in findings) or time.monotonic() > deadline:
                break
            if all(verified(f) or not registry[f.id].heals for f in findings):
                break  # what is left is missing data: waiting will not change it
            time.sleep(2.0)
        summary = [{"id": f.id, "status": f.status.value, "graded": f.graded, "summary": f.summary,
                    "next": f.fix_command(), "escalate": f.escalate, "escalate_command": f.escalate_command}
                   for f in findings]
        for f in findings:
            if f.status is Status.OK and not f.graded:  # an OK on too small a sample proves nothing
                self.say(f"  ? {f.summary} ({f.id}): not a measurement, the fix is not proven by it")
            else:
                self.say(f"  {f.status.symbol} {f.summary} ({f.id})")
        ran = {f.id for f in findings}
        not_run = [c for c in ids if c not in ran]
        for c in not_run:
            self.say(f"  ? {c} did not run: the fix is not proven by it")
            summary.append({"id": c, "status": "NOT RUN", "summary": "the check did not run", "next": None,
                            "escalate": None})
        return bool(findings) and not not_run and all(verified(f) for f in findings), summary


#: how a SKIP because a prerequisite failed begins (es_doctor.runner)
SKIPPED_PREREQUISITE = "skipped: prerequisite"


def verified(finding: Finding) -> bool:
    """Whether a verified finding passes: OK on a sample that grades it (an OK "not graded: too few
    requests" is no measurement), or SKIP because the target has no such component (nothing there to
    be wrong); a SKIP because a prerequisite failed is not verified."""
    return (finding.status is Status.OK and finding.graded) or (
        finding.status is Status.SKIP and not finding.summary.startswith(SKIPPED_PREREQUISITE))


class _BeforeSnapshot(StepHook):
    """Reads a part of the target just before the run's first step that can change it. Read later than the
    run's start on purpose: what a live writer changed before the run reached the part (the service writing
    to Qdrant's volume until a step stops Qdrant) is not the run's doing, and a ROLLED BACK compared with
    it would be refused for changes the rollback never had to undo."""

    def __init__(self, engine: Engine, the_plan: Plan, base: dict[str, Any]) -> None:
        self.engine, self.base = engine, base
        self.steps = [(s.step.action, s.inputs) for s in the_plan.steps]
        self.snap = snapshot.Snapshot()
        #: the parts read so far, in the order the run reached them
        self.parts: list[str] = []

    def before_step(self, step: Any, phase: str, inputs: dict[str, Any], ctx: ActionContext) -> None:
        for part in snapshot.parts_changed_by(step.action, self.steps):
            if part in self.parts:
                continue
            self.parts.append(part)
            taken = snapshot.take(self.steps, self.engine.target, ctx.probes, ctx.work_dir, parts={part})
            self.snap.items.update(taken.items)
            self.snap.unread.update(taken.unread)
            self.engine.audit.write("fix.snapshot", **self.base, when="before", part=part, step=step.name,
                                    **taken.as_record())
