"""Nagios plugin output: one line, ``SERVICE STATUS: text | perfdata``.

Perfdata follows the plugin guidelines: ``'label'=value[UOM];[warn];[crit];[min];[max]``.
"""

from __future__ import annotations

import re

from es_doctor.findings import Report, Status

NAGIOS_WORD = {Status.OK: "OK", Status.SKIP: "OK", Status.WARN: "WARNING", Status.CRIT: "CRITICAL",
               Status.UNKNOWN: "UNKNOWN"}


def _label(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def render(report: Report, detailed: bool = False) -> str:
    counts = report.counts()
    problems = [f for f in report.findings if f.status in (Status.CRIT, Status.WARN, Status.UNKNOWN)]
    problems.sort(key=lambda f: -f.status.severity)
    if problems:
        text = "; ".join(f"{f.id} {f.status.value}: {f.summary}" for f in problems[:5])
        if len(problems) > 5:
            text += f"; and {len(problems) - 5} more"
    else:
        text = f"{counts['OK']} checks OK"
    text = text.replace("|", "/").replace("\n", " ")
    total = len(report.findings)
    perf = [
        f"'checks_ok'={counts['OK']};;;0;{total}",
        f"'checks_warn'={counts['WARN']};0;;0;{total}",
        f"'checks_crit'={counts['CRIT']};;0;0;{total}",
        f"'checks_unknown'={counts['UNKNOWN']};;;0;{total}",
        f"'checks_skip'={counts['SKIP']};;;0;{total}",
        f"'duration'={report.duration_ms / 1000:.3f}s;;;0;",
    ]
    for finding in report.findings:
        for item in finding.evidence:
            if isinstance(item.value, int | float) and not isinstance(item.value, bool) and item.unit in (
                    "ms", "s", "%", "B", None):
                uom = {"ms": "ms", "s": "s", "%": "%", "B": "B"}.get(item.unit or "", "")
                perf.append(f"'{_label(finding.id + '.' + item.name)}'={item.value:g}{uom};;;;")
    return f"ES-DOCTOR {NAGIOS_WORD[report.status]}: {text} | {' '.join(perf)}"
