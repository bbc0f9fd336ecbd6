"""What a terminal gets and a pipe does not: colours (rich, which honours ``NO_COLOR``) and a spinner.

Output to a pipe, a file or a program (``--format json``, cron, CI) stays plain text, byte for byte the
same as before: no escape sequence, no spinner frame, no cleared screen.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TextIO

import typer

if TYPE_CHECKING:
    from rich.console import Console


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (stdout by default) is a terminal a person reads."""
    stream = stream or sys.stdout
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or odd stream
        return False


def terminal_console(stream: TextIO | None = None) -> Console:
    """A rich console on ``stream`` (stdout): colours unless ``NO_COLOR`` is set (rich reads it), markup off
    for foreign text, and the status words of es-doctor's lines highlighted."""
    from rich.console import Console
    from rich.highlighter import RegexHighlighter
    from rich.theme import Theme

    class StatusWords(RegexHighlighter):
        base_style = "esd."
        highlights = [  # noqa: RUF012 - rich's own API: a class attribute
            r"(?P<good>✓|(?<!NOT )\bFIXED\b|\bDONE\b|\bOK\b|\bsent\b|\bresolved\b)",
            r"(?P<bad>✗|\bNOT FIXED\b|\bFAILED\b|\bREFUSED\b|\bCRIT\w*|\bPROBLEMS\b|\bDECLINED\b|\binterrupted\b)",
            r"(?P<warn>\bROLLED BACK\b|\bWARN\w*|\bON\b|\bdestructive\b)",
            r"(?P<cmd>es-doctor [a-z][\w-]*(?: [^\s;,)]+)*)",
        ]

    theme = Theme({"esd.good": "green", "esd.bad": "bold red", "esd.warn": "yellow", "esd.cmd": "bold"})
    return Console(file=stream or sys.stdout, highlighter=StatusWords(), theme=theme, soft_wrap=True)


def line_printer(err: bool = False) -> Callable[[str], None]:
    """``echo`` for es-doctor's line output (plans, steps, verdicts): highlighted on a terminal, plain in a
    pipe. The text is never read as rich markup (server answers may hold brackets)."""
    stream = sys.stderr if err else sys.stdout
    if not is_terminal(stream):
        return lambda text: typer.echo(text, err=err)
    console = terminal_console(stream)
    return lambda text: console.print(text, markup=False, emoji=False)


@contextmanager
def working(message: str, enabled: bool | None = None) -> Iterator[None]:
    """A spinner with ``message`` while a long step runs, on a terminal only (``enabled`` None: stdout is a
    terminal); gone without a trace when the step ends, so the output that follows is unchanged."""
    if enabled is None:
        enabled = is_terminal()
    if not enabled:
        yield
        return
    console = terminal_console()
    with console.status(message, spinner="dots"):
        yield
