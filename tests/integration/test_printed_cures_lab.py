"""Every command es-doctor prints runs as printed, and the cure printed for the cause keeps its word
(issue 21, items 1 and 3), on a real lab in process mode (no Docker: the case where a printed
``dependency-restart`` used to be REFUSED) with PostgreSQL and Prometheus.

For each fault of the lab's table that trips a WARN/CRIT finding: diagnose (JSON, the table and Nagios
print the same commands), every printed command is pasted into a subprocess (``fix`` with ``--dry-run``)
and does not exit 64; then the cure printed first (the cause's) is run as printed (``fix`` with
``--yes``), and when it says FIXED the next diagnose shows the finding it cured OK.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from es_doctor.checks.registry import load_all
from es_doctor.lab.fault_table import TABLE, FaultSpec

pytestmark = [pytest.mark.integration]

#: the faults a process-mode lab with PostgreSQL and Prometheus can inject that trip a WARN/CRIT finding
TRIPPING = [spec for spec in TABLE if not spec.docker_only and spec.program != "pprofd"
            and any(status in ("WARN", "CRIT") for status in spec.trips.values())]
#: every fault whose finding a runbook cures (the issue's "every fault that trips a curable finding"), and
#: three whose findings escalate (an escalation printed as a complete command, a cause named at start, a
#: parameter the evidence gives); the other escalation-only faults print the same kind of command and would
#: only add minutes to CI (every fault's trips are checked by test_lab_faults)
ESCALATING = ("errors-warn", "service-exits", "deploy-log-errors")
FAULTS = [spec for spec in TRIPPING if spec.cure is not None or spec.name in ESCALATING]
assert len([spec for spec in FAULTS if spec.name in ESCALATING]) == len(ESCALATING), "an escalating fault left"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from es_doctor.lab.stack import LabStack

    stack = LabStack(tmp_path_factory.mktemp("cures-lab"), mode="process", postgres=True, prometheus=True)
    try:
        stack.up(timeout=120)
        yield stack
    finally:
        stack.down(volumes=True)


def _env(lab: Any, state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ES_DOCTOR_")}
    env.update({"ES_DOCTOR_LAB_DIR": str(lab.lab_dir), "ES_DOCTOR_STATE_DIR": str(state), "COLUMNS": "300",
                "HOME": str(state), "XDG_CONFIG_HOME": str(state / "xdg")})
    env.pop("DOCKER_HOST", None)
    return env


def run_printed(command: str, env: dict[str, str], *extra: str,
                timeout: float = 400) -> subprocess.CompletedProcess[str]:
    """``command`` exactly as es-doctor printed it, as a shell would split it (``es-doctor`` is this one)."""
    words = shlex.split(command)
    assert words[0] == "es-doctor", command
    return subprocess.run([sys.executable, "-m", "es_doctor", *words[1:], *extra], capture_output=True, text=True,
                          env=env, timeout=timeout, check=False, stdin=subprocess.DEVNULL)


def diagnose(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_printed("es-doctor -t lab diagnose", env, *args, timeout=180)


def report(env: dict[str, str]) -> dict[str, Any]:
    result = diagnose(env, "--format", "json")
    assert result.returncode in (0, 1, 2, 3), result.stdout[-2000:] + result.stderr[-2000:]
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def wait_tripped(env: dict[str, str], spec: FaultSpec, timeout: float = 60.0) -> dict[str, Any]:
    """The report once one of the fault's WARN/CRIT trips shows (those whose component the lab has)."""
    registry = load_all()
    wanted = {c for c, s in spec.trips.items() if s in ("WARN", "CRIT") and "docker" not in registry[c].components}
    deadline = time.monotonic() + timeout
    while True:
        data = report(env)
        status = {f["id"]: f["status"] for f in data["findings"]}
        if any(status.get(c) in ("WARN", "CRIT") for c in wanted) or time.monotonic() > deadline:
            break
        time.sleep(2.0)
    assert any(status.get(c) in ("WARN", "CRIT") for c in wanted), (spec.name, status)
    return data


def printed_commands(data: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(c for f in data["findings"] for c in (f.get("fix_command"), f.get("escalate_command"))
                              if c))


