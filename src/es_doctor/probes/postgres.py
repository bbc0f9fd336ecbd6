"""PostgreSQL probe (psycopg 3, imported lazily)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from es_doctor.probes.result import Failure, FailureKind, MarkedCleanup, Result, guarded, short, success
from es_doctor.secrets import scrub


def conninfo_to_dict(dsn: str) -> dict[str, Any]:
    """libpq's own parse of a DSN (URL or key=value form, percent-decoding included); raises on a bad one."""
    from psycopg import conninfo

    return dict(conninfo.conninfo_to_dict(dsn))


def make_conninfo(**params: str) -> str:
    """A key=value DSN from parameters, quoted as libpq wants."""
    from psycopg import conninfo

    return str(conninfo.make_conninfo(**params))


#: how often a connection's watcher looks at the step's cancel event (and whether the connection closed)
CANCEL_POLL_S = 0.1


def watch_cancel(conn: Any) -> None:
    """When the calling thread runs a runbook step (inside :func:`es_doctor.probes.http.cancellable`),
    cancel ``conn``'s running query as soon as the step is cancelled (Ctrl-C, its timeout): libpq's cancel
    request, sent from a watcher thread, makes the blocked call raise QueryCanceled at once, so the step
    stops and its rollback runs (a ``SELECT pg_sleep(600)`` no longer outlives the step). The watcher
    ends with the connection."""
    from es_doctor.probes.http import current_cancel

    cancel = current_cancel()
    if cancel is None:
        return

    def watch() -> None:
        while not conn.closed:
            if cancel.wait(CANCEL_POLL_S):
                with contextlib.suppress(Exception):  # the query may just have ended, the server be gone
                    conn.cancel_safe(timeout=5.0)
                return

    threading.Thread(target=watch, name="postgres:cancel-watch", daemon=True).start()


def split_dsn(dsn: str, password: str | None = None) -> tuple[str, str | None]:
    """A resolved DSN without its password (in the form it came in), and the password decoded.

    The password comes from the DSN (userinfo or ``?password=``, percent-decoded by libpq's parser) or
    else from ``password``. Raises ValueError (no secret in its message) on a DSN that does not parse.
    """
    try:
        params = conninfo_to_dict(dsn)
    except Exception as exc:  # noqa: BLE001 - psycopg.ProgrammingError; its text may quote the DSN
        raise ValueError(f"the PostgreSQL DSN does not parse: {scrub(str(exc), [dsn])}") from None
    found = params.pop("password", None)
    found = str(found) if found not in (None, "") else password
    if "://" in dsn:  # keep the URL form (callers read its database from the path): userinfo and query rebuilt
        parts = urlsplit(dsn)
        userinfo, at, hostport = parts.netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        kept = [item for item in parts.query.split("&") if item and unquote(item.split("=", 1)[0]) != "password"]
        netloc = f"{user}@{hostport}" if at and user else hostport
        clean = urlunsplit(parts._replace(netloc=netloc, query="&".join(kept)))  # the rest kept byte for byte
    else:
        clean = make_conninfo(**{k: str(v) for k, v in params.items() if v is not None})
    return clean, found or None


