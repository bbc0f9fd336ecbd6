"""Stand-in for the email-sender-go service: ``python -m es_doctor.lab.service --config PATH``.

Serves the API (STACK.md shapes) on ``api.port``, Prometheus metrics and pprof-shaped pages on
``metrics.port``, writes JSON logs to ``<logging.dir>/email-sender.log``, generates its own traffic,
runs an event bus and stores tasks in Qdrant (over HTTP) and optionally PostgreSQL. Runtime faults
come from ``lab.faults_file`` (or ``$LAB_FAULTS_FILE``), see :mod:`es_doctor.lab.runtime_faults`.
Exit codes: 0 on SIGTERM/SIGINT, 1 on a FATAL startup error.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

from es_doctor.lab import effects
from es_doctor.lab.api import make_api_server
from es_doctor.lab.eventbus import EventBus
from es_doctor.lab.fault_table import FAULT_SPECS, used
from es_doctor.lab.jsonlog import JsonLogger, fatal
from es_doctor.lab.managers import DOWN_MANAGER, HEARTBEAT_S, Managers
from es_doctor.lab.metrics import Metrics, make_metrics_server
from es_doctor.lab.runtime_faults import FaultWatcher
from es_doctor.lab.service_config import ConfigLoadError, ServiceConfig, load_config, log_dir_hint
from es_doctor.lab.traffic import TrafficGenerator
from es_doctor.lab.vectors import VectorError, VectorService

#: the runtime faults this program acts on (names checked against the lab's fault table)
FAULTS = used("service", "memory-critical", "memory-pressure", "slow-api-warn", "slow-api-crit", "slow-logs",
              "service-exits", "security-attack", "manager-down", "discovery-broken", "event-bus-saturated")

#: every runtime fault of the lab's service (this module's, the API's, the vector service's)
SERVICE_FAULTS = frozenset(name for name, spec in FAULT_SPECS.items() if spec.program == "service")

#: documentation addresses (RFC 5737): the lab's attackers
ATTACKERS = ("203.0.113.7", "203.0.113.8", "198.51.100.23")
MEMORY_FRACTION = {"memory-critical": 0.97, "memory-pressure": 0.90}


def cured_by_config(cfg: ServiceConfig, env: Any) -> frozenset[str]:
    """The guide's remedies, as the real service would feel them after a restart with them:
    a big vector cache absorbs the slow lookups, a big Qdrant pool ends the SLOW queries, a low
    GOGC keeps the heap down."""
    cured: set[str] = set()
    if cfg.cache_max_size >= 10000:
        cured |= {"slow-api-warn", "slow-api-crit"}
    if cfg.pool_max_connections >= 20:
        cured.add("slow-logs")
    gogc = str(env.get("GOGC", "")).strip()
    if gogc.isdigit() and int(gogc) < 100:
        cured |= {"memory-pressure", "memory-critical"}
    if env.get("LAB_RELEASE") == "previous":  # the crash at start came with the new release
        cured.add("service-exits")
    return frozenset(cured)


class App:
    """Everything the running service holds."""

    def __init__(self, cfg: ServiceConfig, journal: JsonLogger, metrics: Metrics) -> None:
        self.cfg, self.journal, self.metrics = cfg, journal, metrics
        self.stop = threading.Event()
        self.go_env = os.environ.get("GO_ENV") or None
        self.faults = FaultWatcher(cfg.faults_file, self.on_faults_changed)
        self.faults.cured = cured_by_config(cfg, os.environ)
        self.bus = EventBus(cfg.bus_buffer_size, cfg.bus_workers, metrics, journal)
        self.managers = Managers(metrics, journal)
        self.vectors = VectorService(cfg, metrics, journal, self.faults.active)
        self.ballast = effects.Ballast(cfg.memory_limit_bytes)
        self.pg: Any = None
        if cfg.postgres_dsn:
            from es_doctor.lab.pgstore import PgStore

            self.pg = PgStore(cfg.postgres_dsn, cfg.pool_max_connections, cfg.pool_idle_timeout_s, metrics)
        self._ids = int(time.time() * 1000)
        self._lock = threading.Lock()
        self._mode = self._load_mode()
        self._rng = random.Random()

    # --- maintenance / read-only (persisted) ---
    def _load_mode(self) -> dict[str, bool]:
        try:
            data = json.loads(self.cfg.state_file.read_text(encoding="utf-8"))
            return {k: bool(data.get(k, False)) for k in ("readonly", "maintenance")}
        except (OSError, ValueError, AttributeError):
            return {"readonly": False, "maintenance": False}

    def mode(self) -> dict[str, bool]:
        with self._lock:
            return dict(self._mode)

    def set_mode(self, key: str, enabled: bool) -> None:
        with self._lock:
            self._mode[key] = enabled
            state = self.cfg.state_file
            state.parent.mkdir(parents=True, exist_ok=True)
            tmp = state.with_name(state.name + ".tmp")
            tmp.write_text(json.dumps(self._mode) + "\n", encoding="utf-8")
            tmp.replace(state)
        component = "SECURITY" if key == "maintenance" else "maintenance"
        self.journal.warn(component, f"{key} mode {'enabled' if enabled else 'disabled'}: writes "
                      f"{'refused' if enabled else 'accepted'}")

    # --- data ---
    def store_task(self, title: str) -> int:
        if self.pg is not None:
            task_id: int = self.pg.insert_task(title)
            return task_id
        with self._lock:
            self._ids += 1
            return self._ids

    def waiting_for(self) -> list[str]:
        waiting = [] if self.go_env else ["config"]
        if not self.vectors.reachable():
            waiting.append("qdrant")
        if self.pg is not None and not self.pg.ping():
            waiting.append("postgres")
        return waiting

    # --- runtime faults ---
    def attack(self, port: int) -> None:
        """Fault security-attack: brute-force logins from a few addresses (real requests, wrong tokens)."""
        if not self.faults.active("security-attack"):
            return
        import httpx

        attacker = self._rng.choice(ATTACKERS)
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/api/v1/managers/status", timeout=2,
                      headers={"Authorization": f"Bearer guess-{self._rng.randrange(10**6)}",
                               "X-Forwarded-For": attacker})

    def on_faults_changed(self, added: frozenset[str], removed: frozenset[str], initial: bool = False) -> None:
        try:
            self._apply_faults(added, removed, initial)
        except Exception as exc:  # noqa: BLE001 - a fault must never kill the watcher
            self.journal.error("lab", "applying runtime faults failed", error=repr(exc))

    def _apply_faults(self, added: frozenset[str], removed: frozenset[str], initial: bool) -> None:
        self.journal.log("DEBUG", "lab", f"runtime faults: +{sorted(added)} -{sorted(removed)}")
        changed = added | removed
        if "manager-down" in changed:
            self.managers.set_down(DOWN_MANAGER, self.faults.active("manager-down"))
        if changed & set(MEMORY_FRACTION):
            fraction = next((f for n, f in MEMORY_FRACTION.items() if self.faults.active(n)), 0.0)
            self.ballast.set_fraction(fraction)
        if initial:
            return  # one-shot faults already listed at start count as already fired
        if "discovery-broken" in added:
            self.managers.break_discovery()
        if "event-bus-saturated" in added:
            self.bus.saturate()

    def lab_state(self) -> dict[str, Any]:
        """The faults file's names this program saw, those of its faults still in effect (not cured by
        its configuration, and for one-shot faults not cured through the API or by a restart), its
        GO_ENV and its image's release."""
        names = self.faults.names()
        effects: dict[str, Callable[[], bool]] = {"discovery-broken": self.managers.discovery_broken,
                                                  "event-bus-saturated": lambda: self.bus.paused}
        in_effect = [n for n in names
                     if n in SERVICE_FAULTS and self.faults.active(n) and effects.get(n, lambda: True)()]
        return {"faults": names, "in_effect": in_effect, "go_env": self.go_env,
                "release": os.environ.get("LAB_RELEASE") or "current"}

    # --- background loops ---
    def heartbeat(self) -> None:
        for name in self.managers.heartbeat_all():
            self.bus.publish("manager.heartbeat", manager=name)

    def slow_logs(self) -> None:
        if self.faults.active("slow-logs"):
            effects.slow_log_tick(self.journal, self._rng)

    def warm_up(self) -> None:
        """Pay the stand-in's first-call costs before the API serves (a Go service has none of them, and
        the lab's first requests must not log SLOW lines that a fresh lab's diagnosis would report): the
        PostgreSQL pool's first connection and the tasks table, the connection to Qdrant, a first search."""
        if self.pg is not None and self.pg.ping():
            with contextlib.suppress(Exception):
                self.pg.ensure_table()
        if self.vectors.reachable():
            with contextlib.suppress(VectorError):
                self.vectors.search("warm-up", 1)

    def seed_tasks(self) -> None:
        if any(self.mode().values()):  # read-only or maintenance: the service writes nothing, seeds included
            return
        for i in range(self.cfg.seed_tasks):
            if self.stop.is_set():
                return
            title = f"seed task {i + 1}"
            task_id = self.store_task(title)
            try:
                self.vectors.insert(task_id, title)
            except VectorError:
                continue


