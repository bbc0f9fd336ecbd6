"""The runbook actions' core: the registry of idempotent operations, each working through the probes.

Every action declares the model of its inputs (a pydantic :class:`Inputs`: its fields are the action's
contract, checked by ``runbooks validate`` and listed in ``schema.json``), ``describe(inputs)`` (what it
would do: the dry-run plan, given the rendered inputs as a dict) and ``run(inputs, ctx)`` (do it with the
validated model, return a dict of outputs for later steps' templates). An action signals failure by
raising :class:`ActionError`; the engine turns it into the step's result. Destructive actions say so.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict

from es_doctor.config import Target
from es_doctor.probes.result import Result
from es_doctor.probes.session import ProbeSession
from es_doctor.units import utc_stamp

#: set (by the engine) for the programs a run's steps start, so that those of a run that died can be found
#: (not ``ES_DOCTOR_…``: an es-doctor started by a step would read that as a configuration override)
RUN_ENV = "ESDOCTOR_RUN_ID"


class ActionError(RuntimeError):
    """A step's action failed (the message says why, with no secret in it). ``retryable=False``: it
    may have taken effect (e.g. a POST sent and no answer read), so the engine does not try again."""

    def __init__(self, message: str, *, retryable: bool = True, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after  #: the server asked to wait this long before a retry (capped)


@dataclass
class ActionContext:
    target: Target
    target_name: str
    #: where this run keeps its backups (volume tars, config copies, dumps)
    work_dir: Path
    cancel: threading.Event = field(default_factory=threading.Event)
    say: Callable[[str], None] = lambda _text: None
    #: where `emergency backup` keeps backups (None: ``state_dir/backups``)
    backup_root: Path | None = None
    #: the run's probe session (every client bounded by 60 s; closed by the engine at the end of the run)
    probes: ProbeSession = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.probes = ProbeSession(self.target, timeout=60, docker_timeout=60)

    def docker(self) -> Any:
        return self.probes.docker()

    def qdrant(self) -> Any:
        return self.probes.qdrant()

    def postgres(self) -> Any:
        return self.probes.postgres()

    def service(self) -> Any:
        return self.probes.service()

    @property
    def deployments(self) -> Path:
        """Where the service's image history is kept (``state_dir/deployments/<target>.jsonl``)."""
        return self.work_dir.parents[1] / "deployments" / f"{self.target_name}.jsonl"

    @property
    def backups(self) -> Path:
        return self.backup_root or self.work_dir.parents[1] / "backups"

    def sleep(self, seconds: float) -> None:
        if self.cancel.wait(seconds):
            raise ActionError("interrupted")


class Inputs(BaseModel):
    """The inputs of an action: a subclass per action declares them as fields. An unknown input is an
    error; values are coerced the way YAML and templates give them (``"30"`` → 30 for an int)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


class NoInputs(Inputs):
    """An action that takes no input."""


I = TypeVar("I", bound=Inputs)  # noqa: E741
ActionRun = Callable[[Any, ActionContext], dict[str, Any]]


@dataclass(frozen=True)
class ActionSpec:
    name: str
    describe: Callable[[dict[str, Any]], str]
    #: called with a validated instance of ``inputs``
    run: ActionRun
    inputs: type[Inputs] = NoInputs
    destructive: bool = False
    #: may the engine try again after a timeout (which may have happened after the effect)?
    retry_safe: Callable[[dict[str, Any]], bool] = lambda _inputs: True
    #: what the step would act on right now (pids, commands), or why it refuses: shown in the plan
    preview: Callable[[dict[str, Any], Target], str] | None = None

    def call(self, inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
        """Run with ``inputs`` (rendered) validated against the action's model first."""
        return self.run(validate_inputs(self, inputs), ctx)


REGISTRY: dict[str, ActionSpec] = {}


def action(name: str, describe: Callable[[dict[str, Any]], str], inputs: type[I], destructive: bool = False,
           retry_safe: Callable[[dict[str, Any]], bool] = lambda _inputs: True,
           preview: Callable[[dict[str, Any], Target], str] | None = None) -> Callable[
        [Callable[[I, ActionContext], dict[str, Any]]], Callable[[I, ActionContext], dict[str, Any]]]:
    """Register an action: ``inputs`` is the model of its inputs (``NoInputs`` when it takes none)."""
    if name in REGISTRY:
        raise ValueError(f"action {name!r} registered twice")

    def register(fn: Callable[[I, ActionContext], dict[str, Any]]) -> Callable[[I, ActionContext], dict[str, Any]]:
        REGISTRY[name] = ActionSpec(name, describe, fn, inputs, destructive, retry_safe, preview)
        return fn

    return register


def validate_inputs(spec: ActionSpec, inputs: dict[str, Any]) -> Inputs:
    """``inputs`` (rendered) as the action's model; an :class:`ActionError` naming each bad input."""
    from pydantic import ValidationError

    try:
        return spec.inputs.model_validate(inputs)
    except ValidationError as exc:
        raise ActionError("inputs: " + "; ".join(input_problem(e) for e in exc.errors(include_url=False)),
                          retryable=False) from None


def input_problem(error: Any) -> str:
    """One pydantic error of an inputs model, in words (``container: required input missing``)."""
    where = ".".join(str(p) for p in error.get("loc", ())) or "(inputs)"
    kind = error.get("type")
    if kind == "missing":
        return f"{where}: required input missing"
    if kind == "extra_forbidden":
        return f"{where}: unknown input"
    return f"{where}: {error.get('msg')}"


def argv_words(argv: object) -> str:
    """A command line for the plan, as a shell would show it (``pg_dump -Fc 'my db'``), not a list repr."""
    import shlex

    if isinstance(argv, list | tuple):
        return shlex.join(str(a) for a in argv)
    return str(argv)


def unwrap(result: Result[Any], what: str) -> Any:
    if result.failure is not None:
        raise ActionError(f"{what}: {result.failure.message}")
    return result.value


def stamp() -> str:
    return utc_stamp()


def tool_call(fn: Callable[[], Any]) -> Any:
    """``fn()``, its BackupError or ToolError turned into the step's ActionError."""
    from es_doctor.backup import BackupError
    from es_doctor.tools import ToolError

    try:
        return fn()
    except (BackupError, ToolError) as exc:
        raise ActionError(str(exc)) from None


def run_program(argv: list[str], env: dict[str, str] | None, timeout: float, ctx: ActionContext,
                keep: int | None = None) -> str:
    """Run an argv (never a shell string), stopping it when the step is cancelled or times out."""
    from es_doctor.tools import DEFAULT_KEEP, run_tool

    return str(tool_call(lambda: run_tool(argv, env, timeout, ctx.cancel, keep=keep or DEFAULT_KEEP)))
