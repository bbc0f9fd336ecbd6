"""Nagios plugin output (the Monitoring Plugins Development Guidelines, read by Nagios, Icinga, Naemon):

    ES-DOCTOR CRITICAL: <what is wrong, short> | <perfdata>
    CRIT startup.api-port: <summary>            ← long text: one line per finding that is not OK
    WARN performance.latency: <summary>

Perfdata is ``'label'=value[UOM];[warn];[crit];[min];[max]``: a label of lower-case words joined by ``.``
and ``_`` (``'performance.memory.usage'``), a plain decimal value (never ``5.9e+07``), a unit the guidelines
know (``s ms % B``, none for counts), and the thresholds, minimum and maximum where the evidence says them.
"""

from __future__ import annotations

import math
import re

from es_doctor.findings import Evidence, Finding, Report, Status

NAGIOS_WORD = {Status.OK: "OK", Status.SKIP: "OK", Status.WARN: "WARNING", Status.CRIT: "CRITICAL",
               Status.UNKNOWN: "UNKNOWN"}
#: evidence units that are perfdata units (the guidelines': s, ms, us, %, B, KB, MB, TB, c)
UNITS = {"ms": "ms", "s": "s", "%": "%", "B": "B"}
#: numbers that name something rather than measure it: no perfdata
IDENTIFIERS = frozenset({"port", "pid"})
#: at most this many problems on the first line; every one is in the long text
FIRST_LINE_PROBLEMS = 3


def _label(*parts: str) -> str:
    """``performance.memory`` + ``/health`` → ``performance.memory.health``: lower-case words, no quote or ``=``."""
    words = [re.sub(r"[^a-z0-9.-]+", "_", part.lower()).strip("_.") for part in parts]
    return ".".join(w for w in words if w)


def number(value: float) -> str:
    """A perfdata number: plain decimal (``59187200``, ``0.125``), never exponent form."""
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def _thresholds(item: Evidence) -> tuple[str, str]:
    """The WARN and CRIT thresholds of an evidence item as perfdata ranges: ``> 100 ms WARN`` is ``100``
    (alert above), ``WARN < 99.9`` (lower is worse, the uptime) is ``99.9:`` (alert below)."""
    found = {}
    text = item.threshold or ""
    value = r"(-?[0-9]+(?:\.[0-9]+)?)"
    for level in ("WARN", "CRIT"):
        above = re.search(rf">\s*{value}\s*[^\s,;]*\s*{level}\b", text) or re.search(rf"\b{level}\s*>\s*{value}", text)
        below = re.search(rf"<\s*{value}\s*[^\s,;]*\s*{level}\b", text) or re.search(rf"\b{level}\s*<\s*{value}", text)
        if above:
            found[level] = number(float(above.group(1)))
        elif below:
            found[level] = number(float(below.group(1))) + ":"
    return found.get("WARN", ""), found.get("CRIT", "")


def _measured(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def perfdata(report: Report) -> list[str]:
    counts = report.counts()
    total = len(report.findings)
    perf = [
        f"'checks_ok'={counts['OK']};;;0;{total}",
        f"'checks_warn'={counts['WARN']};0;;0;{total}",
        f"'checks_crit'={counts['CRIT']};;0;0;{total}",
        f"'checks_unknown'={counts['UNKNOWN']};;;0;{total}",
        f"'checks_skip'={counts['SKIP']};;;0;{total}",
        f"'duration'={number(report.duration_ms / 1000)}s;;;0;",
    ]
    seen: set[str] = set()
    for finding in report.findings:
        perf.extend(_finding_perfdata(finding, seen))
    return perf


def _finding_perfdata(finding: Finding, seen: set[str]) -> list[str]:
    items = {e.name: e for e in finding.evidence if _measured(e.value) and (e.unit is None or e.unit in UNITS)
             and e.name not in IDENTIFIERS}
    limit = items.get("limit")
    out = []
    for name, item in items.items():
        label = _label(finding.id, name)
        if not label or label in seen:
            continue
        seen.add(label)
        unit = UNITS.get(item.unit or "", "")
        warn, crit = _thresholds(item)
        low = "0" if unit or float(item.value) >= 0 else ""
        high = "100" if unit == "%" else ""
        if name == "usage" and limit is not None and limit.unit == item.unit:
            high = number(limit.value)  # memory usage against its limit
        out.append(f"'{label}'={number(item.value)}{unit};{warn};{crit};{low};{high}")
    return out


def _text(finding: Finding) -> str:
    return " ".join(finding.summary.replace("|", "/").split())


def problems(report: Report) -> list[Finding]:
    """The findings that are not OK (SKIP is not a problem), causes first (:meth:`Report.problems`): with
    the service down, ``startup.api-port`` leads, not the metrics endpoint it takes down with it."""
    return report.problems()


def first_line(report: Report) -> str:
    """``ES-DOCTOR WORD: text | perfdata`` (the status line every monitoring system reads)."""
    found = problems(report)
    if found:
        text = "; ".join(f"{f.id} {f.status.value}: {_text(f)}" for f in found[:FIRST_LINE_PROBLEMS])
        if len(found) > FIRST_LINE_PROBLEMS:
            text += f"; and {len(found) - FIRST_LINE_PROBLEMS} more"
    else:
        ok = report.counts()["OK"]
        text = f"{ok} check{'' if ok == 1 else 's'} OK"
    return f"ES-DOCTOR {NAGIOS_WORD[report.status]}: {text} | {' '.join(perfdata(report))}"


def long_text(report: Report, prefix: str = "") -> list[str]:
    """One line per finding that is not OK: its status, id, summary and the command that cures it."""
    lines = []
    for finding in problems(report):
        line = f"{prefix}{finding.status.value} {finding.id}: {_text(finding)}"
        if finding.consequence_of:
            line += f" [consequence of {finding.consequence_of}]"
        command = finding.fix_command()
        if command:
            line += f" (fix: {command})"
        elif finding.escalate_command:
            line += f" (escalate: {finding.escalate_command})"
        lines.append(line)
    return lines


def render(report: Report, detailed: bool = False) -> str:
    return "\n".join([first_line(report), *long_text(report)])


def render_many(reports: list[Report]) -> str:
    """Several targets: each target's status line, then the long text of all (each line names its target)."""
    firsts = [f"{r.target}: {first_line(r)}" for r in reports]
    return "\n".join([*firsts, *(line for r in reports for line in long_text(r, f"{r.target}: "))])
