"""Help answered from the pages rendered at build time (``es_doctor.cli.entry``, #25): the very text the CLI
renders, never a stale one, and only for a plain help request at click's width."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from es_doctor.cli import entry
from support.cli import run_cli

PAGES = json.loads(Path(entry.PAGES_FILE).read_text(encoding="utf-8"))


def _live(argv: list[str]) -> str:
    return run_cli(*argv, in_process=True, env={"COLUMNS": "80"}).stdout


@pytest.mark.parametrize("key", sorted(PAGES["pages"]))
def test_every_page_is_what_the_cli_renders(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    argv = [*key.split(), "--help"] if key else ["--help"]
    monkeypatch.setenv("COLUMNS", "80")
    page = entry.prerendered_help(argv)
    assert page is not None and page.startswith("Usage: es-doctor")
    assert page == _live(argv)


def test_the_pages_cover_every_command_of_the_tree() -> None:
    from es_doctor.cli.main import command

    def walk(cmd: object, prefix: list[str]) -> list[str]:
        found = [" ".join(prefix)]
        for name, sub in getattr(cmd, "commands", {}).items():
            found += walk(sub, [*prefix, name])
        return found

    assert sorted(walk(command(), [])) == sorted(PAGES["pages"])


def test_a_changed_source_file_means_the_cli_renders_the_help(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A copy of the package's rendered-from files beside the pages: served while unchanged; one edited
    comment in one of them, and the page is no longer served."""
    monkeypatch.setenv("COLUMNS", "120")
    package = Path(entry.PAGES_FILE).parents[1]
    copy = tmp_path / "es_doctor"
    for name in PAGES["files"]:
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(package / name, copy / name)
    pages_file = copy / "cli" / "help_pages.json"
    shutil.copyfile(entry.PAGES_FILE, pages_file)
    assert entry.prerendered_help(["diagnose", "--help"], str(pages_file)) == PAGES["pages"]["diagnose"]
    with (copy / "cli" / "diagnose_cmd.py").open("a") as handle:
        handle.write("# edited\n")
    assert entry.prerendered_help(["diagnose", "--help"], str(pages_file)) is None
    (copy / "cli" / "diagnose_cmd.py").unlink()
    assert entry.prerendered_help(["diagnose", "--help"], str(pages_file)) is None
    pages_file.write_text("{not json")
    assert entry.prerendered_help(["--help"], str(pages_file)) is None


@pytest.mark.parametrize("argv", [
    ["-t", "lab", "diagnose", "--help"],    # a root option: the CLI reads it
    ["lab up", "--help"],                    # one word with a space is no command path
    ["diagnos", "--help"],                   # misspelt: the CLI says so
    ["diagnose", "--help", "--all"],         # more after the help flag
    ["diagnose"],                            # not a help request
    ["diagnose", "--class", "vectors", "--help"],
])
def test_only_a_plain_help_request_is_served(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    assert entry.prerendered_help(argv) is None


def test_a_narrow_terminal_or_a_completion_is_rendered_live(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "79")
    assert entry.prerendered_help(["--help"]) is None
    monkeypatch.setenv("COLUMNS", "200")
    assert entry.prerendered_help(["--help"]) == PAGES["pages"][""]
    monkeypatch.setenv("_ES_DOCTOR_COMPLETE", "complete_bash")
    assert entry.prerendered_help(["--help"]) is None


def test_the_entry_point_answers_help_without_the_cli() -> None:
    """``python -m es_doctor --help`` imports neither typer nor the command modules; a narrow terminal gets
    the CLI's own rendering (wrapped at its width)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "es_doctor", "lab", "up", "--help"],
                          capture_output=True, text=True, timeout=60, check=False, env={"COLUMNS": "100",
                                                                                        "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0 and done.stdout == PAGES["pages"]["lab up"]
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert "typer" not in imported and "es_doctor.cli.main" not in imported and "es_doctor.cli.entry" in imported
    narrow = subprocess.run([sys.executable, "-m", "es_doctor", "lab", "up", "--help"], capture_output=True,
                            text=True, timeout=60, check=False, env={"COLUMNS": "60", "PATH": "/usr/bin:/bin"})
    assert narrow.returncode == 0 and narrow.stdout != PAGES["pages"]["lab up"]
    assert narrow.stdout.startswith("Usage: es-doctor lab up") and "--start-dockerd" in narrow.stdout


def test_a_page_stdout_cannot_encode_is_left_to_the_cli() -> None:
    """``escalate --help`` names "Équipe Dev": on an ASCII stdout the page is not written (it raised
    UnicodeEncodeError); the CLI answers as it always did."""
    assert any(ord(c) > 127 for c in PAGES["pages"]["escalate"])
    env = {"PYTHONIOENCODING": "ascii", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "es_doctor", "escalate", "--help"], capture_output=True,
                          timeout=60, check=False, env=env)
    live = subprocess.run([sys.executable, "-c", "from es_doctor.cli.main import run; run()", "escalate", "--help"],
                          capture_output=True, timeout=60, check=False, env=env)
    assert done.returncode == 0 and b"Traceback" not in done.stderr
    assert done.stdout == live.stdout and b"--level" in done.stdout
