"""A cancelled or timed-out step stops (with its programs) before anything else runs; programs'
output never blocks them; pg tools never prompt. Real processes: the ``es-doctor fix`` CLI as a
subprocess interrupted with SIGINT, ``sh``/``sleep``/``seq``, and pg_dump/pg_restore against the
harness's PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from es_doctor.config import Target
from es_doctor.runbooks.audit import AuditLog
from es_doctor.runbooks.engine import Engine, RunOutcome, plan
from es_doctor.runbooks.loader import load_runbook_file
from es_doctor.tools import ToolError, live_groups, pg_bin, run_tool
from support import cli_command, isolated_env

pytestmark = pytest.mark.integration

SLEEP = "4.0173"  # a sleep argument no other process on the machine uses


def sleepers() -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["status"] != psutil.STATUS_ZOMBIE and any(SLEEP in part for part in cmdline):
            found.append(proc)
    return found


def runbook_text(marker: Path, *, timeout: float = 60, retries: int = 0, idempotent: bool = False) -> str:
    step = f"sleep {SLEEP}; echo STEP >> {marker}"
    return f"""
id: test-slow-step
title: a slow step and its rollback
description: the step appends STEP after a while; the rollback appends ROLLBACK
class: deploy
steps:
  - name: slow
    action: shell
    timeout: {timeout}
    retries: {retries}
    delay: 0
    inputs: {{argv: [sh, -c, "echo START >> {marker}; {step}"], idempotent: {str(idempotent).lower()}}}
rollback:
  - name: undo
    action: shell
    inputs: {{argv: [sh, -c, "echo ROLLBACK >> {marker}"]}}
"""


def audit_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


@pytest.mark.parametrize("presses", [1, 3])
def test_sigint_stops_the_step_and_its_programs_before_the_rollback(tmp_path: Path, presses: int) -> None:
    """One Ctrl-C: the step is stopped, then rolled back. An impatient operator pressing it three
    times gets the same: the later presses do not cut the rollback short nor tear the audit."""
    marker = tmp_path / "marker"
    rb_dir = tmp_path / "runbooks"
    rb_dir.mkdir()
    (rb_dir / "slow.yaml").write_text(runbook_text(marker))
    config = tmp_path / "es-doctor.yaml"
    config.write_text(f"runbook_dirs: [{rb_dir}]\n")
    audit = tmp_path / "audit.jsonl"
    env = isolated_env(tmp_path)
    env.update({"ES_DOCTOR_CONFIG": str(config), "ES_DOCTOR_AUDIT_LOG": str(audit),
                "ES_DOCTOR_STATE_DIR": str(tmp_path / "state"), "ES_DOCTOR_LAB_DIR": str(tmp_path / "nolab")})
    proc = subprocess.Popen(cli_command("fix", "test-slow-step", "--yes"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (marker.exists() and "START" in marker.read_text()):
        time.sleep(0.05)
    assert sleepers(), "the step's sleep did not start"
    time.sleep(1.5)
    for _ in range(presses):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.02)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert not sleepers(), "the step's sleep outlived es-doctor"
    time.sleep(float(SLEEP))  # had the step survived, it would write STEP by now
    assert "STEP" not in marker.read_text().split(), marker.read_text()
    records = audit_records(audit)
    # later presses only say that the step is being stopped or the rollback is running
    assert marker.read_text().split() == ["START", "ROLLBACK"], marker.read_text()
    assert [r["event"] for r in records].count("fix.interrupted") == 1
    events = [r["event"] for r in records]
    assert events.index("fix.interrupted") < events.index("fix.rollback") < len(events) - 1
    interrupted = next(r for r in records if r["event"] == "fix.interrupted")
    assert interrupted["step"] == "slow" and interrupted["stopped"] is True
    step = next(r for r in records if r["event"] == "fix.step" and r.get("step") == "slow")
    assert step["status"] == "interrupted"
    assert records[-1]["event"] == "fix.end" and records[-1]["outcome"] == RunOutcome.INTERRUPTED.value
    assert "rolled back" in records[-1]["message"]


def _engine(tmp_path: Path) -> Engine:
    return Engine(Target(), "t", AuditLog(tmp_path / "audit.jsonl", []), tmp_path / "state",
                  confirm=lambda _q: True, say=lambda _t: None)


def _load(text: str, tmp_path: Path) -> Any:
    path = tmp_path / "rb.yaml"
    path.write_text(text)
    return load_runbook_file(path)


@pytest.mark.parametrize("idempotent", [False, True])
def test_a_timed_out_step_is_stopped_before_any_retry(tmp_path: Path, idempotent: bool) -> None:
    marker = tmp_path / "marker"
    runbook = _load(runbook_text(marker, timeout=1, retries=1, idempotent=idempotent), tmp_path)
    started = time.monotonic()
    result = _engine(tmp_path).run(plan(runbook, Target(), "t"), yes=True)
    assert time.monotonic() - started < 15
    step = next(s for s in result.steps if s.name == "slow")
    assert step.status == "timeout" and "stopped" in step.error
    assert not sleepers() and not live_groups()
    time.sleep(float(SLEEP))
    lines = marker.read_text().split()
    # never STEP: each attempt was killed with its group before the next one (or the rollback) ran
    assert lines == (["START", "START", "ROLLBACK"] if idempotent else ["START", "ROLLBACK"])
    assert step.attempts == (2 if idempotent else 1)
    if not idempotent:
        assert "not retried" in step.error
    assert result.outcome is RunOutcome.ROLLED_BACK


def test_a_shell_step_printing_far_more_than_a_pipe_holds_finishes_at_once(tmp_path: Path) -> None:
    runbook = _load("""
