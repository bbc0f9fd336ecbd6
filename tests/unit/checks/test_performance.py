"""Class 2, 'Performance Dégradée': latency, error rate, memory, SLOW lines and timeouts."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

import pytest
from fakes import (
    Answer,
    FakeContext,
    FakeDocker,
    FakePostgres,
    FakeQdrant,
    api,
    covers,
    evidence,
    expect,
    exposition,
    histogram,
    log_line,
    prom,
    prom_data,
    refused,
    write_log,
)

from es_doctor.config import Target
from es_doctor.findings import Status
from es_doctor.probes.docker import MemoryStats
from es_doctor.probes.result import Failure, FailureKind

LATENCY = "email_sender_http_request_duration_seconds"
REQUESTS = "email_sender_http_requests_total"
INF = float("inf")
NO_PROMETHEUS = {"prometheus": "no Prometheus here"}
NO_DOCKER = {"docker": "bare-metal host"}
GIB = 2**30


def latency_window(new: dict[float, float], old: dict[float, float] | None = None) -> tuple[str, str]:
    """Two scrapes of the latency histogram (the stack's buckets): ``old`` observations before,
    ``old`` + ``new`` after."""
    old = {0.05: 500, 0.1: 20, 0.25: 5, INF: 1} if old is None else old
    bounds = {0.05, 0.1, 0.25, 0.5, 1.0, 2.5, INF}
    before = {bound: old.get(bound, 0) for bound in bounds}
    after = {bound: old.get(bound, 0) + new.get(bound, 0) for bound in bounds}
    return exposition(histogram(LATENCY, before)), exposition(histogram(LATENCY, after))


def no_prometheus() -> Target:
    return Target(absent=NO_PROMETHEUS)


# --------------------------------------------------------------------------- performance.latency


@covers("performance.latency", Status.OK)
def test_latency_within_threshold() -> None:
    # 100 new requests, all ≤ 50 ms: p95 interpolates to 47.5 ms
    out = expect(FakeContext(no_prometheus(), metrics=latency_window({0.05: 100})), "performance.latency", Status.OK,
                 "p95 latency 48 ms", "within the 100 ms threshold")
    assert evidence(out)["p95"] == 47.5
    assert evidence(out)["requests in window"] == 100


@covers("performance.latency", Status.OK)
def test_latency_exactly_at_the_threshold_is_ok() -> None:
    """Strictly over trips: 95 of 100 requests ≤ 100 ms puts p95 at exactly 100 ms."""
    out = expect(FakeContext(no_prometheus(), metrics=latency_window({0.1: 95, INF: 5}, old={})),
                 "performance.latency", Status.OK, "p95 latency 100 ms")
    assert evidence(out)["p95"] == 100.0


@covers("performance.latency", Status.WARN)
def test_latency_over_warn() -> None:
    # all 100 new requests in (100 ms, 250 ms]: p95 = 100 + 150 * 0.95 = 242.5 ms
    out = expect(FakeContext(no_prometheus(), metrics=latency_window({0.25: 100})), "performance.latency",
                 Status.WARN, "242 ms", "over the 100 ms WARN threshold", cure="vector-cache-tune")
    assert evidence(out)["p95"] == 242.5


@covers("performance.latency", Status.CRIT)
def test_latency_over_crit() -> None:
    expect(FakeContext(no_prometheus(), metrics=latency_window({1.0: 100})), "performance.latency", Status.CRIT,
           "975 ms", "far over the 500 ms CRIT threshold", cure="vector-cache-tune")


@covers("performance.latency", Status.WARN, Status.CRIT)
@pytest.mark.parametrize(("qdrant", "postgres", "cause", "cure"), [
    (refused("http://localhost:6333"), None, "qdrant-down", "dependency-restart component=qdrant"),
    (None, Failure(FailureKind.TIMEOUT, "connection timeout expired"), "postgres-down",
     "dependency-restart component=postgres"),
])
def test_latency_names_a_dependency_that_is_down(qdrant: Failure | None, postgres: Failure | None,
                                                 cause: str, cure: str) -> None:
    """Requests wait on a dependency that does not answer: the dependency is the cause, not the cache."""
    for new, status in (({0.25: 100}, Status.WARN), ({1.0: 100}, Status.CRIT)):
        ctx = FakeContext(no_prometheus(), metrics=latency_window(new), postgres=FakePostgres(postgres),
                          qdrant=FakeQdrant(names=qdrant or ["task_vectors"]))
        expect(ctx, "performance.latency", status, "unreachable", cause=cause, cure=cure)


@covers("performance.latency", Status.OK)
def test_latency_within_threshold_does_not_look_for_a_cause() -> None:
    qdrant = FakeQdrant(names=refused())
    expect(FakeContext(no_prometheus(), metrics=latency_window({0.05: 100}), qdrant=qdrant), "performance.latency",
           Status.OK)
    assert qdrant.calls == []


@covers("performance.latency", Status.OK)
def test_latency_old_slow_requests_do_not_count() -> None:
    """Only the window's increase counts, not the histogram's lifetime (which is mostly slow here)."""
    expect(FakeContext(no_prometheus(), metrics=latency_window({0.05: 100}, old={1.0: 10_000})),
           "performance.latency", Status.OK)


@covers("performance.latency", Status.OK)
def test_latency_no_requests_in_the_window() -> None:
    before, _ = latency_window({})
    out = expect(FakeContext(no_prometheus(), metrics=(before, before)), "performance.latency", Status.OK,
                 "not graded", "too few requests to grade: 0 (at least 10)")
    assert evidence(out)["requests in window"] == 0


@covers("performance.latency", Status.OK)
def test_latency_is_not_graded_on_too_few_requests() -> None:
    """Five slow requests are not a p95: below thresholds.min_observations the check says so."""
    out = expect(FakeContext(no_prometheus(), metrics=latency_window({1.0: 5})), "performance.latency", Status.OK,
                 "too few requests to grade: 5")
    assert evidence(out)["requests in window"] == 5


@covers("performance.latency", Status.WARN)
def test_latency_widens_to_prometheus_when_the_window_holds_too_few() -> None:
    """Too few requests in the two scrapes: the signal window's count and percentiles from Prometheus."""
    answers: list[Answer | Failure] = [prom_value("120"), prom_value("0.05"), prom_value("0.3"), prom_value("0.6")]
    ctx = FakeContext(routes={prom("/api/v1/query"): answers}, metrics=latency_window({0.05: 3}))
    out = expect(ctx, "performance.latency", Status.WARN, "300 ms on 120 requests", cure="vector-cache-tune")
    assert evidence(out)["widened to"] == "Prometheus over the signal window"
    assert evidence(out)["requests in window"] == 120
    assert any("route!~" in unquote(url) for _, url in ctx.fake_http.calls), "probe routes are left out"


@covers("performance.latency", Status.UNKNOWN)
def test_latency_without_the_histogram() -> None:
    text = exposition({"email_sender_event_bus_queue_depth": 3})
    expect(FakeContext(no_prometheus(), metrics=(text, text)), "performance.latency", Status.UNKNOWN,
           f"exposes no {LATENCY} histogram")


@covers("performance.latency", Status.UNKNOWN)
def test_latency_without_metrics_or_prometheus() -> None:
    expect(FakeContext(no_prometheus(), metrics=refused("http://localhost:8081/metrics")), "performance.latency",
           Status.UNKNOWN, "cannot measure latency")


def prom_value(value: str) -> Answer:
    return prom_data({"resultType": "vector", "result": [{"metric": {}, "value": [1700000000, value]}]})


def prometheus_p95(value: str) -> dict[str, Answer | Failure]:
    return {prom("/api/v1/query"): prom_data({"resultType": "vector",
                                               "result": [{"metric": {}, "value": [1700000000, value]}]})}


@covers("performance.latency", Status.WARN, Status.OK)
def test_latency_from_prometheus_when_the_service_cannot_be_scraped() -> None:
    answers: list[Answer | Failure] = [prom_value("500"), prom_value("0.1"), prom_value("0.3"), prom_value("0.5")]
    ctx = FakeContext(routes={prom("/api/v1/query"): answers}, metrics=refused())
    out = expect(ctx, "performance.latency", Status.WARN, "300 ms", cure="vector-cache-tune")
    assert evidence(out)["p95"] == 300.0
    assert evidence(out)["window from"] == "Prometheus over the signal window"
    assert any("histogram_quantile(0.95" in unquote(url) for _, url in ctx.fake_http.calls)
    ok_answers: list[Answer | Failure] = [prom_value("500"), prom_value("0.01"), prom_value("0.02"),
                                          prom_value("0.03")]
    expect(FakeContext(routes={prom("/api/v1/query"): ok_answers}, metrics=refused()), "performance.latency",
           Status.OK, "20 ms")


@covers("performance.latency", Status.UNKNOWN)
@pytest.mark.parametrize("routes", [
    prometheus_p95("NaN"),  # no traffic in the last minute
    {prom("/api/v1/query"): prom_data({"resultType": "vector", "result": []})},
    {},  # Prometheus unreachable
])
def test_latency_prometheus_without_an_answer(routes: dict[str, Answer | Failure]) -> None:
    expect(FakeContext(routes=routes, metrics=refused()), "performance.latency", Status.UNKNOWN,
           "cannot measure latency")


# --------------------------------------------------------------------------- performance.error-rate


def requests_window(ok: int, errors: dict[str, int], label: str = "status") -> tuple[str, str]:
    """1000 earlier requests (none failed), then ``ok`` more answered 200 and ``errors`` by 5xx code."""
    def text(ok_count: int, err: dict[str, int]) -> str:
        series = {f'{REQUESTS}{{route="/api/v1/tasks",method="POST",{label}="200"}}': ok_count,
                  f'{REQUESTS}{{route="/api/v1/tasks",method="POST",{label}="404"}}': 7}
        for code in ("500", "503", *errors):
            series[f'{REQUESTS}{{route="/api/v1/tasks",method="POST",{label}="{code}"}}'] = err.get(code, 0)
        return exposition(series)

    return text(1000, {}), text(1000 + ok, errors)


@covers("performance.error-rate", Status.OK)
def test_error_rate_at_one_percent_is_ok() -> None:
    out = expect(FakeContext(metrics=requests_window(990, {"500": 10})), "performance.error-rate", Status.OK,
                 "1.00 %", "10 of 1000")
    assert evidence(out)["5xx"] == 10


@covers("performance.error-rate", Status.WARN)
def test_error_rate_over_warn() -> None:
    expect(FakeContext(metrics=requests_window(980, {"500": 12, "503": 8})), "performance.error-rate",
           Status.WARN, "2.00 %", "20 of 1000", "over the 1 % WARN threshold", cure=None, escalate=1)


@covers("performance.error-rate", Status.CRIT)
@pytest.mark.parametrize("label", ["status", "code"])
def test_error_rate_over_crit(label: str) -> None:
    expect(FakeContext(metrics=requests_window(900, {"502": 100}, label=label)), "performance.error-rate",
           Status.CRIT, "10.00 %", "over the 5 % CRIT threshold", cure=None, escalate=1)


MODE = api("/api/v1/maintenance")


@covers("performance.error-rate", Status.WARN)
@pytest.mark.parametrize("mode", [{"readonly": True, "maintenance": False}, {"readonly": False, "maintenance": True}])
def test_error_rate_of_refused_writes_names_the_mode(mode: dict[str, bool]) -> None:
    """503s while the service refuses writes on purpose: WARN (not CRIT), the mode is the cause."""
    ctx = FakeContext(routes={MODE: Answer(200, mode)}, metrics=requests_window(810, {"503": 190}))
    word = "read-only" if mode["readonly"] else "maintenance"
    out = expect(ctx, "performance.error-rate", Status.WARN, "19.00 %", f"writes refused because {word} mode is on",
                 cause="read-only", cure="service-writes-resume")
    assert evidence(out)["503"] == 190


@covers("performance.error-rate", Status.CRIT)
def test_error_rate_not_explained_by_the_mode_when_the_errors_are_not_503s() -> None:
    ctx = FakeContext(routes={MODE: Answer(200, {"readonly": True, "maintenance": False})},
                      metrics=requests_window(810, {"503": 90, "500": 100}))
    expect(ctx, "performance.error-rate", Status.CRIT, "19.00 %", cure=None, escalate=1)


@covers("performance.error-rate", Status.CRIT)
@pytest.mark.parametrize(("qdrant", "postgres", "cause", "cure"), [
    (refused("http://localhost:6333"), None, "qdrant-down", "dependency-restart component=qdrant"),
    (None, Failure(FailureKind.TIMEOUT, "connection timeout expired"), "postgres-down",
     "dependency-restart component=postgres"),
])
def test_error_rate_names_a_dependency_that_is_down(qdrant: Failure | None, postgres: Failure | None,
                                                    cause: str, cure: str) -> None:
    ctx = FakeContext(metrics=requests_window(900, {"500": 100}), qdrant=FakeQdrant(names=qdrant or ["task_vectors"]),
                      postgres=FakePostgres(postgres))
    expect(ctx, "performance.error-rate", Status.CRIT, "10.00 %", "unreachable", cause=cause, cure=cure)


@covers("performance.error-rate", Status.CRIT)
def test_error_rate_ignores_a_dependency_the_target_does_not_have() -> None:
    target = Target(absent={"qdrant": "none here"})
    ctx = FakeContext(target, metrics=requests_window(900, {"500": 100}), qdrant=FakeQdrant(names=refused()))
    expect(ctx, "performance.error-rate", Status.CRIT, cure=None, escalate=1)
    assert ctx.fake_qdrant.calls == []


@covers("performance.error-rate", Status.OK)
def test_error_rate_ignores_4xx() -> None:
    before, _ = requests_window(0, {})
    _, after = requests_window(100, {"404": 50})
    expect(FakeContext(metrics=(before, after)), "performance.error-rate", Status.OK, "0.00 %")


@covers("performance.error-rate", Status.OK)
def test_error_rate_no_requests() -> None:
    before, _ = requests_window(0, {})
    expect(FakeContext(metrics=(before, before)), "performance.error-rate", Status.OK, "not graded",
           "too few requests to grade: 0 (at least 100)")


@covers("performance.error-rate", Status.OK)
@pytest.mark.parametrize(("ok_count", "errors"), [(19, 1), (49, 1), (98, 2), (990, 12)])
def test_rare_errors_at_low_traffic_do_not_alarm(ok_count: int, errors: int) -> None:
    """1 of 20 or 1 of 50 is too few requests to grade; 2 of 100 and 12 of 1002 are over 1 % but not
    significantly (the Wilson lower bound is under the threshold): OK, with the sample size."""
    out = expect(FakeContext(no_prometheus(), metrics=requests_window(ok_count, {"500": errors})),
                 "performance.error-rate", Status.OK, f"{errors} of {ok_count + errors} requests")
    assert evidence(out)["requests"] == ok_count + errors


@covers("performance.error-rate", Status.OK)
def test_probe_routes_are_not_users_requests() -> None:
    """A readiness probe's 503s are startup.health's finding, not the users' error rate."""
    def text(ok_count: int, probe_errors: int) -> str:
        return exposition({f'{REQUESTS}{{route="/api/v1/tasks",status="200"}}': ok_count,
                           f'{REQUESTS}{{route="/ready",status="503"}}': probe_errors})
    out = expect(FakeContext(no_prometheus(), metrics=(text(0, 0), text(500, 500))), "performance.error-rate",
                 Status.OK, "0 of 500 requests")
    assert evidence(out)["5xx"] == 0


@covers("performance.error-rate", Status.UNKNOWN)
def test_error_rate_without_the_counter() -> None:
    text = exposition({"email_sender_event_bus_queue_depth": 3})
    expect(FakeContext(metrics=(text, text)), "performance.error-rate", Status.UNKNOWN, f"exposes no {REQUESTS}")


@covers("performance.error-rate", Status.UNKNOWN)
def test_error_rate_without_metrics() -> None:
    expect(FakeContext(metrics=Failure(FailureKind.TIMEOUT, "no answer")), "performance.error-rate", Status.UNKNOWN,
           "cannot measure the error rate")


# --------------------------------------------------------------------------- performance.memory


def docker_memory(usage: float, limit: float) -> FakeDocker:
    return FakeDocker(memory_stats={"email-sender-go": MemoryStats(int(usage), int(limit))})


@covers("performance.memory", Status.OK)
def test_memory_from_docker_stats() -> None:
    out = expect(FakeContext(docker=docker_memory(1.5 * GIB, 2 * GIB)), "performance.memory", Status.OK,
                 "1536 MiB of 2048 MiB (75.0 %)")
    assert evidence(out)["source"] == "docker stats"


@covers("performance.memory", Status.WARN)
def test_memory_over_warn() -> None:
    expect(FakeContext(docker=docker_memory(1.8 * GIB, 2 * GIB)), "performance.memory", Status.WARN, "90.0 %",
           "over the 85 % WARN threshold", cure="go-gc-tune")


@covers("performance.memory", Status.CRIT)
def test_memory_over_crit() -> None:
    expect(FakeContext(docker=docker_memory(1.95 * GIB, 2 * GIB)), "performance.memory", Status.CRIT, "97.5 %",
           "over the 95 % CRIT threshold", cure="go-gc-tune")


@covers("performance.memory", Status.WARN)
def test_memory_without_a_cgroup_limit_uses_the_configured_one() -> None:
    target = Target(service={"memory_limit": "1G"})  # type: ignore[arg-type]
    out = expect(FakeContext(target, docker=docker_memory(0.9 * GIB, 2**63)), "performance.memory", Status.WARN,
                 "of 1024 MiB (90.0 %)", cure="go-gc-tune")
    assert "configured limit used" in evidence(out)["source"]


def rss(value: float) -> tuple[str, str]:
    text = exposition({"process_resident_memory_bytes": value, "email_sender_event_bus_queue_depth": 0})
    return text, text


@covers("performance.memory", Status.OK, Status.CRIT)
def test_memory_without_docker_reads_the_resident_memory_metric() -> None:
    target = Target(absent=NO_DOCKER)
    out = expect(FakeContext(target, metrics=rss(0.5 * GIB)), "performance.memory", Status.OK, "512 MiB of 2048 MiB")
    assert evidence(out)["source"] == "process_resident_memory_bytes"
    expect(FakeContext(target, metrics=rss(1.99 * GIB)), "performance.memory", Status.CRIT, cure="go-gc-tune")


@covers("performance.memory", Status.WARN)
def test_memory_falls_back_to_the_metric_when_docker_has_no_stats() -> None:
    ctx = FakeContext(docker=FakeDocker(), metrics=rss(1.8 * GIB))
    out = expect(ctx, "performance.memory", Status.WARN, "90.0 %", cure="go-gc-tune")
    assert evidence(out)["source"] == "process_resident_memory_bytes"


@covers("performance.memory", Status.UNKNOWN)
def test_memory_unreadable() -> None:
    expect(FakeContext(Target(absent=NO_DOCKER), metrics=refused()), "performance.memory", Status.UNKNOWN,
           "cannot read the service's memory")


# --------------------------------------------------------------------------- performance.slow-log


def main_log(target: Target, lines: list[str]) -> Path:
    return write_log(Path(target.service.log_dir) / target.service.main_log, lines)


@covers("performance.slow-log", Status.OK)
def test_slow_log_quiet(target: Target) -> None:
    main_log(target, [log_line(30, "INFO", "GET /api/v1/tasks 200", duration_ms=12),
                      log_line(5, "INFO", "request timeout set to 30s")])  # a word 'timeout' at INFO is no timeout
    out = expect(FakeContext(target), "performance.slow-log", Status.OK, "no SLOW lines or timeouts")
    assert evidence(out)["SLOW lines"] == 0


@covers("performance.slow-log", Status.WARN)
def test_slow_log_slow_lines_and_timeouts(target: Target) -> None:
    main_log(target, [log_line(50, "WARN", "SLOW request GET /api/v1/tasks", duration_ms=1200),
                      log_line(20, "ERROR", "qdrant search: context deadline exceeded (timeout)"),
                      log_line(10, "INFO", "GET /health 200")])
    out = expect(FakeContext(target), "performance.slow-log", Status.WARN,
                 "1 SLOW line and 1 timeout in the last 60 s of the log, the latest 20 s ago",
                 cure="qdrant-connection-pool")
    assert evidence(out)["timeouts"] == 1
    assert any("SLOW request" in line for line in evidence(out)["latest"])
    assert evidence(out)["window"] == 60 and evidence(out)["latest line age"] == pytest.approx(20, abs=1)


@covers("performance.slow-log", Status.WARN)
def test_slow_log_timeouts_at_warn_level_count(target: Target) -> None:
    main_log(target, [log_line(20, "warn", "retrying after timeout from qdrant")])
    out = expect(FakeContext(target), "performance.slow-log", Status.WARN, "1 timeout in the last 60 s",
                 cure="qdrant-connection-pool")
    assert "SLOW line" not in out.summary
    assert evidence(out)["latest"] == [Path(target.service.log_dir, target.service.main_log).read_text().strip()]


@covers("performance.slow-log", Status.OK, Status.WARN)
def test_slow_log_manager_timeouts_are_not_slow_requests(target: Target) -> None:
    """Heartbeat/discovery timeouts are inter-manager's to report: counted apart, never a WARN here."""
    path = main_log(target, [
        log_line(30, "WARN", "heartbeat timeout from email-manager", component="Coordinator"),
        log_line(20, "ERROR", "email-manager: heartbeat timeout after 3s", component="Monitoring"),
        log_line(10, "ERROR", "peer lookup failed", component="API", error="discovery timeout (5s)"),
    ])
    out = expect(FakeContext(target), "performance.slow-log", Status.OK, "no SLOW lines or timeouts")
    assert evidence(out)["manager timeouts (not counted: see inter-manager)"] == 3
    with path.open("a", encoding="utf-8") as handle:
        handle.write(log_line(5, "ERROR", "qdrant upsert: timeout", component="VectorService") + "\n")
    out = expect(FakeContext(target), "performance.slow-log", Status.WARN, "1 timeout in the last 60 s",
                 "the latest 5 s ago", cure="qdrant-connection-pool")
    assert evidence(out)["timeouts"] == 1


@covers("performance.slow-log", Status.WARN)
def test_slow_log_a_managers_own_slow_request_still_counts(target: Target) -> None:
    main_log(target, [log_line(10, "ERROR", "qdrant search: context deadline exceeded (timeout)",
                               component="storage-manager")])
    expect(FakeContext(target), "performance.slow-log", Status.WARN, "1 timeout", cure="qdrant-connection-pool")


@covers("performance.slow-log", Status.OK)
def test_slow_log_only_reads_the_recent_window(target: Target) -> None:
    main_log(target, [log_line(3600, "WARN", "SLOW request GET /api/v1/tasks"),
                      log_line(120, "ERROR", "timeout talking to qdrant"),
                      log_line(1, "INFO", "GET /health 200")])
    expect(FakeContext(target), "performance.slow-log", Status.OK)


@covers("performance.slow-log", Status.WARN)
def test_slow_log_says_it_reports_the_past(target: Target) -> None:
    """An operator who just cured the cause sees the check stay WARN: the summary says the lines are past
    ones, when the latest was written, and when the check reads OK again; the evidence gives the window."""
    main_log(target, [log_line(55, "WARN", "SLOW request: GET /api/v1/tasks/search took 320ms"),
                      log_line(42, "WARN", "SLOW request: POST /api/v1/tasks took 250ms"),
                      log_line(2, "INFO", "GET /health 200")])
    out = expect(FakeContext(target), "performance.slow-log", Status.WARN,
                 "2 SLOW lines in the last 60 s of the log, the latest 42 s ago",
                 "(OK again in 18 s unless another comes)", cure="qdrant-connection-pool")
    facts = evidence(out)
    assert facts["window"] == 60 and facts["latest line age"] == pytest.approx(42, abs=1)
    assert facts["latest line at"].endswith("Z") and facts["latest"][-1].count("POST /api/v1/tasks") == 1


@covers("performance.slow-log", Status.WARN)
def test_slow_log_lines_without_a_time_say_no_age(target: Target) -> None:
    main_log(target, ["2025-06-14 13:45:30 WARN SLOW query on tasks took 1200ms"])  # not JSON: kept, no time
    out = expect(FakeContext(target), "performance.slow-log", Status.WARN, "1 SLOW line in the last 60 s of the log",
                 cure="qdrant-connection-pool")
    assert "ago" not in out.summary and "latest line age" not in evidence(out)


@covers("performance.slow-log", Status.UNKNOWN)
def test_slow_log_without_a_log(target: Target) -> None:
    expect(FakeContext(target), "performance.slow-log", Status.UNKNOWN, "cannot read the service log",
           "email-sender.log")
