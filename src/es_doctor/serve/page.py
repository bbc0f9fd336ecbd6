"""``/``: the status page. Server-rendered HTML, refreshed by the browser (``<meta refresh>``), styled by a
stylesheet shipped in the package (no CDN, no script). A status always reads as symbol and word, never
colour alone; every value is HTML-escaped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from html import escape
from importlib import resources

from es_doctor.findings import SYMPTOM_CLASSES, Finding, Report, Status, worst
from es_doctor.render.table import MAX_EVIDENCE, evidence_text
from es_doctor.serve.widgets import Widget
from es_doctor.units import utc_display, utc_iso


@dataclass
class TargetView:
    name: str
    report: Report | None
    since: dict[str, float]
    widgets: list[Widget]
    running: bool = False


def stylesheet() -> bytes:
    return resources.files("es_doctor.serve").joinpath("assets/style.css").read_bytes()


def _badge(status: Status | None, word: str | None = None) -> str:
    if status is None:
        return '<span class="st st-NONE">· no grade</span>'
    return f'<span class="st st-{status.value}">{status.symbol} {escape(word or status.value)}</span>'


def _when(at: float | None, now: float) -> str:
    if at is None:
        return "n/a"
    return f'<time datetime="{utc_iso(at)}">{utc_display(at)}</time> ({_ago(now - at)})'


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.1f} days ago"


def _cure(finding: Finding) -> str:
    if finding.status not in (Status.WARN, Status.CRIT, Status.UNKNOWN):
        return ""
    command = finding.next_command()  # the same command the table, JSON and Nagios print
    return f"<code>{escape(command)}</code>" if command else ""


def _widget(widget: Widget) -> str:
    if widget.key == "managers":  # the grid: one chip per manager, the down ones first, symbol and word
        chips = sorted(widget.details, key=lambda kv: (kv[1] == "up", kv[0]))
        details = '<ul class="chips">' + "".join(
            f'<li class="st-{"OK" if v == "up" else "CRIT"}">{"✓" if v == "up" else "✗"} {escape(k)}'
            f'{"" if v == "up" else " DOWN"}</li>' for k, v in chips) + "</ul>" if chips else ""
    else:
        rows = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in widget.details)
        details = f"<dl>{rows}</dl>" if rows else ""
    spark = widget.sparkline()
    trend = f'<div class="spark" aria-label="trend">{escape(spark)}</div>' if spark else ""
    grade = _badge(widget.status) if widget.status is not None else ""
    return (f'<div class="widget" data-widget="{escape(widget.key)}"><div class="title">{escape(widget.title)}</div>'
            f'<div class="value">{escape(widget.value)} {grade}</div>{trend}{details}'
            f'<div class="src">from {escape(widget.source)}</div></div>')


def _row(f: Finding, view: TargetView, now: float) -> str:
    evidence = "".join(f"<li>{escape(evidence_text(e))}</li>" for e in f.evidence[:MAX_EVIDENCE])
    return (f'<tr data-check="{escape(f.id)}" data-status="{f.status.value}">'
            f'<td data-label="status">{_badge(f.status)}</td>'
            f'<td data-label="check"><code>{escape(f.id)}</code></td>'
            f'<td data-label="summary">{escape(f.summary)}</td>'
            f'<td data-label="evidence">{"<ul>" + evidence + "</ul>" if evidence else ""}</td>'
            f'<td data-label="cure">{_cure(f)}</td>'
            f'<td data-label="since">{_when(view.since.get(f.id), now)}</td></tr>')


_HEAD = ('<table class="checks"><thead><tr><th>status</th><th>check</th><th>summary</th>'
         "<th>evidence</th><th>cure</th><th>since</th></tr></thead><tbody>")


def _problems(problems: list[Finding], view: TargetView, now: float) -> str:
    """The "Problems (n)" block: above the widgets, the cause first, each with its cure command."""
    if not problems:
        return '<div class="problems none" data-problems="0"><h3>No problems</h3></div>'
    rows = "".join(_row(f, view, now) for f in problems)
    return (f'<div class="problems" data-problems="{len(problems)}"><h3>Problems ({len(problems)})</h3>'
            f"{_HEAD}{rows}</tbody></table></div>")


def _target(view: TargetView, now: float) -> str:
    anchor = f"target-{escape(view.name)}"
    if view.report is None:
        return (f'<section id="{anchor}" data-target="{escape(view.name)}"><h2>{escape(view.name)} '
                f'{_badge(None)}</h2><p>not diagnosed yet{" (running)" if view.running else ""}</p></section>')
    report = view.report
    counts = report.counts()
    summary = ", ".join(f"{counts[s.value]} {s.value}" for s in Status if counts[s.value])
    parts = [f'<section id="{anchor}" data-target="{escape(view.name)}" data-status="{report.status.value}">',
             f"<h2>{escape(view.name)} {_badge(report.status)}</h2>",
             f'<p class="meta">{escape(summary)}; diagnosed {_when(report.started_at.timestamp(), now)} in '
             f"{report.duration_ms / 1000:.1f} s{' · running now' if view.running else ''}</p>"]
    problems = report.problems()
    parts.append(_problems(problems, view, now))
    if view.widgets:
        parts.append('<div class="widgets">' + "".join(_widget(w) for w in view.widgets) + "</div>")
    for cls in SYMPTOM_CLASSES:
        findings = [f for f in report.findings if f.check_class == cls]
        if not findings:
            continue
        cls_status = Status.SKIP if all(f.status is Status.SKIP for f in findings) else worst(
            [f.status for f in findings])
        rest = [f for f in findings if f not in problems]
        tally = ", ".join(f"{n} {s.value}" for s in Status if (n := sum(f.status is s for f in findings)))
        # the passing rows are collapsed (a click opens them); the problems are already above
        parts.append(f'<details class="cls" data-class="{escape(cls)}"><summary><h3 data-class="{escape(cls)}">'
                     f'{escape(cls)} {_badge(cls_status)}</h3> <span class="meta">{escape(tally)}</span></summary>')
        if rest:
            parts.append(_HEAD + "".join(_row(f, view, now) for f in rest) + "</tbody></table>")
        parts.append("</details>")
    parts.append("</section>")
    return "".join(parts)


def render_page(views: list[TargetView], refresh_s: int, now: float | None = None, extra: str = "") -> str:
    """The page; ``extra``: more HTML after the targets (the remediation requests)."""
    now = time.time() if now is None else now
    items = []
    for view in views:
        status = view.report.status if view.report else None
        items.append(f'<li><a href="#target-{escape(view.name)}">{escape(view.name)} {_badge(status)}</a></li>')
    body = "".join(_target(v, now) for v in views) or "<p>no target configured</p>"
    stamp = utc_display(now)
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta http-equiv="refresh" content="{int(refresh_s)}">'
            '<link rel="icon" href="data:,"><link rel="stylesheet" href="/assets/style.css">'
            "<title>es-doctor: status</title></head><body>"
            f'<header><h1>es-doctor status</h1><p class="meta">page made {stamp}, refreshes every {int(refresh_s)} s; '
            "changes nothing but what an approval asks</p>"
            f'<ul class="targets">{"".join(items)}</ul></header><main>{body}{extra}</main></body></html>')
