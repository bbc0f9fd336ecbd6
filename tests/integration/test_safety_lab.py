"""Issue 11 on the real lab (docker mode, real PostgreSQL): proving a mode writes nothing (item 9)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from es_doctor.config import resolve_secret

pytestmark = [pytest.mark.integration, pytest.mark.docker]


def es_doctor(lab: Any, tmp_path: Path, *args: str, state: str = "state",
              timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ES_DOCTOR_LAB_DIR": str(lab.lab_dir), "ES_DOCTOR_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
           "ES_DOCTOR_STATE_DIR": str(tmp_path / state), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "es_doctor", "-t", "lab", *args], capture_output=True,
                          text=True, env=env, timeout=timeout, check=False)


def api(lab: Any, path: str) -> str:
    return f"http://127.0.0.1:{lab.stack.settings.ports.api}{path}"


def sql(lab: Any, query: str, *params: Any) -> Any:
    target = lab.target
    with psycopg.connect(resolve_secret(target.postgres.dsn) or "", password=resolve_secret(target.postgres.password),
                         autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(query, params).fetchone()
        return row[0] if row else None


def api_posts_to_tasks_without_user(lab: Any, since: dt.datetime) -> list[dict[str, Any]]:
    """The service's own log: POST /api/v1/tasks requests since ``since`` that were not the lab's
    traffic (which always sends X-User-ID): es-doctor's, if any."""
    log = Path(lab.target.service.log_dir) / lab.target.service.main_log
    out = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        stamp = dt.datetime.fromisoformat(str(record.get("timestamp", "")).replace("Z", "+00:00"))
        if stamp >= since and str(record.get("message", "")).startswith("POST /api/v1/tasks") \
                and not record.get("user_id"):
            out.append(record)
    return out


def test_readonly_on_and_off_are_proven_without_writing(healthy_lab: Any, tmp_path: Path) -> None:
    since = dt.datetime.now(dt.UTC)
    httpx.post(api(healthy_lab, "/api/v1/maintenance/readonly"), json={"enabled": True}, timeout=10)
    frozen = sql(healthy_lab, "SELECT count(*) FROM tasks")
    try:
        on = es_doctor(healthy_lab, tmp_path, "emergency", "readonly")
        assert on.returncode == 0, on.stdout + on.stderr
        assert "the service says readonly=true maintenance=false: writes are refused" in on.stdout
        assert sql(healthy_lab, "SELECT count(*) FROM tasks") == frozen  # read-only: nobody wrote, nor tried
        off = es_doctor(healthy_lab, tmp_path, "emergency", "readonly", "--off")
        assert off.returncode == 0, off.stdout + off.stderr
        assert "readonly=false maintenance=false: writes are accepted" in off.stdout
        assert httpx.get(api(healthy_lab, "/api/v1/maintenance"), timeout=10).json()["readonly"] is False
    finally:
        httpx.post(api(healthy_lab, "/api/v1/maintenance/readonly"), json={"enabled": False}, timeout=10)
    time.sleep(0.5)
    # the lab's own traffic writes tasks titled "word word #n"; es-doctor wrote none and attempted none
    ours = sql(healthy_lab, "SELECT count(*) FROM tasks WHERE created_at >= %s AND title !~ %s",
               since, r"^[a-z]+ [a-z]+ #[0-9]+$")
    assert ours == 0
    assert api_posts_to_tasks_without_user(healthy_lab, since) == []


def test_readonly_that_does_not_take_is_reported_not_proven_by_a_write(healthy_lab: Any, tmp_path: Path) -> None:
    """A service whose state does not follow (maintenance on, then asked to lift read-only only) is read,
    not probed by a write: --off says writes are still refused by maintenance mode."""
    since = dt.datetime.now(dt.UTC)
    httpx.post(api(healthy_lab, "/api/v1/maintenance/enable"), timeout=10)
    try:
        off = es_doctor(healthy_lab, tmp_path, "emergency", "readonly", "--off")
        assert off.returncode == 0, off.stdout + off.stderr
        assert "readonly=false maintenance=true: writes are refused" in off.stdout
    finally:
        httpx.post(api(healthy_lab, "/api/v1/maintenance/disable"), timeout=10)
    assert api_posts_to_tasks_without_user(healthy_lab, since) == []
