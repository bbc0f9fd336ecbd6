"""The guide's eight dashboard widgets, per target, with a short trend.

Sampled once per round after the diagnosis, read-only. The widgets of a signal a check grades (API
latency, error rate, memory) show the numbers of that check's finding in this round: the same window,
sample and status, so a widget never contradicts its check. The rest come from one scrape of the
service's metrics (rates from this round's scrape and the previous round's) and, when the target has a
Prometheus, its answers for what needs history (the error rate over 1 h and 24 h, with the signal's own
PromQL: :mod:`es_doctor.signals`). Without Prometheus those error rates are computed over what the daemon
itself has seen (up to 24 h), and say so.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass, field

from es_doctor.config import Target, parse_size
from es_doctor.findings import Finding, Report, Status
from es_doctor.probes.metrics import Scrape, counter_delta, scrape
from es_doctor.probes.prometheus import PrometheusProbe
from es_doctor.probes.session import ProbeSession
from es_doctor.signals import (
    ERROR_RATE,
    event_bus_from_scrapes,
    grade_level,
    is_error,
    is_user_request,
    memory_from_scrape,
    memory_share_pct,
)

TREND_POINTS = 20
SPARKS = "▁▂▃▄▅▆▇█"
HTTP_TIMEOUT_S = 3.0


@dataclass
class Widget:
    key: str
    title: str
    #: the main value, as words and numbers
    value: str
    #: secondary lines (label, value)
    details: list[tuple[str, str]] = field(default_factory=list)
    #: the status this value reads as, when it has thresholds (else None)
    status: Status | None = None
    trend: list[float] = field(default_factory=list)
    source: str = ""

    def sparkline(self) -> str:
        return sparkline(self.trend)


def sparkline(values: list[float]) -> str:
    if not values:
        return ""
    low, high = min(values), max(values)
    span = high - low
    return "".join(SPARKS[0 if span <= 0 else min(7, int((v - low) / span * 7.999))] for v in values)


def _fmt(value: float | None, unit: str = "", digits: int = 3) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}g}{unit}"


def _ms_value(ms: float | None) -> str:
    return "n/a" if ms is None else f"{ms:.0f} ms"


def _pct(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio * 100:.2f} %"


def _grade(value: float | None, warn: float, crit: float | None = None) -> Status | None:
    return None if value is None else grade_level(value, warn, crit)


def _evidence(finding: Finding | None, name: str) -> float | None:
    """A number of a finding's evidence (None when the finding or the number is not there)."""
    if finding is None:
        return None
    value = next((e.value for e in finding.evidence if e.name == name), None)
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _graded(finding: Finding | None) -> Status | None:
    return finding.status if finding is not None and finding.status in (Status.OK, Status.WARN, Status.CRIT) \
        else None


def _window_words(finding: Finding | None, noun: str) -> str:
    sample, seconds = _evidence(finding, noun), _evidence(finding, "window")
    if finding is None or sample is None or seconds is None:
        return ""
    return f"{finding.id}: {sample:.0f} {noun} over {seconds:.0f} s"


