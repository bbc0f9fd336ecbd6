"""Class 2, 'Performance Dégradée': latency percentiles, error rate, memory, SLOW lines and timeouts."""

from __future__ import annotations

import math

from es_doctor import cures
from es_doctor.checks.common import (
    counter_window,
    dependency_down,
    excerpt,
    log_window,
    past_window,
    plural,
    writes_refused,
)
from es_doctor.checks.context import CheckContext, MetricsWindow
from es_doctor.checks.registry import Outcome, check, ev, grade, ok, over, unknown
from es_doctor.config import parse_size
from es_doctor.findings import Status
from es_doctor.probes.logs import LogLine
from es_doctor.probes.metrics import counter_delta, window_quantile
from es_doctor.probes.result import Result

METRICS = "monitoring.metrics-endpoint"
#: the service's probe endpoints: their answers are not requests of the API's users
PROBE_ROUTES = frozenset({"/health", "/ready", "/metrics"})


def _window(ctx: CheckContext) -> Result[MetricsWindow]:
    return ctx.metrics_window()


def _prometheus_p95(ctx: CheckContext) -> float | None:
    present, _ = ctx.target.is_present("prometheus")
    if not present:
        return None
    name = ctx.target.metrics.request_duration
    expr = f"histogram_quantile(0.95, sum(rate({name}_bucket[1m])) by (le))"
    result = ctx.prometheus().query(expr)
    if result.failure is not None or not result.unwrap():
        return None
    value = result.unwrap()[0][1]
    return None if math.isnan(value) else value  # NaN when there was no traffic


@check("performance.latency", description="API latency p50/p95/p99 over a short window (p95 > 100 ms WARN, "
       "> 500 ms CRIT).", requires=(METRICS,), components=("service",))
def latency(ctx: CheckContext) -> Outcome:
    window = _window(ctx)
    th = ctx.target.thresholds
    name = ctx.target.metrics.request_duration
    if window.failure is not None:
        p95 = _prometheus_p95(ctx)
        if p95 is None:
            return unknown(f"cannot measure latency: {window.failure}")
        status = grade(p95 * 1000, th.latency_p95_warn_ms, th.latency_p95_crit_ms)
        return Outcome(status, f"p95 latency {p95 * 1000:.0f} ms (from Prometheus, last minute)"
                               + over(status, th.latency_p95_warn_ms, th.latency_p95_crit_ms, " ms"),
                       [ev("p95", round(p95 * 1000, 1), f"> {th.latency_p95_warn_ms:g} ms WARN, "
                                                        f"> {th.latency_p95_crit_ms:g} ms CRIT", "ms")])
    w = window.unwrap()
    p50, count = window_quantile(w.before, w.after, name, 0.50)
    p95, _ = window_quantile(w.before, w.after, name, 0.95)
    p99, _ = window_quantile(w.before, w.after, name, 0.99)
    if p95 is None or p50 is None or p99 is None:
        if not w.after.get(f"{name}_bucket"):
            return unknown(f"the service exposes no {name} histogram")
        return ok(f"no API requests in the last {w.seconds:.1f}s: nothing to measure", ev("requests", count))
    status = grade(p95 * 1000, th.latency_p95_warn_ms, th.latency_p95_crit_ms)
    evidence = [
        ev("p50", round(p50 * 1000, 1), unit="ms"),
        ev("p95", round(p95 * 1000, 1), f"> {th.latency_p95_warn_ms:g} ms WARN, > {th.latency_p95_crit_ms:g} ms CRIT",
           "ms"),
        ev("p99", round(p99 * 1000, 1), unit="ms"),
        ev("requests in window", int(count)),
        ev("window", round(w.seconds, 1), unit="s"), ev("window from", w.source),
    ]
    word = {Status.OK: "within", Status.WARN: "over", Status.CRIT: "far over"}[status]
    limit = th.latency_p95_crit_ms if status is Status.CRIT else th.latency_p95_warn_ms
    summary = f"API p95 latency {p95 * 1000:.0f} ms, {word} the {limit:g} ms {status.value} threshold"
    if status is Status.OK:
        summary = f"API p95 latency {p95 * 1000:.0f} ms, within the {th.latency_p95_warn_ms:g} ms threshold"
        return Outcome(status, summary, evidence)
    down = dependency_down(ctx)
    if down is not None:  # requests wait on a dependency that does not answer: that is the cause
        return Outcome(status, f"{summary}: {down[1]}", evidence, down[0])
    return Outcome(status, summary, evidence)


@check("performance.error-rate", description="Share of API requests answered 5xx over a short window "
       "(> 1 % WARN, > 5 % CRIT).", requires=(METRICS,), components=("service",))
