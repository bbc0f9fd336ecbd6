"""``docker.recreate`` (redeploy, rollbacks, env.set) keeps the container's whole configuration and
never loses the running container: a real dockerd (the harness's), a container with published
ports, extra hosts, a healthcheck, labels, user, working directory, entrypoint and command, a named
and an anonymous volume, a restart policy and resources."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from es_doctor.lab import infra
from es_doctor.probes.docker import DockerProbe

pytestmark = pytest.mark.integration

#: what a new container has of its own: everything else must be the old one's
OWN = {"Id", "Created", "State", "ResolvConfPath", "HostnamePath", "HostsPath", "LogPath", "RestartCount",
       "NetworkSettings", "GraphDriver", "Path", "Args", "Mounts", "Name", "Platform", "ProcessLabel",
       "AppArmorProfile", "ExecIDs", "SizeRw", "SizeRootFs", "Driver", "MountLabel"}


@pytest.fixture
def client(docker_engine: str) -> Iterator[docker.DockerClient]:
    c = docker.DockerClient(base_url=docker_engine, timeout=60)
    yield c
    c.close()


@pytest.fixture
def service(client: docker.DockerClient) -> Iterator[str]:
    name = f"esd-recreate-{uuid.uuid4().hex[:8]}"
    volume = client.volumes.create(name=f"{name}-data")
    api = client.api
    host = api.create_host_config(
        network_mode="none", port_bindings={8080: ("127.0.0.1", 18080)}, extra_hosts={"db.internal": "10.1.2.3"},
        binds=[f"{volume.name}:/named"], restart_policy={"Name": "on-failure", "MaximumRetryCount": 3},
        mem_limit="64m", cpu_shares=512, cap_drop=["NET_RAW"], init=True, shm_size="16m")
    api.create_container(
        infra.BASE_IMAGE, name=name, host_config=host, ports=[8080], volumes=["/anon"],
        entrypoint=["/bin/busybox", "sh", "-c"],
        command=['test -z "$FAIL" || exit 3; exec /bin/busybox sleep 100000'],
        environment={"GOGC": "80", "KEEP": "yes"}, labels={"team": "mail", "com.example.v": "1"},
        user="1000:1000", working_dir="/tmp", stop_signal="SIGINT",
        healthcheck={"Test": ["CMD", "/bin/busybox", "true"], "Interval": 2_000_000_000, "Retries": 2},
        hostname="mailer")
    api.start(name)
    yield name
    for c in client.containers.list(all=True, filters={"name": name}):
        c.remove(force=True, v=True)
    for v in client.volumes.list():
        if not client.containers.list(all=True, filters={"volume": v.name}) and v.name.startswith(name):
            v.remove(force=True)


def inspect(client: docker.DockerClient, name: str) -> dict[str, Any]:
    return dict(client.api.inspect_container(name))


def mounts(info: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    return sorted((m["Type"], m.get("Name", ""), m["Destination"], m["RW"]) for m in info["Mounts"])


def test_recreate_carries_the_whole_configuration(client: docker.DockerClient, service: str,
                                                  docker_engine: str) -> None:
    before = inspect(client, service)
    volumes_before = {v.name for v in client.volumes.list()}
    assert before["HostConfig"]["PortBindings"] == {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18080"}]}
    result = probe_for(client, docker_engine).recreate(service, env_set={"GOGC": "50"}, settle_s=0.5)
    after = inspect(client, service)
    assert result.ok, result.failure
    assert after["Id"] != before["Id"] and after["State"]["Running"]
    # Config: everything the same but the one variable the step changed
    assert after["Config"]["Env"] == [e.replace("GOGC=80", "GOGC=50") for e in before["Config"]["Env"]]
    assert {k: v for k, v in after["Config"].items() if k != "Env"} == \
        {k: v for k, v in before["Config"].items() if k != "Env"}
    # HostConfig: the same, the anonymous volume now mounted by its name
    anon = [m["Name"] for m in before["Mounts"] if m["Destination"] == "/anon"]
    assert after["HostConfig"]["Binds"] == before["HostConfig"]["Binds"] + [f"{anon[0]}:/anon"]
    assert {k: v for k, v in after["HostConfig"].items() if k != "Binds"} == \
        {k: v for k, v in before["HostConfig"].items() if k != "Binds"}
    assert mounts(after) == mounts(before)  # same volumes (the anonymous one too), same places
    assert {k for k in before if k not in OWN | {"Config", "HostConfig"} and before[k] != after[k]} == set()
    # no volume left behind, no old container left aside
    assert {v.name for v in client.volumes.list()} == volumes_before
    assert [c.name for c in client.containers.list(all=True, filters={"name": service})] == [service]


def probe_for(client: docker.DockerClient, docker_engine: str) -> DockerProbe:
    return DockerProbe(host=docker_engine, timeout=30)


def test_an_image_that_cannot_be_had_changes_nothing(client: docker.DockerClient, service: str,
                                                      docker_engine: str) -> None:
    before = inspect(client, service)
    result = probe_for(client, docker_engine).recreate(service, image="email-sender-go:nope")
    assert not result.ok
    assert result.failure is not None and "left as it was" in result.failure.message
    after = inspect(client, service)
    assert after["Id"] == before["Id"] and after["State"]["Running"]
    assert after["State"]["StartedAt"] == before["State"]["StartedAt"]  # not even restarted


def test_a_replacement_that_does_not_run_puts_the_old_one_back(client: docker.DockerClient, service: str,
                                                               docker_engine: str) -> None:
    before = inspect(client, service)
    result = probe_for(client, docker_engine).recreate(service, env_set={"FAIL": "1"}, settle_s=1.0)
    assert not result.ok
    assert result.failure is not None and "put back" in result.failure.message, result.failure.message
    after = inspect(client, service)
    assert after["Id"] == before["Id"] and after["State"]["Running"]
    assert after["Name"] == before["Name"]
    assert [c.name for c in client.containers.list(all=True, filters={"name": service})] == [service]
    assert after["Config"] == before["Config"] and after["HostConfig"] == before["HostConfig"]


def test_env_set_then_env_restore_gives_back_the_values_that_were_set(client: docker.DockerClient, service: str,
                                                                      docker_engine: str, tmp_path: Any) -> None:
    """go-gc-tune's rollback: GOGC was 80 before the run, GODEBUG unset; both come back so (#24 item 20)."""
    from es_doctor.config import Target
    from es_doctor.runbooks.actions import REGISTRY, ActionContext

    target = Target.model_validate({"docker": {"host": docker_engine}, "service": {"container": service}})
    work = tmp_path / "state" / "runs" / "r"
    work.mkdir(parents=True)
    ctx = ActionContext(target, "t", work)
    try:
        before = inspect(client, service)
        out = REGISTRY["env.set"].call({"container": service, "env": {"GOGC": "50", "GODEBUG": "gctrace=1"}}, ctx)
        assert out["previous"] == {"GOGC": "80", "GODEBUG": None}
        changed = inspect(client, service)["Config"]["Env"]
        assert "GOGC=50" in changed and "GODEBUG=gctrace=1" in changed
        REGISTRY["env.restore"].call({"container": service, "env": out["previous"]}, ctx)
        after = inspect(client, service)
        assert after["Config"]["Env"] == before["Config"]["Env"]  # GOGC=80 again, not unset; GODEBUG gone
        assert after["HostConfig"]["PortBindings"] == before["HostConfig"]["PortBindings"]
    finally:
        ctx.probes.close()


def test_sql_with_a_percent_sign_is_sent_as_it_is(postgres_server: str) -> None:
    """postgres.sql: ``WHERE id % 2 = 0`` is SQL, not a placeholder (#24 item 20)."""
    from es_doctor.probes.postgres import PostgresProbe

    result = PostgresProbe(postgres_server, None, 10).query("SELECT 7 % 3, '100%'")
    assert result.failure is None, result.failure
    assert result.value == [(1, "100%")]
