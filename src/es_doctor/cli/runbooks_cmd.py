"""``es-doctor runbooks list|show ID|validate [PATH...]|schema``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from es_doctor.cli import complete
from es_doctor.cli.common import ConfigOpt, TargetOpt, load
from es_doctor.errors import ExitStatus, UsageError

if TYPE_CHECKING:
    from es_doctor.runbooks.loader import RunbookSet
    from es_doctor.runbooks.model import Runbook

runbooks_app = typer.Typer(help="The YAML runbooks `fix` applies: list, show, validate, schema.",
                           no_args_is_help=True)


def _user_dirs(ctx: typer.Context, config: str | None, target: str | None) -> list[Path]:
    loaded = load(ctx, config, target)
    return [Path(d).expanduser() for d in loaded.config.runbook_dirs]


def _load(ctx: typer.Context, config: str | None, target: str | None) -> RunbookSet:
    from es_doctor.runbooks.loader import load_runbooks

    return load_runbooks(_user_dirs(ctx, config, target))


def _short(path: Path) -> str:
    """A shipped runbook as ``builtin:NAME`` (``builtin:emergency/NAME``), not its site-packages path; a
    user's runbook as its path, ``~`` for the home directory."""
    from es_doctor.runbooks.loader import shipped_dir

    try:
        return f"builtin:{path.resolve().relative_to(shipped_dir().resolve()).as_posix()}"
    except ValueError:
        pass
    home = Path.home()
    return f"~/{path.relative_to(home)}" if path.is_relative_to(home) else str(path)


def _source(rbs: RunbookSet, rb_id: str) -> str:
    if rb_id in rbs.overrides:
        return f"{_short(rbs.sources[rb_id])} (overrides {_short(rbs.overrides[rb_id][0])})"
    return _short(rbs.sources[rb_id])


def _kind(rbs: RunbookSet, rb_id: str) -> str:
    """The runbook's symptom class, or ``emergency`` for the guide's emergency procedures (runbooks/emergency/)."""
    from es_doctor.runbooks.loader import shipped_dir

    if rbs.sources[rb_id].resolve().parent == (shipped_dir() / "emergency").resolve():
        return "emergency"
    return rbs.runbooks[rb_id].check_class


@runbooks_app.command("list")
def list_runbooks(ctx: typer.Context, config: ConfigOpt = None, target: TargetOpt = None) -> int:
    """Every runbook: id, class, destructive flag, title, and where it comes from. A malformed user
    runbook is reported (file and line) and the others are still listed; the exit code is then 65."""
    from es_doctor.runbooks.loader import load_runbooks

    rbs = load_runbooks(_user_dirs(ctx, config, target), tolerant=True)
    width = max((len(i) for i in rbs.runbooks), default=2)
    for rb_id, rb in sorted(rbs.runbooks.items(), key=lambda kv: (_kind(rbs, kv[0]), kv[0])):
        flag = "destructive" if _destructive(rb) else ""
        typer.echo(f"{rb_id:<{width}}  {_kind(rbs, rb_id):<13}  {flag:<11}  {rb.title}  [{_source(rbs, rb_id)}]")
    for error in rbs.errors:
        typer.echo(f"es-doctor: skipped a malformed runbook: {error.message}", err=True)
    return int(ExitStatus.DATA if rbs.errors else ExitStatus.OK)


def _destructive(rb: Runbook) -> bool:
    return rb.flags.destructive or any(s.destructive for s in rb.steps)


def _summary(rb: Runbook, kind: str | None = None) -> list[str]:
    from es_doctor.findings import words

    lines = [f"{rb.id}: {rb.title}", f"  class: {kind or rb.check_class}"]
    if rb.cures:
        lines.append(f"  cures: {', '.join(rb.cures)}")
    flags = [name for name, on in (("destructive", _destructive(rb)),
                                   ("needs maintenance", rb.flags.needs_maintenance)) if on]
    if flags:
        lines.append(f"  flags: {', '.join(flags)}")
    for name, param in rb.params.items():
        default = " (required)" if param.required else f" = {words(param.default)}"
        lines.append(f"  param {name}: {param.type}{default}" + (f"  {param.description}" if param.description else ""))
    for title, steps in (("precondition", rb.preconditions), ("step", rb.steps), ("rollback", rb.rollback)):
        for i, step in enumerate(steps, 1):
            extra = [f"on_failure={step.on_failure}"] if step.on_failure != "rollback" else []
            if step.when:
                extra.append(f"when {step.when}")
            if step.retries:
                extra.append(f"retries={step.retries}")
            if step.destructive:
                extra.append("destructive")
            lines.append(f"  {title} {i}. {step.name}: {step.action}" + (f"  ({', '.join(extra)})" if extra else ""))
    if rb.verify:
        lines.append(f"  verify: {', '.join(rb.verify)}")
    return lines


