"""Alertmanager's webhook payload (version 4), read strictly, and what one alert asks of es-doctor.

An alert names its finding by its ``finding`` label (``es-doctor alert-rules``) or its ``check`` label
(the ``--serve`` rules over ``es_doctor_check_status``), its target by a ``target`` label (or, when
``serve`` watches one target, that one). Its cure comes from :mod:`es_doctor.cures` only; a ``runbook``
label is a hint that must agree. A request's identity is derived from target, finding and the alert's
``startsAt`` and ``fingerprint``: two ``serve`` instances fed by one Alertmanager cluster derive the same.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

WEBHOOK_VERSION = "4"
#: a label value longer than this is refused (Alertmanager's own are short)
MAX_LABEL_CHARS = 1024


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class Alert(_Strict):
    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: str = Field(alias="startsAt")
    ends_at: str = Field(default="", alias="endsAt")
    generator_url: str = Field(default="", alias="generatorURL")
    fingerprint: str = Field(default="", max_length=64)


class Webhook(_Strict):
    """Alertmanager's webhook_config payload, version 4."""

    version: Literal["4"]
    group_key: str = Field(alias="groupKey", max_length=4096)
    truncated_alerts: int = Field(default=0, alias="truncatedAlerts", ge=0)
    status: Literal["firing", "resolved"]
    receiver: str = Field(max_length=1024)
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field(default="", alias="externalURL", max_length=4096)
    alerts: list[Alert]


class PayloadError(ValueError):
    """A payload refused whole: its HTTP status and the reason told to the sender."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def parse_webhook(body: bytes, max_alerts: int) -> Webhook:
    """The payload, or PayloadError (400 malformed, 422 another version or shape, 413 too many alerts)."""
    try:
        raw = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise PayloadError(400, f"not JSON: {str(exc)[:200]}") from None
    if not isinstance(raw, dict):
        raise PayloadError(400, "the payload is not a JSON object")
    version = raw.get("version")
    if version != WEBHOOK_VERSION:
        raise PayloadError(422, f"webhook payload version {str(version)[:20]!r} is not supported (only version 4)")
    alerts = raw.get("alerts")
    if isinstance(alerts, list) and len(alerts) > max_alerts:
        raise PayloadError(413, f"{len(alerts)} alerts in one group (at most {max_alerts}: remediation."
                                "max_alerts); split the group (group_by: [target, finding])")
    try:
        hook = Webhook.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PayloadError(422, f"not an Alertmanager v4 payload: {where}: {first['msg']}"
                                f"{f' (and {exc.error_count() - 1} more)' if exc.error_count() > 1 else ''}") from None
    for alert in hook.alerts:
        for key, value in alert.labels.items():
            if len(key) > MAX_LABEL_CHARS or len(value) > MAX_LABEL_CHARS:
                raise PayloadError(422, f"label {key[:40]!r} is longer than {MAX_LABEL_CHARS} characters")
        if parse_time(alert.starts_at) is None:
            raise PayloadError(422, f"startsAt {alert.starts_at[:40]!r} is not an RFC 3339 time")
    return hook


def parse_time(text: str) -> dt.datetime | None:
    """Alertmanager's RFC 3339 time (nanoseconds allowed); None when it is not one."""
    if not text:
        return None
    head, _, frac = text.partition(".")
    zone = ""
    if frac:
        digits = frac.rstrip("Z").split("+")[0].split("-")[0]
        zone = frac[len(digits):]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def finding_of(alert: Alert) -> str | None:
    return alert.labels.get("finding") or alert.labels.get("check")


def request_id(target: str, finding: str, alert: Alert) -> str:
    """The request's identity: the same in every ``serve`` that receives this alert (no clock, no host)."""
    starts = parse_time(alert.starts_at)
    stamp = starts.astimezone(dt.UTC).isoformat() if starts else alert.starts_at
    digest = hashlib.sha256("\x1f".join((target, finding, stamp, alert.fingerprint)).encode()).hexdigest()
    return "r-" + digest[:16]


@dataclass(frozen=True)
class Ask:
    """What one alert asks, mapped (or the reason it cannot be)."""

    alert: Alert
    status: str
    target: str | None
    finding: str | None
    #: the cure cures.py names for the finding (its default; the check's cause refines it at run time)
    runbook: str | None
    #: why the alert cannot become a request (unknown target/finding/runbook, the hint disagrees); None: it can
    refused: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "target": self.target, "finding": self.finding, "runbook": self.runbook,
                "refused": self.refused, "alertname": self.alert.labels.get("alertname"),
                "startsAt": self.alert.starts_at, "fingerprint": self.alert.fingerprint}


def map_alert(alert: Alert, targets: list[str], checks: set[str], runbooks: set[str]) -> Ask:
    """Target, finding and cure of one alert, through cures.py only; never a guess."""
    from es_doctor import cures

    target = alert.labels.get("target") or (targets[0] if len(targets) == 1 else None)
    finding = finding_of(alert)
    status = alert.status

    def refuse(why: str, runbook: str | None = None) -> Ask:
        return Ask(alert, status, target, finding, runbook, why)

    if target is None:
        return refuse(f"the alert has no target label and serve watches {len(targets)} targets")
    if target not in targets:
        return refuse(f"unknown target {target[:80]!r} (serve watches: {', '.join(targets)})")
    if finding is None:
        return refuse("the alert has neither a finding nor a check label: es-doctor cannot tell what it is about")
    if finding not in checks:
        return refuse(f"unknown finding {finding[:80]!r}")
    curing = cures.runbooks_curing(finding)
    hint = alert.labels.get("runbook")
    if hint is not None and hint not in curing:
        return refuse(f"the runbook label {hint[:80]!r} does not cure {finding} (cures.py: "
                      f"{', '.join(curing) or 'no runbook, escalate'}): refused", hint)
    remedy = cures.remedy_for(finding)
    runbook = remedy.runbook if remedy else (curing[0] if curing else None)
    if runbook is not None and runbook not in runbooks:
        return refuse(f"its cure {runbook} is not among the loaded runbooks", runbook)
    return Ask(alert, status, target, finding, runbook, None)
