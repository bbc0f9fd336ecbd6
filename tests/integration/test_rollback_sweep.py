"""The rollback sweep (#24 "Done when"): every shipped runbook that declares a rollback and changes
something is copied under a new id with a failing step right after its last changing step (its
own rollback kept), run against the docker-mode lab, and must end "FAILED, ROLLED BACK" with the
target read before and after identical: the config file's bytes, the service container's whole
``docker inspect`` configuration and environment, every table's rows (count and md5), the Qdrant
collection's points and payloads, and the volumes a step touches."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from es_doctor.runbooks import snapshot
from es_doctor.runbooks.audit import AuditLog
from es_doctor.runbooks.engine import Engine, RunOutcome, plan
from es_doctor.runbooks.loader import load_runbook_file, shipped_dir
from es_doctor.secrets import secret_values

pytestmark = [pytest.mark.integration, pytest.mark.docker]

#: what the test reads itself, whatever the runbook declares: every part but volumes (read when a step
#: touches one: a volume is copied out to be hashed)
EVERYTHING = [("config.set", {}), ("docker.recreate", {}), ("postgres.sql", {}), ("qdrant.recover", {})]

#: runbooks with a rollback that restore a backup made beforehand: their rollback restores the safety
#: backup they take themselves (emergency-restore) or a Qdrant snapshot (qdrant-collection-restore);
#: swept by test_a_failing_restore_is_rolled_back_to_identical, with a backup of the lab made first
NEEDS_BACKUP = frozenset({"emergency-restore", "qdrant-collection-restore"})


def shipped_with_rollback() -> list[Path]:
    out = []
    for path in sorted([*shipped_dir().glob("*.yaml"), *(shipped_dir() / "emergency").glob("*.yaml")]):
        if path.name == "schema.json":
            continue
        rb = load_runbook_file(path)
        if rb.rollback and snapshot.changes([(s.action, None) for s in rb.steps]):
            out.append(path)
    return out


def params_for(runbook_id: str, lab: Any) -> dict[str, str]:
    settings = lab.stack.settings
    return {
        "data-migration-rollback": {"down_sql": "CREATE TABLE sweep_made_after_the_dump (x int); "
                                                "DELETE FROM tasks WHERE id % 2 = 0",
                                    "up_sql": "UPDATE tasks SET id = id WHERE false"},
        "emergency-restart": {"rollback_on_failure": "true"},
        "volumes-recover": {"container": lab.target.qdrant.container, "volume": settings.qdrant_volume},
        "metrics-endpoint-enable": {},
    }.get(runbook_id, {})


def failing_copy(path: Path, directory: Path) -> Path:
    """The runbook under ``sweep-<id>`` with a failing step after its last changing step."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    steps = data["steps"]
    last = max(i for i, s in enumerate(steps) if snapshot.changes([(s["action"], None)]))
    steps.insert(last + 1, {"name": "sweep-fails", "action": "fail",
                            "inputs": {"message": "the rollback sweep's failing step"}})
    data["id"] = f"sweep-{data['id']}"
    copy = directory / f"{data['id']}.yaml"
    copy.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return copy


def read_target(lab: Any, steps: list[tuple[str, dict[str, Any] | None]], work: Path,
                before: snapshot.Snapshot | None = None) -> snapshot.Snapshot:
    from es_doctor.probes.session import ProbeSession

    probes = ProbeSession(lab.target, timeout=60, docker_timeout=60)
    try:
        return snapshot.take([*EVERYTHING, *steps], lab.target, probes, work, patience_s=30, before=before)
    finally:
        probes.close()


@contextlib.contextmanager
def _pg(lab: Any) -> Iterator[Any]:
    import psycopg

    target = lab.target
    with psycopg.connect(target.postgres.dsn, password=target.postgres.password, autocommit=True,
                         connect_timeout=10) as conn:
        yield conn


def maintenance(lab: Any, on: bool) -> None:
    """Writes stopped (or accepted again); the service may still be coming back from a restart."""
    import time

    url = f"http://127.0.0.1:{lab.stack.settings.ports.api}/api/v1/maintenance/{'enable' if on else 'disable'}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.post(url, timeout=10).raise_for_status()
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


CASES = shipped_with_rollback()


def test_the_sweep_covers_every_shipped_runbook_with_a_rollback() -> None:
    swept = {p.stem for p in CASES}
    assert swept >= {"event-bus-tune", "go-gc-tune", "metrics-endpoint-enable", "qdrant-connection-pool",
                     "vector-cache-tune", "emergency-restart", "data-migration-rollback", "qdrant-dimension-fix",
                     "volumes-recover", *NEEDS_BACKUP}


