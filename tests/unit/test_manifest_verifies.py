"""A restore uses only what the manifest verifies (issue 11, item 5): a file a restore would read
must be listed with its size and sha256, the facts it is compared against must be there, and a
nearly empty manifest validates nothing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from es_doctor.backup import FORMAT, BackupError, manifest_problems, restorable_manifest, validate_backup, verified_file

BACKUP_ID = "20260101T000000Z"


def make(root: Path) -> tuple[Path, dict[str, Any]]:
    path = root / BACKUP_ID
    (path / "config").mkdir(parents=True)
    data = b"listen: 127.0.0.1:8080\n"
    (path / "config" / "config.yaml").write_bytes(data)
    listing = [{"path": "config/config.yaml", "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}]
    manifest = {"format": FORMAT, "id": BACKUP_ID, "finished_at": "2026-01-01T00:00:05+00:00", "files": listing,
                "skipped": {"postgres": "absent", "qdrant": "absent", "volumes": "absent"},
                "postgres": None, "qdrant": None, "volumes": []}
    write(path, manifest)
    return path, manifest


def write(path: Path, manifest: dict[str, Any]) -> None:
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_a_complete_manifest_verifies(tmp_path: Path) -> None:
    path, manifest = make(tmp_path)
    assert manifest_problems(path, manifest) == []
    assert validate_backup(path).ok
    assert restorable_manifest(path) == manifest


def test_a_nearly_empty_manifest_does_not_validate(tmp_path: Path) -> None:
    path, _ = make(tmp_path)
    write(path, {"format": FORMAT})
    v = validate_backup(path)
    assert not v.ok
    messages = [p.message for p in v.problems if p.component == "manifest"]
    assert any("it lists no file" in m for m in messages)
    assert any("postgres: neither backed up nor skipped" in m for m in messages)
    with pytest.raises(BackupError, match="its manifest does not verify it"):
        restorable_manifest(path)


def test_a_dump_missing_from_files_is_damage_and_never_read(tmp_path: Path) -> None:
    path, manifest = make(tmp_path)
    (path / "postgres").mkdir()
    (path / "postgres" / "db.dump").write_bytes(b"PGDMP not really")
    manifest["postgres"] = {"database": "db", "dump": "postgres/db.dump", "tables": {}}
    del manifest["skipped"]["postgres"]
    write(path, manifest)
    v = validate_backup(path)  # pg_restore is never run on the unverified file: no tool needed here
    assert [p.message for p in v.problems if p.severity == "CRIT"] == [
        "PostgreSQL dump postgres/db.dump: not in the manifest's files (no size or sha256 to verify it)"]
    with pytest.raises(BackupError, match="not in the manifest of"):
        verified_file(path, manifest, "postgres/db.dump")


def test_a_file_changed_after_validation_is_refused(tmp_path: Path) -> None:
    path, manifest = make(tmp_path)
    assert verified_file(path, manifest, "config/config.yaml").is_file()
    (path / "config" / "config.yaml").write_bytes(b"listen: 0.0.0.0:1\n")
    with pytest.raises(BackupError, match="differs from the manifest"):
        verified_file(path, manifest, "config/config.yaml")


def test_missing_facts_are_damage(tmp_path: Path) -> None:
    path, manifest = make(tmp_path)
    manifest["qdrant"] = {"embedded": False, "collections": {"c": {"snapshot": "config/config.yaml"}}}
    del manifest["skipped"]["qdrant"]
    write(path, manifest)
    assert "qdrant: collection c has no point count and hash" in manifest_problems(path, manifest)
