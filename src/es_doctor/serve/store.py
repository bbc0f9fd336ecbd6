"""The daemon's memory: the latest report of each target and every status change of every check, in an
embedded SQLite database (``<state_dir>/serve/serve.db``: the file 0600, its directory 0700).

A change is recorded when a check's status differs from its previous one (its first status too, so
"since when" always has an answer). Changes older than the retention are pruned, except each check's
latest (it says since when the current status holds).

A file that is not a readable SQLite database (damaged, truncated, another file) is renamed
``serve.db.corrupt-<UTC time>`` beside it, with a message, and a fresh history starts: serve never
refuses to start over its own history.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

from es_doctor.errors import CantCreateError
from es_doctor.files import PRIVATE_FILE, create_private, private_dir
from es_doctor.findings import Report
from es_doctor.render.json_report import as_dict
from es_doctor.statedir import ensure_writable_dir

SCHEMA = """
CREATE TABLE IF NOT EXISTS latest (target TEXT PRIMARY KEY, report TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    target TEXT NOT NULL, check_id TEXT NOT NULL, class TEXT NOT NULL,
    old TEXT, new TEXT NOT NULL, at REAL NOT NULL, summary TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_by_check ON changes (target, check_id, id);
"""


def private_file(path: Path) -> None:
    """``path``'s directory proved writable and made 0700, the file itself 0600 (before SQLite opens it;
    SQLite gives its journal the database file's mode). An unwritable state dir is exit 73."""
    ensure_writable_dir(path.parent, "serve state directory")
    private_dir(path.parent)
    if path.is_symlink():  # a planted link would send the history elsewhere
        raise CantCreateError(f"{path} is a symbolic link; refusing to open it as serve's database")
    if not path.exists():
        os.close(create_private(path))
    path.chmod(PRIVATE_FILE)


def _open(path: Path) -> sqlite3.Connection:
    """The database at ``path`` with its schema, proven readable (``PRAGMA quick_check``); sqlite3's
    DatabaseError when it is not a database or is damaged."""
    db = sqlite3.connect(str(path), check_same_thread=False, timeout=5.0, isolation_level=None)
    try:
        verdict = db.execute("PRAGMA quick_check").fetchone()
        if verdict and verdict[0] == "ok":
            db.executescript(SCHEMA)
            return db
    except BaseException:
        db.close()
        raise
    db.close()
    raise sqlite3.DatabaseError(f"quick_check: {verdict[0] if verdict else 'no answer'}")


def set_aside(path: Path, why: str) -> Path:
    """Rename a damaged database (and its journal files) to ``<name>.corrupt-<UTC time>`` beside it, with
    a message on stderr; the daemon then starts a fresh one (its history restarts, the old file is kept)."""
    from es_doctor.units import utc_stamp

    stamp = utc_stamp()
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    count = 1
    while aside.exists():  # set aside twice in a second: neither copy is lost
        count += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{count}")
    for suffix in ("", "-wal", "-shm", "-journal"):
        source = Path(f"{path}{suffix}")
        if source.exists():
            source.rename(Path(f"{aside}{suffix}"))
    print(f"es-doctor serve: {path} is not a readable database ({why}); set aside as {aside.name}, "
          "starting a fresh history", file=sys.stderr)
    return aside


class Store:
    def __init__(self, path: Path, retention_days: float) -> None:
        self.path = path
        self.retention_days = retention_days
        private_file(path)
        self._lock = threading.Lock()
        try:
            self._db = _open(path)
        except sqlite3.DatabaseError as exc:  # not a database, or damaged: kept aside, never lost, never fatal
            self.set_aside = set_aside(path, str(exc))
            private_file(path)
            self._db = _open(path)
        from es_doctor.serve.requests import Requests

        #: remediation requests (alerts received, their runs and verdicts)
        self.requests = Requests(self._db, self._lock)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def record(self, report: Report, now: float | None = None) -> list[dict[str, Any]]:
        """Keep ``report`` as the target's latest; record and return its status changes."""
        at = report.started_at.timestamp() if now is None else now
        with self._lock:
            previous = dict(self._db.execute(
                "SELECT check_id, new FROM changes WHERE id IN "
                "(SELECT MAX(id) FROM changes WHERE target = ? GROUP BY check_id)", (report.target,)).fetchall())
            changes = [
                {"target": report.target, "check": f.id, "class": f.check_class, "from": previous.get(f.id),
                 "to": f.status.value, "at": at, "summary": f.summary}
                for f in report.findings if previous.get(f.id) != f.status.value
            ]
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT INTO changes (target, check_id, class, old, new, at, summary) VALUES (?,?,?,?,?,?,?)",
                    [(c["target"], c["check"], c["class"], c["from"], c["to"], c["at"], c["summary"])
                     for c in changes])
                self._db.execute(
                    "INSERT INTO latest (target, report, at) VALUES (?,?,?) "
                    "ON CONFLICT(target) DO UPDATE SET report = excluded.report, at = excluded.at",
                    (report.target, json.dumps(as_dict(report), ensure_ascii=False), at))
                self._db.execute(
                    "DELETE FROM changes WHERE at < ? AND id NOT IN "
                    "(SELECT MAX(id) FROM changes GROUP BY target, check_id)",
                    ((time.time() if now is None else now) - self.retention_days * 86400,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return changes

    def latest(self, target: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT report FROM latest WHERE target = ?", (target,)).fetchone()
        return json.loads(row[0]) if row else None

    def history(self, target: str, limit: int = 200) -> list[dict[str, Any]]:
        """The target's status changes, newest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT check_id, class, old, new, at, summary FROM changes WHERE target = ? "
                "ORDER BY id DESC LIMIT ?", (target, limit)).fetchall()
        return [{"check": r[0], "class": r[1], "from": r[2], "to": r[3], "at": r[4], "summary": r[5]} for r in rows]

    def since(self, target: str) -> dict[str, float]:
        """Per check: when its current status began (its latest change)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT check_id, at FROM changes WHERE id IN "
                "(SELECT MAX(id) FROM changes WHERE target = ? GROUP BY check_id)", (target,)).fetchall()
        return {r[0]: r[1] for r in rows}
