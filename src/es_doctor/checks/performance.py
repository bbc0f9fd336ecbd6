"""Class 2, 'Performance Dégradée': latency percentiles, error rate, memory, SLOW lines and timeouts."""

from __future__ import annotations

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
from es_doctor.checks.registry import Outcome, check, ev, ok, over, unknown
from es_doctor.checks.signal_window import prometheus_quantiles, quantile_reading, ratio_reading, window_evidence
from es_doctor.config import parse_size
from es_doctor.findings import Status
from es_doctor.probes.logs import LogLine
from es_doctor.probes.metrics import counter_delta
from es_doctor.signals import (
    API_LATENCY,
    ERROR_RATE,
    Quantiles,
    grade_level,
    grade_quantile,
    grade_ratio,
    http_status,
    is_error,
    is_user_request,
    memory_from_scrape,
    memory_share_pct,
)

METRICS = "monitoring.metrics-endpoint"


@check("performance.latency", description="API latency p50/p95/p99 of the users' requests (probe routes left out) "
       "over a short window, widened to Prometheus' signal window when it holds too few requests (p95 > 100 ms "
       "WARN, > 500 ms CRIT).", requires=(METRICS,), components=("service",))
def latency(ctx: CheckContext) -> Outcome:
    th = ctx.target.thresholds
    name = ctx.target.metrics.request_duration
    window = ctx.metrics_window()
    if window.failure is not None:
        wide = prometheus_quantiles(ctx, API_LATENCY) if ctx.target.is_present("prometheus")[0] else None
        if wide is None:
            return unknown(f"cannot measure latency: {window.failure}")
        reading: Quantiles | None = wide
    else:
        reading = quantile_reading(ctx, API_LATENCY, window.unwrap())
    if reading is None:
        return unknown(f"the service exposes no {name} histogram")
    evidence = window_evidence(reading.window_s, reading.source, reading.count, "requests in window",
                               None if window.failure is not None else window.unwrap().source)
    verdict = grade_quantile(reading, th.latency_p95_warn_ms, th.latency_p95_crit_ms, th.min_observations)
    if not verdict.graded or reading.p95 is None:
        return Outcome(Status.OK, f"API latency not graded: {verdict.note} in the last {reading.window_s:.0f} s",
                       evidence, graded=False)
    p95 = reading.p95
    evidence = [
        ev("p50", None if reading.p50 is None else round(reading.p50 * 1000, 1), unit="ms"),
        ev("p95", round(p95 * 1000, 1), f"> {th.latency_p95_warn_ms:g} ms WARN, > {th.latency_p95_crit_ms:g} ms CRIT",
           "ms"),
        ev("p99", None if reading.p99 is None else round(reading.p99 * 1000, 1), unit="ms"),
        *evidence,
    ]
    status = verdict.status
    word = {Status.OK: "within", Status.WARN: "over", Status.CRIT: "far over"}[status]
    limit = th.latency_p95_crit_ms if status is Status.CRIT else th.latency_p95_warn_ms
    summary = (f"API p95 latency {p95 * 1000:.0f} ms on {reading.count:.0f} requests, {word} the {limit:g} ms "
               f"{status.value} threshold")
    if status is Status.OK:
        summary = (f"API p95 latency {p95 * 1000:.0f} ms on {reading.count:.0f} requests, within the "
                   f"{th.latency_p95_warn_ms:g} ms threshold")
        return Outcome(status, summary, evidence)
    down = dependency_down(ctx)
    if down is not None:  # requests wait on a dependency that does not answer: that is the cause
        return Outcome(status, f"{summary}: {down[1]}", evidence, down[0])
    return Outcome(status, summary, evidence)


@check("performance.error-rate", description="Share of the users' API requests answered 5xx (probe routes left "
       "out), graded on at least thresholds.min_requests requests by its Wilson lower bound (> 1 % WARN, "
       "> 5 % CRIT).", requires=(METRICS,), components=("service",))
def error_rate(ctx: CheckContext) -> Outcome:
    name = ctx.target.metrics.requests_total
    w = counter_window(ctx, name, "measure the error rate")
    if isinstance(w, Outcome):
        return w
    ratio = ratio_reading(ctx, ERROR_RATE, w)
    if isinstance(ratio, Outcome):
        return ratio
    th = ctx.target.thresholds
    verdict = grade_ratio(ratio, th.error_rate_warn_pct, th.error_rate_crit_pct, th.min_requests)
    low, high = ratio.bounds_pct
    short_errors, short_unavailable = _unavailable(ctx, w)
    evidence = [ev("error rate", round(ratio.pct, 3), f"> {th.error_rate_warn_pct:g} % WARN, "
                                                      f"> {th.error_rate_crit_pct:g} % CRIT (lower bound)", "%"),
                ev("lower bound", round(low, 3), unit="%"), ev("upper bound", round(high, 3), unit="%"),
                ev("5xx", int(ratio.events)),
                ev("503" if ratio.source == w.source else f"503 in the last {w.seconds:.0f} s", int(short_unavailable)),
                *window_evidence(ratio.window_s, ratio.source, ratio.total, "requests", w.source)]
    counts = f"{int(ratio.events)} of {int(ratio.total)} requests answered 5xx in the last {ratio.window_s:.0f} s"
    if not verdict.graded:
        return Outcome(Status.OK, f"error rate not graded: {verdict.note} ({counts})", evidence, graded=False)
    status = verdict.status
    summary = (f"error rate {ratio.pct:.2f} % ({counts})"
               + over(status, th.error_rate_warn_pct, th.error_rate_crit_pct, " %"))
    if status is Status.OK:
        return Outcome(status, summary + (f": {verdict.note}" if verdict.note else ""), evidence)
    refused = writes_refused(ctx)
    # the short window's 5xx tell whether they are the mode's 503s (none there: the mode is the likely cause)
    if refused and (short_errors <= 0 or short_unavailable >= short_errors * 0.9):
        # the 503s are the service refusing writes on purpose: the mode is the cause, not a fault
        return Outcome(Status.WARN, f"{summary}: writes refused because {refused} mode is on "
                                    "(see startup.service-mode)", evidence, cures.READ_ONLY)
    down = dependency_down(ctx)
    if down is not None:
        return Outcome(status, f"{summary}: {down[1]}", evidence, down[0])
    return Outcome(status, summary, evidence)


def _unavailable(ctx: CheckContext, w: MetricsWindow) -> tuple[float, float]:
    """(5xx, 503) of the users' requests in the short window (503: writes refused)."""
    name = ctx.target.metrics.requests_total
    errors = unavailable = 0.0
    for sample in w.after.get(name):
        if not (is_user_request(sample) and is_error(sample)):
            continue
        delta = counter_delta(w.before, w.after, name, **dict(sample.labels)) or 0.0
        errors += delta
        if http_status(sample) == "503":
            unavailable += delta
    return errors, unavailable


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
        rss = memory_from_scrape(ctx.target.metrics, scrape.unwrap()) if scrape.ok else None
        if rss is None:
            return unknown("cannot read the service's memory (no Docker stats, no process_resident_memory_bytes)")
        usage, limit, source = int(rss), parse_size(ctx.target.service.memory_limit), "process_resident_memory_bytes"
    pct = memory_share_pct(usage, limit)
    status = grade_level(pct, th.memory_warn_pct, th.memory_crit_pct)
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
