"""``es-doctor logs``: read, filter, group (``--patterns``) or follow (``--follow``) the service's JSON logs."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO

import typer

from es_doctor.cli.common import ConfigOpt, TargetOpt, load
from es_doctor.errors import ExitStatus, UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from es_doctor.config import Target
    from es_doctor.logview import Entry, Pattern, Query, Scan
    from es_doctor.probes.session import ProbeSession


class Source(StrEnum):
    auto = "auto"
    file = "file"
    docker = "docker"


class Format(StrEnum):
    table = "table"
    json = "json"


class Level(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARN = "WARN"
    ERROR = "ERROR"
    FATAL = "FATAL"


LEVEL_STYLES = {"FATAL": "bold white on red", "PANIC": "bold white on red", "ERROR": "bold red", "WARN": "yellow",
                "INFO": "green", "DEBUG": "dim"}
DEFAULT_LIMIT = {"list": 100, "patterns": 30, "follow": 10}


def logs(
    ctx: typer.Context,
    level: Annotated[Level | None, typer.Option("--level", "-l", case_sensitive=False, show_default=False,
                                                metavar="[debug|info|warn|error|fatal]",
                                                help="At least this level (ERROR includes FATAL). "
                                                     "--patterns: ERROR unless given.")] = None,
    component: Annotated[list[str] | None, typer.Option("--component", "-C", show_default=False, metavar="COMPONENT",
                                                        help="Only this component (repeatable, any case).")] = None,
    since: Annotated[str | None, typer.Option("--since", "-s", show_default=False, metavar="WHEN",
                                              help="From this long ago (30s, 15m, 2h, 1d, 1h30m), an ISO time, "
                                                   "or 'all'. Default: the newest lines; --patterns: 1h.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", "-n", min=1, max=100_000, show_default=False, metavar="N",
                                              help="At most N lines (newest), N patterns (most frequent), or N "
                                                   "lines before --follow starts [100, 30, 10].")] = None,
    patterns: Annotated[bool, typer.Option("--patterns",
                                           help="Group errors by component and normalised message.")] = False,
    follow: Annotated[bool, typer.Option("--follow", "-F",
                                         help="Keep printing new lines (tail -F: survives rotation); Ctrl-C stops.")
                      ] = False,
    source: Annotated[Source, typer.Option("--source", case_sensitive=False, metavar="[auto|file|docker]",
                                           help="file: the target's log_dir; docker: docker logs of the service "
                                                "container; auto: the file if it exists, else docker.")
                      ] = Source.auto,
    file: Annotated[str | None, typer.Option("--file", show_default=False, metavar="FILE",
                                             help="Another file: a name in log_dir (email-sender-error.log) or a "
                                                  "path.")] = None,
    raw: Annotated[bool, typer.Option("--raw", help="Also show lines that are not JSON records (or are cut).")
               ] = False,
    fmt: Annotated[Format, typer.Option("--format", "-f", case_sensitive=False, metavar="[table|json]",
                                        help="table (coloured on a terminal), or json (JSON lines with --follow).")
                   ] = Format.table,
    config: ConfigOpt = None,
    target: TargetOpt = None,
) -> int:
    """Read the service's JSON logs: filter, group errors into patterns, or follow them.

    \b
    Examples:
      es-doctor logs --level ERROR --since 15m           # jq 'select(.level == "ERROR")'
      es-doctor logs --since 1h --patterns               # grep ERROR | awk | sort | uniq -c | sort -nr
      es-doctor logs --patterns --level WARN -C http     # warnings too, one component
      es-doctor logs -F --level WARN                     # tail -F | grep --color 'ERROR\\|WARN'
      es-doctor logs --source docker --since 10m         # docker logs email-sender-go
      es-doctor logs --file email-sender-error.log -n 20
      es-doctor logs -F -f json | jq .message              # JSON lines for scripts
    """
    from es_doctor.logview import LEVEL_RANK, PATTERNS_DEFAULT_SINCE, Query, SinceError, parse_since
    from es_doctor.secrets import secret_values

    if patterns and follow:
        raise UsageError("--patterns and --follow do not go together (patterns need a window: --since)")
    if patterns and raw:
        raise UsageError("--raw shows lines; --patterns groups JSON records (drop one)")
    if file is not None and source is Source.docker:
        raise UsageError("--file names a log file; it does not apply to --source docker")
    mode = "patterns" if patterns else "follow" if follow else "list"
    since_text = since if since is not None else PATTERNS_DEFAULT_SINCE if patterns else None
    try:
        since_at = parse_since(since_text) if since_text is not None else None
    except SinceError as exc:
        raise UsageError(str(exc)) from None
    minimum = LEVEL_RANK[level.value] if level is not None else LEVEL_RANK["ERROR"] if patterns else 0
    query = Query(minimum, frozenset(c.lower() for c in component or []), since_at, raw)
    count = limit or DEFAULT_LIMIT[mode]

    loaded = load(ctx, config, target)
    secrets = secret_values(loaded.target)
    kind, where = _resolve(loaded.target, source, file)
    window = f"since {since_text}" if since_text else "(newest first)"
    out = sys.stdout
    from es_doctor.probes.session import ProbeSession

    # the engine's logs are read through a probe session (Docker's calls bounded by 10 s), closed on the way out
    with ProbeSession(loaded.target, timeout=5.0, docker_timeout=10.0) as session:
        try:
            if follow:
                return _follow(session, kind, where, query, count, fmt, secrets, out)
            scan = _scan(session, kind, where, query, count, patterns)
            if fmt is Format.json:
                _json_report(loaded.target_name, kind, where, since_text, query, scan, secrets, out)
            elif patterns:
                _patterns_table(scan, count, secrets, out)
            else:
                _lines(scan.entries, secrets, out)
        except BrokenPipeError:  # `es-doctor logs | head`: the reader has what it wanted
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
            return int(ExitStatus.OK)
    from es_doctor.logview import summary

    shown = (min(len(scan.patterns.groups), count) if scan.patterns is not None else len(scan.entries))
    label = f"{kind} {where} {window}"
    note = summary(scan.counts, shown, label, raw)
    if scan.patterns is not None:
        note += f"; {scan.counts.matched} matching record(s) in {len(scan.patterns.groups)} pattern(s)"
        if scan.patterns.overflow:
            note += f" (+{scan.patterns.overflow} line(s) beyond {len(scan.patterns.groups)} patterns)"
    for extra in scan.notes:
        note += f"; {extra}"
    typer.echo(note, err=True)
    return int(ExitStatus.OK)


def _resolve(target: Target, source: Source, file: str | None) -> tuple[str, str]:
    """(``file``, path) or (``docker``, container)."""
    log_dir = Path(target.service.log_dir).expanduser()
    path = log_dir / target.service.main_log
    if file is not None:
        given = Path(file).expanduser()
        path = given if given.is_absolute() or "/" in file else log_dir / file
    docker_ok, why = target.is_present("docker")
    if source is Source.docker or (source is Source.auto and file is None and not path.exists() and docker_ok):
        if not docker_ok:
            raise UsageError(f"--source docker: this target has no Docker ({why})")
        return "docker", target.service.container
    return "file", str(path)


def _scan(session: ProbeSession, kind: str, where: str, query: Query, count: int, patterns: bool) -> Scan:
    from es_doctor.logview import scan_docker, scan_file

    if kind == "docker":
        return scan_docker(session.docker(), where, query, count, patterns)
    return scan_file(Path(where), query, count, patterns)


# --------------------------------------------------------------------------- output
def _console(out: TextIO) -> Console | None:
    """A rich console when ``out`` is a terminal, else None: plain text. ``NO_COLOR`` (any value) is
    plain text too: rich would drop the colours but keep bold and dim."""
    if not out.isatty() or os.environ.get("NO_COLOR"):
        return None
    from rich.console import Console

    return Console(file=out, highlight=False, markup=False, emoji=False, soft_wrap=True)


def _print_entry(entry: Entry, secrets: list[str], out: TextIO, console: Console | None) -> None:
    from es_doctor.logview import entry_parts

    parts = entry_parts(entry, secrets)
    if console is None:
        out.write("".join(text for text, _role in parts) + "\n")
        return
    from rich.text import Text

    line = Text()
    for text, role in parts:
        style = LEVEL_STYLES.get(role[6:], "") if role.startswith("level:") else role
        line.append(text, style=style or None)
    console.print(line)


def _lines(entries: Any, secrets: list[str], out: TextIO) -> None:
    console = _console(out)
    for entry in entries:
        _print_entry(entry, secrets, out, console)
    out.flush()


def _patterns_table(scan: Scan, count: int, secrets: list[str], out: TextIO) -> None:
    from es_doctor.logview import iso
    from es_doctor.secrets import clean

    assert scan.patterns is not None
    rows: list[Pattern] = scan.patterns.rows()[:count]
    console = _console(out)
    if console is None:
        for p in rows:
            out.write(f"{p.count:>7}  {p.level:<5}  {clean(p.component, secrets)}  {clean(p.pattern, secrets)}  "
                      f"first={iso(p.first) or '-'}  last={iso(p.last) or '-'}  "
                      f"request_id={clean(p.request_id, secrets) or '-'}\n")
        out.flush()
        return
    from rich.table import Table

    table = Table(box=None, header_style="bold", pad_edge=False)
    for name, justify in (("COUNT", "right"), ("LEVEL", "left"), ("COMPONENT", "left"), ("PATTERN", "left"),
                          ("FIRST SEEN", "left"), ("LAST SEEN", "left"), ("SAMPLE REQUEST", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for p in rows:
        table.add_row(str(p.count), p.level, clean(p.component, secrets), clean(p.pattern, secrets),
                      iso(p.first)[:19] or "-", iso(p.last)[:19] or "-", clean(p.request_id, secrets) or "-",
                      style=LEVEL_STYLES.get(p.level) if p.level in ("FATAL", "PANIC") else None)
    console.print(table)


def _json_report(target_name: str, kind: str, where: str, since_text: str | None, query: Query, scan: Scan,
                 secrets: list[str], out: TextIO) -> None:
    from es_doctor.logview import entry_dict, iso
    from es_doctor.secrets import clean

    report: dict[str, Any] = {
        "schema": "es-doctor.logs/1", "target": target_name,
        "source": {"type": kind, "path" if kind == "file" else "container": where},
        "since": iso(query.since) or None, "since_arg": since_text,
        "counts": vars(scan.counts), "notes": scan.notes,
    }
    if scan.patterns is not None:
        report["patterns"] = [{k: clean(v, secrets) if isinstance(v, str) else v for k, v in p.as_dict().items()}
                              for p in scan.patterns.rows()]
        report["patterns_overflow"] = scan.patterns.overflow
    else:
        report["lines"] = [entry_dict(e, secrets) for e in scan.entries]
    out.write(json.dumps(report, ensure_ascii=False) + "\n")
    out.flush()


def _follow(session: ProbeSession, kind: str, where: str, query: Query, backlog: int, fmt: Format, secrets: list[str],
            out: TextIO) -> int:
    """Print matching entries as they come; Ctrl-C ends it quietly (exit 130)."""
    from es_doctor.logview import entry_dict, follow_docker, follow_path
    from es_doctor.probes.logs import LogReadError, Notice

    console = None if fmt is Format.json else _console(out)
    if kind == "docker":
        items = follow_docker(session.docker(), where, query.since)
    else:
        items = follow_path(Path(where), query.since, query, backlog)
    typer.echo(f"following {kind} {where} (Ctrl-C stops)", err=True)
    try:
        for item in items:
            if isinstance(item, Notice):
                typer.echo(f"es-doctor logs: {item.text}", err=True)
                continue
            if not query.in_window(item) or not query.wants(item):
                continue
            if fmt is Format.json:
                out.write(json.dumps(entry_dict(item, secrets), ensure_ascii=False) + "\n")
            else:
                _print_entry(item, secrets, out, console)
            out.flush()
    except KeyboardInterrupt:
        with contextlib.suppress(OSError, ValueError):
            out.flush()
        return int(ExitStatus.INTERRUPTED)
    except LogReadError as exc:
        from es_doctor.errors import UnavailableError

        raise UnavailableError(str(exc)) from None
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()
    return int(ExitStatus.OK)
