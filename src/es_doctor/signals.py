"""The guide's signals, each defined once: its PromQL and its arithmetic over two scrapes.

A signal is what the guide's 'Seuils d'Alerte Recommandés' and 'Dashboard Recommandé' watch: the API's
p95 latency, its error rate, the memory share, the vector insert error ratio, the vector search latency,
the event bus use and the uptime. Each is written here once, in two forms that compute the same thing:

- a PromQL builder, given the target's metric names, scrape jobs and a window: ``alert-rules``,
  ``dashboard`` and ``serve``'s widgets (with Prometheus) use it, and the checks query it when they
  widen their window to Prometheus;
- the Python arithmetic over two scrapes of the service (the checks' short window, and ``serve``'s
  rounds without Prometheus).

The requests of the service's own probes (readiness, health, metrics: :data:`PROBE_ROUTES`) are left
out of the API's latency and error rate everywhere: they are not requests of the API's users.

How a rate or a quantile is graded (the sample rule): a ratio is graded only on at least
``thresholds.min_requests`` requests (events), and then by its Wilson score interval: WARN (CRIT) only
when the interval's lower bound is over the WARN (CRIT) threshold, so a handful of errors among few
requests never alarms; a quantile is graded on at least ``thresholds.min_observations`` observations.
Below that, a check widens its window to Prometheus over ``thresholds.signal_window_s`` (where one is
configured), and otherwise says "too few requests" instead of grading. The alert expressions carry the
same rule (the Wilson bound and the minimum are part of the PromQL), so an alert and its check agree.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from es_doctor.config import MetricNames, Target, Thresholds
from es_doctor.errors import ConfigError
from es_doctor.findings import Status
from es_doctor.probes.metrics import Sample, Scrape, counter_delta, histogram_quantile
from es_doctor.probes.prometheus import job_selector

#: the service's probe endpoints: their answers are not requests of the API's users
PROBE_ROUTES = ("/health", "/ready", "/metrics")
#: the labels a request's route may be exposed under (a probe route under any of them is left out)
ROUTE_LABELS = ("route", "path", "handler")
#: the labels a request's HTTP status may be exposed under (STACK.md: ``status``; some services: ``code``)
STATUS_LABELS = ("status", "code")
#: z of the Wilson score interval: 95 % two-sided (2.5 % one-sided: a WARN is wrong once in 40 at worst)
Z = 1.96
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def check_metric_names(names: MetricNames) -> None:
    """ConfigError unless every configured metric name is a Prometheus metric name (each is pasted
    into PromQL: anything else would change the query, not name a metric)."""
    for key, value in names.model_dump().items():
        if key != "prefix" and not METRIC_NAME.fullmatch(value):
            raise ConfigError(f"{value!r} is not a Prometheus metric name", key=f"metrics.{key}")


def promql_duration(seconds: float) -> str:
    """A PromQL duration: ``1d``, ``6h``, ``30m``, ``45s`` (whole seconds, at least 1)."""
    whole = max(1, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"


# --------------------------------------------------------------------------- selectors


@dataclass(frozen=True)
class Selectors:
    """PromQL selectors over a target's scrape jobs (job names escaped for the regex and the string)."""

    jobs: tuple[str, ...]

    def on(self, metric: str, *matchers: str) -> str:
        base = job_selector(list(self.jobs))[:-1]  # '{job=~"…"': more matchers may follow
        return f"{metric}{base}{''.join(',' + m for m in matchers)}}}"


def users_matchers() -> tuple[str, ...]:
    """Matchers leaving the probe routes out, under every route label (a missing label reads as "")."""
    regex = "|".join(re.escape(r) for r in PROBE_ROUTES).replace("\\", "\\\\")
    return tuple(f'{label}!~"{regex}"' for label in ROUTE_LABELS)


def is_user_request(sample: Sample) -> bool:
    """The Python side of :func:`users_matchers`."""
    return not any(sample.label(label) in PROBE_ROUTES for label in ROUTE_LABELS)


def http_status(sample: Sample) -> str:
    return next((value for label in STATUS_LABELS if (value := sample.label(label))), "")


def is_error(sample: Sample) -> bool:
    """Answered 5xx (under any of :data:`STATUS_LABELS`)."""
    return http_status(sample).startswith("5")


# --------------------------------------------------------------------------- the sample rule


def wilson(events: float, total: float, z: float = Z) -> tuple[float, float]:
    """Wilson score interval (low, high) of the ratio events/total; (0, 1) when total is 0."""
    if total <= 0:
        return 0.0, 1.0
    events = min(max(events, 0.0), total)
    z2 = z * z
    centre = events + z2 / 2
    spread = z * math.sqrt(events * (total - events) / total + z2 / 4)
    return max(0.0, (centre - spread) / (total + z2)), min(1.0, (centre + spread) / (total + z2))


