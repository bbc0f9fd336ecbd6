"""The service's PostgreSQL side (optional): a small connection pool and the ``tasks`` table."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import psycopg

from es_doctor.lab.metrics import Metrics

CREATE_TABLE = (
    "CREATE TABLE IF NOT EXISTS tasks ("
    " id bigserial PRIMARY KEY, title text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
)


class PgStore:
    def __init__(self, dsn: str, max_connections: int, idle_timeout_s: float, metrics: Metrics) -> None:
        self.dsn = dsn
        self.max_connections = max(1, max_connections)
        self.idle_timeout_s = idle_timeout_s
        self._metrics = metrics
        self._idle: list[tuple[float, psycopg.Connection]] = []
        self._active = 0
        self._cond = threading.Condition()
        self._table_ready = False

    def _gauges(self) -> None:
        self._metrics.db_connections.labels(state="active").set(self._active)
        self._metrics.db_connections.labels(state="idle").set(len(self._idle))

    @contextlib.contextmanager
    def connection(self, timeout: float = 5.0) -> Iterator[psycopg.Connection]:
        deadline = time.monotonic() + timeout
        conn: psycopg.Connection | None = None
        with self._cond:
            while True:
                now = time.monotonic()
                keep = [(t, c) for t, c in self._idle if now - t < self.idle_timeout_s and not c.closed]
                for _t, c in self._idle:
                    if all(c is not k for _k, k in keep):
                        c.close()
                self._idle = keep
                if self._idle:
                    conn = self._idle.pop()[1]
                    break
                if self._active < self.max_connections:
                    break
                if now >= deadline:
                    raise TimeoutError("connection pool exhausted")
                self._cond.wait(deadline - now)
            self._active += 1
            self._gauges()
        ok = False
        try:
            if conn is None:
                conn = psycopg.connect(self.dsn, connect_timeout=2, autocommit=True)
            yield conn
            ok = True
        finally:
            with self._cond:
                self._active -= 1
                if conn is not None and ok and not conn.closed:
                    self._idle.append((time.monotonic(), conn))
                elif conn is not None:
                    conn.close()
                self._gauges()
                self._cond.notify()

    def ensure_table(self) -> None:
        if self._table_ready:
            return
        with self.connection() as conn:
            conn.execute(CREATE_TABLE)
        self._table_ready = True

    def ping(self) -> bool:
        try:
            with self.connection(timeout=2.0) as conn:
                conn.execute("SELECT 1")
            return True
        except (psycopg.Error, TimeoutError, OSError):
            return False

    def insert_task(self, title: str) -> int:
        self.ensure_table()
        with self.connection() as conn:
            row = conn.execute("INSERT INTO tasks (title) VALUES (%s) RETURNING id", (title,)).fetchone()
        assert row is not None
        return int(row[0])

    def close(self) -> None:
        with self._cond:
            for _t, c in self._idle:
                c.close()
            self._idle.clear()
            self._gauges()
