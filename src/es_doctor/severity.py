"""An incident's severity, once: the words ``escalate --severity`` takes and what PagerDuty calls each."""

from __future__ import annotations

from enum import StrEnum


class Severity(StrEnum):
    """How bad an incident is (``escalate --severity``)."""

    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


#: es-doctor severity → PagerDuty Events API v2 ``payload.severity``
PAGERDUTY_SEVERITY: dict[Severity, str] = {Severity.critical: "critical", Severity.high: "error",
                                           Severity.medium: "warning", Severity.low: "info"}
