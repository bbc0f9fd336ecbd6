"""``es-doctor emergency status|readonly|maintenance|restart|rollback``: the guide's emergency
procedures. Each (but status) is a shortcut to a runbook of ``runbooks/emergency/``, run by the
engine like ``es-doctor fix``: plan, confirmation, audit, lock, verify."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from es_doctor.cli.common import ConfigOpt, TargetOpt, load, make_engine
from es_doctor.errors import ExitStatus, UsageError

if TYPE_CHECKING:
    from es_doctor.config import LoadedConfig
    from es_doctor.probes.session import ProbeSession

emergency_app = typer.Typer(help="The guide's emergency procedures (runbooks/emergency/).", no_args_is_help=True)

YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before destructive steps.")]
DryOpt = Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.")]


def _run(ctx: typer.Context, runbook_id: str, params: dict[str, str], yes: bool, dry_run: bool,
         config: str | None, target: str | None) -> int:
    return int(_run_result(ctx, runbook_id, params, yes, dry_run, config, target).outcome.exit_status)


def _run_result(ctx: typer.Context, runbook_id: str, params: dict[str, str], yes: bool, dry_run: bool,
                config: str | None, target: str | None) -> Any:
    from es_doctor.cli.fix_cmd import _confirm, _report, _runbooks, print_plan
    from es_doctor.cli.output import line_printer
    from es_doctor.runbooks.engine import plan

    loaded = load(ctx, config, target)
    runbooks = _runbooks(loaded)
    if runbook_id not in runbooks:
        raise UsageError(f"runbook {runbook_id} is missing (runbooks/emergency/)")
    say = line_printer()  # highlighted on a terminal, plain in a pipe
    engine = make_engine(loaded, confirm=_confirm, say=say)
    the_plan = plan(runbooks[runbook_id], loaded.target, loaded.target_name, params)
    print_plan(the_plan, say)
    result = engine.run(the_plan, yes=yes, dry_run=dry_run)
    _report(result)
    return result


@emergency_app.command("status")
def status(ctx: typer.Context, config: ConfigOpt = None, target: TargetOpt = None) -> int:
    """One screen: maintenance and read-only state, the last backup, the stack's containers."""
    from es_doctor.probes.session import ProbeSession
    from es_doctor.secrets import clean, secret_values

    loaded = load(ctx, config, target)
    t = loaded.target
    known = secret_values(t)

    def echo(text: str) -> None:  # server answers and addresses: secrets and control characters out
        typer.echo(clean(text, known))

    with ProbeSession(t, timeout=5, docker_timeout=10) as session:
        return _status(loaded, session, echo)


def _status(loaded: LoadedConfig, session: ProbeSession, echo: Callable[[str], None]) -> int:
    """``status``'s screen, read through ``session`` (closed by the caller)."""
    t = loaded.target
    mode = session.service().mode()
    if mode.value is not None:
        echo(f"read-only: {'ON' if mode.value.readonly else 'off'}   "
             f"maintenance: {'ON' if mode.value.maintenance else 'off'}")
    else:
        echo(f"read-only/maintenance: unknown ({mode.failure.message if mode.failure else 'bad answer'})")
    from es_doctor.backup import BackupStore
    from es_doctor.config import backup_root

    store = BackupStore(backup_root(loaded.config), loaded.target_name)  # this target's backups only
    done, partial = store.complete(), store.incomplete()
    age = ""
    if done:
        import time

        from es_doctor.units import format_duration, parse_utc_stamp

        taken = parse_utc_stamp(done[-1].split("-")[0])
        age = f", {format_duration(time.time() - taken.timestamp())} ago"
    echo(f"last backup: {done[-1] if done else 'none'}"
               + (f"   ({len(done)} of target {loaded.target_name} in {store.root}{age})" if done else ""))
    if store.others():
        echo(f"  ({store.others()} backup(s) of other targets in {store.root}: not this target's)")
    if partial:
        echo(f"  incomplete (interrupted, not usable): {', '.join(partial)}")
    present, why = t.is_present("docker")
    if not present:
        echo(f"containers: not checked ({why})")
        return int(ExitStatus.OK)
    listed = session.docker().containers({"com.docker.compose.project": t.docker.compose_project})
    if listed.failure is not None:
        echo(f"containers: unknown ({listed.failure.message})")
        return int(ExitStatus.UNAVAILABLE)
    for c in listed.unwrap():
        echo(f"  {c.name:<18} {c.state:<10} {c.image}")
    return int(ExitStatus.OK)


