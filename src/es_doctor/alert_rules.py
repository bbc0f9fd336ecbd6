"""Prometheus alert rules for the guide's 'Seuils d'Alerte Recommandés', from a target's thresholds.

``es-doctor alert-rules`` prints them; the lab's Prometheus loads them; ``promtool check rules``
validates them (tested). Each rule's ``annotations.runbook_url`` (the kube-prometheus convention) links
the runbook that cures its finding, ``<base>/<runbook>.yaml``, or ``<base>/ESCALATION.md`` when none
does; ``<base>`` is ``--runbook-base-url`` (e.g. the repository's ``runbooks/`` on a Git web UI),
by default the ``file://`` URL of the shipped runbooks on the machine that generated the rules.
"""

from __future__ import annotations

import functools
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


#: the page a rule links when no runbook cures its finding (shipped beside the runbooks)
ESCALATION_PAGE = "ESCALATION.md"


def default_runbook_base_url() -> str:
    """``file://`` URL of the shipped runbooks directory (the repository's ``runbooks/``)."""
    from es_doctor.runbooks.loader import shipped_dir

    return shipped_dir().resolve().as_uri()


def check_runbook_base_url(base: str) -> str:
    """``base`` without its trailing ``/``; ValueError unless it is an http(s):// or file:// URL."""
    from urllib.parse import urlsplit

    parts = urlsplit(base.strip())
    if parts.scheme not in ("http", "https", "file") or (parts.scheme != "file" and not parts.netloc):
        raise ValueError(f"--runbook-base-url must be an http(s):// or file:// URL, not {base!r}")
    return base.strip().rstrip("/")


def _rule(base_url: str, name: str, expr: str, severity: str, summary: str, for_: str = "1m") -> dict[str, Any]:
    finding = FINDINGS[name]
    remedy = remedy_for(finding)
    labels = {"severity": severity, "service": "email-sender-go", "finding": finding}
    if remedy is not None:
        labels["runbook"] = remedy.runbook
        page = f"{remedy.runbook}.yaml"
        next_step = f"diagnose with `es-doctor diagnose --check {finding}`, cure with `es-doctor fix {finding}`"
    else:
        labels["escalate"] = str(escalation_for(finding))
        page = ESCALATION_PAGE
        next_step = (f"diagnose with `es-doctor diagnose --check {finding}`; no runbook cures it: "
                     f"`es-doctor escalate --level {labels['escalate']}`")
    return {"alert": name, "expr": expr, "for": for_, "labels": labels,
            "annotations": {"summary": summary, "description": f"{summary} on {{{{ $labels.instance }}}}: {next_step}",
                            "runbook_url": f"{base_url}/{page}"}}


def rules_for(target: Target, runbook_base_url: str | None = None) -> dict[str, Any]:
    th, m = target.thresholds, target.metrics
    base = check_runbook_base_url(runbook_base_url) if runbook_base_url else default_runbook_base_url()
    jobs = "|".join(target.prometheus.jobs)
    latency = f"histogram_quantile(0.95, sum(rate({m.request_duration}_bucket[1m])) by (le))"
    errors = (f'sum(rate({m.requests_total}{{status=~"5.."}}[1m])) / sum(rate({m.requests_total}[1m]))')
    limit = parse_size(target.service.memory_limit)
    memory = f'max({m.resident_memory}{{job=~"{jobs}"}}) / {limit}'
    inserts = (f'sum(rate({m.vector_operations}{{op="insert",result="error"}}[5m])) / '
               f'sum(rate({m.vector_operations}{{op="insert"}}[5m]))')
    search = f"histogram_quantile(0.95, sum(rate({m.vector_search_duration}_bucket[5m])) by (le))"
    rule = functools.partial(_rule, base)
    # monitoring.uptime's window (what history exists: avg_over_time averages the scrapes held)
    window = promql_duration(th.uptime_window_s)
    uptime = f'avg_over_time(up{{job=~"{jobs}"}}[{window}])'
    rules = [
        rule("EmailSenderDown", f'up{{job=~"{jobs}"}} == 0', "critical", "email-sender-go is not scraped (down)"),
        rule("EmailSenderLatencyP95Warning", f"{latency} > {th.latency_p95_warn_ms / 1000:g}", "warning",
              f"API p95 latency over {th.latency_p95_warn_ms:g} ms"),
        rule("EmailSenderLatencyP95Critical", f"{latency} > {th.latency_p95_crit_ms / 1000:g}", "critical",
              f"API p95 latency over {th.latency_p95_crit_ms:g} ms"),
        rule("EmailSenderErrorRateWarning", f"{errors} > {th.error_rate_warn_pct / 100:g}", "warning",
              f"error rate over {th.error_rate_warn_pct:g} %"),
        rule("EmailSenderErrorRateCritical", f"{errors} > {th.error_rate_crit_pct / 100:g}", "critical",
              f"error rate over {th.error_rate_crit_pct:g} %"),
        rule("EmailSenderMemoryWarning", f"{memory} > {th.memory_warn_pct / 100:g}", "warning",
              f"memory over {th.memory_warn_pct:g} % of {target.service.memory_limit}"),
        rule("EmailSenderMemoryCritical", f"{memory} > {th.memory_crit_pct / 100:g}", "critical",
              f"memory over {th.memory_crit_pct:g} % of {target.service.memory_limit}"),
        rule("EmailSenderUptimeWarning", f'{uptime} < {th.uptime_warn_pct / 100:g}', "warning",
              f"uptime under {th.uptime_warn_pct:g} % over {window}", "5m"),
        rule("EmailSenderUptimeCritical", f'{uptime} < {th.uptime_crit_pct / 100:g}', "critical",
              f"uptime under {th.uptime_crit_pct:g} % over {window}", "5m"),
        rule("EmailSenderVectorInsertErrors", f"{inserts} > {th.vector_insert_error_warn_pct / 100:g}", "warning",
              f"vector insert errors over {th.vector_insert_error_warn_pct:g} %"),
        rule("EmailSenderVectorSearchSlow", f"{search} > {th.vector_search_latency_warn_ms / 1000:g}", "warning",
              f"vector search p95 over {th.vector_search_latency_warn_ms:g} ms"),
        rule("EmailSenderQdrantConnectionErrors",
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


def render_rules(target: Target, runbook_base_url: str | None = None) -> str:
    return yaml.safe_dump(rules_for(target, runbook_base_url), sort_keys=False)