id: test-chatty
title: chatty
description: prints 40000 lines
class: deploy
steps:
  - name: chatty
    action: shell
    timeout: 20
    inputs: {argv: [seq, 1, "40000"]}
""", tmp_path)
    started = time.monotonic()
    result = _engine(tmp_path).run(plan(runbook, Target(), "t"), yes=True)
    assert time.monotonic() - started < 5, "the step waited on a full pipe"
    assert result.outcome is RunOutcome.DONE, result.steps
    assert result.steps[0].output["output"].rstrip().endswith("39999\n40000")


def test_run_tool_keeps_head_and_tail_and_says_what_it_dropped() -> None:
    text = run_tool(["seq", "1", "1000000"], None, 30, keep=64 * 1024)  # 6.9 MB of output
    assert text.startswith("1\n2\n3\n") and text.rstrip().endswith("999999\n1000000")
    assert "bytes of output dropped" in text
    dropped = int(text.split("[… ")[1].split(" bytes")[0])
    assert dropped == len("".join(f"{n}\n" for n in range(1, 1000001))) - 64 * 1024
    assert len(text) < 70 * 1024


def test_run_tool_kills_the_whole_group_on_timeout() -> None:
    started = time.monotonic()
    with pytest.raises(ToolError, match="timed out"):
        # the child leaves a grandchild behind in the background: it must die with the group
        run_tool(["sh", "-c", f"sleep {SLEEP} & sleep {SLEEP}; wait"], None, 1.0)
    assert time.monotonic() - started < 8
    assert not sleepers() and not live_groups()


@pytest.mark.parametrize("redirect", [">/dev/null 2>&1", ""])
def test_run_tool_reaps_what_a_finished_program_left_in_its_group(redirect: str) -> None:
    started = time.monotonic()
    # without a redirect the background sleep holds the output pipe open: no EOF to wait for
    assert run_tool(["sh", "-c", f"sleep {SLEEP} {redirect} & echo done"], None, 30).strip() == "done"
    assert time.monotonic() - started < 3
    assert not sleepers()


def test_run_tool_gives_the_program_no_stdin() -> None:
    started = time.monotonic()
    assert run_tool(["sh", "-c", "cat; echo eof"], None, 10).strip() == "eof"
    assert time.monotonic() - started < 5


# --------------------------------------------------------------------------- PostgreSQL tools


def test_pg_restore_list_of_a_dump_with_hundreds_of_tables_completes(postgres_server: str, tmp_path: Path) -> None:
    import psycopg

    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS many CASCADE")
        conn.execute("CREATE SCHEMA many")
        conn.execute("".join(f"CREATE TABLE many.table_with_a_rather_long_name_{n:04d} "
                             f"(id serial primary key, note text default 'x'); " for n in range(400)))
    try:
        target = Target.model_validate({"postgres": {"dsn": postgres_server}})
        from es_doctor.tools import pg_env

        dsn, env = pg_env(target)
        dump = tmp_path / "many.dump"
        run_tool([pg_bin("pg_dump"), "--format=custom", f"--file={dump}", "--schema=many", dsn], env, 120)
        started = time.monotonic()
        toc = run_tool([pg_bin("pg_restore"), "--list", str(dump)], None, 60)
        assert time.monotonic() - started < 30
        assert len(toc.encode()) > 64 * 1024, "the listing must be more than a pipe holds"
        assert sum(1 for line in toc.splitlines() if " TABLE DATA many " in line) == 400
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute("DROP SCHEMA IF EXISTS many CASCADE")


def test_pg_dump_never_prompts_for_a_password(postgres_server: str, tmp_path: Path) -> None:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(postgres_server)
    no_password = urlunsplit(parts._replace(netloc=f"{parts.username}@{parts.hostname}:{parts.port}"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGPASSFILE"] = str(tmp_path / "none")
    started = time.monotonic()
    with pytest.raises(ToolError, match="password"):
        run_tool([pg_bin("pg_dump"), "--format=custom", f"--file={tmp_path / 'x.dump'}", no_password], env, 60)
    assert time.monotonic() - started < 10


def _reap(proc: subprocess.Popen[str]) -> None:
    """A failed wait must not leave the fix (and its lock on the database) running into the next test."""
    if proc.poll() is None:
        proc.kill()
        proc.communicate(timeout=30)


def _pg_restores(dump: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["status"] != psutil.STATUS_ZOMBIE and cmdline and Path(cmdline[0]).name == "pg_restore" \
                and str(dump) in cmdline:
            found.append(proc)
    return found


def test_sigint_mid_restore_stops_pg_restore_and_postgresql_keeps_its_data(postgres_server: str,
                                                                             tmp_path: Path) -> None:
    """Ctrl-C while pg_restore loads a dump: pg_restore is killed with its group before the rollback,
    its single transaction is rolled back by PostgreSQL, the table keeps the rows it had."""
    import psycopg

    from es_doctor.tools import pg_env

    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS big CASCADE")
        conn.execute("CREATE SCHEMA big")
        conn.execute("CREATE TABLE big.rows AS SELECT n, md5(n::text) AS h FROM generate_series(1, 3000000) AS n")
        conn.execute("CREATE INDEX ON big.rows (h)")  # built inside the restore's transaction: more time
    marker = tmp_path / "marker"
    dump = tmp_path / "big.dump"
    try:
        dsn, env = pg_env(Target.model_validate({"postgres": {"dsn": postgres_server}}))
        run_tool([pg_bin("pg_dump"), "--format=custom", "--compress=0", f"--file={dump}", "--schema=big", dsn],
                 env, 300)
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute("DELETE FROM big.rows WHERE n > 10")
        rb_dir = tmp_path / "runbooks"
        rb_dir.mkdir()
        (rb_dir / "restore.yaml").write_text(f"""