@emergency_app.command("readonly")
def readonly(ctx: typer.Context,
             off: Annotated[bool, typer.Option("--off", help="Lift read-only mode.")] = False,
             dry_run: DryOpt = False, config: ConfigOpt = None, target: TargetOpt = None) -> int:
    """Stop writes through the API and prove it from the service's own state, without writing (--off: lift it)."""
    return _run(ctx, "emergency-readonly", {"enabled": str(not off).lower()}, True, dry_run, config, target)


@emergency_app.command("maintenance")
def maintenance(ctx: typer.Context, state: Annotated[str, typer.Argument(metavar="enable|disable")],
                dry_run: DryOpt = False, config: ConfigOpt = None, target: TargetOpt = None) -> int:
    """Maintenance mode on or off."""
    if state not in ("enable", "disable"):
        raise UsageError(f"maintenance takes enable or disable, not {state!r}")
    return _run(ctx, "emergency-maintenance", {"enabled": str(state == "enable").lower()}, True, dry_run,
                config, target)


@emergency_app.command("restart")
def restart(ctx: typer.Context,
            rollback_on_failure: Annotated[bool, typer.Option(
                "--rollback-on-failure",
                help="If the restart fails, recreate the service from the image it ran before the restart.")] = False,
            yes: YesOpt = False, dry_run: DryOpt = False, config: ConfigOpt = None, target: TargetOpt = None) -> int:
    """docker-compose down/up: stop in reverse order, start in order, wait for health."""
    return _run(ctx, "emergency-restart", {"rollback_on_failure": str(rollback_on_failure).lower()}, yes, dry_run,
                config, target)


@emergency_app.command("security")
def security(ctx: typer.Context,
             threshold: Annotated[int, typer.Option(min=1, metavar="N",
                                                    help="Failed authentications that get an address "
                                                    "blocked.")] = 5,
             webhook: Annotated[str | None, typer.Option(metavar="env:NAME",
                                                         help="Security contact's webhook, as env:NAME.",
                                                         show_default=False)] = None,
             yes: YesOpt = False, dry_run: DryOpt = False, config: ConfigOpt = None, target: TargetOpt = None) -> int:
    """Security attack: maintenance mode on, SECURITY log analysis, block list (not applied), notify."""
    if webhook and not webhook.startswith("env:"):
        raise UsageError("--webhook takes env:NAME (a webhook URL is a secret: keep it out of the command line)")
    params = {"threshold": str(threshold), **({"webhook": webhook} if webhook else {})}
    return _run(ctx, "emergency-security", params, yes, dry_run, config, target)


@emergency_app.command("rollback")
def rollback(ctx: typer.Context,
             to: Annotated[str | None, typer.Option("--to", metavar="TAG",
                                                    help="Image tag (default: the recorded previous one).",
                                                   show_default=False)] = None,
             yes: YesOpt = False, dry_run: DryOpt = False, config: ConfigOpt = None, target: TargetOpt = None) -> int:
    """Redeploy the service's previous image and verify health."""
    params: dict[str, Any] = {"to": to} if to else {}
    return _run(ctx, "emergency-rollback", params, yes, dry_run, config, target)


@emergency_app.command("backup")
def backup(ctx: typer.Context,
           reason: Annotated[str, typer.Option(metavar="TEXT", help="Recorded in the manifest.")] = "emergency backup",
           live: Annotated[bool, typer.Option("--live", help="Do not put the service in read-only mode for the "
                                              "backup (recorded in the manifest).")] = False,
           dry_run: DryOpt = False, config: ConfigOpt = None, target: TargetOpt = None) -> int:
    """A consistent, timestamped backup: PostgreSQL, Qdrant snapshots, volumes, service config; taken
    under read-only mode (lifted afterwards) unless --live."""
    result = _run_result(ctx, "emergency-backup", {"reason": reason, "live": str(live).lower()}, True, dry_run,
                         config, target)
    made = next((s.output for s in result.steps if s.name == "backup" and s.status == "ok"), None)
    if made:
        typer.echo(f"backup {made['id']}: {made['files']} files, {made['bytes']} bytes in {made['path']}")
        typer.echo(f"  consistency: {made.get('consistency', {}).get('mode', '?')}")
        for component, why in (made.get("skipped") or {}).items():
            typer.echo(f"  not backed up: {component} ({why})")
    return int(result.outcome.exit_status)


