"""The lab's state, on the real lab (issue 13): every `lab up` detects the machine again, `--volumes`
removes every piece of data, a fault cured by its runbook is no longer listed as active, a fault's FATAL
line stays in the lab, and a lab whose private engine is gone can still be taken down."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import cli_command, eventually, isolated_env, require

pytestmark = [pytest.mark.integration]


def cli(lab_dir: Path, *args: str, cwd: Path | None = None, state: Path | None = None,
        timeout: float = 300, docker_host: str | None = None) -> subprocess.CompletedProcess[str]:
    """``es-doctor ARGS`` with this lab dir (``lab …`` commands get ``--lab-dir``)."""
    env = isolated_env(state or lab_dir.parent / "env", {"ES_DOCTOR_LAB_DIR": str(lab_dir), "COLUMNS": "200"})
    if state is not None:
        env.update(ES_DOCTOR_STATE_DIR=str(state / "state"), ES_DOCTOR_AUDIT_LOG=str(state / "audit.jsonl"))
    env.pop("DOCKER_HOST", None)
    if docker_host:
        env["DOCKER_HOST"] = docker_host
    return subprocess.run(cli_command(*args), capture_output=True, text=True, env=env,
                          timeout=timeout, check=False, stdin=subprocess.DEVNULL, cwd=cwd)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def lab_json(lab_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((lab_dir / "lab.json").read_text(encoding="utf-8"))
    return data


def active_faults(lab_dir: Path) -> set[str]:
    listing = ok(cli(lab_dir, "lab", "faults", "--lab-dir", str(lab_dir)))
    return {line.split()[1] for line in listing.splitlines() if line.startswith("*")}


@pytest.fixture(scope="module")
def plab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A process-mode lab (service and Qdrant), started and stopped through the CLI."""
    lab_dir = tmp_path_factory.mktemp("slab") / "lab"
    ok(cli(lab_dir, "lab", "up", "--mode", "process", "--no-postgres", "--no-prometheus", "--lab-dir", str(lab_dir)))
    try:
        yield lab_dir
    finally:
        cli(lab_dir, "lab", "down", "--volumes", "--lab-dir", str(lab_dir))


def test_lab_up_after_down_detects_the_components_again(tmp_path: Path) -> None:
    from es_doctor.lab import infra

    require("Prometheus", infra.availability()["prometheus"])
    lab_dir = tmp_path / "lab"
    ok(cli(lab_dir, "lab", "up", "--mode", "process", "--no-postgres", "--no-prometheus", "--lab-dir", str(lab_dir)))
    try:
        first = lab_json(lab_dir)
        assert first["absent"] == {"postgres": "not started with this lab", "prometheus": "not started with this lab"}
        ok(cli(lab_dir, "lab", "down", "--lab-dir", str(lab_dir)))
        out = ok(cli(lab_dir, "lab", "up", "--mode", "process", "--no-postgres", "--lab-dir", str(lab_dir)))
        again = lab_json(lab_dir)
        assert again["absent"] == {"postgres": "not started with this lab"}, "the previous lab.json was reused"
        assert "prometheus" in out and "absent" not in out.split("prometheus", 1)[1].splitlines()[0]
        assert again["ports"]["api"] == first["ports"]["api"], "a port still free is kept: the same address"
        assert again["python"] == sys.executable
        target = (lab_dir / "target.yaml").read_text(encoding="utf-8")
        assert "prometheus:" in target and "not started with this lab" in target
        report = json.loads(cli(lab_dir, "-t", "lab", "diagnose", "--class", "monitoring", "--format", "json").stdout)
        statuses = {f["id"]: f["status"] for f in report["findings"]}
        assert statuses["monitoring.prometheus"] == "OK", statuses  # the new Prometheus is diagnosed, not SKIP
        # a running lab is not set up again under it: another mode is refused with the command to stop it
        refused = cli(lab_dir, "lab", "up", "--mode", "docker", "--lab-dir", str(lab_dir))
        assert refused.returncode == 64 and "lab down" in refused.stderr, refused.stderr
    finally:
        cli(lab_dir, "lab", "down", "--volumes", "--lab-dir", str(lab_dir))
    assert not (lab_dir / "lab.json").exists()


def test_down_volumes_removes_the_services_state(plab: Path) -> None:
    api = f"http://127.0.0.1:{lab_json(plab)['ports']['api']}"
    assert httpx.post(f"{api}/api/v1/maintenance/readonly", json={"enabled": True}, timeout=10).json() == \
        {"readonly": True}
    assert json.loads((plab / "service-state.json").read_text(encoding="utf-8"))["readonly"] is True
    ok(cli(plab, "lab", "down", "--volumes", "--lab-dir", str(plab)))
    left = sorted(p.name for p in plab.iterdir()) if plab.exists() else []
    assert left == [], f"data left after down --volumes: {left}"
    ok(cli(plab, "lab", "up", "--mode", "process", "--no-postgres", "--no-prometheus", "--lab-dir", str(plab)))
    api = f"http://127.0.0.1:{lab_json(plab)['ports']['api']}"
    assert httpx.get(f"{api}/api/v1/maintenance", timeout=10).json() == {"readonly": False, "maintenance": False}


