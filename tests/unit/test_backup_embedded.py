"""Backup and restore of an embedded Qdrant (`qdrant.url: local:PATH`), with qdrant-client's real
embedded mode: the storage is archived, validated, and restored only when no process holds it."""

from __future__ import annotations

from pathlib import Path

import pytest
from qdrant_client import QdrantClient
from qdrant_client.models import Distance, PointStruct, VectorParams

from es_doctor.backup import Backup, BackupError, BackupStore, restore_qdrant, validate_backup
from es_doctor.config import Target
from es_doctor.probes.session import ProbeSession


def points(storage: Path) -> list[tuple[int, dict[str, object]]]:
    client = QdrantClient(path=str(storage))
    try:
        if not client.collection_exists("task_vectors"):
            return []
        found, _ = client.scroll("task_vectors", limit=100, with_payload=True)
        return sorted((int(p.id), dict(p.payload or {})) for p in found)
    finally:
        client.close()


def test_embedded_qdrant_backup_validate_restore(tmp_path: Path) -> None:
    storage = tmp_path / "qdrant"
    client = QdrantClient(path=str(storage))
    client.create_collection("task_vectors", vectors_config=VectorParams(size=4, distance=Distance.COSINE))
    client.upsert("task_vectors", [PointStruct(id=i, vector=[0.1 * i, 0.2, 0.3, 0.4], payload={"task_id": i})
                                   for i in range(1, 4)])
    client.close()
    original = points(storage)
    assert len(original) == 3

    target = Target.model_validate({"qdrant": {"url": f"local:{storage}", "vector_size": 4},
                                    "absent": {"postgres": "t", "docker": "t", "service": "t"}})
    with ProbeSession(target, timeout=60) as session:  # closed: the embedded storage's lock goes with it
        backup_id, path, manifest = Backup(session, "t", BackupStore(tmp_path / "backups")).run()
    assert manifest["qdrant"]["embedded"] is True
    assert set(manifest["skipped"]) == {"postgres", "volumes", "config"}
    assert validate_backup(path).ok
    assert path.name == backup_id and (path / "qdrant" / "local-storage.tar").is_file()

    client = QdrantClient(path=str(storage))
    client.delete_collection("task_vectors")
    client.close()
    assert points(storage) == []

    holder = QdrantClient(path=str(storage))  # a service holding the storage: refused, nothing changed
    try:
        with pytest.raises(BackupError, match="in use"), ProbeSession(target, timeout=10) as session:
            restore_qdrant(session, path)
    finally:
        holder.close()
    assert points(storage) == []

    with ProbeSession(target, timeout=10) as session:
        done = restore_qdrant(session, path)
    assert "restored" in done[0]
    assert points(storage) == original
