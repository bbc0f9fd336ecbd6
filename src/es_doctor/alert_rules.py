"""Prometheus alert rules for the guide's 'Seuils d'Alerte Recommandés', from a target's thresholds.

``es-doctor alert-rules`` prints them; the lab's Prometheus loads them; ``promtool check rules``
validates them (tested).
"""

from __future__ import annotations

from typing import Any

import yaml

from es_doctor.config import Target, parse_size
from es_doctor.cures import escalation_for, remedy_for

#: alert → the es-doctor finding (check) that watches the same symptom; the rule's ``runbook``
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
}


def _rule(name: str, expr: str, severity: str, summary: str, for_: str = "1m") -> dict[str, Any]:
    finding = FINDINGS[name]
    remedy = remedy_for(finding)
    labels = {"severity": severity, "service": "email-sender-go", "finding": finding}
    if remedy is not None:
        labels["runbook"] = remedy.runbook
        next_step = f"diagnose with `es-doctor diagnose --check {finding}`, cure with `es-doctor fix {finding}`"
    else:
        labels["escalate"] = str(escalation_for(finding))
        next_step = (f"diagnose with `es-doctor diagnose --check {finding}`; no runbook cures it: "
                     f"`es-doctor escalate --level {labels['escalate']}`")
    return {"alert": name, "expr": expr, "for": for_, "labels": labels,
            "annotations": {"summary": summary, "description": f"{summary} on {{{{ $labels.instance }}}}: {next_step}"}}


def rules_for(target: Target) -> dict[str, Any]:
    th, m = target.thresholds, target.metrics
    jobs = "|".join(target.prometheus.jobs)
    latency = f"histogram_quantile(0.95, sum(rate({m.request_duration}_bucket[1m])) by (le))"
    errors = (f'sum(rate({m.requests_total}{{status=~"5.."}}[1m])) / sum(rate({m.requests_total}[1m]))')
    limit = parse_size(target.service.memory_limit)
    memory = f'max({m.resident_memory}{{job=~"{jobs}"}}) / {limit}'
    inserts = (f'sum(rate({m.vector_operations}{{op="insert",result="error"}}[5m])) / '
               f'sum(rate({m.vector_operations}{{op="insert"}}[5m]))')
    search = f"histogram_quantile(0.95, sum(rate({m.vector_search_duration}_bucket[5m])) by (le))"
    # monitoring.uptime's window (what history exists: avg_over_time averages the scrapes held)
    window = promql_duration(th.uptime_window_s)
    uptime = f'avg_over_time(up{{job=~"{jobs}"}}[{window}])'
    rules = [
        _rule("EmailSenderDown", f'up{{job=~"{jobs}"}} == 0', "critical", "email-sender-go is not scraped (down)"),
        _rule("EmailSenderLatencyP95Warning", f"{latency} > {th.latency_p95_warn_ms / 1000:g}", "warning",
              f"API p95 latency over {th.latency_p95_warn_ms:g} ms"),
        _rule("EmailSenderLatencyP95Critical", f"{latency} > {th.latency_p95_crit_ms / 1000:g}", "critical",
              f"API p95 latency over {th.latency_p95_crit_ms:g} ms"),
        _rule("EmailSenderErrorRateWarning", f"{errors} > {th.error_rate_warn_pct / 100:g}", "warning",
              f"error rate over {th.error_rate_warn_pct:g} %"),
        _rule("EmailSenderErrorRateCritical", f"{errors} > {th.error_rate_crit_pct / 100:g}", "critical",
              f"error rate over {th.error_rate_crit_pct:g} %"),
        _rule("EmailSenderMemoryWarning", f"{memory} > {th.memory_warn_pct / 100:g}", "warning",
              f"memory over {th.memory_warn_pct:g} % of {target.service.memory_limit}"),
        _rule("EmailSenderMemoryCritical", f"{memory} > {th.memory_crit_pct / 100:g}", "critical",
              f"memory over {th.memory_crit_pct:g} % of {target.service.memory_limit}"),
        _rule("EmailSenderUptimeWarning", f'{uptime} < {th.uptime_warn_pct / 100:g}', "warning",
              f"uptime under {th.uptime_warn_pct:g} % over {window}", "5m"),
        _rule("EmailSenderUptimeCritical", f'{uptime} < {th.uptime_crit_pct / 100:g}', "critical",
              f"uptime under {th.uptime_crit_pct:g} % over {window}", "5m"),
        _rule("EmailSenderVectorInsertErrors", f"{inserts} > {th.vector_insert_error_warn_pct / 100:g}", "warning",
              f"vector insert errors over {th.vector_insert_error_warn_pct:g} %"),
        _rule("EmailSenderVectorSearchSlow", f"{search} > {th.vector_search_latency_warn_ms / 1000:g}", "warning",
              f"vector search p95 over {th.vector_search_latency_warn_ms:g} ms"),
        _rule("EmailSenderQdrantConnectionErrors",
              f"increase({m.qdrant_connection_errors}[5m]) > {th.qdrant_connection_errors_crit:g}", "critical",
              "the service cannot reach Qdrant", "0s"),
    ]
    return {"groups": [{"name": "email-sender-guide-thresholds", "rules": rules}]}


def promql_duration(seconds: float) -> str:
    """A PromQL duration: ``1d``, ``6h``, ``30m``, ``45s`` (whole seconds, at least 1)."""
    whole = max(1, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"


def render_rules(target: Target) -> str:
    return yaml.safe_dump(rules_for(target), sort_keys=False)
