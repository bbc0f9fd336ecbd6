"""The one answer to "what cures this finding": finding id (+ the cause a check found) → runbook.

Everything that names a cure derives from :data:`CURES`: the report's ``fix:`` hint (the runner
sets ``Finding.runbook``/``runbook_params``), ``es-doctor fix <finding-id>`` and ``fix --all``
(they run the check and take the cure of its finding), ``es-doctor checks``, and the ``runbook``
label of the generated alert rules. The shipped runbooks' ``cures:`` lists are kept equal to it by
a test (tests/unit/test_cures.py), which also fails when a check able to go WARN/CRIT has neither a
cure nor an escalation level, or when a runbook cures a finding that does not exist.

A check names a *cause* in its outcome when its numbers are a consequence of another failure
(insert errors while the collection is missing, 503s while read-only mode is on, …); the cause picks
a more specific cure than the finding's default. A finding no runbook can cure names the guide's
escalation level instead (1 Équipe Dev, 2 DevOps, 3 Expertise).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


def es_doctor(*args: str, target: str | None = None, config: str | None = None) -> str:
    """The one builder of every es-doctor command line es-doctor prints: ``es-doctor [-c FILE] [-t NAME]
    ARGS…``, each word shell-quoted, so that it runs as printed (pasted into a shell) against the same
    target: ``target`` is the target it was printed for, ``config`` the config file when it is not the one
    es-doctor finds by default (see :func:`printed_config`)."""
    words = ["es-doctor"]
    if config:
        words += ["-c", config]
    if target:
        words += ["-t", target]
    return " ".join(shlex.quote(w) for w in (*words, *args))


@dataclass(frozen=True)
class Remedy:
    """A runbook and the parameters it needs for this finding."""

    runbook: str
    params: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    #: parameters whose value the finding's evidence gives (parameter → evidence name), e.g. the
    #: previous image a deployment log names; without that evidence the runbook cannot be run as printed
    from_evidence: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def args(self) -> list[str]:
        """``fix RUNBOOK -p k=v …`` (parameters sorted)."""
        out = ["fix", self.runbook]
        for key, value in sorted(self.params.items()):
            out += ["-p", f"{key}={value}"]
        return out

    def command(self, target: str | None = None, config: str | None = None) -> str:
        """The ``es-doctor fix`` command line that applies it, for ``target`` (see :func:`es_doctor`)."""
        return es_doctor(*self.args(), target=target, config=config)


@dataclass(frozen=True)
class Cure:
    """What cures one finding: a default remedy, more specific ones per cause, or an escalation."""

    default: Remedy | None = None
    causes: Mapping[str, Remedy | None] = field(default_factory=lambda: MappingProxyType({}))
    #: the guide's escalation level when no runbook cures it (also for causes mapped to None)
    escalate: int | None = None


def _r(runbook: str, **params: str) -> Remedy:
    return Remedy(runbook, MappingProxyType(dict(params)))


def _from(runbook: str, **from_evidence: str) -> Remedy:
    return Remedy(runbook, from_evidence=MappingProxyType(dict(from_evidence)))


def _cure(default: Remedy | None = None, escalate: int | None = None, **causes: Remedy | None) -> Cure:
    return Cure(default, MappingProxyType({k.replace("_", "-"): v for k, v in causes.items()}), escalate)


# causes a check may name (Outcome.cause); each is a key of some finding's ``causes`` below
QDRANT_DOWN = "qdrant-down"
POSTGRES_DOWN = "postgres-down"
COLLECTION_MISSING = "collection-missing"
CONFIG = "config"
SERVICE_DOWN = "service-down"
READ_ONLY = "read-only"
TARGET_DOWN = "target-down"
NOT_GREEN = "not-green"
UNKNOWN_ALERT = "unknown-alert"
#: the port's holder answers HTTP but not as the service: a web server to show the operator, never ended
WEB_SERVER = "web-server"
#: ``alert:<finding-id>``: a firing alert es-doctor generated; its cure is that finding's
ALERT_PREFIX = "alert:"

_QDRANT = _r("dependency-restart", component="qdrant")
_POSTGRES = _r("dependency-restart", component="postgres")

CURES: Mapping[str, Cure] = MappingProxyType({
    # 1. Service ne démarre pas
    "startup.api-port": _cure(_r("service-restart")),
    "startup.health": _cure(_r("service-restart"), config=_r("config-missing"), qdrant_down=_QDRANT,
                            postgres_down=_POSTGRES),
    "startup.docker-engine": _cure(None, escalate=2),
    "startup.container": _cure(_r("service-restart")),
    "startup.port-owner": _cure(_r("port-in-use"), escalate=2, web_server=None),
    "startup.go-env": _cure(_r("config-missing")),
    "startup.config-file": _cure(_r("config-missing")),
    "startup.qdrant": _cure(_QDRANT),
    "startup.postgres": _cure(_POSTGRES),
    "startup.service-mode": _cure(_r("service-writes-resume")),
    # 2. Performance dégradée
    "performance.latency": _cure(_r("vector-cache-tune"), qdrant_down=_QDRANT, postgres_down=_POSTGRES),
    "performance.error-rate": _cure(None, escalate=1, read_only=_r("service-writes-resume"),
                                    qdrant_down=_QDRANT, postgres_down=_POSTGRES),
    "performance.memory": _cure(_r("go-gc-tune")),
    "performance.slow-log": _cure(_r("qdrant-connection-pool")),
    # 3. Erreurs de vectorisation
    "vectors.qdrant": _cure(_QDRANT),
    "vectors.collection": _cure(_r("qdrant-collection-recreate")),
    "vectors.dimensions": _cure(_r("qdrant-dimension-fix"), escalate=3, not_green=None),
    "vectors.search": _cure(_r("vector-cache-tune")),
    "vectors.insert-errors": _cure(_r("qdrant-dimension-fix"), qdrant_down=_QDRANT,
                                   collection_missing=_r("qdrant-collection-recreate")),
    "vectors.connection-errors": _cure(_QDRANT),
    "vectors.coverage": _cure(_r("qdrant-collection-restore")),
    # 4. Communication inter-managers
    "inter-manager.status": _cure(_r("manager-discovery-restart")),
    "inter-manager.discovery": _cure(_r("manager-discovery-restart")),
    "inter-manager.event-bus": _cure(_r("event-bus-purge")),
    "inter-manager.eventbus-log": _cure(_r("event-bus-tune")),
    # 5. Erreurs de déploiement
    "deploy.containers": _cure(_r("stack-restart")),
    "deploy.image-drift": _cure(_r("redeploy-image")),
    # the image to roll back to is the one the deployment log names as the previous one
    "deploy.deployment-log": _cure(_from("deploy-rollback", previous_image="previous image"), escalate=2),
    "deploy.migration-log": _cure(_r("data-migration-rollback")),
    "deploy.volumes": _cure(_r("volumes-recover")),
    # 6. Problèmes de monitoring
    "monitoring.metrics-endpoint": _cure(_r("metrics-endpoint-enable"), service_down=_r("service-restart")),
    "monitoring.prometheus": _cure(_r("monitoring-restart")),
    "monitoring.prometheus-target": _cure(_r("prometheus-scrape-config"), target_down=_r("metrics-endpoint-enable")),
    "monitoring.alerts": _cure(_r("prometheus-scrape-config"), escalate=1, unknown_alert=None),
    # lost availability is history: no runbook gives it back, and a restart would cost more of it; the
    # guide's level 1 (Équipe Dev: "analyse logs basique") finds out why it went down. A service down now
    # is startup.api-port's finding (cure service-restart)
    "monitoring.uptime": _cure(None, escalate=1),
})


def cure_of(finding_id: str) -> Cure:
    return CURES.get(finding_id, Cure())


def remedy_for(finding_id: str, cause: str | None = None) -> Remedy | None:
    """The runbook (and its parameters) that cures ``finding_id`` given the cause its check found."""
    cure = cure_of(finding_id)
    if cause is not None and cause.startswith(ALERT_PREFIX):
        return remedy_for(cause[len(ALERT_PREFIX):])
    if cause is not None and cause in cure.causes:
        return cure.causes[cause]
    return cure.default


def escalation_for(finding_id: str, cause: str | None = None) -> int | None:
    """The escalation level when no runbook cures the finding (with that cause), else None."""
    if cause is not None and cause.startswith(ALERT_PREFIX):
        return escalation_for(cause[len(ALERT_PREFIX):])
    if remedy_for(finding_id, cause) is not None:
        return None
    return cure_of(finding_id).escalate or 1


def pairs() -> set[tuple[str, str]]:
    """Every (finding id, runbook id) this table states, default and cause-specific."""
    out: set[tuple[str, str]] = set()
    for finding_id, cure in CURES.items():
        for remedy in (cure.default, *cure.causes.values()):
            if remedy is not None:
                out.add((finding_id, remedy.runbook))
    return out


def runbooks_curing(finding_id: str) -> list[str]:
    """The runbooks that cure ``finding_id`` under some cause, the default first."""
    cure = cure_of(finding_id)
    out: list[str] = []
    for remedy in (cure.default, *cure.causes.values()):
        if remedy is not None and remedy.runbook not in out:
            out.append(remedy.runbook)
    return out


def describe(finding_id: str) -> str:
    """One line for ``es-doctor checks``: the default cure, the cause-specific ones, or the level."""
    cure = cure_of(finding_id)
    parts = [" ".join(cure.default.args()[1:]) if cure.default else f"escalate level {cure.escalate or 1}"]
    for cause, remedy in cure.causes.items():
        what = " ".join(remedy.args()[1:]) if remedy else f"escalate level {cure.escalate or 1}"
        parts.append(f"{cause}: {what}")
    return "; ".join(parts)
