"""The documentation site, built strictly by Sphinx and opened in a real headless Chromium.

The site must work offline from its files: the home page shows the navigation, a reference page its
sidebar and a check's own anchor, and the search page finds a check id (Sphinx's search runs in the
browser, from ``searchindex.js``)."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    build = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-q", "-b", "html",
                            str(ROOT / "docs"), str(out)], capture_output=True, text=True, timeout=600, check=False)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return out


def _dom(url: str, profile: Path) -> str:
    result = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                             "--disable-background-networking", "--disable-component-update", "--disable-sync",
                             f"--user-data-dir={profile}", "--disable-extensions", "--window-size=1280,900",
                             "--virtual-time-budget=5000", "--dump-dom", url],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _text(dom: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", dom))


def test_the_home_page_shows_the_navigation_to_every_section(site: Path, tmp_path: Path) -> None:
    dom = _dom((site / "index.html").as_uri(), tmp_path / "p")
    nav = re.search(r'<div class="sidebar-tree">(.*?)</div>\s*</div>', dom, re.S)
    assert nav, "no navigation sidebar rendered"
    links = set(re.findall(r'href="([^"#]+)', nav.group(1)))
    for page in ("howto/startup.html", "howto/emergencies.html", "integrations/alertmanager.html",
                 "reference/checks.html", "reference/cli.html", "reference/config.html", "security.html",
                 "internals/architecture.html", "measurements.html"):
        assert page in links, f"{page} missing from the navigation: {sorted(links)}"
    # two clicks from home to a symptom's cure: the symptom table links every how-to page
    assert 'href="howto/startup.html"' in dom.split('class="sidebar-tree"')[0] or "howto/startup.html" in dom


def test_a_reference_page_has_its_sidebar_and_an_anchor_per_check(site: Path, tmp_path: Path) -> None:
    dom = _dom((site / "reference" / "checks.html").as_uri(), tmp_path / "p")
    assert 'class="sidebar-tree"' in dom
    assert 'id="check-startup-port-owner"' in dom
    assert "startup.port-owner" in _text(dom)


def test_search_finds_a_check_offline(site: Path, tmp_path: Path) -> None:
    dom = _dom((site / "search.html").as_uri() + "?q=port-owner", tmp_path / "p")
    results = re.search(r'<ul[^>]*class="search"[^>]*>(.*?)</ul>', dom, re.S)
    assert results, "the search ran no query (no result list): " + _text(dom)[-1500:]
    assert "checks.html" in results.group(1), _text(results.group(1))[:1500]