class Board:
    """The widgets of one target; keeps the previous scrape and the trends between rounds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._previous: Scrape | None = None
        #: (time, requests, errors) per round, for error rates without Prometheus (24 h)
        self._totals: deque[tuple[float, float, float]] = deque()
        self._trends: dict[str, deque[float]] = {}
        self.widgets: list[Widget] = []

    def _trend(self, key: str, value: float | None) -> list[float]:
        points = self._trends.setdefault(key, deque(maxlen=TREND_POINTS))
        if value is not None:
            points.append(value)
        return list(points)

    def sample(self, target: Target, report: Report) -> list[Widget]:
        with ProbeSession(target, timeout=HTTP_TIMEOUT_S) as session:
            got = scrape(session.plain_http(), target.service.metrics_url)
            now_scrape = got.value if got.failure is None else None
            prom = session.prometheus() if target.is_present("prometheus")[0] else None
            with self._lock:
                widgets = self._build(target, report, now_scrape, prom)
                if now_scrape is not None:
                    self._previous = now_scrape
                self.widgets = widgets
        return widgets

    # ------------------------------------------------------------------ the eight widgets

    def _build(self, target: Target, report: Report, cur: Scrape | None, prom: PrometheusProbe | None) -> list[Widget]:
        m, th = target.metrics, target.thresholds
        prev = self._previous
        window = prev is not None and cur is not None and cur.taken_at > prev.taken_at
        source = "service metrics" + (" (this round and the previous)" if window else "")
        widgets = [self._service(report)]

        found = {f.id: f for f in report.findings}

        # API response time p50/p95/p99: the check's numbers (its window, its sample)
        latency = found.get("performance.latency")
        p95_ms = _evidence(latency, "p95")
        widgets.append(Widget("latency", "API response time",
                              "n/a" if p95_ms is None else f"p95 {p95_ms:.0f} ms",
                              [("p50", _ms_value(_evidence(latency, "p50"))),
                               ("p99", _ms_value(_evidence(latency, "p99"))),
                               ("sample", _window_words(latency, "requests in window") or "n/a")],
                              _graded(latency) if p95_ms is not None else None,
                              self._trend("latency", p95_ms), "diagnosis (performance.latency)"))

        # error rate: the check's window, then 1 h / 24 h
        errors_finding = found.get("performance.error-rate")
        now_pct = _evidence(errors_finding, "error rate")
        rates: dict[str, float | None] = {}
        err_source = ""
        if prom is not None:
            for span in ("1h", "24h"):
                rates[span] = _prom_scalar(prom, ERROR_RATE.ratio_promql(target, span))
            err_source = "Prometheus" if any(v is not None for v in rates.values()) else ""
        if cur is not None:
            users = [x for x in cur.get(m.requests_total) if is_user_request(x)]
            total = sum(x.value for x in users)
            errors = sum(x.value for x in users if is_error(x))
            self._totals.append((cur.taken_at, total, errors))
            while self._totals and self._totals[0][0] < cur.taken_at - 86400:
                self._totals.popleft()
        if not any(v is not None for v in rates.values()):
            rates = {"1h": self._own_rate(3600), "24h": self._own_rate(86400)}
            seen = (self._totals[-1][0] - self._totals[0][0]) if len(self._totals) > 1 else 0.0
            err_source = f"service metrics, over what es-doctor saw ({seen / 60:.0f} min)"
        widgets.append(Widget("errors", "Error rate",
                              "n/a" if now_pct is None else f"{now_pct:.2f} %",
                              [("sample", _window_words(errors_finding, "requests") or "n/a"),
                               ("1 h", _pct(rates.get("1h"))), ("24 h", _pct(rates.get("24h")))],
                              _graded(errors_finding) if now_pct is not None else None,
                              self._trend("errors", now_pct),
                              "diagnosis (performance.error-rate)" + (f"; 1 h, 24 h: {err_source}" if err_source
                                                                      else "")))

        # memory / CPU: the check's share; CPU from this round's scrapes
        memory_finding = found.get("performance.memory")
        share = _evidence(memory_finding, "memory")
        memory = memory_from_scrape(m, cur) if cur else None
        limit = parse_size(target.service.memory_limit)
        if share is None and memory is not None:
            share = memory_share_pct(memory, limit)
        cpu = None
        if window and prev and cur:
            used = counter_delta(prev, cur, "process_cpu_seconds_total")
            cpu = None if used is None else used / (cur.taken_at - prev.taken_at) * 100
        widgets.append(Widget("memory", "Memory / CPU", f"{_fmt(share, ' %')} of {target.service.memory_limit}",
                              [("resident", _fmt(None if memory is None else memory / 2**20, " MiB")),
                               ("CPU", _fmt(cpu, " %"))],
                              _graded(memory_finding) if memory_finding is not None and share is not None
                              else _grade(share, th.memory_warn_pct, th.memory_crit_pct),
                              self._trend("memory", share), source))

        # vector operations/s
        ops = self._rate(prev, cur, m.vector_operations) if window else None
        errors_ops = self._rate(prev, cur, m.vector_operations, result="error") if window else None
        widgets.append(Widget("vectors", "Vector operations", f"{_fmt(ops)} /s", [("errors", f"{_fmt(errors_ops)} /s")],
                              None, self._trend("vectors", ops), source))

        # manager status grid
        managers = sorted((s.label("manager") or "?", s.value) for s in (cur.get(m.managers_up) if cur else []))
        down = [name for name, value in managers if value < 1]
        widgets.append(Widget("managers", "Managers",
                              "n/a" if not managers else f"{len(managers) - len(down)}/{len(managers)} up",
                              [(name, "up" if value >= 1 else "DOWN") for name, value in managers],
                              None if not managers else (Status.CRIT if down else Status.OK),
                              self._trend("managers", float(len(managers) - len(down)) if managers else None), source))

        # event bus throughput
        published = self._rate(prev, cur, m.event_bus_published) if window else None
        depth = cur.total(m.event_bus_depth) if cur else None
        capacity = cur.total(m.event_bus_capacity) if cur else None
        dropped = self._rate(prev, cur, m.event_bus_dropped) if window else None
        # the event bus use is graded by its check (inter-manager.event-bus): the widget shows that status
        bus_finding = found.get("inter-manager.event-bus")
        bus = event_bus_from_scrapes(m, prev if window and prev else cur, cur) if cur else None
        widgets.append(Widget("eventbus", "Event bus", f"{_fmt(published)} events/s",
                              [("queue", f"{_fmt(depth)} / {_fmt(capacity)}"),
                               ("dropped", f"{_fmt(dropped)} /s")],
                              _graded(bus_finding) if bus_finding is not None
                              else (None if bus is None else bus.status(th)),
                              self._trend("eventbus", published), source))

        # database connections
        active = cur.total(m.db_connections, state="active") if cur else None
        idle = cur.total(m.db_connections, state="idle") if cur else None
        widgets.append(Widget("db", "Database connections", f"{_fmt(active)} active",
                              [("idle", _fmt(idle))], None, self._trend("db", active), source))
        return widgets

    def _service(self, report: Report) -> Widget:
        found = {f.id: f for f in report.findings}
        health = found.get("startup.health")
        chosen = health if health is not None and health.status is not Status.SKIP else found.get("startup.api-port")
        if chosen is None:
            return Widget("service", "Service status", "n/a", [], None, [], "diagnosis")
        up = chosen.status in (Status.OK, Status.WARN)
        return Widget("service", "Service status", "up" if up else "down", [("health", chosen.summary)],
                      chosen.status if chosen.status is not Status.SKIP else None,
                      self._trend("service", 1.0 if up else 0.0), "diagnosis")

    def _own_rate(self, seconds: float) -> float | None:
        if len(self._totals) < 2:
            return None
        last = self._totals[-1]
        first = next((t for t in self._totals if t[0] >= last[0] - seconds), self._totals[0])
        requests, errors = last[1] - first[1], last[2] - first[2]
        if requests <= 0 or errors < 0:
            return None
        return errors / requests

    @staticmethod
    def _rate(prev: Scrape | None, cur: Scrape | None, name: str, **match: str) -> float | None:
        if prev is None or cur is None:
            return None
        delta = counter_delta(prev, cur, name, **match)
        return None if delta is None else delta / max(1e-6, cur.taken_at - prev.taken_at)


def _prom_scalar(prom: PrometheusProbe, expr: str) -> float | None:
    got = prom.query(expr)
    if got.failure is not None or not got.value:
        return None
    value = got.value[0][1]
    return value if math.isfinite(value) else None  # NaN (no requests) or inf: no data
