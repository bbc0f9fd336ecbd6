"""`es-doctor fix` end to end on the real lab (Docker engine, PostgreSQL, Prometheus): each fault is
injected, diagnose trips, `fix --yes` reports FIXED, and diagnose comes back clean. Also: --dry-run
changes nothing, a failing step rolls back, Ctrl-C is audited and rolled back, the lock."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from es_doctor.config import Target
from es_doctor.findings import Finding, Status
from es_doctor.lab.fault_table import FAULT_SPECS, HISTORY_CHECKS, TABLE
from es_doctor.lab.layout import LAB_SIGNAL_WINDOW_S
from support import cli_command, eventually, isolated_env

pytestmark = [pytest.mark.integration, pytest.mark.docker]

#: checks that look back in time: the last minute of logs, and Prometheus alerts over their rule windows
#: (up to 5 minutes): a cured problem still shows there for a while, by design
LOG_WINDOW_CHECKS = HISTORY_CHECKS


def diagnose(target: Target, *check_ids: str) -> dict[str, Finding]:
    from es_doctor.runner import diagnose as run

    return {f.id: f for f in run(target, "lab", check_ids).findings}


def wait_tripped(target: Target, check_id: str, timeout: float = 45.0) -> Finding:
    seen: list[Finding] = []

    def tripped() -> Finding | None:
        seen.append(diagnose(target, check_id)[check_id])
        return seen[-1] if seen[-1].status in (Status.WARN, Status.CRIT) else None

    return eventually(tripped, timeout, 1.0, lambda: f"{check_id} did not trip: {seen[-1].summary}")


def assert_clean_soon(target: Target, within: float = LAB_SIGNAL_WINDOW_S + 20.0) -> None:
    """diagnose comes back clean. The metrics window looks back a few seconds, and on a loaded machine a
    check with too few requests in it widens to the lab's signal window (a minute): requests that failed or
    crawled while the cure was under way may still be in it, so the stack has one signal window."""
    problems: dict[str, str] = {}

    def clean() -> bool:
        problems.clear()
        problems.update({i: f"{f.status.value}: {f.summary}" for i, f in diagnose(target).items()
                         if f.status is not Status.OK and i not in LOG_WINDOW_CHECKS})
        return not problems

    eventually(clean, within, 1.0, lambda: f"diagnose is clean; problems: {problems}")


def es_doctor(lab: Any, tmp_path: Path, *args: str, timeout: float = 300,
              extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = isolated_env(tmp_path, {"ES_DOCTOR_LAB_DIR": str(lab.lab_dir),
                                  "ES_DOCTOR_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
                                  "ES_DOCTOR_STATE_DIR": str(tmp_path / "state"), "COLUMNS": "200",
                                  **(extra_env or {})})
    return subprocess.run(cli_command("-t", "lab", *args), capture_output=True, text=True,
                          env=env, timeout=timeout, check=False)


def audit(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


# (fault, what the operator types for `fix`, params, the check that trips), from the lab's fault table:
# the operator types the finding id, and es-doctor must apply the runbook (and parameters) the table
# says cure the fault. (The lab's service feels the guide's tuning remedies after a restart:
# lab/service.py cured_by_config.)
CASES: list[tuple[str, str, list[str], str]] = [
    (spec.name, spec.cure_finding, [], spec.cure_finding) for spec in TABLE
    if spec.cure is not None and spec.cure_finding is not None
] + [
    # a runbook given by its id, with its parameters, also cures it
    ("qdrant-down", "dependency-restart", ["component=qdrant"], "startup.qdrant"),
    ("event-bus-saturated", "event-bus-tune", [], "inter-manager.event-bus"),
]


@pytest.mark.parametrize(("fault", "ident", "params", "check_id"), CASES, ids=[f"{c[0]}->{c[1]}" for c in CASES])
def test_fix_cures_the_fault(healthy_lab: Any, tmp_path: Path, fault: str, ident: str, params: list[str],
                             check_id: str) -> None:
    healthy_lab.add_fault(fault)
    wait_tripped(healthy_lab.target, check_id)
    args = ["fix", ident, "--yes"] + [a for p in params for a in ("--param", p)]
    result = es_doctor(healthy_lab, tmp_path, *args)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert ": FIXED" in result.stdout
    spec = FAULT_SPECS[fault]
    if ident == spec.cure_finding and spec.cure is not None:  # the finding's cure is the table's
        runbook, cure_params = spec.cure
        assert f"Plan: {runbook} " in result.stdout, result.stdout[:2000]
        for key, value in cure_params.items():
            assert f"{key}={value}" in result.stdout  # params read as words
    assert_clean_soon(healthy_lab.target)
    events = [r["event"] for r in audit(tmp_path)]
    assert events[0] == "fix.start" and events[-1] == "fix.end" and "fix.step" in events


def test_dry_run_changes_nothing(healthy_lab: Any, tmp_path: Path) -> None:
    stack = healthy_lab.stack
    healthy_lab.add_fault("wrong-vector-size")
    url = f"http://127.0.0.1:{stack.settings.ports.qdrant}/collections/task_vectors"
    before = httpx.get(url).json()["result"]
    config_before = stack.paths.config.read_bytes()
    result = es_doctor(healthy_lab, tmp_path, "fix", "qdrant-dimension-fix", "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Plan: qdrant-dimension-fix" in result.stdout and "snapshot Qdrant collection task_vectors" in result.stdout
    after = httpx.get(url).json()["result"]
    assert after["config"]["params"] == before["config"]["params"]
    assert after["points_count"] == before["points_count"]
    assert stack.paths.config.read_bytes() == config_before
    assert [r["event"] for r in audit(tmp_path)] == ["fix.dry-run"]


def test_destructive_runbook_without_yes_asks_and_declines(healthy_lab: Any, tmp_path: Path) -> None:
    healthy_lab.add_fault("wrong-vector-size")
    result = es_doctor(healthy_lab, tmp_path, "fix", "qdrant-dimension-fix")  # stdin is not a terminal
    assert result.returncode == 1
    assert "DECLINED" in result.stdout
    size = httpx.get(f"http://127.0.0.1:{healthy_lab.stack.settings.ports.qdrant}/collections/task_vectors").json()
    assert size["result"]["config"]["params"]["vectors"]["size"] == 768, "nothing was changed"


def _user_runbooks(tmp_path: Path, text: str) -> dict[str, str]:
    directory = tmp_path / "user-runbooks"
    directory.mkdir(exist_ok=True)
    (directory / "test-runbook.yaml").write_text(text)
    config = tmp_path / "es-doctor.yaml"
    config.write_text(f"runbook_dirs: [{directory}]\n")
    return {"ES_DOCTOR_CONFIG": str(config)}


FAILING = """
id: lab-failing-change
title: a change whose second step fails
description: sets two config keys, then fails; the rollback must restore both
class: inter-manager
steps:
  - name: set-workers
    action: config.set
    inputs: {key: event_bus.workers, value: 99}
  - name: set-buffer
    action: config.set
    inputs: {key: event_bus.buffer_size, value: 5}
  - name: breaks
    action: fail
    inputs: {message: "made to fail"}