@pytest.mark.parametrize("spec", FAULTS, ids=[spec.name for spec in FAULTS])
def test_the_printed_cure_of_the_cause_runs_as_printed_and_keeps_its_word(lab: Any, tmp_path: Path,
                                                                          spec: FaultSpec) -> None:
    from es_doctor.lab import faults

    env = _env(lab, tmp_path / "state")
    if spec.needs and spec.needs in lab.settings.absent:
        pytest.fail(f"the lab lacks {spec.needs}: {lab.settings.absent[spec.needs]}")
    faults.add(lab, spec.name)
    try:
        data = wait_tripped(env, spec)
        commands = printed_commands(data)
        assert commands, f"{spec.name}: no command printed for any problem"
        table, nagios = diagnose(env).stdout, diagnose(env, "--format", "nagios").stdout
        for command in commands:
            assert "…" not in command and "<" not in command, command
            assert command.startswith(("es-doctor -t lab ", "es-doctor lab restart ")), command
            if command.split()[3:4] == ["fix"]:
                planned = run_printed(command, env, "--dry-run")
                assert planned.returncode == 0, (command, planned.stdout[-2000:], planned.stderr[-1000:])
                assert "REFUSED" not in planned.stdout, (command, planned.stdout)
        # the table and Nagios print the same commands in their own run (an escalation's --issue quotes the
        # finding's summary, whose numbers may differ from one run to the next: compared up to the id)
        stable = [c.split(": ", 1)[0] for c in commands]
        assert any(c in table for c in stable), table[-3000:]
        assert any(c in nagios for c in stable), nagios[-3000:]
        if spec.name in ("service-exits", "config-missing", "port-taken"):
            assert data["root_causes"][0] in ("startup.config-file", "startup.port-owner", "startup.api-port"), data
            assert "deploy.containers" not in data["root_causes"]
        if spec.name in ("config-missing", "port-taken"):
            assert data["root_causes"][0] == {"config-missing": "startup.config-file",
                                              "port-taken": "startup.port-owner"}[spec.name], data["root_causes"]
        # the cure printed first is the cause's: run it as printed
        by_id = {f["id"]: f for f in data["findings"]}
        first = next(by_id[i] for i in data["problems"] if by_id[i].get("fix_command") or
                     by_id[i].get("escalate_command"))
        assert first["consequence_of"] is None, first
        command = first.get("fix_command") or first["escalate_command"]
        is_fix = command.split()[3:4] == ["fix"]
        result = run_printed(command, env, *(["--yes"] if is_fix else []))
        assert result.returncode != 64, (command, result.stdout[-2000:], result.stderr[-2000:])
        if is_fix and ": FIXED" in result.stdout:
            after = {f["id"]: f for f in report(env)["findings"]}
            assert after[first["id"]]["status"] in ("OK", "SKIP"), (command, after[first["id"]])
            assert after[first["id"]]["status"] == "OK" or not after[first["id"]]["summary"].startswith(
                "skipped: prerequisite"), after[first["id"]]
    finally:
        faults.clear(lab, None, wait=90)


def test_fix_deployment_log_as_printed_does_not_exit_64(lab: Any, tmp_path: Path) -> None:
    from es_doctor.lab import faults

    env = _env(lab, tmp_path / "state")
    faults.add(lab, "deploy-log-errors")
    try:
        data = report(env)
        finding = next(f for f in data["findings"] if f["id"] == "deploy.deployment-log")
        assert finding["status"] == "CRIT"
        # no Docker and no previous image named: the rollback cannot run here, the escalation is printed
        assert finding["fix_command"] is None
        assert finding["escalate_command"].startswith("es-doctor -t lab escalate --level 2 --severity high --issue ")
        result = run_printed("es-doctor -t lab fix deploy.deployment-log", env, "--dry-run")
        assert result.returncode not in (64, 0), result.stdout + result.stderr
        assert finding["escalate_command"] in result.stdout + result.stderr, result.stdout + result.stderr
    finally:
        faults.clear(lab, None, wait=90)


def test_a_stale_alert_is_clearing_and_fix_all_plans_no_cure_from_it(lab: Any, tmp_path: Path) -> None:
    """qdrant-flaky fires EmailSenderQdrantConnectionErrors (for: 1m); once the fault is cleared the alert
    keeps firing while its rate window still holds the errors, but the live check is OK: the alert is
    clearing, with no cure, and ``fix --all`` plans no Qdrant restart from it."""
    from es_doctor.lab import faults

    env = _env(lab, tmp_path / "state")
    faults.add(lab, "qdrant-flaky")
    try:
        deadline = time.monotonic() + 240
        while True:
            alerts = next(f for f in report(env)["findings"] if f["id"] == "monitoring.alerts")
            if alerts["status"] == "CRIT" or time.monotonic() > deadline:
                break
            time.sleep(5.0)
        assert alerts["status"] == "CRIT", alerts
    finally:
        faults.clear(lab, None, wait=90)
    deadline = time.monotonic() + 90
    while True:
        by_id = {f["id"]: f for f in report(env)["findings"]}
        alerts = by_id["monitoring.alerts"]
        if "EmailSenderQdrantConnectionErrors (vectors.connection-errors OK now)" in alerts["summary"] \
                or time.monotonic() > deadline:
            break
        time.sleep(3.0)
    # the alert is named as clearing; other alerts the fault fired may still be live, with their own checks
    assert "clearing (alert still in its window)" in alerts["summary"], alerts
    assert "EmailSenderQdrantConnectionErrors (vectors.connection-errors OK now)" in alerts["summary"], alerts
    assert alerts["cause"] != "alert:vectors.connection-errors", alerts
    if alerts["status"] == "OK":
        assert alerts["fix_command"] is None and alerts["escalate_command"] is None, alerts
    planned = run_printed("es-doctor -t lab fix --all --dry-run", env)
    assert planned.returncode in (0, 69), planned.stdout + planned.stderr
    assert "dependency-restart" not in planned.stdout and "lab restart qdrant" not in planned.stdout, planned.stdout


def test_lab_faults_prints_cures_the_lab_can_run(lab: Any, tmp_path: Path) -> None:
    env = _env(lab, tmp_path / "state")
    listed = run_printed("es-doctor lab faults", env)
    assert listed.returncode == 0, listed.stderr
    cures = [line.split("cure: ", 1)[1] for line in listed.stdout.splitlines() if "cure: es-doctor" in line]
    assert cures and all(c.startswith(("es-doctor -t lab fix ", "es-doctor lab restart ")) for c in cures), cures
    assert "es-doctor lab restart qdrant" in cures and "es-doctor lab restart postgres" in cures
    for command in cures:
        if " fix " in command:
            result = run_printed(command, env, "--dry-run")
            assert result.returncode == 0 and "REFUSED" not in result.stdout, (command, result.stdout)
