"""PostgreSQL probe (psycopg 3, imported lazily)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from es_doctor.probes.result import Failure, FailureKind, Result, guarded, short


@dataclass(frozen=True)
class PostgresProbe:
    dsn: str
    password: str | None = None
    timeout: float = 5.0

    def _classify(self, exc: BaseException) -> Failure:
        text = short(exc)
        if self.password:
            text = text.replace(self.password, "********")
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
        return conn

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> Result[list[tuple[Any, ...]]]:
        def run() -> list[tuple[Any, ...]]:
            with self._connect() as conn, conn.cursor() as cur:
                cur.execute(sql.encode(), params)  # sql comes from code or a runbook, never from a finding
                return list(cur.fetchall()) if cur.description else []

        return guarded(self._classify, run)

    def select_one(self) -> Result[int]:
        rows = self.query("SELECT 1")
        if rows.failure is not None:
            return Result(failure=rows.failure, elapsed_ms=rows.elapsed_ms)
        return Result(value=int((rows.value or [(0,)])[0][0]), elapsed_ms=rows.elapsed_ms)
