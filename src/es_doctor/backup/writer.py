"""Writing a backup: PostgreSQL (pg_dump under an exported snapshot), Qdrant (snapshots between two
equal digests), the volumes (tar through a helper container) and the service config; the manifest last.

Every client is the run's probe session's (:class:`es_doctor.probes.session.ProbeSession`): this module
builds none, and closes none (the session's owner does)."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tarfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from es_doctor.backup.store import (
    FORMAT,
    MANIFEST,
    BackupError,
    BackupStore,
    CancelledError,
    Progress,
    _fsync_dir,
    inside,
    safe_name,
    sha256_file,
)
from es_doctor.config import Target
from es_doctor.files import PRIVATE_DIR, PRIVATE_FILE
from es_doctor.probes.session import ProbeSession


def _unwrap(result: Any, what: str) -> Any:
    if result.failure is not None:
        raise BackupError(f"{what}: {result.failure.message}")
    return result.value


def target_identity(target: Target) -> dict[str, str]:
    """What tells a target's stack apart, without secrets: its PostgreSQL's host, port and database, its
    Qdrant's and API's addresses (recorded in a manifest; a restore compares them with the target's)."""
    from urllib.parse import urlsplit

    from es_doctor.probes.postgres import conninfo_to_dict
    from es_doctor.secrets import resolve_secret

    identity = {"service": target.service.api_url.rstrip("/")}
    if target.is_present("qdrant")[0]:
        url = urlsplit(target.qdrant.url)
        identity["qdrant"] = f"{url.scheme}://{url.hostname or ''}:{url.port or ''}{url.path}" if url.netloc \
            else target.qdrant.url
    if target.is_present("postgres")[0]:
        try:
            params = conninfo_to_dict(resolve_secret(target.postgres.dsn) or "")
        except Exception:  # noqa: BLE001 - a DSN that does not parse: the name alone tells the target
            params = {}
        if params:
            identity["postgres"] = (f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}/"
                                    f"{params.get('dbname') or params.get('user') or ''}")
    return identity


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


def _private(partial: Path) -> None:
    """Every directory of the backup 0700 and every file 0600 (pg_dump, Docker and the downloads create them
    with the umask's modes): a backup holds the stack's data. Symbolic links are neither followed nor kept."""
    for path in sorted(partial.rglob("*")):
        if path.is_symlink():
            path.unlink()
        elif path.is_dir():
            path.chmod(PRIVATE_DIR)
        else:
            path.chmod(PRIVATE_FILE)
    partial.chmod(PRIVATE_DIR)


@dataclass
class Backup:
    """One backup being written, through the run's probe session (``session.target`` is what is backed up)."""

    session: ProbeSession
    target_name: str
    store: BackupStore
    reason: str = "emergency backup"
    progress: Progress = lambda _c, _d, _t: None
    cancel: threading.Event = field(default_factory=threading.Event)
    say: Callable[[str], None] = lambda _text: None
    #: back up while the service may write (no read-only mode set for it); recorded in the manifest
    live: bool = False
    _lift: bool = False

    @property
    def target(self) -> Target:
        return self.session.target

    def _check(self) -> None:
        if self.cancel.is_set():
            raise CancelledError("backup interrupted")

    def run(self) -> tuple[str, Path, dict[str, Any]]:
        """Write the backup; (id, directory, manifest). On any failure or interruption the partial
        directory is removed, and what was written is never left looking complete."""
        backup_id, partial = self.store.begin()
        probes = self.session
        manifest: dict[str, Any] = {
            "format": FORMAT, "id": backup_id, "target": self.target_name, "reason": self.reason,
            "target_identity": target_identity(self.target),
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
            _private(partial)
            manifest["files"] = self._files(partial)
            tmp = partial / (MANIFEST + ".tmp")
            with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE_FILE), "w",
                           encoding="utf-8") as fh:
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
            self._thaw()
        return backup_id, final, manifest

    def _service(self) -> Any:
        """The service's API (typed), with its bearer token: the mode is read and set through it."""
        return self.session.service()

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

