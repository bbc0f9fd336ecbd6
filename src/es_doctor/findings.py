"""The one result type: Status, Finding and Report."""

from __future__ import annotations

import datetime as dt
import math
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from es_doctor.errors import ExitStatus
from es_doctor.secrets import clean, mask_data
from es_doctor.symptoms import SYMPTOM_CLASSES

#: Version of the JSON report schema (``es-doctor diagnose --format json``).
REPORT_SCHEMA_VERSION = "1.3"
#: Version of the several-targets JSON output (``diagnose -t a -t b --format json``): an object holding
#: a list of 1.3 reports. One target keeps the 1.3 report as it is.
MULTI_REPORT_SCHEMA_VERSION = "2.2"

__all__ = ["MULTI_REPORT_SCHEMA_VERSION", "REPORT_SCHEMA_VERSION", "SYMPTOM_CLASSES", "Evidence", "Finding", "Report",
           "Status", "exit_status_of", "words", "worst"]


class Status(StrEnum):
    OK = "OK"
    WARN = "WARN"
    CRIT = "CRIT"
    UNKNOWN = "UNKNOWN"
    SKIP = "SKIP"

    @property
    def severity(self) -> int:
        """Ordering used to pick a report's overall status (SKIP counts as OK)."""
        return {"OK": 0, "SKIP": 0, "WARN": 1, "UNKNOWN": 2, "CRIT": 3}[self.value]

    @property
    def metric_value(self) -> int:
        """The value of ``es_doctor_check_status`` (``--format prometheus`` and ``serve`` alike): 0 OK,
        1 WARN, 2 CRIT, 3 UNKNOWN, -1 SKIP (the check did not apply). One series per check, no status
        label, so an alert's ``for:`` timer survives a change from WARN to CRIT."""
        return {"OK": 0, "WARN": 1, "CRIT": 2, "UNKNOWN": 3, "SKIP": -1}[self.value]

    @property
    def symbol(self) -> str:
        return {"OK": "✓", "WARN": "!", "CRIT": "✗", "UNKNOWN": "?", "SKIP": "-"}[self.value]


def worst(statuses: list[Status]) -> Status:
    """The most severe status, OK for an empty list."""
    result = Status.OK
    for status in statuses:
        if status.severity > result.severity:
            result = status
    return result


class Evidence(BaseModel):
    """One measured fact: what was measured, its value, and the threshold it was held to."""

    model_config = ConfigDict(extra="forbid")

    name: str
    value: Any = None
    threshold: str | None = None
    unit: str | None = None

    def render(self) -> str:
        text = f"{self.name}: {words(self.value)}"
        if self.unit:
            text += f" {self.unit}"
        if self.threshold:
            text += f" (threshold {self.threshold})"
        return text


def words(value: Any) -> str:
    """A value as a person reads it: 3 significant digits, lists and mappings as plain text (no repr)."""
    if isinstance(value, float):
        if math.isfinite(value) and abs(value) >= 1000:
            return f"{value:.0f}"  # 2087, not 2.09e+03
        if value and math.isfinite(value) and abs(value) < 0.001:
            return f"{value:.6f}".rstrip("0").rstrip(".") or "0"
        return f"{value:.3g}"
    if isinstance(value, dict):
        return ", ".join(f"{k} ({words(v)})" for k, v in value.items()) or "none"
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(words(v) for v in value) or "none"
    return str(value)


