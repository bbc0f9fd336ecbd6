"""Restoring a backup through the run's probe session: the write freeze required first, every file
verified against the manifest before anything changes, then volumes, PostgreSQL (one transaction) and
Qdrant (snapshots uploaded); :func:`compare` says how the live data differs from what the backup recorded."""

from __future__ import annotations

import re
import shutil
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from es_doctor.backup.store import BackupError, CancelledError
from es_doctor.backup.validate import Validation, check_archive, restorable_manifest, verified_file
from es_doctor.backup.writer import _unwrap, helper_image
from es_doctor.probes.result import FailureKind
from es_doctor.probes.session import ProbeSession


def require_write_freeze(session: ProbeSession) -> str:
    """Why writes are stopped (read-only or maintenance mode, or the service not running); else
    :class:`BackupError`: a restore never runs under a writing service."""
    target = session.target
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


def restore_volumes(session: ProbeSession, path: Path, say: Callable[[str], None] = lambda _t: None,
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
    probes, target = session, session.target
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


#: heavyweight locks one object of a restore list takes in one transaction (the old object dropped, the new
#: one created, with their TOAST tables, indexes and row types), measured on PostgreSQL 15 with
#: pg_locks: a table with a text column 9, a sequence 4, a primary key or index 5; any other entry 1
LOCKS_PER_ENTRY = {"TABLE": 9, "MATERIALIZED VIEW": 9, "SEQUENCE": 4, "INDEX": 5, "CONSTRAINT": 5,
                   "FK CONSTRAINT": 2, "VIEW": 4}
#: entries that take no lock of their own (data loads, sequence values, ownership, grants, comments)
NO_LOCK = ("TABLE DATA", "MATERIALIZED VIEW DATA", "SEQUENCE SET", "SEQUENCE OWNED BY", "ACL", "COMMENT",
           "DEFAULT ACL", "BLOB", "BLOBS", "LARGE OBJECT")
#: the kinds of a restore list's entries, longest first (``TABLE DATA`` is not a ``TABLE``)
_KINDS = sorted({*LOCKS_PER_ENTRY, *NO_LOCK, "DEFAULT"}, key=len, reverse=True)
_TOC_HEAD = re.compile(r"^\d+; \d+ \d+ ")


def restore_lock_need(toc: str) -> tuple[int, int]:
    """(tables, heavyweight locks) a one-transaction restore of the list ``toc`` holds at its end: every
    dropped and created object stays locked until the commit (an upper estimate; data entries take none)."""
    tables = locks = 0
    for line in toc.splitlines():
        head = _TOC_HEAD.match(line)
        if head is None:
            continue
        rest = line[head.end():]
        kind = next((k for k in _KINDS if rest.startswith(k + " ")), rest.split(" ", 1)[0])
        if kind in NO_LOCK:
            continue
        tables += kind == "TABLE"
        locks += LOCKS_PER_ENTRY.get(kind, 1)
    return tables, locks


@dataclass(frozen=True)
class LockTable:
    """The server's lock table: ``per_transaction * (connections + prepared)`` locks."""

    per_transaction: int
    connections: int
    prepared: int

    @property
    def size(self) -> int:
        return self.per_transaction * (self.connections + self.prepared)

    def __str__(self) -> str:
        return (f"max_locks_per_transaction {self.per_transaction} x (max_connections {self.connections} + "
                f"max_prepared_transactions {self.prepared})")


def lock_table(session: ProbeSession) -> LockTable | None:
    """The target PostgreSQL's lock table; None when it cannot be read (the restore then says why it fails)."""
    got = session.postgres().query(
        "SELECT current_setting('max_locks_per_transaction')::int, current_setting('max_connections')::int, "
        "current_setting('max_prepared_transactions')::int")
    if got.failure is not None or not got.value:
        return None
    per, connections, prepared = (int(x) for x in got.value[0])
    return LockTable(per, connections, prepared)


def restore_fits(session: ProbeSession, toc: str) -> str | None:
    """Why a one-transaction restore of ``toc`` cannot run on the target's PostgreSQL (its lock table is too
    small: PostgreSQL would fail it with "out of shared memory", maybe hours in), or None when it fits."""
    table = lock_table(session)
    tables, need = restore_lock_need(toc)
    if table is None or need <= table.size:
        return None
    wanted = -(-need // max(1, table.connections + table.prepared))
    return (f"the dump holds {tables} tables: restoring it in one transaction takes about {need} locks, and this "
            f"PostgreSQL holds at most {table.size} ({table}). Raise max_locks_per_transaction to at least "
            f"{wanted} (postgresql.conf, then restart PostgreSQL) before restoring")


def check_fits(session: ProbeSession, path: Path, found: Validation) -> None:
    """Validate the backup at ``path`` as its restore will run on the target: a dump whose one-transaction
    restore cannot fit in the target PostgreSQL's lock table is a problem (CRIT) in ``found``."""
    from es_doctor.tools import ToolError

    if not session.target.is_present("postgres")[0]:
        return
    try:
        manifest = restorable_manifest(path)
        pg = manifest.get("postgres")
        if not pg:
            return
        listing = _restore_list(verified_file(path, manifest, pg["dump"]))
    except (BackupError, ToolError):
        return  # the file checks have said what is wrong with the backup itself
    why = restore_fits(session, listing)
    if why is not None:
        found.add(pg["dump"], f"cannot be restored into this target: {why}")
    else:
        found.notes.append("the dump's one-transaction restore fits the target PostgreSQL's lock table")


def pg_restore_file(session: ProbeSession, dump: Path, cancel: threading.Event | None = None) -> None:
    """``pg_restore --clean --if-exists --single-transaction`` of a custom-format dump into the
    target's database, extensions left alone: all of the dump, or nothing (:class:`BackupError`). Refused
    before it starts when the server's lock table cannot hold the transaction (:func:`restore_fits`)."""
    from es_doctor.tools import ToolError, pg_bin, pg_env, run_tool

    dsn, env = pg_env(session.target)
    try:
        listing = _restore_list(dump)
    except ToolError as exc:
        raise BackupError(f"{dump}: not a readable dump ({exc})") from None
    why = restore_fits(session, listing)
    if why is not None:
        raise BackupError(f"PostgreSQL restore refused before it started (nothing changed): {why}")
    with tempfile.NamedTemporaryFile("w", suffix=".list", delete=False) as fh:
        fh.write(listing)
    try:
        run_tool([pg_bin("pg_restore"), "--clean", "--if-exists", "--no-owner", "--single-transaction",
                  "--exit-on-error", f"--use-list={fh.name}", f"--dbname={dsn}", str(dump)], env, 6 * 3600, cancel)
    except ToolError as exc:
        raise BackupError(f"PostgreSQL restore (rolled back by PostgreSQL: nothing changed): {exc}") from None
    finally:
        Path(fh.name).unlink(missing_ok=True)


def restore_postgres(session: ProbeSession, path: Path, cancel: threading.Event | None = None) -> str:
    """The backup's dump restored with :func:`pg_restore_file`."""
    manifest = restorable_manifest(path)
    pg = manifest.get("postgres")
    if not pg:
        return "the backup holds no PostgreSQL dump"
    pg_restore_file(session, verified_file(path, manifest, pg["dump"]), cancel)
    tables = pg.get("tables", {})
    return f"database {pg.get('database')} restored ({len(tables)} tables, " \
           f"{sum(t['rows'] for t in tables.values())} rows)"


def restore_qdrant(session: ProbeSession, path: Path, cancel: threading.Event | None = None,
                   only: list[str] | None = None) -> list[str]:
    """Each collection of the backup (or only those named) recovered from its snapshot (uploaded)."""
    manifest = restorable_manifest(path)
    qd = manifest.get("qdrant") or {}
    if qd.get("embedded"):
        if only:
            raise BackupError("this backup holds an embedded Qdrant's whole storage: it is restored whole "
                              "(es-doctor emergency restore), not one collection")
        return [restore_embedded_qdrant(session, verified_file(path, manifest, qd["archive"]))]
    collections = {name: entry for name, entry in (qd.get("collections") or {}).items() if not only or name in only}
    absent = [name for name in only or [] if name not in collections]
    if absent:
        raise BackupError(f"backup {path.name} holds no snapshot of {', '.join(absent)}")
    snapshots = {name: verified_file(path, manifest, entry["snapshot"])
                 for name, entry in collections.items()}  # all verified before the first upload
    done = []
    for name, entry in sorted(collections.items()):
        if cancel is not None and cancel.is_set():
            raise CancelledError("restore interrupted")
        _unwrap(session.qdrant().upload_snapshot(name, str(snapshots[name])), f"recover {name}")
        done.append(f"{name} ({entry.get('points')} points)")
    return done


def restore_embedded_qdrant(session: ProbeSession, archive: Path) -> str:
    """The embedded Qdrant's storage directory replaced by the archive's content. Refused while a
    process holds the storage (qdrant-client's lock): nothing is changed then. The session's embedded
    client is closed before the storage is replaced (it reopens on its next use)."""
    target = session.target
    if not target.qdrant.url.startswith("local:") or target.qdrant.url == "local::memory:":
        raise BackupError(f"the backup holds an embedded Qdrant storage, the target's Qdrant is {target.qdrant.url}")
    storage = Path(target.qdrant.url[len("local:"):]).expanduser()
    try:
        held = session.qdrant().collections()  # opening it takes the lock: fails while another process has it
    finally:
        session.qdrant().close()  # our own hold on the storage goes before the files are replaced
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
