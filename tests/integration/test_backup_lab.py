"""`es-doctor emergency backup|validate|restore` on the real lab, Docker engine and PostgreSQL:
back up, damage the data (drop a table, delete a collection, corrupt a volume file), validate
(which reports the damage), restore (refused without read-only mode or --yes), validate again
(clean), and the restored data equals the original: row and point counts and content hashes.
Also: a damaged backup fails validation; an interrupted backup never looks complete."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import docker
import httpx
import psycopg
import pytest
from qdrant_client import QdrantClient

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.data_destructive]


def es_doctor(lab: Any, state: Path, *args: str, extra_env: dict[str, str] | None = None,
              timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ES_DOCTOR_LAB_DIR": str(lab.lab_dir), "ES_DOCTOR_AUDIT_LOG": str(state / "audit.jsonl"),
           "ES_DOCTOR_STATE_DIR": str(state), "COLUMNS": "200", **(extra_env or {})}
    return subprocess.run([sys.executable, "-m", "es_doctor", "-t", "lab", "emergency", *args], capture_output=True,
                          text=True, env=env, timeout=timeout, check=False, stdin=subprocess.DEVNULL)


def api(lab: Any, path: str) -> str:
    return f"http://127.0.0.1:{lab.stack.settings.ports.api}{path}"


def set_readonly(lab: Any, enabled: bool) -> None:
    httpx.post(api(lab, "/api/v1/maintenance/readonly"), json={"enabled": enabled}, timeout=10).raise_for_status()


def pg_connect(lab: Any) -> psycopg.Connection:
    t = lab.target
    return psycopg.connect(t.postgres.dsn, password=t.postgres.password, autocommit=True, connect_timeout=5)


def pg_state(lab: Any) -> tuple[int, str] | None:
    """(rows, md5 of every row in id order) of the tasks table; None when it is missing."""
    with pg_connect(lab) as conn:
        if conn.execute("SELECT to_regclass('public.tasks')").fetchone() == (None,):
            return None
        row = conn.execute("SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY id), '')) "
                           "FROM tasks t").fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


def qdrant_state(lab: Any) -> tuple[int, str, dict[str, list[float]]] | None:
    """(points, sha256 of ids and payloads, every vector by id) of task_vectors; None when missing."""
    client = QdrantClient(url=lab.target.qdrant.url, check_compatibility=False, timeout=30)
    try:
        if not client.collection_exists("task_vectors"):
            return None
        rows, vectors, offset = [], {}, None
        while True:
            points, offset = client.scroll("task_vectors", limit=500, offset=offset, with_payload=True,
                                           with_vectors=True)
            rows += [json.dumps([str(p.id), p.payload], sort_keys=True) for p in points]
            vectors.update({str(p.id): list(p.vector) for p in points if isinstance(p.vector, list)})
            if offset is None:
                break
        return len(rows), hashlib.sha256("\n".join(sorted(rows)).encode()).hexdigest(), vectors
    finally:
        client.close()


def same_points(a: tuple[int, str, dict[str, list[float]]] | None,
                b: tuple[int, str, dict[str, list[float]]] | None) -> bool:
    """Equal ids, payloads and vectors (to float32 noise: Qdrant re-normalises Cosine vectors it is given)."""
    if a is None or b is None:
        return a is b
    return a[:2] == b[:2] and a[2].keys() == b[2].keys() and all(
        len(a[2][k]) == len(b[2][k]) and max(abs(x - y) for x, y in zip(a[2][k], b[2][k], strict=True)) < 1e-5
        for k in a[2])


def drop_rows_without_vector(lab: Any) -> None:
    """Earlier tests stop Qdrant while the service writes: a task created then keeps its row and has
    no vector, which validation rightly reports. These tests start from consistent data."""
    client = QdrantClient(url=lab.target.qdrant.url, check_compatibility=False, timeout=30)
    try:
        ids, offset = set(), None
        while True:
            points, offset = client.scroll("task_vectors", limit=500, offset=offset, with_payload=["task_id"])
            ids |= {int((p.payload or {})["task_id"]) for p in points}
            if offset is None:
                break
    finally:
        client.close()
    with pg_connect(lab) as conn:
        conn.execute("DELETE FROM tasks WHERE NOT (id = ANY(%s))", (sorted(ids),))


def volume_dir(lab: Any, name: str) -> Path:
    client = docker.DockerClient(base_url=lab.stack.settings.docker_host)
    try:
        return Path(client.volumes.get(name).attrs["Mountpoint"])
    finally:
        client.close()


def backup_id(result: subprocess.CompletedProcess[str]) -> str:
    found = re.search(r"^backup (\d{8}T\d{6}Z(?:-\d+)?): ", result.stdout, re.M)
    assert found, result.stdout[-3000:] + result.stderr[-2000:]
    return found.group(1)


def test_backup_damage_validate_restore_round_trip(healthy_lab: Any, tmp_path: Path) -> None:
    state = tmp_path / "state"
    set_readonly(healthy_lab, True)
    try:
        drop_rows_without_vector(healthy_lab)
        before_pg, before_q = pg_state(healthy_lab), qdrant_state(healthy_lab)
        assert before_pg is not None and before_pg[0] > 0 and before_q is not None and before_q[0] > 0

        clean = es_doctor(healthy_lab, state, "validate")
        assert clean.returncode == 0, clean.stdout[-3000:] + clean.stderr[-2000:]
        assert "live data: OK" in clean.stdout and "0 orphan points" in clean.stdout

        made = es_doctor(healthy_lab, state, "backup")
        assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-2000:]
        bid = backup_id(made)
        folder = state / "backups" / bid
        manifest = json.loads((folder / "manifest.json").read_text())
        paths = {f["path"]: f for f in manifest["files"]}
        assert {"postgres/email_sender.dump", "qdrant/task_vectors.snapshot", "volumes/qdrant_data.tar",
                "config/config.yaml"} <= set(paths)
        assert all(len(f["sha256"]) == 64 and f["bytes"] > 0 for f in paths.values())
        assert manifest["postgres"]["tables"]["public.tasks"]["rows"] == before_pg[0]
        assert manifest["qdrant"]["collections"]["task_vectors"]["points"] == before_q[0]
        assert [v["volume"] for v in manifest["volumes"]] == ["qdrant_data"], "PostgreSQL's data is in the dump"
        assert not list((state / "backups").glob(".*.partial"))
        assert healthy_lab.target.postgres.password not in (folder / "manifest.json").read_text()
        assert folder.stat().st_mode & 0o777 == 0o700, "a backup holds the data: only its owner reads it"
        modes = {p.relative_to(folder).as_posix(): p.stat().st_mode & 0o777 for p in folder.rglob("*")}
        assert modes and all(mode == (0o700 if (folder / rel).is_dir() else 0o600) for rel, mode in modes.items()), \
            modes
        assert es_doctor(healthy_lab, state, "validate", bid).returncode == 0
        assert f"last backup: {bid}" in es_doctor(healthy_lab, state, "status").stdout

        # the damage: a table dropped, a collection deleted, a volume file corrupted
        with pg_connect(healthy_lab) as conn:
            conn.execute("DROP TABLE tasks")
        httpx.delete(f"{healthy_lab.target.qdrant.url}/collections/task_vectors", timeout=30).raise_for_status()
        meta = volume_dir(healthy_lab, "qdrant_data") / "meta.json"
        assert meta.is_file(), sorted(p.name for p in meta.parent.iterdir())
        meta.write_bytes(b'{"collections": {"task_vectors": ')
        assert pg_state(healthy_lab) is None and qdrant_state(healthy_lab) is None

        damaged = es_doctor(healthy_lab, state, "validate")
        assert damaged.returncode == 2, damaged.stdout[-3000:] + damaged.stderr[-2000:]
        for evidence in ("table tasks is missing", "collection task_vectors", "qdrant_data: meta.json: not valid JSON"):
            assert evidence in damaged.stdout, damaged.stdout[-3000:]

        # refused while the service accepts writes, and without --yes: nothing changes
        set_readonly(healthy_lab, False)
        refused = es_doctor(healthy_lab, state, "restore", bid, "--yes")
        assert refused.returncode == 69, refused.stdout[-3000:] + refused.stderr[-2000:]
        assert "restore refused" in refused.stdout
        set_readonly(healthy_lab, True)
        unconfirmed = es_doctor(healthy_lab, state, "restore", bid)
        assert unconfirmed.returncode == 64 and "--yes" in unconfirmed.stderr + unconfirmed.stdout
        assert pg_state(healthy_lab) is None and qdrant_state(healthy_lab) is None
        assert len(list((state / "backups").iterdir())) == 1, "no safety backup for a refused restore"

        planned = es_doctor(healthy_lab, state, "restore", bid, "--dry-run")
        assert planned.returncode == 0 and "safety" in planned.stdout and pg_state(healthy_lab) is None

        restored = es_doctor(healthy_lab, state, "restore", bid, "--yes")
        assert restored.returncode == 0, restored.stdout[-4000:] + restored.stderr[-2000:]
        assert "emergency-restore: DONE" in restored.stdout and "live data: OK" in restored.stdout
        assert f"equal to backup {bid}: row counts and md5 of" in restored.stdout

        again = es_doctor(healthy_lab, state, "validate")
        assert again.returncode == 0, again.stdout[-3000:]
        assert pg_state(healthy_lab) == before_pg
        assert same_points(qdrant_state(healthy_lab), before_q)
        json.loads(meta.read_text())

        backups = sorted(p for p in (state / "backups").iterdir() if (p / "manifest.json").is_file())
        assert len(backups) == 2, "a fresh safety backup was taken before the restore"
        safety = json.loads((backups[-1] / "manifest.json").read_text())
        assert safety["reason"] == f"safety backup before restoring {bid}"
        assert "public.tasks" not in safety["postgres"]["tables"], "the safety backup holds the damaged state"
        records = [json.loads(line) for line in (state / "audit.jsonl").read_text().splitlines()]
        assert any(r.get("runbook") == "emergency-restore" and r.get("outcome") == "DONE" for r in records)
        audit_text = (state / "audit.jsonl").read_text()
        assert healthy_lab.target.postgres.password not in audit_text
    finally:
        set_readonly(healthy_lab, False)


def test_a_damaged_backup_fails_validation(healthy_lab: Any, tmp_path: Path) -> None:
    state = tmp_path / "state"
    bid = backup_id(es_doctor(healthy_lab, state, "backup"))
    dump = state / "backups" / bid / "postgres" / "email_sender.dump"
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))
    result = es_doctor(healthy_lab, state, "validate", bid)
    assert result.returncode == 2, result.stdout[-3000:]
    assert "postgres/email_sender.dump: sha256 differs" in result.stdout
    assert es_doctor(healthy_lab, state, "validate", "../../etc").returncode != 0


def test_a_failed_backup_leaves_nothing_that_looks_complete(healthy_lab: Any, tmp_path: Path) -> None:
    state = tmp_path / "state"
    failed = es_doctor(healthy_lab, state, "backup",
                       extra_env={"ES_DOCTOR_DOCKER__VOLUMES": '["qdrant_data", "no_such_volume"]'})
    assert failed.returncode != 0 and "no_such_volume" in failed.stdout, failed.stdout[-3000:]
    root = state / "backups"
    assert not list(root.rglob("manifest.json")) and not list(root.iterdir())
    assert "last backup: none" in es_doctor(healthy_lab, state, "status").stdout


def test_an_interrupted_backup_never_looks_complete(healthy_lab: Any, tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {**os.environ, "ES_DOCTOR_LAB_DIR": str(healthy_lab.lab_dir), "ES_DOCTOR_STATE_DIR": str(state),
           "ES_DOCTOR_AUDIT_LOG": str(state / "audit.jsonl")}
    proc = subprocess.Popen([sys.executable, "-m", "es_doctor", "-t", "lab", "emergency", "backup"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    root = state / "backups"
    deadline = time.monotonic() + 60
    while not list(root.glob(".*.partial")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    complete = [p for p in root.iterdir() if (p / "manifest.json").is_file()] if root.is_dir() else []
    if proc.returncode == 0:  # finished before the signal landed: then it must be whole
        assert len(complete) == 1
        assert es_doctor(healthy_lab, state, "validate", complete[0].name).returncode == 0
    else:
        assert proc.returncode == 130, out[-3000:]
        assert complete == [], "an interrupted backup has no manifest"
        assert "INTERRUPTED" in out
        left = sorted(p.name for p in root.glob(".*.partial"))  # removed, unless the worker outlived the exit
        status = es_doctor(healthy_lab, state, "status").stdout
        assert "last backup: none" in status and all(name in status for name in left)


def test_volumes_recover_runbook_restores_a_known_good_archive(healthy_lab: Any, tmp_path: Path) -> None:
    """The guide's "Volumes Docker corrompus": the volume is refilled from a good archive while its
    container is stopped (Docker keeps a stopped container's volume: it is emptied in place)."""
    state = tmp_path / "state"
    set_readonly(healthy_lab, True)  # no new tasks: Qdrant's points and the rows stay in step
    try:
        drop_rows_without_vector(healthy_lab)
        bid = backup_id(es_doctor(healthy_lab, state, "backup"))
        archive = state / "backups" / bid / "volumes" / "qdrant_data.tar"
        meta = volume_dir(healthy_lab, "qdrant_data") / "meta.json"
        good = meta.read_bytes()
        meta.write_bytes(b"\x00garbage")
        stray = meta.parent / "stray.json"
        stray.write_text("{")
        assert es_doctor(healthy_lab, state, "validate").returncode == 2

        env = {**os.environ, "ES_DOCTOR_LAB_DIR": str(healthy_lab.lab_dir), "ES_DOCTOR_STATE_DIR": str(state),
               "ES_DOCTOR_AUDIT_LOG": str(state / "audit.jsonl")}
        fixed = subprocess.run([sys.executable, "-m", "es_doctor", "-t", "lab", "fix", "volumes-recover", "--yes",
                                "--param", f"archive={archive}"], capture_output=True, text=True, env=env,
                               timeout=600, check=False)
        assert fixed.returncode == 0, fixed.stdout[-3000:] + fixed.stderr[-2000:]
        assert "volumes-recover: FIXED" in fixed.stdout
        assert meta.read_bytes() == good and not stray.exists(), "the volume holds exactly the archive"
        deadline = time.monotonic() + 60
        while (again := es_doctor(healthy_lab, state, "validate")).returncode != 0 and time.monotonic() < deadline:
            time.sleep(2)
        assert again.returncode == 0, again.stdout[-3000:]
    finally:
        set_readonly(healthy_lab, False)


def test_backups_are_chosen_per_target_and_another_targets_is_refused(healthy_lab: Any, tmp_path: Path) -> None:
    """Issue 24 item 2. Before: `emergency status` showed another target's newer backup as the last one, and
    `emergency restore <id> --yes` restored a backup whose manifest names another target (another
    PostgreSQL and Qdrant) and ended DONE."""
    state = tmp_path / "state"
    made = es_doctor(healthy_lab, state, "backup", "--live")
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-2000:]
    bid = backup_id(made)
    manifest = json.loads((state / "backups" / bid / "manifest.json").read_text())
    assert manifest["target"] == "lab"
    port = urlsplit_port(healthy_lab.target.postgres.dsn)
    assert manifest["target_identity"]["postgres"].endswith(f":{port}/email_sender"), manifest["target_identity"]

    # the same files, as a newer backup of another stack
    other = f"{bid[:9]}235959Z"  # later the same day
    assert other > bid
    import shutil

    shutil.copytree(state / "backups" / bid, state / "backups" / other)
    foreign = {**manifest, "id": other, "target": "staging",
               "target_identity": {"postgres": "db.staging.example:5432/email_sender",
                                   "qdrant": "http://qdrant.staging.example:6333",
                                   "service": "http://api.staging.example:8080"}}
    (state / "backups" / other / "manifest.json").write_text(json.dumps(foreign), encoding="utf-8")

    status = es_doctor(healthy_lab, state, "status")
    assert f"last backup: {bid}" in status.stdout, status.stdout
    assert "1 backup(s) of other targets" in status.stdout

    set_readonly(healthy_lab, True)
    try:
        before = pg_state(healthy_lab)
        refused = es_doctor(healthy_lab, state, "restore", other, "--yes")
        assert refused.returncode == 64, refused.stdout[-3000:] + refused.stderr[-2000:]
        assert "backup of target 'staging', not of 'lab'" in refused.stderr and "--from-other-target" in refused.stderr
        # the same name, another stack: told apart by the recorded addresses
        (state / "backups" / other / "manifest.json").write_text(json.dumps({**foreign, "target": "lab"}),
                                                                 encoding="utf-8")
        renamed = es_doctor(healthy_lab, state, "restore", other, "--yes")
        assert renamed.returncode == 64 and "another stack" in renamed.stderr, renamed.stderr[-2000:]
        (state / "backups" / other / "manifest.json").write_text(json.dumps(foreign), encoding="utf-8")
        # the runbook itself refuses it too (fix, without the command's check), before its safety backup
        env = {**os.environ, "ES_DOCTOR_LAB_DIR": str(healthy_lab.lab_dir), "ES_DOCTOR_STATE_DIR": str(state),
               "ES_DOCTOR_AUDIT_LOG": str(state / "audit.jsonl")}
        direct = subprocess.run([sys.executable, "-m", "es_doctor", "-t", "lab", "fix", "emergency-restore",
                                 "--param", f"backup={other}", "--yes"], capture_output=True, text=True, env=env,
                                timeout=600, check=False, stdin=subprocess.DEVNULL)
        assert direct.returncode != 0 and "backup of target 'staging'" in direct.stdout, direct.stdout[-3000:]
        assert pg_state(healthy_lab) == before
        assert sorted(p.name for p in (state / "backups").iterdir()) == sorted([bid, other]), "no safety backup"
        # latest is this target's latest; the flag lets another target's through (planned here)
        latest = es_doctor(healthy_lab, state, "restore", "latest", "--dry-run")
        assert latest.returncode == 0 and bid in latest.stdout and other not in latest.stdout, latest.stdout[-2000:]
        allowed = es_doctor(healthy_lab, state, "restore", other, "--from-other-target", "--dry-run")
        assert allowed.returncode == 0 and f"backup={other}" in allowed.stdout, allowed.stdout[-2000:]
    finally:
        set_readonly(healthy_lab, False)


def urlsplit_port(dsn: str) -> int:
    from psycopg.conninfo import conninfo_to_dict

    return int(conninfo_to_dict(dsn).get("port") or 5432)
