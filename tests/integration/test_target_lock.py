"""The lock on the target itself (issue 11, item 7), against the harness' real PostgreSQL:

* two operators with two state dirs (two machines) cannot fix the same database at once, and the
  refused one names the holder;
* a refused contender never overwrites the holder's lock record;
* a fix killed with SIGKILL is reported by the next one: its last step, when, what may be half-done.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from support import cli_command, isolated_env

pytestmark = [pytest.mark.integration]

HOLD_DB = """id: hold-db
title: hold the database a few seconds
class: deploy
requires: [postgres]
params:
  seconds: {type: int, default: 4}
steps:
  - name: sleep
    action: postgres.sql
    inputs: {sql: "SELECT pg_sleep({{ params.seconds }})"}
    timeout: 60
"""

SLOW_PROGRAM = """id: slow-program
title: run a slow external program
class: deploy
requires: [postgres]
steps:
  - name: program
    action: shell
    inputs: {argv: [sleep, "30"], timeout: 60}
    timeout: 60
"""


def setup(tmp_path: Path) -> Path:
    rb_dir = tmp_path / "runbooks"
    rb_dir.mkdir(exist_ok=True)
    (rb_dir / "hold-db.yaml").write_text(HOLD_DB)
    (rb_dir / "slow-program.yaml").write_text(SLOW_PROGRAM)
    target = {"postgres": {"dsn": "env:ESD_LOCK_TEST_DSN"},
              "absent": dict.fromkeys(("docker", "grafana", "redis", "prometheus", "qdrant"), "not in this test")}
    config = tmp_path / "es-doctor.yaml"
    config.write_text(json.dumps({"targets": {"t": target}, "runbook_dirs": [str(rb_dir)]}))
    return config


def command(config: Path, home: Path, *args: str) -> tuple[list[str], dict[str, str]]:
    """One operator's es-doctor: its own state dir and audit log under ``home``."""
    env = isolated_env(home, {"COLUMNS": "200", "ES_DOCTOR_STATE_DIR": str(home / "state"),
                              "ES_DOCTOR_AUDIT_LOG": str(home / "audit.jsonl")})
    return cli_command("--config", str(config), "-t", "t", *args), env


def run(config: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv, env = command(config, home, *args)
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)


def start(config: Path, home: Path, *args: str) -> subprocess.Popen[str]:
    argv, env = command(config, home, *args)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 30
    while not any(e["event"] == "fix.step-start" for e in events(home)):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the fix never started its step"
        time.sleep(0.05)
    return proc


def events(home: Path) -> list[dict[str, object]]:
    path = home / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


@pytest.fixture
def config(tmp_path: Path, postgres_server: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ESD_LOCK_TEST_DSN", postgres_server)
    return setup(tmp_path)


def test_two_state_dirs_same_database_one_fix_at_a_time(config: Path, tmp_path: Path) -> None:
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    holder = start(config, alice, "fix", "hold-db", "--yes")
    refused = run(config, bob, "fix", "hold-db", "--yes", "--param", "seconds=0")
    out, err = holder.communicate(timeout=60)
    assert refused.returncode == 69, refused.stdout + refused.stderr
    assert "another fix holds the lock on the target's database: es-doctor fix hold-db" in refused.stderr
    assert not any(e["event"] == "fix.step" for e in events(bob)), "the refused fix ran a step"
    assert holder.returncode == 0, out + err
    start_record = next(e for e in events(alice) if e["event"] == "fix.start")
    assert start_record["lock"] == {"target_lock": "postgres advisory lock", "keys": [0x455344, 1]}
    assert os.environ.get("ESD_LOCK_TEST_DSN", "").split("@")[0] not in json.dumps(events(alice))
    # released at the end: bob can go now
    again = run(config, bob, "fix", "hold-db", "--yes", "--param", "seconds=0")
    assert again.returncode == 0, again.stdout + again.stderr


def test_a_refused_contender_leaves_the_holders_record(config: Path, tmp_path: Path) -> None:
    home = tmp_path / "op"
    holder = start(config, home, "fix", "hold-db", "--yes")
    lock_file = home / "state" / "locks" / "t.lock"
    before = json.loads(lock_file.read_text())
    refused = run(config, home, "fix", "hold-db", "--yes")
    during = json.loads(lock_file.read_text())
    holder.communicate(timeout=60)
    assert refused.returncode == 69
    assert f"runbook hold-db by {before['user']}@{before['host']} (pid {holder.pid}" in refused.stderr
    assert during == before and before["pid"] == holder.pid
    assert lock_file.read_text() == ""  # released at the end
    assert oct(lock_file.parent.stat().st_mode & 0o777) == "0o700" and oct(lock_file.stat().st_mode & 0o777) == "0o600"


def test_a_killed_fix_is_reported_by_the_next_one(config: Path, tmp_path: Path) -> None:
    home = tmp_path / "op"
    victim = start(config, home, "fix", "hold-db", "--yes", "--param", "seconds=20")
    dead_run = next(e for e in events(home) if e["event"] == "fix.start")["run_id"]
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=30)
    after = run(config, home, "fix", "hold-db", "--yes", "--param", "seconds=0")
    assert after.returncode == 0, after.stdout + after.stderr
    assert ("WARNING: a previous fix died without finishing: runbook hold-db by" in after.stdout
            and f"run {dead_run})" in after.stdout), after.stdout
    assert "its last step sleep (postgres.sql) started" in after.stdout
    assert "never finished: it may be half-done" in after.stdout
    report = next(e for e in events(home) if e["event"] == "fix.previous-run-died")
    assert report["half_done"] == "sleep" and report["completed"] == []
    assert report["previous"]["run_id"] == dead_run  # type: ignore[index]
    # reported once: the run after that one finds a clean lock
    clean = run(config, home, "fix", "hold-db", "--yes", "--param", "seconds=0")
    assert clean.returncode == 0 and "previous fix died" not in clean.stdout


def test_a_dead_run_whose_program_still_runs_blocks_the_next_fix(config: Path, tmp_path: Path) -> None:
    """SIGKILL ends es-doctor, not the program its step started: the next fix names that program and
    refuses (the dead run's record stays, so the attempt after reports it again) until it has ended."""
    import psutil

    home = tmp_path / "op"
    victim = start(config, home, "fix", "slow-program", "--yes")
    dead_run = next(e for e in events(home) if e["event"] == "fix.start")["run_id"]
    deadline = time.monotonic() + 20
    while not (children := psutil.Process(victim.pid).children(recursive=True)):
        assert time.monotonic() < deadline, "the step's program never started"
        time.sleep(0.05)
    program = children[0]
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=30)
    try:
        blocked = run(config, home, "fix", "hold-db", "--yes", "--param", "seconds=0")
        assert blocked.returncode == 69, blocked.stdout + blocked.stderr
        assert f"programs it started are still running: pid {program.pid} (sleep 30)" in blocked.stdout
        assert f"a step of the dead run {dead_run} is still running (pid {program.pid})" in blocked.stderr
        assert not any(e["event"] == "fix.start" and e["run_id"] != dead_run for e in events(home))
        lock_record = json.loads((home / "state" / "locks" / "t.lock").read_text())
        assert lock_record["run_id"] == dead_run, "the dead run's record is kept for the next attempt"
    finally:
        program.kill()
        program.wait(10)
    after = run(config, home, "fix", "hold-db", "--yes", "--param", "seconds=0")
    assert after.returncode == 0, after.stdout + after.stderr
    assert f"run {dead_run})" in after.stdout and "its last step program (shell) started" in after.stdout
    assert "still running" not in after.stdout
