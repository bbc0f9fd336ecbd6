"""The signals' pure parts: the Wilson interval, the sample rule, and the arithmetic over two scrapes."""

from __future__ import annotations

import random

import pytest

from es_doctor.config import MetricNames, Target, Thresholds
from es_doctor.findings import Status
from es_doctor.probes.metrics import parse_exposition
from es_doctor.signals import (
    API_LATENCY,
    ERROR_RATE,
    INSERT_ERRORS,
    Ratio,
    grade_quantile,
    grade_ratio,
    users_matchers,
    wilson,
    wilson_lower_promql,
)

REQ = "email_sender_http_requests_total"


def test_wilson_interval_known_values() -> None:
    low, high = wilson(20, 1000)
    assert low == pytest.approx(0.01298, abs=1e-4) and high == pytest.approx(0.03068, abs=1e-4)
    assert wilson(0, 10)[0] == 0.0 and wilson(0, 10)[1] == pytest.approx(0.2775, abs=1e-3)
    assert wilson(5, 0) == (0.0, 1.0)
    assert wilson(10, 10)[1] == 1.0


def test_too_few_requests_are_not_graded() -> None:
    verdict = grade_ratio(Ratio(10, 50, 2.0, "two scrapes"), 1.0, 5.0, 100)
    assert verdict.status is Status.OK and not verdict.graded
    assert "too few requests to grade: 50 (at least 100)" in verdict.note


@pytest.mark.parametrize(("events", "total", "expected"), [
    (20, 1000, Status.WARN),  # 2 %: lower bound 1.3 %
    (12, 1000, Status.OK),  # 1.2 %: lower bound 0.69 %, not significant
    (100, 1000, Status.CRIT),  # 10 %: lower bound 8.3 %
    (60, 1000, Status.WARN),  # 6 %: lower bound 4.7 %, over WARN only
    (0, 100_000, Status.OK),
])
def test_a_rate_is_graded_by_its_lower_bound(events: int, total: int, expected: Status) -> None:
    assert grade_ratio(Ratio(events, total, 60.0, "x"), 1.0, 5.0, 100).status is expected


def test_one_or_two_errors_never_alarm_whatever_the_traffic() -> None:
    """Rare errors (one or two in a window) are never a WARN: under min_requests nothing is graded, and
    from 100 requests up the lower bound of 2 errors is under 1 %."""
    for requests in range(1, 20_000):
        for errors in (1, 2):
            assert grade_ratio(Ratio(errors, requests, 60.0, "x"), 1.0, 5.0, 100).status is Status.OK, requests


@pytest.mark.parametrize("requests", [20, 50, 100, 150, 200, 300, 500])
def test_rare_errors_under_the_threshold_at_low_traffic_almost_never_alarm(requests: int) -> None:
    """A service erring on 0.3 % of its requests (under the 1 % WARN), seen over windows of 20-500
    requests, 2,000 windows each: at most 0.5 % of them read WARN (a point estimate would have read WARN
    on every window with an error under 100 requests, 26 % of them at 100)."""
    rng = random.Random(20261207 + requests)
    alarms = 0
    for _ in range(2000):
        errors = sum(1 for _ in range(requests) if rng.random() < 0.003)
        alarms += grade_ratio(Ratio(errors, requests, 60.0, "x"), 1.0, 5.0, 100).status is not Status.OK
    assert alarms <= 10


def test_a_rate_at_the_threshold_rarely_alarms_and_one_well_over_always_does() -> None:
    """At exactly 1 % the lower bound is over 1 % at most 2.5 % of the time (one-sided 95 % bound); at 3 %
    on 1,000 requests, practically always."""
    rng = random.Random(7)

    def share(rate: float, requests: int, windows: int = 400) -> float:
        hits = 0
        for _ in range(windows):
            errors = sum(1 for _ in range(requests) if rng.random() < rate)
            hits += grade_ratio(Ratio(errors, requests, 60.0, "x"), 1.0, 5.0, 100).status is Status.WARN
        return hits / windows

    assert share(0.01, 1000) <= 0.04
    assert share(0.03, 1000) >= 0.99


def test_wilson_promql_is_the_python_formula() -> None:
    """The PromQL bound, evaluated here with the counts put in as numbers, equals wilson()."""
    for events, total in ((3, 100), (20, 1000), (0, 50), (50, 50)):
        expr = wilson_lower_promql(str(events), str(total))
        value = eval(expr.replace("sqrt", "__import__('math').sqrt"))
        assert value == pytest.approx(wilson(events, total)[0], abs=1e-9)


