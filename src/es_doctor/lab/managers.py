"""The service's ~25 managers behind a coordinator: heartbeats, status and discovery."""

from __future__ import annotations

import threading
import time
from typing import Any

from es_doctor.lab.jsonlog import JsonLogger, utc_now_iso
from es_doctor.lab.metrics import Metrics

MANAGERS: tuple[str, ...] = (
    "config-manager", "cache-manager", "email-manager", "notification-manager", "security-manager",
    "monitoring-manager", "storage-manager", "dependency-manager", "process-manager",
    "container-manager", "deployment-manager", "integration-manager", "template-manager",
    "queue-manager", "scheduler-manager", "vector-manager", "database-manager", "auth-manager",
    "audit-manager", "backup-manager", "metrics-manager", "logging-manager", "network-manager",
    "workflow-manager", "maintenance-manager",
)
COORDINATOR = "coordinator"
DOWN_MANAGER = "notification-manager"
#: managers the ``discovery-broken`` fault makes undiscoverable
LOST_IN_DISCOVERY: tuple[str, ...] = (
    "notification-manager", "integration-manager", "storage-manager", "scheduler-manager",
    "backup-manager",
)
HEARTBEAT_S = 2.0
STALE_S = 300.0


class Managers:
    def __init__(self, metrics: Metrics, journal: JsonLogger) -> None:
        self._metrics = metrics
        self._journal = journal
        self._lock = threading.Lock()
        self.names: tuple[str, ...] = (*MANAGERS, COORDINATOR)
        now = time.time()
        self._heartbeat = dict.fromkeys(self.names, now)
        self._down: set[str] = set()
        self._discovered: list[str] = list(MANAGERS)
        for name in self.names:
            metrics.managers_up.labels(manager=name).set(1)

    def heartbeat_all(self) -> list[str]:
        """One heartbeat round; returns the managers that did beat."""
        now = time.time()
        with self._lock:
            alive = [n for n in self.names if n not in self._down]
            for n in alive:
                self._heartbeat[n] = now
        return alive

    def set_down(self, name: str, down: bool) -> None:
        with self._lock:
            if down:
                self._down.add(name)
                self._heartbeat[name] = time.time() - STALE_S
            else:
                self._down.discard(name)
                self._heartbeat[name] = time.time()
        self._metrics.managers_up.labels(manager=name).set(0 if down else 1)
        if down:
            self._journal.error("coordinator", f"manager {name} missed heartbeats: marked down",
                            error="heartbeat timeout")
        else:
            self._journal.info("coordinator", f"manager {name} is back: heartbeat received")

    def status(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {
                    "name": n,
                    "status": "down" if n in self._down else "healthy",
                    "last_heartbeat": utc_now_iso(self._heartbeat[n]),
                }
                for n in self.names
            ]

    def discovery(self) -> dict[str, Any]:
        with self._lock:
            return {"expected": list(MANAGERS), "discovered": list(self._discovered)}

    def break_discovery(self) -> None:
        """The ``discovery-broken`` fault (one-shot): some managers are no longer discovered."""
        with self._lock:
            self._discovered = [n for n in MANAGERS if n not in LOST_IN_DISCOVERY]
        self._journal.error("coordinator", "manager discovery degraded: "
                        f"{len(self._discovered)}/{len(MANAGERS)} managers discovered",
                        error="discovery timeout: " + ",".join(LOST_IN_DISCOVERY))

    def discovery_broken(self) -> bool:
        with self._lock:
            return len(self._discovered) < len(MANAGERS)

    def restart_discovery(self) -> None:
        with self._lock:
            self._discovered = list(MANAGERS)
        self._journal.info("coordinator", f"manager discovery restarted: {len(MANAGERS)}/{len(MANAGERS)} discovered")
