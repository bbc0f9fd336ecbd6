"""Validating a backup: its manifest verifies every file and fact a restore uses; checksums, sizes,
``pg_restore --list`` and the dump's row counts, every archive read to its end. Reads files only."""

from __future__ import annotations

import contextlib
import os
import re
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from es_doctor.backup.store import CHUNK, MANIFEST, BackupError, inside, read_manifest, sha256_file


@dataclass
class Problem:
    component: str
    message: str
    severity: str = "CRIT"  #: CRIT (damage) or WARN (not checked, or doubtful)

    def __str__(self) -> str:
        return f"{self.severity} {self.component}: {self.message}"


@dataclass
class Validation:
    """What a validation found: problems (CRIT ones make it fail), and what it measured."""

    subject: str
    problems: list[Problem] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(p.severity == "CRIT" for p in self.problems)

    def add(self, component: str, message: str, severity: str = "CRIT") -> None:
        self.problems.append(Problem(component, message, severity))

    def as_dict(self) -> dict[str, Any]:
        return {"subject": self.subject, "ok": self.ok, "facts": self.facts, "notes": self.notes,
                "problems": [{"component": p.component, "severity": p.severity, "message": p.message}
                             for p in self.problems]}


def _read_all(tar: tarfile.TarFile, check: Callable[[tarfile.TarInfo], None] | None = None) -> int:
    """Read every member of an archive to its end (``check`` sees each first); the member count."""
    n = 0
    for member in tar:
        if check is not None:
            check(member)
        n += 1
        handle = tar.extractfile(member) if member.isfile() else None
        if handle is not None:
            while handle.read(CHUNK):
                pass
    return n


def validate_backup(path: Path) -> Validation:
    """Checksums and sizes of every file, ``pg_restore --list`` of the dump, every snapshot and volume
    archive read to its end. A manifest of the wrong shape is a :class:`BackupError`."""
    manifest = read_manifest(path)
    try:
        return _validate_backup(path, manifest)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise BackupError(f"{path / MANIFEST}: malformed manifest ({type(exc).__name__}: {exc})") from None


SHA256 = re.compile(r"[0-9a-f]{64}")
#: the components a backup accounts for: each is in the manifest, or skipped with a reason
COMPONENTS = ("postgres", "qdrant", "volumes", "config")


