"""Backups of the stack, their validation, the live data's validation, and the restore steps.

A backup is a directory ``<root>/<id>`` (the id is its UTC time, ``20261129T031500Z``) holding
``postgres/<db>.dump`` (pg_dump, custom format), ``qdrant/<collection>.snapshot`` (Qdrant's own
snapshots, downloaded), ``volumes/<volume>.tar`` and ``config/config.yaml``, and ``manifest.json``:
every file's size and sha256, plus the row counts and content hashes of the tables and collections.

It is written as ``<root>/.<id>.partial``; the manifest is written last and the directory renamed
only then, so a backup that was interrupted never looks complete: whatever has no manifest is not
a backup. Nothing is ever written outside the root, and an existing backup is never overwritten.

Every SDK goes through the probes; this module only orchestrates them and reads the files.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import sqlite3
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from es_doctor.config import Target
from es_doctor.probes.result import FailureKind
from es_doctor.probes.session import ProbeSession
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


class BackupStore:
    """The backup root: complete backups are ``<id>`` directories with a manifest."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser()

    def complete(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted((p.name for p in self.root.iterdir()
                       if is_backup_id(p.name) and not p.is_symlink() and (p / MANIFEST).is_file()),
                      key=id_order)

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
                raise BackupError(f"no complete backup in {self.root}")
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


# --------------------------------------------------------------------------- probes of a target


def Probes(target: Target, timeout: float = 60.0) -> ProbeSession:  # noqa: N802 - the session, by its old name
    """The backup's probe session: every client bounded by ``timeout`` (Docker's too)."""
    return ProbeSession(target, timeout=timeout, docker_timeout=timeout)


def _unwrap(result: Any, what: str) -> Any:
    if result.failure is not None:
        raise BackupError(f"{what}: {result.failure.message}")
    return result.value


def backup_volumes(target: Target) -> list[str]:
    """The volumes a backup copies as files: the configured ones but PostgreSQL's, whose data the
    dump holds consistently (a file copy of a running cluster is not)."""
    skip = {target.postgres.volume} if target.is_present("postgres")[0] else set()
    return [v for v in target.docker.volumes if v not in skip]


def helper_image(probes: ProbeSession) -> str:
    """An image already on the engine for the never-started helper container of volume copies."""
    t = probes.target
    for name in (t.service.container, t.qdrant.container, t.postgres.container):
        info = probes.docker().container(name)
        if info.value is not None:
            return str(info.value.image)
    images = _unwrap(probes.docker().images(), "Docker images")
    if not images:
        raise BackupError("no image on the Docker engine for the volume helper container")
    return str(images[0])


# --------------------------------------------------------------------------- backup


@dataclass
class Backup:
    """One backup being written."""

    target: Target
    target_name: str
    store: BackupStore
    reason: str = "emergency backup"
    progress: Progress = lambda _c, _d, _t: None
    cancel: threading.Event = field(default_factory=threading.Event)
    say: Callable[[str], None] = lambda _text: None
    #: back up while the service may write (no read-only mode set for it); recorded in the manifest
    live: bool = False
    _lift: bool = False

    def _check(self) -> None:
        if self.cancel.is_set():
            raise CancelledError("backup interrupted")

    def run(self) -> tuple[str, Path, dict[str, Any]]:
        """Write the backup; (id, directory, manifest). On any failure or interruption the partial
        directory is removed, and what was written is never left looking complete."""
        backup_id, partial = self.store.begin()
        probes = Probes(self.target)
        manifest: dict[str, Any] = {
            "format": FORMAT, "id": backup_id, "target": self.target_name, "reason": self.reason,
            "started_at": dt.datetime.now(dt.UTC).isoformat(), "files": [], "skipped": {},
            "postgres": None, "qdrant": None, "volumes": [],
        }
        components: list[tuple[str, Callable[[ProbeSession, Path, dict[str, Any]], None]]] = [
            ("postgres", self._postgres), ("qdrant", self._qdrant), ("volumes", self._volumes),
            ("config", self._config)]
        try:
            manifest["consistency"] = self._freeze()
            for n, (name, fn) in enumerate(components, 1):
                self._check()
                present, why = self.target.is_present("docker" if name == "volumes" else
                                                      "service" if name == "config" else name)
                if present:
                    fn(probes, partial, manifest)
                else:
                    manifest["skipped"][name] = why
                self.progress(name, n, len(components))
            self._check()
            manifest["finished_at"] = dt.datetime.now(dt.UTC).isoformat()
            manifest["files"] = self._files(partial)
            tmp = partial / (MANIFEST + ".tmp")
            with tmp.open("w", encoding="utf-8") as fh:
                json.dump(manifest, fh, indent=2, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            tmp.rename(partial / MANIFEST)  # the manifest comes last: now the backup is complete
            _fsync_dir(partial)
            final = self.store.commit(backup_id, partial)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        finally:
            probes.close()
            self._thaw()
        return backup_id, final, manifest

    def _service(self) -> Any:
        """The service's API (typed), with its bearer token: the mode is read and set through it."""
        return ProbeSession(self.target, timeout=10).service()

    def _freeze(self) -> dict[str, Any]:
        """Stop writes for the backup (read-only mode) unless ``live``: the dump, the snapshots and their
        digests then hold one state. What was done is recorded in the manifest (``consistency``)."""
        if self.live:
            self.say("consistency: live backup (--live): the service may write meanwhile")
            return {"mode": "live", "note": "taken while the service may write (--live): the database and the "
                                            "collections may be seconds apart"}
        present, why = self.target.is_present("service")
        if not present:
            return {"mode": "no service", "note": why}
        api = self._service()
        state = api.mode()
        if state.failure is not None:
            why = state.failure.message
            self.say(f"consistency: the service's mode cannot be read ({why}); writes may not be stopped")
            return {"mode": "unverified", "note": f"the service's mode could not be read ({why})"}
        if state.unwrap().writes_refused:
            return {"mode": "read-only", "by": f"the service was already in {state.unwrap().writes_refused} mode"}
        self._check()
        self.say("consistency: read-only mode for the backup (lifted afterwards; --live to skip)")
        set_on = api.set_readonly(True)
        after = api.mode()
        if set_on.failure is not None or not (after.value is not None and after.value.readonly):
            why = set_on.failure.message if set_on.failure is not None else "the service does not say readonly=true"
            raise BackupError(f"cannot put the service in read-only mode for the backup ({why}); "
                              "back up while it writes with --live")
        self._lift = True
        return {"mode": "read-only", "by": "es-doctor, for the duration of the backup"}

    def _thaw(self) -> None:
        if not self._lift:
            return
        self._lift = False
        lifted = self._service().set_readonly(False)
        if lifted.failure is not None:
            self.say(f"WARNING: read-only mode could not be lifted ({lifted.failure.message}): "
                     "the service still refuses writes; lift it with: es-doctor emergency readonly --off")
        else:
            self.say("consistency: read-only mode lifted")

    @staticmethod
    def _files(partial: Path) -> list[dict[str, Any]]:
        out = []
        for path in sorted(p for p in partial.rglob("*") if p.is_file()):
            with path.open("rb") as fh:
                os.fsync(fh.fileno())
            out.append({"path": path.relative_to(partial).as_posix(), "bytes": path.stat().st_size,
                        "sha256": sha256_file(path)})
        return out

    def _postgres(self, probes: ProbeSession, partial: Path, manifest: dict[str, Any]) -> None:
        from urllib.parse import urlsplit

        from es_doctor.tools import ToolError, pg_bin, pg_env, run_tool

        dsn, env = pg_env(self.target)
        database = urlsplit(dsn).path.strip("/") or "postgres"
        folder = inside(partial, "postgres")
        folder.mkdir()
        dest = inside(folder, safe_name(database) + ".dump")
        self.say(f"postgres: pg_dump {database}")
        pg = probes.postgres()
        try:  # the dump and the digests read the same exported snapshot: the manifest describes the dump
            with pg.exported_snapshot() as snapshot:
                run_tool([pg_bin("pg_dump"), "--format=custom", f"--snapshot={snapshot}", f"--file={dest}", dsn],
                         env, 6 * 3600, self.cancel)
                tables = _unwrap(pg.table_digests(snapshot=snapshot), "PostgreSQL tables")
        except ToolError as exc:
            raise BackupError(f"PostgreSQL: {exc}") from None
        except BackupError:
            raise
        except Exception as exc:  # noqa: BLE001 - the snapshot's connection: a clear error, not a traceback
            raise BackupError(f"PostgreSQL: {type(exc).__name__}: {exc}") from None
        manifest["postgres"] = {"database": database, "dump": dest.relative_to(partial).as_posix(), "tables": tables}

    def _qdrant(self, probes: ProbeSession, partial: Path, manifest: dict[str, Any]) -> None:
        q = probes.qdrant()
        folder = inside(partial, "qdrant")
        folder.mkdir()
        if q.embedded:
            location = self.target.qdrant.url[len("local:"):]
            if location == ":memory:":
                manifest["skipped"]["qdrant"] = "in-memory Qdrant: nothing on disk to back up"
                return
            dest = inside(folder, "local-storage.tar")
            self.say(f"qdrant: archive of the embedded storage {location}")
            with tarfile.open(dest, "w") as tar:
                tar.add(location, arcname=".")
            manifest["qdrant"] = {"embedded": True, "archive": dest.relative_to(partial).as_posix(),
                                  "collections": {}}
            return
        collections: dict[str, Any] = {}
        for name in _unwrap(q.collections(), "Qdrant collections"):
            self._check()
            info = _unwrap(q.collection(name), f"Qdrant collection {name}")
            points, digest, vector_sum, snapshot, earliest = self._stable_snapshot(q, name)
            dest = inside(folder, safe_name(name) + ".snapshot")
            self.say(f"qdrant: snapshot {snapshot} of {name} ({points} points)")
            downloaded = q.download_snapshot(name, snapshot, str(dest), self.cancel)
            # the copy is ours now, or the download failed: either way no snapshot is left on the server
            removed = q.delete_snapshot(name, snapshot)
            if downloaded.failure is not None and removed.failure is not None:
                self.say(f"qdrant: snapshot {snapshot} of {name} is left on the server "
                         f"(delete failed: {removed.failure.message})")
            _unwrap(downloaded, f"download of snapshot {snapshot}")
            collections[name] = {"snapshot": dest.relative_to(partial).as_posix(), "points": points,
                                 "sha256_points": digest, "vector_sum": vector_sum, "vector_size": info.vector_size,
                                 "distance": info.distance}
            if earliest is not None:  # --live, and the collection never held still: facts are bounds
                collections[name].update(approximate=True, points_at_least=earliest)
        manifest["qdrant"] = {"embedded": False, "collections": collections}

    def _stable_snapshot(self, q: Any, name: str, attempts: int = 3) -> tuple[int, str, float, str, int | None]:
        """A snapshot of ``name`` with the digest of what it holds: the points are hashed before and
        after the snapshot, and only a snapshot taken between two equal digests is kept (a write in
        between: the snapshot is deleted and taken again). Under ``--live`` a collection that never
        holds still keeps its last snapshot, its facts recorded as bounds (the last value is the
        point count before that snapshot: what it holds lies between); otherwise it is an error."""
        for attempt in range(attempts):
            self._check()
            before = _unwrap(q.digest(name), f"Qdrant points of {name}")
            snapshot = _unwrap(q.snapshot(name), f"snapshot of {name}")
            after = _unwrap(q.digest(name), f"Qdrant points of {name}")
            if before[:2] == after[:2]:
                return int(after[0]), str(after[1]), float(after[2]), str(snapshot), None
            if self.live and attempt == attempts - 1:
                self.say(f"qdrant: {name} kept changing (--live): its snapshot is kept, its facts recorded as "
                         f"bounds ({before[0]} to {after[0]} points)")
                return int(after[0]), str(after[1]), float(after[2]), str(snapshot), int(before[0])
            q.delete_snapshot(name, snapshot)
            self.say(f"qdrant: {name} changed during its snapshot ({before[0]} → {after[0]} points): again")
        raise BackupError(f"Qdrant collection {name} kept changing during {attempts} snapshots: stop writes "
                          "(es-doctor emergency readonly) and back up again")

    def _volumes(self, probes: ProbeSession, partial: Path, manifest: dict[str, Any]) -> None:
        wanted = backup_volumes(self.target)
        if not wanted:
            return
        folder = inside(partial, "volumes")
        folder.mkdir()
        image = helper_image(probes)
        for volume in wanted:
            self._check()
            dest = inside(folder, safe_name(volume) + ".tar")
            self.say(f"volumes: {volume}")
            _unwrap(probes.docker().volume_backup(volume, str(dest), image), f"volume {volume}")
            with tarfile.open(dest, "r:") as tar:
                members = sum(1 for _ in tar)
            manifest["volumes"].append({"volume": volume, "archive": dest.relative_to(partial).as_posix(),
                                        "members": members})

    def _config(self, probes: ProbeSession, partial: Path, manifest: dict[str, Any]) -> None:
        svc = self.target.service
        text: str | None = None
        why = ""
        if svc.config_file and Path(svc.config_file).expanduser().is_file():
            text = Path(svc.config_file).expanduser().read_text(encoding="utf-8", errors="replace")
        elif self.target.is_present("docker")[0]:
            got = probes.docker().read_file(svc.container, svc.config_path)
            text, why = (got.value, "") if got.ok else (None, got.failure.message if got.failure else "")
        if text is None:
            manifest["skipped"]["config"] = f"service config not readable: {why or 'no file'}"
            return
        folder = inside(partial, "config")
        folder.mkdir()
        inside(folder, "config.yaml").write_text(text, encoding="utf-8")


# --------------------------------------------------------------------------- validate a backup


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BackupError(f"{path / MANIFEST}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{path / MANIFEST}: not an es-doctor backup manifest ({FORMAT})")
    return manifest


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


# --------------------------------------------------------------------------- validate the live data


def scan_archive(archive: Path) -> list[str]:
    """Integrity problems of the files in a tar archive: JSON that does not parse, SQLite databases
    that fail ``PRAGMA integrity_check``."""
    problems: list[str] = []
    with tarfile.open(archive, "r:") as tar, tempfile.TemporaryDirectory() as tmp:
        for member in tar:
            handle = tar.extractfile(member) if member.isfile() else None
            if handle is None:
                continue
            name = member.name.removeprefix("./")
            head = handle.read(16)
            if head.startswith(b"SQLite format 3\x00"):
                copy = Path(tmp) / "db.sqlite"
                with copy.open("wb") as out:
                    out.write(head)
                    shutil.copyfileobj(handle, out, CHUNK)
                verdict = _sqlite_check(copy)
                if verdict != "ok":
                    problems.append(f"{name}: SQLite integrity check: {verdict}")
            elif name.endswith(".json") and member.size < 64 * CHUNK:
                try:
                    json.loads(head + handle.read())
                except ValueError as exc:
                    problems.append(f"{name}: not valid JSON ({exc})")
    return problems


def _sqlite_check(path: Path) -> str:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            rows = db.execute("PRAGMA integrity_check").fetchall()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    text = "; ".join(str(r[0]) for r in rows[:5])
    return text or "no answer"


def validate_live(target: Target, scan_volumes: bool = True, content: bool = False) -> Validation:
    """The live data: PostgreSQL (the tasks table, amcheck where installed), Qdrant (the collection,
    its status, its points against the rows that reference them), and the volumes (present, and the
    JSON and SQLite files in them intact). ``content``: also hash every row and point (to compare
    with a backup; it reads everything)."""
    v = Validation("live data")
    probes = Probes(target, timeout=60 if content else 30)
    try:
        row_ids = _live_postgres(target, probes, v, content)
        _live_qdrant(target, probes, v, row_ids, content)
        if target.is_present("docker")[0]:
            _live_volumes(target, probes, v, scan_volumes)
        else:
            v.notes.append(f"volumes not checked: {target.is_present('docker')[1]}")
    finally:
        probes.close()
    return v


def _live_postgres(target: Target, probes: ProbeSession, v: Validation, content: bool) -> set[int] | None:
    if not target.is_present("postgres")[0]:
        v.notes.append(f"PostgreSQL not checked: {target.is_present('postgres')[1]}")
        return None
    pg = probes.postgres()
    digests = pg.table_digests(content)
    if digests.failure is not None:
        v.add("postgres", f"unreachable: {digests.failure.message}")
        return None
    v.facts["postgres"] = {"tables": digests.value}
    table = target.postgres.tasks_table
    table_missing = not any(name.split(".", 1)[1] == table for name in digests.value or {})
    if table_missing:
        v.add("postgres", f"table {table} is missing")
    checked = pg.amcheck()
    if checked.failure is not None:
        v.add("postgres", f"amcheck failed: {checked.failure.message}", "WARN")
    else:
        installed, problems = checked.unwrap()
        if not installed:
            v.notes.append("amcheck is not installed in the database: indexes not verified "
                           "(CREATE EXTENSION amcheck, as a superuser)")
        for problem in problems:
            v.add("postgres", problem)
        v.facts["postgres"]["amcheck"] = "not installed" if not installed else f"{len(problems)} problem(s)"
    if table_missing:
        return None
    ids = pg.column_values(table, target.postgres.id_column)
    if ids.failure is not None:
        v.add("postgres", f"cannot read {table}: {ids.failure.message}")
        return None
    return {int(x) for x in ids.value or [] if x is not None}


def _live_qdrant(target: Target, probes: ProbeSession, v: Validation, row_ids: set[int] | None, content: bool) -> None:
    if not target.is_present("qdrant")[0]:
        v.notes.append(f"Qdrant not checked: {target.is_present('qdrant')[1]}")
        return
    q, name = probes.qdrant(), target.qdrant.collection
    info = q.collection(name)
    if info.failure is not None:
        v.add("qdrant", f"collection {name}: {info.failure.message}")
        return
    col = info.unwrap()
    if col.status != "green":
        v.add("qdrant", f"collection {name} status is {col.status}", "CRIT" if col.status == "red" else "WARN")
    digest = q.digest(name) if content else q.count(name)
    if digest.failure is not None:
        v.add("qdrant", f"cannot read the points of {name}: {digest.failure.message}")
        return
    got = digest.value
    points, sha, vector_sum = got if isinstance(got, tuple) else (got, None, None)
    v.facts["qdrant"] = {name: {"points": points, "sha256_points": sha, "vector_sum": vector_sum,
                                "status": col.status}}
    if row_ids is None:
        return
    def referenced() -> set[int] | None:
        refs = q.payload_ids(name, target.qdrant.task_id_key)
        if refs.failure is not None:
            v.add("qdrant", f"cannot read the {target.qdrant.task_id_key} of {name}: {refs.failure.message}")
            return None
        return {int(x) for x in refs.value or [] if isinstance(x, int | str) and str(x).isdigit()}

    refs = referenced()
    if refs is None:
        return
    orphans, missing = refs - row_ids, row_ids - refs
    if orphans or missing:
        # a live service writes meanwhile (the row, then its vector): only a difference that
        # is still there a moment later, on both sides, is damage
        time.sleep(STABLE_RECHECK_S)
        rows_again = probes.postgres().column_values(target.postgres.tasks_table, target.postgres.id_column)
        refs_again = referenced()
        if rows_again.failure is None and refs_again is not None:
            rows_now = {int(x) for x in rows_again.value or [] if x is not None}
            orphans = {i for i in orphans if i in refs_again and i not in rows_now}
            missing = {i for i in missing if i in rows_now and i not in refs_again}
    v.facts["qdrant"][name].update(rows=len(row_ids), orphans=len(orphans), without_vector=len(missing))
    if orphans:
        v.add("qdrant", f"{len(orphans)} point(s) of {name} reference no row of {target.postgres.tasks_table} "
                        f"(e.g. {sorted(orphans)[:5]})")
    if missing:
        v.add("qdrant", f"{len(missing)} row(s) of {target.postgres.tasks_table} have no vector in {name} "
                        f"(e.g. {sorted(missing)[:5]})")


def _live_volumes(target: Target, probes: ProbeSession, v: Validation, scan: bool) -> None:
    docker = probes.docker()
    image: str | None = None
    for volume in target.docker.volumes:
        exists = docker.volume_exists(volume)
        if exists.failure is not None:
            v.add("volumes", f"Docker unreachable: {exists.failure.message}")
            return
        if not exists.value:
            v.add("volumes", f"volume {volume} is missing")
            continue
        if not scan:
            continue
        image = image or helper_image(probes)
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / "volume.tar"
            got = docker.volume_backup(volume, str(copy), image)
            if got.failure is not None:
                v.add("volumes", f"volume {volume} not readable: {got.failure.message}")
                continue
            for problem in scan_archive(copy):
                v.add("volumes", f"{volume}: {problem}")


# --------------------------------------------------------------------------- restore


def require_write_freeze(target: Target) -> str:
    """Why writes are stopped (read-only or maintenance mode, or the service not running); else
    :class:`BackupError`: a restore never runs under a writing service."""
    session = ProbeSession(target, timeout=5, docker_timeout=10)
    mode = session.service().mode()
    if mode.value is not None:
        if mode.value.writes_refused:
            return f"the service is in {mode.value.writes_refused} mode"
        raise BackupError("the service accepts writes: put it in read-only or maintenance mode first "
                          "(es-doctor emergency readonly)")
    if target.is_present("docker")[0]:
        info = session.docker().container(target.service.container)
        if info.value is not None and not info.value.running:
            return f"the service container {target.service.container} is not running"
    why = mode.failure.message if mode.failure else "no answer"
    raise BackupError(f"cannot tell that writes are stopped ({why}): put the service in read-only or "
                      "maintenance mode, or stop its container")


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


def restore_volumes(target: Target, path: Path, say: Callable[[str], None] = lambda _t: None,
                    cancel: threading.Event | None = None) -> list[str]:
    """Each volume of the backup: its archive verified (manifest sha256, read to its end), then stop the
    containers that use it, recreate it empty, fill it from the archive (streamed), start them again
    (in the stack's start order)."""
    manifest = restorable_manifest(path)
    archives = {}
    for entry in manifest.get("volumes", []):  # every archive verified before the first volume is emptied
        archive = verified_file(path, manifest, entry["archive"])
        if check_archive(archive) != entry["members"]:
            raise BackupError(f"{entry['archive']}: member count differs from the manifest: refused")
        archives[entry["volume"]] = archive
    probes = Probes(target)
    docker = probes.docker()
    done: list[str] = []
    image = helper_image(probes) if manifest.get("volumes") else ""
    order = {name: i for i, name in enumerate(target.docker.start_order)}
    for entry in manifest.get("volumes", []):
        if cancel is not None and cancel.is_set():
            raise CancelledError("restore interrupted")
        volume, archive = entry["volume"], archives[entry["volume"]]
        users = _unwrap(docker.volume_users(volume), f"containers of {volume}")
        running = [u for u in users if (info := docker.container(u)).value is not None and info.value.running]
        for name in sorted(running, key=lambda n: -order.get(n, len(order))):
            say(f"stop {name} (uses {volume})")
            _unwrap(docker.stop(name), f"stop {name}")
        error: BaseException | None = None
        try:
            _unwrap(docker.volume_recreate(volume, image), f"recreate {volume}")
            _unwrap(docker.volume_restore(volume, str(archive), image), f"restore {volume}")
        except BaseException as exc:  # noqa: BLE001 - re-raised below, once the containers run again
            error = exc
        for name in sorted(running, key=lambda n: order.get(n, len(order))):
            say(f"start {name}")
            started = docker.start(name)
            if error is None:
                _unwrap(started, f"start {name}")
                _wait_ready(probes, name, cancel)
        if error is not None:
            raise error
        done.append(f"{volume} ({entry.get('members')} files) from {entry['archive']}")
    return done


def _wait_ready(probes: ProbeSession, container: str, cancel: threading.Event | None, timeout: float = 90.0) -> None:
    """After a start: PostgreSQL answers a query, Qdrant lists its collections (other containers:
    running)."""
    t = probes.target

    def ready() -> bool:
        if container == t.postgres.container and t.is_present("postgres")[0]:
            return bool(probes.postgres().select_one().ok)
        if container == t.qdrant.container and t.is_present("qdrant")[0]:
            probes.qdrant().close()  # a fresh connection: the old one went with the container
            return bool(probes.qdrant().collections().ok)
        info = probes.docker().container(container)
        return bool(info.value is not None and info.value.running)

    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise BackupError(f"{container} is not ready {timeout:g}s after its start")
        if cancel is not None and cancel.wait(1.0):
            raise CancelledError("restore interrupted")
        if cancel is None:
            time.sleep(1.0)


def _restore_list(dump: Path) -> str:
    """pg_restore's table of contents without extension entries: extensions belong to the DBA (a
    superuser), not to the application's data, and stay as they are."""
    from es_doctor.tools import pg_bin, run_tool

    toc = run_tool([pg_bin("pg_restore"), "--list", str(dump)], None, 600)
    return "\n".join(line for line in toc.splitlines()
                     if not re.match(r"^\d+; \d+ \d+ (EXTENSION|COMMENT - EXTENSION) ", line)) + "\n"


def pg_restore_file(target: Target, dump: Path, cancel: threading.Event | None = None) -> None:
    """``pg_restore --clean --if-exists --single-transaction`` of a custom-format dump into the
    target's database, extensions left alone: all of the dump, or nothing (:class:`BackupError`)."""
    from es_doctor.tools import ToolError, pg_bin, pg_env, run_tool

    dsn, env = pg_env(target)
    with tempfile.NamedTemporaryFile("w", suffix=".list", delete=False) as fh:
        try:
            fh.write(_restore_list(dump))
        except ToolError as exc:
            raise BackupError(f"{dump}: not a readable dump ({exc})") from None
    try:
        run_tool([pg_bin("pg_restore"), "--clean", "--if-exists", "--no-owner", "--single-transaction",
                  "--exit-on-error", f"--use-list={fh.name}", f"--dbname={dsn}", str(dump)], env, 6 * 3600, cancel)
    except ToolError as exc:
        raise BackupError(f"PostgreSQL restore (rolled back by PostgreSQL: nothing changed): {exc}") from None
    finally:
        Path(fh.name).unlink(missing_ok=True)


def restore_postgres(target: Target, path: Path, cancel: threading.Event | None = None) -> str:
    """The backup's dump restored with :func:`pg_restore_file`."""
    manifest = restorable_manifest(path)
    pg = manifest.get("postgres")
    if not pg:
        return "the backup holds no PostgreSQL dump"
    pg_restore_file(target, verified_file(path, manifest, pg["dump"]), cancel)
    tables = pg.get("tables", {})
    return f"database {pg.get('database')} restored ({len(tables)} tables, " \
           f"{sum(t['rows'] for t in tables.values())} rows)"


def restore_qdrant(target: Target, path: Path, cancel: threading.Event | None = None,
                   only: list[str] | None = None) -> list[str]:
    """Each collection of the backup (or only those named) recovered from its snapshot (uploaded)."""
    manifest = restorable_manifest(path)
    qd = manifest.get("qdrant") or {}
    if qd.get("embedded"):
        if only:
            raise BackupError("this backup holds an embedded Qdrant's whole storage: it is restored whole "
                              "(es-doctor emergency restore), not one collection")
        return [restore_embedded_qdrant(target, verified_file(path, manifest, qd["archive"]))]
    collections = {name: entry for name, entry in (qd.get("collections") or {}).items() if not only or name in only}
    absent = [name for name in only or [] if name not in collections]
    if absent:
        raise BackupError(f"backup {path.name} holds no snapshot of {', '.join(absent)}")
    snapshots = {name: verified_file(path, manifest, entry["snapshot"])
                 for name, entry in collections.items()}  # all verified before the first upload
    probes = Probes(target)
    done = []
    try:
        for name, entry in sorted(collections.items()):
            if cancel is not None and cancel.is_set():
                raise CancelledError("restore interrupted")
            _unwrap(probes.qdrant().upload_snapshot(name, str(snapshots[name])), f"recover {name}")
            done.append(f"{name} ({entry.get('points')} points)")
    finally:
        probes.close()
    return done


def restore_embedded_qdrant(target: Target, archive: Path) -> str:
    """The embedded Qdrant's storage directory replaced by the archive's content. Refused while a
    process holds the storage (qdrant-client's lock): nothing is changed then."""
    if not target.qdrant.url.startswith("local:") or target.qdrant.url == "local::memory:":
        raise BackupError(f"the backup holds an embedded Qdrant storage, the target's Qdrant is {target.qdrant.url}")
    storage = Path(target.qdrant.url[len("local:"):]).expanduser()
    probes = Probes(target, timeout=10)
    try:
        held = probes.qdrant().collections()  # opening it takes the lock: fails while another process has it
    finally:
        probes.close()
    if held.failure is not None and held.failure.kind is FailureKind.UNAVAILABLE:
        raise BackupError(f"{storage} is in use by another process (stop the service using it first)")
    try:
        with tarfile.open(archive, "r:") as tar:
            members = tar.getmembers()
            storage.mkdir(parents=True, exist_ok=True)
            for child in storage.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
            tar.extractall(storage, members=members, filter="data")  # no absolute path, no escape, no device
    except (tarfile.TarError, OSError) as exc:
        raise BackupError(f"embedded Qdrant storage {storage}: restore failed ({exc})") from None
    return f"embedded Qdrant storage {storage} restored ({len(members)} entries)"


def _close(got: float | None, want: float | None, points: int) -> bool:
    """Vector sums agree within float noise (a re-normalised float32 moves by about 1e-7)."""
    if got is None or want is None:
        return True
    return abs(got - want) <= 1e-4 * points


def compare(manifest: dict[str, Any], live: Validation) -> list[str]:
    """How the live data differs from what the backup recorded (row counts, hashes, points)."""
    out = []
    recorded = (manifest.get("postgres") or {}).get("tables", {})
    now = (live.facts.get("postgres") or {}).get("tables", {})
    for table, want in sorted(recorded.items()):
        got = now.get(table)
        if got is None:
            out.append(f"table {table}: missing (backup: {want['rows']} rows)")
        elif got != want:
            out.append(f"table {table}: {got['rows']} rows, md5 {got['md5'][:8]} (backup: {want['rows']} rows, "
                       f"md5 {want['md5'][:8]})")
    for name, want in sorted(((manifest.get("qdrant") or {}).get("collections") or {}).items()):
        got = (live.facts.get("qdrant") or {}).get(name)
        if got is None:
            continue
        if want.get("approximate"):  # a --live backup of a collection that kept changing: bounds only
            if not int(want.get("points_at_least", 0)) <= int(got["points"]) <= int(want["points"]):
                out.append(f"collection {name}: {got['points']} points (backup, taken live: between "
                           f"{want.get('points_at_least')} and {want['points']})")
            continue
        if (got["points"], got["sha256_points"]) != (want["points"], want["sha256_points"]):
            out.append(f"collection {name}: {got['points']} points (backup: {want['points']}), content differs"
                       if got["sha256_points"] != want["sha256_points"] else f"collection {name}: count differs")
        elif not _close(got.get("vector_sum"), want.get("vector_sum"), max(1, int(want["points"]))):
            out.append(f"collection {name}: the vectors differ (component sum {got.get('vector_sum')}, "
                       f"backup: {want.get('vector_sum')})")
    return out
