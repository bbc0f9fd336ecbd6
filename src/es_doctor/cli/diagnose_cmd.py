"""``es-doctor diagnose`` and ``es-doctor checks``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from es_doctor.cli import complete
from es_doctor.cli.common import ConfigOpt, TargetsOpt, duration, state
from es_doctor.cli.output import is_terminal, working
from es_doctor.errors import ExitStatus, UsageError
from es_doctor.render import Format
from es_doctor.symptoms import SYMPTOM_CLASSES

if TYPE_CHECKING:
    from es_doctor.findings import Report


def _check_names(classes: list[str], check_ids: list[str]) -> None:
    """A usage error for an unknown class or check id (runner.select picks the checks)."""
    import difflib

    from es_doctor.checks.registry import load_all

    registry = load_all()
    for cls in classes:
        if cls not in SYMPTOM_CLASSES:
            raise UsageError(f"unknown class '{cls}' (one of: {', '.join(SYMPTOM_CLASSES)})")
    for check_id in check_ids:
        if check_id not in registry:
            near = difflib.get_close_matches(check_id, list(registry), n=3)
            hint = f"; did you mean {', '.join(near)}?" if near else "; see es-doctor checks"
            raise UsageError(f"unknown check '{check_id}'{hint}")


def diagnose(
    ctx: typer.Context,
    check_class: Annotated[list[str] | None, typer.Option("--class", metavar="CLASS", autocompletion=complete.classes,
                                                          help="Only this symptom class (repeatable): "
                                                          + ", ".join(SYMPTOM_CLASSES) + ".")] = None,
    check: Annotated[list[str] | None, typer.Option("--check", metavar="CHECK", autocompletion=complete.checks,
                                                    help="Only this check id (repeatable).")] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", metavar="[table|json|junit|nagios|prometheus]",
                                        help="Output format.")] = Format.table,
    timeout: Annotated[float | None, typer.Option("--timeout", metavar="DURATION",
                                                  parser=duration("--timeout", 0.1, 3600),
                                                  help="Per-check timeout: 10s, 500ms (at least 100 ms, at most "
                                                  "1h).")] = None,
    deadline: Annotated[float | None, typer.Option("--deadline", metavar="DURATION",
                                                   parser=duration("--deadline", 0.5, 86400),
                                                   help="Overall deadline: 30s, 1m (at least 500 ms, at most "
                                                   "24h).")] = None,
    show_all: Annotated[bool, typer.Option("--all", help="Every row on a terminal too (there the passing rows "
                                           "are collapsed to one line per class; the problems always come "
                                           "first).")] = False,
    detailed: Annotated[bool, typer.Option("--detailed", "--verbose", "-v",
                                           help="Every row, with the evidence of passing checks too.")] = False,
    watch: Annotated[float | None, typer.Option("--watch", metavar="DURATION", parser=duration("--watch", 1.0),
                                                help="Re-run every DURATION (30s, 1m30s; at least 1 s) until "
                                                "Ctrl-C.")] = None,
    all_targets: Annotated[bool, typer.Option("--all-targets", help="Every target of the config file.")] = False,
    output: Annotated[Path | None, typer.Option("--output", "-o", metavar="FILE", show_default=False,
                                                help="Write the report to FILE (any format) atomically, beside it "
                                                "then renamed: node_exporter's textfile collector never reads "
                                                "half a file. Nothing on stdout; the exit code is the same.")] = None,
    config: ConfigOpt = None,
    target: TargetsOpt = None,
) -> int:
    """Run the guide's diagnostics concurrently; exit 0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN (several targets: the worst)."""
    from es_doctor.config import load_targets
    from es_doctor.findings import exit_status_of, worst
    from es_doctor.render import renderer
    from es_doctor.runner import diagnose as run
    from es_doctor.runner import run_many

    st = state(ctx)
    names = list(target or st.targets)
    loaded_all = load_targets(config or st.config_path, names, all_targets)
    _check_names(check_class or [], check or [])
    if output is not None:
        _check_output(output)
    scrapes = Path(loaded_all[0].config.state_dir).expanduser() / "scrapes"  # the metrics window's first scrape
    from es_doctor.prescribe import printed_config

    printed = printed_config(loaded_all[0])  # the -c a printed command needs (None: the default file)
    audit_log = Path(loaded_all[0].config.audit_log).expanduser()
    if len(loaded_all) > 1:
        if fmt is Format.junit:
            raise UsageError("--format junit takes one target (use json, table, nagios or prometheus)")
        while True:
            with working(f"diagnosing {len(loaded_all)} targets…", enabled=_terminal_table(fmt, output)):
                reports = run_many([(item.target_name, item.target) for item in loaded_all], check or [],
                                   check_class or [], timeout=timeout, deadline_s=deadline,
                                   scrapes_dir=scrapes, config=printed, audit_log=audit_log)
            if _terminal_table(fmt, output):  # a terminal: each report in colour, then the summary
                _print_rich(reports, detailed, clear=bool(watch), collapsed=not show_all)
            else:
                _emit(render_many(reports, fmt, detailed), output)
            if not watch:
                return int(exit_status_of(worst([r.status for r in reports])))
            time.sleep(watch)
    loaded = loaded_all[0]
    render = renderer(fmt)
    while True:
        with working(f"diagnosing {loaded.target_name}…", enabled=_terminal_table(fmt, output)):
            report = run(loaded.target, loaded.target_name, check or [], check_class or [], timeout=timeout,
                         deadline_s=deadline, scrapes_dir=scrapes, config=printed, audit_log=audit_log)
        if _terminal_table(fmt, output):
            # a terminal gets colours (rich honours NO_COLOR) and, with --watch, a cleared screen
            _print_rich([report], detailed, clear=bool(watch), collapsed=not show_all)
        else:
            _emit(render(report, detailed), output)
        if not watch:
            return int(report.exit_status())
        time.sleep(watch)