def _scrape(lines: dict[str, float], at: float):  # type: ignore[no-untyped-def]
    text = f"# TYPE {REQ[:-6]} counter\n" + "".join(f"{k} {v}\n" for k, v in lines.items())
    return parse_exposition(text, taken_at=at)


def test_error_rate_arithmetic_leaves_probe_routes_out_and_reads_status_or_code() -> None:
    before = _scrape({f'{REQ}{{route="/api/v1/tasks",status="200"}}': 100,
                      f'{REQ}{{route="/api/v1/tasks",code="500"}}': 1,
                      f'{REQ}{{route="/ready",status="503"}}': 10,
                      f'{REQ}{{path="/health",status="500"}}': 0}, 0.0)
    after = _scrape({f'{REQ}{{route="/api/v1/tasks",status="200"}}': 190,
                     f'{REQ}{{route="/api/v1/tasks",code="500"}}': 11,
                     f'{REQ}{{route="/ready",status="503"}}': 60,
                     f'{REQ}{{path="/health",status="500"}}': 7}, 2.0)
    assert ERROR_RATE.delta(MetricNames(), before, after) == (10.0, 100.0)


def test_a_counter_reset_counts_from_zero() -> None:
    before = _scrape({f'{REQ}{{route="/a",status="500"}}': 50, f'{REQ}{{route="/a",status="200"}}': 500}, 0.0)
    after = _scrape({f'{REQ}{{route="/a",status="500"}}': 2, f'{REQ}{{route="/a",status="200"}}': 98}, 2.0)
    assert ERROR_RATE.delta(MetricNames(), before, after) == (2.0, 100.0)


def test_insert_ratio_arithmetic() -> None:
    ops = "email_sender_vector_operations_total"

    def scrape(ok: int, bad: int, searches: int, at: float):  # type: ignore[no-untyped-def]
        return parse_exposition(f"# TYPE {ops[:-6]} counter\n"
                                f'{ops}{{op="insert",result="ok"}} {ok}\n'
                                f'{ops}{{op="insert",result="error"}} {bad}\n'
                                f'{ops}{{op="search",result="error"}} {searches}\n', taken_at=at)

    assert INSERT_ERRORS.delta(MetricNames(), scrape(10, 1, 5, 0), scrape(105, 6, 500, 2)) == (5.0, 100.0)


def test_latency_arithmetic_leaves_probe_routes_out_and_grades_on_enough_observations() -> None:
    hist = "email_sender_http_request_duration_seconds"

    def scrape(fast: int, slow_probe: int, at: float):  # type: ignore[no-untyped-def]
        lines = [f"# TYPE {hist} histogram"]
        for route, n, le_fast in (("/api/v1/tasks", fast, fast), ("/health", slow_probe, 0)):
            lines += [f'{hist}_bucket{{route="{route}",le="0.05"}} {le_fast}',
                      f'{hist}_bucket{{route="{route}",le="1.0"}} {n}',
                      f'{hist}_bucket{{route="{route}",le="+Inf"}} {n}',
                      f'{hist}_count{{route="{route}"}} {n}', f'{hist}_sum{{route="{route}"}} 0']
        return parse_exposition("\n".join(lines) + "\n", taken_at=at)

    q = API_LATENCY.from_scrapes(MetricNames(), scrape(0, 0, 0), scrape(40, 40, 2), "two scrapes")
    assert q is not None and q.count == 40 and q.p95 is not None and q.p95 <= 0.05
    assert grade_quantile(q, 100, 500, 10).status is Status.OK
    few = API_LATENCY.from_scrapes(MetricNames(), scrape(0, 0, 0), scrape(4, 0, 2), "two scrapes")
    assert few is not None and not grade_quantile(few, 100, 500, 10).graded


def test_promql_builders_use_the_targets_names_jobs_and_window() -> None:
    target = Target(metrics=MetricNames(requests_total="svc_requests_total"),
                    thresholds=Thresholds(signal_window_s=120, min_requests=40))
    expr = ERROR_RATE.alert_expr(target, 1.0)
    assert "svc_requests_total{job=~\"email-sender|email-sender-go\"" in expr
    assert "[2m]" in expr and ">= 40" in expr and all(m in expr for m in users_matchers())
