"""Class 6, 'Problèmes de Monitoring': metrics endpoint, Prometheus and its target, alert rules."""

from __future__ import annotations

from es_doctor.checks.common import from_failure
from es_doctor.checks.context import CheckContext
from es_doctor.checks.registry import Outcome, check, crit, ev, ok, warn
from es_doctor.findings import Status


@check("monitoring.metrics-endpoint", description="The metrics endpoint answers and exposes email_sender_ series.",
       fixes="metrics-endpoint-enable", components=("service",))
def metrics_endpoint(ctx: CheckContext) -> Outcome:
    url = ctx.target.service.metrics_url
    result = ctx.metrics_once()
    if result.failure is not None:
        return from_failure(result.failure, f"metrics endpoint {url}", runbook="metrics-endpoint-enable")
    names = result.unwrap().names()
    prefix = ctx.target.metrics.prefix
    ours = [n for n in names if n.startswith(prefix)]
    if not ours:
        return crit(f"{url} answers but exposes no {prefix}* series", ev("series", len(names)))
    return ok(f"{url} exposes {len(ours)} {prefix}* series", ev("series", len(ours)))


@check("monitoring.prometheus", description="Prometheus is reachable and ready.", fixes="monitoring-restart",
       components=("prometheus",))
def prometheus(ctx: CheckContext) -> Outcome:
    result = ctx.prometheus().ready()
    if result.failure is not None:
        return from_failure(result.failure, f"Prometheus at {ctx.target.prometheus.url}", runbook="monitoring-restart")
    return ok(f"Prometheus ready at {ctx.target.prometheus.url}")


@check("monitoring.prometheus-target", description="Prometheus scrapes the service and its target is up.",
       fixes="prometheus-scrape-config", requires=("monitoring.prometheus",), components=("prometheus",))
def prometheus_target(ctx: CheckContext) -> Outcome:
    result = ctx.prometheus().targets()
    if result.failure is not None:
        return from_failure(result.failure, "Prometheus /api/v1/targets")
    jobs = ctx.target.prometheus.jobs
    ours = [t for t in result.unwrap() if t.job in jobs]
    if not ours:
        return crit(f"Prometheus has no scrape job {' or '.join(jobs)}",
                    ev("jobs", sorted({t.job for t in result.unwrap()})))
    down = [t for t in ours if t.health != "up"]
    evidence = [ev("targets", {t.url: t.health for t in ours})]
    if down:
        out = crit(f"Prometheus target {down[0].url} is {down[0].health}: {down[0].last_error or 'no error given'}",
                   *evidence)
        return Outcome(out.status, out.summary, out.evidence, "metrics-endpoint-enable")
    return ok(f"Prometheus scrapes the service ({len(ours)} target(s) up)", *evidence)


@check("monitoring.alerts", description="Alert rules are loaded; firing alerts are listed.",
       fixes="prometheus-scrape-config", requires=("monitoring.prometheus",), components=("prometheus",))
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
        # the most severe alert's cure, from the rule's `runbook` label (es-doctor alert-rules sets it)
        runbook = next((a.labels["runbook"] for a in critical or firing if a.labels.get("runbook")), None)
        return Outcome(Status.CRIT if critical else Status.WARN,
                       f"{len(firing)} alert(s) firing: {', '.join(sorted({a.name for a in firing}))}",
                       evidence, runbook)
    return ok(f"{rules.unwrap()} alert rule(s) loaded, none firing", *evidence)
