"""es-doctor load: the schedule, the statistics (percentiles, lateness, errors), the grade, the caps,
the lab rule, and the engine against small local HTTP servers (slow, hostile, absent)."""

from __future__ import annotations

import itertools
import json
import math
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from es_doctor.config import LoadConfig, Target
from es_doctor.errors import ExitStatus, UsageError
from es_doctor.findings import Status
from es_doctor.load import run as load_run
from es_doctor.load.plan import LATE_AFTER_S, MIX, Op, Plan, Scenario, make_plan, operations, parse_duration
from es_doctor.load.render import progress_line, render_json, render_table
from es_doctor.load.stats import RESOLUTION, Histogram, Recorder, grade, is_error, result
from es_doctor.probes.load import run_load


def plan(rps: float = 10, duration_s: float = 1, concurrency: int = 4, timeout_s: float = 2,
         scenario: Scenario = Scenario.api) -> Plan:
    return Plan(scenario, rps, duration_s, concurrency, timeout_s, "abc123def456")


def exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


# --------------------------------------------------------------------------- the schedule


def test_requests_are_due_at_fixed_times_whatever_the_answers() -> None:
    p = plan(rps=20, duration_s=3)
    assert p.total == 60
    assert [p.due(i) for i in (0, 1, 20, 59)] == [0.0, 0.05, 1.0, 2.95]
    assert p.marker == "es-doctor-load-abc123def456"
    assert p.title(7).startswith(p.marker + " ")


@pytest.mark.parametrize("scenario", list(Scenario))
def test_the_mix_holds_over_every_period_and_never_bunches(scenario: Scenario) -> None:
    mix = MIX[scenario]
    period = sum(weight for _op, weight in mix)
    ops = operations(scenario, period * 50)
    for start in range(0, len(ops), period):
        assert Counter(ops[start:start + period]) == dict(mix)
    # smooth: an operation of weight w never comes more than ceil(period / w) + 1 requests apart
    for op, weight in mix:
        where = [i for i, o in enumerate(ops) if o is op]
        assert max(b - a for a, b in itertools.pairwise(where)) <= math.ceil(period / weight) + 1
    assert {o for o in ops if o.writes} <= {Op.CREATE}


def test_durations_parse_and_bad_ones_are_usage_errors() -> None:
    assert parse_duration("30s") == 30 and parse_duration("2m") == 120 and parse_duration("45") == 45
    assert parse_duration("500ms") == 0.5 and parse_duration("1.5m") == 90
    for bad in ("", "1x", "-5s", "s", "1 2"):
        with pytest.raises(UsageError, match="not a duration"):
            parse_duration(bad)


def test_caps_of_the_target_refuse_more_and_name_the_config_key() -> None:
    caps = LoadConfig(max_rps=50, max_duration_s=60, max_concurrency=8)
    ok = make_plan(Scenario.mixed, 50, "1m", 8, "5s", caps, "staging")
    assert (ok.rps, ok.duration_s, ok.concurrency, ok.timeout_s) == (50, 60, 8, 5)
    assert len(ok.run_id) == 12 and ok.run_id != make_plan(Scenario.api, 1, "1s", 1, "1s", caps, "s").run_id
    cases = [((51, "1m", 8, "5s"), r"--rps 51 is over the cap of target 'staging': 50 requests/s \(load.max_rps"),
             ((10, "61s", 8, "5s"), r"over the cap .*: 60 s \(load.max_duration_s"),
             ((10, "10s", 9, "5s"), r"--concurrency 9 is over the cap .*: 8 \(load.max_concurrency"),
             ((0, "10s", 1, "5s"), "--rps must be more than 0"),
             ((10, "0s", 1, "5s"), "--duration must be more than 0"),
             ((10, "1s", 0, "5s"), "--concurrency must be more than 0"),
             ((10, "1s", 1, "2m"), "--timeout is at most 60s")]
    for (rps, duration, concurrency, timeout), message in cases:
        with pytest.raises(UsageError, match=message) as caught:
            make_plan(Scenario.api, rps, duration, concurrency, timeout, caps, "staging")
        assert caught.value.exit_status is ExitStatus.USAGE


