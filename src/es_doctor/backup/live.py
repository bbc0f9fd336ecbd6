"""Validating the live data through the run's probe session: PostgreSQL (tables, amcheck), Qdrant (the
collection, its points against the rows), the volumes (present; JSON and SQLite files intact)."""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import tarfile
import tempfile
import time
from pathlib import Path

from es_doctor.backup.store import CHUNK, STABLE_RECHECK_S
from es_doctor.backup.validate import Validation
from es_doctor.backup.writer import helper_image
from es_doctor.config import Target
from es_doctor.probes.session import ProbeSession


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


def validate_live(session: ProbeSession, scan_volumes: bool = True, content: bool = False) -> Validation:
    """The live data: PostgreSQL (the tasks table, amcheck where installed), Qdrant (the collection,
    its status, its points against the rows that reference them), and the volumes (present, and the
    JSON and SQLite files in them intact), through ``session`` (the run's). ``content``: also hash every
    row and point (to compare with a backup; it reads everything)."""
    v = Validation("live data")
    target = session.target
    row_ids = _live_postgres(target, session, v, content)
    _live_qdrant(target, session, v, row_ids, content)
    if target.is_present("docker")[0]:
        _live_volumes(target, session, v, scan_volumes)
    else:
        v.notes.append(f"volumes not checked: {target.is_present('docker')[1]}")
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

