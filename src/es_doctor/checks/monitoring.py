"""Class 6, 'Problèmes de Monitoring': metrics endpoint, Prometheus and its target, alert rules, and the
guide's availability rows (uptime over a window, from Prometheus)."""

from __future__ import annotations

import math

from es_doctor import cures
from es_doctor.checks.common import from_failure
from es_doctor.checks.context import CheckContext
from es_doctor.checks.registry import Outcome, check, counted, crit, ev, ok, unknown, warn
from es_doctor.findings import Status
from es_doctor.probes import ports
from es_doctor.probes.result import FailureKind
from es_doctor.signals import grade_uptime, uptime_ratio


def _api_refused(ctx: CheckContext) -> bool:
    host, port = ctx.api_port()
    answer = ports.port_open(host, port, timeout=ctx.timeout)
    return answer.failure is None and answer.value is False


@check("monitoring.metrics-endpoint", description="The metrics endpoint answers and exposes email_sender_ series.",
       components=("service",))
def metrics_endpoint(ctx: CheckContext) -> Outcome:
    url = ctx.target.service.metrics_url
    result = ctx.metrics_once()
    if result.failure is not None:
        if result.failure.status_code == 404:
            # the guide's "métriques manquantes": the service runs but does not serve its metrics
            return crit(f"metrics endpoint {url} answers 404: the service does not expose its metrics",
                        ev("error", str(result.failure)))
        out = from_failure(result.failure, f"metrics endpoint {url}")
        if result.failure.kind is FailureKind.REFUSED and _api_refused(ctx):
            return Outcome(out.status, f"{out.summary}; the API port refuses connections too: the service is "
                                       "down", out.evidence, cures.SERVICE_DOWN)
        return out
    names = result.unwrap().names()
    prefix = ctx.target.metrics.prefix
    ours = [n for n in names if n.startswith(prefix)]
    if not ours:
        return crit(f"{url} answers but exposes no {prefix}* series", ev("series", len(names)))
    return ok(f"{url} exposes {len(ours)} {prefix}* series", ev("series", len(ours)))


@check("monitoring.prometheus", description="Prometheus is reachable and ready.",
       components=("prometheus",))
def prometheus(ctx: CheckContext) -> Outcome:
    result = ctx.prometheus().ready()
    if result.failure is not None:
        return from_failure(result.failure, f"Prometheus at {ctx.target.prometheus.url}")
    return ok(f"Prometheus ready at {ctx.target.prometheus.url}")


@check("monitoring.prometheus-target", description="Prometheus scrapes the service and its target is up.",
       requires=("monitoring.prometheus",), components=("prometheus",))
def prometheus_target(ctx: CheckContext) -> Outcome:
    result = ctx.prometheus().targets()
    if result.failure is not None:
        return from_failure(result.failure, "Prometheus /api/v1/targets")
    jobs = ctx.target.prometheus.jobs
    ours = [t for t in result.unwrap() if t.job in jobs]
    if not ours:
        return crit(f"Prometheus has no scrape job {' or '.join(jobs)}",
                    ev("jobs", sorted({t.job for t in result.unwrap()})))
    down = [t for t in ours if t.health not in ("up", "unknown")]
    evidence = [ev("targets", {t.url: t.health for t in ours})]
    if not down and any(t.health == "unknown" for t in ours):
        # Prometheus has not scraped it yet (it just started or reloaded): nothing is known to be wrong
        return unknown("Prometheus has not scraped the service yet (target health 'unknown')", *evidence)
    if down:
        out = crit(f"Prometheus target {down[0].url} is {down[0].health}: {down[0].last_error or 'no error given'}",
                   *evidence)
        return Outcome(out.status, out.summary, out.evidence, cures.TARGET_DOWN)
    return ok(f"Prometheus scrapes the service ({counted(len(ours), 'target')} up)", *evidence)


@check("monitoring.alerts", description="Alert rules are loaded; firing alerts are listed.",
       requires=("monitoring.prometheus",), components=("prometheus",))
def alerts(ctx: CheckContext) -> Outcome:
    rules = ctx.prometheus().rule_count()
    if rules.failure is not None:
        return from_failure(rules.failure, "Prometheus /api/v1/rules")
    fired = ctx.prometheus().alerts()
    if fired.failure is not None:
        return from_failure(fired.failure, "Prometheus /api/v1/alerts")
    firing = [a for a in fired.unwrap() if a.state == "firing"]
    evidence = [ev("rules", rules.unwrap()), ev("firing", [a.name for a in firing])]
    if rules.unwrap() == 0:
        return warn("Prometheus has no alert rules loaded: alerts can never fire", *evidence)
    if firing:
        critical = [a for a in firing if a.labels.get("severity", "").lower() == "critical"]
        # the most severe alert's finding (es-doctor alert-rules labels each rule with the finding it
        # watches): its cure is that finding's; an alert es-doctor did not generate goes to a human
        finding = next((a.labels["finding"] for a in critical or firing if a.labels.get("finding") in cures.CURES),
                       None)
        cause = cures.ALERT_PREFIX + finding if finding else cures.UNKNOWN_ALERT
        # which finding each alert watches, and which are critical: the runner reads them beside the live
        # findings of the same run (an alert whose check is OK now is clearing: es_doctor.causality)
        evidence += [ev("watching", {a.name: a.labels["finding"] for a in firing
                                     if a.labels.get("finding") in cures.CURES}),
                     ev("critical", sorted({a.name for a in critical}))]
        return Outcome(Status.CRIT if critical else Status.WARN,
                       f"{counted(len(firing), 'alert')} firing: {', '.join(sorted({a.name for a in firing}))}"
                       + (f" (watching {finding})" if finding else ""), evidence, cause)
    return ok(f"{counted(rules.unwrap(), 'alert rule')} loaded, none firing", *evidence)


