"""``--format json``: the versioned report schema (see :func:`report_schema`)."""

from __future__ import annotations

import json
from typing import Any

from es_doctor.findings import MULTI_REPORT_SCHEMA_VERSION, REPORT_SCHEMA_VERSION, Report, exit_status_of, worst


def as_dict(report: Report) -> dict[str, Any]:
    data = report.model_dump(mode="json", by_alias=True)
    data["status"] = report.status.value
    data["exit_code"] = int(report.exit_status())
    data["counts"] = report.counts()
    # the problems cause first; which are roots; each finding's consequences (consequence_of: its root)
    data["problems"] = [f.id for f in report.problems()]
    data["root_causes"] = [f.id for f in report.roots()]
    for finding in data["findings"]:
        finding["consequences"] = report.consequences(finding["id"])
    return data


def render(report: Report, detailed: bool = False) -> str:
    return json.dumps(as_dict(report), indent=2, ensure_ascii=False)


def as_multi_dict(reports: list[Report]) -> dict[str, Any]:
    """Several targets: schema 2.2 (MULTI_REPORT_SCHEMA_VERSION), ``{"schema_version", "status", "exit_code",
    "reports": [1.3 report, …]}``."""
    status = worst([r.status for r in reports])
    return {"schema_version": MULTI_REPORT_SCHEMA_VERSION, "status": status.value,
            "exit_code": int(exit_status_of(status)), "reports": [as_dict(r) for r in reports]}


def render_many(reports: list[Report]) -> str:
    return json.dumps(as_multi_dict(reports), indent=2, ensure_ascii=False)


def multi_report_schema() -> dict[str, Any]:
    """JSON Schema of the several-targets output (written to docs/reports.schema.json)."""
    single = report_schema()
    defs = single.pop("$defs", {})
    single.pop("$id", None)
    return {
        "$id": "https://es-doctor.invalid/schemas/reports-" + MULTI_REPORT_SCHEMA_VERSION + ".json",
        "title": "es-doctor diagnose report, several targets",
        "type": "object",
        "$defs": {**defs, "Report": single},
        "properties": {
            "schema_version": {"type": "string", "const": MULTI_REPORT_SCHEMA_VERSION},
            "status": {"type": "string", "enum": ["OK", "WARN", "CRIT", "UNKNOWN", "SKIP"],
                       "description": "worst status of all targets"},
            "exit_code": {"type": "integer", "description": "of the worst status: 0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN"},
            "reports": {"type": "array", "items": {"$ref": "#/$defs/Report"},
                        "description": "one report per target, in the order asked"},
        },
        "required": ["schema_version", "status", "exit_code", "reports"],
        "additionalProperties": False,
    }


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
    props["problems"] = {"type": "array", "items": {"type": "string"},
                         "description": "ids of the findings that are not OK, causes first: the root causes by "
                                        "severity, then their consequences; the first with a fix_command is the "
                                        "cure to run first"}
    props["root_causes"] = {"type": "array", "items": {"type": "string"},
                            "description": "ids of the problems no other problem of this report causes"}
    finding = schema["$defs"]["Finding"]
    finding["properties"]["consequences"] = {
        "type": "array", "items": {"type": "string"},
        "description": "ids of the problems this finding causes (each names it in consequence_of)"}
    finding.setdefault("required", []).append("consequences")
    required = schema.setdefault("required", [])
    required.extend(name for name in ("schema_version", "status", "exit_code", "counts", "problems", "root_causes")
                    if name not in required)
    return schema
