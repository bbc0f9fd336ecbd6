"""``--format json``: the versioned report schema (see :func:`report_schema`)."""

from __future__ import annotations

import json
from typing import Any

from es_doctor.findings import REPORT_SCHEMA_VERSION, Report


def as_dict(report: Report) -> dict[str, Any]:
    data = report.model_dump(mode="json", by_alias=True)
    data["status"] = report.status.value
    data["exit_code"] = int(report.exit_status())
    data["counts"] = report.counts()
    return data


def render(report: Report, detailed: bool = False) -> str:
    return json.dumps(as_dict(report), indent=2, ensure_ascii=False)


def report_schema() -> dict[str, Any]:
    """JSON Schema of ``--format json`` output (written to docs/report.schema.json)."""
    schema = Report.model_json_schema(by_alias=True, mode="serialization")
    schema["$id"] = "https://es-doctor.invalid/schemas/report-" + REPORT_SCHEMA_VERSION + ".json"
    schema["title"] = "es-doctor diagnose report"
    props = schema.setdefault("properties", {})
    props["status"] = {"type": "string", "enum": ["OK", "WARN", "CRIT", "UNKNOWN", "SKIP"],
                       "description": "worst status of all findings"}
    props["exit_code"] = {"type": "integer", "description": "0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN"}
    props["counts"] = {"type": "object", "additionalProperties": {"type": "integer"}}
    required = schema.setdefault("required", [])
    required.extend(name for name in ("schema_version", "status", "exit_code", "counts") if name not in required)
    return schema
