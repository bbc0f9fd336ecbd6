"""A signal's reading for a check: the short window of two scrapes, widened to Prometheus when it holds
too few requests (the sample rule of :mod:`es_doctor.signals`)."""

from __future__ import annotations

import math

from es_doctor.checks.context import CheckContext, MetricsWindow
from es_doctor.checks.registry import Outcome, ev, unknown
from es_doctor.findings import Evidence
from es_doctor.signals import (
    Quantiles,
    QuantileSignal,
    Ratio,
    RatioSignal,
    Selectors,
    promql_duration,
)

#: what the evidence says when the window was widened
FROM_PROMETHEUS_WIDE = "Prometheus over the signal window"


def _prometheus_value(ctx: CheckContext, expr: str) -> float | None:
    got = ctx.prometheus().query(expr)
    if got.failure is not None or not got.unwrap():
        return None
    value = got.unwrap()[0][1]
    return value if math.isfinite(value) else None


def _prometheus_ok(ctx: CheckContext) -> bool:
    return ctx.target.is_present("prometheus")[0]


def ratio_reading(ctx: CheckContext, signal: RatioSignal, window: MetricsWindow) -> Ratio | Outcome:
    """The signal's ratio over the short window; over Prometheus' signal window when the short one
    holds fewer than ``min_requests`` and Prometheus holds more."""
    counts = signal.delta(ctx.target.metrics, window.before, window.after)
    if counts is None:
        return unknown(f"the service exposes no counter for {signal.key}")
    events, total = counts
    if not (math.isfinite(events) and math.isfinite(total)):
        return unknown(f"the service's {signal.key} counters are not numbers")
    ratio = Ratio(events, total, window.seconds, window.source)
    th = ctx.target.thresholds
    if total < th.min_requests and _prometheus_ok(ctx):
        wide = promql_duration(th.signal_window_s)
        events_q, total_q = signal.counts(ctx.target.metrics, Selectors(tuple(ctx.target.prometheus.jobs)), wide)
        wide_total = _prometheus_value(ctx, total_q)
        wide_events = _prometheus_value(ctx, events_q) if wide_total is not None else None
        if wide_total is not None and wide_events is not None and wide_total > total:
            ratio = Ratio(wide_events, wide_total, th.signal_window_s, FROM_PROMETHEUS_WIDE)
    return ratio


def quantile_reading(ctx: CheckContext, signal: QuantileSignal, window: MetricsWindow) -> Quantiles | None:
    """The signal's percentiles over the short window; over Prometheus' signal window when the short
    one holds fewer than ``min_observations`` and Prometheus holds more. None: no such histogram."""
    short = signal.from_scrapes(ctx.target.metrics, window.before, window.after, window.source)
    th = ctx.target.thresholds
    if short is None or short.count >= th.min_observations or not _prometheus_ok(ctx):
        return short
    return prometheus_quantiles(ctx, signal, short.count) or short


def prometheus_quantiles(ctx: CheckContext, signal: QuantileSignal, more_than: float = 0.0) -> Quantiles | None:
    """The signal's percentiles over Prometheus' signal window (None: nothing, or not more than ``more_than``)."""
    th = ctx.target.thresholds
    wide = promql_duration(th.signal_window_s)
    count = _prometheus_value(ctx, signal.count_promql(ctx.target, wide))
    if count is None or count <= more_than:
        return None
    p50, p95, p99 = (_prometheus_value(ctx, signal.quantile_promql(ctx.target, q, wide)) for q in (0.5, 0.95, 0.99))
    return Quantiles(p50, p95, p99, count, th.signal_window_s, FROM_PROMETHEUS_WIDE)


def window_evidence(seconds: float, source: str, sample: float, noun: str, first: str | None = None) -> list[Evidence]:
    """The sample size and the window every rate and percentile states: ``window from`` is where the
    short window's first scrape came from (``first``), ``widened to`` says when the reading is
    Prometheus' signal window instead."""
    evidence = [ev(noun, int(sample)), ev("window", round(seconds, 1), unit="s"),
                ev("window from", first or source)]
    if first is not None and source != first:
        evidence.append(ev("widened to", source))
    return evidence