id: test-restore
title: restore a dump
description: pg_restore of a large dump; the rollback marks the file
class: deploy
steps:
  - name: restore
    action: postgres.restore
    timeout: 300
    inputs: {{dump: "{dump}"}}
rollback:
  - name: undo
    action: shell
    inputs: {{argv: [sh, -c, "echo ROLLBACK >> {marker}"]}}
""")
        config = tmp_path / "es-doctor.yaml"
        config.write_text(f"runbook_dirs: [{rb_dir}]\ntargets:\n  pg:\n    postgres: {{dsn: '{postgres_server}'}}\n")
        audit = tmp_path / "audit.jsonl"
        env = isolated_env(tmp_path)
        env.update({"ES_DOCTOR_CONFIG": str(config), "ES_DOCTOR_AUDIT_LOG": str(audit),
                    "ES_DOCTOR_STATE_DIR": str(tmp_path / "state"), "ES_DOCTOR_LAB_DIR": str(tmp_path / "nolab")})
        proc = subprocess.Popen(cli_command("-t", "pg", "fix", "test-restore", "--yes"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            deadline = time.monotonic() + 30
            # the command line as listed (a `pg_restore --list` of the dump may have ended since: no re-read)
            while time.monotonic() < deadline and not any("--single-transaction" in (p.info["cmdline"] or [])
                                                          for p in _pg_restores(dump)):
                time.sleep(0.05)
            assert _pg_restores(dump), "pg_restore did not start"
            # interrupted right as it loads the rows (3 million of them, with an index to build after: on a
            # quiet machine the whole restore can take under a second, so no pause here)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
        finally:
            _reap(proc)
        assert proc.returncode == 130, out + err
        assert not _pg_restores(dump), "pg_restore outlived es-doctor"
        assert marker.read_text().split() == ["ROLLBACK"]
        records = audit_records(audit)
        assert next(r for r in records if r["event"] == "fix.interrupted")["stopped"] is True
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            rows = 0
            end = time.monotonic() + 20  # the server ends the dead client's transaction
            while time.monotonic() < end:
                busy = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_restore'"
                                    ).fetchone()
                if busy is not None and busy[0] == 0:
                    break
                time.sleep(0.2)
            count = conn.execute("SELECT count(*) FROM big.rows").fetchone()
            rows = count[0] if count else -1
        assert rows == 10, f"the interrupted restore changed the table ({rows} rows)"
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute("DROP SCHEMA IF EXISTS big CASCADE")


def test_a_step_that_cannot_be_stopped_is_reported_and_nothing_is_rolled_back_under_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A call that does not look at the cancel event (an SDK call without a cancel of its own) outlives the
    step's timeout and the stop grace: the step is reported as still running (output and audit), and the
    rollback is not started under it. (A PostgreSQL statement is cancelled: the next test.)"""
    import threading

    from es_doctor.runbooks import stepper as stepper_module
    from es_doctor.runbooks.actions.base import REGISTRY, ActionSpec, NoInputs

    release = threading.Event()

    def deaf(_inputs: Any, _ctx: Any) -> dict[str, Any]:
        release.wait(30)  # ignores ctx.cancel
        return {}

    from es_doctor.runbooks import model as model_module

    monkeypatch.setattr(model_module, "ACTION_NAMES", frozenset(model_module.ACTION_NAMES) | {"test.deaf"})
    monkeypatch.setitem(REGISTRY, "test.deaf", ActionSpec("test.deaf", lambda _i: "a call that ignores the cancel",
                                                          deaf, NoInputs))
    marker = tmp_path / "marker"
    runbook = _load(f"""
id: test-stuck
title: a call that ignores the cancel
description: the call outlives the step timeout and the stop grace
class: deploy
steps:
  - name: stuck
    action: test.deaf
    timeout: 1
rollback:
  - name: undo
    action: shell
    inputs: {{argv: [sh, -c, "echo ROLLBACK >> {marker}"]}}
""", tmp_path)
    target = Target.model_validate({"absent": {"service": "t", "qdrant": "t", "docker": "t", "postgres": "t"}})
    said: list[str] = []
    engine = Engine(target, "t", AuditLog(tmp_path / "audit.jsonl", []), tmp_path / "state",
                    confirm=lambda _q: True, say=said.append)
    monkeypatch.setattr(stepper_module, "STOP_GRACE_S", 2.0)  # not 15 s: the test would wait for it
    try:
        result = engine.run(plan(runbook, target, "t"), yes=True)
    finally:
        release.set()
    step = result.steps[0]
    assert step.status == "running" and "could not be stopped" in step.error
    assert result.outcome is RunOutcome.FAILED and "no rollback was started" in result.message
    assert not marker.exists()
    assert any("could not be stopped" in line for line in said)
    records = audit_records(tmp_path / "audit.jsonl")
    assert next(r for r in records if r["event"] == "fix.step")["status"] == "running"
    assert "no rollback was started" in records[-1]["message"]


