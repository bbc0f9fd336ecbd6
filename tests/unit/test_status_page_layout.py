"""The status page as a browser lays it out (#21 item 5): Debian's headless Chromium renders the page at a
desktop (1280 px) and a phone (390 px) width; a script in the rendered copy measures the layout
(getBoundingClientRect) and the test reads its numbers from the dumped DOM: the "Problems (n)" block sits
above the widgets and above the fold, with the cure commands; no manager chip is clipped by its widget;
no table header breaks inside a word ("statu s"); the passing rows are collapsed; numbers read in units.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from es_doctor.cures import Remedy
from es_doctor.findings import Evidence, Finding, Report, Status
from es_doctor.serve.page import TargetView, render_page, stylesheet
from es_doctor.serve.widgets import Widget

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

MEASURE = """
<script>
addEventListener("load", () => {
  const box = (el) => { const r = el.getBoundingClientRect(); return {top: r.top, bottom: r.bottom,
                                                                       left: r.left, right: r.right}; };
  const problems = document.querySelector(".problems");
  const widgets = document.querySelector(".widgets");
  const chips = [...document.querySelectorAll("ul.chips li")].map((li) => {
    const widget = li.closest(".widget").getBoundingClientRect(), r = li.getBoundingClientRect();
    const list = li.parentElement;
    return {text: li.textContent, inside: r.left >= widget.left - 0.5 && r.right <= widget.right + 0.5,
            clipped: li.scrollWidth > li.clientWidth + 1 || list.scrollHeight > list.clientHeight + 1};
  });
  const headers = [...document.querySelectorAll("table.checks th")].filter((th) => th.offsetParent)
    .map((th) => { const range = document.createRange(); range.selectNodeContents(th);
                   const lines = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
                   return {text: th.textContent, lines: lines.size}; });
  const openRows = [...document.querySelectorAll("details.cls tr[data-status]")]
    .filter((tr) => tr.checkVisibility()).length;
  const out = {viewport: innerHeight, problems: problems && box(problems), widgets: widgets && box(widgets),
               chips, headers, openRows, width: document.documentElement.scrollWidth, viewportWidth: innerWidth};
  document.getElementById("layout").textContent = JSON.stringify(out);
});
</script>
"""


def _report() -> Report:
    def finding(check: str, status: Status, summary: str, *evidence: Evidence, runbook: str | None = None,
                params: dict[str, str] | None = None) -> Finding:
        cure = Remedy(runbook, params or {}).command(target="lab") if runbook else None
        return Finding(id=check, check_class=check.split(".", maxsplit=1)[0], status=status, summary=summary,
                       evidence=list(evidence), runbook=runbook, runbook_params=params or {}, duration_ms=3.0,
                       cure_command=cure)

    findings = [finding(f"{cls}.check-{n}", Status.OK, f"fine number {n}", Evidence(name="value", value=1.5,
                                                                                    unit="ms"))
                for cls in ("startup", "deploy", "performance", "vectors", "inter-manager", "monitoring")
                for n in range(6)]
    findings.insert(3, finding("startup.api-port", Status.CRIT, "nothing accepts connections on 127.0.0.1:8080",
                               Evidence(name="port", value=8080), runbook="service-restart"))
    findings.insert(20, finding("performance.memory", Status.WARN, "memory at 88 % of its limit",
                                Evidence(name="usage", value=241664000, unit="bytes"),
                                Evidence(name="share", value=88.04, unit="%", threshold="> 85 %"),
                                runbook="dependency-restart", params={"component": "qdrant"}))
    return Report(tool_version="test", target="lab", started_at=dt.datetime.now(dt.UTC), duration_ms=1200.0,
                  findings=findings)


def _widgets() -> list[Widget]:
    managers = [(f"{name}-manager", "down" if n % 7 == 0 else "up")
                for n, name in enumerate(["dependency", "storage", "security", "email", "notification",
                                          "scheduler", "integration", "monitoring", "configuration",
                                          "authentication-and-authorization", "template", "queue",
                                          "analytics", "backup", "cache", "logging", "migration",
                                          "orchestration", "process", "reporting", "vector", "workflow"])]
    widgets = [Widget(f"w{n}", f"Widget number {n}", f"{n * 12.5:g} ms", status=Status.OK, trend=[1, 2, 3],
                      details=[("window", "5 min"), ("sample", "120 requests")], source="the service's /metrics")
               for n in range(7)]
    widgets.append(Widget("managers", "Managers", "19 of 22 up", status=Status.CRIT, details=managers,
                          source="GET /api/v1/managers/status"))
    return widgets


def _measure(tmp_path: Path, width: int, height: int) -> dict[str, Any]:
    page = render_page([TargetView("lab", _report(), {"startup.api-port": time.time() - 90}, _widgets())], 30)
    css = stylesheet().decode("utf-8")
    page = page.replace('<link rel="stylesheet" href="/assets/style.css">', f"<style>{css}</style>")
    page = page.replace("</body>", f'<pre id="layout"></pre>{MEASURE}</body>')
    html = tmp_path / f"page-{width}.html"
    html.write_text(page, encoding="utf-8")
    result = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                             f"--user-data-dir={tmp_path / f'profile-{width}'}", "--disable-extensions",
                             "--hide-scrollbars", f"--window-size={width},{height}", "--virtual-time-budget=3000",
                             "--dump-dom", html.as_uri()],
                            capture_output=True, text=True, timeout=90, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    found = re.search(r'<pre id="layout">(.*?)</pre>', result.stdout, re.S)
    assert found and found.group(1), result.stdout[-2000:]
    data: dict[str, Any] = json.loads(found.group(1).replace("&amp;", "&").replace("&lt;", "<")
                                      .replace("&gt;", ">").replace("&quot;", '"'))
    return data


@pytest.mark.parametrize(("width", "height"), [(1280, 800), (390, 844)], ids=["desktop", "phone"])
def test_problems_come_first_and_nothing_is_clipped_or_broken(tmp_path: Path, width: int, height: int) -> None:
    layout = _measure(tmp_path, width, height)
    problems, widgets = layout["problems"], layout["widgets"]
    assert problems is not None and widgets is not None
    assert problems["bottom"] <= widgets["top"] + 1, layout  # the problems above the widgets
    assert problems["top"] < layout["viewport"], layout  # and above the fold
    assert layout["chips"] and all(c["inside"] and not c["clipped"] for c in layout["chips"]), layout["chips"]
    assert all(h["lines"] == 1 for h in layout["headers"]), layout["headers"]  # no "statu s"
    assert layout["openRows"] == 0  # the passing rows are collapsed (a click opens a class)
    assert layout["width"] <= layout["viewportWidth"] + 1  # no sideways scrolling


def test_the_page_names_the_problems_with_their_cures_and_units() -> None:
    page = render_page([TargetView("lab", _report(), {}, _widgets())], 30)
    block = page.split('<div class="problems"', 1)[1].split("</div>", 1)[0]
    assert "Problems (2)" in block
    assert block.index("startup.api-port") < block.index("performance.memory")  # most severe first
    assert "es-doctor -t lab fix service-restart" in block
    assert "es-doctor -t lab fix dependency-restart -p component=qdrant" in block
    assert "usage: 230 MiB" in block and "share: 88 % (threshold &gt; 85 %)" in block
    assert "241664000" not in page and "e+0" not in page
    assert page.index('class="problems"') < page.index('class="widgets"')
