"""One probe session per run: the one place that builds a target's clients (with its resolved
secrets), caches per run what should be read once, and closes them.

Checks reach it through :class:`es_doctor.checks.context.CheckContext`, runbook actions through
:class:`es_doctor.runbooks.actions.ActionContext` (whose session the backup, validation and restore
parts of :mod:`es_doctor.backup` are given), the commands that read a target outside a run
(``emergency status``, ``logs``, ``load``, serve's widgets) through a session they open in a ``with``
block. None of them builds a probe or an SDK client of its own: ``tests/unit/test_layers.py`` fails
when a module outside ``probes/`` calls a probe's constructor or an SDK client. The bearer header of
the service's API is built once (:func:`es_doctor.probes.http.bearer_headers`).

Every session is closed by whoever opened it; :func:`open_sessions` counts the ones not closed yet
(a test holds that a command leaves none), and a session collected unclosed warns
(``ResourceWarning``).
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
import sys
import threading
import warnings
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from es_doctor.secrets import resolve_secret

if TYPE_CHECKING:
    from es_doctor.config import Target
    from es_doctor.probes.docker import DockerProbe
    from es_doctor.probes.http import HttpProbe
    from es_doctor.probes.postgres import AdvisoryLock, PostgresProbe
    from es_doctor.probes.prometheus import PrometheusProbe
    from es_doctor.probes.qdrant import QdrantProbe
    from es_doctor.probes.service import ServiceApi

T = TypeVar("T")

#: the serial numbers of the sessions made and not closed yet (a session collected unclosed stays counted)
_OPEN: set[int] = set()
_SERIAL = itertools.count(1)


def open_sessions() -> int:
    """How many probe sessions were made and not closed in this process (collected ones included)."""
    return len(_OPEN)


def service_headers(target: Target) -> dict[str, str]:
    """The headers of a request to the service's own API: its bearer token, resolved now (or none)."""
    from es_doctor.probes.http import bearer_headers

    return bearer_headers(resolve_secret(target.service.api_key))


def sdk_modules(target: Target, components: Iterable[str]) -> list[str]:
    """The SDK and parser modules the checks of ``components`` will import on ``target`` (present
    components only). qdrant-client only for an embedded Qdrant (a server is read over REST), the
    docker SDK only for an engine not on a Unix socket (a socket is read over the Engine API)."""
    wanted = {c for c in components if target.is_present(c)[0]}
    modules = []
    if "service" in wanted:
        modules += ["prometheus_client.parser", "psutil"]  # the metrics window's parser, the port owner
    if "postgres" in wanted:
        modules.append("psycopg")
    if "docker" in wanted:
        from es_doctor.probes.docker import DockerProbe

        if DockerProbe(host=target.docker.host).socket_path() is None:
            modules.append("docker")
    if "qdrant" in wanted and target.qdrant.url.startswith("local:"):
        modules.append("qdrant_client")
    return modules


def preload(modules: Iterable[str]) -> threading.Thread | None:
    """Import ``modules`` in a background thread, started now: the first checks wait on the network
    meanwhile, and a check that needs one of them waits for that import only (Python's per-module
    import lock), never imports it twice. A module that fails to import is left for its probe to
    report."""
    names = [m for m in modules if m not in sys.modules]
    if not names:
        return None

    def load() -> None:
        for name in names:
            with contextlib.suppress(Exception):  # the probe that needs it reports the failure
                importlib.import_module(name)

    thread = threading.Thread(target=load, name="es-doctor-preload", daemon=True)
    thread.start()
    return thread


