"""Class 6, 'Problèmes de Monitoring': metrics endpoint, Prometheus, its target, alert rules."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from fakes import Answer, FakeContext, covers, evidence, expect, exposition, prom, prom_data, refused

from es_doctor.checks.monitoring import duration_text
from es_doctor.checks.registry import REGISTRY
from es_doctor.config import Target
from es_doctor.findings import Status
from es_doctor.probes.prometheus import uptime_queries, uptime_step
from es_doctor.probes.result import Failure, FailureKind

METRICS_URL = "http://localhost:8081/metrics"
OURS = exposition({"email_sender_event_bus_queue_depth": 3, "email_sender_event_bus_capacity": 1000,
                   "email_sender_qdrant_connection_errors_total": 0, "process_resident_memory_bytes": 1e8})


def metrics(answer: Answer | Failure, api_port: int | None = None) -> FakeContext:
    """The metrics endpoint answering ``answer``; the API on 127.0.0.1:``api_port`` when given (the check
    tries the API port when the metrics port refuses)."""
    service = {"api_url": f"http://127.0.0.1:{api_port}"} if api_port else {}
    return FakeContext(Target(service=service), routes={METRICS_URL: answer})  # type: ignore[arg-type]


# --------------------------------------------------------------------------- monitoring.metrics-endpoint


@covers("monitoring.metrics-endpoint", Status.OK)
def test_metrics_endpoint_exposes_our_series() -> None:
    out = expect(metrics(Answer(200, OURS)), "monitoring.metrics-endpoint", Status.OK, "exposes 3 email_sender_*")
    assert evidence(out)["series"] == 3


@covers("monitoring.metrics-endpoint", Status.OK)
def test_metrics_prefix_is_configurable() -> None:
    target = Target(metrics={"prefix": "process_"})  # type: ignore[arg-type]
    expect(FakeContext(target, routes={METRICS_URL: Answer(200, OURS)}), "monitoring.metrics-endpoint", Status.OK,
           "exposes 1 process_*")


@covers("monitoring.metrics-endpoint", Status.CRIT)
def test_metrics_endpoint_without_our_series() -> None:
    text = exposition({"go_goroutines": 12, "process_resident_memory_bytes": 1e8})
    out = expect(metrics(Answer(200, text)), "monitoring.metrics-endpoint", Status.CRIT,
                 "answers but exposes no email_sender_* series", cure="metrics-endpoint-enable")
    assert evidence(out)["series"] == 2


@covers("monitoring.metrics-endpoint", Status.CRIT)
@pytest.mark.parametrize(("answer", "word"), [(Answer(500, "boom"), "answered with an error"),
                                              (Failure(FailureKind.TIMEOUT, "no answer"), "not answering")])
def test_metrics_endpoint_failing(answer: Answer | Failure, word: str) -> None:
    expect(metrics(answer), "monitoring.metrics-endpoint", Status.CRIT, METRICS_URL, word,
           cure="metrics-endpoint-enable")


@covers("monitoring.metrics-endpoint", Status.CRIT)
def test_metrics_port_refused_while_the_api_answers(listening_port: int) -> None:
    expect(metrics(refused(METRICS_URL), api_port=listening_port), "monitoring.metrics-endpoint", Status.CRIT,
           "unreachable", cure="metrics-endpoint-enable")


@covers("monitoring.metrics-endpoint", Status.CRIT)
def test_metrics_port_refused_and_the_api_too_is_the_service_down(closed_port: int) -> None:
    expect(metrics(refused(METRICS_URL), api_port=closed_port), "monitoring.metrics-endpoint", Status.CRIT,
           "unreachable", "the service is down", cause="service-down", cure="service-restart")


@covers("monitoring.metrics-endpoint", Status.CRIT)
def test_metrics_endpoint_404_is_missing_metrics() -> None:
    """The guide's "métriques manquantes": the service runs but does not serve its metrics."""
    expect(metrics(Answer(404, "404 page not found")), "monitoring.metrics-endpoint", Status.CRIT,
           "answers 404", "does not expose its metrics", cure="metrics-endpoint-enable")


@covers("monitoring.metrics-endpoint", Status.UNKNOWN)
def test_metrics_endpoint_not_exposition_format() -> None:
    expect(metrics(Answer(200, "<html><body>Grafana login</body></html>")), "monitoring.metrics-endpoint",
           Status.UNKNOWN, "does not follow the contract")


# --------------------------------------------------------------------------- monitoring.prometheus


@covers("monitoring.prometheus", Status.OK)
def test_prometheus_ready() -> None:
    ctx = FakeContext(routes={prom("/-/ready"): Answer(200, "Prometheus Server is Ready.\n")})
    expect(ctx, "monitoring.prometheus", Status.OK, "ready at http://localhost:9090")