def _own_restarts(ctx: CheckContext, held_s: float, scrapes: int, failed: int) -> str | None:
    """The audited es-doctor runs on this target over the uptime window, as words, when they account
    for every failed scrape (each run can cost its own length plus two scrape intervals); else None."""
    import time

    from es_doctor.own_runs import runs

    now = time.time()
    found = runs(ctx.audit_log, ctx.target_name, now - held_s, now)
    if not found:
        return None
    interval = held_s / max(1, scrapes)
    covered = sum(r.overlap(now - held_s, now) for r in found) + 2 * interval * len(found)
    if failed > math.ceil(covered / max(interval, 1e-6)):
        return None
    return ", ".join(f"{r.runbook} at {time.strftime('%H:%M:%S', time.gmtime(r.started))} UTC (run {r.run_id})"
                     for r in found)


def duration_text(seconds: float) -> str:
    """``3 h 12 min``, ``24 h``, ``4 min 10 s``, ``45 s`` (whole units, zeros left out)."""
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days and not (hours or minutes):
        return f"{days * 24} h" if days == 1 else f"{days} d"
    parts = [(days, "d"), (hours, "h"), (minutes, "min")] if total >= 3600 else [(minutes, "min"), (secs, "s")]
    text = " ".join(f"{n} {unit}" for n, unit in parts if n)
    return text or f"{secs} s"


def _pct(ratio: float) -> str:
    """A share as a percentage, cut (never rounded up) to two decimals: 99.899 % reads 99.89, not 99.9."""
    return f"{math.floor(ratio * 10000 + 1e-6) / 100:g}"


@check("monitoring.uptime", description="The service's uptime (Prometheus' `up` of its job) over "
                                        "thresholds.uptime_window_s, 24 h by default: < 99.9 % WARN, < 99 % CRIT.",
       requires=("monitoring.prometheus",), components=("prometheus",))
def uptime(ctx: CheckContext) -> Outcome:
    th, jobs = ctx.target.thresholds, ctx.target.prometheus.jobs
    window = th.uptime_window_s
    result = ctx.prometheus().uptime(jobs, window)
    if result.failure is not None:
        # the uptime could not be measured: that says nothing about the service (monitoring.prometheus
        # reports a Prometheus that is down)
        out = from_failure(result.failure, "Prometheus /api/v1/query")
        return unknown(f"uptime unknown: {out.summary}", *out.evidence)
    targets = result.unwrap()
    if not targets:
        return unknown(f"Prometheus holds no scrape of job {' or '.join(jobs)} in the last {duration_text(window)}: "
                       "uptime unknown (see monitoring.prometheus-target)", ev("window", duration_text(window)))
    worst = min(targets, key=lambda t: t.ratio)
    held = window if worst.history_s is None else min(worst.history_s, window)
    # the oldest scrape is found to a subquery step (1/1440 of the window) plus a scrape interval
    if worst.history_s is None:
        over = f"the scrapes held in the last {duration_text(window)} (how far back they go is unknown)"
    elif held >= window * 0.99 - 2:
        over = f"the last {duration_text(window)}"
    else:
        over = f"the last {duration_text(held)} of history (window {duration_text(window)})"
    pct = uptime_ratio(worst.successes, worst.scrapes) * 100
    failed_scrapes = worst.scrapes - round(worst.successes)
    evidence = [ev("uptime", float(_pct(worst.ratio)), f"WARN < {th.uptime_warn_pct:g}, CRIT < {th.uptime_crit_pct:g}",
                   "%"),
                ev("history", duration_text(held)), ev("window", duration_text(window)),
                ev("scrapes", worst.scrapes), ev("failed scrapes", failed_scrapes)]
    if len(targets) > 1:
        evidence.append(ev("targets", {t.labels.get("instance", "?"): float(_pct(t.ratio)) for t in targets}))
    where = f" ({worst.labels['instance']})" if len(targets) > 1 and "instance" in worst.labels else ""
    summary = f"uptime {_pct(worst.ratio)} % over {over}{where}: {failed_scrapes} of {worst.scrapes} scrapes failed"
    if failed_scrapes > 0 and pct < th.uptime_warn_pct:
        ours = _own_restarts(ctx, held, worst.scrapes, failed_scrapes)
        if ours is not None:
            evidence.append(ev("es-doctor's own runs", ours))
            return ok(f"{summary}, while es-doctor's own audited runs restarted the service ({ours}): "
                      "not an outage", *evidence)
    status = grade_uptime(pct, th)
    if status is Status.CRIT:
        return crit(f"{summary} (CRITICAL under {th.uptime_crit_pct:g} %)", *evidence)
    if status is Status.WARN:
        return warn(f"{summary} (WARNING under {th.uptime_warn_pct:g} %)", *evidence)
    return ok(summary, *evidence)
