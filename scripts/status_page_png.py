#!/usr/bin/env python3
"""Render docs/status-page.png: es-doctor serve's status page for one diagnosis, in headless Chromium.

    python scripts/status_page_png.py -t lab        # a real diagnosis of a target (the lab, running)
    python scripts/status_page_png.py               # without -t: the page of the layout test's sample report

The page is rendered by serve's own code (``serve.page.render_page`` and its stylesheet); the widgets need a
running serve and are left out.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "unit"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-t", "--target", default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "status-page.png")
    args = parser.parse_args()
    from es_doctor.serve.page import TargetView, render_page, stylesheet

    if args.target:
        from es_doctor.config import load_config
        from es_doctor.runner import diagnose

        loaded = load_config(None, args.target)
        report = diagnose(loaded.target, loaded.target_name)
    else:
        from test_status_page_layout import _report

        report = _report()
    problems = {f.id: time.time() - 90 for f in report.findings if f.is_problem}
    page = render_page([TargetView(report.target, report, problems, [])], 30)
    page = page.replace('<link rel="stylesheet" href="/assets/style.css">',
                        f"<style>{stylesheet().decode('utf-8')}</style>")
    with tempfile.TemporaryDirectory() as tmp:
        html = Path(tmp) / "page.html"
        html.write_text(page, encoding="utf-8")
        subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                        "--disable-background-networking", f"--user-data-dir={tmp}/profile", "--hide-scrollbars",
                        "--window-size=1280,760", f"--screenshot={args.out}", html.as_uri()],
                       check=True, capture_output=True, timeout=120)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