@covers("monitoring.prometheus", Status.CRIT)
@pytest.mark.parametrize(("answer", "word"), [(refused(), "unreachable"),
                                              (Answer(503, "Service Unavailable"), "answered with an error")])
def test_prometheus_not_ready(answer: Answer | Failure, word: str) -> None:
    expect(FakeContext(routes={prom("/-/ready"): answer}), "monitoring.prometheus", Status.CRIT, word,
           cure="monitoring-restart")


@covers("monitoring.prometheus", Status.UNKNOWN)
def test_prometheus_ready_404() -> None:
    expect(FakeContext(routes={prom("/-/ready"): Answer(404, "not found")}), "monitoring.prometheus",
           Status.UNKNOWN, "404")


# --------------------------------------------------------------------------- monitoring.prometheus-target


def targets(*items: tuple[str, str, str]) -> FakeContext:
    active = [{"labels": {"job": job, "instance": "x"}, "scrapeUrl": f"http://{job}:8081/metrics", "health": health,
               "lastError": error} for job, health, error in items]
    return FakeContext(routes={prom("/api/v1/targets"): prom_data({"activeTargets": active})})


@covers("monitoring.prometheus-target", Status.OK)
@pytest.mark.parametrize("job", ["email-sender", "email-sender-go"])
def test_prometheus_scrapes_the_service(job: str) -> None:
    out = expect(targets((job, "up", ""), ("node", "down", "refused")), "monitoring.prometheus-target", Status.OK,
                 "1 target up")
    assert evidence(out)["targets"] == {f"http://{job}:8081/metrics": "up"}


@covers("monitoring.prometheus-target", Status.CRIT)
def test_prometheus_has_no_job_for_the_service() -> None:
    out = expect(targets(("node", "up", ""), ("prometheus", "up", "")), "monitoring.prometheus-target", Status.CRIT,
                 "no scrape job email-sender or email-sender-go", cure="prometheus-scrape-config")
    assert evidence(out)["jobs"] == ["node", "prometheus"]


@covers("monitoring.prometheus-target", Status.CRIT)
def test_prometheus_target_down_points_at_the_metrics_endpoint() -> None:
    ctx = targets(("email-sender-go", "down", 'Get "http://email-sender-go:8081/metrics": connection refused'))
    expect(ctx, "monitoring.prometheus-target", Status.CRIT, "is down", "connection refused", cause="target-down",
           cure="metrics-endpoint-enable")


def test_prometheus_target_not_scraped_yet_is_not_crit() -> None:
    out = REGISTRY["monitoring.prometheus-target"].fn(targets(("email-sender-go", "unknown", "")))
    assert out.status is Status.UNKNOWN and out.cause is None, out.summary
    assert "not scraped the service yet" in out.summary


@covers("monitoring.prometheus-target", Status.CRIT, Status.UNKNOWN)
def test_prometheus_targets_unreadable() -> None:
    expect(FakeContext(routes={prom("/api/v1/targets"): refused()}), "monitoring.prometheus-target", Status.CRIT,
           "unreachable", cure="prometheus-scrape-config")
    ctx = FakeContext(routes={prom("/api/v1/targets"): Answer(200, {"status": "error", "error": "bad"})})
    expect(ctx, "monitoring.prometheus-target", Status.UNKNOWN, "does not follow the contract")


# --------------------------------------------------------------------------- monitoring.alerts


def alerting(rules: int, *alerts: dict[str, Any]) -> FakeContext:
    groups = [{"name": "es-doctor", "rules": [{"name": f"r{i}"} for i in range(rules)]}]
    items = [{"labels": {"alertname": a["name"], **a.get("labels", {})}, "state": a.get("state", "firing")}
             for a in alerts]
    return FakeContext(routes={prom("/api/v1/rules"): prom_data({"groups": groups}),
                               prom("/api/v1/alerts"): prom_data({"alerts": items})})


@covers("monitoring.alerts", Status.OK)
def test_alerts_loaded_none_firing() -> None:
    out = expect(alerting(7, {"name": "HighLatency", "state": "pending"}), "monitoring.alerts", Status.OK,
                 "7 alert rules loaded, none firing")
    assert evidence(out) == {"rules": 7, "firing": []}


@covers("monitoring.alerts", Status.WARN)
def test_no_alert_rules() -> None:
    expect(alerting(0), "monitoring.alerts", Status.WARN, "no alert rules loaded", cure="prometheus-scrape-config")


@covers("monitoring.alerts", Status.WARN)
def test_warning_alert_firing_names_the_cure_of_the_finding_it_watches() -> None:
    ctx = alerting(7, {"name": "HighLatency", "labels": {"severity": "warning", "finding": "performance.latency"}})
    out = expect(ctx, "monitoring.alerts", Status.WARN, "1 alert firing: HighLatency",
                 "(watching performance.latency)", cause="alert:performance.latency", cure="vector-cache-tune")
    assert evidence(out)["firing"] == ["HighLatency"]