@dataclass(frozen=True)
class PostgresProbe:
    dsn: str
    password: str | None = None
    timeout: float = 5.0

    def _classify(self, exc: BaseException) -> Failure:
        text = short(exc)
        text = scrub(text, [self.password] if self.password else [])  # and any URL/DSN password it quotes
        name = type(exc).__name__
        lowered = text.lower()
        if "password authentication failed" in lowered or name == "InvalidPassword":
            return Failure(FailureKind.AUTH, text)
        if "timeout" in lowered or name in ("ConnectionTimeout", "QueryCanceled"):
            return Failure(FailureKind.TIMEOUT, text)
        if "refused" in lowered or "no such file" in lowered or "could not connect" in lowered:
            return Failure(FailureKind.REFUSED, text)
        if name in ("UndefinedTable", "InvalidCatalogName"):
            return Failure(FailureKind.NOT_FOUND, text)
        return Failure(FailureKind.ERROR, f"{name}: {text}")

    def _connect(self) -> Any:
        import psycopg

        kwargs: dict[str, Any] = {"connect_timeout": max(1, int(self.timeout)), "autocommit": True}
        if self.password:
            kwargs["password"] = self.password
        conn = psycopg.connect(self.dsn, **kwargs)
        conn.execute(f"SET statement_timeout = {int(self.timeout * 1000)}")
        watch_cancel(conn)
        return conn

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> Result[list[tuple[Any, ...]]]:
        def run() -> list[tuple[Any, ...]]:
            with self._connect() as conn, conn.cursor() as cur:
                # no parameters: the text is sent as it is (a literal % is not a placeholder)
                cur.execute(sql.encode(), params or None)  # sql comes from code or a runbook, never a finding
                return list(cur.fetchall()) if cur.description else []

        return guarded(self._classify, run)

    def select_one(self) -> Result[int]:
        rows = self.query("SELECT 1")
        if rows.failure is not None:
            return Result(failure=rows.failure, elapsed_ms=rows.elapsed_ms)
        return Result(value=int((rows.value or [(0,)])[0][0]), elapsed_ms=rows.elapsed_ms)

    @contextlib.contextmanager
    def exported_snapshot(self) -> Iterator[str]:
        """A repeatable-read transaction kept open while the caller works: its snapshot id, for
        ``pg_dump --snapshot`` and :meth:`table_digests` to see exactly the same data."""
        conn = self._connect()
        try:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            row = conn.execute("SELECT pg_export_snapshot()").fetchone()
            yield str(row[0])
        finally:
            with contextlib.suppress(Exception):
                conn.execute("ROLLBACK")
            conn.close()

    def table_digests(self, content: bool = True, snapshot: str | None = None) -> Result[dict[str, dict[str, Any]]]:
        """Every user table: its row count and (``content``) an md5 over its rows in a stable order,
        streamed through a server-side cursor: memory stays flat whatever the table's size. With
        ``snapshot`` (an exported snapshot id), everything is read as of that snapshot."""

        def run() -> dict[str, dict[str, Any]]:
            import hashlib

            from psycopg import sql

            out: dict[str, dict[str, Any]] = {}
            with self._connect() as conn:
                if snapshot is not None:
                    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
                tables = conn.execute(
                    "SELECT schemaname, tablename FROM pg_tables "
                    "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2").fetchall()
                for schema, table in tables:
                    name = sql.Identifier(schema) + sql.SQL(".") + sql.Identifier(table)
                    if not content:
                        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(name)).fetchone()
                        out[f"{schema}.{table}"] = {"rows": int(row[0]) if row else 0, "md5": None}
                        continue
                    digest, count = hashlib.md5(usedforsecurity=False), 0
                    with conn.transaction(), conn.cursor(name="es_doctor_digest") as cur:
                        cur.itersize = 5000
                        cur.execute(sql.SQL("SELECT t::text FROM {} AS t ORDER BY 1").format(name))
                        for (text,) in cur:
                            digest.update(str(text).encode() + b"\n")
                            count += 1
                    out[f"{schema}.{table}"] = {"rows": count, "md5": digest.hexdigest()}
                if snapshot is not None:
                    conn.execute("COMMIT")
            return out

        return guarded(self._classify, run)

    def amcheck(self) -> Result[tuple[bool, list[str]]]:
        """(amcheck installed, problems): ``bt_index_check`` on every B-tree index of the user schemas."""

        def run() -> tuple[bool, list[str]]:
            with self._connect() as conn:
                if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'amcheck'").fetchone() is None:
                    return False, []
                indexes = conn.execute(
                    "SELECT c.oid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_am a ON a.oid = c.relam "
                    "WHERE a.amname = 'btree' AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
                    "AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1").fetchall()
                problems: list[str] = []
                for (index,) in indexes:
                    try:
                        conn.execute("SELECT bt_index_check(%s::regclass, true)", (index,))
                    except Exception as exc:  # noqa: BLE001 - a corrupt index is a finding, not a crash
                        problems.append(f"index {index}: {short(exc)}")
                return True, problems

        return guarded(self._classify, run)

    def column_values(self, table: str, column: str) -> Result[list[Any]]:
        """Every value of ``table.column`` (names quoted as identifiers)."""

        def run() -> list[Any]:
            from psycopg import sql

            with self._connect() as conn:
                query = sql.SQL("SELECT {} FROM {}").format(sql.Identifier(column), sql.Identifier(table))
                return [r[0] for r in conn.execute(query).fetchall()]

        return guarded(self._classify, run)


    def delete_marked(self, table: str, id_column: str, ids: list[Any], title_column: str | None,
                      marker: str) -> Result[MarkedCleanup]:
        """Delete a load test's rows: those whose ``id_column`` is one of ``ids`` *and* whose ``title_column``
        starts with ``marker`` (names quoted as identifiers, values as parameters), in one transaction. A row
        with one of the ids but not the marker, or the marker but none of the ids, is counted and kept; with
        no ``title_column`` nothing is deleted (no row can be proven to be the run's)."""
        if not title_column:
            return success(MarkedCleanup(0, note="no load.title_column: no row can be proven to be this run's; "
                                                 "nothing deleted"))

        def run() -> MarkedCleanup:
            from psycopg import sql

            escaped = marker.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + " %"
            has_id = sql.SQL("{}::text = ANY(%(ids)s)").format(sql.Identifier(id_column))
            marked = sql.SQL("coalesce({} LIKE %(marker)s, false)").format(sql.Identifier(title_column))
            params: dict[str, Any] = {"ids": [str(i) for i in ids], "marker": escaped}
            count = sql.SQL("SELECT count(*) FILTER (WHERE {has_id} AND NOT {marked}), "
                            "count(*) FILTER (WHERE {marked} AND NOT {has_id}) FROM {table} "
                            "WHERE {has_id} OR {marked}").format(has_id=has_id, marked=marked,
                                                                  table=sql.Identifier(table))
            delete = sql.SQL("DELETE FROM {} WHERE {} AND {}").format(sql.Identifier(table), has_id, marked)
            with self._connect() as conn, conn.transaction(), conn.cursor() as cur:
                cur.execute(count, params)
                row = cur.fetchone()
                id_only, marker_only = (int(row[0]), int(row[1])) if row else (0, 0)
                cur.execute(delete, params)
                return MarkedCleanup(int(cur.rowcount), id_only, marker_only)

        return guarded(self._classify, run)

