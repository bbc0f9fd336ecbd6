"""The one table of the lab's faults: what each does, how it is injected, which checks it trips, which
others it really causes, and which runbook cures it.

Read by ``es-doctor lab faults``, by :mod:`es_doctor.lab.faults` (which attaches the injection code),
by the lab programs (runtime faults are named here: a typo fails at import) and by the tests (the
fault → check cases, the fault → cure cases, and the "nothing else trips" lab test). Light: no
import of the lab's machinery, so the programs can read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

#: checks that report history (the last minute of logs, Prometheus' alerts over their rule windows, the
#: uptime over its window): a fault may leave them tripped for a while after it is cured, any fault that
#: makes the service fail requests may fire an alert, and any fault that stops or restarts the service (or
#: its metrics endpoint) costs uptime (the lab's window: 30 s, lab/layout.LAB_UPTIME_WINDOW_S)
#: the ratio signals and the search latency widen their window to the lab's signal window (a minute of
#: Prometheus' history, lab/layout.LAB_SIGNAL_WINDOW_S) when two scrapes hold too few requests: they too
#: report the last minute
HISTORY_CHECKS = frozenset({"performance.slow-log", "inter-manager.eventbus-log", "monitoring.alerts",
                            "monitoring.uptime", "performance.error-rate", "vectors.insert-errors",
                            "vectors.search"})


@dataclass(frozen=True)
class FaultSpec:
    name: str
    description: str
    #: runtime: a name in faults.json that a lab program polls; orchestration: real state changed
    kind: Literal["runtime", "orchestration"]
    #: the lab program that reads the fault's name in faults.json (every runtime fault; service-exits
    #: too, an orchestration fault that restarts the service with its name listed); pprofd is the lab's
    #: Go program (lab/go/pprofd.go), present where Go is installed
    program: Literal["service", "qdrant", "pprofd"] | None = None
    #: check id → the status the fault must give it (WARN, CRIT, or SKIP for a check it silences)
    trips: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    #: other checks the fault really causes (allowed to trip too)
    also: frozenset[str] = frozenset()
    #: the runbook (and its parameters) that cures it, or None when only `lab fault clear` does
    cure: tuple[str, Mapping[str, str]] | None = None
    #: the finding the cure is applied through (`es-doctor fix <finding>`): its first trip by default
    finding: str | None = None
    #: one-shot runtime faults act once; the API path that cures them (cleared by calling it)
    one_shot_cure: str | None = None
    docker_only: bool = False
    #: the lab component the fault needs (absent in some labs)
    needs: str | None = None

    @property
    def cure_finding(self) -> str | None:
        if self.cure is None:
            return None
        return self.finding or next((c for c, s in self.trips.items() if s in ("WARN", "CRIT")), None)


def _f(name: str, description: str, kind: Literal["runtime", "orchestration"], *,
       program: Literal["service", "qdrant", "pprofd"] | None = None, trips: dict[str, str] | None = None,
       also: tuple[str, ...] = (), cure: str | None = None, params: dict[str, str] | None = None,
       finding: str | None = None, one_shot_cure: str | None = None, docker_only: bool = False,
       needs: str | None = None) -> FaultSpec:
    return FaultSpec(name, description, kind, program, MappingProxyType(dict(trips or {})), frozenset(also),
                     (cure, MappingProxyType(dict(params or {}))) if cure else None, finding, one_shot_cure,
                     docker_only, needs)


_DOWN_SERVICE = ("startup.api-port", "startup.health", "startup.container", "startup.go-env",
                 "deploy.containers", "monitoring.metrics-endpoint", "monitoring.prometheus-target",
                 "startup.service-mode", "inter-manager.status", "inter-manager.discovery")

#: checks that read the service's API: a fault that fails a share of its requests fails theirs too
_API_READERS = ("startup.health", "inter-manager.status", "inter-manager.discovery")

TABLE: tuple[FaultSpec, ...] = (
    _f("slow-api-warn", "API answers in ~150-300 ms (p95 above the 100 ms WARNING threshold)", "runtime",
       program="service", trips={"performance.latency": "WARN"}),
    _f("slow-api-crit", "API answers in ~600 ms+ (p95 above the 500 ms CRITICAL threshold)", "runtime",
       program="service", trips={"performance.latency": "CRIT"}, cure="vector-cache-tune"),
    _f("errors-warn", "~4 % of API requests fail with 500 (error rate WARNING)", "runtime", program="service",
       trips={"performance.error-rate": "WARN"}, also=_API_READERS),
    _f("errors-crit", "~10 % of API requests fail with 500 (error rate CRITICAL)", "runtime", program="service",
       trips={"performance.error-rate": "CRIT"}, also=_API_READERS),
    _f("memory-pressure", "the service holds ~90 % of its memory limit", "runtime", program="service",
       trips={"performance.memory": "WARN"}, cure="go-gc-tune"),
    _f("memory-critical", "the service holds ~97 % of its memory limit", "runtime", program="service",
       trips={"performance.memory": "CRIT"}),
    _f("slow-logs", "the service logs SLOW operations (WARN lines with durations)", "runtime", program="service",
       trips={"performance.slow-log": "WARN"}, cure="qdrant-connection-pool"),
    _f("security-attack", "wrong bearer tokens from 3 forwarded addresses hit the API (401, SECURITY log lines)",
       "runtime", program="service"),
    _f("vector-insert-errors", "some vector inserts use a wrong dimension and fail", "runtime", program="service",
       trips={"vectors.insert-errors": "WARN"}),
    _f("qdrant-flaky", "the service's calls to Qdrant fail intermittently (connection errors)", "runtime",
       program="service", trips={"vectors.connection-errors": "CRIT", "monitoring.alerts": "CRIT"},
       also=("vectors.insert-errors", "performance.error-rate")),
    _f("manager-down", "one manager stops its heartbeat and reads down", "runtime", program="service",
       trips={"inter-manager.status": "CRIT"}),
    _f("discovery-broken", "manager discovery loses managers (cured by POST discovery/restart)", "runtime",
       program="service", trips={"inter-manager.discovery": "CRIT"}, cure="manager-discovery-restart",
       one_shot_cure="/api/v1/managers/discovery/restart"),
    _f("event-bus-saturated", "the event bus buffer fills up and drops events (cured by POST events/purge)",
       "runtime", program="service",
       trips={"inter-manager.event-bus": "CRIT", "inter-manager.eventbus-log": "WARN"}, cure="event-bus-purge",
       one_shot_cure="/api/v1/events/purge"),
    _f("slow-vector-search", "Qdrant answers searches ~80 ms slower (vector search latency WARNING)", "runtime",
       program="qdrant", trips={"vectors.search": "WARN"}, also=("performance.latency",)),
    _f("service-exits", "the service exits with code 1 at start (FATAL in its log)", "orchestration",
       program="service", trips={"startup.api-port": "CRIT", "startup.container": "CRIT", "deploy.containers": "CRIT"},
       also=_DOWN_SERVICE),
    _f("config-missing", "config.yaml is moved away and the service restarted (FATAL, exit 1)", "orchestration",
       trips={"startup.config-file": "CRIT"}, also=_DOWN_SERVICE, cure="config-missing",
       finding="startup.config-file"),
    _f("go-env-unset", "the service is recreated without GO_ENV (/ready answers 503)", "orchestration",
       trips={"startup.go-env": "CRIT", "startup.health": "CRIT"}, cure="config-missing"),
    _f("port-taken", "another process holds the API port; the service fails to bind (exit 1)", "orchestration",
       trips={"startup.port-owner": "CRIT"}, also=_DOWN_SERVICE, cure="port-in-use"),
    _f("qdrant-down", "the qdrant container/process is stopped", "orchestration",
       trips={"startup.qdrant": "CRIT", "vectors.qdrant": "CRIT", "vectors.collection": "SKIP"},
       also=("deploy.containers", "startup.health", "vectors.insert-errors", "vectors.connection-errors",
             "performance.error-rate", "performance.latency"),
       cure="dependency-restart", params={"component": "qdrant"}),
    _f("postgres-down", "the postgres container/process is stopped", "orchestration",
       trips={"startup.postgres": "CRIT"},
       also=("deploy.containers", "startup.health", "performance.error-rate", "performance.latency"),
       cure="dependency-restart", params={"component": "postgres"}, needs="postgres"),
    _f("collection-missing", "Qdrant's task_vectors collection is deleted", "orchestration",
       trips={"vectors.collection": "CRIT", "vectors.dimensions": "SKIP"}, also=("vectors.insert-errors",)),
    _f("wrong-vector-size", "task_vectors is recreated with 768-dimension vectors (expected 1536)",
       "orchestration", trips={"vectors.dimensions": "CRIT"}, also=("vectors.insert-errors",),
       cure="qdrant-dimension-fix"),
    _f("metrics-off", "metrics.enabled is false in config.yaml and the service restarted", "orchestration",
       trips={"monitoring.metrics-endpoint": "CRIT", "monitoring.prometheus-target": "CRIT"},
       cure="metrics-endpoint-enable"),
    _f("deploy-log-errors", "a deployment log and a migration log with ERROR lines appear in logs/",
       "orchestration", trips={"deploy.deployment-log": "CRIT", "deploy.migration-log": "CRIT"}),
    _f("image-drift", "the service container is recreated from email-sender-go:previous", "orchestration",
       trips={"deploy.image-drift": "WARN"}, cure="redeploy-image", docker_only=True),
    _f("prometheus-down", "the prometheus container/process is stopped", "orchestration",
       trips={"monitoring.prometheus": "CRIT"}, also=("deploy.containers",), cure="monitoring-restart",
       needs="prometheus"),
    # the lab's Go program (real pprof, where Go is installed): no diagnose check reads pprof, so these trip
    # none; `es-doctor profile goroutine|heap --compare` shows them, and `lab fault clear` ends them
    _f("goroutine-leak", "the Go program starts goroutines (main.leakWorker) that park forever, 20 every 0.5 s "
       "(es-doctor -t lab profile goroutine --compare last shows them)", "runtime", program="pprofd"),
    _f("heap-growth", "the Go program retains 256 KiB more heap (main.growCache) every 0.5 s, up to 64 MiB "
       "(es-doctor -t lab profile heap --compare last shows it)", "runtime", program="pprofd"),
)

FAULT_SPECS: Mapping[str, FaultSpec] = MappingProxyType({f.name: f for f in TABLE})
RUNTIME_FAULTS: frozenset[str] = frozenset(f.name for f in TABLE if f.kind == "runtime")
#: every name a lab program reads in faults.json
PROGRAM_FAULTS: frozenset[str] = frozenset(f.name for f in TABLE if f.program is not None)
ONE_SHOT_FAULTS: frozenset[str] = frozenset(f.name for f in TABLE if f.one_shot_cure)


def used(program: Literal["service", "qdrant", "pprofd"], *names: str) -> frozenset[str]:
    """The runtime faults a lab program's module acts on, checked against the table at import (a
    typo, or a fault the table gives to another program, fails there); a test checks that every
    runtime fault of the table is acted on by its program."""
    for name in names:
        spec = FAULT_SPECS.get(name)
        if spec is None or spec.program != program:
            raise ValueError(f"{name!r} is not a runtime fault of the lab's {program} (see lab/fault_table.py)")
    return frozenset(names)