def referenced_files(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """(path, what) of every file a restore would read: the dump, snapshots, archives, the config."""
    out: list[tuple[str, str]] = []
    pg = manifest.get("postgres")
    if isinstance(pg, dict) and pg.get("dump"):
        out.append((str(pg["dump"]), "PostgreSQL dump"))
    qd = manifest.get("qdrant")
    if isinstance(qd, dict):
        if qd.get("archive"):
            out.append((str(qd["archive"]), "embedded Qdrant archive"))
        for name, entry in (qd.get("collections") or {}).items():
            out.append((str(entry.get("snapshot") if isinstance(entry, dict) else None), f"snapshot of {name}"))
    for vol in manifest.get("volumes") or []:
        out.append((str(vol.get("archive") if isinstance(vol, dict) else None), "volume archive"))
    return out


def manifest_problems(path: Path, manifest: dict[str, Any]) -> list[str]:
    """What the manifest fails to verify: its shape, every file a restore would use (listed with its
    size and sha256), every fact the restore is compared against (tables' rows and md5, collections'
    points and hashes). A manifest that verifies nothing does not validate."""
    out: list[str] = []
    if manifest.get("id") != path.name:
        out.append(f"its id {manifest.get('id')!r} is not the backup's directory name {path.name!r}")
    if not manifest.get("finished_at"):
        out.append("it has no finished_at: the backup was not completed")
    files = manifest.get("files")
    if not isinstance(files, list) or not files:
        out.append("it lists no file")
        files = []
    listed: dict[str, Any] = {}
    for entry in files:
        if not (isinstance(entry, dict) and isinstance(entry.get("path"), str)
                and isinstance(entry.get("bytes"), int) and SHA256.fullmatch(str(entry.get("sha256", "")))):
            raise ValueError(f"a files entry without path, bytes and sha256: {str(entry)[:120]}")
        listed[entry["path"]] = entry
    raw_skipped = manifest.get("skipped")
    skipped: dict[str, Any] = raw_skipped if isinstance(raw_skipped, dict) else {}
    for component in COMPONENTS:
        value = manifest.get(component)
        has = bool(value) if component != "config" else any(p.startswith("config/") for p in listed)
        if not has and component not in skipped:
            out.append(f"{component}: neither backed up nor skipped with a reason")
    for rel, what in referenced_files(manifest):
        if rel not in listed:
            out.append(f"{what} {rel}: not in the manifest's files (no size or sha256 to verify it)")
    pg = manifest.get("postgres")
    if isinstance(pg, dict):
        tables = pg.get("tables")
        if not isinstance(tables, dict):  # an empty database records {}: a state a safety backup may hold
            out.append("postgres: no tables recorded (row counts and md5 are what a restore is checked against)")
        else:
            for table, fact in tables.items():
                if not (isinstance(fact, dict) and isinstance(fact.get("rows"), int)
                        and isinstance(fact.get("md5"), str) and len(fact["md5"]) == 32):
                    out.append(f"postgres: table {table} has no row count and md5")
    elif pg is not None:
        out.append("postgres: not a mapping")
    qd = manifest.get("qdrant")
    if isinstance(qd, dict) and not qd.get("embedded"):
        collections = qd.get("collections")
        if not isinstance(collections, dict):
            out.append("qdrant: no collections recorded")
        else:
            for name, fact in collections.items():
                if not (isinstance(fact, dict) and isinstance(fact.get("points"), int)
                        and SHA256.fullmatch(str(fact.get("sha256_points", "")))):
                    out.append(f"qdrant: collection {name} has no point count and hash")
    for vol in manifest.get("volumes") or []:
        if not (isinstance(vol, dict) and isinstance(vol.get("volume"), str) and isinstance(vol.get("members"), int)):
            out.append(f"volumes: an entry without volume and member count: {str(vol)[:120]}")
    return out


def verified_file(path: Path, manifest: dict[str, Any], rel: str) -> Path:
    """The backup's file ``rel``, only when the manifest lists it and it still has the recorded size and
    sha256 (checked again right before a restore uses it); else :class:`BackupError`, nothing changed."""
    entry = next((f for f in manifest.get("files") or [] if isinstance(f, dict) and f.get("path") == rel), None)
    if entry is None:
        raise BackupError(f"{rel}: not in the manifest of {path.name}: refused (the restore uses only verified files)")
    file = inside(path, rel)
    if not file.is_file() or file.stat().st_size != entry.get("bytes") or sha256_file(file) != entry.get("sha256"):
        raise BackupError(f"{rel}: differs from the manifest of {path.name} (size or sha256): refused")
    return file


def dump_row_counts(dump: Path, timeout: float = 6 * 3600, cancel: threading.Event | None = None) -> dict[str, int]:
    """Rows per table in a custom-format dump, counted as ``pg_restore --data-only`` streams its COPY
    blocks (one line per row; memory stays flat). The program runs in its own process group, without
    stdin, and is killed with it on timeout or cancel; :class:`BackupError` when it fails."""
    import signal
    import subprocess

    from es_doctor.tools import pg_bin

    with tempfile.TemporaryFile() as errors:
        try:
            proc = subprocess.Popen([pg_bin("pg_restore"), "--data-only", "--file=-", str(dump)],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors,
                                    start_new_session=True)
        except OSError as exc:
            raise BackupError(f"cannot run pg_restore: {exc.strerror or exc}") from None
        stop, why = threading.Event(), []

        def watchdog() -> None:
            deadline = time.monotonic() + timeout
            while not stop.wait(0.2):
                if (cancel is not None and cancel.is_set()) or time.monotonic() > deadline:
                    why.append("interrupted" if cancel is not None and cancel.is_set() else f"timed out ({timeout:g}s)")
                    with contextlib.suppress(OSError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    return

        guard = threading.Thread(target=watchdog, daemon=True)
        guard.start()
        counts: dict[str, int] = {}
        current: str | None = None
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if current is None:
                    if line.startswith(b"COPY "):
                        current = line.split()[1].decode("utf-8", "replace").replace('"', "")
                        counts[current] = 0
                elif line == b"\\.\n":
                    current = None
                else:
                    counts[current] += 1
            proc.wait()
        finally:
            stop.set()
            if proc.poll() is None:
                with contextlib.suppress(OSError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if why:
            raise BackupError(f"pg_restore --data-only {why[0]}")
        if proc.returncode != 0:
            errors.seek(0, os.SEEK_END)
            errors.seek(max(0, errors.tell() - 400))
            raise BackupError(f"pg_restore --data-only exited {proc.returncode}: "
                              f"{errors.read().decode('utf-8', 'replace').strip()}")
    return counts


def _validate_backup(path: Path, manifest: dict[str, Any]) -> Validation:
    from es_doctor.tools import ToolError, pg_bin, run_tool

    v = Validation(f"backup {path.name}")
    for problem in manifest_problems(path, manifest):
        v.add("manifest", problem)
    listed = {f["path"]: f for f in manifest.get("files", []) if isinstance(f, dict) and "path" in f}
    for rel, entry in sorted(listed.items()):
        try:
            file = inside(path, rel)
        except BackupError as exc:
            v.add("manifest", str(exc))
            continue
        if not file.is_file():
            v.add(rel, "missing")
        elif file.stat().st_size != entry.get("bytes"):
            v.add(rel, f"size {file.stat().st_size} bytes, manifest says {entry.get('bytes')}")
        elif sha256_file(file) != entry.get("sha256"):
            v.add(rel, "sha256 differs from the manifest (damaged or altered)")
    for extra in sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()):
        if extra != MANIFEST and extra not in listed:
            v.add(extra, "not in the manifest", "WARN")
    bad = {p.component for p in v.problems if p.severity == "CRIT"}
    bad |= {rel for rel, _what in referenced_files(manifest) if rel not in listed}  # never read an unverified file
    pg = manifest.get("postgres")
    if pg and pg.get("dump") not in bad:
        try:
            inside(path, pg["dump"])
        except BackupError as exc:
            v.add("manifest", str(exc))
            pg = None
    if pg and pg.get("dump") not in bad:
        try:
            toc = run_tool([pg_bin("pg_restore"), "--list", str(inside(path, pg["dump"]))], None, 600)
            entries = sum(1 for line in toc.splitlines() if line and not line.startswith(";"))
            v.facts["postgres"] = {"toc_entries": entries, "tables": pg.get("tables", {})}
            for table in pg.get("tables", {}):
                schema, _, name = table.partition(".")
                if not re.search(rf"\bTABLE DATA {re.escape(schema)} {re.escape(name)}\b", toc):
                    v.add(pg["dump"], f"the dump has no data for table {table}")
            in_dump = dump_row_counts(inside(path, pg["dump"]))  # the recorded row counts are the dump's
            for table, fact in sorted(pg.get("tables", {}).items()):
                if in_dump.get(table, 0) != fact.get("rows"):
                    v.add(pg["dump"], f"the dump holds {in_dump.get(table, 0)} rows of table {table}, the manifest "
                                      f"says {fact.get('rows')}")
        except ToolError as exc:
            v.add(pg["dump"], f"pg_restore --list failed: {exc}")
        except BackupError as exc:
            v.add(pg["dump"], str(exc))
    archives = [(c["snapshot"], "snapshot") for c in (manifest.get("qdrant") or {}).get("collections", {}).values()]
    if (manifest.get("qdrant") or {}).get("archive"):
        archives.append((manifest["qdrant"]["archive"], "archive"))
    archives += [(vol["archive"], "volume") for vol in manifest.get("volumes", [])]
    for rel, kind in archives:
        if rel in bad:
            continue
        try:
            archive = inside(path, rel)
        except BackupError as exc:
            v.add("manifest", str(exc))
            continue
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = _read_all(tar)
        except (tarfile.TarError, OSError, EOFError) as exc:
            v.add(rel, f"{kind} not readable: {exc}")
            continue
        expected = next((vol.get("members") for vol in manifest.get("volumes", []) if vol["archive"] == rel), None)
        if expected is not None and members != expected:
            v.add(rel, f"{members} archive members, manifest says {expected}")
    v.facts["qdrant"] = (manifest.get("qdrant") or {}).get("collections", {})
    v.facts["volumes"] = manifest.get("volumes", [])
    v.facts["skipped"] = manifest.get("skipped", {})
    return v


def restorable_manifest(path: Path) -> dict[str, Any]:
    """The backup's manifest, only when it verifies every file and fact a restore uses; else
    :class:`BackupError` (raised before any change)."""
    manifest = read_manifest(path)
    try:
        problems = manifest_problems(path, manifest)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise BackupError(f"{path / MANIFEST}: malformed manifest ({type(exc).__name__}: {exc})") from None
    if problems:
        raise BackupError(f"backup {path.name} refused: its manifest does not verify it ({'; '.join(problems[:5])})")
    return manifest


def check_archive(archive: Path) -> int:
    """Read a tar archive to its end before anything is emptied for it: its member count, or
    :class:`BackupError` (unreadable, truncated, or a member that would land outside the volume)."""
    def inside_volume(member: tarfile.TarInfo) -> None:
        name = member.name.removeprefix("./")
        if name.startswith("/") or ".." in Path(name).parts or member.isdev():
            raise BackupError(f"{archive}: member {member.name!r} would land outside the volume: refused")

    try:
        with tarfile.open(archive, "r:") as tar:
            return _read_all(tar, inside_volume)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BackupError(f"{archive}: not a readable tar archive ({exc}): refused before any change") from None