def _bind(kind: str, host: str, port: int, make: Any, log_dir: Path) -> ThreadingHTTPServer:
    try:
        server: ThreadingHTTPServer = make(host, port)
        return server
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            fatal(log_dir, f"listen tcp :{port}: bind: address already in use", error=f"{kind} server")
        else:
            fatal(log_dir, f"listen tcp {host}:{port}: bind: {exc.strerror or exc}", error=f"{kind} server")
        sys.exit(1)


def run(cfg: ServiceConfig) -> int:
    journal = JsonLogger(cfg.log_dir, cfg.log_level, console=cfg.console_log)
    metrics = Metrics()
    app = App(cfg, journal, metrics)
    if app.faults.active("service-exits"):
        fatal(cfg.log_dir, "startup aborted: coordinator failed to initialize managers",
              error="dependency-manager: init timeout (lab fault service-exits)")
        return 1
    journal.info("main", f"starting email-sender-go (lab) with config {cfg.path}")
    if not app.go_env:
        journal.warn("config", "GO_ENV not set: environment unknown, not ready until configured")
    api = _bind("api", cfg.api_host, cfg.api_port, lambda h, p: make_api_server(h, p, app), cfg.log_dir)
    servers = [api]
    if cfg.metrics_enabled:
        servers.append(_bind("metrics", cfg.metrics_host, cfg.metrics_port,
                             lambda h, p: make_metrics_server(h, p, cfg.metrics_path, metrics), cfg.log_dir))
    app.on_faults_changed(app.faults.initial, frozenset(), initial=True)
    app.warm_up()
    for s in servers:
        threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    app.bus.start()
    app.faults.start()
    effects.run_periodic(app.stop, HEARTBEAT_S, app.heartbeat, "heartbeat")
    effects.run_periodic(app.stop, 0.4, app.slow_logs, "slow-logs")
    effects.run_periodic(app.stop, 0.3, lambda: app.attack(cfg.api_port), "security-attack")
    effects.run_periodic(app.stop, 1.0, app.ballast.adjust, "ballast")
    traffic = TrafficGenerator(f"http://{cfg.api_host}:{cfg.api_port}", cfg.traffic_rps, app.stop)

    def seed_then_traffic() -> None:  # the seed tasks first: the traffic does not queue behind them
        app.seed_tasks()
        traffic.start()

    threading.Thread(target=seed_then_traffic, name="seed", daemon=True).start()
    journal.info("main", f"API listening on {cfg.api_host}:{cfg.api_port}"
             + (f", metrics on {cfg.metrics_host}:{cfg.metrics_port}{cfg.metrics_path}"
                if cfg.metrics_enabled else ", metrics disabled"))

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        app.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not app.stop.wait(0.2):
        pass
    journal.info("main", "shutting down")
    app.faults.stop()
    app.bus.stop()
    for s in servers:
        s.shutdown()
        s.server_close()
    app.vectors.close()
    if app.pg is not None:
        app.pg.close()
    journal.close()
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="es_doctor.lab.service", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="path of config.yaml")
    parser.add_argument("--log-dir", type=Path, default=None,
                        help="where a FATAL line goes when config.yaml cannot be read (default: ./logs)")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config)
    except ConfigLoadError as exc:
        fatal(log_dir_hint(args.config, args.log_dir), str(exc))
        sys.exit(1)
    code = run(cfg)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
