"""FAILED, ROLLED BACK is claimed only when the target read before the run and after the rollback is
identical (#24 item 21): a real config file, the real engine; a rollback that leaves a different
file is FAILED and says what differs; NOT FIXED says which changes were kept."""

from __future__ import annotations

from pathlib import Path

from es_doctor.config import Target
from es_doctor.runbooks import snapshot
from es_doctor.runbooks.audit import AuditLog
from es_doctor.runbooks.engine import Engine, RunOutcome, plan
from es_doctor.runbooks.loader import load_runbook_file

CONFIG = "# cfg\npool:\n  max:   10   # guide: 10-20\n  idle: 5m\n"

HEAD = """id: claim
title: t
class: performance
steps:
  - name: set-max
    action: config.set
    inputs: {key: pool.max, value: 20}
"""
FAILS = """  - name: boom
    action: fail
    inputs: {message: made to fail}
"""


def run(tmp_path: Path, text: str) -> tuple[RunOutcome, str]:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    path = tmp_path / "rb.yaml"
    path.write_text(text, encoding="utf-8")
    target = Target.model_validate({"absent": {"docker": "unit", "postgres": "unit", "qdrant": "unit"},
                                    "service": {"config_file": str(config)}})
    engine = Engine(target, "t", AuditLog(tmp_path / "audit.jsonl", []), tmp_path / "state",
                    confirm=lambda _q: True, say=lambda _t: None, verify_timeout=1)
    result = engine.run(plan(load_runbook_file(path), target, "t"), yes=True)
    return result.outcome, result.message


def test_a_rollback_that_restores_the_bytes_is_rolled_back(tmp_path: Path) -> None:
    outcome, message = run(tmp_path, HEAD + FAILS + """rollback:
  - name: restore
    action: config.restore
    inputs: {from: "{{ steps['set-max'].backup }}"}
""")
    assert outcome is RunOutcome.ROLLED_BACK, message
    assert "as it was before the run (compared: config)" in message


def test_a_rollback_that_leaves_another_file_is_not_rolled_back(tmp_path: Path) -> None:
    outcome, message = run(tmp_path, HEAD + FAILS + """rollback:
  - name: restore-wrong
    action: config.set
    inputs: {key: pool.max, value: 11}
""")
    assert outcome is RunOutcome.FAILED, message
    assert "the rollback ran but the target is not as it was" in message
    assert f"config: {tmp_path / 'config.yaml'}: bytes: differs" in message


def test_not_fixed_says_which_changes_were_kept(tmp_path: Path) -> None:
    outcome, message = run(tmp_path, HEAD + "verify: [startup.health]\n")
    assert outcome is RunOutcome.NOT_FIXED, message
    assert "changes kept: config: " in message and "bytes: differs" in message


def test_differences_name_keys_never_values() -> None:
    before = snapshot.Snapshot({"containers: svc Config.Env.API_KEY": "aaa", "postgres: table public.t": "1 rows x"})
    after = snapshot.Snapshot({"containers: svc Config.Env.API_KEY": "bbb", "postgres: table public.new": "0 rows y"})
    assert snapshot.differences(before, after) == ["containers: svc Config.Env.API_KEY: differs",
                                                   "postgres: table public.new: new", "postgres: table public.t: gone"]
    unread = snapshot.Snapshot({}, {"postgres": "refused"})
    only_pg = snapshot.Snapshot({"postgres: table public.t": "1 rows x"})
    assert snapshot.differences(only_pg, unread) == ["postgres: could not be read after the run (refused)"]


def test_container_items_ignore_what_a_recreate_renews() -> None:
    old = {"Id": "a" * 64, "Config": {"Hostname": "a" * 12, "Env": ["A=1"], "Image": "x:1"},
           "HostConfig": {"Binds": [], "PortBindings": {"80/tcp": [{"HostPort": "8080"}]}},
           "Mounts": [{"Type": "volume", "Name": "v", "Destination": "/d", "RW": True}],
           "State": {"Running": True, "StartedAt": "1"}, "Image": "sha256:1"}
    new = {**old, "Id": "b" * 64, "Config": {**old["Config"], "Hostname": "b" * 12},
           "HostConfig": {**old["HostConfig"], "Binds": ["v:/d"]}, "State": {"Running": True, "StartedAt": "2"}}
    assert snapshot.container_items(old) == snapshot.container_items(new)
    lost = {**new, "HostConfig": {"Binds": ["v:/d"]}}
    assert snapshot.container_items(old) != snapshot.container_items(lost)  # port bindings lost: a difference


def test_a_rollback_condition_that_cannot_be_evaluated_fails_and_a_skip_is_recorded(tmp_path: Path) -> None:
    outcome, message = run(tmp_path, HEAD + FAILS + """rollback:
  - name: never
    action: notify
    inputs: {message: x}
    when: "'nothing' in steps"
  - name: broken
    action: config.restore
    inputs: {from: "{{ steps['set-max'].backup }}"}
    when: "steps['boom'].changed"
""")
    assert outcome is RunOutcome.FAILED, message
    assert "the rollback is incomplete (broken failed)" in message
    records = [line for line in (tmp_path / "audit.jsonl").read_text(encoding="utf-8").splitlines()
               if '"fix.step"' in line and '"phase": "rollback"' in line]
    assert any('"step": "never"' in r and '"skipped"' in r for r in records), records
    assert any('"step": "broken"' in r and "condition error" in r for r in records), records


def test_a_volume_step_of_a_run_that_restores_qdrant_reads_the_collections_first() -> None:
    """Qdrant's storage volume restored before its collections: the collections are read before the volume
    step changes them (the volume itself is then compared by its collections, not its bytes)."""
    restore = [("backup.restore-volumes", {}), ("backup.restore-qdrant", {})]
    assert snapshot.parts_changed_by("backup.restore-volumes", restore) == ["qdrant", "volumes"]
    assert snapshot.parts_changed_by("backup.restore-volumes", [("backup.restore-volumes", {})]) == ["volumes"]
    assert snapshot.parts_changed_by("backup.restore-qdrant", restore) == ["qdrant"]
    assert snapshot.parts_changed_by("fail", restore) == []
