"""What the requests of a load test did: latency percentiles, errors by kind, lateness, and the grade.

Latency is measured from each request's *due* time (its place in the fixed-rate schedule), not from
when it was actually sent: time spent waiting for the generator or for a free connection counts, so a
slow server is never hidden by a slow client. Percentiles come from a log-bucket histogram (each bucket
0.8 % wide): memory is bounded whatever the rate and duration, and p50/p95/p99 are within 0.8 % of the
exact nearest-rank value; min, max and mean are exact.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

from es_doctor.checks import registry
from es_doctor.findings import Status, exit_status_of, worst
from es_doctor.load.plan import GENERATOR_LIMITED_PCT, LATE_AFTER_S, Op, Plan

#: relative width of a histogram bucket
RESOLUTION = 1 / 128
_LOG_STEP = math.log1p(RESOLUTION)
_FLOOR_S = 1e-6  # latencies under 1 µs share the first bucket

#: outcomes that count as errors of the service: 5xx, 429 (it shed the load), and no (complete) answer
#: ``dropped``: due, but never sent: every connection stayed busy until the end of the run (duration + timeout)
FAILURE_KINDS = ("timeout", "refused", "cut", "too-large", "error", "dropped")


def is_error(kind: str) -> bool:
    """``kind`` is an HTTP status (``"503"``) or a failure kind (``"timeout"``)."""
    return kind in FAILURE_KINDS or kind == "429" or kind.startswith("5")


class Histogram:
    """Log-bucket latency histogram (seconds): bounded memory, percentiles within :data:`RESOLUTION`."""

    def __init__(self) -> None:
        self.buckets: Counter[int] = Counter()
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = 0.0

    def add(self, seconds: float) -> None:
        value = max(seconds, 0.0)
        self.buckets[int(math.log(max(value, _FLOOR_S) / _FLOOR_S) / _LOG_STEP)] += 1
        self.count += 1
        self.total += value
        self.min = min(self.min, value)
        self.max = max(self.max, value)

    def percentile(self, q: float) -> float | None:
        """The nearest-rank ``q`` quantile (0 < q ≤ 1), as the middle of its bucket, clamped to min/max."""
        if self.count == 0:
            return None
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                middle = _FLOOR_S * math.exp((index + 0.5) * _LOG_STEP)
                return min(max(middle, self.min), self.max)
        return self.max  # pragma: no cover - ranks never exceed the count

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None


@dataclass
class OpStats:
    latency: Histogram = field(default_factory=Histogram)
    outcomes: Counter[str] = field(default_factory=Counter)


@dataclass
class Recorder:
    """Filled by the engine as requests complete (one event loop: no locking needed)."""

    plan: Plan
    ops: dict[Op, OpStats] = field(default_factory=dict)
    latency: Histogram = field(default_factory=Histogram)  #: from each request's due time
    service: Histogram = field(default_factory=Histogram)  #: from when it was actually sent: the server alone
    outcomes: Counter[str] = field(default_factory=Counter)
    scheduled: int = 0  #: requests whose due time came (sent, or cancelled at the stop)
    cancelled: int = 0  #: in flight when the run was stopped: neither success nor error
    late: int = 0  #: sent more than LATE_AFTER_S after their due time
    late_for_slot: int = 0  #: of those, late because every connection of the concurrency cap was busy
    max_lag: float = 0.0
    created_ids: list[int | str] = field(default_factory=list)
    creates_unanswered: int = 0  #: task creations with no (complete) answer: their id is unknown
    elapsed_s: float = 0.0
    interrupted: bool = False

    def sent(self, lag: float, waited_for_slot: bool) -> None:
        self.scheduled += 1
        self.max_lag = max(self.max_lag, lag)
        if lag > LATE_AFTER_S:
            self.late += 1
            if waited_for_slot:
                self.late_for_slot += 1

    def done(self, op: Op, kind: str, latency: float | None, service: float | None = None) -> None:
        """A request ended: ``kind`` is its HTTP status or failure kind; ``latency`` from its due time,
        ``service`` from when it was sent (default: the same)."""
        stats = self.ops.setdefault(op, OpStats())
        stats.outcomes[kind] += 1
        self.outcomes[kind] += 1
        if latency is not None and kind not in FAILURE_KINDS:
            stats.latency.add(latency)
            self.latency.add(latency)
            self.service.add(latency if service is None else service)
        if op is Op.CREATE and kind in FAILURE_KINDS and kind != "dropped":
            self.creates_unanswered += 1

    def drop(self, op: Op) -> None:
        """A request that was due but never sent (no free connection before the end of the run)."""
        self.scheduled += 1
        self.done(op, "dropped", None)

    def cancel(self) -> None:
        self.cancelled += 1

    @property
    def completed(self) -> int:
        return sum(self.outcomes.values())

    @property
    def errors(self) -> int:
        return sum(n for kind, n in self.outcomes.items() if is_error(kind))


# --------------------------------------------------------------------------- the result


class OpResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    op: str
    method: str
    path: str
    requests: int
    errors: int
    p95_ms: float | None
    outcomes: dict[str, int]


class Grade(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    status: Status
    value: float | None
    threshold: str
    summary: str


class LoadResult(BaseModel):
    """``es-doctor load --format json`` (schema ``load/1.0``)."""

    model_config = ConfigDict(extra="forbid")

    schema_version: str = "load/1.0"
    target: str
    run_id: str
    scenario: str
    status: Status
    exit_code: int
    summary: str
    interrupted: bool
    rps_asked: float
    duration_asked_s: float
    concurrency: int
    timeout_s: float
    elapsed_s: float
    scheduled: int
    completed: int
    cancelled: int
    dropped: int
    throughput_rps: float
    latency_ms: dict[str, float | None]
    errors: int
    error_rate_pct: float | None
    outcomes: dict[str, int]
    late: int
    late_pct: float | None
    late_for_slot: int
    max_lag_ms: float
    generator_limited: bool
    grades: list[Grade]
    operations: list[OpResult]
    test_data: dict[str, Any] = {}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def grade(rec: Recorder, latency_warn_ms: float, latency_crit_ms: float, error_warn_pct: float,
          error_crit_pct: float) -> list[Grade]:
    """The guide's two API thresholds (the ones diagnose's performance checks use): p95 latency and the
    error rate. When the generator itself fell behind (more than 5 % of requests late, not for a busy
    connection), the latency is graded from the actual sends (what the server alone took): over the
    threshold, that grade stands; within it, the grade is UNKNOWN (the slowness may be the generator's)."""
    grades: list[Grade] = []
    completed = rec.completed
    if completed == 0:
        return [Grade(name="requests", status=Status.UNKNOWN, value=0, threshold="at least one answer",
                      summary="no request completed: nothing to grade")]
    p95 = rec.latency.percentile(0.95)
    latency_th = f"> {latency_warn_ms:g} ms WARN, > {latency_crit_ms:g} ms CRIT"
    if p95 is None:
        grades.append(Grade(name="latency p95", status=Status.UNKNOWN, value=None, threshold=latency_th,
                            summary="no request was answered: no latency to grade"))
    else:
        status = registry.grade(p95 * 1000, latency_warn_ms, latency_crit_ms)
        summary = f"p95 latency {p95 * 1000:.0f} ms"
        if status is not Status.OK and generator_limited(rec):
            late = f"{pct(rec.late - rec.late_for_slot, rec.scheduled):.1f} % of requests left the generator late"
            alone = rec.service.percentile(0.95) or 0.0
            server_status = registry.grade(alone * 1000, latency_warn_ms, latency_crit_ms)
            if server_status is Status.OK:
                status = Status.UNKNOWN
                summary += (f", but {late}: it fell behind, and from the actual sends the p95 is "
                            f"{alone * 1000:.0f} ms: the latency may be the generator's (lower --rps)")
            else:  # even counted from the actual sends the server is over the threshold: that much is its own
                status = server_status
                summary += f" ({alone * 1000:.0f} ms from the actual sends; {late})"
        grades.append(Grade(name="latency p95", status=status, value=round(p95 * 1000, 2), threshold=latency_th,
                            summary=summary))
    rate = pct(rec.errors, completed)
    why = f"{rec.errors} of {completed}: 5xx, 429, no answer or dropped"
    grades.append(Grade(name="error rate", status=registry.grade(rate, error_warn_pct, error_crit_pct),
                        value=round(rate, 3),
                        threshold=f"> {error_warn_pct:g} % WARN, > {error_crit_pct:g} % CRIT",
                        summary=f"error rate {rate:.2f} % ({why})"))
    refused = _refused_operations(rec)
    if refused:
        grades.append(Grade(name="endpoints", status=Status.UNKNOWN, value=len(refused),
                            threshold="every operation answered 2xx at least once",
                            summary="; ".join(refused) + ": that load was not measured"))
    return grades


def _refused_operations(rec: Recorder) -> list[str]:
    """Operations every answer of which was a 4xx other than 429: the endpoint is not served by this version
    (404, 405), or the credentials are refused (401, 403): their latency says nothing about the service."""
    out = []
    for op, stats in rec.ops.items():
        kinds = set(stats.outcomes)
        if kinds and all(k.isdigit() and k.startswith("4") and k != "429" for k in kinds):
            codes = ", ".join(sorted(kinds))
            why = "not served by this version" if kinds <= {"404", "405"} else "refused"
            out.append(f"{op.method} {op.path} answered {codes} to every request ({why})")
    return out


def pct(part: int, whole: int) -> float:
    return part / whole * 100 if whole else 0.0


def generator_limited(rec: Recorder) -> bool:
    """More than 5 % of requests were sent late for the generator's own reasons."""
    return pct(rec.late - rec.late_for_slot, rec.scheduled) > GENERATOR_LIMITED_PCT


def result(rec: Recorder, target: str, grades: list[Grade]) -> LoadResult:
    plan = rec.plan
    status = worst([g.status for g in grades])
    elapsed = max(rec.elapsed_s, 1e-9)
    completed = rec.completed
    ops = [OpResult(op=op.value, method=op.method, path=op.path, requests=sum(s.outcomes.values()),
                    errors=sum(n for k, n in s.outcomes.items() if is_error(k)),
                    p95_ms=_ms(s.latency.percentile(0.95)), outcomes=dict(sorted(s.outcomes.items())))
           for op, s in sorted(rec.ops.items(), key=lambda item: list(Op).index(item[0]))]
    bad = [g for g in grades if g.status is not Status.OK]
    summary = "; ".join(g.summary for g in (bad or grades))
    if rec.interrupted:
        summary = f"interrupted after {rec.elapsed_s:.1f}s (partial result): {summary}"
    h = rec.latency
    return LoadResult(
        target=target, run_id=plan.run_id, scenario=plan.scenario.value, status=status,
        exit_code=int(exit_status_of(status)), summary=summary, interrupted=rec.interrupted, rps_asked=plan.rps,
        duration_asked_s=plan.duration_s, concurrency=plan.concurrency, timeout_s=plan.timeout_s,
        elapsed_s=round(rec.elapsed_s, 3), scheduled=rec.scheduled, completed=completed, cancelled=rec.cancelled,
        dropped=rec.outcomes.get("dropped", 0),
        throughput_rps=round(completed / elapsed, 2),
        latency_ms={"p50": _ms(h.percentile(0.50)), "p95": _ms(h.percentile(0.95)), "p99": _ms(h.percentile(0.99)),
                    "max": _ms(h.max if h.count else None), "mean": _ms(h.mean),
                    "min": _ms(h.min if h.count else None), "p95_from_send": _ms(rec.service.percentile(0.95))},
        errors=rec.errors, error_rate_pct=round(pct(rec.errors, completed), 3) if completed else None,
        outcomes=dict(sorted(rec.outcomes.items())), late=rec.late,
        late_pct=round(pct(rec.late, rec.scheduled), 2) if rec.scheduled else None, late_for_slot=rec.late_for_slot,
        max_lag_ms=round(rec.max_lag * 1000, 2), generator_limited=generator_limited(rec), grades=grades,
        operations=ops)


def load_schema() -> dict[str, Any]:
    """The JSON Schema of ``es-doctor load --format json`` (``docs/load.schema.json`` is generated from it)."""
    return LoadResult.model_json_schema()