rollback:
  - name: restore-buffer
    action: config.set
    inputs: {key: event_bus.buffer_size, value: "{{ steps['set-buffer'].old }}"}
    when: "'set-buffer' in steps"
  - name: restore-workers
    action: config.set
    inputs: {key: event_bus.workers, value: "{{ steps['set-workers'].old }}"}
    when: "'set-workers' in steps"
verify: [startup.health]
"""


def test_a_failing_step_rolls_back_and_leaves_the_stack_as_it_was(healthy_lab: Any, tmp_path: Path) -> None:
    config = healthy_lab.stack.paths.config
    import yaml

    before = yaml.safe_load(config.read_text())
    env = _user_runbooks(tmp_path, FAILING)
    result = es_doctor(healthy_lab, tmp_path, "fix", "lab-failing-change", "--yes", extra_env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED, ROLLED BACK" in result.stdout
    assert yaml.safe_load(config.read_text()) == before
    steps = [(r.get("step"), r.get("status")) for r in audit(tmp_path) if r["event"] == "fix.step"]
    assert ("breaks", "failed") in steps and ("restore-workers", "ok") in steps and ("restore-buffer", "ok") in steps


SLOW = """
id: lab-slow-change
title: a change with a long step
description: sets a key, then waits; Ctrl-C during the wait must be audited and rolled back
class: inter-manager
steps:
  - name: set-workers
    action: config.set
    inputs: {key: event_bus.workers, value: 77}
  - name: long-wait
    action: shell
    inputs: {argv: [sleep, "60"]}
    timeout: 120