def error_rate(ctx: CheckContext) -> Outcome:
    name = ctx.target.metrics.requests_total
    w = counter_window(ctx, name, "measure the error rate")
    if isinstance(w, Outcome):
        return w
    total = errors = unavailable = 0.0
    for sample in w.after.get(name):
        route = sample.label("route") or sample.label("path") or sample.label("handler") or ""
        if route in PROBE_ROUTES:  # a readiness probe's 503 is startup.health's finding, not users' errors
            continue
        delta = counter_delta(w.before, w.after, name, **dict(sample.labels)) or 0.0
        total += delta
        status_label = sample.label("status") or sample.label("code") or ""
        if status_label.startswith("5"):
            errors += delta
            if status_label == "503":
                unavailable += delta
    th = ctx.target.thresholds
    if not math.isfinite(total) or total <= 0 or not math.isfinite(errors):
        return ok(f"no API requests in the last {w.seconds:.1f}s", ev("requests", 0))
    pct = errors / total * 100
    status = grade(pct, th.error_rate_warn_pct, th.error_rate_crit_pct)
    evidence = [ev("error rate", round(pct, 3), f"> {th.error_rate_warn_pct:g} % WARN, "
                                                f"> {th.error_rate_crit_pct:g} % CRIT", "%"),
                ev("5xx", int(errors)), ev("503", int(unavailable)), ev("requests", int(total)),
                ev("window", round(w.seconds, 1), unit="s"), ev("window from", w.source)]
    summary = (f"error rate {pct:.2f} % ({int(errors)} of {int(total)} requests answered 5xx)"
               + over(status, th.error_rate_warn_pct, th.error_rate_crit_pct, " %"))
    if status is Status.OK:
        return Outcome(status, summary, evidence)
    refused = writes_refused(ctx)
    if refused and unavailable >= errors * 0.9:
        # the 503s are the service refusing writes on purpose: the mode is the cause, not a fault
        return Outcome(Status.WARN, f"{summary}: writes refused because {refused} mode is on "
                                    "(see startup.service-mode)", evidence, cures.READ_ONLY)
    down = dependency_down(ctx)
    if down is not None:
        return Outcome(status, f"{summary}: {down[1]}", evidence, down[0])
    return Outcome(status, summary, evidence)


@check("performance.memory", description="Memory used by the service against its limit (> 85 % WARN, > 95 % CRIT).",
       components=("service",))
def memory(ctx: CheckContext) -> Outcome:
    th = ctx.target.thresholds
    source = ""
    usage = limit = 0
    present, _ = ctx.target.is_present("docker")
    if present:
        stats = ctx.docker().memory(ctx.target.service.container)
        if stats.ok and stats.unwrap().limit > 0:
            usage, limit = stats.unwrap().usage, stats.unwrap().limit
            source = "docker stats"
            if limit >= 2**60:  # no cgroup limit: use the configured one
                limit = parse_size(ctx.target.service.memory_limit)
                source += " (no limit set; configured limit used)"
    if not source:
        scrape = ctx.metrics_once()
        rss = scrape.unwrap().total(ctx.target.metrics.resident_memory) if scrape.ok else None
        if rss is None:
            return unknown("cannot read the service's memory (no Docker stats, no process_resident_memory_bytes)")
        usage, limit, source = int(rss), parse_size(ctx.target.service.memory_limit), "process_resident_memory_bytes"
    pct = usage / limit * 100
    status = grade(pct, th.memory_warn_pct, th.memory_crit_pct)
    return Outcome(status, f"memory {usage / 2**20:.0f} MiB of {limit / 2**20:.0f} MiB ({pct:.1f} %)"
                           + over(status, th.memory_warn_pct, th.memory_crit_pct, " %"),
                   [ev("memory", round(pct, 2), f"> {th.memory_warn_pct:g} % WARN, > {th.memory_crit_pct:g} % CRIT",
                       "%"), ev("usage", usage, unit="B"), ev("limit", limit, unit="B"), ev("source", source)])


@check("performance.slow-log", description="SLOW lines and timeouts in the service's recent log.",
       components=("service",))
def slow_log(ctx: CheckContext) -> Outcome:
    lines = log_window(ctx)
    if isinstance(lines, Outcome):
        return lines
    slow = [line for line in lines if line.contains("SLOW")]
    timeouts = [line for line in lines if "timeout" in line.raw.lower() and line.level in ("ERROR", "WARN")]
    # a manager's heartbeat or discovery timeout is not a slow request: inter-manager reports it
    managers = [line for line in timeouts if _is_manager_line(line)]
    timeouts = [line for line in timeouts if not _is_manager_line(line)]
    window = ctx.target.thresholds.log_window_s
    counted = {id(line) for line in (*slow, *timeouts)}
    flagged = [line for line in lines if id(line) in counted]  # in the log's order
    when, past = past_window(flagged, window)
    evidence = [ev("SLOW lines", len(slow)), ev("timeouts", len(timeouts)), *past]
    if managers:
        evidence.append(ev("manager timeouts (not counted: see inter-manager)", len(managers)))
    if not flagged:
        return ok(f"no SLOW lines or timeouts in the last {window:g} s of the log", *evidence)
    evidence.append(ev("latest", excerpt(flagged)))
    counts = " and ".join(plural(n, noun) for n, noun in ((len(slow), "SLOW line"), (len(timeouts), "timeout")) if n)
    return Outcome(Status.WARN, f"{counts} {when}", evidence)


#: log components and words of the managers' own coordination (heartbeats, discovery)
MANAGER_WORDS = ("heartbeat", "discovery", "coordinator")


def _is_manager_line(line: LogLine) -> bool:
    """A manager's coordination timeout (heartbeat, discovery), not a request: the coordinator's
    lines, or lines whose message or error names a heartbeat or discovery timeout."""
    component = (line.field("component") or "").lower()
    text = f"{line.field('message') or ''} {line.field('error') or ''}".lower() if line.data else line.raw.lower()
    return component == "coordinator" or any(f"{word} timeout" in text for word in MANAGER_WORDS[:2])