@dataclass(frozen=True)
class Ratio:
    """events of total over a window (the sample size is ``total``)."""

    events: float
    total: float
    window_s: float
    source: str

    @property
    def pct(self) -> float:
        return self.events / self.total * 100 if self.total > 0 else 0.0

    @property
    def bounds_pct(self) -> tuple[float, float]:
        low, high = wilson(self.events, self.total)
        return low * 100, high * 100


@dataclass(frozen=True)
class Verdict:
    status: Status
    #: False when the sample was too small to grade (status is then OK)
    graded: bool
    #: words for the summary: why it was not graded, or that an excess is not significant
    note: str = ""


def grade_ratio(ratio: Ratio, warn_pct: float, crit_pct: float | None, min_total: int,
                noun: str = "requests") -> Verdict:
    """The sample rule for a ratio: not graded under ``min_total``; else WARN/CRIT only when the Wilson
    lower bound is over the threshold."""
    if ratio.total < min_total:
        return Verdict(Status.OK, False, f"too few {noun} to grade: {ratio.total:.0f} (at least {min_total})")
    low, _ = ratio.bounds_pct
    if crit_pct is not None and low > crit_pct:
        return Verdict(Status.CRIT, True)
    if low > warn_pct:
        return Verdict(Status.WARN, True)
    if ratio.pct > warn_pct:
        return Verdict(Status.OK, True, f"over {warn_pct:g} % but not significantly on {ratio.total:.0f} {noun} "
                                        f"(lower bound {low:.2f} %)")
    return Verdict(Status.OK, True)


def grade_level(value: float, warn_at: float, crit_at: float | None) -> Status:
    """OK / WARN / CRIT for 'higher is worse' values: strictly over a threshold trips it."""
    if crit_at is not None and value > crit_at:
        return Status.CRIT
    return Status.WARN if value > warn_at else Status.OK


def wilson_lower_promql(events: str, total: str, z: float = Z) -> str:
    """The Wilson lower bound of ``events``/``total`` in PromQL (both label-less instant vectors)."""
    z2 = z * z
    return (f"(({events}) + {z2 / 2:g} - {z:g} * sqrt(({events}) * (({total}) - ({events})) / ({total}) "
            f"+ {z2 / 4:g})) / (({total}) + {z2:g})")


# --------------------------------------------------------------------------- ratio signals


@dataclass(frozen=True)
class RatioSignal:
    """A ratio of two counters' increases: its PromQL counts, its alert condition and its arithmetic."""

    key: str
    finding: str
    noun: str
    #: (events, total) PromQL over a window
    counts: Callable[[MetricNames, Selectors, str], tuple[str, str]]
    #: (events, total) over two scrapes
    delta: Callable[[MetricNames, Scrape, Scrape], tuple[float, float] | None]

    def alert_expr(self, target: Target, threshold_pct: float) -> str:
        """True (a sample) when the Wilson lower bound over the signal window is over ``threshold_pct``
        on at least ``min_requests``: the check's rule, in PromQL."""
        events, total = self.counts(target.metrics, Selectors(tuple(target.prometheus.jobs)),
                                    promql_duration(target.thresholds.signal_window_s))
        return (f"{wilson_lower_promql(events, total)} > {threshold_pct / 100:g} "
                f"and ({total}) >= {target.thresholds.min_requests}")

    def ratio_promql(self, target: Target, window: str) -> str:
        """The ratio itself (a dashboard panel, a widget)."""
        events, total = self.counts(target.metrics, Selectors(tuple(target.prometheus.jobs)), window)
        return f"({events}) / ({total})"


def _sum_delta(before: Scrape, after: Scrape, name: str, keep: Callable[[Sample], bool]) -> float:
    total = 0.0
    for sample in after.get(name):
        if keep(sample):
            total += counter_delta(before, after, name, **dict(sample.labels)) or 0.0
    return total


FIVE_XX = '"5.."'


def _error_counts(m: MetricNames, s: Selectors, window: str) -> tuple[str, str]:
    users = users_matchers()
    # a series has one status label: the 5xx under each are added
    errors = " + ".join(f'(sum(increase({s.on(m.requests_total, *users, label + "=~" + FIVE_XX)}[{window}])) '
                        "or vector(0))" for label in STATUS_LABELS)
    return (f"({errors})",
            f"sum(increase({s.on(m.requests_total, *users)}[{window}]))")


