"""Planning a run: the runbook's parameters typed, its ``requires:`` checked against the target, and
each step described (secrets masked) before anything runs. ``plan()`` changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from es_doctor.config import Target
from es_doctor.errors import UsageError
from es_doctor.runbooks.actions import REGISTRY
from es_doctor.runbooks.model import Runbook, Step
from es_doctor.runbooks.templating import TemplateError, render
from es_doctor.secrets import clean, secret_values


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


