"""The context every check receives: the target, its probes, and a shared memo.

Expensive observations (the two metric scrapes, the container's inspect, the log tail) are
made once per run and shared between the checks that need them, even when those run
concurrently.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from es_doctor.checks.window import (
    FROM_PREVIOUS_RUN,
    FROM_PROMETHEUS,
    FROM_TWO_SCRAPES,
    ScrapeStore,
    reusable,
    wait_before_reuse,
)
from es_doctor.config import Target
from es_doctor.probes.docker import ContainerInfo, DockerProbe
from es_doctor.probes.http import HttpProbe
from es_doctor.probes.logs import LogLine, tail_lines
from es_doctor.probes.metrics import Scrape, counters_went_back, scrape, scrape_from_series
from es_doctor.probes.postgres import PostgresProbe
from es_doctor.probes.prometheus import PrometheusProbe
from es_doctor.probes.qdrant import QdrantProbe
from es_doctor.probes.result import Result
from es_doctor.probes.service import ServiceApi
from es_doctor.probes.session import ProbeSession

T = TypeVar("T")
#: how much older than ``scrape_window_s`` Prometheus' scrape may be (one usual scrape interval)
PROMETHEUS_MAX_EXTRA_S = 15.0


@dataclass
class MetricsWindow:
    """Two scrapes of the service's metrics at least ``scrape_window_s`` apart: ``before`` is
    Prometheus' latest scrape of the service that old (when Prometheus is configured and has one),
    else the previous run's last scrape (fresh, same process life: :mod:`es_doctor.checks.window`),
    else es-doctor's own first scrape; ``after`` is es-doctor's own, now. ``source`` says which."""

    before: Scrape
    after: Scrape
    source: str = FROM_TWO_SCRAPES

    @property
    def seconds(self) -> float:
        return max(1e-6, self.after.taken_at - self.before.taken_at)


@dataclass
class CheckContext:
    """What a check sees: the target, its probe session (the clients, and a per-run memo shared by
    concurrent checks), and the runner's stop flag."""

    target: Target
    target_name: str = "default"
    #: a stop flag set by the runner when the deadline passes; long checks poll it
    cancelled: threading.Event = field(default_factory=threading.Event)
    #: where the previous run's last metrics scrape is kept (None: nothing kept, two scrapes)
    scrapes_dir: Path | None = None
    #: es-doctor's audit log (the uptime check reads the fixes it ran on this target), None: not known
    audit_log: Path | None = None
    #: the metrics window's first scrape is not older than this (epoch seconds; None: any): a fix's
    #: verification measures what the service did after the cure, not before
    window_after: float | None = None
    session: ProbeSession = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.session = ProbeSession(self.target, timeout=self.timeout)

    # ---- shared memo
    def memo(self, key: str, compute: Callable[[], T]) -> T:
        return self.session.memo(key, compute)

    # ---- probes (one session: built once per run, closed by the runner)
    @property
    def timeout(self) -> float:
        return max(0.5, min(5.0, self.target.check_timeout_s / 2))

    def http(self) -> HttpProbe:
        return self.session.http()

    def service(self) -> ServiceApi:
        """The service's own API (typed), over :meth:`http` (with its bearer token)."""
        return self.session.service()

    def plain_http(self) -> HttpProbe:
        return self.session.plain_http()

    def docker(self) -> DockerProbe:
        return self.session.docker()

    def qdrant(self) -> QdrantProbe:
        return self.session.qdrant()

    def container(self, name: str) -> Result[ContainerInfo]:
        """A container's inspect, read once per run (several checks look at the service's)."""
        return self.memo(f"docker:container:{name}", lambda: self.docker().container(name))

    def postgres(self) -> PostgresProbe:
        return self.session.postgres()

    def prometheus(self) -> PrometheusProbe:
        return self.session.prometheus()

    def close(self) -> None:
        self.session.close()

    # ---- shared observations
    def api(self, path: str) -> str:
        return self.target.service.api_url.rstrip("/") + path

    def api_port(self) -> tuple[str, int]:
        parts = urlsplit(self.target.service.api_url)
        return parts.hostname or "localhost", parts.port or (443 if parts.scheme == "https" else 80)

    def metrics_window(self) -> Result[MetricsWindow]:
        def take() -> Result[MetricsWindow]:
            url = self.target.service.metrics_url
            window_s = self.target.thresholds.scrape_window_s
            start_metric = self.target.metrics.start_time
            store = ScrapeStore(self.scrapes_dir, self.target_name, url) if self.scrapes_dir else None
            after = self.window_after
            # Prometheus' scrape is at least window_s old: none can be younger than ``after`` before then
            recorded = self._prometheus_before() if after is None or time.time() - window_s >= after else None
            if recorded is not None and after is not None and recorded.taken_at < after:
                recorded = None
            saved = store.load() if store is not None and recorded is None else None
            if saved is not None and after is not None and saved.taken_at < after:
                saved = None
            wait = wait_before_reuse(saved, time.time(), window_s)
            if wait:  # the previous run's scrape is fresh but younger than the window: wait what is left
                self.cancelled.wait(wait)
            first = scrape(self.plain_http(), url)
            if first.failure is not None:
                return Result(failure=first.failure)
            now = first.unwrap()
            if (recorded is not None and now.taken_at - recorded.taken_at >= window_s
                    and not counters_went_back(recorded, now)):
                window = MetricsWindow(recorded, now, FROM_PROMETHEUS)
            elif saved is not None and wait is not None and reusable(saved, now, window_s, start_metric):
                window = MetricsWindow(saved, now, FROM_PREVIOUS_RUN)
            else:
                self.cancelled.wait(window_s)
                second = scrape(self.plain_http(), url)
                if second.failure is not None:
                    return Result(failure=second.failure)
                window = MetricsWindow(now, second.unwrap(), FROM_TWO_SCRAPES)
            if store is not None:
                store.save(window.after)  # the next run's first scrape
            return Result(value=window)

        return self.memo("metrics-window", take)

    def _prometheus_before(self) -> Scrape | None:
        """Prometheus' newest scrape of the service at least ``scrape_window_s`` old (and at most
        :data:`PROMETHEUS_MAX_EXTRA_S` more): a window with no waiting. None when Prometheus is
        absent, slow, or has none."""
        if not self.target.is_present("prometheus")[0]:
            return None
        # a regex inside a PromQL string: the regex's backslashes are doubled for the string
        jobs = "|".join(re.escape(j).replace("\\", "\\\\") for j in self.target.prometheus.jobs)
        probe = self.session.prometheus(timeout=min(2.0, self.timeout))
        got = probe.range_samples(f'{{job=~"{jobs}"}}', int(self.target.thresholds.scrape_window_s
                                                            + PROMETHEUS_MAX_EXTRA_S + 1))
        if got.failure is not None or not got.value:
            return None
        parts = urlsplit(self.target.service.metrics_url)
        instance = f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
        now = time.time()
        window = self.target.thresholds.scrape_window_s
        return scrape_from_series(got.value, instance, now - window, now - window - PROMETHEUS_MAX_EXTRA_S)

    def metrics_once(self) -> Result[Scrape]:
        """One scrape: the second of the window if it is being taken, else a fresh one."""
        return self.memo("metrics-once", lambda: scrape(self.plain_http(), self.target.service.metrics_url))

    def log_dir(self) -> Path:
        return Path(self.target.service.log_dir).expanduser()

    def main_log(self) -> Result[list[LogLine]]:
        path = self.log_dir() / self.target.service.main_log
        return self.memo("log:main", lambda: tail_lines(path, self.target.thresholds.log_window_lines))