@runbooks_app.command("show")
def show(ctx: typer.Context, runbook_id: Annotated[str, typer.Argument(metavar="ID", autocompletion=complete.runbooks)],
         config: ConfigOpt = None, target: TargetOpt = None) -> int:
    """A runbook's summary, then its YAML with the file it comes from."""
    import difflib

    rbs = _load(ctx, config, target)
    if runbook_id not in rbs.runbooks:
        near = difflib.get_close_matches(runbook_id, list(rbs.runbooks), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(near)}?" if near else "; `es-doctor runbooks list` shows them"
        raise UsageError(f"no runbook {runbook_id!r}{hint}")
    rb, path = rbs.runbooks[runbook_id], rbs.sources[runbook_id]
    for line in _summary(rb, _kind(rbs, runbook_id)):
        typer.echo(line)
    typer.echo(f"  source: {_source(rbs, runbook_id)}")
    typer.echo("")
    typer.echo(f"# {path}")
    typer.echo(path.read_text(encoding="utf-8").rstrip())
    return int(ExitStatus.OK)


@runbooks_app.command("validate")
def validate(ctx: typer.Context,
             paths: Annotated[list[Path] | None, typer.Argument(metavar="PATH",
                                                                help="Files or directories (default: all loaded).",
                                                                show_default=False)] = None,
             config: ConfigOpt = None, target: TargetOpt = None) -> int:
    """Validate runbooks; each error names file, line and key (exit 65 on any error)."""
    from es_doctor.runbooks.loader import RunbookError, load_runbook_file, runbook_files, shipped_dir
    from es_doctor.yamlsource import load_yaml_file

    levels: list[list[Path]] = []  # an id may appear once per level (the user's level overrides the shipped one)
    if paths:
        level: list[Path] = []
        for p in paths:
            if p.is_dir():
                level.extend(runbook_files(p))
            else:
                level.append(p)
        levels.append(level)
    else:
        emergency = shipped_dir() / "emergency"
        levels.append([*runbook_files(shipped_dir()), *(runbook_files(emergency) if emergency.is_dir() else [])])
        levels.append([f for d in _user_dirs(ctx, config, target) for f in _dir_files(d)])
    errors = 0
    for files in levels:
        seen: dict[str, Path] = {}
        for f in files:
            try:
                rb = load_runbook_file(f)
            except RunbookError as exc:
                errors += 1
                typer.echo(f"✗ {exc.message}", err=True)
                continue
            if rb.id in seen:
                errors += 1
                line = load_yaml_file(f).line_of(("id",))
                twice = RunbookError(f, line, "id", f"runbook id {rb.id!r} is also defined in {seen[rb.id]}")
                typer.echo(f"✗ {twice.message}", err=True)
                continue
            seen[rb.id] = f
            typer.echo(f"✓ {f} ({rb.id})")
    if errors:
        typer.echo(f"{errors} invalid runbook file(s)", err=True)
    return int(ExitStatus.DATA if errors else ExitStatus.OK)


def _dir_files(directory: Path) -> list[Path]:
    from es_doctor.runbooks.loader import RunbookError, runbook_files

    if not directory.is_dir():
        raise RunbookError(directory, None, "runbook_dirs", "not a directory")
    return runbook_files(directory)


@runbooks_app.command("schema")
def schema() -> int:
    """Print the runbook JSON Schema (also shipped as runbooks/schema.json)."""
    from es_doctor.runbooks.schema import render_schema

    typer.echo(render_schema(), nl=False)
    return int(ExitStatus.OK)
