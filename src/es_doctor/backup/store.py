"""The backup store: ids, the root's complete and interrupted backups, paths kept inside the root, manifests.

A backup is a directory ``<root>/<id>`` (the id is its UTC time, ``20261129T031500Z``) holding
``postgres/<db>.dump`` (pg_dump, custom format), ``qdrant/<collection>.snapshot`` (Qdrant's own
snapshots, downloaded), ``volumes/<volume>.tar`` and ``config/config.yaml``, and ``manifest.json``:
every file's size and sha256, plus the row counts and content hashes of the tables and collections,
and the target it was taken of.

It is written as ``<root>/.<id>.partial``; the manifest is written last and the directory renamed
only then, so a backup that was interrupted never looks complete: whatever has no manifest is not
a backup. Nothing is ever written outside the root, and an existing backup is never overwritten.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from es_doctor.units import parse_utc_stamp, utc_stamp

FORMAT = "es-doctor-backup/1"
MANIFEST = "manifest.json"
ID_PATTERN = re.compile(r"\d{8}T\d{6}Z(?:-\d{1,3})?")  # used with fullmatch
SAFE = re.compile(r"[^A-Za-z0-9_.-]")
CHUNK = 1 << 20
#: seconds before the rows and the points are compared again (writes in flight are no damage)
STABLE_RECHECK_S = 2.0

#: progress(component, done, total): one call per finished component
Progress = Callable[[str, int, int], None]


def is_backup_id(name: str) -> bool:
    """``20261129T031500Z`` (optionally ``-N``) naming a real UTC time: ``20261399T250000Z`` is not one."""
    if not ID_PATTERN.fullmatch(name):
        return False
    try:
        parse_utc_stamp(name.split("-", maxsplit=1)[0])
    except ValueError:
        return False
    return True


class BackupError(RuntimeError):
    """A backup, validation or restore that cannot go on (the message says why, no secret in it)."""


class CancelledError(BackupError):
    """Interrupted (Ctrl-C or a step's timeout)."""

def safe_name(name: str) -> str:
    """A file name for a collection or volume name that came from a server: no path, no dot-file."""
    cleaned = SAFE.sub("_", name).lstrip(".") or "_"
    return cleaned[:120]


def id_order(backup_id: str) -> tuple[str, int]:
    """Backup ids in time order (``…Z-10`` after ``…Z-9``)."""
    base, _, n = backup_id.partition("-")
    return base, int(n) if n.isdigit() else 0


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --------------------------------------------------------------------------- the store


def other_target(manifest: dict[str, Any], target_name: str, identity: dict[str, str]) -> str | None:
    """Why the backup of ``manifest`` belongs to another target than ``target_name`` (whose PostgreSQL,
    Qdrant and API are ``identity``), or None when it is this target's. A manifest names its target, and
    (since es-doctor records it) that target's addresses: a target renamed in the config file, or two
    files naming different stacks alike, are told apart by those."""
    named = manifest.get("target")
    if named != target_name:
        return f"it is a backup of target {named!r}, not of {target_name!r}"
    recorded = manifest.get("target_identity")
    if isinstance(recorded, dict):
        differ = [f"{key} {recorded[key]} (this target: {identity[key]})" for key in sorted(identity)
                  if recorded.get(key) and identity.get(key) and recorded[key] != identity[key]]
        if differ:
            return f"it was taken of another stack than target {target_name!r}: {'; '.join(differ)}"
    return None


class BackupStore:
    """The backup root: complete backups are ``<id>`` directories with a manifest. ``target``: the name of
    the target whose backups :meth:`complete` lists and ``latest`` means (None: every target's)."""

    def __init__(self, root: Path, target: str | None = None) -> None:
        self.root = root.expanduser()
        self.target = target

    def _named(self, path: Path) -> bool:
        if self.target is None:
            return True
        try:
            manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(manifest, dict) and manifest.get("target") == self.target

    def complete(self) -> list[str]:
        """The complete backups (of :attr:`target`, when given), oldest first."""
        if not self.root.is_dir():
            return []
        return sorted((p.name for p in self.root.iterdir()
                       if is_backup_id(p.name) and not p.is_symlink() and (p / MANIFEST).is_file()
                       and self._named(p)), key=id_order)

    def others(self) -> int:
        """How many complete backups in the root belong to other targets than :attr:`target`."""
        return len(BackupStore(self.root).complete()) - len(self.complete()) if self.target is not None else 0

    def incomplete(self) -> list[str]:
        """Left-overs of interrupted backups (no manifest): never used, shown so they can be removed."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.name.endswith(".partial") or (ID_PATTERN.fullmatch(p.name) and not (p / MANIFEST).is_file()))

    def path(self, backup: str) -> Path:
        """The directory of a complete backup, from its id (or ``latest``); refuses anything else."""
        if backup == "latest":
            done = self.complete()
            if not done:
                whose = f" of target {self.target}" if self.target is not None else ""
                raise BackupError(f"no complete backup{whose} in {self.root}")
            backup = done[-1]
        if not is_backup_id(backup):
            raise BackupError(f"{backup!r} is not a backup id (like 20261129T031500Z; `emergency status` lists them)")
        path = self.root / backup
        if path.is_symlink() or not path.resolve().is_relative_to(self.root.resolve()):
            raise BackupError(f"{path} leads outside the backup root {self.root}: refused")
        if not path.is_dir():
            raise BackupError(f"no backup {backup} in {self.root}")
        if not (path / MANIFEST).is_file():
            raise BackupError(f"backup {backup} has no manifest: it was interrupted and is not usable")
        return path

    def begin(self) -> tuple[str, Path]:
        """A fresh id and its partial directory (never an existing one)."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        base = utc_stamp()
        for n in range(1000):
            backup_id = base if n == 0 else f"{base}-{n}"
            final, partial = self.root / backup_id, self.root / f".{backup_id}.partial"
            if final.exists() or final.is_symlink():
                continue
            try:
                partial.mkdir(mode=0o700)
            except FileExistsError:
                continue
            return backup_id, partial
        raise BackupError(f"cannot find a free backup id in {self.root}")

    def commit(self, backup_id: str, partial: Path) -> Path:
        final = self.root / backup_id
        if final.exists() or final.is_symlink():
            raise BackupError(f"{final} appeared meanwhile: not overwritten (the backup stays in {partial})")
        partial.rename(final)
        _fsync_dir(self.root)
        return final


def inside(base: Path, *parts: str) -> Path:
    """``base/parts`` when it stays inside ``base``; :class:`BackupError` otherwise."""
    path = base.joinpath(*parts)
    if not path.resolve().is_relative_to(base.resolve()):
        raise BackupError(f"{path} is outside {base}: refused")
    return path


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BackupError(f"{path / MANIFEST}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{path / MANIFEST}: not an es-doctor backup manifest ({FORMAT})")
    return manifest

