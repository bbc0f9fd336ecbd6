"""What Prometheus needs to watch ``serve`` daemons: the scrape job, and alert rules over their series."""

from __future__ import annotations

from typing import Any

import yaml

from es_doctor.serve.daemon import Settings

JOB = "es-doctor"


def scrape_config(settings: Settings) -> str:
    """The Prometheus scrape job for this daemon (its token as a credentials file, never inline)."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    address = f"[{host}]:{settings.port}" if ":" in host else f"{host}:{settings.port}"
    interval = max(5, min(60, int(settings.interval_s)))
    job: dict[str, Any] = {"job_name": JOB, "scrape_interval": f"{interval}s", "scrape_timeout": "5s",
                           "metrics_path": "/metrics", "static_configs": [{"targets": [address]}]}
    note = ""
    if settings.token_ref:
        job["authorization"] = {"type": "Bearer", "credentials_file": "/etc/prometheus/es-doctor.token"}
        note = (f"# /etc/prometheus/es-doctor.token must hold the token (the value of {settings.token_ref}); "
                "it is not printed here.\n")
    return note + yaml.safe_dump({"scrape_configs": [job]}, sort_keys=False).rstrip()


def serve_rules(interval_s: float = 30.0, runbook_base_url: str | None = None) -> dict[str, Any]:
    """Alert rules over ``es_doctor_check_status`` (one per status: no status label, so ``for:`` holds).

    Each has a summary and a description whose commands run as printed (``-t`` from the alert's
    ``target`` label); with ``runbook_base_url`` (an http(s):// URL, checked by the caller) a
    ``runbook_url``: the runbooks' directory for a check's alert (``fix`` picks the runbook), the
    escalation page for an alert about es-doctor itself."""
    stale = int(max(3 * interval_s, 90))
    cli = "es-doctor -t {{ $labels.target }}"
    check_next = (f"see `{cli} diagnose --check {{{{ $labels.check }}}}`, cure with `{cli} fix "
                  "{{ $labels.check }}` (or escalate when no runbook cures it)")

    def rule(name: str, expr: str, for_: str, severity: str, summary: str, description: str,
             page: str) -> dict[str, Any]:
        annotations = {"summary": summary, "description": description}
        if runbook_base_url:
            annotations["runbook_url"] = f"{runbook_base_url.rstrip('/')}/{page}"
        return {"alert": name, "expr": expr, "for": for_, "labels": {"severity": severity, "source": "es-doctor"},
                "annotations": annotations}

    rules = [
        rule("EsDoctorCheckCritical", "es_doctor_check_status == 2", "1m", "critical",
             "{{ $labels.target }}: {{ $labels.check }} is CRIT", f"es-doctor serve reads CRIT: {check_next}", ""),
        rule("EsDoctorCheckWarning", "es_doctor_check_status == 1", "5m", "warning",
             "{{ $labels.target }}: {{ $labels.check }} is WARN", f"es-doctor serve reads WARN: {check_next}", ""),
        rule("EsDoctorCheckUnknown", "es_doctor_check_status == 3", "10m", "warning",
             "{{ $labels.target }}: {{ $labels.check }} cannot be told (UNKNOWN)",
             f"es-doctor serve cannot tell: see `{cli} diagnose --check {{{{ $labels.check }}}}`", ""),
        rule("EsDoctorTargetDown", "es_doctor_target_up == 0", "1m", "critical",
             "{{ $labels.target }}: the service does not answer",
             f"see `{cli} diagnose` (the startup checks say why)", ""),
        rule("EsDoctorStale", f"time() - es_doctor_last_run_timestamp_seconds > {stale}", "2m", "warning",
             "{{ $labels.target }}: no diagnosis for over " + f"{stale} s",
             "es-doctor serve has not finished a round for this target: read its log", ESCALATION_PAGE),
        rule("EsDoctorServeDown", f'up{{job="{JOB}"}} == 0', "2m", "critical",
             "es-doctor serve on {{ $labels.instance }} is not scraped",
             "Prometheus cannot scrape es-doctor serve on {{ $labels.instance }}: is it running?", ESCALATION_PAGE),
        rule("EsDoctorConfigReloadFailed", "es_doctor_config_last_reload_successful == 0", "5m", "warning",
             "es-doctor serve on {{ $labels.instance }} refused its new configuration",
             "es-doctor serve on {{ $labels.instance }} keeps its previous configuration: check the new one "
             "with `es-doctor config show`", ESCALATION_PAGE),
    ]
    return {"groups": [{"name": "es-doctor-serve", "rules": rules}]}


#: the page a serve rule about es-doctor itself links
ESCALATION_PAGE = "ESCALATION.md"


def render_serve_rules(interval_s: float = 30.0, runbook_base_url: str | None = None) -> str:
    return yaml.safe_dump(serve_rules(interval_s, runbook_base_url), sort_keys=False)


#: where the printed Alertmanager receiver reads serve's token from (never inline)
AM_TOKEN_FILE = "/etc/alertmanager/es-doctor.token"  # noqa: S105 - a path, not a secret


def alertmanager_config(settings: Settings, max_alerts: int = 100) -> str:
    """Alertmanager's receiver (webhook v4 to ``/api/v1/alerts``, the token from a file) and route for serve."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    address = f"[{host}]:{settings.port}" if ":" in host else f"{host}:{settings.port}"
    receiver = {"name": "es-doctor", "webhook_configs": [{
        "url": f"http://{address}/api/v1/alerts", "send_resolved": True, "max_alerts": max_alerts,
        "http_config": {"authorization": {"type": "Bearer", "credentials_file": AM_TOKEN_FILE}}}]}
    route = {"receiver": "es-doctor", "group_by": ["target", "finding", "check"], "group_wait": "10s",
             "group_interval": "1m", "repeat_interval": "1h"}
    note = (f"# {AM_TOKEN_FILE} must hold serve's token (the value of {settings.token_ref or 'serve.token'}); "
            "it is not printed here.\n# In an existing configuration: add the receiver, and this route under "
            "route.routes with\n#   matchers: ['finding=~\".+\"'] (the guide's rules) or ['check=~\".+\"'] "
            "(the --serve rules), continue: true\n")
    return note + yaml.safe_dump({"route": route, "receivers": [receiver]}, sort_keys=False).rstrip()
