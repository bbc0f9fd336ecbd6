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

from es_doctor.secrets import resolve_secret

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


# --------------------------------------------------------------------------- backups (items 5 and 6)


def emergency(lab: Any, state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ES_DOCTOR_LAB_DIR": str(lab.lab_dir), "ES_DOCTOR_AUDIT_LOG": str(state / "audit.jsonl"),
           "ES_DOCTOR_STATE_DIR": str(state), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "es_doctor", "-t", "lab", "emergency", *args], capture_output=True,
                          text=True, env=env, timeout=600, check=False, stdin=subprocess.DEVNULL)


def made_backup(result: subprocess.CompletedProcess[str]) -> str:
    import re

    found = re.search(r"^backup (\d{8}T\d{6}Z(?:-\d+)?): ", result.stdout, re.M)
    assert found, result.stdout[-3000:] + result.stderr[-2000:]
    return found.group(1)


def dump_rows(dump: Path, table: str = "public.tasks") -> int:
    """Rows of ``table`` in a custom-format dump, as pg_restore writes them out (COPY data lines)."""
    from es_doctor.tools import pg_bin

    text = subprocess.run([pg_bin("pg_restore"), "--data-only", "--file=-", str(dump)], capture_output=True,
                          text=True, check=True, timeout=300).stdout
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"COPY {table} "))
    end = lines.index("\\.", start)
    return end - start - 1


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))


def readonly_state(lab: Any) -> bool:
    return bool(httpx.get(api(lab, "/api/v1/maintenance"), timeout=10).json()["readonly"])


def test_backup_is_taken_under_read_only_and_describes_what_it_saved(healthy_lab: Any, tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert readonly_state(healthy_lab) is False  # the lab's traffic is writing tasks
    made = emergency(healthy_lab, state, "backup")
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-2000:]
    assert "consistency: read-only" in made.stdout
    assert readonly_state(healthy_lab) is False, "read-only mode was lifted after the backup"
    folder = state / "backups" / made_backup(made)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["consistency"] == {"mode": "read-only", "by": "es-doctor, for the duration of the backup"}
    recorded = manifest["postgres"]["tables"]["public.tasks"]["rows"]
    assert dump_rows(folder / "postgres" / "email_sender.dump") == recorded


def test_live_backup_is_recorded_and_its_digests_are_those_of_the_dump(healthy_lab: Any, tmp_path: Path) -> None:
    """--live: the service keeps writing (the lab's traffic), yet the table facts are those of the dump
    (pg_dump and the digests read one exported snapshot)."""
    state = tmp_path / "state"
    before = sql(healthy_lab, "SELECT count(*) FROM tasks")
    made = emergency(healthy_lab, state, "backup", "--live")
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-2000:]
    folder = state / "backups" / made_backup(made)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["consistency"]["mode"] == "live"
    recorded = manifest["postgres"]["tables"]["public.tasks"]["rows"]
    assert dump_rows(folder / "postgres" / "email_sender.dump") == recorded
    time.sleep(1.0)
    assert sql(healthy_lab, "SELECT count(*) FROM tasks") > before, "the lab kept writing during the live backup"


