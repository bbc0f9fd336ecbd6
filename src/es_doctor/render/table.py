"""The human report: the problems first, each with its one cure command, then the rest by class.

Like ``flutter doctor`` (✓ ! ✗ ?), but a CRIT never scrolls away: the report opens with "Problems (n)",
in the order :meth:`Report.problems` gives (the cause before its consequences), each with its evidence in
words and units and the command that cures it. The other rows follow by class; on a terminal they are
collapsed to one line per class unless ``--all`` (or ``-v``) asks for every row. The closing line names
the problems.
"""

from __future__ import annotations

import io

from rich.console import Console
from rich.markup import escape

from es_doctor.findings import SYMPTOM_CLASSES, Evidence, Finding, Report, Status, words, worst
from es_doctor.units import format_value

STYLE = {
    Status.OK: "green",
    Status.WARN: "yellow",
    Status.CRIT: "red",
    Status.UNKNOWN: "magenta",
    Status.SKIP: "dim",
}
#: at most this many evidence lines under a problem, each at most this long (a log line is not evidence)
MAX_EVIDENCE, MAX_EVIDENCE_CHARS = 6, 160


def evidence_text(item: Evidence) -> str:
    """One piece of evidence in words and units: ``memory: 230 MiB (threshold > 85 %)``, ``p95: 48 ms``."""
    if isinstance(item.value, int | float) and not isinstance(item.value, bool):
        value = format_value(item.value, item.unit)
    elif isinstance(item.value, str) and item.value.lstrip().startswith("{"):
        value = log_line_words(item.value)
    elif (isinstance(item.value, list) and item.value and all(isinstance(v, str) for v in item.value)
          and item.value[-1].lstrip().startswith("{")):  # log lines, oldest first: the latest, in words
        earlier = len(item.value) - 1
        value = log_line_words(item.value[-1]) + (f" (and {earlier} earlier)" if earlier else "")
    else:
        value = words(item.value) + (f" {item.unit}" if item.unit and item.value is not None else "")
    text = f"{item.name}: {value}"
    if item.threshold:
        text += f" (threshold {item.threshold})"
    text = " ".join(text.split())  # a multi-line value (a log line, a stack) on one line
    return text if len(text) <= MAX_EVIDENCE_CHARS else text[:MAX_EVIDENCE_CHARS - 1] + "…"


def log_line_words(text: str) -> str:
    """A JSON log line as a person reads it: ``04:02:15 WARN http: SLOW request: POST /api/v1/tasks (612 ms)``
    (the line itself when it is not one)."""
    import json
    import re

    try:
        data = json.loads(text)
    except ValueError:  # a line cut short: its fields, as far as they go
        data = dict(re.findall(r'"(timestamp|level|component|message)"\s*:\s*"((?:[^"\\]|\\.)*)', text))
    if not isinstance(data, dict) or "message" not in data:
        return text
    stamp = str(data.get("timestamp") or "")
    clock = stamp[11:19] if len(stamp) >= 19 and stamp[10] == "T" else stamp
    head = " ".join(str(part) for part in (clock, data.get("level"), data.get("component")) if part)
    words_ = f"{head}: {data['message']}" if head else str(data["message"])
    if data.get("error"):
        words_ += f" (error: {data['error']})"
    if isinstance(data.get("duration_ms"), int | float):
        words_ += f" ({format_value(data['duration_ms'], 'ms')})"
    return words_


def cure_line(finding: Finding) -> str | None:
    """The one command that cures ``finding`` (its runbook), else the escalation that takes it on."""
    command = finding.fix_command()
    if command:
        return f"[bold]fix:[/] {escape(command)}"
    if finding.escalate_command:  # complete, for the finding's target (es_doctor.prescribe)
        return f"[bold]no runbook cures this here; escalate:[/] {escape(finding.escalate_command)}"
    return None


def _row(finding: Finding, evidence: bool) -> list[str]:
    style = STYLE[finding.status]
    lines = [f"    [{style}]{finding.status.symbol}[/] {escape(finding.summary)} [dim]({finding.id})[/]"]
    if evidence:
        shown = finding.evidence[:MAX_EVIDENCE]
        lines.extend(f"        [dim]•[/] {escape(evidence_text(item))}" for item in shown)
        if len(finding.evidence) > MAX_EVIDENCE:
            lines.append(f"        [dim]• … {len(finding.evidence) - MAX_EVIDENCE} more (--format json)[/]")
    return lines


def render(report: Report, detailed: bool = False, collapsed: bool = False) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=False, width=120, no_color=True, highlight=False)
    for line in _lines(report, detailed, collapsed):
        console.print(line, highlight=False, soft_wrap=True)
    return buffer.getvalue().rstrip("\n")


def render_rich(console: Console, report: Report, detailed: bool = False, collapsed: bool = True) -> None:
    """Print with colours to a real terminal (the passing rows collapsed unless ``collapsed`` is False)."""
    for line in _lines(report, detailed, collapsed):
        console.print(line, highlight=False, soft_wrap=True)


def _lines(report: Report, detailed: bool, collapsed: bool) -> list[str]:
    lines = [f"es-doctor diagnose: target [bold]{escape(report.target)}[/]"]
    problems = report.problems()
    if problems:
        lines.append(f"[bold]Problems ({len(problems)}):[/]")
        for finding in problems:
            lines.extend(_row(finding, evidence=True))
            cure = cure_line(finding)
            if cure:
                lines.append(f"        {cure}")
        lines.append("")
    rest = [f for f in report.findings if f not in problems]
    classes = [c for c in SYMPTOM_CLASSES if any(f.check_class == c for f in report.findings)]
    expanded = detailed or not collapsed
    for cls in classes:
        findings = [f for f in report.findings if f.check_class == cls]
        others = [f for f in rest if f.check_class == cls]
        status = worst([f.status for f in findings])
        if all(f.status is Status.SKIP for f in findings):
            status = Status.SKIP
        style = STYLE[status]
        counts = _counted(findings)
        lines.append(f"[{style}]\\[{status.symbol}][/] [bold]{cls}[/] [dim]{counts}[/]")
        if expanded:
            for finding in others:
                lines.extend(_row(finding, evidence=detailed))
    if not expanded and rest:
        lines.append(f"[dim]{len(rest)} passing or skipped rows collapsed: --all (or -v) shows every row[/]")
    lines.append(_closing(report, problems))
    return lines


def _counted(findings: list[Finding]) -> str:
    tally = {s: sum(1 for f in findings if f.status is s) for s in Status}
    return ", ".join(f"{n} {s.value}" for s, n in tally.items() if n)


def _closing(report: Report, problems: list[Finding]) -> str:
    """``✗ 2 problems: performance.latency (CRIT), vectors.collection (CRIT). 30 OK in 1.4 s (exit 2)``."""
    counts = report.counts()
    fine = ", ".join(f"{counts[s.value]} {s.value}" for s in (Status.OK, Status.SKIP) if counts[s.value])
    took = f"in {report.duration_ms / 1000:.1f} s (exit {int(report.exit_status())})"
    style = STYLE[report.status]
    if not problems:
        return f"[{style}]•[/] No problems: {fine or 'nothing checked'} {took}"
    named = ", ".join(f"{escape(f.id)} ({f.status.value})" for f in problems)
    noun = "problem" if len(problems) == 1 else "problems"
    return f"[{style}]•[/] {len(problems)} {noun}: {named}. {fine + ' ' if fine else ''}{took}"
