"""``es-doctor escalate``: the incident record, its bundle on disk, and the notification channels.

The guide's "Niveaux d'Escalade": level 1 (Équipe Dev), 2 (DevOps), 3 (Expertise). An incident is
written to ``<state_dir>/incidents/<id>/`` (``incident.json`` and ``incident.md``, never
overwritten) *before* anything is sent, so a channel that fails never loses it. Channels:

- ``slack``: a Slack-compatible incoming webhook (``{"text", "blocks"}``, answers ``ok``);
- ``pagerduty``: the Events API v2 (``trigger``/``resolve``, ``dedup_key`` = the incident id);
- ``webhook``: the incident record as JSON.

Channel URLs and routing keys are secrets: resolved at send time only, never in a payload, the
bundle or the output; the diagnosis, log and audit excerpts are scrubbed of every known secret.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets as _random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

from es_doctor import __version__
from es_doctor.config import EscalationChannel, EscalationConfig, LoadedConfig
from es_doctor.files import create_private, private_dir
from es_doctor.secrets import mask_data, resolve_secret, scrub, strip_control
from es_doctor.severity import PAGERDUTY_SEVERITY, Severity
from es_doctor.units import utc_iso

PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
INCIDENT_ID = re.compile(r"INC-\d{8}-\d{6}-[0-9a-f]{4}")

#: bounds of what an incident carries
MAX_LOG_LINES = 20
MAX_AUDIT_LINES = 20
MAX_LINE_CHARS = 500
MAX_EVIDENCE = 8
MAX_VALUE_CHARS = 300
LOG_SCAN_LINES = 2000


class Incident(BaseModel):
    """One escalation: what, how bad, to whom, and the evidence at the time."""

    id: str
    time: str = Field(description="UTC, ISO 8601")
    target: str
    level: int
    severity: Severity
    issue: str
    team: str
    responsibilities: list[str]
    channels: list[str] = Field(description="channel names configured for the level")
    diagnosis: dict[str, Any] | None = None
    diagnosis_note: str | None = None
    log_errors: list[str] = Field(default_factory=list)
    log_notes: list[str] = Field(default_factory=list)
    audit_tail: list[Any] = Field(default_factory=list)
    tool_version: str = __version__


# --------------------------------------------------------------------------- scrubbing


def scrub_data(value: Any, known: list[str]) -> Any:
    """``value`` with every secret masked (es_doctor.secrets.mask_data) and control characters removed."""
    masked = mask_data(value, known)

    def strip(item: Any) -> Any:
        if isinstance(item, str):
            return strip_control(item)
        if isinstance(item, dict):
            return {strip(k): strip(v) for k, v in item.items()}
        if isinstance(item, list):
            return [strip(v) for v in item]
        return item

    return strip(masked)


def _short(text: str, limit: int = MAX_LINE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------- evidence


def bounded_diagnosis(report: dict[str, Any]) -> dict[str, Any]:
    """The JSON report, with at most MAX_EVIDENCE evidence items per finding and short values."""
    out = dict(report)
    findings = []
    for finding in report.get("findings", []):
        item = dict(finding)
        evidence = []
        for original in list(item.get("evidence", []))[:MAX_EVIDENCE]:
            ev = dict(original)
            value = ev.get("value")
            if not isinstance(value, int | float | bool) and value is not None:
                text = value if isinstance(value, str) else json.dumps(value, default=str)
                ev["value"] = _short(text, MAX_VALUE_CHARS)
            evidence.append(ev)
        item["evidence"] = evidence
        findings.append(item)
    out["findings"] = findings
    return out


def run_diagnosis(loaded: LoadedConfig) -> dict[str, Any]:
    from es_doctor.prescribe import printed_config
    from es_doctor.render.json_report import as_dict
    from es_doctor.runner import diagnose

    report = diagnose(loaded.target, loaded.target_name, config=printed_config(loaded))
    return bounded_diagnosis(as_dict(report))


def recent_log_errors(log_dir: Path, main_log: str, error_log: str) -> tuple[list[str], list[str]]:
    """The last ERROR/FATAL lines of the main log and the tail of the error log; notes on what is missing."""
    from es_doctor.probes.logs import tail_lines

    lines: list[str] = []
    notes: list[str] = []
    main = tail_lines(log_dir / main_log, LOG_SCAN_LINES)
    if main.ok:
        lines.extend(line.raw for line in main.unwrap() if line.level in ("ERROR", "FATAL", "PANIC"))
    else:
        notes.append(str(main.failure))
    errors = tail_lines(log_dir / error_log, MAX_LOG_LINES)
    if errors.ok:
        lines.extend(line.raw for line in errors.unwrap())
    else:
        notes.append(str(errors.failure))
    unique = list(dict.fromkeys(lines))
    return [_short(line) for line in unique[-MAX_LOG_LINES:]], notes


def audit_tail(path: Path) -> list[Any]:
    """The last MAX_AUDIT_LINES records of the audit log (JSON Lines; a bad line is kept as text)."""
    from es_doctor.probes.logs import tail_lines

    result = tail_lines(path, MAX_AUDIT_LINES)
    if not result.ok:
        return []
    return [line.data if line.data is not None else _short(line.raw) for line in result.unwrap()]


def new_incident_id(now: dt.datetime) -> str:
    return f"INC-{now:%Y%m%d-%H%M%S}-{_random.token_hex(2)}"


def build_incident(
    loaded: LoadedConfig, level: int, severity: Severity, issue: str, *, attach_diagnosis: bool,
    known_secrets: list[str], now: dt.datetime | None = None,
) -> Incident:
    now = now or dt.datetime.now(dt.UTC)
    spec = loaded.config.escalation.levels[level]
    diagnosis: dict[str, Any] | None = None
    note: str | None = None
    if attach_diagnosis:
        diagnosis = run_diagnosis(loaded)
    else:
        note = "not attached (--no-attach-diagnosis)"
    service = loaded.target.service
    log_errors, log_notes = recent_log_errors(Path(service.log_dir).expanduser(), service.main_log, service.error_log)
    incident = Incident(
        id=new_incident_id(now),
        time=utc_iso(now),
        target=loaded.target_name,
        level=level,
        severity=severity,
        issue=issue,
        team=spec.team,
        responsibilities=list(spec.responsibilities),
        channels=list(spec.channels),
        diagnosis=diagnosis,
        diagnosis_note=note,
        log_errors=log_errors,
        log_notes=log_notes,
        audit_tail=audit_tail(Path(loaded.config.audit_log).expanduser()),
    )
    return Incident.model_validate(scrub_data(incident.model_dump(mode="json"), known_secrets))


# --------------------------------------------------------------------------- bundle


def incidents_dir(state_dir: str) -> Path:
    return Path(state_dir).expanduser() / "incidents"


def failing_findings(incident: Incident, limit: int = 10) -> list[dict[str, Any]]:
    if not incident.diagnosis:
        return []
    bad = [f for f in incident.diagnosis.get("findings", []) if f.get("status") in ("CRIT", "WARN", "UNKNOWN")]
    return bad[:limit]


def to_markdown(incident: Incident) -> str:
    lines = [
        f"# {incident.id}: {incident.issue}",
        "",
        "| | |",
        "|---|---|",
        f"| time (UTC) | {incident.time} |",
        f"| target | {incident.target} |",
        f"| level | {incident.level} - {incident.team} |",
        f"| severity | {incident.severity.value} |",
        f"| channels | {', '.join(incident.channels) or '(none configured)'} |",
        "",
        f"## Level {incident.level}: {incident.team}",
        "",
        *[f"- {r}" for r in incident.responsibilities],
        "",
        "## Diagnosis",
        "",
    ]
    if incident.diagnosis is None:
        lines.append(incident.diagnosis_note or "not attached")
    else:
        counts = incident.diagnosis.get("counts", {})
        lines.append(f"status **{incident.diagnosis.get('status')}** ("
                     + ", ".join(f"{k} {v}" for k, v in counts.items() if v) + ")")
        lines.append("")
        for finding in failing_findings(incident, limit=50):
            fix = f" (fix: `{finding['fix_command']}`)" if finding.get("fix_command") else ""
            lines.append(f"- {finding.get('status')} `{finding.get('id')}`: {finding.get('summary')}{fix}")
    lines += ["", "## Recent errors in the service logs", ""]
    if incident.log_errors:
        lines += ["```", *incident.log_errors, "```"]
    else:
        lines.append("none found")
    lines += [f"- {note}" for note in incident.log_notes]
    lines += ["", "## Audit log (tail)", ""]
    if incident.audit_tail:
        lines += ["```", *[json.dumps(r, ensure_ascii=False) if not isinstance(r, str) else r
                           for r in incident.audit_tail], "```"]
    else:
        lines.append("empty")
    return "\n".join(lines) + "\n"


def write_bundle(incident: Incident, state_dir: str) -> Path:
    """Write ``incident.json`` and ``incident.md`` in a new directory; never overwrite one."""
    from es_doctor.errors import CantCreateError

    directory = incidents_dir(state_dir) / incident.id
    try:
        private_dir(directory.parent)
        directory.mkdir(mode=0o700, exist_ok=False)
        with os.fdopen(create_private(directory / "incident.json"), "w", encoding="utf-8") as handle:
            handle.write(incident.model_dump_json(indent=2) + "\n")
        with os.fdopen(create_private(directory / "incident.md"), "w", encoding="utf-8") as handle:
            handle.write(to_markdown(incident))
    except OSError as exc:
        raise CantCreateError(f"cannot write the incident bundle in {directory.parent}: "
                              f"{exc.strerror or exc}") from None
    return directory


def read_bundle(state_dir: str, incident_id: str) -> tuple[Incident, Path]:
    from es_doctor.errors import EsDoctorError, ExitStatus, UsageError

    if not INCIDENT_ID.fullmatch(incident_id):
        raise UsageError(f"not an incident id: {incident_id!r} (expected INC-YYYYMMDD-HHMMSS-xxxx)")
    directory = incidents_dir(state_dir) / incident_id
    path = directory / "incident.json"
    if not path.is_file():
        raise UsageError(f"no incident {incident_id} in {incidents_dir(state_dir)}")
    try:
        return Incident.model_validate_json(path.read_text(encoding="utf-8")), directory
    except ValueError as exc:
        raise EsDoctorError(f"{path}: not a valid incident record: {str(exc).splitlines()[0]}",
                            exit_status=ExitStatus.DATA) from exc


def write_json_new(path: Path, data: Any) -> None:
    with os.fdopen(create_private(path), "w", encoding="utf-8") as handle:
        handle.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


# --------------------------------------------------------------------------- payloads


def _summary(incident: Incident) -> str:
    return f"[{incident.severity.value.upper()}] {incident.target}: {incident.issue}"


def slack_payload(incident: Incident, bundle: Path) -> dict[str, Any]:
    """Slack incoming webhook: ``text`` (fallback) and Block Kit ``blocks``."""
    fields = [
        {"type": "mrkdwn", "text": f"*Incident:*\n{incident.id}"},
        {"type": "mrkdwn", "text": f"*Severity:*\n{incident.severity.value}"},
        {"type": "mrkdwn", "text": f"*Level:*\n{incident.level} - {incident.team}"},
        {"type": "mrkdwn", "text": f"*Target:*\n{incident.target}"},
    ]
    if incident.diagnosis is not None:
        counts = incident.diagnosis.get("counts", {})
        fields.append({"type": "mrkdwn", "text": f"*Diagnosis:*\n{incident.diagnosis.get('status')} ("
                       + ", ".join(f"{k} {v}" for k, v in counts.items() if v) + ")"})
    fields.append({"type": "mrkdwn", "text": f"*Time (UTC):*\n{incident.time}"})
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _short(f"{incident.id}: {incident.issue}", 150)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _short(
            f"*{incident.issue}*\nResponsibilities of {incident.team}: " + "; ".join(incident.responsibilities),
            3000)}},
        {"type": "section", "fields": fields},
    ]
    bad = failing_findings(incident, limit=8)
    if bad:
        text = "\n".join(f"• {f.get('status')} `{f.get('id')}`: {f.get('summary')}" for f in bad)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _short("*Findings*\n" + text, 3000)}})
    if incident.log_errors:
        text = "\n".join(_short(line, 300) for line in incident.log_errors[-5:])
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                   "text": _short(f"*Recent errors*\n```{text}```", 3000)}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"es-doctor bundle: {bundle}"}]})
    return {"text": _short(f"{incident.id} {_summary(incident)}", 3000), "blocks": blocks}


def slack_resolve_payload(incident: Incident, resolved_at: str) -> dict[str, Any]:
    text = f"Resolved: {incident.id} ({incident.target}: {incident.issue}) at {resolved_at}"
    return {"text": _short(text, 3000),
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": _short(f":white_check_mark: {text}",
                                                                                       3000)}}]}


def pagerduty_payload(incident: Incident, bundle: Path, routing_key: str, source: str, component: str
                      ) -> dict[str, Any]:
    """PagerDuty Events API v2 ``trigger`` event; the incident id is the dedup_key."""
    custom: dict[str, Any] = {
        "incident_id": incident.id,
        "issue": incident.issue,
        "level": incident.level,
        "team": incident.team,
        "responsibilities": incident.responsibilities,
        "bundle": str(bundle),
        "recent_errors": incident.log_errors[-5:],
    }
    if incident.diagnosis is not None:
        custom["diagnosis_status"] = incident.diagnosis.get("status")
        custom["diagnosis_counts"] = incident.diagnosis.get("counts")
        custom["findings"] = [f"{f.get('status')} {f.get('id')}: {f.get('summary')}"
                              for f in failing_findings(incident)]
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": incident.id,
        "payload": {
            "summary": _short(_summary(incident), 1024),
            "source": source,
            "severity": PAGERDUTY_SEVERITY[incident.severity],
            "timestamp": incident.time,
            "component": component,
            "group": incident.target,
            "class": f"escalation-level-{incident.level}",
            "custom_details": custom,
        },
        "client": "es-doctor",
    }


def pagerduty_resolve_payload(incident_id: str, routing_key: str) -> dict[str, Any]:
    return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": incident_id}


def webhook_resolve_payload(incident: Incident, resolved_at: str) -> dict[str, Any]:
    return {"id": incident.id, "event": "resolve", "status": "resolved", "resolved_at": resolved_at,
            "target": incident.target, "level": incident.level}


# --------------------------------------------------------------------------- sending


@dataclass(frozen=True)
class Delivery:
    """What happened to one channel (no URL, no key)."""

    channel: str
    type: str
    ok: bool
    attempts: int
    detail: str
    status_code: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"channel": self.channel, "type": self.type, "ok": self.ok, "attempts": self.attempts,
                "status_code": self.status_code, "detail": self.detail}


def post_with_retry(
    name: str, channel: EscalationChannel, url: str, payload: dict[str, Any], known: list[str],
    sleep: Callable[[float], None] = time.sleep,
) -> Delivery:
    """POST ``payload`` as JSON; retry refusals, timeouts, 429 and 5xx with exponential backoff (or the
    server's ``Retry-After``), waiting at most ``MAX_RETRY_WAIT_TOTAL_S`` (60 s) between tries in all."""
    from es_doctor.probes.http import RetryBudget, poster, retry_after

    budget = RetryBudget()  # Retry-After is capped per try, and all the waits together too
    attempts = 0
    detail = ""
    status: int | None = None
    delay = channel.backoff_s
    headers = {"User-Agent": f"es-doctor/{__version__}", "Content-Type": "application/json"}
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    try:  # timeout_s is the whole request's deadline (connect, send, answer), body capped at 64 KiB
        client = poster(url, deadline_s=channel.timeout_s, max_body=64 * 1024)
    except ValueError as exc:  # e.g. a malformed proxy setting
        return Delivery(name, channel.type, False, 0, scrub(f"cannot create an HTTP client: {exc}", known))
    with client:
        for attempt in range(channel.retries + 1):
            attempts += 1
            wait = delay
            answer = client.post(body, headers)
            status, retryable = answer.status_code, answer.retryable
            if status is None:
                detail = answer.detail
            else:
                if 200 <= status < 300:
                    return Delivery(name, channel.type, True, attempts, scrub(f"HTTP {status}", known), status)
                detail = f"HTTP {status}: {_short(answer.text.strip(), 200)}"
                retryable = status == 429 or status >= 500
                if status in (429, 503):  # the server says when to come back (capped)
                    wait = retry_after(answer.headers, delay)
            if not retryable or attempt == channel.retries:
                break
            granted = budget.take(wait)
            if granted is None:
                detail += f" (not retried: {budget.total:g} s of waiting between tries spent)"
                break
            sleep(granted)
            delay *= 2
    return Delivery(name, channel.type, False, attempts, scrub(detail, known), status)


def _source(loaded: LoadedConfig) -> str:
    host = urlsplit(loaded.target.service.api_url).hostname
    return host or loaded.target_name


def send(
    name: str, channel: EscalationChannel, payload_for: Callable[[str | None], dict[str, Any]],
    known: list[str], sleep: Callable[[float], None] = time.sleep,
) -> Delivery:
    """Resolve the channel's secrets now, build its payload (given the routing key) and post it."""
    if channel.type == "pagerduty":
        url = resolve_secret(channel.url) if channel.url else PAGERDUTY_URL
        key = resolve_secret(channel.routing_key)
        if not key:
            return Delivery(name, channel.type, False, 0, f"routing_key {_ref(channel.routing_key)} is not set")
    else:
        url = resolve_secret(channel.url)
        key = None
    if not url:
        return Delivery(name, channel.type, False, 0, f"url {_ref(channel.url)} is not set")
    return post_with_retry(name, channel, url, payload_for(key), known + ([key] if key else []) + [url], sleep)


def _ref(value: str | None) -> str:
    """How to name an unset secret: its env: reference, never a value."""
    return value if value and value.startswith("env:") else "(literal)"


def deliver_incident(
    loaded: LoadedConfig, incident: Incident, bundle: Path, known: list[str],
    sleep: Callable[[float], None] = time.sleep,
) -> list[Delivery]:
    escalation: EscalationConfig = loaded.config.escalation
    deliveries = []
    component = loaded.target.service.container
    for name in incident.channels:
        channel = escalation.channels[name]

        def payload_for(key: str | None, channel: EscalationChannel = channel) -> dict[str, Any]:
            if channel.type == "slack":
                return slack_payload(incident, bundle)
            if channel.type == "pagerduty":
                return pagerduty_payload(incident, bundle, key or "", _source(loaded), component)
            return incident.model_dump(mode="json")

        deliveries.append(send(name, channel, payload_for, known, sleep))
    return deliveries


def deliver_resolve(
    loaded: LoadedConfig, incident: Incident, resolved_at: str, known: list[str],
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[list[Delivery], list[str]]:
    """Send the resolve to the incident's channels still configured; the names of those no longer are."""
    escalation = loaded.config.escalation
    deliveries = []
    missing = []
    for name in incident.channels:
        if name not in escalation.channels:
            missing.append(name)
            continue
        channel = escalation.channels[name]

        def payload_for(key: str | None, channel: EscalationChannel = channel) -> dict[str, Any]:
            if channel.type == "slack":
                return slack_resolve_payload(incident, resolved_at)
            if channel.type == "pagerduty":
                return pagerduty_resolve_payload(incident.id, key or "")
            return webhook_resolve_payload(incident, resolved_at)

        deliveries.append(send(name, channel, payload_for, known, sleep))
    return deliveries, missing
