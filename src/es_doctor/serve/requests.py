"""Remediation requests in serve's SQLite database: one per (target, finding) while it fires.

A request's id is derived from the alert (:func:`es_doctor.remediation.alerts.request_id`); Alertmanager's
repeats, a new group, or a restart of ``serve`` find the open request of the pair and add to it. Every
step of its chain (alert, policy or approval, run, verification, notification) is an event of the request.
Webhook calls refused whole are kept in ``receipts``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from typing import Any

# the queries built here join constant column names and "?" placeholders only, never a value
# ruff: noqa: S608

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id TEXT PRIMARY KEY, target TEXT NOT NULL, finding TEXT NOT NULL, runbook TEXT,
    alertname TEXT, starts_at TEXT NOT NULL, fingerprint TEXT NOT NULL,
    state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', firing INTEGER NOT NULL DEFAULT 1,
    created REAL NOT NULL, updated REAL NOT NULL, runs INTEGER NOT NULL DEFAULT 0,
    approved_by TEXT, outcome TEXT, auto INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS requests_by_pair ON requests (target, finding, state);
CREATE TABLE IF NOT EXISTS request_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, request TEXT NOT NULL, at REAL NOT NULL,
    event TEXT NOT NULL, detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_request ON request_events (request, id);
CREATE TABLE IF NOT EXISTS receipts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, status INTEGER NOT NULL, reason TEXT NOT NULL,
    remote TEXT NOT NULL, bytes INTEGER NOT NULL
);
"""

#: states in which a request is still open (one per (target, finding))
OPEN = ("queued", "waiting-approval", "approved", "running")
#: the closed states, and what each means
CLOSED = {
    "fixed": "the cure ran and the finding's checks passed",
    "not-fixed": "the cure ran and the finding's checks still fail: escalated",
    "failed": "the cure failed (rolled back or not): escalated",
    "cleared": "the finding's check passed when checked before any run: nothing ran",
    "resolved-by-itself": "Alertmanager resolved the alert before anything ran",
    "escalated": "not run (policy never, rate limit, NOT FIXED before, breaker, no runbook): escalated",
    "observed": "observe mode: recorded what would have run, nothing ran",
    "denied": "a person denied it",
    "expired": "waited for an approval past remediation.approval_expiry_s: escalated, not run",
    "run-elsewhere": "another fix held the target's lock (another serve, or a person): not run here",
}
FIELDS = ("id", "target", "finding", "runbook", "alertname", "starts_at", "fingerprint", "state", "reason", "firing",
          "created", "updated", "runs", "approved_by", "outcome", "auto")


