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
    run_program([_bin("pg_dump"), "--format=custom", f"--file={dest}", dsn], env,
                inputs.timeout, ctx)
    return {"dump": str(dest), "bytes": dest.stat().st_size}


@action("postgres.restore", lambda i: f"restore the database from {i.get('dump')} (pg_restore --clean, "
                                      "one transaction)", RestoreInputs, destructive=True)
def postgres_restore(inputs: RestoreInputs, ctx: ActionContext) -> dict[str, Any]:
    from es_doctor.backup import pg_restore_file

    dump = inputs.dump
    if not Path(dump).is_file():
        raise ActionError(f"no dump {dump}")
    tool_call(lambda: pg_restore_file(ctx.probes, Path(dump), ctx.cancel))
    return {"restored_from": dump}


def _bin(name: str) -> str:
    from es_doctor.tools import pg_bin

    return str(tool_call(lambda: pg_bin(name)))
