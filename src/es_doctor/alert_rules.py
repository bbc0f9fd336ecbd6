"""Prometheus alert rules for the guide's 'Seuils d'Alerte Recommandés', from a target's thresholds.

``es-doctor alert-rules`` prints them; the lab's Prometheus loads them; ``promtool check rules`` and
``promtool test rules`` validate them (tested: every annotation renders with the labels that survive its
expression's aggregation). Each expression is its signal's PromQL (:mod:`es_doctor.signals`): the same
definition, window and sample rule as the check named by the rule's ``finding`` label.

Annotations: ``summary``, ``description`` (the commands to run, with ``-t <target>``, as printed) and,
when ``--runbook-base-url`` is given, ``runbook_url`` (the kube-prometheus convention):
``<base>/<runbook>.yaml``, or ``<base>/ESCALATION.md`` when no runbook cures the finding. The base must
be an http(s):// URL: a local path would point at the machine that generated the rules, not at one the
reader of the alert can open. With ``target_label``, every rule carries a ``target`` label naming the
es-doctor target (what an Alertmanager receiver needs to cure the right stack).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

import yaml

from es_doctor.config import Target, parse_size
from es_doctor.cures import escalation_for, remedy_for
from es_doctor.signals import (
    API_LATENCY,
    ERROR_RATE,
    INSERT_ERRORS,
    SEARCH_LATENCY,
    Selectors,
    check_metric_names,
    event_bus_dropped_promql,
    event_bus_use_promql,
    memory_promql,
    promql_duration,
    uptime_promql,
)

#: alert → the es-doctor finding (check) that watches the same signal; the rule's ``runbook``
#: label is that finding's default cure (es_doctor.cures), its ``finding`` label lets
#: ``monitoring.alerts`` send a firing alert to the same cure
FINDINGS = {
    "EmailSenderDown": "startup.api-port",
    "EmailSenderLatencyP95Warning": "performance.latency",
    "EmailSenderLatencyP95Critical": "performance.latency",
    "EmailSenderErrorRateWarning": "performance.error-rate",
    "EmailSenderErrorRateCritical": "performance.error-rate",
    "EmailSenderMemoryWarning": "performance.memory",
    "EmailSenderMemoryCritical": "performance.memory",
    "EmailSenderUptimeWarning": "monitoring.uptime",
    "EmailSenderUptimeCritical": "monitoring.uptime",
    "EmailSenderVectorInsertErrors": "vectors.insert-errors",
    "EmailSenderVectorSearchSlow": "vectors.search",
    "EmailSenderQdrantConnectionErrors": "vectors.connection-errors",
    "EmailSenderEventBusWarning": "inter-manager.event-bus",
    "EmailSenderEventBusCritical": "inter-manager.event-bus",
}

#: rules whose expression keeps the ``instance`` label (no aggregation): their description may name it
KEEPS_INSTANCE = frozenset({"EmailSenderDown", "EmailSenderUptimeWarning", "EmailSenderUptimeCritical"})

#: the page a rule links when no runbook cures its finding (shipped beside the runbooks)
ESCALATION_PAGE = "ESCALATION.md"


def check_runbook_base_url(base: str) -> str:
    """``base`` without its trailing ``/``; ValueError unless it is an http(s):// URL with a host (a
    ``file://`` URL or a path names a file on the machine that generated the rules)."""
    from urllib.parse import urlsplit

    parts = urlsplit(base.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"--runbook-base-url must be an http(s):// URL that the readers of the alerts can open "
                         f"(e.g. your repository's runbooks/ on its web UI), not {base!r}")
    return base.strip().rstrip("/")


@dataclass(frozen=True)
class RuleOptions:
    """What is not in the target: its name (for the commands), the runbook base URL, the target label."""

    target_name: str
    runbook_base_url: str | None = None
    #: the value of a ``target`` label on every rule (None: no such label)
    target_label: str | None = None


def _rule(opts: RuleOptions, name: str, expr: str, severity: str, summary: str, for_: str = "1m") -> dict[str, Any]:
    finding = FINDINGS[name]
    remedy = remedy_for(finding)
    labels = {"severity": severity, "service": "email-sender-go", "finding": finding}
    if opts.target_label is not None:
        labels["target"] = opts.target_label
    cli = f"es-doctor -t {shlex.quote(opts.target_name)}"
    if remedy is not None:
        labels["runbook"] = remedy.runbook
        page = f"{remedy.runbook}.yaml"
        next_step = f"diagnose with `{cli} diagnose --check {finding}`, cure with `{cli} fix {finding}`"
    else:
        labels["escalate"] = str(escalation_for(finding))
        page = ESCALATION_PAGE
        next_step = (f"diagnose with `{cli} diagnose --check {finding}`; no runbook cures it: "
                     f"`{cli} escalate --level {labels['escalate']}`")
    where = " on {{ $labels.instance }}" if name in KEEPS_INSTANCE else ""
    annotations = {"summary": summary,
                   "description": f"{summary} (target {opts.target_name}){where}: {next_step}"}
    if opts.runbook_base_url:
        annotations["runbook_url"] = f"{opts.runbook_base_url}/{page}"
    return {"alert": name, "expr": expr, "for": for_, "labels": labels, "annotations": annotations}


