"""Files holding data or secrets are 0600 in 0700 directories (issue 24 item 14): backups, saved
profiles, the security runbook's block lists."""

from __future__ import annotations

import stat
from pathlib import Path

from qdrant_client import QdrantClient
from qdrant_client.models import Distance, PointStruct, VectorParams

from es_doctor.backup import Backup, BackupStore, validate_backup
from es_doctor.config import Target
from es_doctor.probes.session import ProbeSession
from es_doctor.profiles import store
from es_doctor.runbooks.actions import REGISTRY, ActionContext


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_every_file_of_a_backup_is_0600_and_every_dir_0700(tmp_path: Path) -> None:
    storage = tmp_path / "qdrant"
    client = QdrantClient(path=str(storage))
    client.create_collection("task_vectors", vectors_config=VectorParams(size=4, distance=Distance.COSINE))
    client.upsert("task_vectors", [PointStruct(id=1, vector=[0.1, 0.2, 0.3, 0.4], payload={"task_id": 1})])
    client.close()
    config = tmp_path / "config.yaml"
    config.write_text("server: {port: 8080}\n", encoding="utf-8")
    config.chmod(0o644)
    target = Target.model_validate({"qdrant": {"url": f"local:{storage}", "vector_size": 4},
                                    "service": {"config_file": str(config)},
                                    "absent": {"postgres": "t", "docker": "t"}})
    with ProbeSession(target, timeout=30) as session:
        _id, path, _manifest = Backup(session, "t", BackupStore(tmp_path / "backups"), live=True).run()
    found = {p.relative_to(path).as_posix(): mode(p) for p in [path, *path.rglob("*")]}
    assert {"qdrant/local-storage.tar", "config/config.yaml", "manifest.json"} <= set(found)
    wrong = {rel: oct(m) for rel, m in found.items()
             if m != (0o700 if (path / rel).is_dir() else 0o600)}
    assert wrong == {}
    assert validate_backup(path).ok  # the modes are not part of what the manifest verifies


def test_the_profiles_root_is_made_0700(tmp_path: Path) -> None:
    (tmp_path / "profiles").mkdir(mode=0o755)
    (tmp_path / "profiles").chmod(0o755)
    saved = store.save(tmp_path, "staging", "heap", b"x")
    assert mode(tmp_path / "profiles") == 0o700
    assert mode(saved.parent) == 0o700 and mode(saved) == 0o600


def test_the_security_block_lists_are_0600(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "email-sender.log").write_text("".join(
        f'{{"level":"WARN","msg":"SECURITY auth failed","client_ip":"203.0.113.7","n":{i}}}\n' for i in range(6)),
        encoding="utf-8")
    target = Target.model_validate({"service": {"log_dir": str(logs)}})
    work = tmp_path / "runs" / "r1"
    work.mkdir(parents=True, mode=0o700)
    ctx = ActionContext(target, "t", work)
    try:
        out = REGISTRY["security.analyze"].call({"threshold": 5}, ctx)
    finally:
        ctx.probes.close()
    assert out["blocked"] == ["203.0.113.7"]
    for name in ("blocklist.txt", "blocklist.nginx.conf"):
        assert mode(work / name) == 0o600, name