def _error_delta(m: MetricNames, before: Scrape, after: Scrape) -> tuple[float, float] | None:
    if not after.get(m.requests_total):
        return None
    total = _sum_delta(before, after, m.requests_total, is_user_request)
    errors = _sum_delta(before, after, m.requests_total, lambda x: is_user_request(x) and is_error(x))
    return errors, total


def _insert_counts(m: MetricNames, s: Selectors, window: str) -> tuple[str, str]:
    insert, error = 'op="insert"', 'result="error"'
    return (f"(sum(increase({s.on(m.vector_operations, insert, error)}[{window}])) or vector(0))",
            f"sum(increase({s.on(m.vector_operations, insert)}[{window}]))")


def _insert_delta(m: MetricNames, before: Scrape, after: Scrape) -> tuple[float, float] | None:
    if not after.get(m.vector_operations):
        return None
    inserts = _sum_delta(before, after, m.vector_operations, lambda x: x.label("op") == "insert")
    errors = _sum_delta(before, after, m.vector_operations,
                        lambda x: x.label("op") == "insert" and x.label("result") == "error")
    return errors, inserts


ERROR_RATE = RatioSignal("error-rate", "performance.error-rate", "requests", _error_counts, _error_delta)
INSERT_ERRORS = RatioSignal("vector-insert-errors", "vectors.insert-errors", "inserts", _insert_counts,
                            _insert_delta)


# --------------------------------------------------------------------------- quantile signals


@dataclass(frozen=True)
class Quantiles:
    """p50/p95/p99 (seconds) of a histogram over a window, and its number of observations."""

    p50: float | None
    p95: float | None
    p99: float | None
    count: float
    window_s: float
    source: str

    def at(self, q: float) -> float | None:
        return {0.5: self.p50, 0.95: self.p95, 0.99: self.p99}[q]


@dataclass(frozen=True)
class QuantileSignal:
    key: str
    finding: str
    #: the histogram's metric name (without ``_bucket``)
    metric: Callable[[MetricNames], str]
    #: extra matchers (PromQL) and the matching Python filter
    matchers: tuple[str, ...] = ()
    keep: Callable[[Sample], bool] = lambda _sample: True
    #: the quantile graded against the threshold (p95 for the API; the median for vector searches)
    graded: float = 0.95

    def quantile_promql(self, target: Target, q: float, window: str) -> str:
        s = Selectors(tuple(target.prometheus.jobs))
        return (f"histogram_quantile({q:g}, sum by (le) "
                f"(rate({s.on(self.metric(target.metrics) + '_bucket', *self.matchers)}[{window}])))")

    def count_promql(self, target: Target, window: str) -> str:
        s = Selectors(tuple(target.prometheus.jobs))
        return f"sum(increase({s.on(self.metric(target.metrics) + '_count', *self.matchers)}[{window}]))"

    def alert_expr(self, target: Target, threshold_ms: float) -> str:
        """The graded quantile over the signal window over ``threshold_ms``, on at least ``min_observations``."""
        window = promql_duration(target.thresholds.signal_window_s)
        return (f"{self.quantile_promql(target, self.graded, window)} > {threshold_ms / 1000:g} "
                f"and {self.count_promql(target, window)} >= {target.thresholds.min_observations}")

    def from_scrapes(self, m: MetricNames, before: Scrape, after: Scrape, source: str) -> Quantiles | None:
        """None when the service exposes no such histogram."""
        name = self.metric(m)
        if not after.get(f"{name}_bucket"):
            return None
        buckets = _bucket_deltas(before, after, name, self.keep)
        count = buckets[-1][1] if buckets else 0.0
        return Quantiles(histogram_quantile(0.50, buckets), histogram_quantile(0.95, buckets),
                         histogram_quantile(0.99, buckets), count, max(1e-6, after.taken_at - before.taken_at),
                         source)


def _bucket_deltas(before: Scrape, after: Scrape, name: str,
                   keep: Callable[[Sample], bool]) -> list[tuple[float, float]]:
    """Cumulative (le, count) pairs of a histogram's increase, summed over the kept label sets."""
    def totals(scrape_: Scrape) -> dict[float, float]:
        out: dict[float, float] = {}
        for sample in scrape_.get(f"{name}_bucket"):
            le = sample.label("le")
            if le is None or not keep(sample):
                continue
            bound = math.inf if le in ("+Inf", "inf") else float(le)
            out[bound] = out.get(bound, 0.0) + sample.value
        return out

    a, b = totals(after), totals(before)
    # a series that went back (a restart) counts from zero, like counter_delta
    return sorted((le, count - b.get(le, 0.0) if count >= b.get(le, 0.0) else count) for le, count in a.items())


