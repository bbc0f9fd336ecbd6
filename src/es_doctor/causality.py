"""Which finding causes which: the report names its root causes and their consequences.

With the service failing at start, a report holds several CRITs (the port refuses, the container has
exited, the stack is incomplete, the metrics endpoint is down); only one of them is the cause, and only
its cure works. :data:`CAUSED_BY` states, for a finding, the findings that can cause it (most specific
first); a check that found the cause itself says so in ``Outcome.cause`` (:data:`CAUSE_FINDINGS`).
:func:`link` sets ``Finding.consequence_of`` to the *root* (the cause of the cause, …) when that finding
is a problem in the same report; :meth:`es_doctor.findings.Report.problems` then lists roots first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

from es_doctor import cures
from es_doctor.findings import Finding, Status

PROBLEM = (Status.WARN, Status.CRIT, Status.UNKNOWN)

_STARTUP_FAILURE = ("startup.config-file", "startup.port-owner", "startup.go-env")
#: the findings a service that is down (not listening) brings down with it
_SERVICE_DOWN_CAUSES = (*_STARTUP_FAILURE, "startup.container", "startup.api-port")

#: finding → the findings that can cause it, the most specific first (a cause must be a problem in the
#: same report to count). No cycles: a test walks every chain.
CAUSED_BY: Mapping[str, tuple[str, ...]] = MappingProxyType({
    # the service does not start: its config is missing, its port is taken, its environment is wrong
    "startup.container": _STARTUP_FAILURE,
    "startup.api-port": (*_STARTUP_FAILURE, "startup.container"),
    "startup.health": (*_SERVICE_DOWN_CAUSES, "startup.qdrant", "startup.postgres", "vectors.qdrant"),
    "startup.service-mode": _SERVICE_DOWN_CAUSES,
    "deploy.containers": (*_SERVICE_DOWN_CAUSES, "startup.qdrant", "startup.postgres", "monitoring.prometheus"),
    "monitoring.metrics-endpoint": _SERVICE_DOWN_CAUSES,
    "monitoring.prometheus-target": (*_SERVICE_DOWN_CAUSES, "monitoring.metrics-endpoint"),
    "monitoring.uptime": _SERVICE_DOWN_CAUSES,
    # the API failing a share of its requests fails the checks that read it (lab fault errors-crit)
    "inter-manager.status": (*_SERVICE_DOWN_CAUSES, "inter-manager.discovery", "performance.error-rate"),
    "inter-manager.discovery": (*_SERVICE_DOWN_CAUSES, "performance.error-rate"),
    "inter-manager.event-bus": (*_SERVICE_DOWN_CAUSES, "monitoring.metrics-endpoint"),
    "performance.latency": (*_SERVICE_DOWN_CAUSES, "startup.qdrant", "vectors.qdrant", "startup.postgres",
                            "monitoring.metrics-endpoint"),
    "performance.error-rate": (*_SERVICE_DOWN_CAUSES, "startup.qdrant", "vectors.qdrant", "startup.postgres",
                               "startup.service-mode", "monitoring.metrics-endpoint"),
    # Qdrant down: its collection, searches and the service's inserts fail with it
    "vectors.qdrant": ("startup.qdrant",),
    "vectors.collection": ("startup.qdrant", "vectors.qdrant"),
    "vectors.dimensions": ("startup.qdrant", "vectors.qdrant", "vectors.collection"),
    "vectors.search": ("startup.qdrant", "vectors.qdrant", "vectors.collection", "vectors.dimensions"),
    "vectors.insert-errors": ("startup.qdrant", "vectors.qdrant", "vectors.collection", "vectors.dimensions",
                              "monitoring.metrics-endpoint"),
    "vectors.connection-errors": ("startup.qdrant", "vectors.qdrant", "monitoring.metrics-endpoint"),
    "vectors.coverage": ("startup.qdrant", "vectors.qdrant", "vectors.collection", "startup.postgres"),
})

#: a cause a check names (``Outcome.cause``) → the findings that are that cause
CAUSE_FINDINGS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    cures.QDRANT_DOWN: ("startup.qdrant", "vectors.qdrant"),
    cures.POSTGRES_DOWN: ("startup.postgres",),
    cures.COLLECTION_MISSING: ("vectors.collection",),
    cures.CONFIG: ("startup.config-file", "startup.go-env"),
    cures.SERVICE_DOWN: _SERVICE_DOWN_CAUSES,
    cures.READ_ONLY: ("startup.service-mode",),
    cures.TARGET_DOWN: ("monitoring.metrics-endpoint",),
})


def candidates(finding: Finding) -> tuple[str, ...]:
    """The findings that may cause ``finding``: what its check named first, then the table's."""
    named: tuple[str, ...] = ()
    if finding.cause is not None:
        if finding.cause.startswith(cures.ALERT_PREFIX):
            named = (finding.cause[len(cures.ALERT_PREFIX):],)
        else:
            named = CAUSE_FINDINGS.get(finding.cause, ())
    return (*named, *CAUSED_BY.get(finding.id, ()))