class Finding(BaseModel):
    """The result of one check."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str
    check_class: str = Field(alias="class", serialization_alias="class")
    status: Status
    summary: str
    evidence: list[Evidence] = Field(default=[])
    #: the runbook that cures it (from es_doctor.cures, given the cause), with the parameters it needs
    runbook: str | None = None
    runbook_params: dict[str, str] = Field(default={})
    #: what the check found to be the cause when its numbers are a consequence of another failure
    cause: str | None = None
    #: the guide's escalation level (1 Équipe Dev, 2 DevOps, 3 Expertise) when no runbook cures it
    escalate: int | None = None
    #: the id of the finding of the same report that causes this one (the root, through chains), or None
    #: when this finding is a root or not a problem (see :mod:`es_doctor.causality`)
    consequence_of: str | None = None
    #: the command that cures it, complete and runnable as printed (target, parameters, a cure the target
    #: can run; for a consequence, its root's); None when no runbook cures it here
    cure_command: str | None = Field(default=None, alias="fix_command", serialization_alias="fix_command")
    #: the complete ``es-doctor escalate`` command when no command cures it here
    escalate_command: str | None = None
    #: False when the check's rate or percentile held too small a sample to grade: its OK is then no
    #: measurement (the summary says how big the sample was), and a fix is not verified by it
    graded: bool = True
    duration_ms: float = 0.0
    description: str = ""

    @property
    def is_problem(self) -> bool:
        """WARN, CRIT or UNKNOWN (SKIP and OK are not problems)."""
        return self.status in (Status.WARN, Status.CRIT, Status.UNKNOWN)

    def fix_command(self) -> str | None:
        """The exact command that cures it, as printed everywhere (the table, JSON ``fix_command``, Nagios,
        the status page): complete for its target (see :mod:`es_doctor.prescribe`); None when none runs
        there (then :attr:`escalate_command` says whom to call)."""
        return self.cure_command

    def next_command(self) -> str | None:
        """The one command to run about this problem: its cure, else its escalation, else None."""
        return self.cure_command or self.escalate_command


class Report(BaseModel):
    """The findings of one diagnosis run."""

    model_config = ConfigDict(extra="forbid")

    schema_version: str = REPORT_SCHEMA_VERSION
    tool_version: str
    target: str
    started_at: dt.datetime
    duration_ms: float
    findings: list[Finding]

    @property
    def status(self) -> Status:
        return worst([f.status for f in self.findings])

    def counts(self) -> dict[str, int]:
        counts = {s.value: 0 for s in Status}
        for finding in self.findings:
            counts[finding.status.value] += 1
        return counts

    def exit_status(self) -> ExitStatus:
        return exit_status_of(self.status)

    def problems(self) -> list[Finding]:
        """The findings that are not OK (WARN, CRIT, UNKNOWN), causes first: the roots (findings no other
        problem of this report causes) by severity, then their consequences by severity; ties keep the
        report's order. The first one with a cure is the cure to apply first."""
        found = [f for f in self.findings if f.is_problem]
        return sorted(found, key=lambda f: (f.consequence_of is not None, -f.status.severity))

    def roots(self) -> list[Finding]:
        """The problems that are the cause of the others (no other problem of this report causes them)."""
        return [f for f in self.problems() if f.consequence_of is None]

    def consequences(self, finding_id: str) -> list[str]:
        """The ids of the problems ``finding_id`` causes (empty when it causes none)."""
        return [f.id for f in self.problems() if f.consequence_of == finding_id]


def exit_status_of(status: Status) -> ExitStatus:
    """The Nagios exit code of a status (several reports: of their worst status)."""
    return {
        Status.OK: ExitStatus.OK,
        Status.SKIP: ExitStatus.OK,
        Status.WARN: ExitStatus.WARNING,
        Status.UNKNOWN: ExitStatus.UNKNOWN,
        Status.CRIT: ExitStatus.CRITICAL,
    }[status]


def _clean_value(value: object, known: list[str] | tuple[str, ...]) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # NaN and infinities are not JSON: shown as text
    if isinstance(value, str):
        return clean(value, known)
    if isinstance(value, dict):
        return {clean(str(k), known): _clean_value(v, known) for k, v in mask_data(value, known).items()}
    if isinstance(value, list | tuple):
        return [_clean_value(v, known) for v in value]
    return value


def sanitize(finding: Finding, known: list[str] | tuple[str, ...] = ()) -> Finding:
    """A finding fit to print: secrets masked, control characters removed, non-finite numbers as text.

    Every finding goes through here, so no check, probe or server answer can put a secret or an escape
    sequence into any output format.
    """
    evidence = [Evidence(name=clean(e.name, known), value=_clean_value(e.value, known),
                         threshold=clean(e.threshold, known) if e.threshold else e.threshold,
                         unit=clean(e.unit, known) if e.unit else e.unit) for e in finding.evidence]
    # the printed commands quote the summary (an escalation's --issue): masked like it
    commands = {name: clean(value, known) for name in ("cure_command", "escalate_command")
                if isinstance(value := getattr(finding, name), str)}
    return finding.model_copy(update={"summary": clean(finding.summary, known), "evidence": evidence, **commands})


def sanitize_report(report: Report, known: list[str] | tuple[str, ...] = ()) -> Report:
    """The report with every finding sanitized (renderers call it: foreign text never reaches a terminal or XML raw)."""
    return report.model_copy(update={"target": clean(report.target, known),
                                     "findings": [sanitize(f, known) for f in report.findings]})
