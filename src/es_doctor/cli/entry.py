"""The console entry point (``es-doctor``, ``python -m es_doctor``): a help request answered from its page
rendered at build time, every other command line handed to the CLI.

Importing typer alone costs some 70 ms of CPU, and building the command tree and rendering a help as much
again; ``es-doctor --help`` has a 100 ms budget (#25). So ``scripts/gen_reference.py`` renders every
command's help through the CLI itself (``main._main(path + ["--help"])``) into ``help_pages.json``, with
the fingerprint of every file of this package that the rendering read. A help request is answered from
that file only when all of these hold, else the CLI renders it as before:

- the command line is a command path (``diagnose``, ``lab fault add``, or none) followed by ``-h`` or
  ``--help``, and nothing else (a root option, a misspelt command: the CLI answers);
- no shell completion is asked (a ``*_COMPLETE`` variable);
- the terminal is at least 80 columns wide: click wraps help at ``min(columns, 80) - 2``, so every width
  from 80 up (and a pipe) gives the very text the pages hold; a narrower one is rendered live;
- every file the rendering read still has the content it had (a checkout edited since the pages were
  rendered gets its help from the CLI: a stale page is never shown).

``tests/unit/test_help_pages.py`` compares every page with the CLI's own rendering.
"""

# os.path, not pathlib, here: pathlib's import alone is some 5 ms of the 100 ms budget
# ruff: noqa: PTH100, PTH118, PTH120, PTH123
from __future__ import annotations

import os
import sys

PAGES_FILE = os.path.join(os.path.dirname(__file__), "help_pages.json")
#: click's help width: ``min(terminal columns, 80) - 2``; the pages were rendered at this one
PAGES_COLUMNS = 80
HELP_FLAGS = ("-h", "--help")


def columns() -> int:
    """The terminal's width as click reads it (``shutil.get_terminal_size``: ``$COLUMNS``, else the
    terminal of stdout, else 80), without importing shutil."""
    try:
        value = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        value = 0
    if value > 0:
        return value
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or PAGES_COLUMNS  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return PAGES_COLUMNS


def page_key(argv: list[str]) -> str | None:
    """The page ``argv`` asks for (``""`` the root's), or None when it is not a plain help request."""
    if not argv:
        return ""  # the root's no_args_is_help
    *path, last = argv
    if last not in HELP_FLAGS or any(not word or word.startswith("-") or not word.isprintable() or " " in word
                                     for word in path):
        return None
    return " ".join(path)


def fingerprint(files: list[str], base: str) -> str:
    """A digest of these files' contents (paths relative to ``base``, the package's directory)."""
    import hashlib

    digest = hashlib.sha256()
    for name in files:
        digest.update(name.encode() + b"\0")
        with open(os.path.join(base, name), "rb") as handle:
            digest.update(handle.read())
        digest.update(b"\0")
    return digest.hexdigest()


def prerendered_help(argv: list[str], pages_file: str = PAGES_FILE) -> str | None:
    """The page rendered at build time for this help request, when it is still the CLI's answer (see the
    module's docstring); None otherwise."""
    key = page_key(argv)
    if key is None or any(name.endswith("_COMPLETE") for name in os.environ) or columns() < PAGES_COLUMNS:
        return None
    import json

    try:
        with open(pages_file, encoding="utf-8") as handle:
            data = json.load(handle)
        page = data["pages"].get(key)
        if not isinstance(page, str):
            return None
        base = os.path.dirname(os.path.dirname(os.path.abspath(pages_file)))  # the es_doctor package
        if fingerprint(list(data["files"]), base) != data["fingerprint"]:
            return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # no pages, damaged, or a file they were rendered from is gone: the CLI answers
    return page


def _writable(page: str | None) -> str | None:
    """``page`` when stdout's encoding can hold it; else None (the CLI answers: click writes what such a
    stream cannot encode its own way)."""
    if page is None or sys.stdout is None:
        return None
    try:
        page.encode(getattr(sys.stdout, "encoding", None) or "utf-8")
    except (UnicodeEncodeError, LookupError):
        return None
    return page


def run() -> None:
    page = _writable(prerendered_help(sys.argv[1:]))
    if page is None:
        # es-doctor uses no pydantic plugin; looking for one reads every installed distribution's entry
        # points at the first model built (~15 ms of CPU). A plugin named in the variable is still honoured.
        os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
        from es_doctor.cli.main import run as cli

        cli()
        return
    try:
        sys.stdout.write(page)
        sys.stdout.flush()
    except BrokenPipeError:  # `es-doctor --help | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    sys.exit(0)
