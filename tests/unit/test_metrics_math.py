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


def test_scrape_from_series_takes_one_past_scrape_of_the_service() -> None:
    from es_doctor.probes.metrics import scrape_from_series

    def series(name: str, instance: str, values: list[tuple[float, float]], **labels: str) -> tuple[
            dict[str, str], list[tuple[float, float]]]:
        return {"__name__": name, "job": "email-sender", "instance": instance, **labels}, values

    mine, other = "127.0.0.1:8081", "10.0.0.9:8081"
    data = [
        series("email_sender_errors_total", mine, [(100.0, 1.0), (101.0, 2.0), (102.0, 3.0), (103.0, 4.0)]),
        series("email_sender_http_request_duration_seconds_bucket", mine, [(101.0, 7.0), (102.0, 9.0)], le="0.1"),
        series("email_sender_errors_total", other, [(102.0, 50.0)]),
    ]
    # the newest scrape at least 1 s old (now = 103.5): t = 102, every series of this instance at t
    got = scrape_from_series(data, mine, newest=102.5, oldest=43.5)
    assert got is not None and got.taken_at == 102.0
    assert got.total("email_sender_errors_total") == 3.0, "the other instance is not counted"
    bucket = got.get("email_sender_http_request_duration_seconds_bucket", le="0.1")
    assert [s.value for s in bucket] == [9.0] and bucket[0].label("job") is None
    # nothing old enough -> None; an unknown instance with several in the job -> None
    assert scrape_from_series(data, mine, newest=99.0, oldest=40.0) is None
    assert scrape_from_series(data, "nowhere:1", newest=102.5, oldest=43.5) is None
    # a job with a single instance is taken whatever its address is called there
    single = [series("email_sender_errors_total", "email-sender-go:8081", [(100.0, 5.0)])]
    only = scrape_from_series(single, mine, newest=101.0, oldest=0.0)
    assert only is not None and only.total("email_sender_errors_total") == 5.0


def test_counters_went_back_spots_a_restart_between_scrapes() -> None:
    from es_doctor.probes.metrics import counters_went_back

    before = parse_exposition('req_total{route="/a"} 10\nreq_total{route="/b"} 5\ndepth 9\n', taken_at=1.0)
    later = parse_exposition('req_total{route="/a"} 12\nreq_total{route="/b"} 5\ndepth 1\n', taken_at=3.0)
    restarted = parse_exposition('req_total{route="/a"} 2\nreq_total{route="/b"} 5\ndepth 9\n', taken_at=3.0)
    assert not counters_went_back(before, later), "a gauge going down is no restart"
    assert counters_went_back(before, restarted)


def test_scrape_from_series_never_takes_a_failed_scrape() -> None:
    from es_doctor.probes.metrics import scrape_from_series

    labels = {"job": "email-sender", "instance": "127.0.0.1:8081"}
    data = [
        ({"__name__": "up", **labels}, [(100.0, 1.0), (101.0, 1.0), (102.0, 0.0)]),
        ({"__name__": "email_sender_errors_total", **labels}, [(100.0, 4.0), (101.0, 5.0)]),
    ]
    got = scrape_from_series(data, "127.0.0.1:8081", newest=102.5, oldest=90.0)
    assert got is not None and got.taken_at == 101.0, "t=102 was a failed scrape (the service was down)"
    assert got.total("email_sender_errors_total") == 5.0
    down = [(data[0][0], [(102.0, 0.0)]), data[1]]
    assert scrape_from_series(down, "127.0.0.1:8081", newest=102.5, oldest=101.5) is None
