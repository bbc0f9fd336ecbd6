"""Backups (es_doctor.backup): create, validate, restore, require a write freeze."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from es_doctor.runbooks.actions.base import (
    ActionContext,
    ActionError,
    Inputs,
    NoInputs,
    action,
    stamp,
    tool_call,
    unwrap,
)


class CreateInputs(Inputs):
    reason: str = Field(default="emergency backup", description="why, recorded in the manifest")
    live: bool = Field(default=False, description="back up without stopping writes (not a consistent copy)")


class ValidateInputs(Inputs):
    backup: str | None = Field(default=None, description="a backup id to validate (default: the live data)")
    against: str | None = Field(default=None, description="a backup id the live data must equal (after a "
                                "restore)")
    other_target: bool | None = Field(default=None, description="given by a restore's check: another target's "
                                      "backup is refused unless true")


class BackupInputs(Inputs):
    backup: str = Field(min_length=1, description="the backup id (latest: this target's latest)")
    other_target: bool = Field(default=False, description="restore a backup whose manifest names another target "
                               "(emergency restore --from-other-target)")


class RestoreQdrantInputs(BackupInputs):
    collections: list[str] = Field(default_factory=list, description="only these collections (default: all)")
    keep_current: bool = Field(default=False, description="upsert the points written since, over the "
                               "recovered collections")


def _backup_path(backup: str, ctx: ActionContext, *, restore: bool = False, other_target: bool = False) -> Path:
    """The backup ``backup`` (``latest``: this target's latest). ``restore``: refused when its manifest names
    another target (another PostgreSQL, Qdrant or API) unless ``other_target`` is true."""
    from es_doctor.backup import BackupStore, read_manifest, target_identity
    from es_doctor.backup import other_target as other_target_of

    path: Path = tool_call(lambda: BackupStore(ctx.backups, ctx.target_name).path(backup))
    if restore and not other_target:
        why = other_target_of(tool_call(lambda: read_manifest(path)), ctx.target_name, target_identity(ctx.target))
        if why is not None:
            raise ActionError(f"backup {path.name} refused: {why}; restore it into {ctx.target_name} only on "
                              "purpose (es-doctor emergency restore --from-other-target)", retryable=False)
    return path


@action("backup.create", lambda i: "back up PostgreSQL (pg_dump), Qdrant (snapshots), the volumes and the service "
                                   f"config; manifest last{' (' + str(i['reason']) + ')' if i.get('reason') else ''}"
                                   + ("; live: writes not stopped" if str(i.get("live")).lower() == "true" else
                                      "; under read-only mode (set for it and lifted after, if not already on)"),
        CreateInputs)
def backup_create(inputs: CreateInputs, ctx: ActionContext) -> dict[str, Any]:
    import sys

    from es_doctor.backup import Backup, BackupStore

    job = Backup(ctx.probes, ctx.target_name, BackupStore(ctx.backups), reason=inputs.reason or "emergency backup",
                 cancel=ctx.cancel, say=ctx.say, live=inputs.live)
    progress = None
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import Progress

        progress = Progress(console=Console(stderr=True), transient=True)
        task = progress.add_task("backup", total=4)
        job.progress = lambda name, done, _total: progress.update(task, completed=done, description=name)
        progress.start()
    else:
        job.progress = lambda name, done, total: ctx.say(f"  [{done}/{total}] {name} done")
    try:
        backup_id, path, manifest = tool_call(job.run)
    finally:
        if progress is not None:
            progress.stop()
    size = sum(f["bytes"] for f in manifest["files"])
    return {"id": backup_id, "path": str(path), "files": len(manifest["files"]), "bytes": size,
            "skipped": manifest["skipped"], "consistency": manifest.get("consistency")}


@action("backup.validate", lambda i: f"validate backup {i['backup']} (checksums, pg_restore --list, archives, "
        "its restore fits the target PostgreSQL's lock table)"
        if i.get("backup") else "validate the live data (amcheck, Qdrant points against rows, volumes)"
        + (f", equal to backup {i['against']}" if i.get("against") else ""), ValidateInputs)
def backup_validate(inputs: ValidateInputs, ctx: ActionContext) -> dict[str, Any]:
    from es_doctor.backup import check_fits, validate_backup, validate_live

    if inputs.backup:  # a restore's check names other_target: another target's backup is refused there
        path = _backup_path(inputs.backup, ctx, restore=inputs.other_target is not None,
                            other_target=bool(inputs.other_target))
        found = tool_call(lambda: validate_backup(path))
        tool_call(lambda: check_fits(ctx.probes, path, found))  # as its restore will run, on this target
    else:
        found = tool_call(lambda: validate_live(ctx.probes, content=bool(inputs.against)))
    if inputs.against:  # after a restore: the live data must equal what the backup recorded
        from es_doctor.backup import compare, read_manifest

        against = _backup_path(inputs.against, ctx)
        manifest = tool_call(lambda: read_manifest(against))
        differences = compare(manifest, found)
        for difference in differences:
            found.add("restore", f"differs from backup {against.name}: {difference}")
        if not differences:
            found.notes.append(f"equal to backup {against.name}: row counts and md5 of "
                               f"{len((manifest.get('postgres') or {}).get('tables', {}))} table(s), points and "
                               f"hashes of {len((manifest.get('qdrant') or {}).get('collections', {}))} collection(s)")
    for problem in found.problems:
        ctx.say(f"  {problem}")
    if not found.ok:
        raise ActionError(f"{found.subject}: {sum(p.severity == 'CRIT' for p in found.problems)} problem(s)")
    return found.as_dict()  # type: ignore[no-any-return]


@action("backup.require-freeze", lambda _i: "require that writes are stopped (read-only or maintenance mode, "
                                            "or the service stopped)", NoInputs)
def backup_require_freeze(_inputs: NoInputs, ctx: ActionContext) -> dict[str, Any]:
    from es_doctor.backup import require_write_freeze

    return {"reason": tool_call(lambda: require_write_freeze(ctx.probes))}


@action("backup.restore-volumes", lambda i: f"recreate the volumes of backup {i.get('backup')} and fill them from "
                                            "its archives (their containers stopped meanwhile)", BackupInputs,
        destructive=True)
def backup_restore_volumes(inputs: BackupInputs, ctx: ActionContext) -> dict[str, Any]:
    from es_doctor.backup import restore_volumes

    path = _backup_path(inputs.backup, ctx, restore=True, other_target=inputs.other_target)
    return {"restored": tool_call(lambda: restore_volumes(ctx.probes, path, ctx.say, ctx.cancel))}


@action("backup.restore-postgres", lambda i: f"pg_restore --clean --single-transaction from backup {i.get('backup')}",
        BackupInputs, destructive=True)
def backup_restore_postgres(inputs: BackupInputs, ctx: ActionContext) -> dict[str, Any]:
    from es_doctor.backup import restore_postgres

    path = _backup_path(inputs.backup, ctx, restore=True, other_target=inputs.other_target)
    return {"restored": tool_call(lambda: restore_postgres(ctx.probes, path, ctx.cancel))}


@action("backup.restore-qdrant", lambda i: f"recover the Qdrant collection(s) {', '.join(map(str, i['collections']))} "
        f"of backup {i.get('backup')} from its snapshot" if i.get("collections") else
        f"recover the Qdrant collections of backup {i.get('backup')} from its snapshots", RestoreQdrantInputs,
        destructive=True)
def backup_restore_qdrant(inputs: RestoreQdrantInputs, ctx: ActionContext) -> dict[str, Any]:
    from es_doctor.backup import restore_qdrant, safe_name

    path = _backup_path(inputs.backup, ctx, restore=True, other_target=inputs.other_target)
    only = inputs.collections or None
    if not only or not inputs.keep_current:
        return {"restored": tool_call(lambda: restore_qdrant(ctx.probes, path, ctx.cancel, only)),
                "backup": path.name}
    # the points written since the collection was recreated are newer than the backup's: they are
    # saved first (into the run's private directory) and upserted again over the recovered collection
    saved: dict[str, tuple[Path, int]] = {}
    for name in only:
        if name in unwrap(ctx.qdrant().collections(), "Qdrant collections"):
            ctx.work_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            dest = ctx.work_dir / f"{safe_name(name)}.points-{stamp()}.jsonl"
            saved[name] = (dest, unwrap(ctx.qdrant().export_points(name, str(dest)), f"export the points of {name}"))
    restored = tool_call(lambda: restore_qdrant(ctx.probes, path, ctx.cancel, only))
    kept = {name: unwrap(ctx.qdrant().import_points(name, str(dest)), f"upsert the saved points of {name}")
            for name, (dest, _count) in saved.items()}
    return {"restored": restored, "backup": path.name, "kept_current_points": kept}