rollback:
  - name: restore-workers
    action: config.set
    inputs: {key: event_bus.workers, value: "{{ steps['set-workers'].old }}"}
    when: "'set-workers' in steps"
"""


def test_ctrl_c_during_a_step_is_audited_and_rolled_back(healthy_lab: Any, tmp_path: Path) -> None:
    import yaml

    config = healthy_lab.stack.paths.config
    before = yaml.safe_load(config.read_text())
    env = isolated_env(tmp_path, {"ES_DOCTOR_LAB_DIR": str(healthy_lab.lab_dir),
                                  "ES_DOCTOR_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
                                  "ES_DOCTOR_STATE_DIR": str(tmp_path / "state"), **_user_runbooks(tmp_path, SLOW)})
    proc = subprocess.Popen(cli_command("-t", "lab", "fix", "lab-slow-change", "--yes"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and yaml.safe_load(config.read_text())["event_bus"]["workers"] != 77:
        time.sleep(0.1)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    events = [r["event"] for r in audit(tmp_path)]
    assert "fix.interrupted" in events and events[-1] == "fix.end"
    assert yaml.safe_load(config.read_text()) == before


def test_one_fix_at_a_time_per_target(healthy_lab: Any, tmp_path: Path) -> None:
    from es_doctor.runbooks.audit import fix_lock

    with fix_lock(tmp_path / "state", "lab", "some-runbook"):
        result = es_doctor(healthy_lab, tmp_path, "fix", "manager-discovery-restart", "--yes")
    assert result.returncode == 69
    assert "another fix is running on target lab: runbook some-runbook" in result.stderr


def test_unknown_id_suggests_the_nearest(healthy_lab: Any, tmp_path: Path) -> None:
    result = es_doctor(healthy_lab, tmp_path, "fix", "qdrant-colection-recreate")
    assert result.returncode == 64
    assert "did you mean qdrant-collection-recreate" in result.stderr


def test_fix_all_plans_the_runbooks_of_the_current_findings(healthy_lab: Any, tmp_path: Path) -> None:
    healthy_lab.add_fault("collection-missing")
    wait_tripped(healthy_lab.target, "vectors.collection")
    dry = es_doctor(healthy_lab, tmp_path, "fix", "--all", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "Plan: qdrant-collection-recreate" in dry.stdout
    url = f"http://127.0.0.1:{healthy_lab.stack.settings.ports.qdrant}/collections/task_vectors"
    assert httpx.get(url).status_code == 404, "a dry run changes nothing"
    done = es_doctor(healthy_lab, tmp_path, "fix", "--all", "--yes")
    # the collection is back, but empty: the tasks' vectors are missing, so it is not FIXED
    assert done.returncode == 1, done.stdout + done.stderr
    assert "qdrant-collection-recreate: NOT FIXED" in done.stdout
    assert "next: es-doctor -t lab fix qdrant-collection-restore" in done.stdout
    assert httpx.get(url).status_code == 200


def test_a_recreated_collection_is_not_a_cured_one(healthy_lab: Any, tmp_path: Path) -> None:
    """Recreating a lost collection ends NOT FIXED with the count of tasks without a vector and the
    way back; restoring the collection from the latest backup's snapshot then ends FIXED."""
    import re

    start = diagnose(healthy_lab.target, "vectors.coverage")["vectors.coverage"]
    assert start.status is Status.OK, start.summary  # the lab's baseline: every task has its vector
    api = f"http://127.0.0.1:{healthy_lab.stack.settings.ports.api}"
    # no task is written meanwhile (the lab's traffic would add tasks the backup cannot hold)
    httpx.post(f"{api}/api/v1/maintenance/readonly", json={"enabled": True}, timeout=5).raise_for_status()
    backup = es_doctor(healthy_lab, tmp_path, "emergency", "backup")
    assert backup.returncode == 0, backup.stdout[-3000:] + backup.stderr[-2000:]
    healthy_lab.add_fault("collection-missing")
    wait_tripped(healthy_lab.target, "vectors.collection")
    recreated = es_doctor(healthy_lab, tmp_path, "fix", "vectors.collection", "--yes")
    assert recreated.returncode == 1, recreated.stdout[-3000:] + recreated.stderr[-2000:]
    assert "qdrant-collection-recreate: NOT FIXED" in recreated.stdout
    counted = re.search(r"(\d+) of (\d+) task\(s\) have no vector", recreated.stdout)
    assert counted is not None and counted.group(1) == counted.group(2) and int(counted.group(1)) > 0
    assert "next: es-doctor -t lab fix qdrant-collection-restore" in recreated.stdout
    restored = es_doctor(healthy_lab, tmp_path, "fix", "qdrant-collection-restore", "--yes")
    assert restored.returncode == 0, restored.stdout[-3000:] + restored.stderr[-2000:]
    assert "qdrant-collection-restore: FIXED" in restored.stdout
    coverage = diagnose(healthy_lab.target, "vectors.coverage")["vectors.coverage"]
    assert coverage.status is Status.OK, coverage.summary