API_LATENCY = QuantileSignal("api-latency", "performance.latency", lambda m: m.request_duration,
                             users_matchers(), is_user_request)
#: the guide names no percentile for the search latency: its median, as es-doctor's test searches always
#: graded it (a p95 on a busy host reads its load spikes, not the search latency)
SEARCH_LATENCY = QuantileSignal("search-latency", "vectors.search", lambda m: m.vector_search_duration,
                                graded=0.5)


def grade_quantile(q: Quantiles, warn_ms: float, crit_ms: float | None, min_count: int,
                   graded: float = 0.95) -> Verdict:
    """The quantile ``graded`` (p95 by default) against the thresholds, on at least ``min_count`` observations."""
    value = q.at(graded)
    if value is None or q.count < min_count:
        return Verdict(Status.OK, False, f"too few requests to grade: {q.count:.0f} (at least {min_count})")
    return Verdict(grade_level(value * 1000, warn_ms, crit_ms), True)


# --------------------------------------------------------------------------- level signals


def memory_share_pct(usage_bytes: float, limit_bytes: float) -> float:
    """Memory use as a share of the limit, in %."""
    return usage_bytes / limit_bytes * 100


def memory_promql(target: Target, limit_bytes: int) -> str:
    """Resident memory as a share (0-1) of the limit: the worst instance."""
    s = Selectors(tuple(target.prometheus.jobs))
    return f"max({s.on(target.metrics.resident_memory)}) / {limit_bytes}"


def memory_from_scrape(m: MetricNames, scrape: Scrape) -> float | None:
    """The resident memory (bytes) a scrape exposes: the largest, like :func:`memory_promql`'s max."""
    found = scrape.get(m.resident_memory)
    return max(s.value for s in found) if found else None


@dataclass(frozen=True)
class EventBus:
    depth: float
    capacity: float
    dropped: float

    @property
    def use_pct(self) -> float:
        return self.depth / self.capacity * 100

    def status(self, th: Thresholds) -> Status:
        """Over the thresholds, and WARN at least when events were dropped in the window."""
        status = grade_level(self.use_pct, th.event_bus_saturation_warn_pct, th.event_bus_saturation_crit_pct)
        return Status.WARN if self.dropped > 0 and status is Status.OK else status


def event_bus_from_scrapes(m: MetricNames, before: Scrape, after: Scrape) -> EventBus | None:
    depth, capacity = after.total(m.event_bus_depth), after.total(m.event_bus_capacity)
    if depth is None or not capacity:
        return None
    return EventBus(depth, capacity, counter_delta(before, after, m.event_bus_dropped) or 0.0)


def event_bus_use_promql(target: Target) -> str:
    s, m = Selectors(tuple(target.prometheus.jobs)), target.metrics
    return f"sum({s.on(m.event_bus_depth)}) / sum({s.on(m.event_bus_capacity)})"


def event_bus_dropped_promql(target: Target, window: str) -> str:
    s = Selectors(tuple(target.prometheus.jobs))
    return f"sum(increase({s.on(target.metrics.event_bus_dropped)}[{window}]))"


def uptime_ratio(successes: float, scrapes: float) -> float:
    """Share of successful scrapes (0-1)."""
    return successes / scrapes if scrapes > 0 else 0.0


def uptime_promql(target: Target) -> str:
    """Per instance: the share of successful scrapes over ``thresholds.uptime_window_s``."""
    s = Selectors(tuple(target.prometheus.jobs))
    return f"avg_over_time({s.on('up')}[{promql_duration(target.thresholds.uptime_window_s)}])"


def grade_uptime(pct: float, th: Thresholds) -> Status:
    if pct < th.uptime_crit_pct:
        return Status.CRIT
    return Status.WARN if pct < th.uptime_warn_pct else Status.OK


#: the signals, for the reference docs: (key, finding, what)
TABLE: tuple[tuple[str, str, str], ...] = (
    ("api-latency", "performance.latency", "p95 of the users' request durations (probe routes left out)"),
    ("error-rate", "performance.error-rate", "users' requests answered 5xx / users' requests"),
    ("memory-share", "performance.memory", "resident memory / the memory limit"),
    ("vector-insert-errors", "vectors.insert-errors", "failed vector inserts / vector inserts"),
    ("search-latency", "vectors.search", "median of the service's vector search durations"),
    ("event-bus-use", "inter-manager.event-bus", "queue depth / capacity, and events dropped"),
    ("uptime", "monitoring.uptime", "successful scrapes / scrapes over the uptime window"),
)
