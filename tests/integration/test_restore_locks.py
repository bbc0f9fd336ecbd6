"""A database with more tables than a one-transaction restore can lock (issue 24 item 17): on the real
PostgreSQL, the backup's validation says so before anything changes, and the restore refuses it before it
starts, naming ``max_locks_per_transaction`` and the value that would fit."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from es_doctor.backup import Backup, BackupError, BackupStore, check_fits, restore_postgres, validate_backup
from es_doctor.config import Target
from es_doctor.probes.session import ProbeSession
from es_doctor.runbooks.actions import REGISTRY, ActionContext, ActionError

pytestmark = pytest.mark.integration

#: tables with a serial primary key and a text column: about 19 locks each when restored in one transaction
TABLES = 400


def _tables(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'many'").fetchone()
    return int(row[0]) if row else 0


def _all_tables(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_tables "
                           "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')").fetchone()
    return int(row[0]) if row else 0


def test_a_dump_too_big_for_one_transaction_is_refused_before_it_starts(postgres_server: str,
                                                                         tmp_path: Path) -> None:
    target = Target.model_validate({"postgres": {"dsn": postgres_server},
                                    "absent": {"service": "t", "qdrant": "t", "docker": "t"}})
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        settings = conn.execute("SELECT current_setting('max_locks_per_transaction')::int * "
                                "(current_setting('max_connections')::int + "
                                "current_setting('max_prepared_transactions')::int)").fetchone()
        assert settings is not None and settings[0] < TABLES * 9, "the test server's lock table is too large"
        conn.execute("DROP SCHEMA IF EXISTS many CASCADE")
        conn.execute("CREATE SCHEMA many")
        for start in range(0, TABLES, 50):  # in batches: creating them takes locks too
            conn.execute(f"DO $$ BEGIN FOR i IN {start}..{start + 49} LOOP EXECUTE format("
                         "'CREATE TABLE many.t%s (id serial PRIMARY KEY, v text)', i); EXECUTE format("
                         "'INSERT INTO many.t%s (v) VALUES (''x'')', i); END LOOP; END $$")
    work = tmp_path / "runs" / "r"
    work.mkdir(parents=True)
    try:
        with ProbeSession(target, timeout=60) as session:
            backup_id, path, _manifest = Backup(session, "t", BackupStore(tmp_path / "backups"), live=True).run()
        assert _tables(postgres_server) == TABLES

        # validated as its restore will run: before, it validated and the restore failed later
        ctx = ActionContext(target, "t", work, backup_root=tmp_path / "backups")
        try:
            with pytest.raises(ActionError):
                REGISTRY["backup.validate"].call({"backup": backup_id}, ctx)
            checked = validate_backup(path)  # the action's problems, read again directly
            check_fits(ctx.probes, path, checked)
        finally:
            ctx.probes.close()
        problems = [str(p) for p in checked.problems]
        held = _all_tables(postgres_server)  # the many ones and whatever other tests left in the database
        assert held >= TABLES
        assert any("max_locks_per_transaction" in p and f"{held} tables" in p for p in problems), problems

        with ProbeSession(target, timeout=60) as session, pytest.raises(BackupError) as refused:
            restore_postgres(session, path)
        assert "refused before it started" in str(refused.value) and "max_locks_per_transaction" in str(refused.value)
        assert _tables(postgres_server) == TABLES, "nothing was dropped"
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            for start in range(0, TABLES, 50):
                conn.execute("; ".join(f"DROP TABLE IF EXISTS many.t{i}" for i in range(start, start + 50)))
            conn.execute("DROP SCHEMA IF EXISTS many CASCADE")

    # the same database without them fits: its backup validates, with a note saying so
    with ProbeSession(target, timeout=60) as session:
        _small_id, small, _ = Backup(session, "t", BackupStore(tmp_path / "backups"), live=True).run()
        checked = validate_backup(small)
        check_fits(session, small, checked)
    assert checked.ok and any("fits" in note for note in checked.notes), checked.as_dict()
