"""The check registry: small functions registered with :func:`check`, ids unique."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from es_doctor.findings import SYMPTOM_CLASSES, Evidence, Status
from es_doctor.signals import grade_level

if TYPE_CHECKING:
    from es_doctor.checks.context import CheckContext


@dataclass(frozen=True)
class Outcome:
    status: Status
    summary: str
    evidence: list[Evidence] = field(default_factory=list)
    #: the cause the check found when its numbers are a consequence of another failure; it picks
    #: the cure in :mod:`es_doctor.cures` (None: the finding's default cure)
    cause: str | None = None
    #: False when the check's signal held too small a sample to grade (a rate or a percentile): the OK it
    #: returns then is not a measurement, and a runbook's verification does not take it as a proof
    graded: bool = True


CheckFn = Callable[["CheckContext"], Outcome]


@dataclass(frozen=True)
class CheckSpec:
    id: str
    check_class: str
    description: str
    fn: CheckFn
    requires: tuple[str, ...] = ()
    components: tuple[str, ...] = ()
    #: run only when asked for by id (``--check``, a runbook's ``verify``), not in a full diagnosis
    on_demand: bool = False
    #: False when waiting cannot change the answer (missing data): a runbook's verify stops waiting
    heals: bool = True

    @property
    def runbook(self) -> str | None:
        """The default cure (:mod:`es_doctor.cures` is the one place that says it)."""
        from es_doctor.cures import remedy_for

        remedy = remedy_for(self.id)
        return remedy.runbook if remedy else None


REGISTRY: dict[str, CheckSpec] = {}


class DuplicateCheckError(ValueError):
    pass


def check(
    check_id: str,
    *,
    description: str,
    requires: tuple[str, ...] = (),
    components: tuple[str, ...] = (),
    on_demand: bool = False,
    heals: bool = True,
) -> Callable[[CheckFn], CheckFn]:
    """Register a check. Its class is the id's first part (``vectors.collection-exists``)."""
    check_class = check_id.split(".", 1)[0]
    if check_class not in SYMPTOM_CLASSES:
        raise ValueError(f"check {check_id}: unknown class {check_class!r}")

    def register(fn: CheckFn) -> CheckFn:
        if check_id in REGISTRY:
            raise DuplicateCheckError(f"check id {check_id!r} registered twice")
        REGISTRY[check_id] = CheckSpec(check_id, check_class, description, fn, requires, components, on_demand, heals)
        return fn

    return register


def ev(name: str, value: object = None, threshold: str | None = None, unit: str | None = None) -> Evidence:
    return Evidence(name=name, value=value, threshold=threshold, unit=unit)


def ok(summary: str, *evidence: Evidence) -> Outcome:
    return Outcome(Status.OK, summary, list(evidence))


def warn(summary: str, *evidence: Evidence) -> Outcome:
    return Outcome(Status.WARN, summary, list(evidence))


def crit(summary: str, *evidence: Evidence) -> Outcome:
    return Outcome(Status.CRIT, summary, list(evidence))


def unknown(summary: str, *evidence: Evidence) -> Outcome:
    return Outcome(Status.UNKNOWN, summary, list(evidence))


def skip(summary: str, *evidence: Evidence) -> Outcome:
    return Outcome(Status.SKIP, summary, list(evidence))


#: OK / WARN / CRIT for 'higher is worse' values (one definition: es_doctor.signals.grade_level)
grade = grade_level


def counted(n: float, word: str) -> str:
    """``1 collection``, ``3 collections``: a count and its noun (plural with an s, never "(s)")."""
    return f"{n:g} {word}" + ("" if n == 1 else "s")


def over(status: Status, warn_at: float, crit_at: float | None, unit: str) -> str:
    """The threshold a graded value crossed, for its summary: ", over the 5 % CRIT threshold" (empty when OK):
    a CRIT summary names the CRIT threshold, a WARN summary the WARN one."""
    if status is Status.CRIT and crit_at is not None:
        return f", over the {crit_at:g}{unit} CRIT threshold"
    if status in (Status.WARN, Status.CRIT):
        return f", over the {warn_at:g}{unit} WARN threshold"
    return ""


def load_all() -> dict[str, CheckSpec]:
    """Import every check module (registration happens at import) and return the registry."""
    from es_doctor.checks import deploy, managers, monitoring, performance, startup, vectors  # noqa: F401

    for spec in REGISTRY.values():
        for required in spec.requires:
            if required not in REGISTRY:
                raise ValueError(f"check {spec.id} requires unknown check {required}")
    return REGISTRY
