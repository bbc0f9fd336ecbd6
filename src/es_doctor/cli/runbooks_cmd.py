"""``es-doctor runbooks list|show ID|validate [PATH...]|schema``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from es_doctor.cli.common import ConfigOpt, TargetOpt, load
from es_doctor.errors import ExitStatus, UsageError

runbooks_app = typer.Typer(help="The YAML runbooks `fix` applies: list, show, validate, schema.",
                           no_args_is_help=True)


def _load(ctx: typer.Context, config: str | None, target: str | None) -> object:
    from es_doctor.runbooks.loader import load_runbooks

    loaded = load(ctx, config, target)
    return load_runbooks([Path(d).expanduser() for d in loaded.config.runbook_dirs])


@runbooks_app.command("list")
def list_runbooks(ctx: typer.Context, config: ConfigOpt = None, target: TargetOpt = None) -> int:
    """Every runbook: id, class, flags, title, and where it comes from."""
    from es_doctor.runbooks.loader import RunbookSet

    rbs = _load(ctx, config, target)
    assert isinstance(rbs, RunbookSet)
    width = max(len(i) for i in rbs.runbooks)
    for rb_id, rb in sorted(rbs.runbooks.items(), key=lambda kv: (kv[1].check_class, kv[0])):
        flag = "destructive" if rb.flags.destructive else ""
        origin = f"  (overrides shipped {rbs.overrides[rb_id][0].name}: {rbs.sources[rb_id]})" \
            if rb_id in rbs.overrides else ""
        typer.echo(f"{rb_id:<{width}}  {rb.check_class:<13}  {flag:<11}  {rb.title}{origin}")
    return int(ExitStatus.OK)


@runbooks_app.command("show")
def show(ctx: typer.Context, runbook_id: Annotated[str, typer.Argument(metavar="ID")],
         config: ConfigOpt = None, target: TargetOpt = None) -> int:
    """A runbook's YAML, with where it comes from."""
    import difflib

    from es_doctor.runbooks.loader import RunbookSet

    rbs = _load(ctx, config, target)
    assert isinstance(rbs, RunbookSet)
    if runbook_id not in rbs.runbooks:
        near = difflib.get_close_matches(runbook_id, list(rbs.runbooks), n=3, cutoff=0.5)
        raise UsageError(f"no runbook {runbook_id!r}" + (f"; did you mean {', '.join(near)}?" if near else ""))
    path = rbs.sources[runbook_id]
    typer.echo(f"# {path}")
    typer.echo(path.read_text(encoding="utf-8").rstrip())
    return int(ExitStatus.OK)


@runbooks_app.command("validate")
def validate(ctx: typer.Context,
             paths: Annotated[list[Path] | None, typer.Argument(help="Files or directories (default: all loaded).",
                                                                show_default=False)] = None,
             config: ConfigOpt = None, target: TargetOpt = None) -> int:
    """Validate runbooks; each error names file, line and key (exit 65 on any error)."""
    from es_doctor.runbooks.loader import RunbookError, load_runbook_file, shipped_dir

    files: list[Path] = []
    if paths:
        for p in paths:
            files.extend(sorted(p.glob("*.y*ml")) if p.is_dir() else [p])
    else:
        loaded = load(ctx, config, target)
        for d in [shipped_dir(), *(Path(x).expanduser() for x in loaded.config.runbook_dirs)]:
            files.extend(sorted(d.glob("*.y*ml")))
    errors = 0
    seen: dict[str, Path] = {}
    for f in files:
        try:
            rb = load_runbook_file(f)
        except RunbookError as exc:
            errors += 1
            typer.echo(f"✗ {exc.message}", err=True)
            continue
        if rb.id in seen and paths:
            errors += 1
            typer.echo(f"✗ {f}:1: id: runbook id {rb.id!r} is also defined in {seen[rb.id]}", err=True)
            continue
        seen[rb.id] = f
        typer.echo(f"✓ {f} ({rb.id})")
    return int(ExitStatus.DATA if errors else ExitStatus.OK)


@runbooks_app.command("schema")
def schema() -> int:
    """Print the runbook JSON Schema (also shipped as runbooks/schema.json)."""
    from es_doctor.runbooks.schema import render_schema

    typer.echo(render_schema(), nl=False)
    return int(ExitStatus.OK)
