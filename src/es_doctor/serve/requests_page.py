"""The status page's remediation section: the recent requests, and for one waiting for a person a small
approve/deny form (POST only; the token typed in it; serve refuses a form from another origin)."""

from __future__ import annotations

import datetime as dt
from html import escape
from typing import Any

#: the requests the page shows (newest first)
PAGE_LIMIT = 20


def _when(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _form(rid: str) -> str:
    fields = ('<input type="password" name="token" placeholder="serve token" autocomplete="off" required '
              'aria-label="serve token"><input name="by" placeholder="your name" maxlength="120" required '
              'aria-label="your name">')
    return "".join(f'<form class="decide" method="post" action="/requests/{escape(rid)}/{action}">{fields}'
                   f'<button type="submit">{action}</button></form>' for action in ("approve", "deny"))


def requests_section(requests: list[dict[str, Any]]) -> str:
    if not requests:
        return ""
    rows = []
    for r in requests[:PAGE_LIMIT]:
        decide = _form(r["id"]) if r["state"] == "waiting-approval" else ""
        who = f" by {escape(str(r['approved_by']))}" if r.get("approved_by") else ""
        rows.append(f'<tr data-request="{escape(r["id"])}" data-state="{escape(r["state"])}">'
                    f'<td data-label="request"><code>{escape(r["id"])}</code></td>'
                    f'<td data-label="target">{escape(r["target"])}</td>'
                    f'<td data-label="finding"><code>{escape(r["finding"])}</code></td>'
                    f'<td data-label="cure">{escape(r.get("runbook") or "-")}</td>'
                    f'<td data-label="state">{escape(r["state"])}{who} ({int(r["runs"])} run(s))</td>'
                    f'<td data-label="why">{escape(str(r["reason"])[:300])}</td>'
                    f'<td data-label="since">{_when(float(r["created"]))}</td><td>{decide}</td></tr>')
    return ('<section id="remediation"><h2>Remediation requests</h2><table class="checks"><thead><tr><th>request</th>'
            "<th>target</th><th>finding</th><th>cure</th><th>state</th><th>why</th><th>since</th><th></th></tr>"
            f'</thead><tbody>{"".join(rows)}</tbody></table></section>')
