"""The runbook format: pydantic models (``runbooks/schema.json`` is generated from them)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator
from pydantic_core import PydanticCustomError

from es_doctor.runbooks.actions import ACTION_NAMES
from es_doctor.symptoms import SYMPTOM_CLASSES

ID_PATTERN = r"^[a-z0-9][a-z0-9-]*$"
#: a check (finding) id: ``<class>.<name>``, e.g. ``startup.port-owner``
CHECK_ID_PATTERN = r"^[a-z0-9][a-z0-9-]*\.[a-z0-9][a-z0-9._-]*$"
STEP_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"
#: the error type of a cross-field problem; its ``ctx["loc"]`` says where (the loader maps it to a line)
SEMANTIC_ERROR = "runbook_semantics"
_ACTIONS: list[JsonValue] = [*sorted(ACTION_NAMES)]
_CLASSES: list[JsonValue] = list(SYMPTOM_CLASSES)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True, allow_inf_nan=False)


class Param(_Strict):
    type: Literal["str", "int", "float", "bool"] = "str"
    default: str | int | float | bool | None = None
    required: bool = False
    description: str = ""


class Step(_Strict):
    name: str = Field(pattern=STEP_NAME_PATTERN, description="unique within the runbook")
    action: str = Field(description="an action of the registry, e.g. docker.restart",
                        json_schema_extra={"enum": list(_ACTIONS)})
    inputs: dict[str, Any] = Field(default_factory=dict, description="templated from params, target, steps")
    timeout: float = Field(default=60.0, gt=0, le=86400, description="seconds (at most a day)")
    retries: int = Field(default=0, ge=0, le=20)
    delay: float = Field(default=1.0, ge=0, le=3600, description="seconds between retries (at most an hour)")
    on_failure: str = Field(default="rollback", pattern=r"^(abort|continue|rollback|step:[A-Za-z0-9_-]+)$",
                            description="abort | continue | rollback | step:NAME")
    when: str | None = Field(default=None, description="a condition (template expression); the step runs when true")
    destructive: bool = False
    description: str = ""

    @field_validator("action")
    @classmethod
    def _known_action(cls, value: str) -> str:
        if value not in ACTION_NAMES:
            raise ValueError(f"unknown action {value!r} (known: {', '.join(sorted(ACTION_NAMES))})")
        return value


#: what a runbook can need of its target: a component present (not in ``absent:``, not disabled), ``local``
#: (the service runs on this host: its API address is local), ``config-file`` (the service's config file is
#: on this host: ``service.config_file``), ``restart`` (the service can be restarted: by Docker, or by the
#: target's ``service.restart_command``, e.g. a process supervisor)
REQUIREMENTS = ("docker", "local", "config-file", "restart", "service", "postgres", "qdrant", "prometheus", "redis",
                "grafana")
Requirement = Literal["docker", "local", "config-file", "restart", "service", "postgres", "qdrant", "prometheus",
                      "redis", "grafana"]


class Flags(_Strict):
    destructive: bool = False
    needs_maintenance: bool = False


class Runbook(_Strict):
    id: str = Field(pattern=ID_PATTERN)
    title: str = Field(min_length=1)
    description: str = ""
    check_class: str = Field(alias="class", description="the symptom class",
                             json_schema_extra={"enum": list(_CLASSES)})
    cures: list[Annotated[str, Field(pattern=CHECK_ID_PATTERN)]] = Field(
        default_factory=list, description="finding (check) ids this runbook cures")
    params: dict[str, Param] = Field(default_factory=dict)
    preconditions: list[Step] = Field(default_factory=list)
    steps: list[Step] = Field(min_length=1)
    verify: list[Annotated[str, Field(pattern=CHECK_ID_PATTERN)]] = Field(
        default_factory=list, description="check ids that must be OK afterwards")
    rollback: list[Step] = Field(default_factory=list)
    flags: Flags = Field(default_factory=Flags)
    requires: list[Requirement] = Field(
        default_factory=list, description="what the target must have; the plan refuses up front without it")
    unattended: bool = Field(
        default=False, description="safe to run with nobody watching (`serve`'s remediation policy runs it on an "
        "alert without an approval by default): only the guide's restarts and purges, never a runbook that "
        "deletes, restores or migrates data")

    @field_validator("check_class")
    @classmethod
    def _class(cls, value: str) -> str:
        if value not in SYMPTOM_CLASSES:
            raise ValueError(f"unknown class {value!r} (known: {', '.join(SYMPTOM_CLASSES)})")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Runbook:
        problem = first_problem(self)
        if problem is not None:
            loc, message = problem
            raise PydanticCustomError(SEMANTIC_ERROR, "{message}", {"message": message, "loc": loc})
        return self

    def sections(self) -> list[tuple[str, list[Step]]]:
        return [("preconditions", self.preconditions), ("steps", self.steps), ("rollback", self.rollback)]


def first_problem(rb: Runbook) -> tuple[tuple[str | int, ...], str] | None:
    """The first cross-field problem of a runbook, with where it is: (loc, message), or None."""
    seen: set[str] = set()
    for section, items in rb.sections():
        for i, step in enumerate(items):
            if step.name in seen:
                return (section, i, "name"), f"step name {step.name!r} is used twice"
            seen.add(step.name)
    for section, items in rb.sections():
        names = {s.name for s in items}
        for i, step in enumerate(items):
            target = step.on_failure[5:] if step.on_failure.startswith("step:") else None
            if target is not None and target not in names:
                return ((section, i, "on_failure"),
                        f"names no step {target!r} of {section} (known: {', '.join(sorted(names))})")
    for name, param in rb.params.items():
        if param.default is not None and not _fits(param.type, param.default):
            return ("params", name, "default"), f"default {param.default!r} is not of type {param.type}"
    return None


def _fits(kind: str, value: Any) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, str)
