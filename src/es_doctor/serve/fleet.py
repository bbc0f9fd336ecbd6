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


def serve_rules(interval_s: float = 30.0) -> dict[str, Any]:
    """Alert rules over ``es_doctor_check_status`` (one per status: no status label, so ``for:`` holds)."""
    stale = int(max(3 * interval_s, 90))

    def rule(name: str, expr: str, for_: str, severity: str, summary: str) -> dict[str, Any]:
        return {"alert": name, "expr": expr, "for": for_, "labels": {"severity": severity, "source": "es-doctor"},
                "annotations": {"summary": summary,
                                "fix": "es-doctor -t {{ $labels.target }} fix {{ $labels.check }}"}}

    rules = [
        rule("EsDoctorCheckCritical", "es_doctor_check_status == 2", "1m", "critical",
             "{{ $labels.target }}: {{ $labels.check }} is CRIT"),
        rule("EsDoctorCheckWarning", "es_doctor_check_status == 1", "5m", "warning",
             "{{ $labels.target }}: {{ $labels.check }} is WARN"),
        rule("EsDoctorCheckUnknown", "es_doctor_check_status == 3", "10m", "warning",
             "{{ $labels.target }}: {{ $labels.check }} cannot be told (UNKNOWN)"),
        rule("EsDoctorTargetDown", "es_doctor_target_up == 0", "1m", "critical",
             "{{ $labels.target }}: the service does not answer"),
        rule("EsDoctorStale", f"time() - es_doctor_last_run_timestamp_seconds > {stale}", "2m", "warning",
             "{{ $labels.target }}: no diagnosis for over " + f"{stale} s"),
        rule("EsDoctorServeDown", f'up{{job="{JOB}"}} == 0', "2m", "critical",
             "es-doctor serve on {{ $labels.instance }} is not scraped"),
        rule("EsDoctorConfigReloadFailed", "es_doctor_config_last_reload_successful == 0", "5m", "warning",
             "es-doctor serve on {{ $labels.instance }} refused its new configuration"),
    ]
    for item in rules:
        if not str(item["expr"]).startswith("es_doctor_check_status"):
            item["annotations"].pop("fix")
    return {"groups": [{"name": "es-doctor-serve", "rules": rules}]}


def render_serve_rules(interval_s: float = 30.0) -> str:
    return yaml.safe_dump(serve_rules(interval_s), sort_keys=False)


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
