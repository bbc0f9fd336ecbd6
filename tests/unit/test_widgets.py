"""serve's widgets show their check's numbers: the same window, sample and status (no widget contradicts
its check), and the error rate's 1 h / 24 h leave the probe routes out."""

from __future__ import annotations

import datetime as dt

from es_doctor.config import Target
from es_doctor.findings import Evidence, Finding, Report, Status
from es_doctor.probes.metrics import parse_exposition
from es_doctor.serve.widgets import Board

REQ = "email_sender_http_requests_total"


def report(*findings: Finding) -> Report:
    return Report(tool_version="t", target="prod", started_at=dt.datetime.now(dt.UTC), duration_ms=1.0,
                  findings=list(findings))


def finding(check: str, status: Status, **values: float) -> Finding:
    return Finding(id=check, check_class=check.split(".", maxsplit=1)[0], status=status, summary="s",
                   evidence=[Evidence(name=k.replace("_", " "), value=v) for k, v in values.items()])


def test_latency_and_error_widgets_show_the_checks_numbers_and_status() -> None:
    latency = finding("performance.latency", Status.OK, p50=12.0, p95=24.0, p99=40.0, requests_in_window=850,
                      window=60.0)
    errors = finding("performance.error-rate", Status.WARN, error_rate=2.5, requests=900, window=60.0)
    memory = finding("performance.memory", Status.OK, memory=40.0)
    widgets = {w.key: w for w in Board()._build(Target(), report(latency, errors, memory), None, None)}
    assert widgets["latency"].value == "p95 24 ms" and widgets["latency"].status is Status.OK
    assert ("sample", "performance.latency: 850 requests in window over 60 s") in widgets["latency"].details
    assert widgets["errors"].value == "2.50 %" and widgets["errors"].status is Status.WARN
    assert ("sample", "performance.error-rate: 900 requests over 60 s") in widgets["errors"].details
    assert widgets["memory"].value.startswith("40 %") and widgets["memory"].status is Status.OK


def test_a_check_that_did_not_grade_leaves_its_widget_without_a_status() -> None:
    latency = finding("performance.latency", Status.OK, requests_in_window=3, window=2.0)
    widgets = {w.key: w for w in Board()._build(Target(), report(latency), None, None)}
    assert widgets["latency"].value == "n/a" and widgets["latency"].status is None


def test_error_rates_over_what_serve_saw_leave_the_probe_routes_out() -> None:
    board = Board()

    def scrape(users: int, user_errors: int, probe_errors: int, at: float):  # type: ignore[no-untyped-def]
        return parse_exposition(f"# TYPE {REQ[:-6]} counter\n"
                                f'{REQ}{{route="/api/v1/tasks",status="200"}} {users}\n'
                                f'{REQ}{{route="/api/v1/tasks",status="500"}} {user_errors}\n'
                                f'{REQ}{{route="/ready",status="503"}} {probe_errors}\n', taken_at=at)

    board._build(Target(), report(), scrape(0, 0, 0, 100.0), None)
    widgets = {w.key: w for w in board._build(Target(), report(), scrape(990, 10, 500, 160.0), None)}
    assert ("1 h", "1.00 %") in widgets["errors"].details
