"""The docs' reference pages are generated from the code, and current; the README is short and lists
nothing the code already says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from es_doctor.checks.registry import load_all
from es_doctor.cli.helptext import DOCS

ROOT = Path(__file__).resolve().parents[2]


def test_the_generated_reference_pages_are_current() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_reference.py"), "--check"],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_help_page_link_names_a_page_that_exists() -> None:
    for command, page in DOCS.items():
        assert (ROOT / page).is_file(), f"{command} --help links {page}, which does not exist"


def test_every_check_and_runbook_has_its_own_anchor() -> None:
    checks = (ROOT / "docs" / "reference" / "checks.md").read_text()
    for check_id in load_all():
        assert f"(check-{check_id})=" in checks, check_id
    runbooks = (ROOT / "docs" / "reference" / "runbooks.md").read_text()
    for path in sorted((ROOT / "runbooks").glob("**/*.yaml")):
        book_id = re.search(r"^id:\s*(\S+)", path.read_text(), re.M)
        assert book_id and f"(runbook-{book_id.group(1)})=" in runbooks, path.name


def test_the_readme_is_short_and_lists_no_checks_by_hand() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 180
    assert max(len(line) for line in readme.splitlines()) <= 120
    named = [check_id for check_id in load_all() if check_id in readme]
    assert len(named) <= 3, f"the README names checks the reference already lists: {named}"
