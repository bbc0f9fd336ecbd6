"""The daemon: settings from the configuration, the schedule, the latest reports, reload on SIGHUP."""

from __future__ import annotations

import ipaddress
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from es_doctor.config import LoadedConfig, Target
from es_doctor.errors import ConfigError
from es_doctor.findings import Report
from es_doctor.secrets import resolve_secret
from es_doctor.serve.page import TargetView
from es_doctor.serve.scheduler import Scheduler, Timing
from es_doctor.serve.store import Store
from es_doctor.serve.widgets import Board


@dataclass
class Settings:
    host: str
    port: int
    interval_s: float
    jitter_pct: float
    #: the resolved bearer token (never printed), or None
    token: str | None
    token_ref: str | None
    retention_days: float
    state_dir: Path
    targets: dict[str, Target] = field(default_factory=dict)
    #: each target's loaded configuration (the engine, the audit log, escalation and remediation read it)
    loaded: dict[str, LoadedConfig] = field(default_factory=dict)

    @property
    def listen(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"serve listen address '{text}' is not HOST:PORT", key="serve.listen")
    return host.strip("[]") or "0.0.0.0", int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def settings_from(loaded: list[LoadedConfig], listen: str | None = None, interval_s: float | None = None) -> Settings:
    """The daemon's settings from the loaded targets (their file's ``serve`` section) and the options.
    Refuses (ConfigError) a non-loopback address without a token."""
    config = loaded[0].config
    serve = config.serve
    host, port = parse_listen(listen or serve.listen)
    token = resolve_secret(serve.token) if serve.token else None
    if serve.token and not token:
        raise ConfigError(f"serve.token names {serve.token}, which is not set", source=loaded[0].source,
                          key="serve.token")
    if not is_loopback(host) and not token:
        raise ConfigError(f"refusing to listen on {host}:{port} without a bearer token: set serve.token "
                          "(env:NAME) in the config, or listen on 127.0.0.1", source=loaded[0].source,
                          key="serve.token")
    interval = interval_s if interval_s is not None else serve.interval_s
    if interval < 1:
        raise ConfigError("the serve interval must be at least 1 s", key="serve.interval_s")
    return Settings(host, port, interval, serve.jitter_pct, token, serve.token, serve.history_retention_days,
                    Path(config.state_dir).expanduser(), {item.target_name: item.target for item in loaded},
                    {item.target_name: item for item in loaded})


def default_run(name: str, target: Target) -> Report:
    from es_doctor.runner import diagnose

    return diagnose(target, name)


