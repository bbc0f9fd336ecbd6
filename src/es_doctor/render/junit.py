"""JUnit XML: one testsuite per symptom class, one testcase per check."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from es_doctor.findings import SYMPTOM_CLASSES, Report, Status


def render(report: Report, detailed: bool = False) -> str:
    root = ET.Element("testsuites", name="es-doctor", time=f"{report.duration_ms / 1000:.3f}")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for cls in SYMPTOM_CLASSES:
        findings = [f for f in report.findings if f.check_class == cls]
        if not findings:
            continue
        suite = ET.SubElement(root, "testsuite", name=cls, timestamp=report.started_at.isoformat())
        counts = {"tests": len(findings), "failures": 0, "errors": 0, "skipped": 0}
        for finding in findings:
            case = ET.SubElement(suite, "testcase", classname=f"es-doctor.{cls}", name=finding.id,
                                 time=f"{finding.duration_ms / 1000:.3f}")
            body = "\n".join([finding.summary, *(e.render() for e in finding.evidence)]
                             + ([f"fix: {finding.fix_command()}"] if finding.fix_command() else [])
                             + ([f"escalate: {finding.escalate_command}"] if finding.escalate_command else []))
            if finding.status in (Status.WARN, Status.CRIT):
                node = ET.SubElement(case, "failure", message=finding.summary, type=finding.status.value)
                node.text = body
                counts["failures"] += 1
            elif finding.status is Status.UNKNOWN:
                node = ET.SubElement(case, "error", message=finding.summary, type="UNKNOWN")
                node.text = body
                counts["errors"] += 1
            elif finding.status is Status.SKIP:
                ET.SubElement(case, "skipped", message=finding.summary)
                counts["skipped"] += 1
            elif detailed:
                ET.SubElement(case, "system-out").text = body
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
        suite.set("time", f"{sum(f.duration_ms for f in findings) / 1000:.3f}")
    for key, value in totals.items():
        root.set(key, str(value))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")
