"""``es-doctor diagnose`` and ``es-doctor checks``."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Annotated

import typer

from es_doctor.cli.common import ConfigOpt, TargetOpt, load
from es_doctor.errors import ExitStatus, UsageError
from es_doctor.render import Format
from es_doctor.symptoms import SYMPTOM_CLASSES

if TYPE_CHECKING:
    from es_doctor.checks.registry import CheckSpec


def _select(classes: list[str], check_ids: list[str]) -> list[CheckSpec]:
    """The checks to run (with their prerequisites): a usage error names an unknown class or id."""
    import difflib

    from es_doctor.checks.registry import load_all
    from es_doctor.runner import select

    registry = load_all()
    for cls in classes:
        if cls not in SYMPTOM_CLASSES:
            raise UsageError(f"unknown class '{cls}' (one of: {', '.join(SYMPTOM_CLASSES)})")
    for check_id in check_ids:
        if check_id not in registry:
            near = difflib.get_close_matches(check_id, list(registry), n=3)
            hint = f"; did you mean {', '.join(near)}?" if near else "; see es-doctor checks"
            raise UsageError(f"unknown check '{check_id}'{hint}")
    return select(check_ids, classes)


def diagnose(
    ctx: typer.Context,
    check_class: Annotated[list[str] | None, typer.Option("--class", help="Only this symptom class (repeatable): "
                                                          + ", ".join(SYMPTOM_CLASSES) + ".")] = None,
    check: Annotated[list[str] | None, typer.Option("--check", help="Only this check id (repeatable).")] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
    timeout: Annotated[float | None, typer.Option("--timeout", help="Per-check timeout, seconds.", min=0.1)] = None,
    deadline: Annotated[float | None, typer.Option("--deadline", help="Overall deadline, seconds.", min=0.5)] = None,
    detailed: Annotated[bool, typer.Option("--detailed", "-d", help="Show evidence for passing checks too.")] = False,
    watch: Annotated[float | None, typer.Option("--watch", help="Re-run every N seconds until Ctrl-C.",
                                                min=1.0)] = None,
    config: ConfigOpt = None,
    target: TargetOpt = None,
) -> int:
    """Run the guide's diagnostics concurrently; exit 0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN."""
    from es_doctor.render import renderer
    from es_doctor.runner import diagnose as run

    loaded = load(ctx, config, target)
    _select(check_class or [], check or [])  # a usage error for an unknown class or check id
    render = renderer(fmt)
    while True:
        report = run(loaded.target, loaded.target_name, check or [], check_class or [], timeout=timeout,
                     deadline_s=deadline)
        if fmt is Format.table and sys.stdout.isatty():
            # a terminal gets colours (rich honours NO_COLOR) and, with --watch, a cleared screen
            from rich.console import Console

            from es_doctor.render.table import render_rich

            console = Console(highlight=False)
            if watch:
                console.clear()
            render_rich(console, report, detailed)
        else:
            typer.echo(render(report, detailed))
        if not watch:
            return int(report.exit_status())
        time.sleep(watch)


def list_checks(
    check_class: Annotated[list[str] | None, typer.Option("--class", help="Only this symptom class.")] = None,
) -> int:
    """List every check: id, what it verifies, and what cures it (by cause), from the one cure table."""
    from rich.console import Console
    from rich.table import Table

    from es_doctor.checks.registry import load_all
    from es_doctor.cures import describe

    if check_class:
        _select(check_class, [])  # a usage error for an unknown class
    specs = [s for s in load_all().values() if not check_class or s.check_class in check_class]
    table = Table(title="es-doctor checks", show_lines=False)
    for column in ("id", "description", "cure (es-doctor fix …; by cause)"):
        table.add_column(column)
    for spec in specs:
        table.add_row(spec.id, spec.description + (" (on demand)" if spec.on_demand else ""), describe(spec.id))
    Console(width=160).print(table)
    return int(ExitStatus.OK)