# --------------------------------------------------------------------------- a step stuck in psycopg (issue 24 item 9)

PG_SLEEP_MARK = "es_doctor_cancel_test_4173"


def pg_sleep_runbook(marker: Path) -> str:
    return f"""
id: test-pg-sleep
title: a query that sleeps and its rollback
description: the step sleeps in PostgreSQL for ten minutes; the rollback appends ROLLBACK
class: deploy
steps:
  - name: sleep
    action: postgres.sql
    timeout: 2
    inputs: {{sql: "SELECT pg_sleep(600) AS {PG_SLEEP_MARK}"}}
rollback:
  - name: undo
    action: shell
    inputs: {{argv: [sh, -c, "echo ROLLBACK >> {marker}"]}}
"""


def sleeping_queries(dsn: str) -> int:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE %s "
                           "AND pid <> pg_backend_pid()", (f"%{PG_SLEEP_MARK}%",)).fetchone()
    return int(row[0]) if row else 0


def test_a_step_stuck_in_a_postgres_query_is_cancelled_at_its_timeout_and_rolled_back(
        postgres_server: str, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    target = Target.model_validate({"postgres": {"dsn": postgres_server}})
    runbook = _load(pg_sleep_runbook(marker), tmp_path)
    engine = Engine(target, "t", AuditLog(tmp_path / "audit.jsonl", []), tmp_path / "state",
                    confirm=lambda _q: True, say=lambda _t: None)
    started = time.monotonic()
    result = engine.run(plan(runbook, target, "t"), yes=True)
    took = time.monotonic() - started
    step = next(s for s in result.steps if s.name == "sleep")
    assert step.status == "timeout" and "stopped" in step.error, step
    assert "could not be stopped" not in result.message, result.message
    assert marker.read_text().split() == ["ROLLBACK"], "the rollback did not run"
    assert took < 12, f"{took:.1f}s: the query was not cancelled"
    assert sleeping_queries(postgres_server) == 0, "the query still runs in PostgreSQL"


def test_ctrl_c_during_a_postgres_query_cancels_it_and_rolls_back(postgres_server: str, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    rb_dir = tmp_path / "runbooks"
    rb_dir.mkdir()
    (rb_dir / "pg.yaml").write_text(pg_sleep_runbook(marker).replace("timeout: 2", "timeout: 300"))
    config = tmp_path / "es-doctor.yaml"
    config.write_text(json.dumps({"runbook_dirs": [str(rb_dir)], "targets": {"t": {
        "postgres": {"dsn": postgres_server}}}}))
    audit = tmp_path / "audit.jsonl"
    env = isolated_env(tmp_path)
    env.update({"ES_DOCTOR_AUDIT_LOG": str(audit), "ES_DOCTOR_STATE_DIR": str(tmp_path / "state"),
                "ES_DOCTOR_LAB_DIR": str(tmp_path / "nolab")})
    proc = subprocess.Popen(cli_command("-c", str(config), "-t", "t", "fix",
                             "test-pg-sleep", "--yes"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not sleeping_queries(postgres_server):
            time.sleep(0.1)
        assert sleeping_queries(postgres_server) == 1, "the step's query did not start"
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        _reap(proc)
    assert proc.returncode == 130, out + err
    assert time.monotonic() - started < 10, "the step was not stopped at once"
    assert "could not be stopped" not in out + err, out + err
    assert sleeping_queries(postgres_server) == 0, "the query outlived es-doctor"
    assert marker.read_text().split() == ["ROLLBACK"], out + err
    interrupted = next(r for r in audit_records(audit) if r["event"] == "fix.interrupted")
    assert interrupted["stopped"] is True