def test_default_caps_are_200_rps_5_minutes_64_in_flight_and_config_checks_them() -> None:
    caps = Target().load
    assert (caps.lab, caps.max_rps, caps.max_duration_s, caps.max_concurrency) == (False, 200, 300, 64)
    with pytest.raises(ValueError):
        LoadConfig(max_rps=0)
    with pytest.raises(ValueError):
        LoadConfig(max_duration_s=float("nan"))
    with pytest.raises(ValueError):
        LoadConfig.model_validate({"max_rsp": 10})  # a typo is an unknown key


# --------------------------------------------------------------------------- statistics


def test_histogram_percentiles_are_within_its_resolution_of_the_exact_nearest_rank() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(-3, 1) for _ in range(20_000)] + [5.0]  # a long tail and one outlier
    h = Histogram()
    for v in values:
        h.add(v)
    for q in (0.5, 0.9, 0.95, 0.99, 0.999):
        got = h.percentile(q)
        assert got is not None
        assert abs(got - exact(values, q)) <= exact(values, q) * RESOLUTION
    assert h.max == 5.0 and h.min == min(values) and h.count == len(values)
    assert h.mean == pytest.approx(sum(values) / len(values))


def test_histogram_small_cases() -> None:
    h = Histogram()
    assert h.percentile(0.95) is None and h.mean is None
    for ms in range(1, 101):
        h.add(ms / 1000)
    assert h.percentile(0.50) == pytest.approx(0.050, rel=RESOLUTION)
    assert h.percentile(0.95) == pytest.approx(0.095, rel=RESOLUTION)
    assert h.percentile(0.99) == pytest.approx(0.099, rel=RESOLUTION)
    assert h.percentile(1.0) == pytest.approx(0.100, rel=RESOLUTION) and h.percentile(1.0) <= 0.100
    one = Histogram()
    one.add(0.0)
    assert one.percentile(0.99) == 0.0  # clamped to the only value, not the bucket's middle
    assert len(h.buckets) <= 100


def test_lateness_counts_only_requests_sent_after_their_due_time_and_why() -> None:
    rec = Recorder(plan())
    rec.sent(0.0, False)
    rec.sent(LATE_AFTER_S, False)  # exactly at the tolerance: on time
    rec.sent(0.050, False)
    rec.sent(0.200, True)
    assert (rec.scheduled, rec.late, rec.late_for_slot, rec.max_lag) == (4, 2, 1, 0.200)


def test_what_counts_as_an_error() -> None:
    assert all(is_error(k) for k in ("500", "502", "503", "429", "timeout", "refused", "cut", "too-large", "error",
                                      "dropped"))
    assert not any(is_error(k) for k in ("200", "201", "202", "301", "400", "404", "401"))


def filled(latencies_ms: list[float], kinds: list[str] | None = None, late_generator: int = 0,
           service_ms: float | None = None) -> Recorder:
    rec = Recorder(plan())
    for i, ms in enumerate(latencies_ms):
        rec.sent(0.05 if i < late_generator else 0.0, False)
        kind = kinds[i] if kinds and i < len(kinds) else "200"
        rec.done(Op.MANAGERS, kind, ms / 1000, None if service_ms is None else service_ms / 1000)
    return rec


def graded(rec: Recorder) -> list[Any]:
    return grade(rec, 100, 500, 1, 5)


