"""One probe session per run: the one place that builds a target's clients (with its resolved
secrets), caches per run what should be read once, and closes them.

Checks reach it through :class:`es_doctor.checks.context.CheckContext`, runbook actions through
:class:`es_doctor.runbooks.actions.ActionContext`, the backup code directly; none of them builds a
probe of its own.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from es_doctor.secrets import resolve_secret

if TYPE_CHECKING:
    from es_doctor.config import Target
    from es_doctor.probes.docker import DockerProbe
    from es_doctor.probes.http import HttpProbe
    from es_doctor.probes.postgres import PostgresProbe
    from es_doctor.probes.prometheus import PrometheusProbe
    from es_doctor.probes.qdrant import QdrantProbe
    from es_doctor.probes.service import ServiceApi

T = TypeVar("T")


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
            key = resolve_secret(self.target.service.api_key)
            return HttpProbe(timeout=self.timeout, headers={"Authorization": f"Bearer {key}"} if key else {})

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

    def prometheus(self) -> PrometheusProbe:
        from es_doctor.probes.prometheus import PrometheusProbe

        return self.memo("probe:prometheus", lambda: PrometheusProbe(self.target.prometheus.url, self.plain_http()))

    # ---- lifetime
    def close(self) -> None:
        """Close the clients that hold connections or files (an embedded Qdrant holds its storage lock)."""
        with self._guard:
            made = list(self._memo.items())
        for key, value in made:
            if key.startswith("probe:") and hasattr(value, "close"):
                with contextlib.suppress(Exception):  # closing is best effort
                    value.close()

    def __enter__(self) -> ProbeSession:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
