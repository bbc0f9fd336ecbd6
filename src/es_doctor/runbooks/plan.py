"""Planning a run: the runbook's parameters typed, its ``requires:`` checked against the target, the
checks that will verify it resolved, and each step described (secrets masked) before anything runs.
``plan()`` changes nothing. A ``when:`` that only the parameters and the target decide is evaluated
here (the plan says whether the step will run); one that reads earlier steps' outputs is decided at
run time. A runbook that cures a finding but names no check that exists cannot be verified: ``plan()``
refuses it (:class:`UnverifiableRunbookError`), so no run can end FIXED without having run a check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from es_doctor.config import Target
from es_doctor.errors import EsDoctorError, ExitStatus, UsageError
from es_doctor.runbooks.actions import REGISTRY
from es_doctor.runbooks.model import Runbook, Step
from es_doctor.runbooks.templating import TemplateError, evaluate_condition, referenced, render
from es_doctor.secrets import clean, secret_values


@dataclass
class PlannedStep:
    step: Step
    phase: str  #: "steps" or "rollback"
    description: str
    inputs: dict[str, Any] | None  #: None when they depend on earlier steps' outputs (resolved at run time)
    destructive: bool
    #: the step's ``when:`` decided now (True: it runs, False: it is skipped); None: no ``when:``, or
    #: it reads earlier steps' outputs (decided at run time)
    runs: bool | None = None
    #: why the ``when:`` cannot be evaluated (the step will fail)
    condition_error: str = ""


@dataclass
class Plan:
    runbook: Runbook
    params: dict[str, Any]
    target_name: str
    steps: list[PlannedStep]
    rollback: list[PlannedStep]
    #: why the target cannot run this runbook (its ``requires:`` unmet); empty when it can
    missing: list[str] = field(default_factory=list)
    #: read-only checks run before any change (a failing one stops the run)
    preconditions: list[PlannedStep] = field(default_factory=list)
    #: the checks that verify the run (``verify:``, else ``cures:``)
    verify: list[str] = field(default_factory=list)
    #: findings verified besides the runbook's ``verify:`` (``fix <finding>``: the finding it was asked to
    #: cure, so that FIXED means that finding is OK)
    also_verify: list[str] = field(default_factory=list)

    @property
    def destructive(self) -> bool:
        return bool(self.runbook.flags.destructive) or any(s.destructive for s in self.steps)


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
    """Each of the runbook's ``requires:`` the target lacks, with the reason (:mod:`es_doctor.capabilities`:
    the same answer decides which cure diagnose prints)."""
    from es_doctor.capabilities import missing_requirements as missing

    return missing(runbook.requires, target)


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
        runs, condition_error = _decide(step, context)
        planned.append(PlannedStep(step, phase, clean(description, known), inputs, _is_destructive(step, runbook),
                                   runs, clean(condition_error, known)))
    return planned


def _decide(step: Step, context: dict[str, Any]) -> tuple[bool | None, str]:
    """A ``when:`` that reads no earlier step decided now: (runs, "") or (None, why it cannot be)."""
    if not step.when:
        return None, ""
    try:
        if any(root == "steps" for root, _attr in referenced(step.when, as_expression=True)):
            return None, ""
        return evaluate_condition(step.when, context), ""
    except TemplateError as exc:
        return None, exc.message


class UnverifiableRunbookError(EsDoctorError):
    """A runbook whose result no check can prove (exit 65): it names checks that do not exist, or it
    cures a finding and names no check at all."""

    exit_status = ExitStatus.DATA


def verify_ids(runbook: Runbook) -> list[str]:
    """The checks that verify a run: ``verify:``, else the findings it ``cures:``. Raises
    :class:`UnverifiableRunbookError` when one is not a check, or when a runbook that cures has none."""
    from es_doctor.checks.registry import load_all

    ids = list(runbook.verify or runbook.cures)
    if not ids:
        return []
    registry = load_all()
    unknown = [c for c in [*runbook.verify, *runbook.cures] if c not in registry]
    if unknown:
        raise UnverifiableRunbookError(f"runbook {runbook.id} names no check {', '.join(unknown)}: "
                                  "its result could not be verified; nothing was run (es-doctor checks lists them)")
    if runbook.cures and not ids:
        raise UnverifiableRunbookError(f"runbook {runbook.id} cures {', '.join(runbook.cures)} but names no check "
                                  "to verify it")
    return ids


def implicit_preconditions(runbook: Runbook) -> list[Step]:
    """The runbook's preconditions, with the write freeze its ``needs_maintenance`` flag enforces first."""
    steps = list(runbook.preconditions)
    if runbook.flags.needs_maintenance:  # the flag is enforced, not only shown
        steps.insert(0, Step(name="writes-stopped", action="backup.require-freeze"))
    return steps


def plan(runbook: Runbook, target: Target, target_name: str, params: dict[str, str] | None = None) -> Plan:
    checks = verify_ids(runbook)
    typed = coerce_params(runbook, params or {})
    context = template_context(target, typed, {})
    known = secret_values(target)
    missing = missing_requirements(runbook, target)
    return Plan(runbook, typed, target_name,
                _plan_steps(list(runbook.steps), "steps", runbook, context, known, target, missing),
                _plan_steps(list(runbook.rollback), "rollback", runbook, context, known), missing,
                _plan_steps(implicit_preconditions(runbook), "preconditions", runbook, context, known),
                checks)