def test_grade_follows_the_guide_thresholds_strictly_over() -> None:
    ok = graded(filled([100.0] * 100))  # p95 exactly 100 ms: not over
    assert [g.status for g in ok] == [Status.OK, Status.OK]
    warn = graded(filled([20.0] * 90 + [150.0] * 10))
    assert warn[0].status is Status.WARN and warn[0].value == pytest.approx(150, rel=RESOLUTION)
    crit = graded(filled([20.0] * 90 + [800.0] * 10))
    assert crit[0].status is Status.CRIT
    errors = graded(filled([10.0] * 100, ["500"] * 2))
    assert errors[1].status is Status.WARN and errors[1].value == 2.0
    errors = graded(filled([10.0] * 100, ["503"] * 3 + ["timeout"] * 3))
    assert errors[1].status is Status.CRIT and errors[1].value == 6.0
    not_errors = graded(filled([10.0] * 100, ["404"] * 50))
    assert not_errors[1].status is Status.OK


def test_timeouts_have_no_latency_but_count_as_errors() -> None:
    rec = Recorder(plan())
    rec.done(Op.CREATE, "timeout", None)
    rec.done(Op.CREATE, "201", 0.010)
    assert rec.latency.count == 1 and rec.errors == 1 and rec.completed == 2
    assert rec.creates_unanswered == 1  # its record may exist: the marker finds it


def test_a_generator_that_fell_behind_cannot_blame_the_server() -> None:
    # slow from the due times, fast from the actual sends: the slowness may be the generator's own
    slow_and_late = graded(filled([300.0] * 100, late_generator=10, service_ms=20.0))
    assert slow_and_late[0].status is Status.UNKNOWN and "fell behind" in slow_and_late[0].summary
    # slow even from the actual sends: that much is the server's, graded as such
    server_slow = graded(filled([900.0] * 100, late_generator=10, service_ms=600.0))
    assert server_slow[0].status is Status.CRIT and "600 ms from the actual sends" in server_slow[0].summary
    assert server_slow[0].value == pytest.approx(900, rel=RESOLUTION)
    fast_but_late = graded(filled([20.0] * 100, late_generator=10))
    assert fast_but_late[0].status is Status.OK  # within the threshold even with the generator's delay
    busy_connections = filled([300.0] * 100, service_ms=20.0)
    for _ in range(10):
        busy_connections.sent(0.05, True)  # late because every connection was busy: the server's doing
    assert graded(busy_connections)[0].status is Status.WARN


def test_nothing_answered_is_unknown_and_exit_codes_follow_diagnose() -> None:
    nothing = graded(Recorder(plan()))
    assert [g.status for g in nothing] == [Status.UNKNOWN]
    assert result(Recorder(plan()), "lab", nothing).exit_code == ExitStatus.UNKNOWN
    for latencies, code in (([10.0] * 20, ExitStatus.OK), ([200.0] * 20, ExitStatus.WARNING),
                            ([900.0] * 20, ExitStatus.CRITICAL)):
        rec = filled(latencies)
        assert result(rec, "lab", graded(rec)).exit_code == code


def test_result_and_its_renderings() -> None:
    rec = filled([10.0, 20.0, 30.0, 40.0], ["200", "200", "500", "200"])
    rec.done(Op.CREATE, "201", 0.050)
    rec.created_ids.append(42)
    rec.cancel()
    rec.elapsed_s = 2.0
    rec.interrupted = True
    res = result(rec, "lab", graded(rec))
    assert res.completed == 5 and res.cancelled == 1 and res.throughput_rps == 2.5
    assert res.latency_ms["max"] == 50.0 and res.errors == 1 and res.error_rate_pct == 20.0
    assert res.outcomes == {"200": 3, "201": 1, "500": 1} and res.status is Status.CRIT
    assert res.summary.startswith("interrupted after 2.0s (partial result)")
    assert [o.op for o in res.operations] == ["managers", "create"]
    res.test_data = {"marker": "es-doctor-load-x", "tasks_created": 1, "removed": {"qdrant": 1}, "left": ["pg: x"]}
    data = json.loads(render_json(res))
    assert data["schema_version"] == "load/1.0" and data["latency_ms"]["p50"] is not None
    table = render_table(res)
    assert "interrupted: partial result" in table and "p95" in table and "removed: qdrant: 1" in table
    assert "! left: pg: x" in table and "POST /api/v1/tasks" in table
    line = progress_line(rec.plan, rec, 0.5)
    assert "sent 4" in line and "done 5" in line and "errors 1" in line


