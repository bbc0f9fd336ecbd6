"""The lab in process mode (no Docker: what `bash scripts/try-lab.sh` starts on a plain machine):
the runbooks that only restart the service work through the lab's own supervisor (the target's
``service.restart_command``), and those that need Docker are refused up front (issue 11, item 8)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from es_doctor.checks.context import CheckContext
from es_doctor.checks.registry import load_all
from es_doctor.findings import Status
from es_doctor.runner import run_checks, with_prerequisites
from support import cli_command, isolated_env, started_process_lab

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def process_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with started_process_lab(tmp_path_factory.mktemp("plab")) as stack:
        yield stack


def es_doctor(lab: Any, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = isolated_env(tmp_path, {"ES_DOCTOR_LAB_DIR": str(lab.lab_dir),
                                  "ES_DOCTOR_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
                                  "ES_DOCTOR_STATE_DIR": str(tmp_path / "state"), "COLUMNS": "200"})
    env.pop("DOCKER_HOST", None)
    return subprocess.run(cli_command("-t", "lab", *args), capture_output=True, text=True,
                          env=env, timeout=300, check=False, stdin=subprocess.DEVNULL)


def service_pid(lab: Any) -> int:
    return int(json.loads((lab.paths.run / "email-sender-go.pid").read_text())["pid"])


def status(lab: Any, check_id: str) -> Status:
    registry = load_all()
    report = run_checks(with_prerequisites([registry[check_id]], registry), CheckContext(lab.target, "lab"))
    return next(f.status for f in report.findings if f.id == check_id)


def test_service_restart_goes_through_the_labs_supervisor(process_lab: Any, tmp_path: Path) -> None:
    assert process_lab.target.service.restart_command
    before = service_pid(process_lab)
    result = es_doctor(process_lab, tmp_path, "fix", "service-restart", "--yes")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "service-restart: FIXED" in result.stdout
    assert "runs " in result.stdout and "lab restart email-sender-go" in result.stdout  # the plan says how
    after = service_pid(process_lab)
    assert after != before and psutil.pid_exists(after)
    assert "ESDOCTOR_RUN_ID" not in psutil.Process(after).environ(), "the service is not a step's program"
    assert not psutil.pid_exists(before) or psutil.Process(before).status() == psutil.STATUS_ZOMBIE  # our child


def test_a_tuning_runbook_that_restarts_the_service_is_fixed_in_process_mode(process_lab: Any,
                                                                              tmp_path: Path) -> None:
    from es_doctor.lab import faults

    faults.add(process_lab, "slow-api-crit")
    try:
        deadline = time.monotonic() + 45
        while status(process_lab, "performance.latency") not in (Status.WARN, Status.CRIT):
            assert time.monotonic() < deadline, "the fault did not trip performance.latency"
            time.sleep(1)
        result = es_doctor(process_lab, tmp_path, "fix", "vector-cache-tune", "--yes")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
        assert "vector-cache-tune: FIXED" in result.stdout
    finally:
        faults.clear(process_lab, None, wait=60)


def test_docker_runbooks_are_refused_before_any_change(process_lab: Any, tmp_path: Path) -> None:
    config = process_lab.paths.config.read_bytes()
    dry = es_doctor(process_lab, tmp_path, "fix", "config-missing", "--dry-run")
    assert dry.returncode == 69, dry.stdout + dry.stderr
    assert "REFUSED: target lab needs docker: the lab runs in process mode (no Docker engine)" in dry.stdout
    run = es_doctor(process_lab, tmp_path, "fix", "config-missing", "--yes")
    assert run.returncode == 69 and "config-missing: REFUSED" in run.stdout
    assert process_lab.paths.config.read_bytes() == config


def test_port_in_use_terminates_the_squatter_and_restarts_through_the_supervisor(process_lab: Any,
                                                                                  tmp_path: Path) -> None:
    from es_doctor.lab import faults

    faults.add(process_lab, "port-taken")
    try:
        deadline = time.monotonic() + 45
        while status(process_lab, "startup.port-owner") is not Status.CRIT:
            assert time.monotonic() < deadline, "the fault did not trip startup.port-owner"
            time.sleep(1)
        squatter = int(json.loads((process_lab.paths.run / "squatter.pid").read_text())["pid"])
        planned = es_doctor(process_lab, tmp_path, "fix", "port-in-use", "--dry-run")
        assert f"would terminate pid {squatter}" in planned.stdout, planned.stdout
        result = es_doctor(process_lab, tmp_path, "fix", "port-in-use", "--yes")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
        assert "port-in-use: FIXED" in result.stdout
    finally:
        faults.clear(process_lab, None, wait=60)


def test_fix_all_skips_what_the_target_cannot_run_and_cures_the_rest(process_lab: Any, tmp_path: Path) -> None:
    from es_doctor.lab import faults

    faults.add(process_lab, "memory-pressure")  # cured by go-gc-tune: recreates the container (refused here)
    faults.add(process_lab, "slow-api-crit")  # cured by vector-cache-tune: config + a restart
    try:
        deadline = time.monotonic() + 45
        while status(process_lab, "performance.memory") not in (Status.WARN, Status.CRIT) \
                or status(process_lab, "performance.latency") not in (Status.WARN, Status.CRIT):
            assert time.monotonic() < deadline, "the faults did not trip"
            time.sleep(1)
        result = es_doctor(process_lab, tmp_path, "fix", "--all", "--yes")
        assert "go-gc-tune: REFUSED" in result.stdout, result.stdout[-3000:]
        assert "vector-cache-tune: FIXED" in result.stdout, result.stdout[-3000:] + result.stderr[-2000:]
        assert result.returncode == 69  # the worst outcome: one runbook could not run here
        assert status(process_lab, "performance.latency") is Status.OK
    finally:
        faults.clear(process_lab, None, wait=60)