class Daemon:
    """Owns the schedule and the results; the HTTP server reads from it."""

    def __init__(self, load: Callable[[], Settings], run: Callable[[str, Target], Report] = default_run,
                 store_path: Path | None = None, widgets: bool = True) -> None:
        self._load = load
        self.settings = load()
        self._lock = threading.Lock()
        self._reports: dict[str, Report] = {}
        self._boards: dict[str, Board] = {}
        self._run = run
        self._widgets = widgets
        self.store = Store(store_path or self.settings.state_dir / "serve" / "serve.db", self.settings.retention_days)
        self.scheduler: Scheduler[Target, Report] = Scheduler(
            self._run_target, self._done, Timing(self.settings.interval_s, self.settings.jitter_pct))
        self._reload_ok = True
        self._loaded_at = time.time()
        #: bumped at every new report or reload; the server re-renders what it caches when it changes
        self.version = 0
        self._listeners: list[Callable[[], None]] = []
        self._reload_requested = threading.Event()
        self._stopping = threading.Event()
        self._control = threading.Thread(target=self._control_loop, name="serve:control", daemon=True)
        from es_doctor.remediation.worker import Remediator

        #: alerts → remediation requests → cures (each target's in its own thread)
        self.remediator = Remediator(self.store.requests, self._loaded_configs)

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self.scheduler.set_targets(dict(self.settings.targets))
        self._control.start()
        if self.settings.token:
            self.remediator.start()

    def stop(self) -> None:
        self._stopping.set()
        self._reload_requested.set()
        self.scheduler.stop(wait_s=2.0)
        self.remediator.stop()
        self.store.close()

    def _loaded_configs(self) -> dict[str, LoadedConfig]:
        with self._lock:
            return dict(self.settings.loaded)

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (in the thread that made the change) after every new report or reload."""
        self._listeners.append(listener)

    def _changed(self) -> None:
        with self._lock:
            self.version += 1
        for listener in list(self._listeners):
            try:
                listener()
            except Exception as exc:  # noqa: BLE001 - a renderer's bug must not stop the schedule
                print(f"es-doctor serve: re-rendering failed: {type(exc).__name__}: {exc}", file=sys.stderr)

    def install_sighup(self) -> None:
        """SIGHUP asks for a reload (done by the control thread, not in the handler)."""
        def handler(signum: int, frame: FrameType | None) -> None:
            self._reload_requested.set()

        signal.signal(signal.SIGHUP, handler)

    def request_reload(self) -> None:
        self._reload_requested.set()

    def _control_loop(self) -> None:
        while not self._stopping.is_set():
            self._reload_requested.wait()
            if self._stopping.is_set():
                return
            self._reload_requested.clear()
            self.reload()

    def reload(self) -> bool:
        """Load the configuration again; a bad one is refused and the one in use kept."""
        try:
            new = self._load()
        except ConfigError as exc:
            self._reload_ok = False
            print(f"es-doctor serve: reload refused, keeping the previous configuration: {exc.message}",
                  file=sys.stderr, flush=True)
            self._changed()
            return False
        if (new.host, new.port) != (self.settings.host, self.settings.port):
            print(f"es-doctor serve: the listen address changed to {new.listen}: it takes effect at restart; "
                  f"still on {self.settings.listen}", file=sys.stderr, flush=True)
            new.host, new.port = self.settings.host, self.settings.port
        if new.token is None and self.settings.token is not None and not is_loopback(new.host):
            self._reload_ok = False
            print("es-doctor serve: reload refused, keeping the previous configuration: the new one has no "
                  "serve.token and the daemon listens off loopback", file=sys.stderr, flush=True)
            self._changed()
            return False
        with self._lock:
            for gone in [n for n in self._reports if n not in new.targets]:
                self._reports.pop(gone, None)
                self._boards.pop(gone, None)
            self.settings = new
            self.store.retention_days = new.retention_days
        self.scheduler.set_targets(dict(new.targets), Timing(new.interval_s, new.jitter_pct))
        self._reload_ok = True
        self._loaded_at = time.time()
        self._changed()
        print(f"es-doctor serve: configuration reloaded: {len(new.targets)} target(s): "
              f"{', '.join(new.targets)}", file=sys.stderr, flush=True)
        return True

    # ---------------------------------------------------------------- one round of one target

    def _run_target(self, name: str, target: Target) -> Report:
        report = self._run(name, target)
        if self._widgets:
            board = self._board(name)
            try:
                board.sample(target, report)
            except Exception as exc:  # noqa: BLE001 - widgets are a bonus: the report still counts
                print(f"es-doctor serve: target {name}: widgets: {type(exc).__name__}: {exc}", file=sys.stderr)
        return report

    def _board(self, name: str) -> Board:
        with self._lock:
            return self._boards.setdefault(name, Board())

    def _done(self, name: str, report: Report) -> None:
        from es_doctor.findings import sanitize_report

        with self._lock:
            if name not in self.settings.targets:
                return
        report = sanitize_report(report)  # as diagnose's renderers do: the API's JSON is diagnose's JSON
        self.store.record(report)
        with self._lock:
            self._reports[name] = report
        self._changed()

    # ---------------------------------------------------------------- what the server reads

    def names(self) -> list[str]:
        with self._lock:
            return list(self.settings.targets)

    def reports(self) -> dict[str, Report]:
        with self._lock:
            return dict(self._reports)

    def run_counts(self) -> dict[str, tuple[int, int]]:
        return {name: (s.runs, s.failures) for name, s in self.scheduler.stats().items()}

    def reload_state(self) -> tuple[bool, float]:
        return self._reload_ok, self._loaded_at

    def ready(self) -> tuple[bool, list[str]]:
        """Every target diagnosed at least once; else the ones still waiting."""
        reports = self.reports()
        waiting = [n for n in self.names() if n not in reports]
        return not waiting, waiting

    def views(self) -> list[TargetView]:
        reports = self.reports()
        stats = self.scheduler.stats()
        views = []
        for name in self.names():
            with self._lock:
                board = self._boards.get(name)
            widgets = list(board.widgets) if board else []
            running = stats[name].running if name in stats else False
            views.append(TargetView(name, reports.get(name), self.store.since(name), widgets, running))
        return views
