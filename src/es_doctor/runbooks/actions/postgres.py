"""PostgreSQL: SQL, pg_dump, pg_restore (passwords only through the environment)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from es_doctor.runbooks.actions.base import (
    ActionContext,
    ActionError,
    action,
    need,
    run_program,
    stamp,
    tool_call,
    unwrap,
)


@action("postgres.sql", lambda i: f"run SQL: {str(i.get('sql', ''))[:120]}")
def postgres_sql(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    rows = unwrap(ctx.postgres().query(str(need(inputs, "sql"))), "SQL")
    return {"rows": [list(r) for r in rows[:100]], "row_count": len(rows)}


@action("postgres.dump", lambda _i: "dump the database with pg_dump (custom format) into the run's directory")
def postgres_dump(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    from es_doctor.files import create_private
    from es_doctor.tools import pg_env

    dsn, env = tool_call(lambda: pg_env(ctx.target))
    dest = ctx.work_dir / f"postgres-{stamp()}.dump"
    os.close(create_private(dest))  # pg_dump truncates and fills it: the dump stays 0600
    run_program([_bin("pg_dump"), "--format=custom", f"--file={dest}", dsn], env,
                float(inputs.get("timeout", 600)), ctx)
    return {"dump": str(dest), "bytes": dest.stat().st_size}


@action("postgres.restore", lambda i: f"restore the database from {i.get('dump')} (pg_restore --clean, "
                                      "one transaction)", destructive=True)
def postgres_restore(inputs: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    from es_doctor.backup import pg_restore_file

    dump = need(inputs, "dump")
    if not Path(dump).is_file():
        raise ActionError(f"no dump {dump}")
    tool_call(lambda: pg_restore_file(ctx.probes, Path(dump), ctx.cancel))
    return {"restored_from": dump}


def _bin(name: str) -> str:
    from es_doctor.tools import pg_bin

    return str(tool_call(lambda: pg_bin(name)))
