"""Helpers shared by the check modules: turning probe failures into outcomes, log windows."""

from __future__ import annotations

import datetime as dt
from typing import Any

from es_doctor.checks.context import CheckContext, MetricsWindow
from es_doctor.checks.registry import Outcome, crit, ev, unknown
from es_doctor.findings import Evidence, Status
from es_doctor.probes.logs import LogLine
from es_doctor.probes.result import Failure, FailureKind, Result
from es_doctor.probes.service import Mode
from es_doctor.units import utc_iso

#: status words of the service (STACK.md): read tolerantly, case-insensitive
HEALTHY = {"healthy", "ok", "up", "running", "ready"}
DEGRADED = {"degraded", "warn", "warning"}


def word_status(word: Any) -> Status:
    text = str(word).strip().lower() if word is not None else ""
    if text in HEALTHY:
        return Status.OK
    if text in DEGRADED:
        return Status.WARN
    if not text:
        return Status.UNKNOWN
    return Status.CRIT


def from_failure(failure: Failure | None, what: str) -> Outcome:
    """The outcome for a failed probe: down is CRIT, a 404 or a bad answer is UNKNOWN."""
    if failure is None:
        return unknown(f"{what}: no answer")
    detail = ev("error", str(failure))
    if failure.kind is FailureKind.NOT_FOUND and failure.status_code == 404:
        return Outcome(Status.UNKNOWN, f"{what}: endpoint not served by this version of the service (404)",
                       [detail])
    if failure.kind in (FailureKind.REFUSED, FailureKind.TIMEOUT, FailureKind.AUTH, FailureKind.HTTP_ERROR):
        label = {FailureKind.REFUSED: "unreachable", FailureKind.TIMEOUT: "not answering",
                 FailureKind.AUTH: "refused our credentials", FailureKind.HTTP_ERROR: "answered with an error"}
        return crit(f"{what}: {label[failure.kind]}", detail)
    if failure.kind is FailureKind.BAD_RESPONSE:
        return unknown(f"{what}: answer does not follow the contract", detail)
    return unknown(f"{what}: {failure.kind.value}", detail)


def parse_time(value: str) -> dt.datetime | None:
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def recent(lines: list[LogLine], seconds: float, now: dt.datetime | None = None) -> list[LogLine]:
    """Lines whose timestamp is within the last ``seconds`` (lines without one are kept)."""
    now = now or dt.datetime.now(dt.UTC)
    cutoff = now - dt.timedelta(seconds=seconds)
    out = []
    for line in lines:
        stamp = parse_time(line.field("timestamp")) if line.data else None
        if stamp is None or stamp >= cutoff:
            out.append(line)
    return out


def recent_log(ctx: CheckContext) -> Result[list[LogLine]]:
    lines = ctx.main_log()
    if lines.failure is not None:
        return lines
    return Result(value=recent(lines.unwrap(), ctx.target.thresholds.log_window_s), elapsed_ms=lines.elapsed_ms)


def excerpt(lines: list[LogLine], limit: int = 3) -> list[str]:
    out = []
    for line in lines[-limit:]:
        text = line.raw.strip()
        out.append(text if len(text) <= 240 else text[:239] + "…")
    return out


def service_mode(ctx: CheckContext) -> Result[Mode]:
    """The service's own read-only / maintenance state (GET /api/v1/maintenance), read once per run."""
    return ctx.memo("service:mode", lambda: ctx.service().mode())


def writes_refused(ctx: CheckContext) -> str | None:
    """'read-only' / 'maintenance' when the service says it refuses writes on purpose, else None."""
    if not ctx.target.is_present("service")[0]:
        return None
    mode = service_mode(ctx)
    return mode.unwrap().writes_refused if mode.failure is None else None


def dependency_down(ctx: CheckContext) -> tuple[str, str] | None:
    """(cause, words) when Qdrant or PostgreSQL cannot be reached: the cause of the service's errors."""
    from es_doctor import cures

    if ctx.target.is_present("qdrant")[0]:
        names = ctx.memo("qdrant:collections", lambda: ctx.qdrant().collections())
        if names.failure is not None and names.failure.kind in (FailureKind.REFUSED, FailureKind.TIMEOUT):
            return cures.QDRANT_DOWN, f"Qdrant is unreachable ({names.failure.kind.value})"
    if ctx.target.is_present("postgres")[0]:
        answer = ctx.memo("postgres:select-one", lambda: ctx.postgres().select_one())
        if answer.failure is not None and answer.failure.kind in (FailureKind.REFUSED, FailureKind.TIMEOUT):
            return cures.POSTGRES_DOWN, f"PostgreSQL is unreachable ({answer.failure.kind.value})"
    return None


def counter_window(ctx: CheckContext, name: str, what: str) -> MetricsWindow | Outcome:
    """The metrics window holding counter ``name``; else the UNKNOWN outcome saying why not."""
    window = ctx.metrics_window()
    if window.failure is not None:
        return unknown(f"cannot {what}: {window.failure}")
    if not window.unwrap().after.get(name):
        return unknown(f"the service exposes no {name} counter")
    return window.unwrap()


def log_window(ctx: CheckContext) -> list[LogLine] | Outcome:
    """The service log's recent lines; else the UNKNOWN outcome saying why they cannot be read."""
    lines = recent_log(ctx)
    if lines.failure is not None:
        return unknown(f"cannot read the service log: {lines.failure.message}")
    return lines.unwrap()


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``1 SLOW line``, ``2 SLOW lines``."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


def past_window(lines: list[LogLine], window_s: float, now: dt.datetime | None = None) -> tuple[str, list[Evidence]]:
    """How a log-window check says that it reports the past: the words that follow its count
    (``in the last 60 s of the log, the latest 42 s ago (OK again in 18 s unless another comes)``) and
    the evidence (the window, when the latest of ``lines`` was written and how long ago). A cure does
    not erase lines already written: they stay counted until they leave the window."""
    now = now or dt.datetime.now(dt.UTC)
    words = f"in the last {window_s:g} s of the log"
    evidence = [ev("window", window_s, unit="s")]
    stamps = [stamp for line in lines if line.data and (stamp := parse_time(line.field("timestamp"))) is not None]
    if stamps:
        latest = max(stamps)
        age = max(0.0, (now - latest).total_seconds())
        left = max(0.0, window_s - age)
        words += f", the latest {age:.0f} s ago (OK again in {left:.0f} s unless another comes)"
        evidence += [ev("latest line at", utc_iso(latest)),
                     ev("latest line age", round(age, 1), unit="s")]
    return words, evidence
