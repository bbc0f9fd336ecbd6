"""What a run ends as: the outcome of the whole run, and each step's result.

``RunOutcome`` maps to the process's exit status; ``FixResult`` is what ``Engine.run`` returns and
what ``fix``, ``emergency`` and ``serve`` print or report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from es_doctor.errors import ExitStatus


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