def test_restore_refuses_a_tampered_manifest_before_any_change(healthy_lab: Any, tmp_path: Path) -> None:
    state = tmp_path / "state"
    made = emergency(healthy_lab, state, "backup")
    bid = made_backup(made)
    folder = state / "backups" / bid
    original = json.loads((folder / "manifest.json").read_text())
    assert emergency(healthy_lab, state, "validate", bid).returncode == 0

    # the dump taken out of manifest.files: it can no longer be verified, so it is never used
    tampered = {**original, "files": [f for f in original["files"] if not f["path"].startswith("postgres/")]}
    write_manifest(folder, tampered)
    checked = emergency(healthy_lab, state, "validate", bid)
    assert checked.returncode == 2, checked.stdout[-3000:]
    assert "PostgreSQL dump postgres/email_sender.dump: not in the manifest's files" in checked.stdout

    httpx.post(api(healthy_lab, "/api/v1/maintenance/readonly"), json={"enabled": True}, timeout=10)
    try:
        rows = sql(healthy_lab, "SELECT count(*) FROM tasks")
        refused = emergency(healthy_lab, state, "restore", bid, "--yes")
        assert refused.returncode == 1, refused.stdout[-3000:] + refused.stderr[-2000:]
        assert "not in the manifest's files" in refused.stdout
        assert sql(healthy_lab, "SELECT count(*) FROM tasks") == rows
        assert sorted(p.name for p in (state / "backups").iterdir()) == [bid], "refused before the safety backup"
        steps = [(r.get("step"), r.get("status")) for r in
                 map(json.loads, (state / "audit.jsonl").read_text().splitlines())
                 if r.get("event") == "fix.step" and r.get("runbook") == "emergency-restore"]
        assert steps == [("writes-stopped", "ok"), ("check-backup", "failed")], steps

        # a nearly empty manifest verifies nothing: it does not validate, and restores nothing
        write_manifest(folder, {"format": original["format"], "id": bid, "files": [], "postgres": None,
                                "qdrant": None, "volumes": []})
        empty = emergency(healthy_lab, state, "validate", bid)
        assert empty.returncode == 2 and "it lists no file" in empty.stdout, empty.stdout[-3000:]

        # a fact the restore is compared against, removed: refused too
        no_facts = json.loads(json.dumps(original))
        del no_facts["postgres"]["tables"]
        write_manifest(folder, no_facts)
        facts = emergency(healthy_lab, state, "validate", bid)
        assert facts.returncode == 2 and "postgres: no tables recorded" in facts.stdout, facts.stdout[-3000:]

        # a fact that is not the dump's (a row count): found before any change, from the dump itself
        wrong = json.loads(json.dumps(original))
        recorded = wrong["postgres"]["tables"]["public.tasks"]["rows"]
        wrong["postgres"]["tables"]["public.tasks"]["rows"] = recorded + 1
        write_manifest(folder, wrong)
        lying = emergency(healthy_lab, state, "validate", bid)
        assert lying.returncode == 2, lying.stdout[-3000:]
        assert (f"the dump holds {recorded} rows of table public.tasks, the manifest says {recorded + 1}"
                in lying.stdout), lying.stdout[-3000:]
        refused_too = emergency(healthy_lab, state, "restore", bid, "--yes")
        assert refused_too.returncode == 1 and sql(healthy_lab, "SELECT count(*) FROM tasks") == rows
        assert sorted(p.name for p in (state / "backups").iterdir()) == [bid]

        # the restore steps themselves re-check what they read (a custom runbook without validation)
        from es_doctor.backup import BackupError, restore_postgres
        from es_doctor.probes.session import ProbeSession

        write_manifest(folder, tampered)
        with (pytest.raises(BackupError, match="not in the manifest's files"),
              ProbeSession(healthy_lab.target, timeout=60) as session):
            restore_postgres(session, folder)
        assert sql(healthy_lab, "SELECT count(*) FROM tasks") == rows
    finally:
        httpx.post(api(healthy_lab, "/api/v1/maintenance/readonly"), json={"enabled": False}, timeout=10)


@pytest.mark.data_destructive  # stops Qdrant and refills its volume (rollback): run with the destructive ones
def test_a_truncated_archive_is_refused_before_the_volume_is_emptied(healthy_lab: Any, tmp_path: Path) -> None:
    import docker

    state = tmp_path / "state"
    client = docker.DockerClient(base_url=healthy_lab.stack.settings.docker_host)
    try:
        mount = Path(client.volumes.get("qdrant_data").attrs["Mountpoint"])
    finally:
        client.close()
    before = sorted(p.relative_to(mount).as_posix() for p in mount.rglob("*"))
    good = tmp_path / "good.tar"
    import tarfile

    with tarfile.open(good, "w") as tar:
        for i in range(3):
            blob = tmp_path / f"f{i}.bin"
            blob.write_bytes(os.urandom(200_000))
            tar.add(blob, arcname=f"./f{i}.bin")
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(good.read_bytes()[:300_000])
    env = {**os.environ, "ES_DOCTOR_LAB_DIR": str(healthy_lab.lab_dir), "ES_DOCTOR_STATE_DIR": str(state),
           "ES_DOCTOR_AUDIT_LOG": str(state / "audit.jsonl")}
    result = subprocess.run([sys.executable, "-m", "es_doctor", "-t", "lab", "fix", "volumes-recover", "--yes",
                             "--param", f"archive={truncated}"], capture_output=True, text=True, env=env,
                            timeout=600, check=False)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-2000:]
    assert "not a readable tar archive" in result.stdout
    assert "volumes-recover: FAILED, ROLLED BACK" in result.stdout, result.stdout[-3000:]
    records = [json.loads(line) for line in (state / "audit.jsonl").read_text().splitlines()]
    ran = [r["step"] for r in records if r.get("event") == "fix.step" and r.get("phase") == "steps"]
    assert ran == ["stop", "backup", "check-archive"], "the volume was never emptied"
    after = sorted(p.relative_to(mount).as_posix() for p in mount.rglob("*"))
    assert set(before) <= set(after)
    deadline = time.monotonic() + 90  # the rollback started Qdrant again: let it come up for the next test
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{healthy_lab.target.qdrant.url}/healthz", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(1)