def _terminal_table(fmt: Format, output: Path | None) -> bool:
    """A person at a terminal reads the table: a spinner while the checks run, then colours; never in a
    pipe, a file (--output) or a machine format."""
    return fmt is Format.table and output is None and is_terminal()


def _print_rich(reports: list[Report], detailed: bool, clear: bool, collapsed: bool = True) -> None:
    """The table report(s) on a terminal, with colours (several: each report, then the targets' summary)."""
    from rich.console import Console

    from es_doctor.findings import sanitize_report
    from es_doctor.render.table import render_rich

    console = Console(highlight=False)
    if clear:
        console.clear()
    reports = [sanitize_report(r) for r in reports]
    for n, report in enumerate(reports):
        if n:
            console.print()
        render_rich(console, report, detailed, collapsed)
    if len(reports) > 1:
        console.print("\n".join(_summary(reports)), markup=False, soft_wrap=True)


def _summary(reports: list[Report]) -> list[str]:
    """One line per target: ``✗ production  CRIT    2 CRIT, 30 OK in 1.4s (exit 2)``."""
    from es_doctor.findings import Status

    width = max(len(r.target) for r in reports)
    summary = ["", "targets:"]
    for report in reports:
        counts = report.counts()
        parts = ", ".join(f"{counts[s.value]} {s.value}" for s in Status if counts[s.value])
        summary.append(f"  {report.status.symbol} {report.target:<{width}}  {report.status.value:<7} {parts} "
                       f"in {report.duration_ms / 1000:.1f}s (exit {int(report.exit_status())})")
    return summary


def _check_output(output: Path) -> None:
    """Before any check runs: --output names a file whose directory exists and can be written (exit 73)."""
    import os

    from es_doctor.errors import CantCreateError

    path = output.expanduser()
    if path.is_dir():
        raise CantCreateError(f"cannot write the report to {output}: it is a directory")
    if not path.parent.is_dir():
        raise CantCreateError(f"cannot write the report to {output}: no directory {path.parent}")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise CantCreateError(f"cannot write the report to {output}: {path.parent} is not writable")


def _emit(text: str, output: Path | None) -> None:
    """The rendered report to stdout, or to ``output`` atomically (exit 73 naming it when it cannot be written)."""
    if output is None:
        typer.echo(text)
        return
    from es_doctor.errors import CantCreateError
    from es_doctor.files import write_atomically

    try:
        write_atomically(output.expanduser(), text + "\n")
    except OSError as exc:
        raise CantCreateError(f"cannot write the report to {output}: {exc.strerror or exc}") from None


def render_many(reports: list[Report], fmt: Format, detailed: bool) -> str:
    """Several targets: json schema 2.0 (a list of reports), one prometheus exposition, one nagios line per
    target, or each table report followed by one summary line per target."""
    from es_doctor.findings import sanitize_report

    reports = [sanitize_report(r) for r in reports]
    if fmt is Format.json:
        from es_doctor.render import json_report

        return json_report.render_many(reports)
    if fmt is Format.prometheus:
        from es_doctor.render import prometheus

        return prometheus.render_many(reports)
    if fmt is Format.nagios:
        from es_doctor.render import nagios

        return nagios.render_many(reports)
    from es_doctor.render import renderer

    render = renderer(fmt)
    blocks = [render(r, detailed) for r in reports]
    return "\n\n".join(blocks) + "\n" + "\n".join(_summary(reports))


def list_checks(
    check_class: Annotated[list[str] | None, typer.Option("--class", metavar="CLASS", autocompletion=complete.classes,
                                                          help="Only this symptom class (repeatable).")] = None,
) -> int:
    """List every check: id, what it verifies, and what cures it (by cause), from the one cure table."""
    from rich.console import Console
    from rich.table import Table

    from es_doctor.checks.registry import load_all
    from es_doctor.cures import describe

    if check_class:
        _check_names(check_class, [])
    specs = [s for s in load_all().values() if not check_class or s.check_class in check_class]
    table = Table(title="es-doctor checks", show_lines=False)
    for column in ("id", "description", "cure (es-doctor fix …; by cause)"):
        table.add_column(column)
    for spec in specs:
        table.add_row(spec.id, spec.description + (" (on demand)" if spec.on_demand else ""), describe(spec.id))
    Console(width=160).print(table)
    return int(ExitStatus.OK)