class AdvisoryLock:
    """A session-level ``pg_try_advisory_lock(k1, k2)`` held on its own connection until :meth:`release`
    (or until the process dies: the server then releases it). The session's ``application_name`` names
    the holder for a contender (:meth:`holder`)."""

    def __init__(self, dsn: str, password: str | None, keys: tuple[int, int], label: str,
                 timeout: float = 5.0) -> None:
        self.probe = PostgresProbe(dsn, password, timeout)
        self.keys, self.label = keys, label.encode("ascii", "replace").decode()[:63]
        self._conn: Any = None

    def acquire(self) -> Result[bool]:
        """True: held; False: another session holds it; a failure: the database cannot be reached."""

        def run() -> bool:
            import psycopg

            kwargs: dict[str, Any] = {"connect_timeout": max(1, int(self.probe.timeout)), "autocommit": True,
                                      "application_name": self.label, "keepalives": 1, "keepalives_idle": 30}
            if self.probe.password:
                kwargs["password"] = self.probe.password
            conn = psycopg.connect(self.probe.dsn, **kwargs)
            try:
                conn.execute(f"SET statement_timeout = {int(self.probe.timeout * 1000)}")
                row = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", self.keys).fetchone()
            except Exception:
                conn.close()
                raise
            if row and row[0]:
                self._conn = conn
                return True
            conn.close()
            return False

        return guarded(self.probe._classify, run)

    def holder(self) -> str:
        """Who holds the lock, as its session says (application name, client address, since)."""
        rows = self.probe.query(
            "SELECT a.application_name, host(a.client_addr), a.backend_start FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
            "AND l.classid = %s AND l.objid = %s AND l.objsubid = 2", (self.keys[0] & 0xFFFFFFFF, self.keys[1]))
        if rows.failure is not None or not rows.value:
            return "a session this role cannot see (ask the database administrator: pg_locks)"
        name, client, since = rows.value[0]
        when = f" since {since.isoformat(timespec='seconds')}" if since is not None else ""
        return f"{name or 'an unnamed session'} from {client or 'a local socket'}{when}"

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.execute("SELECT pg_advisory_unlock(%s, %s)", self.keys)
            except Exception:  # noqa: BLE001,S110 - closing the session releases it anyway
                pass
            finally:
                conn.close()