@emergency_app.command("validate")
def validate(ctx: typer.Context,
             backup_id: Annotated[str | None, typer.Argument(metavar="[BACKUP]", help="A backup id or 'latest'; "
                                                             "none: the live data.")] = None,
             config: ConfigOpt = None, target: TargetOpt = None) -> int:
    """Integrity of a backup (checksums, pg_restore --list, archives) or of the live data."""
    result = _run_result(ctx, "emergency-validate", {"backup": backup_id or ""}, True, False, config, target)
    step = next((s for s in result.steps if s.name == "validate"), None)
    if step is not None and step.status == "ok":
        _print_validation(step.output)
        return int(ExitStatus.OK)
    return int(ExitStatus.CRITICAL) if step is not None and step.status == "failed" else \
        int(result.outcome.exit_status)


def _print_validation(found: dict[str, Any]) -> None:
    facts = found.get("facts", {})
    for table, t in sorted(((facts.get("postgres") or {}).get("tables") or {}).items()):
        typer.echo(f"  postgres {table}: {t['rows']} rows" + (f", md5 {t['md5'][:12]}" if t.get("md5") else ""))
    for name, c in sorted((facts.get("qdrant") or {}).items()):
        extra = f", {c['rows']} rows, {c['orphans']} orphan points, {c['without_vector']} rows without vector" \
            if "rows" in c else ""
        typer.echo(f"  qdrant {name}: {c.get('points')} points{extra}")
    for note in found.get("notes", []):
        typer.echo(f"  note: {note}")
    typer.echo(f"{found.get('subject')}: {'OK' if found.get('ok') else 'PROBLEMS'}")


@emergency_app.command("restore")
def restore(ctx: typer.Context,
            backup_id: Annotated[str, typer.Argument(metavar="BACKUP", help="The backup id (its timestamp) or "
                                                     "'latest' (this target's latest).")],
            from_other_target: Annotated[bool, typer.Option(
                "--from-other-target", help="Restore a backup whose manifest names another target (another "
                "PostgreSQL, Qdrant or API) into this one.")] = False,
            yes: YesOpt = False, dry_run: DryOpt = False, config: ConfigOpt = None, target: TargetOpt = None) -> int:
    """Restore PostgreSQL, Qdrant and the volumes from one of this target's backups, then validate. Only
    with writes stopped (read-only/maintenance), only after a fresh safety backup. A backup of another
    target is refused unless --from-other-target says so."""
    from es_doctor.backup import BackupError, BackupStore, other_target, read_manifest, target_identity
    from es_doctor.config import backup_root

    loaded = load(ctx, config, target)
    try:  # 'latest' is pinned now (the safety backup taken on the way becomes the latest), and its target checked
        path = BackupStore(backup_root(loaded.config), loaded.target_name).path(backup_id)
        why = other_target(read_manifest(path), loaded.target_name, target_identity(loaded.target))
    except BackupError as exc:
        raise UsageError(str(exc)) from None
    if why is not None and not from_other_target:
        raise UsageError(f"backup {path.name} refused: {why}. Nothing was changed; to restore it into "
                         f"{loaded.target_name} on purpose, add --from-other-target")
    backup_id = path.name
    if not dry_run and not yes and not sys.stdin.isatty():
        raise UsageError("restore replaces the stack's data: confirm with --yes (nothing was changed)")
    result = _run_result(ctx, "emergency-restore", {"backup": backup_id,
                                                    "from_other_target": str(from_other_target).lower()},
                         yes, dry_run, config, target)
    if any(s.name == "writes-stopped" and s.status == "failed" for s in result.steps):
        typer.echo("restore refused: writes are not stopped (es-doctor emergency readonly); nothing was changed")
        return int(ExitStatus.UNAVAILABLE)
    step = next((s for s in result.steps if s.name == "validate" and s.phase == "steps"), None)
    if step is not None and step.status == "ok":
        _print_validation(step.output)
    elif step is not None and step.status == "failed":
        typer.echo(f"restored, but the validation found problems: {step.error}")
        return int(ExitStatus.CRITICAL)
    return int(result.outcome.exit_status)