def test_a_fault_cured_by_its_runbook_is_not_listed_as_active(plab: Path, tmp_path: Path) -> None:
    ok(cli(plab, "lab", "fault", "add", "discovery-broken", "--lab-dir", str(plab)))
    ok(cli(plab, "lab", "fault", "add", "qdrant-down", "--lab-dir", str(plab)))
    try:
        assert active_faults(plab) == {"discovery-broken", "qdrant-down"}
        eventually(lambda: "misses" in cli(plab, "-t", "lab", "diagnose", "--check", "inter-manager.discovery").stdout,
                   30, 1.0, "discovery-broken takes effect")
        ok(cli(plab, "lab", "restart", "qdrant", "--lab-dir", str(plab)))  # the lab's supervisor: Qdrant runs again
        fixed = cli(plab, "-t", "lab", "fix", "manager-discovery-restart", "--yes", state=tmp_path)
        assert "manager-discovery-restart: FIXED" in fixed.stdout, fixed.stdout[-3000:] + fixed.stderr[-2000:]
        assert active_faults(plab) == set()
        status = cli(plab, "lab", "status", "--lab-dir", str(plab))
        assert "active faults: none" in status.stdout, status.stdout
        assert json.loads((plab / "faults-state.json").read_text(encoding="utf-8")) == {"active": []}
    finally:
        ok(cli(plab, "lab", "fault", "clear", "--lab-dir", str(plab)))


def test_a_fault_injected_and_not_cured_stays_active(plab: Path) -> None:
    ok(cli(plab, "lab", "fault", "add", "slow-api-warn", "--lab-dir", str(plab)))
    try:
        time.sleep(1.5)  # the service has read faults.json: its own state now says the fault is in effect
        assert active_faults(plab) == {"slow-api-warn"}
    finally:
        ok(cli(plab, "lab", "fault", "clear", "--lab-dir", str(plab)))
    assert active_faults(plab) == set()


def test_config_missing_writes_its_fatal_line_into_the_labs_logs(plab: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "operator-cwd"
    elsewhere.mkdir()
    ok(cli(plab, "lab", "fault", "add", "config-missing", "--lab-dir", str(plab), cwd=elsewhere))
    try:
        log = plab / "logs" / "email-sender.log"
        eventually(lambda: "config file not found" in log.read_text(encoding="utf-8"), 30, 0.5,
                   "the FATAL line in the lab's log")
        fatal = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()
                 if "config file not found" in line]
        assert fatal[-1]["level"] == "FATAL"
        assert list(elsewhere.iterdir()) == [], "the lab wrote into the directory it was run from"
        assert active_faults(plab) == {"config-missing"}
    finally:
        ok(cli(plab, "lab", "fault", "clear", "--lab-dir", str(plab), cwd=elsewhere))
    assert list(elsewhere.iterdir()) == []


def test_down_volumes_when_the_private_engine_is_gone(tmp_path: Path) -> None:
    """`--start-dockerd` starts an engine of this lab dir's own; another lab sent to it is refused (one
    engine holds one stack's names); when it is gone (stopped by hand, a crash), `lab down --volumes`
    says so and removes the lab's data, exit 0."""
    from es_doctor.lab import infra, procs
    from es_doctor.lab.layout import private_engine_dir

    require("Docker engine", infra.availability()["docker"])
    lab_dir = tmp_path / "dlab"
    engine = private_engine_dir(lab_dir)
    try:
        out = ok(cli(lab_dir, "lab", "up", "--start-dockerd", "--no-postgres", "--no-prometheus",
                     "--lab-dir", str(lab_dir)))
        assert "docker mode" in out
        settings = lab_json(lab_dir)
        assert (settings["docker_host"], settings["private_engine"]) == (f"unix://{engine}/d.sock", str(engine))
        assert infra.docker_ping(settings["docker_host"])
        # another lab pointed at this engine is refused before it touches this lab's containers or volumes
        other = tmp_path / "other"
        refused = cli(other, "lab", "up", "--mode", "docker", "--no-postgres", "--no-prometheus",
                      "--lab-dir", str(other), docker_host=settings["docker_host"])
        assert refused.returncode == 69, refused.stdout + refused.stderr
        assert "already holds another lab's container" in refused.stderr and str(lab_dir.resolve()) in refused.stderr
        ok(cli(other, "lab", "down", "--volumes", "--lab-dir", str(other), docker_host=settings["docker_host"]))
        assert "running" in ok(cli(lab_dir, "lab", "status", "--lab-dir", str(lab_dir))).split("email-sender-go")[1]
        procs.stop(engine / "docker.pid.lab", timeout=30)  # the engine goes away under the lab
        infra.unmount_under(engine)
        assert not infra.docker_ping(settings["docker_host"])
        status = cli(lab_dir, "lab", "status", "--lab-dir", str(lab_dir))
        assert status.returncode == 69 and "does not answer" in status.stderr, status.stdout + status.stderr
        down = cli(lab_dir, "lab", "down", "--volumes", "--lab-dir", str(lab_dir))
        assert down.returncode == 0, down.stdout + down.stderr
        assert "is gone: no container or volume to remove there" in down.stdout
        assert not (lab_dir / "lab.json").exists() and not engine.exists()
    finally:
        if (lab_dir / "lab.json").exists():
            cli(lab_dir, "lab", "down", "--volumes", "--lab-dir", str(lab_dir))
        procs.stop(engine / "docker.pid.lab", timeout=30)
        infra.unmount_under(engine)
