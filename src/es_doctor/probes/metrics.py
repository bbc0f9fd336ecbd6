"""Prometheus exposition scraping, and the math that turns two scrapes into rates and percentiles.

Rates and percentiles always come from the difference between two scrapes, never from a
counter's lifetime total (STACK.md).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from es_doctor.probes.http import HttpProbe
from es_doctor.probes.result import FailureKind, Result, failed, short, success

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Labels
    value: float

    def label(self, key: str) -> str | None:
        return dict(self.labels).get(key)


@dataclass
class Scrape:
    """One scrape: every sample by metric name."""

    taken_at: float
    samples: dict[str, list[Sample]] = field(default_factory=dict)

    def get(self, name: str, **match: str) -> list[Sample]:
        return [s for s in self.samples.get(name, []) if all(s.label(k) == v for k, v in match.items())]

    def total(self, name: str, **match: str) -> float | None:
        found = self.get(name, **match)
        if not found:
            return None
        return sum(s.value for s in found)

    def names(self) -> list[str]:
        return sorted(self.samples)


def parse_exposition(text: str, taken_at: float | None = None) -> Scrape:
    """Parse the text format with prometheus_client's parser (raises ValueError on garbage)."""
    from prometheus_client.parser import text_string_to_metric_families

    scrape = Scrape(taken_at=time.time() if taken_at is None else taken_at)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted((str(k), str(v)) for k, v in sample.labels.items()))
            if plausible(sample.name, float(sample.value)):
                scrape.samples.setdefault(sample.name, []).append(Sample(sample.name, labels, float(sample.value)))
    return scrape


#: sample names that can never be negative: counters, histogram parts, sizes, counts
_NON_NEGATIVE = ("_total", "_count", "_sum", "_bucket", "_bytes", "_seconds_total", "_created")


def plausible(name: str, value: float) -> bool:
    """Whether a sample's value can be used: finite, and not negative for a counter or a size.

    A NaN counter or a memory gauge of -1e308 is left out, so the check that needs it reads UNKNOWN
    ("not exposed") instead of doing arithmetic on nonsense."""
    if not math.isfinite(value):
        return False
    return not (value < 0 and name.endswith(_NON_NEGATIVE))


def scrape_from_series(series: list[tuple[dict[str, str], list[tuple[float, float]]]], instance: str,
                       newest: float, oldest: float) -> Scrape | None:
    """One past scrape rebuilt from Prometheus' raw samples of a job: the newest successful scrape
    (``up`` is 1) in [oldest, newest] of the instance ``instance`` (or of the job's only instance),
    every series' value at that time. None when there is no such scrape."""
    instances = {labels.get("instance", "") for labels, _ in series}
    if instance not in instances:
        if len(instances) != 1:
            return None
        instance = next(iter(instances))
    mine = [(labels, values) for labels, values in series if labels.get("instance", "") == instance]
    # a failed scrape leaves only Prometheus' own series (up = 0) at its time: never take one
    up = [values for labels, values in mine if labels.get("__name__") == "up"]
    succeeded = {t for values in up for t, v in values if v == 1.0} if up else None
    times = sorted({t for _, values in mine for t, _ in values
                    if oldest <= t <= newest and (succeeded is None or t in succeeded)})
    if not times:
        return None
    at = times[-1]
    scrape_ = Scrape(taken_at=at)
    for labels, values in mine:
        value = next((v for t, v in values if t == at), None)
        name = labels.get("__name__")
        if value is None or not name or not plausible(name, value):
            continue
        kept = tuple(sorted((k, v) for k, v in labels.items() if k not in ("__name__", "job", "instance")))
        scrape_.samples.setdefault(name, []).append(Sample(name, kept, value))
    return scrape_


def counters_went_back(before: Scrape, after: Scrape) -> bool:
    """True when a counter (``*_total``, ``*_count``) of ``after`` is below its value in ``before``:
    the service restarted in between, and the window would mix two lives."""
    for name, samples in after.samples.items():
        if not name.endswith(("_total", "_count")):
            continue
        earlier = {s.labels: s.value for s in before.samples.get(name, [])}
        if any(s.value < earlier.get(s.labels, 0.0) for s in samples):
            return True
    return False


def scrape(http: HttpProbe, url: str) -> Result[Scrape]:
    response = http.get(url)
    if response.failure is not None:
        return Result(failure=response.failure, elapsed_ms=response.elapsed_ms)
    try:
        parsed = parse_exposition(response.unwrap().text)
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        return failed(FailureKind.BAD_RESPONSE, f"{url}: not Prometheus exposition format: {short(exc)}",
                      elapsed_ms=response.elapsed_ms)
    return success(parsed, response.elapsed_ms)


# --------------------------------------------------------------------------- window math


def counter_delta(before: Scrape, after: Scrape, name: str, **match: str) -> float | None:
    """Increase of a counter between two scrapes (a reset counts from zero)."""
    a = after.total(name, **match)
    if a is None:
        return None
    b = before.total(name, **match) or 0.0
    return a - b if a >= b else a


def _bucket_deltas(before: Scrape, after: Scrape, name: str, **match: str) -> list[tuple[float, float]]:
    """Cumulative (le, count) pairs of a histogram's increase, summed across label sets."""
    def totals(scrape_: Scrape) -> dict[float, float]:
        out: dict[float, float] = {}
        for sample in scrape_.get(f"{name}_bucket", **match):
            le = sample.label("le")
            if le is None:
                continue
            bound = math.inf if le in ("+Inf", "inf") else float(le)
            out[bound] = out.get(bound, 0.0) + sample.value
        return out

    a, b = totals(after), totals(before)
    pairs = [(le, max(0.0, count - b.get(le, 0.0))) for le, count in a.items()]
    return sorted(pairs)


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """PromQL's histogram_quantile over cumulative (le, count) buckets, linear interpolation."""
    ordered = sorted(buckets)
    if not ordered or ordered[-1][0] != math.inf:
        return None
    total = ordered[-1][1]
    if total <= 0:
        return None
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if bound == math.inf:
                return prev_bound
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return prev_bound


def window_quantile(before: Scrape, after: Scrape, name: str, q: float, **match: str) -> tuple[float | None, float]:
    """(quantile in seconds, number of observations) of a histogram over the window."""
    buckets = _bucket_deltas(before, after, name, **match)
    count = buckets[-1][1] if buckets else 0.0
    return histogram_quantile(q, buckets), count