@covers("monitoring.alerts", Status.CRIT)
def test_critical_alert_firing_names_the_critical_ones_cure() -> None:
    ctx = alerting(7, {"name": "HighLatency", "labels": {"severity": "warning", "finding": "performance.latency"}},
                   {"name": "QdrantDown", "labels": {"severity": "critical", "finding": "vectors.qdrant"}})
    expect(ctx, "monitoring.alerts", Status.CRIT, "2 alerts firing: HighLatency, QdrantDown",
           "(watching vectors.qdrant)", cause="alert:vectors.qdrant", cure="dependency-restart component=qdrant")


@covers("monitoring.alerts", Status.WARN, Status.CRIT)
@pytest.mark.parametrize("labels", [{}, {"finding": "no.such-check"}, {"runbook": "service-restart"}])
def test_an_alert_es_doctor_did_not_generate_goes_to_a_human(labels: dict[str, str]) -> None:
    expect(alerting(3, {"name": "Custom", "labels": {"severity": "warning", **labels}}), "monitoring.alerts",
           Status.WARN, "Custom", cause="unknown-alert", cure=None, escalate=1)
    expect(alerting(3, {"name": "Custom", "labels": {"severity": "critical", **labels}}), "monitoring.alerts",
           Status.CRIT, "Custom", cause="unknown-alert", cure=None, escalate=1)


@covers("monitoring.alerts", Status.CRIT, Status.UNKNOWN)
def test_alerts_unreadable() -> None:
    expect(FakeContext(routes={prom("/api/v1/rules"): refused()}), "monitoring.alerts", Status.CRIT,
           "/api/v1/rules", cure="prometheus-scrape-config")
    ctx = FakeContext(routes={prom("/api/v1/rules"): prom_data({"groups": []}),
                              prom("/api/v1/alerts"): Answer(404, "not found")})
    expect(ctx, "monitoring.alerts", Status.UNKNOWN, "/api/v1/alerts")


# --------------------------------------------------------------------------- monitoring.uptime


def query_url(expr: str, target: Target | None = None) -> str:
    return prom("/api/v1/query?query=" + quote(expr), target)


def up_history(*targets: tuple[str, int, float, float | None], target: Target | None = None,
               recent: float | None = None) -> FakeContext:
    """Prometheus holding, per scrape target (instance, scrapes, successful scrapes, age of the oldest in
    seconds or None when the history query finds none), what the uptime check asks; ``recent``: the age the
    finer query over the last subquery step finds."""
    target = target or Target()
    window = target.thresholds.uptime_window_s
    count, total, age = uptime_queries(target.prometheus.jobs, window)

    def vector(values: list[tuple[str, float | None]]) -> Answer:
        result = [{"metric": {"job": "email-sender", "instance": instance}, "value": [1.0e9, str(value)]}
                  for instance, value in values if value is not None]
        return prom_data({"resultType": "vector", "result": result})

    routes: dict[str, Any] = {query_url(count, target): vector([(t[0], t[1]) for t in targets]),
                              query_url(total, target): vector([(t[0], t[2]) for t in targets]),
                              query_url(age, target): vector([(t[0], t[3]) for t in targets])}
    fine = uptime_queries(target.prometheus.jobs, uptime_step(window))[2]
    routes[query_url(fine, target)] = vector([(t[0], recent) for t in targets])
    return FakeContext(target, routes=routes)


@covers("monitoring.uptime", Status.OK)
def test_uptime_over_the_whole_window() -> None:
    out = expect(up_history(("svc:8081", 5760, 5760, 86_400.0)), "monitoring.uptime", Status.OK,
                 "uptime 100 % over the last 24 h: 0 of 5760 scrapes failed")
    assert evidence(out) == {"uptime": 100.0, "history": "24 h", "window": "24 h", "scrapes": 5760,
                             "failed scrapes": 0}


@covers("monitoring.uptime", Status.OK)
def test_uptime_exactly_at_the_warning_threshold_is_ok() -> None:
    # 99.9 % is not under 99.9 %: thresholds trip strictly
    expect(up_history(("svc:8081", 1000, 999, 86_400.0)), "monitoring.uptime", Status.OK, "uptime 99.9 %")


@covers("monitoring.uptime", Status.WARN)
def test_uptime_under_99_9_with_less_history_than_the_window_says_how_much() -> None:
    # 3 h 12 min of history at 15 s: 768 scrapes, 1 failed → 99.86 %
    out = expect(up_history(("svc:8081", 768, 767, 11_520.0)), "monitoring.uptime", Status.WARN,
                 "uptime 99.86 % over the last 3 h 12 min of history (window 24 h)", "1 of 768 scrapes failed",
                 "WARNING under 99.9 %", cure=None, escalate=1)
    assert evidence(out)["history"] == "3 h 12 min"
    assert evidence(out)["uptime"] == 99.86


