"""``--format prometheus``: the report as exposition text (for node_exporter's textfile collector).

Generated with prometheus_client so it passes ``promtool check metrics``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from es_doctor.findings import Report, Status

#: the value of a status in the series (one definition: Status.metric_value, shared with ``serve``)
STATUS_VALUE = {status: status.metric_value for status in Status}


def render(report: Report, detailed: bool = False) -> str:
    return render_many([report])


def render_many(reports: list[Report]) -> str:
    """One exposition for several targets (one HELP/TYPE per family)."""
    registry = CollectorRegistry()
    check_status = Gauge("es_doctor_check_status", "Status of each check: 0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN, -1 SKIP.",
                         ["target", "class", "check"], registry=registry)
    check_duration = Gauge("es_doctor_check_duration_seconds", "Time each check took.",
                           ["target", "check", "class"], registry=registry)
    overall = Gauge("es_doctor_status", "Overall status: 0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN.", ["target"],
                    registry=registry)
    duration = Gauge("es_doctor_run_duration_seconds", "Wall time of the diagnosis.", ["target"],
                     registry=registry)
    findings_total = Gauge("es_doctor_findings", "Number of findings by status.", ["target", "status"],
                           registry=registry)
    last_run = Gauge("es_doctor_last_run_timestamp_seconds", "When the diagnosis started.", ["target"],
                     registry=registry)
    for report in reports:
        _add(report, check_status, check_duration, overall, duration, findings_total, last_run)
    return generate_latest(registry).decode("utf-8").rstrip("\n")


def _add(report: Report, check_status: Gauge, check_duration: Gauge, overall: Gauge, duration: Gauge,
         findings_total: Gauge, last_run: Gauge) -> None:
    for finding in report.findings:
        check_status.labels(report.target, finding.check_class, finding.id).set(STATUS_VALUE[finding.status])
        check_duration.labels(report.target, finding.id, finding.check_class).set(finding.duration_ms / 1000)
    overall.labels(report.target).set(STATUS_VALUE[report.status])
    duration.labels(report.target).set(report.duration_ms / 1000)
    for status, count in report.counts().items():
        findings_total.labels(report.target, status).set(count)
    last_run.labels(report.target).set(report.started_at.timestamp())
