"""The runbook format: pydantic models (``runbooks/schema.json`` is generated from them)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from es_doctor.runbooks.action_names import ACTION_NAMES
from es_doctor.symptoms import SYMPTOM_CLASSES

ID_PATTERN = r"^[a-z0-9][a-z0-9-]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Param(_Strict):
    type: Literal["str", "int", "float", "bool"] = "str"
    default: str | int | float | bool | None = None
    required: bool = False
    description: str = ""


class Step(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$", description="unique within the runbook")
    action: str = Field(description="an action of the registry, e.g. docker.restart")
    inputs: dict[str, Any] = Field(default_factory=dict, description="templated from params, target, steps")
    timeout: float = Field(default=60.0, gt=0, description="seconds")
    retries: int = Field(default=0, ge=0, le=20)
    delay: float = Field(default=1.0, ge=0, description="seconds between retries")
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


class Flags(_Strict):
    destructive: bool = False
    needs_maintenance: bool = False


class Runbook(_Strict):
    id: str = Field(pattern=ID_PATTERN)
    title: str = Field(min_length=1)
    description: str = ""
    check_class: str = Field(alias="class", description="the symptom class")
    cures: list[str] = Field(default_factory=list, description="finding (check) ids this runbook cures")
    params: dict[str, Param] = Field(default_factory=dict)
    preconditions: list[Step] = Field(default_factory=list)
    steps: list[Step] = Field(min_length=1)
    verify: list[str] = Field(default_factory=list, description="check ids that must be OK afterwards")
    rollback: list[Step] = Field(default_factory=list)
    flags: Flags = Field(default_factory=Flags)

    @field_validator("check_class")
    @classmethod
    def _class(cls, value: str) -> str:
        if value not in SYMPTOM_CLASSES:
            raise ValueError(f"unknown class {value!r} (known: {', '.join(SYMPTOM_CLASSES)})")
        return value

    @model_validator(mode="after")
    def _names(self) -> Runbook:
        seen: set[str] = set()
        for step in [*self.preconditions, *self.steps, *self.rollback]:
            if step.name in seen:
                raise ValueError(f"step name {step.name!r} is used twice")
            seen.add(step.name)
        names = {s.name for s in self.steps}
        for step in self.steps:
            if step.on_failure.startswith("step:") and step.on_failure[5:] not in names:
                raise ValueError(f"step {step.name}: on_failure names no step {step.on_failure[5:]!r}")
        for name, param in self.params.items():
            if param.default is not None and not _fits(param.type, param.default):
                raise ValueError(f"param {name}: default {param.default!r} is not a {param.type}")
        return self


def _fits(kind: str, value: Any) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, str)