class ProbeSession:
    """The clients of one target for one run (diagnosis, runbook run, backup). ``timeout`` bounds
    every call; the Docker engine gets twice as long (its API answers slower under load)."""

    def __init__(self, target: Target, *, timeout: float, docker_timeout: float | None = None) -> None:
        self.target = target
        self.timeout = timeout
        self.docker_timeout = docker_timeout if docker_timeout is not None else timeout * 2
        self._memo: dict[str, Any] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.closed = False
        self.serial = next(_SERIAL)
        _OPEN.add(self.serial)

    # ---- per-run cache (thread-safe: concurrent checks share one computation)
    def memo(self, key: str, compute: Callable[[], T]) -> T:
        with self._guard:
            if key in self._memo:
                return self._memo[key]  # type: ignore[no-any-return]
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            with self._guard:
                if key in self._memo:
                    return self._memo[key]  # type: ignore[no-any-return]
            value = compute()
            with self._guard:
                self._memo[key] = value
            return value

    # ---- clients
    def http(self) -> HttpProbe:
        """HTTP with the service's bearer token (for its API)."""
        from es_doctor.probes.http import HttpProbe

        def make() -> HttpProbe:
            return HttpProbe(timeout=self.timeout, headers=service_headers(self.target))

        return self.memo("probe:http", make)

    def plain_http(self) -> HttpProbe:
        """HTTP without credentials (metrics, Prometheus, pprof)."""
        from es_doctor.probes.http import HttpProbe

        return self.memo("probe:plain-http", lambda: HttpProbe(timeout=self.timeout))

    def service(self) -> ServiceApi:
        from es_doctor.probes.service import ServiceApi

        return self.memo("probe:service", lambda: ServiceApi(self.http(), self.target.service.api_url))

    def docker(self) -> DockerProbe:
        from es_doctor.probes.docker import DockerProbe

        return self.memo("probe:docker", lambda: DockerProbe(host=self.target.docker.host,
                                                             timeout=self.docker_timeout))

    def qdrant(self) -> QdrantProbe:
        from es_doctor.probes.qdrant import QdrantProbe

        cfg = self.target.qdrant
        return self.memo("probe:qdrant",
                         lambda: QdrantProbe(cfg.url, api_key=resolve_secret(cfg.api_key), timeout=self.timeout))

    def postgres(self) -> PostgresProbe:
        from es_doctor.probes.postgres import PostgresProbe

        cfg = self.target.postgres
        return self.memo("probe:postgres", lambda: PostgresProbe(resolve_secret(cfg.dsn) or "",
                                                                 password=resolve_secret(cfg.password),
                                                                 timeout=self.timeout))

    def prometheus(self, timeout: float | None = None) -> PrometheusProbe:
        """Prometheus' API; ``timeout``: a shorter bound than the session's for each of its queries."""
        from es_doctor.probes.http import HttpProbe
        from es_doctor.probes.prometheus import PrometheusProbe

        if timeout is None:
            return self.memo("probe:prometheus",
                             lambda: PrometheusProbe(self.target.prometheus.url, self.plain_http()))
        return self.memo(f"probe:prometheus:{timeout:g}",
                         lambda: PrometheusProbe(self.target.prometheus.url, HttpProbe(timeout=timeout)))

    def advisory_lock(self, keys: tuple[int, int], label: str, timeout: float = 5.0) -> AdvisoryLock:
        """A session-level advisory lock on the target's database, on a connection of its own (the
        caller acquires and releases it; :meth:`close` releases one still held)."""
        from es_doctor.probes.postgres import AdvisoryLock

        cfg = self.target.postgres
        lock = AdvisoryLock(resolve_secret(cfg.dsn) or "", resolve_secret(cfg.password), keys, label, timeout)
        with self._guard:
            self._memo[f"probe:lock:{id(lock)}"] = lock
        return lock

    # ---- lifetime
    def close(self) -> None:
        """Close the clients that hold connections or files (an embedded Qdrant holds its storage lock, an
        advisory lock its connection). Closing twice is harmless."""
        with self._guard:
            made = list(self._memo.items())
            self.closed = True
        _OPEN.discard(self.serial)
        for key, value in made:
            closer = getattr(value, "release", None) if key.startswith("probe:lock:") else getattr(value, "close", None)
            if key.startswith("probe:") and closer is not None:
                with contextlib.suppress(Exception):  # closing is best effort
                    closer()

    def __del__(self) -> None:
        if not getattr(self, "closed", True):
            warnings.warn(f"probe session of {self.target.service.api_url} was never closed", ResourceWarning,
                          stacklevel=1)

    def __enter__(self) -> ProbeSession:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