class Requests:
    def __init__(self, db: sqlite3.Connection, lock: threading.Lock) -> None:
        self._db, self._lock = db, lock
        with self._lock:
            self._db.executescript(SCHEMA)

    def _row(self, row: tuple[Any, ...] | None) -> dict[str, Any] | None:
        if row is None:
            return None
        item = dict(zip(FIELDS, row, strict=True))
        item["firing"], item["auto"] = bool(item["firing"]), bool(item["auto"])
        return item

    def _event(self, request: str, event: str, detail: dict[str, Any], at: float) -> None:
        self._db.execute("INSERT INTO request_events (request, at, event, detail) VALUES (?,?,?,?)",
                         (request, at, event, json.dumps(detail, ensure_ascii=False, default=str)))

    def receive(self, rid: str, target: str, finding: str, runbook: str | None, alertname: str | None,
                starts_at: str, fingerprint: str, status: str, detail: dict[str, Any],
                now: float | None = None) -> tuple[str, dict[str, Any]]:
        """One firing or resolved alert → (what happened, the request). What happened: ``new``, ``repeat`` (the
        pair's open request), ``replay`` (this alert's request is closed: nothing more), ``resolved`` (its open
        request, not yet run, closed as resolved by itself), ``resolved-late`` (resolved after it ran or while it
        runs: noted), ``unknown-resolved`` (a resolve for nothing held)."""
        at = time.time() if now is None else now
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                got = self._receive(rid, target, finding, runbook, alertname, starts_at, fingerprint, status,
                                    detail, at)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return got

    def _receive(self, rid: str, target: str, finding: str, runbook: str | None, alertname: str | None,
                 starts_at: str, fingerprint: str, status: str, detail: dict[str, Any],
                 at: float) -> tuple[str, dict[str, Any]]:
        marks = ",".join("?" * len(OPEN))
        open_row = self._row(self._db.execute(
            f"SELECT {','.join(FIELDS)} FROM requests WHERE target = ? AND finding = ? AND state IN ({marks}) "
            "ORDER BY created LIMIT 1", (target, finding, *OPEN)).fetchone())
        own = self._row(self._db.execute(f"SELECT {','.join(FIELDS)} FROM requests WHERE id = ?",
                                         (rid,)).fetchone())
        if status == "resolved":
            held = open_row or own
            if held is None:
                return "unknown-resolved", {"id": rid, "target": target, "finding": finding}
            self._db.execute("UPDATE requests SET firing = 0, updated = ? WHERE id = ?", (at, held["id"]))
            if held["state"] in ("queued", "waiting-approval"):
                self._close(held["id"], "resolved-by-itself", "Alertmanager resolved the alert before anything ran",
                            at)
                self._event(held["id"], "alert.resolved", detail, at)
                return "resolved", self._get(held["id"]) or held
            self._event(held["id"], "alert.resolved", {**detail, "note": f"while {held['state']}"}, at)
            return "resolved-late", held
        if open_row is not None:
            self._db.execute("UPDATE requests SET firing = 1, updated = ? WHERE id = ?", (at, open_row["id"]))
            self._event(open_row["id"], "alert.repeat", detail, at)
            return "repeat", open_row
        if own is not None:  # this very alert's request was closed: a repeat or a replay, nothing runs again
            self._event(rid, "alert.replay", {**detail, "note": f"the request is closed ({own['state']})"}, at)
            return "replay", own
        self._db.execute(
            "INSERT INTO requests (id, target, finding, runbook, alertname, starts_at, fingerprint, state, reason, "
            "firing, created, updated) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (rid, target, finding, runbook, alertname, starts_at, fingerprint, "queued", "received", 1, at, at))
        self._event(rid, "alert.firing", detail, at)
        return "new", self._get(rid) or {}

    def _get(self, rid: str) -> dict[str, Any] | None:
        return self._row(self._db.execute(f"SELECT {','.join(FIELDS)} FROM requests WHERE id = ?", (rid,)).fetchone())

    def _close(self, rid: str, state: str, reason: str, at: float) -> None:
        self._db.execute("UPDATE requests SET state = ?, reason = ?, updated = ? WHERE id = ?",
                         (state, reason, at, rid))
        self._event(rid, f"request.{state}", {"reason": reason}, at)

    # ------------------------------------------------------------------ the worker's and the API's side

    def get(self, rid: str) -> dict[str, Any] | None:
        with self._lock:
            return self._get(rid)

    def events(self, rid: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT at, event, detail FROM request_events WHERE request = ? ORDER BY id",
                                    (rid,)).fetchall()
        return [{"at": r[0], "event": r[1], "detail": json.loads(r[2])} for r in rows]

    def find(self, target: str | None = None, states: tuple[str, ...] = (), limit: int = 200) -> list[dict[str, Any]]:
        query = f"SELECT {','.join(FIELDS)} FROM requests"
        where, args = [], []
        if target is not None:
            where.append("target = ?")
            args.append(target)
        if states:
            where.append(f"state IN ({','.join('?' * len(states))})")
            args.extend(states)
        query += (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY created DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(query, (*args, limit)).fetchall()
        return [r for r in (self._row(row) for row in rows) if r is not None]

    def transition(self, rid: str, from_states: tuple[str, ...], state: str, reason: str,
                   detail: dict[str, Any] | None = None, now: float | None = None, **columns: Any) -> bool:
        """Move the request to ``state`` only when it is in one of ``from_states`` (atomic: two callers, one
        wins); record the event. False when it was not in those states."""
        at = time.time() if now is None else now
        sets = "".join(f", {name} = ?" for name in columns)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(
                    f"UPDATE requests SET state = ?, reason = ?, updated = ?{sets} WHERE id = ? AND state IN "
                    f"({','.join('?' * len(from_states))})", (state, reason, at, *columns.values(), rid, *from_states))
                if cur.rowcount:
                    self._event(rid, f"request.{state}", {"reason": reason, **(detail or {})}, at)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return bool(cur.rowcount)

    def note(self, rid: str, event: str, detail: dict[str, Any], now: float | None = None) -> None:
        with self._lock:
            self._event(rid, event, detail, time.time() if now is None else now)

    def count_run(self, rid: str, auto: bool) -> None:
        with self._lock:
            self._db.execute("UPDATE requests SET runs = runs + 1, auto = ? WHERE id = ?", (int(auto), rid))

    def runs_since(self, target: str, runbook: str, since: float) -> int:
        """Automatic runs of ``runbook`` on ``target`` started since ``since``."""
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*) FROM request_events e JOIN requests r ON r.id = e.request WHERE r.target = ? "
                "AND e.event = 'run.start' AND json_extract(e.detail, '$.runbook') = ? "
                "AND json_extract(e.detail, '$.auto') = 1 AND e.at >= ?", (target, runbook, since)).fetchone()
        return int(row[0])

    def last_not_fixed(self, target: str, runbook: str) -> float | None:
        """When ``runbook`` last ended NOT FIXED on ``target`` (a run by serve), or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT MAX(e.at) FROM request_events e JOIN requests r ON r.id = e.request WHERE r.target = ? "
                "AND e.event = 'run.end' AND json_extract(e.detail, '$.runbook') = ? "
                "AND json_extract(e.detail, '$.state') = 'not-fixed'", (target, runbook)).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def receipt(self, status: int, reason: str, remote: str, size: int, now: float | None = None) -> None:
        with self._lock:
            self._db.execute("INSERT INTO receipts (at, status, reason, remote, bytes) VALUES (?,?,?,?,?)",
                             (time.time() if now is None else now, status, reason[:500], remote, size))

    def receipts(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT at, status, reason, remote, bytes FROM receipts ORDER BY id DESC "
                                    "LIMIT ?", (limit,)).fetchall()
        return [{"at": r[0], "status": r[1], "reason": r[2], "remote": r[3], "bytes": r[4]} for r in rows]