@covers("monitoring.uptime", Status.CRIT)
def test_a_history_shorter_than_one_subquery_step_is_read_at_one_second() -> None:
    # 8 scrapes a second apart: the day's minute steps see none of them, the finer query does
    out = expect(up_history(("svc:8081", 8, 3, None), recent=8.0), "monitoring.uptime", Status.CRIT,
                 "uptime 37.5 % over the last 8 s of history (window 24 h): 5 of 8 scrapes failed", cure=None,
                 escalate=1)
    assert evidence(out)["history"] == "8 s"


@covers("monitoring.uptime", Status.OK)
def test_a_history_nobody_can_date_is_not_called_the_whole_window() -> None:
    expect(up_history(("svc:8081", 10, 10, None)), "monitoring.uptime", Status.OK,
           "over the scrapes held in the last 24 h (how far back they go is unknown)")


@covers("monitoring.uptime", Status.CRIT)
def test_uptime_under_99_is_critical_and_names_the_worst_target() -> None:
    out = expect(up_history(("a:8081", 1000, 1000, 86_400.0), ("b:8081", 1000, 950, 86_400.0)), "monitoring.uptime",
                 Status.CRIT, "uptime 95 % over the last 24 h (b:8081)", "CRITICAL under 99 %", cure=None,
                 escalate=1)
    assert evidence(out)["targets"] == {"a:8081": 100.0, "b:8081": 95.0}


@covers("monitoring.uptime", Status.CRIT)
def test_uptime_is_cut_never_rounded_up_to_a_threshold() -> None:
    # 98.995 % would read 99 % rounded, while it is under 99 %
    out = expect(up_history(("svc:8081", 20_000, 19_799, 86_400.0)), "monitoring.uptime", Status.CRIT,
                 "uptime 98.99 %", cure=None, escalate=1)
    assert evidence(out)["uptime"] == 98.99


@covers("monitoring.uptime", Status.WARN, Status.CRIT)
def test_uptime_window_and_thresholds_come_from_the_target() -> None:
    target = Target(thresholds={"uptime_window_s": 60, "uptime_warn_pct": 90, "uptime_crit_pct": 50})  # type: ignore[arg-type]
    expect(up_history(("svc:8081", 60, 50, 60.0), target=target), "monitoring.uptime", Status.WARN,
           "uptime 83.33 % over the last 1 min: 10 of 60", cure=None, escalate=1)
    expect(up_history(("svc:8081", 60, 20, 60.0), target=target), "monitoring.uptime", Status.CRIT,
           "uptime 33.33 %", cure=None, escalate=1)


@covers("monitoring.uptime", Status.UNKNOWN)
def test_uptime_without_any_scrape_of_the_job() -> None:
    expect(up_history(), "monitoring.uptime", Status.UNKNOWN, "holds no scrape of job email-sender or email-sender-go",
           "see monitoring.prometheus-target")


@covers("monitoring.uptime", Status.UNKNOWN)
@pytest.mark.parametrize("answer", [refused(), Answer(400, {"status": "error", "errorType": "bad_data"}),
                                    Answer(200, "<html>not prometheus</html>")])
def test_uptime_unmeasurable_is_unknown_not_a_verdict_on_the_service(answer: Answer | Failure) -> None:
    target = Target()
    count = uptime_queries(target.prometheus.jobs, target.thresholds.uptime_window_s)[0]
    expect(FakeContext(routes={query_url(count): answer}), "monitoring.uptime", Status.UNKNOWN, "uptime unknown")


def test_uptime_queries_escape_job_names_and_step_with_the_window() -> None:
    count, total, age = uptime_queries(["email.sender", 'a"b'], 86_400)
    assert count == 'count_over_time(up{job=~"email\\\\.sender|a\\"b"}[86400s])'
    assert total.startswith("sum_over_time(up{job=~")
    assert age.endswith("[86400s:60s])") and age.startswith("time() - min_over_time(timestamp(up{")
    assert uptime_queries(["j"], 30)[2].endswith("[30s:1s])")


@pytest.mark.parametrize(("seconds", "text"), [(86_400, "24 h"), (11_520, "3 h 12 min"), (3600, "1 h"),
                                               (250, "4 min 10 s"), (45, "45 s"), (0, "0 s"), (172_800, "2 d"),
                                               (90_000, "1 d 1 h")])
def test_duration_text(seconds: float, text: str) -> None:
    assert duration_text(seconds) == text
