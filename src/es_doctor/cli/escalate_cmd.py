"""``es-doctor escalate --level N --issue "…" --severity S | --resolve ID``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from es_doctor.cli.common import ConfigOpt, TargetOpt, load
from es_doctor.errors import ExitStatus, UsageError
from es_doctor.severity import Severity

if TYPE_CHECKING:
    from es_doctor.config import LoadedConfig
    from es_doctor.escalation import Delivery


def _known_secrets(loaded: LoadedConfig) -> list[str]:
    from es_doctor.secrets import secret_values

    found = set(secret_values(loaded.config)) | set(secret_values(loaded.target))
    return sorted(found, key=len, reverse=True)


def _report(deliveries: list[Delivery]) -> list[Delivery]:
    failed = []
    for d in deliveries:
        if d.ok:
            typer.echo(f"  {d.channel} ({d.type}): sent ({d.detail}, attempt {d.attempts})")
        else:
            typer.echo(f"  {d.channel} ({d.type}): FAILED after {d.attempts} attempt(s): {d.detail}", err=True)
            failed.append(d)
    return failed


def escalate(
    ctx: typer.Context,
    level: Annotated[int | None, typer.Option("--level", "-l", min=1, max=3, metavar="LEVEL",
                                              help="Escalation level: 1 Équipe Dev, 2 DevOps, 3 Expertise.",
                                              show_default=False)] = None,
    issue: Annotated[str | None, typer.Option("--issue", "-i", metavar="TEXT", help="What is wrong, in one line.",
                                              show_default=False)] = None,
    severity: Annotated[Severity | None, typer.Option("--severity", metavar="[low|medium|high|critical]",
                                                            help="Severity of the incident.",
                                                            show_default=False)] = None,
    attach_diagnosis: Annotated[bool, typer.Option("--attach-diagnosis/--no-attach-diagnosis",
                                                   help="Run the checks and attach the report.")] = True,
    resolve: Annotated[str | None, typer.Option("--resolve", metavar="ID",
                                                help="Close incident ID (PagerDuty resolve).",
                                                show_default=False)] = None,
    config: ConfigOpt = None,
    target: TargetOpt = None,
) -> int:
    """Escalate an incident: write its bundle, notify the level's channels; or --resolve it."""
    if resolve is not None:
        if level is not None or issue is not None or severity is not None:
            raise UsageError("--resolve takes no --level, --issue or --severity")
        return _resolve(ctx, resolve, config, target)
    missing = [name for name, value in (("--level", level), ("--issue", issue), ("--severity", severity))
               if value is None]
    if missing:
        raise UsageError(f"escalate needs {', '.join(missing)} (or --resolve ID)")
    assert level is not None and issue is not None and severity is not None
    if not issue.strip():
        raise UsageError("--issue must not be empty")

    from es_doctor.escalation import build_incident, deliver_incident, incidents_dir, write_bundle, write_json_new
    from es_doctor.statedir import ensure_writable_dir

    loaded = load(ctx, config, target)
    # no bundle, no escalation: --resolve and the hand-over need it (exit 73 before anything is sent)
    ensure_writable_dir(incidents_dir(loaded.config.state_dir), "incidents directory")
    known = _known_secrets(loaded)
    from es_doctor.cli.output import working

    doing = f"diagnosing {loaded.target_name} for the incident bundle…" if attach_diagnosis else "writing the bundle…"
    with working(doing):  # a spinner on a terminal only
        incident = build_incident(loaded, level, severity, issue.strip(), attach_diagnosis=attach_diagnosis,
                                  known_secrets=known)
    try:
        bundle = write_bundle(incident, loaded.config.state_dir)
    except OSError as exc:  # the disk filled up meanwhile: exit 73 naming the place, nothing sent
        from es_doctor.statedir import cant_write

        refused = cant_write(exc, str(incidents_dir(loaded.config.state_dir)))
        if refused is None:
            raise
        raise refused from None
    typer.echo(f"incident {incident.id}: level {incident.level} ({incident.team}), severity {incident.severity}, "
               f"target {incident.target}")
    typer.echo(f"bundle: {bundle}")
    if not incident.channels:
        typer.echo(f"no channel configured for level {level} (escalation.levels.{level}.channels): "
                   "nothing sent; hand the bundle over yourself")
        return int(ExitStatus.OK)
    with working(f"notifying {', '.join(incident.channels)}…"):
        deliveries = deliver_incident(loaded, incident, bundle, known)
    write_json_new(bundle / "delivery.json", [d.as_dict() for d in deliveries])
    failed = _report(deliveries)
    if failed:
        typer.echo(f"es-doctor: {len(failed)} channel(s) failed: {', '.join(d.channel for d in failed)}; "
                   f"the bundle is kept at {bundle}", err=True)
        return int(ExitStatus.UNAVAILABLE)
    return int(ExitStatus.OK)


def _resolve(ctx: typer.Context, incident_id: str, config: str | None, target: str | None) -> int:
    from es_doctor.escalation import deliver_resolve, read_bundle, write_json_new
    from es_doctor.units import utc_iso

    loaded = load(ctx, config, target)
    incident, bundle = read_bundle(loaded.config.state_dir, incident_id.strip())
    marker = bundle / "resolved.json"
    if marker.exists():
        typer.echo(f"incident {incident.id} is already resolved ({marker})")
        return int(ExitStatus.OK)
    resolved_at = utc_iso()
    deliveries, missing = deliver_resolve(loaded, incident, resolved_at, _known_secrets(loaded))
    typer.echo(f"resolving {incident.id} (level {incident.level}, target {incident.target})")
    for name in missing:
        typer.echo(f"  {name}: no longer configured, skipped", err=True)
    failed = _report(deliveries)
    if failed:
        typer.echo(f"es-doctor: not marked resolved: {', '.join(d.channel for d in failed)} failed; "
                   f"run escalate --resolve {incident.id} again (bundle: {bundle})", err=True)
        return int(ExitStatus.UNAVAILABLE)
    write_json_new(marker, {"id": incident.id, "resolved_at": resolved_at,
                            "deliveries": [d.as_dict() for d in deliveries], "skipped": missing})
    typer.echo(f"incident {incident.id} resolved: {marker}")
    return int(ExitStatus.OK)