def rules_for(target: Target, opts: RuleOptions) -> dict[str, Any]:
    """The rules; ConfigError when a metric name is not one, ValueError for a bad runbook base URL."""
    check_metric_names(target.metrics)
    if opts.runbook_base_url:
        opts = RuleOptions(opts.target_name, check_runbook_base_url(opts.runbook_base_url), opts.target_label)
    th, m = target.thresholds, target.metrics
    s = Selectors(tuple(target.prometheus.jobs))
    memory = memory_promql(target, parse_size(target.service.memory_limit))
    signal_window = promql_duration(th.signal_window_s)
    bus = event_bus_use_promql(target)
    dropped = event_bus_dropped_promql(target, signal_window)
    uptime = uptime_promql(target)
    window = promql_duration(th.uptime_window_s)

    def rule(name: str, expr: str, severity: str, summary: str, for_: str = "1m") -> dict[str, Any]:
        return _rule(opts, name, expr, severity, summary, for_)

    rules = [
        rule("EmailSenderDown", f"{s.on('up')} == 0", "critical", "email-sender-go is not scraped (down)"),
        rule("EmailSenderLatencyP95Warning", API_LATENCY.alert_expr(target, th.latency_p95_warn_ms), "warning",
             f"API p95 latency over {th.latency_p95_warn_ms:g} ms ({signal_window})"),
        rule("EmailSenderLatencyP95Critical", API_LATENCY.alert_expr(target, th.latency_p95_crit_ms), "critical",
             f"API p95 latency over {th.latency_p95_crit_ms:g} ms ({signal_window})"),
        rule("EmailSenderErrorRateWarning", ERROR_RATE.alert_expr(target, th.error_rate_warn_pct), "warning",
             f"error rate over {th.error_rate_warn_pct:g} % ({signal_window}, lower bound)"),
        rule("EmailSenderErrorRateCritical", ERROR_RATE.alert_expr(target, th.error_rate_crit_pct), "critical",
             f"error rate over {th.error_rate_crit_pct:g} % ({signal_window}, lower bound)"),
        rule("EmailSenderMemoryWarning", f"{memory} > {th.memory_warn_pct / 100:g}", "warning",
             f"memory over {th.memory_warn_pct:g} % of {target.service.memory_limit}"),
        rule("EmailSenderMemoryCritical", f"{memory} > {th.memory_crit_pct / 100:g}", "critical",
             f"memory over {th.memory_crit_pct:g} % of {target.service.memory_limit}"),
        rule("EmailSenderUptimeWarning", f"{uptime} < {th.uptime_warn_pct / 100:g}", "warning",
             f"uptime under {th.uptime_warn_pct:g} % over {window}", "5m"),
        rule("EmailSenderUptimeCritical", f"{uptime} < {th.uptime_crit_pct / 100:g}", "critical",
             f"uptime under {th.uptime_crit_pct:g} % over {window}", "5m"),
        rule("EmailSenderVectorInsertErrors", INSERT_ERRORS.alert_expr(target, th.vector_insert_error_warn_pct),
             "warning", f"vector insert errors over {th.vector_insert_error_warn_pct:g} % ({signal_window}, "
                        "lower bound)"),
        rule("EmailSenderVectorSearchSlow", SEARCH_LATENCY.alert_expr(target, th.vector_search_latency_warn_ms),
             "warning", f"vector search median over {th.vector_search_latency_warn_ms:g} ms ({signal_window})"),
        rule("EmailSenderQdrantConnectionErrors",
             f"sum(increase({s.on(m.qdrant_connection_errors)}[5m])) > {th.qdrant_connection_errors_crit:g}",
             "critical", "the service cannot reach Qdrant", "0s"),
        rule("EmailSenderEventBusWarning",
             f"{bus} > {th.event_bus_saturation_warn_pct / 100:g} or {dropped} > 0", "warning",
             f"event bus over {th.event_bus_saturation_warn_pct:g} % full, or dropping events", "0s"),
        rule("EmailSenderEventBusCritical", f"{bus} > {th.event_bus_saturation_crit_pct / 100:g}", "critical",
             f"event bus over {th.event_bus_saturation_crit_pct:g} % full", "0s"),
    ]
    return {"groups": [{"name": "email-sender-guide-thresholds", "rules": rules}]}


def render_rules(target: Target, opts: RuleOptions) -> str:
    return yaml.safe_dump(rules_for(target, opts), sort_keys=False)