@pytest.mark.parametrize(("runbook", "container", "check_id"), [
    ("service-restart", "email-sender-go", "startup.container"),
    ("stack-restart", "qdrant", "deploy.containers"),
])
def test_a_stopped_container_is_started_again(healthy_lab: Any, tmp_path: Path, runbook: str, container: str,
                                              check_id: str) -> None:
    import docker

    client = docker.DockerClient(base_url=healthy_lab.stack.settings.docker_host)
    try:
        client.containers.get(container).stop(timeout=5)
        wait_tripped(healthy_lab.target, check_id)
        result = es_doctor(healthy_lab, tmp_path, "fix", runbook, "--yes")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
        assert f"{runbook}: FIXED" in result.stdout
        assert client.containers.get(container).attrs["State"]["Running"]
    finally:
        client.close()
    assert_clean_soon(healthy_lab.target)


UNVERIFIABLE = """
id: lab-unverifiable
title: a change verified by a check that does not exist
description: the engine used to drop the unknown id, verify nothing and report FIXED
class: inter-manager
cures: [inter-manager.event-bus]
steps:
  - name: set-workers
    action: config.set
    inputs: {key: event_bus.workers, value: 42}
verify: [startup.helth]
"""


def test_a_runbook_verified_by_an_unknown_check_is_refused_by_validate_and_by_fix(healthy_lab: Any,
                                                                                  tmp_path: Path) -> None:
    config = healthy_lab.stack.paths.config
    before = config.read_bytes()
    env = _user_runbooks(tmp_path, UNVERIFIABLE)
    path = tmp_path / "user-runbooks" / "test-runbook.yaml"
    line = path.read_text().splitlines().index("verify: [startup.helth]") + 1
    validate = es_doctor(healthy_lab, tmp_path, "runbooks", "validate", str(path), extra_env=env)
    assert validate.returncode == 65, validate.stdout + validate.stderr
    assert f"{path}:{line}: verify[0]: no check 'startup.helth'" in validate.stderr
    fix = es_doctor(healthy_lab, tmp_path, "fix", "lab-unverifiable", "--yes", extra_env=env)
    assert fix.returncode != 0 and "FIXED" not in fix.stdout, fix.stdout + fix.stderr
    assert f"{path}:{line}" in fix.stderr and "startup.helth" in fix.stderr, fix.stderr
    assert config.read_bytes() == before, "nothing was changed"
    assert not [r for r in audit(tmp_path) if r["event"] == "fix.start"]
