"""Class 6, 'Problèmes de Monitoring': metrics endpoint, Prometheus and its target, alert rules."""

from __future__ import annotations

from es_doctor import cures
from es_doctor.checks.common import from_failure
from es_doctor.checks.context import CheckContext
from es_doctor.checks.registry import Outcome, check, counted, crit, ev, ok, unknown, warn
from es_doctor.findings import Status
from es_doctor.probes import ports
from es_doctor.probes.result import FailureKind


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
        return Outcome(Status.CRIT if critical else Status.WARN,
                       f"{counted(len(firing), 'alert')} firing: {', '.join(sorted({a.name for a in firing}))}"
                       + (f" (watching {finding})" if finding else ""), evidence, cause)
    return ok(f"{counted(rules.unwrap(), 'alert rule')} loaded, none firing", *evidence)
