"""Each orchestration fault of the lab changes the real stack (containers, files, ports, Qdrant,
PostgreSQL, Prometheus), observed here with the raw clients, never through es-doctor's checks.
Runtime faults are proven program by program in ``test_lab_programs.py``; here they are proven once
more end to end through the containers. Also: ``es-doctor lab`` in process mode, from its CLI."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import psutil
import psycopg
import pytest

from es_doctor.lab import faults
from es_doctor.lab.stack import LabStack
from support import cli_command, eventually, isolated_env

pytestmark = [pytest.mark.integration, pytest.mark.docker]

GUIDE_FAULTS = {  # the list: one fault per symptom of the guide
    "service-exits", "config-missing", "go-env-unset", "port-taken", "slow-api-warn", "slow-api-crit",
    "errors-warn", "errors-crit", "memory-pressure", "slow-logs", "collection-missing", "wrong-vector-size",
    "vector-insert-errors", "qdrant-flaky", "manager-down", "discovery-broken", "event-bus-saturated",
    "metrics-off", "deploy-log-errors",
}


def get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=3)
    except httpx.HTTPError:
        return None


@pytest.fixture
def lab(healthy_lab: Any) -> Iterator[Any]:
    yield healthy_lab


@pytest.fixture
def engine(lab: Any) -> Iterator[docker.DockerClient]:
    stack: LabStack = lab.stack
    client = docker.DockerClient(base_url=stack.settings.docker_host)
    yield client
    client.close()


def api(stack: LabStack, path: str) -> str:
    return f"http://127.0.0.1:{stack.settings.ports.api}{path}"


def qdrant(stack: LabStack, path: str) -> str:
    return f"http://127.0.0.1:{stack.settings.ports.qdrant}{path}"


def test_the_lab_has_a_fault_for_every_symptom_of_the_guide() -> None:
    assert set(faults.FAULTS) >= GUIDE_FAULTS
    for name, fault in faults.FAULTS.items():
        assert fault.description, name


def test_healthy_lab_runs_the_stack_as_named_containers(lab: Any, engine: docker.DockerClient) -> None:
    stack: LabStack = lab.stack
    names = {c.name: c for c in engine.containers.list(all=True)}
    for name in ("email-sender-go", "qdrant", "postgres", "prometheus"):
        assert names[name].status == "running", name
        assert names[name].labels["com.docker.compose.project"] == stack.settings.compose_project
    assert {"qdrant_data", "postgres_data"} <= {v.name for v in engine.volumes.list()}
    service = names["email-sender-go"]
    assert service.attrs["HostConfig"]["Memory"] == stack.settings.memory_limit
    assert "GO_ENV=staging" in service.attrs["Config"]["Env"]
    health = get(api(stack, "/health"))
    assert health is not None and health.status_code == 200


def test_service_exits(lab: Any, engine: docker.DockerClient) -> None:
    stack: LabStack = lab.stack
    lab.add_fault("service-exits")
    container = engine.containers.get("email-sender-go")
    eventually(lambda: (container.reload(), container.status)[1] == "exited", message="container exited")
    assert container.attrs["State"]["ExitCode"] == 1
    assert b"FATAL" in container.logs(tail=50) or "FATAL" in (stack.paths.logs / "email-sender.log").read_text()
    assert get(api(stack, "/health")) is None


def test_config_missing(lab: Any, engine: docker.DockerClient) -> None:
    stack: LabStack = lab.stack
    lab.add_fault("config-missing")
    assert not stack.paths.config.exists()
    container = engine.containers.get("email-sender-go")
    eventually(lambda: (container.reload(), container.status)[1] == "exited", message="container exited")
    assert container.attrs["State"]["ExitCode"] != 0
    lab.clear()
    assert stack.paths.config.is_file()


def test_go_env_unset(lab: Any, engine: docker.DockerClient) -> None:
    stack: LabStack = lab.stack
    lab.add_fault("go-env-unset")
    env = engine.containers.get("email-sender-go").attrs["Config"]["Env"]
    assert not any(e.startswith("GO_ENV=") for e in env)
    eventually(lambda: (r := get(api(stack, "/ready"))) is not None and r.status_code == 503,
               message="/ready answers 503")


def test_port_taken(lab: Any, engine: docker.DockerClient) -> None:
    stack: LabStack = lab.stack
    lab.add_fault("port-taken")
    port = stack.settings.ports.api
    holders = [c for c in psutil.net_connections("tcp")
               if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid]
    assert holders, "someone listens on the API port"
    assert "squatter" in " ".join(psutil.Process(holders[0].pid).cmdline())
    container = engine.containers.get("email-sender-go")
    eventually(lambda: (container.reload(), container.status)[1] == "exited", message="service exited")
    assert container.attrs["State"]["ExitCode"] == 1


@pytest.mark.parametrize(("fault", "name"), [("qdrant-down", "qdrant"), ("postgres-down", "postgres"),
                                             ("prometheus-down", "prometheus")])
def test_component_down(lab: Any, engine: docker.DockerClient, fault: str, name: str) -> None:
    stack: LabStack = lab.stack
    lab.add_fault(fault)
    container = engine.containers.get(name)
    assert container.status != "running"
    ports = stack.settings.ports
    if name == "qdrant":
        assert get(qdrant(stack, "/healthz")) is None
    elif name == "postgres":
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(host="127.0.0.1", port=ports.postgres, user="emailsender", dbname="email_sender",
                            password=stack.settings.pg_password, connect_timeout=2).close()
    else:
        assert get(f"http://127.0.0.1:{ports.prometheus}/-/ready") is None
    lab.clear()
    container.reload()
    assert container.status == "running"


def test_collection_missing_then_restored_with_its_points(lab: Any) -> None:
    stack: LabStack = lab.stack
    before = httpx.post(qdrant(stack, "/collections/task_vectors/points/count"), json={"exact": True}).json()
    lab.add_fault("collection-missing")
    assert httpx.get(qdrant(stack, "/collections/task_vectors")).status_code == 404
    lab.clear()
    info = httpx.get(qdrant(stack, "/collections/task_vectors")).json()["result"]
    assert info["config"]["params"]["vectors"]["size"] == 1536
    after = httpx.post(qdrant(stack, "/collections/task_vectors/points/count"), json={"exact": True}).json()
    assert after["result"]["count"] >= 1 and before["result"]["count"] >= 1


def test_wrong_vector_size(lab: Any) -> None:
    stack: LabStack = lab.stack
    lab.add_fault("wrong-vector-size")
    info = httpx.get(qdrant(stack, "/collections/task_vectors")).json()["result"]
    assert info["config"]["params"]["vectors"]["size"] == 768


def test_metrics_off(lab: Any) -> None:
    stack: LabStack = lab.stack
    metrics = f"http://127.0.0.1:{stack.settings.ports.metrics}/metrics"
    assert get(metrics) is not None
    lab.add_fault("metrics-off")
    eventually(lambda: get(api(stack, "/health")) is not None, message="service back")
    assert get(metrics) is None
    assert "enabled: false" in stack.paths.config.read_text()


def test_deploy_log_errors(lab: Any) -> None:
    stack: LabStack = lab.stack
    lab.add_fault("deploy-log-errors")
    deploy = list(stack.paths.logs.glob("deployment-*.log"))
    migration = list(stack.paths.logs.glob("migration-*.log"))
    assert deploy and migration
    assert '"level": "ERROR"' in deploy[0].read_text()
    lab.clear()
    assert not list(stack.paths.logs.glob("deployment-*.log"))


def test_image_drift(lab: Any, engine: docker.DockerClient) -> None:
    lab.add_fault("image-drift")
    container = engine.containers.get("email-sender-go")
    assert container.attrs["Config"]["Image"] == "email-sender-go:previous"
    assert container.image.id != engine.images.get("email-sender-go:lab").id, "a real other image"


def test_runtime_faults_through_the_containers(lab: Any) -> None:
    """Slow API and errors, end to end through the service container."""
    stack: LabStack = lab.stack
    lab.add_fault("slow-api-crit")
    eventually(lambda: _elapsed(api(stack, "/api/v1/managers/status")) > 0.5, message="API slower than 500 ms")
    lab.clear()
    lab.add_fault("errors-crit")
    # the service polls its faults file every 0.5 s (longer on a loaded host): wait for the first 500
    eventually(lambda: httpx.get(api(stack, "/api/v1/managers/status"), timeout=5).status_code == 500,
               message="a 500 once the fault is seen")
    codes = [r.status_code for r in (httpx.get(api(stack, "/api/v1/managers/status"), timeout=5) for _ in range(60))]
    assert codes.count(500) >= 2


def _elapsed(url: str) -> float:
    start = time.perf_counter()
    httpx.get(url, timeout=10)
    return time.perf_counter() - start


def test_lab_cli_in_process_mode(tmp_path: Path) -> None:
    """`es-doctor lab up|status|fault add|faults|fault clear|down` as an operator runs them."""
    short = Path(os.environ.get("TMPDIR", "/tmp")) / f"esd-cli-{os.getpid()}"
    env = isolated_env(tmp_path, {"ES_DOCTOR_LAB_DIR": str(short), "COLUMNS": "200"})

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(cli_command("lab", *args), capture_output=True, text=True,
                              env=env, timeout=180, check=False)

    try:
        up = run("up", "--mode", "process", "--no-prometheus")
        assert up.returncode == 0, up.stdout + up.stderr
        assert "process mode" in up.stdout
        status = run("status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert "absent: not started with this lab" in status.stdout
        assert run("fault", "add", "errors-crit").returncode == 0
        assert "* errors-crit" in run("faults").stdout
        unknown = run("fault", "add", "no-such-fault")
        assert unknown.returncode == 64 and "unknown fault" in unknown.stderr
        cleared = run("fault", "clear")
        assert cleared.returncode == 0 and "errors-crit" in cleared.stdout
        assert "active faults: none" in run("status").stdout
    finally:
        down = run("down", "--volumes")
        assert down.returncode == 0, down.stdout + down.stderr
    assert not (short / "lab.json").exists()
