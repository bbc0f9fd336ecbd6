"""PostgreSQL: SQL, pg_dump, pg_restore (passwords only through the environment)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field

from es_doctor.runbooks.actions.base import (
    ActionContext,
    ActionError,
    Inputs,
    action,
    run_program,
    stamp,
    tool_call,
    unwrap,
)


class SqlInputs(Inputs):
    sql: str = Field(min_length=1, description="one SQL statement (shown whole in the plan)")


class DumpInputs(Inputs):
    timeout: float = Field(default=600.0, gt=0, description="seconds pg_dump may take")


class RestoreInputs(Inputs):
    dump: str = Field(min_length=1, description="the pg_dump file (custom format) to restore")
    drop_tables_not_in: list[str] | None = Field(default=None, description="the tables the dump was taken with "
                                                 "(postgres.dump's tables output): tables made after it are "
                                                 "dropped first")


@action("postgres.sql", lambda i: f"run SQL: {i.get('sql', '')}", SqlInputs)
def postgres_sql(inputs: SqlInputs, ctx: ActionContext) -> dict[str, Any]:
    rows = unwrap(ctx.postgres().query(inputs.sql), "SQL")
    return {"rows": [list(r) for r in rows[:100]], "row_count": len(rows)}


@action("postgres.dump", lambda _i: "dump the database with pg_dump (custom format) into the run's directory",
        DumpInputs)
def postgres_dump(inputs: DumpInputs, ctx: ActionContext) -> dict[str, Any]:
    from es_doctor.files import create_private
    from es_doctor.tools import pg_env

    dsn, env = tool_call(lambda: pg_env(ctx.target))
    dest = ctx.work_dir / f"postgres-{stamp()}.dump"
    os.close(create_private(dest))  # pg_dump truncates and fills it: the dump stays 0600
    tables = _tables(ctx)  # what exists when the dump is taken: a restore drops tables made after it
    run_program([_bin("pg_dump"), "--format=custom", f"--file={dest}", dsn], env,
                inputs.timeout, ctx)
    return {"dump": str(dest), "bytes": dest.stat().st_size, "tables": tables}


def _tables(ctx: ActionContext) -> list[str]:
    """The database's user tables as ``schema.table``."""
    rows = unwrap(ctx.postgres().query(TABLES_SQL), "list the tables")
    return sorted(f"{r[0]}.{r[1]}" for r in rows)


TABLES_SQL = ("SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
              "AND table_schema NOT IN ('pg_catalog', 'information_schema') AND table_schema NOT LIKE 'pg\\_%'")


@action("postgres.restore", lambda i: f"restore the database from {i.get('dump')} (pg_restore --clean, "
                                      "one transaction)" + (", dropping the tables made after the dump"
                                                            if i.get("drop_tables_not_in") is not None else ""),
        RestoreInputs, destructive=True)
def postgres_restore(inputs: RestoreInputs, ctx: ActionContext) -> dict[str, Any]:
    from es_doctor.backup import pg_restore_file

    dump = inputs.dump
    if not Path(dump).is_file():
        raise ActionError(f"no dump {dump}")
    dropped: list[str] = []
    if inputs.drop_tables_not_in is not None:  # tables the run created after its dump
        before = set(inputs.drop_tables_not_in)
        for table in _tables(ctx):
            if table not in before:
                schema, _, name = table.partition(".")
                unwrap(ctx.postgres().query(f"DROP TABLE IF EXISTS {_ident(schema)}.{_ident(name)} CASCADE"),
                       f"drop {table}")
                dropped.append(table)
    tool_call(lambda: pg_restore_file(ctx.probes, Path(dump), ctx.cancel))
    return {"restored_from": dump, "dropped_tables": dropped}


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _bin(name: str) -> str:
    from es_doctor.tools import pg_bin

    return str(tool_call(lambda: pg_bin(name)))