@pytest.mark.data_destructive  # deletes tasks and the collection on purpose (and must put them back)
@pytest.mark.parametrize("path", [p for p in CASES if p.stem not in NEEDS_BACKUP], ids=lambda p: p.stem)
def test_a_failing_step_is_rolled_back_to_identical(healthy_lab: Any, tmp_path: Path, path: Path) -> None:
    copy = failing_copy(path, tmp_path)
    rb = load_runbook_file(copy)
    the_plan = plan(rb, healthy_lab.target, "lab", params_for(path.stem, healthy_lab))
    steps = [(s.step.action, s.inputs) for s in the_plan.steps]
    said: list[str] = []
    audit = AuditLog(tmp_path / "audit.jsonl", secret_values(healthy_lab.target))
    engine = Engine(healthy_lab.target, "lab", audit, tmp_path / "state", confirm=lambda _q: True, say=said.append,
                    verify_timeout=30)
    # the lab's own traffic writes tasks and vectors: writes are stopped (maintenance, persisted
    # across restarts) so that the tables and the collection change only by the run's hand
    maintenance(healthy_lab, True)
    try:
        before = read_target(healthy_lab, steps, tmp_path)
        result = engine.run(the_plan, yes=True)
        after = read_target(healthy_lab, steps, tmp_path, before)
    finally:
        maintenance(healthy_lab, False)
    log = "\n".join(said)
    assert [s.name for s in result.steps if s.name == "sweep-fails" and s.status == "failed"] == ["sweep-fails"], log
    changed = [s.name for s in result.steps if s.phase == "steps" and s.status == "ok"]
    assert changed, log  # the changing steps ran before the failure
    assert before.unread == {} and after.unread == {}, (before.unread, after.unread)
    assert snapshot.differences(before, after) == [], log
    assert result.outcome is RunOutcome.ROLLED_BACK, f"{result.outcome}: {result.message}\n{log}"
    assert "as it was before the run" in result.message


@pytest.mark.data_destructive  # restores the database and the collection (and must put them back)
@pytest.mark.parametrize("runbook_id", sorted(NEEDS_BACKUP))
def test_a_failing_restore_is_rolled_back_to_identical(healthy_lab: Any, tmp_path: Path, runbook_id: str) -> None:
    """A backup of the lab is made, the database changed after it (a table the backup does not hold), and
    the restore runbook, failing right after its last restoring step, must put back the target as it was:
    its rollback restores the safety backup (emergency-restore) or the safety snapshot (the collection)."""
    from es_doctor.backup import Backup, BackupStore
    from es_doctor.probes.session import ProbeSession

    target = healthy_lab.target
    path = next(p for p in CASES if p.stem == runbook_id)
    backups = tmp_path / "state" / "backups"
    maintenance(healthy_lab, True)
    try:
        with ProbeSession(target, timeout=60, docker_timeout=60) as session:
            backup_id, _folder, _manifest = Backup(session, "lab", BackupStore(backups), live=True).run()
        with _pg(healthy_lab) as conn:  # after the backup: the restore drops it, the rollback brings it back
            conn.execute("CREATE TABLE sweep_after_backup (x int)")
            conn.execute("INSERT INTO sweep_after_backup VALUES (1)")
        rb = load_runbook_file(failing_copy(path, tmp_path))
        the_plan = plan(rb, target, "lab", {"backup": backup_id})
        steps = [(s.step.action, s.inputs) for s in the_plan.steps]
        said: list[str] = []
        engine = Engine(target, "lab", AuditLog(tmp_path / "audit.jsonl", secret_values(target)), tmp_path / "state",
                        confirm=lambda _q: True, say=said.append, verify_timeout=30, backup_root=backups)
        before = read_target(healthy_lab, steps, tmp_path)
        result = engine.run(the_plan, yes=True)
        after = read_target(healthy_lab, steps, tmp_path, before)
    finally:
        with _pg(healthy_lab) as conn:
            conn.execute("DROP TABLE IF EXISTS sweep_after_backup")
        maintenance(healthy_lab, False)
    log = "\n".join(said)
    assert [s.name for s in result.steps if s.name == "sweep-fails" and s.status == "failed"] == ["sweep-fails"], log
    restoring = [s.name for s in result.steps if s.phase == "steps" and s.status == "ok"
                 and s.name not in ("writes-stopped", "check-backup", "safety", "safety-snapshot")]
    assert restoring, log  # the restoring steps ran before the failure
    assert before.unread == {} and after.unread == {}, (before.unread, after.unread)
    assert "postgres: table public.sweep_after_backup" in before.items, sorted(before.items)
    assert snapshot.differences(before, after) == [], log
    assert result.outcome is RunOutcome.ROLLED_BACK, f"{result.outcome}: {result.message}\n{log}"
    assert "as it was before the run" in result.message


def test_redeploying_an_image_that_cannot_be_had_keeps_the_service(healthy_lab: Any, tmp_path: Path) -> None:
    """#24 item 18: `fix redeploy-image -p image=email-sender-go:nope --yes` left no service container."""
    import docker

    target = healthy_lab.target
    client = docker.DockerClient(base_url=target.docker.host, timeout=60)
    try:
        before = client.api.inspect_container(target.service.container)
        rb = load_runbook_file(shipped_dir() / "redeploy-image.yaml")
        engine = Engine(target, "lab", AuditLog(tmp_path / "audit.jsonl", secret_values(target)), tmp_path / "state",
                        confirm=lambda _q: True, say=lambda _t: None, verify_timeout=30)
        result = engine.run(plan(rb, target, "lab", {"image": "email-sender-go:nope"}), yes=True)
        after = client.api.inspect_container(target.service.container)
    finally:
        client.close()
    assert result.outcome is RunOutcome.FAILED
    failed = [s for s in result.steps if s.status == "failed"]
    assert failed and "left as it was" in failed[0].error and "could not" in failed[0].error, failed
    assert after["Id"] == before["Id"] and after["State"]["Running"]
    assert after["State"]["StartedAt"] == before["State"]["StartedAt"]
    assert httpx.get(f"{target.service.api_url}/health", timeout=10).status_code == 200