# --------------------------------------------------------------------------- the lab rule


class _Session:
    def __init__(self, proof: str | None) -> None:
        self.proof = proof


def test_a_target_that_is_not_the_lab_is_refused_without_yes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(load_run, "lab_identity", lambda session: session.proof)
    plain = Target()
    with pytest.raises(UsageError, match=r"is not the lab .*pass --yes") as caught:
        load_run.authorise(_Session("x"), plain, "production", yes=False)  # type: ignore[arg-type]
    assert caught.value.exit_status is ExitStatus.USAGE
    assert load_run.authorise(_Session(None), plain, "production", yes=True) == "--yes"  # type: ignore[arg-type]
    marked = Target(load=LoadConfig(lab=True))
    with pytest.raises(UsageError, match="does not answer GET /_lab/faults like the lab"):
        load_run.authorise(_Session(None), marked, "lab", yes=False)  # type: ignore[arg-type]
    assert load_run.authorise(_Session("it is"), marked, "lab", yes=False) == "it is"  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the engine, on real local servers


_IDS = itertools.count(1)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    delay_s = 0.0
    mode = "ok"

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        time.sleep(self.delay_s)
        if self.mode == "cut":
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        if self.mode == "huge":
            body = b"x" * (1 << 20)
        elif self.command == "POST":
            body = json.dumps({"id": next(_IDS)}).encode()  # no global random: hypothesis tests watch it
        else:
            body = b'{"status":"ok"}'
        self.send_response(201 if self.command == "POST" else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer


class _Quiet(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away (cut, cancelled) is what these tests do on purpose


@pytest.fixture
def server() -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("H", (_Handler,), {})
    httpd = _Quiet(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    httpd.shutdown()
    httpd.server_close()


def test_the_engine_sends_the_plan_and_records_the_created_ids(server: tuple[str, type[_Handler]]) -> None:
    url, _handler = server
    p = plan(rps=40, duration_s=1, concurrency=8)
    rec = Recorder(p)
    ticks: list[float] = []
    run_load(p, url, {}, rec, threading.Event(), ticks.append, tick_s=0.1)
    assert rec.scheduled == rec.completed == 40 and rec.cancelled == 0 and not rec.interrupted
    assert rec.outcomes == {"200": 32, "201": 8} and len(rec.created_ids) == 8
    assert 0.9 < rec.elapsed_s < 3 and len(ticks) >= 5


def test_a_slow_server_is_not_hidden_by_the_concurrency_cap(server: tuple[str, type[_Handler]]) -> None:
    """Coordinated omission: one connection, 0.2 s per answer, 10 req/s due. A closed-loop client would
    report 200 ms; measured from the due times, the queue shows (request n waits about n × 0.1 s)."""
    url, handler = server
    handler.delay_s = 0.2
    p = plan(rps=10, duration_s=1, concurrency=1, timeout_s=5)
    rec = Recorder(p)
    run_load(p, url, {}, rec, threading.Event())
    assert rec.completed == 10 and rec.errors == 0
    assert rec.late_for_slot >= 8 and rec.late == rec.late_for_slot
    p95 = rec.latency.percentile(0.95)
    assert p95 is not None and p95 > 0.9  # the last requests waited ~1 s for the connection
    alone = rec.service.percentile(0.95)  # what a closed-loop client would have reported
    assert alone is not None and 0.19 < alone < 0.6


def test_failures_are_classified_never_raised(server: tuple[str, type[_Handler]]) -> None:
    url, handler = server
    handler.mode = "huge"
    rec = Recorder(plan(rps=10, duration_s=0.3))
    run_load(rec.plan, url, {}, rec, threading.Event())
    assert set(rec.outcomes) == {"too-large"}
    handler.mode, handler.delay_s = "ok", 1.0
    rec = Recorder(plan(rps=10, duration_s=0.3, timeout_s=0.2))
    run_load(rec.plan, url, {}, rec, threading.Event())
    assert set(rec.outcomes) == {"timeout"} and rec.latency.count == 0
    handler.mode, handler.delay_s = "cut", 0.0
    rec = Recorder(plan(rps=10, duration_s=0.3))
    run_load(rec.plan, url, {}, rec, threading.Event())
    assert set(rec.outcomes) == {"cut"}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    rec = Recorder(plan(rps=10, duration_s=0.3))
    run_load(rec.plan, f"http://127.0.0.1:{closed}", {}, rec, threading.Event())
    assert set(rec.outcomes) == {"refused"} and rec.errors == rec.completed == 3


def test_stop_ends_the_run_at_once_and_cancels_what_is_in_flight(server: tuple[str, type[_Handler]]) -> None:
    url, handler = server
    handler.delay_s = 2.0
    p = plan(rps=20, duration_s=30, concurrency=64, timeout_s=10)
    rec = Recorder(p)
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    run_load(p, url, {}, rec, stop)
    assert time.monotonic() - started < 1.5
    assert rec.interrupted and rec.completed == 0 and rec.cancelled == rec.scheduled > 0


def test_an_endpoint_this_version_does_not_serve_makes_the_run_unknown_not_ok() -> None:
    rec = filled([10.0] * 20)
    for _ in range(10):
        rec.done(Op.SEARCH, "404", 0.002)
    grades = graded(rec)
    assert [g.status for g in grades] == [Status.OK, Status.OK, Status.UNKNOWN]
    assert "GET /api/v1/tasks/search answered 404 to every request (not served by this version)" in grades[2].summary
    assert result(rec, "lab", grades).exit_code == ExitStatus.UNKNOWN
    denied = filled([10.0] * 5, ["401"] * 5)
    assert "answered 401 to every request (refused)" in graded(denied)[-1].summary
    some = filled([10.0] * 5, ["404", "200", "200", "200", "200"])  # one 404 among answers: served
    assert [g.name for g in graded(some)] == ["latency p95", "error rate"]


def test_a_server_slower_than_the_run_drops_requests_and_the_run_still_ends(server: tuple[str, type[_Handler]]) -> None:
    """One connection, answers that never come within the timeout: the requests that still wait for the
    connection at duration + timeout are dropped (errors), and the run ends within duration + 2 × timeout."""
    url, handler = server
    handler.delay_s = 3.0
    p = plan(rps=10, duration_s=1, concurrency=1, timeout_s=0.5)
    rec = Recorder(p)
    started = time.monotonic()
    run_load(p, url, {}, rec, threading.Event())
    assert time.monotonic() - started < 2.5
    assert rec.scheduled == 10 and rec.errors == rec.completed == 10
    assert rec.outcomes["timeout"] >= 2 and rec.outcomes["dropped"] >= 5
    assert rec.outcomes["timeout"] + rec.outcomes["dropped"] == 10
    res = result(rec, "lab", graded(rec))
    assert res.dropped == rec.outcomes["dropped"] and res.status is Status.CRIT
    assert f"10 due, {10 - res.dropped} sent" in render_table(res)


def test_the_shipped_json_schema_is_the_models() -> None:
    from pathlib import Path

    from es_doctor.load.stats import load_schema

    shipped = json.loads((Path(__file__).parents[2] / "docs" / "load.schema.json").read_text(encoding="utf-8"))
    assert shipped == load_schema(), "regenerate docs/load.schema.json (see README, es-doctor load)"
    assert shipped["properties"]["schema_version"]["default"] == "load/1.0"
