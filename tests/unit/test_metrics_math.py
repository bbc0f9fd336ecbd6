"""Percentiles and rates come from the difference of two scrapes (pure logic)."""

from __future__ import annotations

import math

import pytest

from es_doctor.probes.metrics import counter_delta, histogram_quantile, parse_exposition, window_quantile

BEFORE = """
# TYPE email_sender_http_request_duration_seconds histogram
email_sender_http_request_duration_seconds_bucket{route="/a",le="0.05"} 100
email_sender_http_request_duration_seconds_bucket{route="/a",le="0.1"} 100
email_sender_http_request_duration_seconds_bucket{route="/a",le="0.5"} 100
email_sender_http_request_duration_seconds_bucket{route="/a",le="+Inf"} 100
email_sender_http_request_duration_seconds_count{route="/a"} 100
email_sender_http_request_duration_seconds_sum{route="/a"} 1
# TYPE email_sender_http_requests_total counter
email_sender_http_requests_total{route="/a",method="GET",status="200"} 100
email_sender_http_requests_total{route="/a",method="GET",status="500"} 0
"""

AFTER = """
# TYPE email_sender_http_request_duration_seconds histogram
email_sender_http_request_duration_seconds_bucket{route="/a",le="0.05"} 110
email_sender_http_request_duration_seconds_bucket{route="/a",le="0.1"} 110
email_sender_http_request_duration_seconds_bucket{route="/a",le="0.5"} 200
email_sender_http_request_duration_seconds_bucket{route="/a",le="+Inf"} 200
email_sender_http_request_duration_seconds_count{route="/a"} 200
email_sender_http_request_duration_seconds_sum{route="/a"} 30
# TYPE email_sender_http_requests_total counter
email_sender_http_requests_total{route="/a",method="GET",status="200"} 190
email_sender_http_requests_total{route="/a",method="GET",status="500"} 10
"""


def test_window_quantile_ignores_lifetime_history() -> None:
    before, after = parse_exposition(BEFORE, 0), parse_exposition(AFTER, 2)
    p95, count = window_quantile(before, after, "email_sender_http_request_duration_seconds", 0.95)
    assert count == 100
    # 10 fast + 90 in (0.1, 0.5]: rank 95 → 0.1 + 0.4 * (95 - 10) / 90
    assert p95 == pytest.approx(0.1 + 0.4 * 85 / 90)
    lifetime = histogram_quantile(0.95, [(0.05, 110), (0.1, 110), (0.5, 200), (math.inf, 200)])
    assert lifetime is not None and lifetime < p95


def test_counter_delta_and_reset() -> None:
    before, after = parse_exposition(BEFORE, 0), parse_exposition(AFTER, 2)
    assert counter_delta(before, after, "email_sender_http_requests_total") == 100
    assert counter_delta(before, after, "email_sender_http_requests_total", status="500") == 10
    assert counter_delta(after, before, "email_sender_http_requests_total", status="500") == 0  # reset → from zero
    assert counter_delta(before, after, "no_such_metric") is None


def test_quantile_edge_cases() -> None:
    assert histogram_quantile(0.5, []) is None
    assert histogram_quantile(0.5, [(0.1, 0), (math.inf, 0)]) is None
    assert histogram_quantile(0.5, [(0.1, 5)]) is None  # no +Inf bucket: not a histogram
    assert histogram_quantile(0.99, [(0.1, 0), (math.inf, 10)]) == 0.1  # all in +Inf: the highest finite bound


def test_garbage_is_refused() -> None:
    with pytest.raises(ValueError):
        parse_exposition("this is { not metrics")