def _direct_cause(finding: Finding, problems: Mapping[str, Finding]) -> str | None:
    return next((c for c in candidates(finding) if c != finding.id and c in problems), None)


def link(findings: Sequence[Finding]) -> list[Finding]:
    """``findings`` with ``consequence_of`` set on each problem caused by another problem of the same
    report: the id of the root (followed through chains; a cycle stops where it closes). Only a WARN or
    CRIT finding is a cause: an UNKNOWN one says nothing is known about it."""
    problems = {f.id: f for f in findings if f.status in (Status.WARN, Status.CRIT)}
    out = []
    for finding in findings:
        if finding.status not in PROBLEM:
            out.append(finding.model_copy(update={"consequence_of": None}))
            continue
        seen = {finding.id}
        root = None
        current = _direct_cause(finding, {k: v for k, v in problems.items() if k != finding.id})
        while current is not None and current not in seen:
            root = current
            seen.add(current)
            current = _direct_cause(problems[current], problems)
        out.append(finding.model_copy(update={"consequence_of": root}))
    return out


#: the summary word of an alert that still fires while the finding it watches is OK now
CLEARING = "clearing (alert still in its window)"


def clearing_alerts(findings: Sequence[Finding]) -> list[Finding]:
    """``monitoring.alerts`` read beside the live findings of the same run: an alert whose watched
    finding is OK now is *clearing* (Prometheus keeps it firing until its expression has been false for
    a rule evaluation, and Alertmanager until it resolves): it is named so, with no cure. When every
    firing alert is clearing the finding is OK; else its cure is that of an alert still live."""
    by_id = {f.id: f for f in findings}
    alerts = by_id.get("monitoring.alerts")
    if alerts is None or not alerts.is_problem:
        return list(findings)
    evidence = {e.name: e.value for e in alerts.evidence}
    watching = evidence.get("watching")
    firing = evidence.get("firing")
    if not isinstance(watching, dict) or not isinstance(firing, list):
        return list(findings)
    critical = set(evidence.get("critical") or [])
    clearing = sorted(name for name in firing if name in watching and watching[name] in by_id
                      and by_id[watching[name]].status is Status.OK)
    if not clearing:
        return list(findings)
    live = [name for name in firing if name not in clearing]
    words = ", ".join(f"{name} ({watching[name]} OK now)" for name in clearing)
    if not live:
        updated = alerts.model_copy(update={
            "status": Status.OK, "cause": None, "runbook": None, "runbook_params": {}, "escalate": None,
            "summary": f"{len(clearing)} alert{'' if len(clearing) == 1 else 's'} firing but {CLEARING}: {words}"})
    else:
        still = next((watching[n] for n in live if n in critical and n in watching), None) or \
            next((watching[n] for n in live if n in watching), None)
        cause = cures.ALERT_PREFIX + still if still else cures.UNKNOWN_ALERT
        remedy = cures.remedy_for(alerts.id, cause)
        status = Status.CRIT if any(n in critical for n in live) else Status.WARN
        updated = alerts.model_copy(update={
            "status": status, "cause": cause, "runbook": remedy.runbook if remedy else None,
            "runbook_params": dict(remedy.params) if remedy else {},
            "escalate": cures.escalation_for(alerts.id, cause) if remedy is None else None,
            "summary": f"{len(live)} alert{'' if len(live) == 1 else 's'} firing: {', '.join(sorted(live))}; "
                       f"{CLEARING}: {words}"})
    return [updated if f.id == alerts.id else f for f in findings]
