"""The human report, like ``flutter doctor``: grouped by class, ✓ ! ✗ ?, a hint under each problem."""

from __future__ import annotations

import io

from rich.console import Console
from rich.markup import escape

from es_doctor.findings import SYMPTOM_CLASSES, Finding, Report, Status, worst

STYLE = {
    Status.OK: "green",
    Status.WARN: "yellow",
    Status.CRIT: "red",
    Status.UNKNOWN: "magenta",
    Status.SKIP: "dim",
}


def _finding_lines(finding: Finding, detailed: bool) -> list[str]:
    style = STYLE[finding.status]
    lines = [f"    [{style}]{finding.status.symbol}[/] {escape(finding.summary)} [dim]({finding.id})[/]"]
    problem = finding.status in (Status.WARN, Status.CRIT, Status.UNKNOWN)
    if problem or detailed:
        lines.extend(f"        [dim]•[/] {escape(item.render())}" for item in finding.evidence)
    command = finding.fix_command() if problem else None
    if command:
        lines.append(f"        [bold]fix:[/] {escape(command)}")
    elif problem and finding.escalate_command:
        lines.append(f"        [bold]no runbook cures this here:[/] {escape(finding.escalate_command)}")
    return lines


def render(report: Report, detailed: bool = False) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=False, width=120, no_color=True, highlight=False)
    return _render_to(console, buffer, report, detailed)


def render_rich(console: Console, report: Report, detailed: bool = False) -> None:
    """Print with colours to a real terminal."""
    for line in _lines(report, detailed):
        console.print(line, highlight=False, soft_wrap=True)


def _render_to(console: Console, buffer: io.StringIO, report: Report, detailed: bool) -> str:
    for line in _lines(report, detailed):
        console.print(line, highlight=False, soft_wrap=True)
    return buffer.getvalue().rstrip("\n")


def _lines(report: Report, detailed: bool) -> list[str]:
    lines = [f"es-doctor diagnose: target [bold]{escape(report.target)}[/]"]
    classes = [c for c in SYMPTOM_CLASSES if any(f.check_class == c for f in report.findings)]
    for cls in classes:
        findings = [f for f in report.findings if f.check_class == cls]
        status = worst([f.status for f in findings])
        if all(f.status is Status.SKIP for f in findings):
            status = Status.SKIP
        style = STYLE[status]
        lines.append(f"[{style}]\\[{status.symbol}][/] [bold]{cls}[/]")
        for finding in findings:
            lines.extend(_finding_lines(finding, detailed))
    counts = report.counts()
    parts = [f"{counts[s.value]} {s.value}" for s in Status if counts[s.value]]
    problems = counts["WARN"] + counts["CRIT"] + counts["UNKNOWN"]
    verdict = "No issues found!" if problems == 0 else f"{problems} issue{'' if problems == 1 else 's'} found."
    lines.append(f"[{STYLE[report.status]}]•[/] {verdict} {', '.join(parts)} in {report.duration_ms / 1000:.1f}s"
                 f" (exit {int(report.exit_status())})")
    return lines
