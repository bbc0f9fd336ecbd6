"""`es-doctor fix data-migration-rollback` on the real lab and PostgreSQL (the guide's "Problème de
migration de données"): its `needs_maintenance` flag is enforced, a re-migration runs down then up,
and a failed one is undone from the dump taken first (rows identical, by content hash)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from support import cli_command, isolated_env

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.data_destructive]


def fix(lab: Any, tmp_path: Path, down_sql: str, up_sql: str) -> subprocess.CompletedProcess[str]:
    env = isolated_env(tmp_path, {"ES_DOCTOR_LAB_DIR": str(lab.lab_dir),
                                  "ES_DOCTOR_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
                                  "ES_DOCTOR_STATE_DIR": str(tmp_path / "state"), "COLUMNS": "200"})
    return subprocess.run(cli_command("-t", "lab", "fix", "data-migration-rollback", "--yes",
                           "--param", f"down_sql={down_sql}", "--param", f"up_sql={up_sql}"),
                          capture_output=True, text=True, env=env, timeout=600, check=False, stdin=subprocess.DEVNULL)


def maintenance(lab: Any, on: bool) -> None:
    url = f"http://127.0.0.1:{lab.stack.settings.ports.api}/api/v1/maintenance/{'enable' if on else 'disable'}"
    httpx.post(url, timeout=10).raise_for_status()


def sql(lab: Any, query: str) -> list[tuple[Any, ...]]:
    t = lab.target
    with psycopg.connect(t.postgres.dsn, password=t.postgres.password, autocommit=True, connect_timeout=5) as conn:
        cur = conn.execute(query)
        return list(cur.fetchall()) if cur.description else []


def tasks_state(lab: Any) -> tuple[Any, ...]:
    return sql(lab, "SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY id), '')) FROM tasks t")[0]


def test_needs_maintenance_is_enforced(healthy_lab: Any, tmp_path: Path) -> None:
    before = tasks_state(healthy_lab)
    result = fix(healthy_lab, tmp_path, "DELETE FROM tasks", "SELECT 1")
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-2000:]
    assert "precondition writes-stopped failed: nothing changed" in result.stdout
    assert "read-only or maintenance" in result.stdout
    assert sql(healthy_lab, "SELECT count(*) FROM tasks")[0][0] >= before[0], "no row was deleted"


def test_a_failed_re_migration_is_undone_from_the_dump(healthy_lab: Any, tmp_path: Path) -> None:
    maintenance(healthy_lab, True)
    try:
        before = tasks_state(healthy_lab)
        assert before[0] > 0
        result = fix(healthy_lab, tmp_path, "DELETE FROM tasks WHERE id % 2 = 0",
                     "ALTER TABLE no_such_table ADD COLUMN x int")
        assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-2000:]
        assert "data-migration-rollback: FAILED, ROLLED BACK" in result.stdout
        assert tasks_state(healthy_lab) == before, "every deleted row is back, as it was"
        assert "amcheck" in {r[0] for r in sql(healthy_lab, "SELECT extname FROM pg_extension")}
    finally:
        maintenance(healthy_lab, False)


def test_a_re_migration_runs_down_then_up(healthy_lab: Any, tmp_path: Path) -> None:
    maintenance(healthy_lab, True)
    try:
        result = fix(healthy_lab, tmp_path, "ALTER TABLE tasks DROP COLUMN IF EXISTS priority",
                     "ALTER TABLE tasks ADD COLUMN priority int NOT NULL DEFAULT 0")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
        assert "data-migration-rollback: FIXED" in result.stdout
        columns = {r[0] for r in sql(healthy_lab, "SELECT column_name FROM information_schema.columns "
                                                  "WHERE table_name = 'tasks'")}
        assert "priority" in columns
    finally:
        sql(healthy_lab, "ALTER TABLE tasks DROP COLUMN IF EXISTS priority")
        maintenance(healthy_lab, False)
