"""``/metrics``: the latest report of every target as Prometheus series, with prometheus_client.

``es_doctor_check_status{target,class,check}`` is one stable series per check, its value the status
(0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN, -1 SKIP: the check did not apply, e.g. a component the target does
not have). There is no ``status`` label, so an alert's ``for:`` timer survives a change from WARN to
CRIT. The daemon's own process metrics (``process_*``) come from prometheus_client's collectors.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from es_doctor import __version__
from es_doctor.findings import Report, Status

#: the value of es_doctor_check_status per status (documented in the README and in the HELP text)
STATUS_VALUE = {status: status.metric_value for status in Status}

#: the checks whose passing (OK or WARN) means the target's service answered
UP_CHECKS = ("startup.api-port",)


def target_up(report: Report) -> bool:
    """Whether the service of the report's target answered (its API port check passed)."""
    for finding in report.findings:
        if finding.id in UP_CHECKS:
            return finding.status in (Status.OK, Status.WARN)
    return report.status in (Status.OK, Status.WARN, Status.SKIP)


class Source(Protocol):
    """What the exposition reads (the daemon)."""

    def reports(self) -> dict[str, Report]: ...

    def run_counts(self) -> dict[str, tuple[int, int]]:
        """Per target: (runs completed, runs failed)."""
        ...

    def reload_state(self) -> tuple[bool, float]:
        """(last reload succeeded, when the configuration was last loaded successfully)."""
        ...


class ReportCollector:
    def __init__(self, source: Source) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        reports = self.source.reports()
        status = GaugeMetricFamily(
            "es_doctor_check_status",
            "Status of each check in the target's latest diagnosis: 0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN, -1 SKIP.",
            labels=["target", "class", "check"])
        duration = GaugeMetricFamily("es_doctor_check_duration_seconds", "Time the check took in the latest run.",
                                     labels=["target", "class", "check"])
        overall = GaugeMetricFamily("es_doctor_target_status",
                                    "Worst status of the target's latest diagnosis: 0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN.",
                                    labels=["target"])
        up = GaugeMetricFamily("es_doctor_target_up",
                               "1 when the target's service answered in the latest diagnosis, else 0.",
                               labels=["target"])
        last = GaugeMetricFamily("es_doctor_last_run_timestamp_seconds",
                                 "When the target's latest diagnosis started (Unix time).", labels=["target"])
        run_duration = GaugeMetricFamily("es_doctor_run_duration_seconds",
                                         "Wall time of the target's latest diagnosis.", labels=["target"])
        for name, report in sorted(reports.items()):
            for finding in report.findings:
                labels = [name, finding.check_class, finding.id]
                status.add_metric(labels, STATUS_VALUE[finding.status])
                duration.add_metric(labels, finding.duration_ms / 1000)
            overall.add_metric([name], STATUS_VALUE[report.status])
            up.add_metric([name], 1.0 if target_up(report) else 0.0)
            last.add_metric([name], report.started_at.timestamp())
            run_duration.add_metric([name], report.duration_ms / 1000)
        runs = CounterMetricFamily("es_doctor_runs", "Diagnoses completed per target since the daemon started.",
                                   labels=["target"])
        failures = CounterMetricFamily("es_doctor_run_failures",
                                       "Diagnoses that raised instead of returning a report.", labels=["target"])
        for name, (done, failed) in sorted(self.source.run_counts().items()):
            runs.add_metric([name], done)
            failures.add_metric([name], failed)
        ok, loaded_at = self.source.reload_state()
        reload_ok = GaugeMetricFamily("es_doctor_config_last_reload_successful",
                                      "1 when the last configuration (re)load succeeded, 0 when it was refused.")
        reload_ok.add_metric([], 1.0 if ok else 0.0)
        reload_at = GaugeMetricFamily("es_doctor_config_last_reload_success_timestamp_seconds",
                                      "When the configuration in use was loaded (Unix time).")
        reload_at.add_metric([], loaded_at)
        info = GaugeMetricFamily("es_doctor_build_info", "es-doctor's version.", labels=["version"])
        info.add_metric([__version__], 1.0)
        yield from (status, duration, overall, up, last, run_duration, runs, failures, reload_ok, reload_at, info)


def reports_registry(source: Source) -> CollectorRegistry:
    """The series of the reports: they change only with a new report or a reload (rendered then, once)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReportCollector(source))
    return registry


def process_registry() -> CollectorRegistry:
    """The daemon's own process metrics (read at every scrape: cheap)."""
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


def registry_for(source: Source) -> list[CollectorRegistry]:
    return [reports_registry(source), process_registry()]
